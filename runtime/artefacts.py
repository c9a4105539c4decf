"""Cardiac (ECG) artefact removal from one EEG window, before its features are computed.

The QRS complex of the heart reaches scalp electrodes as a sharp transient that repeats with every
beat, has the same shape on every beat and the same spread over the channels (one spatial
pattern). In a 10-s window of healthy EEG it can dominate the power below 30 Hz and read as a
rhythmic discharge. We find the beats on the window's first spatial component, check that they
are stereotyped and spread over the head (a focal periodic discharge is stereotyped too, and is
a seizure's evidence, not an artefact), and subtract their median waveform from every channel at
every beat, so the EEG between and under the beats stays. A window without such beats is
returned unchanged.

This is window-level cleaning (the whole window is known when it is scored), the same code in
training, evaluation, the monitor and the explanations, because it runs inside
`CWTransform.log_power_batch` when the feature spec asks for it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.fft

from .dsp import band_power_difference, butter_bandpass_sos

BAND_HZ = (5.0, 30.0)  # where the QRS complex carries its energy
MIN_INTERVAL_S = 0.33  # 180 beats/min, a neonate's fastest heart
SMOOTH_S = 0.027  # envelope smoothing, about a QRS width
PEAK_FRACTION = 0.4  # of the envelope's 99th percentile, for a beat
MIN_BEATS = 5  # in one window: fewer is no evidence of a rhythm
MIN_STEREOTYPY = 0.8  # median correlation of each beat with their mean waveform
# A heart's field spans the head; a focal periodic discharge (neo38's seizure: 2 channels) is as
# stereotyped and as regular, and must never be subtracted. The beats' mean waveform may put at
# most this share of its energy on its 3 strongest channels (S003's ECG: 0.47-0.59).
MAX_FOCALITY = 0.7
BEFORE_S, AFTER_S = 0.2, 0.3  # the span subtracted around each beat: P-QRS-part of T


@dataclasses.dataclass(frozen=True)
class CardiacBeats:
    """Beats found in one window: sample indices of the R peaks, and how alike they are."""

    peaks: np.ndarray
    stereotypy: float  # median correlation of a beat's multi-channel waveform with their mean
    focality: float = 1.0  # share of their mean waveform's energy on its 3 strongest channels

    @property
    def is_cardiac(self) -> bool:
        return (len(self.peaks) >= MIN_BEATS and self.stereotypy >= MIN_STEREOTYPY
                and self.focality <= MAX_FOCALITY)


def _sos_power_response(sos: np.ndarray, freqs_hz: np.ndarray, sfreq_hz: float) -> np.ndarray:
    """|H(f)|² of a second-order-section filter: its response run forwards then backwards."""
    z = np.exp(-2j * np.pi * freqs_hz / sfreq_hz)
    h = np.ones_like(z)
    for b0, b1, b2, a0, a1, a2 in sos:
        h *= (b0 + b1 * z + b2 * z * z) / (a0 + a1 * z + a2 * z * z)
    return np.abs(h) ** 2


class CardiacArtefactRemover:
    """Finds and removes heart beats in windows of one sampling rate and length.

    Detection runs on all windows of a batch at once (band-pass, first spatial component, envelope)
    and costs well under a millisecond per window; only a window with beats pays for subtraction.
    """

    def __init__(self, sfreq_hz: float):
        self.sfreq_hz = float(sfreq_hz)
        self.sos = butter_bandpass_sos(2, *BAND_HZ, self.sfreq_hz)
        self.smooth = max(1, int(round(SMOOTH_S * self.sfreq_hz)))
        self.distance = max(1, int(round(MIN_INTERVAL_S * self.sfreq_hz)))
        self.before, self.after = int(round(BEFORE_S * self.sfreq_hz)), int(round(AFTER_S * self.sfreq_hz))
        # a soft edge (Hann to the 1/4 power: flat over most of the span) so subtraction leaves no step
        self.taper = np.hanning(self.before + self.after) ** 0.25
        self._gain: dict[int, np.ndarray] = {}
        self.last_removed = np.zeros(0, bool)  # per window of the last call: were its beats removed?

    def _band(self, x: np.ndarray) -> np.ndarray:
        """Zero-phase band-pass of (..., n) through the FFT: the Butterworth's |H|², as forwards
        then backwards filtering gives, without its start-up transients."""
        n = x.shape[-1]
        if n not in self._gain:
            freqs = np.fft.rfftfreq(n, 1.0 / self.sfreq_hz)
            self._gain[n] = _sos_power_response(self.sos, freqs, self.sfreq_hz).astype(np.float32)
        # float32: detection needs no more, and it halves the FFTs' cost (0.16 ms per window)
        return scipy.fft.irfft(scipy.fft.rfft(x.astype(np.float32), axis=-1) * self._gain[n], n, axis=-1)

    def find(self, windows: np.ndarray) -> list[CardiacBeats]:
        """The beats of each window. windows : (n_windows, n_channels, n_samples)."""
        x = windows - windows.mean(axis=-1, keepdims=True)
        h = self._band(x)
        _, vecs = np.linalg.eigh(h @ h.transpose(0, 2, 1))  # the ECG's fixed field over the scalp
        component = np.einsum("wc,wcn->wn", vecs[:, :, -1], h)
        kernel = np.ones(self.smooth) / self.smooth
        envelope = np.stack([np.convolve(np.abs(c), kernel, "same") for c in component])
        heights = PEAK_FRACTION * np.percentile(envelope, 99, axis=1)
        span = np.arange(-self.before, self.after)
        n = windows.shape[-1]
        out = []
        for hw, env, height in zip(h, envelope, heights):
            peaks = _peaks(env, height, self.distance)
            peaks = peaks[(peaks >= self.before) & (peaks < n - self.after)]
            if len(peaks) < MIN_BEATS:
                out.append(CardiacBeats(peaks, 0.0))
                continue
            per_channel = hw[:, peaks[:, None] + span]  # (n_channels, n_beats, span)
            energy = np.sum(per_channel.mean(axis=1) ** 2, axis=1)
            focality = float(np.sort(energy)[-3:].sum() / (energy.sum() + 1e-12))
            beats = per_channel.transpose(1, 0, 2).reshape(len(peaks), -1)
            beats = beats - beats.mean(axis=1, keepdims=True)
            mean = beats.mean(axis=0)
            r = beats @ mean / (np.linalg.norm(beats, axis=1) * np.linalg.norm(mean) + 1e-12)
            out.append(CardiacBeats(peaks, float(np.median(r)), focality))
        return out

    def _subtract(self, window: np.ndarray, beats: CardiacBeats) -> None:
        """The beats' median waveform subtracted at every beat, in place on a float64 window."""
        span = np.arange(-self.before, self.after)
        x = window - window.mean(axis=1, keepdims=True)
        template = np.median(x[:, beats.peaks[:, None] + span], axis=1) * self.taper  # (n_channels, span)
        for p in beats.peaks:  # beats are ≥ 0.33 s apart but spans (0.5 s) may overlap: subtract in turn
            window[:, p - self.before: p + self.after] -= template

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """windows : (n_windows, n_channels, n_samples) → the same array when no window has beats,
        else a float64 copy with the beats removed where found."""
        windows = np.asarray(windows)
        found = self.find(windows.astype(np.float64, copy=False))
        self.last_removed = np.array([b.is_cardiac for b in found], bool)
        if not self.last_removed.any():
            return windows
        out = windows.astype(np.float64, copy=True)
        for i, b in enumerate(found):
            if b.is_cardiac:
                self._subtract(out[i], b)  # in the copy: each cleaned window is copied once
        return out


