"""Synthetic scalp EEG with seizure-like discharges, reproducible from a seed.

Background: per-electrode 1/f ("pink") noise plus a posterior alpha rhythm.
Seizure: a rhythmic spike-and-wave-like discharge whose frequency evolves
(≈7 Hz at onset slowing to ≈3 Hz), whose amplitude rises then falls, and which
starts in one region and spreads over the scalp within ~8 s. Signals are made
on referential 10-20 electrodes and turned into any montage by the runtime's
own montage code (so CHB-MIT bipolar channels are derived, not invented).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ictal.runtime.channels import electrode_region, resolve_montage
from ictal.runtime.edf import Annotation, Recording, write_edf
from ictal.runtime.features import CHBMIT_CHANNELS

# approximate scalp positions (x: left→right, y: back→front) on the unit disc
POSITIONS = {"FP1": (-0.3, 0.95), "FP2": (0.3, 0.95), "F7": (-0.8, 0.6), "F3": (-0.4, 0.5), "FZ": (0.0, 0.5),
             "F4": (0.4, 0.5), "F8": (0.8, 0.6), "FT9": (-1.0, 0.3), "FT10": (1.0, 0.3), "T7": (-1.0, 0.0),
             "C3": (-0.5, 0.0), "CZ": (0.0, 0.0), "C4": (0.5, 0.0), "T8": (1.0, 0.0), "P7": (-0.8, -0.6),
             "P3": (-0.4, -0.5), "PZ": (0.0, -0.5), "P4": (0.4, -0.5), "P8": (0.8, -0.6), "O1": (-0.3, -0.95),
             "O2": (0.3, -0.95)}
ELECTRODES = list(POSITIONS)
FOCUS = {"left temporal": "T7", "right temporal": "T8", "frontal": "FZ", "central": "CZ",
         "parietal-occipital": "PZ"}


def _pink(rng, n_channels: int, n_times: int, sfreq_hz: float) -> np.ndarray:
    spec = rng.standard_normal((n_channels, n_times // 2 + 1)) + 1j * rng.standard_normal((n_channels, n_times // 2 + 1))
    f = np.fft.rfftfreq(n_times, 1 / sfreq_hz)
    spec /= np.sqrt(np.maximum(f, 0.5))
    x = np.fft.irfft(spec, n_times, axis=-1)
    return x / x.std(axis=-1, keepdims=True)


def seizure_waveform(t_s: np.ndarray, duration_s: float, rng) -> np.ndarray:
    """A discharge over t in [0, duration]: frequency 7→3 Hz, amplitude ramp, sharp shape."""
    frac = np.clip(t_s / duration_s, 0, 1)
    freq = 7.0 - 4.0 * frac + 0.3 * np.sin(2 * np.pi * 0.2 * t_s)
    phase = 2 * np.pi * np.cumsum(freq) * (t_s[1] - t_s[0] if t_s.size > 1 else 0)
    # spike-wave: fundamental plus in-phase harmonics gives sharp peaks
    wave = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    envelope = np.minimum(1.0, t_s / 4.0) * np.minimum(1.0, (duration_s - t_s) / 3.0 + 0.2)
    return wave * np.clip(envelope, 0, 1)


def synthetic_recording(duration_s: float = 120.0, seizures: list[tuple[float, float]] = (), *,
                        sfreq_hz: float = 256.0, seed: int = 0, labels: list[str] | None = None,
                        onset_region: str = "left temporal", background_uv: float = 15.0,
                        seizure_uv: float = 120.0, name: str = "synthetic") -> Recording:
    """Synthetic EEG as a Recording in microvolts, with 'seizure' EDF+ annotations.

    labels: output channels; bipolar (default: the CHB-MIT montage) or any
    referential subset of ELECTRODES.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sfreq_hz))
    t = np.arange(n) / sfreq_hz
    ref = background_uv * _pink(rng, len(ELECTRODES), n, sfreq_hz)
    alpha_gain = np.array([1.0 if electrode_region(e) == "parietal-occipital" else 0.25 for e in ELECTRODES])
    alpha = np.sin(2 * np.pi * (10.0 + 0.3 * rng.standard_normal()) * t + rng.uniform(0, 2 * np.pi))
    alpha_env = 0.6 + 0.4 * np.sin(2 * np.pi * 0.05 * t + rng.uniform(0, 6.3))
    ref += background_uv * 0.8 * alpha_gain[:, None] * (alpha * alpha_env)[None]
    focus = np.array(POSITIONS[FOCUS[onset_region]])
    for start, end in seizures:
        i0, i1 = int(start * sfreq_hz), min(n, int(end * sfreq_hz))
        ts = t[i0:i1] - start
        # the field starts focal (σ 0.35) and spreads over the scalp within ~8 s
        sigma = 0.35 + 1.2 * np.clip(ts / 8.0, 0, 1)
        wave = seizure_waveform(ts, end - start, rng)
        for c, e in enumerate(ELECTRODES):
            d = float(np.linalg.norm(np.array(POSITIONS[e]) - focus))
            # propagation lag: neighbouring derivations do not cancel
            lag = min(len(ts), int((0.1 * d + rng.uniform(0, 0.05)) * sfreq_hz))
            lagged = np.concatenate([np.zeros(lag), wave[: len(ts) - lag]])
            gain = np.exp(-d ** 2 / (2 * sigma ** 2)) * rng.uniform(0.7, 1.3)
            ref[c, i0:i1] += seizure_uv * gain * lagged
    labels = list(labels or CHBMIT_CHANNELS)
    montage = resolve_montage(ELECTRODES, labels, source_name="synthetic electrodes")
    data = montage.apply(ref)
    ann = [Annotation(float(s), float(e - s), "seizure") for s, e in seizures]
    return Recording(data, sfreq_hz, labels, f"{name}.edf", ann, edf_plus=True)


def write_synthetic_edf(path: str | Path, duration_s: float = 120.0, seizures=(), **kw) -> Path:
    rec = synthetic_recording(duration_s, seizures, name=Path(path).stem, **kw)
    return write_edf(rec, path)
