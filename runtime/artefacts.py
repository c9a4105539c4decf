"""Cardiac (ECG) artefact removal from one EEG window, before its features are computed.

The QRS complex of the heart reaches scalp electrodes as a sharp transient that repeats with every
beat, has the same shape on every beat and the same spread over the channels (one spatial
pattern). In a 10-s window of healthy EEG it can dominate the power below 30 Hz and read as a
rhythmic discharge. We find the beats on the window's first spatial component, check that they
are stereotyped and spread over the head (a focal periodic discharge is stereotyped too, and is
a seizure's evidence, not an artefact), and subtract their median waveform from every channel at every beat, so the
EEG between and under the beats stays. A window without such beats is returned unchanged.

This is window-level cleaning (the whole window is known when it is scored), the same code in
training, evaluation, the monitor and the explanations, because it runs inside
`CWTransform.log_power_batch` when the feature spec asks for it.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .dsp import SosFilter, butter_bandpass_sos, sos_steady_state

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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Filter and lengths for one sampling rate, built once per transform."""

    band: SosFilter
    zi: np.ndarray  # the filter's state for a unit step, scaled by each channel's first sample
    smooth: int
    distance: int
    before: int
    after: int
    taper: np.ndarray


def _plan(sfreq_hz: float) -> _Plan:
    before, after = int(round(BEFORE_S * sfreq_hz)), int(round(AFTER_S * sfreq_hz))
    # a soft edge (Hann to the 1/4 power: flat over most of the span) so subtraction leaves no step
    taper = np.hanning(before + after) ** 0.25
    sos = butter_bandpass_sos(2, *BAND_HZ, sfreq_hz)
    return _Plan(SosFilter(sos), sos_steady_state(sos)[:, None, :],
                 max(1, int(round(SMOOTH_S * sfreq_hz))), max(1, int(round(MIN_INTERVAL_S * sfreq_hz))),
                 before, after, taper)


def _zero_phase(plan: _Plan, x: np.ndarray) -> np.ndarray:
    """Band-pass forwards then backwards (no delay: the beat's peak stays where it is)."""
    y, _ = plan.band.filter(x, plan.zi * x[:, :1][None])
    y, _ = plan.band.filter(y[:, ::-1], plan.zi * y[:, -1:][None])
    return y[:, ::-1]


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


def find_cardiac_beats(window: np.ndarray, sfreq_hz: float, plan: _Plan | None = None) -> CardiacBeats:
    """Candidate heart beats of one window (n_channels, n_samples) and their stereotypy."""
    plan = plan or _plan(sfreq_hz)
    x = window - window.mean(axis=1, keepdims=True)
    h = _zero_phase(plan, x)
    # the first spatial component: the ECG's fixed field over the scalp
    _, vecs = np.linalg.eigh(h @ h.T)
    component = vecs[:, -1] @ h
    envelope = np.convolve(np.abs(component), np.ones(plan.smooth) / plan.smooth, "same")
    peaks = _peaks(envelope, PEAK_FRACTION * np.percentile(envelope, 99), plan.distance)
    peaks = peaks[(peaks >= plan.before) & (peaks < window.shape[1] - plan.after)]
    if len(peaks) < MIN_BEATS:
        return CardiacBeats(peaks, 0.0)
    span = np.arange(-plan.before, plan.after)
    per_channel = h[:, peaks[:, None] + span]  # (n_channels, n_beats, span)
    energy = np.sum(per_channel.mean(axis=1) ** 2, axis=1)
    focality = float(np.sort(energy)[-3:].sum() / (energy.sum() + 1e-12))
    beats = per_channel.transpose(1, 0, 2).reshape(len(peaks), -1)
    beats = beats - beats.mean(axis=1, keepdims=True)
    mean = beats.mean(axis=0)
    r = beats @ mean / (np.linalg.norm(beats, axis=1) * np.linalg.norm(mean) + 1e-12)
    return CardiacBeats(peaks, float(np.median(r)), focality)


def remove_cardiac_artefact(window: np.ndarray, sfreq_hz: float, plan: _Plan | None = None) -> np.ndarray:
    """The window with its heart beats' median waveform subtracted at every beat; unchanged (the same
    array) when no stereotyped beats are found."""
    plan = plan or _plan(sfreq_hz)
    beats = find_cardiac_beats(window, sfreq_hz, plan)
    if not beats.is_cardiac:
        return window
    span = np.arange(-plan.before, plan.after)
    x = window - window.mean(axis=1, keepdims=True)
    template = np.median(x[:, beats.peaks[:, None] + span], axis=1) * plan.taper  # (n_channels, span)
    out = np.array(window, dtype=np.float64, copy=True)
    for p in beats.peaks:  # beats are ≥ 0.33 s apart but spans (0.5 s) may overlap: subtract in turn
        out[:, p - plan.before: p + plan.after] -= template
    return out


class CardiacArtefactRemover:
    """`remove_cardiac_artefact` for many windows at one sampling rate."""

    def __init__(self, sfreq_hz: float):
        self.sfreq_hz = float(sfreq_hz)
        self._plan = _plan(self.sfreq_hz)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """windows : (..., n_channels, n_samples) → the same shape, beats removed where found."""
        windows = np.asarray(windows)
        flat = windows.reshape(-1, *windows.shape[-2:])
        cleaned = [remove_cardiac_artefact(w, self.sfreq_hz, self._plan) for w in flat]
        if all(c is w for c, w in zip(cleaned, flat)):
            return windows
        return np.stack([np.asarray(c, dtype=windows.dtype) for c in cleaned]).reshape(windows.shape)