def _peaks(envelope: np.ndarray, height: float, distance: int) -> np.ndarray:
    """Local maxima ≥ height, the tallest first, each suppressing lower ones closer than distance
    (scipy.signal.find_peaks' height and distance rules; the runtime does not import scipy.signal)."""
    inner = envelope[1:-1]
    candidates = np.flatnonzero((inner > envelope[:-2]) & (inner >= envelope[2:]) & (inner >= height)) + 1
    kept = np.ones(len(candidates), bool)
    for i in np.argsort(-envelope[candidates], kind="stable"):
        if kept[i]:
            near = np.abs(candidates - candidates[i]) < distance
            near[i] = False
            kept &= ~near
    return candidates[kept]


def find_cardiac_beats(window: np.ndarray, sfreq_hz: float) -> CardiacBeats:
    """Candidate heart beats of one window (n_channels, n_samples) and how cardiac they look."""
    return CardiacArtefactRemover(sfreq_hz).find(np.asarray(window, np.float64)[None])[0]


def remove_cardiac_artefact(window: np.ndarray, sfreq_hz: float) -> np.ndarray:
    """The window with its heart beats' median waveform subtracted at every beat; unchanged (the same
    array) when no stereotyped, widespread beats are found."""
    remover = CardiacArtefactRemover(sfreq_hz)
    cleaned = remover(np.asarray(window)[None])[0]
    return cleaned if remover.last_removed[0] else window


# ---------------------------------------------------------------- scalp muscle (EMG), named not removed
# Cerebral EEG loses power from alpha to beta; scalp muscle adds broadband power that rises from
# 8-12 Hz into 20-30 Hz, as on S005's frontal and temporal derivations (up to +1.1 decades). Of the
# shared seizure windows, 16 of 342 have a derivation above +0.5 (at most 4 derivations; neonatal
# fast activity looks alike), so the monitor names such derivations beside an alert: a reader's cue
# to look at the traces, not a verdict, and never a reason to withhold the alert.
MUSCLE_BAND_HZ, MUSCLE_REFERENCE_HZ = (20.0, 30.0), (8.0, 12.0)
MUSCLE_RISE_DECADES = 0.5


def muscle_like(log_power: np.ndarray, freqs_hz, rise_log10: float = MUSCLE_RISE_DECADES) -> np.ndarray:
    """Per derivation, does its mean log10 power rise from 8-12 Hz into 20-30 Hz by more than
    `rise_log10` decades, the spectral shape of scalp muscle? All False where the frequency grid
    does not reach both bands. log_power : (..., n_channels, n_freqs, n_columns) → (..., n_channels)."""
    f = np.asarray(freqs_hz, float)
    band = (f >= MUSCLE_BAND_HZ[0]) & (f <= MUSCLE_BAND_HZ[1])
    reference = (f >= MUSCLE_REFERENCE_HZ[0]) & (f <= MUSCLE_REFERENCE_HZ[1])
    if not band.any() or not reference.any():
        return np.zeros(np.shape(log_power)[:-2], bool)
    return band_power_difference(log_power, band, reference) > rise_log10


def muscle_channels(log_power: np.ndarray, freqs_hz, rise_log10: float = MUSCLE_RISE_DECADES) -> list[int]:
    """Indices of one window's derivations that `muscle_like` flags. log_power : (n_channels, n_freqs, n_columns)."""
    return np.flatnonzero(muscle_like(log_power, freqs_hz, rise_log10)).tolist()


# ---------------------------------------------------------------- eye blinks and movements, named
# Blinks and eye movements put large slow waves on the frontopolar links and little behind them.
# The shipped model's ocular summary (models.train.ocular_derivations) may only lower its score
# where the frontopolar links' mean delta power exceeds the median of the derivations behind them
# by more than log10 3 decades; the same measure names such a window beside an alert or in an
# explanation, so a reader knows why frontal slow waves argued against seizure. neo73's right
# frontal seizure reaches it too (up to 0.68 decades), so the words ask the reader to look.
FRONTOPOLAR_LINKS = ("FP1-F7", "FP1-F3", "FP2-F4", "FP2-F8")
# F7 and F8 sit beside the eyes: horizontal eye movements reach F7-T7 and F8-T8 as well
LATERAL_FRONTAL_LINKS = ("F7-T7", "F8-T8")
OCULAR_DELTA_HZ = (1.0, 4.0)
OCULAR_EXCESS_DECADES = 0.477  # log10 3: three times the delta power behind them


def ocular_derivation_indices(channels: list[str]) -> tuple[list[int], list[int]] | None:
    """(frontopolar links, reference derivations) of a montage: at least one frontopolar link per
    side (blinks are bilateral) against every derivation not near the eyes; None without them."""
    front = [i for i, c in enumerate(channels) if c in FRONTOPOLAR_LINKS]
    left = any(channels[i].startswith("FP1") for i in front)
    right = any(channels[i].startswith("FP2") for i in front)
    reference = [i for i, c in enumerate(channels) if c not in FRONTOPOLAR_LINKS + LATERAL_FRONTAL_LINKS]
    if not (left and right) or len(reference) < 3:
        return None
    return front, reference


def frontopolar_delta_excess(log_power: np.ndarray, freqs_hz, channels: list[str]):
    """Decades by which a window's frontopolar links' mean delta (1-4 Hz) log power exceeds the
    median reference derivation's (the ocular summary before its hinge); None where the montage or
    the frequency grid has no such measure. log_power : (n_channels, n_freqs, n_columns) → float,
    or (n_windows, n_channels, n_freqs, n_columns) → (n_windows,)."""
    derivations = ocular_derivation_indices(channels)
    f = np.asarray(freqs_hz, float)
    delta = (f >= OCULAR_DELTA_HZ[0]) & (f < OCULAR_DELTA_HZ[1])
    if derivations is None or not delta.any():
        return None
    front, reference = derivations
    power = np.asarray(log_power)[..., delta, :].mean(axis=(-2, -1))  # (..., n_channels)
    excess = power[..., front].mean(axis=-1) - np.median(power[..., reference], axis=-1)
    return float(excess) if np.ndim(excess) == 0 else excess


def eye_movement_like(excess_decades: float | None) -> bool:
    """Is a `frontopolar_delta_excess` that of eye blinks or movements (over log10 3 decades)?"""
    return excess_decades is not None and excess_decades > OCULAR_EXCESS_DECADES


def ocular_reading(log_power: np.ndarray, freqs_hz, channels: list[str]) -> dict:
    """An explanation record's eye-movement fields: `frontopolar_delta_excess` (decades, or None)
    and `eye_movement_like`."""
    excess = frontopolar_delta_excess(log_power, freqs_hz, channels)
    return {"frontopolar_delta_excess": None if excess is None else round(excess, 3),
            "eye_movement_like": eye_movement_like(excess)}


def eye_movement_text(excess_decades: float) -> str:
    """One sentence for a reader: how eye-like the window's frontal slow waves are, and what the
    shipped model makes of them."""
    return (f"frontopolar delta {10 ** excess_decades:.1f}x the derivations behind them, the shape of eye "
            f"blinks or movements (a frontal discharge can reach it too: check the traces); the model reads "
            f"that as evidence against seizure")
