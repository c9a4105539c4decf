"""From a recording on disk to labelled 10-s windows of model input.

`condition_recording` applies the same steps the live monitor applies hop by
hop (montage → resample → causal band-pass/notch), so offline and live
features agree.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .annotations import Seizure, check_seizures_within
from .channels import resolve_montage
from .conditioning import StreamingFilter, StreamingResampler
from .edf import Recording, read_edf
from .features import FeatureSpec


@dataclasses.dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    label: float  # fraction of the window inside a seizure, 0..1
    recording: str
    patient: str
    seizure_id: str  # id of the overlapped seizure, '' when none


def condition_recording(rec: Recording, spec: FeatureSpec, *, allow_missing: int = 0,
                        model_name: str = "model", zero_filled: list | None = None) -> np.ndarray:
    """Montage, resampling and filtering of a whole recording.

    Returns data_uv : ndarray, shape (len(spec.channels), n_times) at spec.sfreq_hz.
    The names of channels the recording lacks (zero-filled) are appended to `zero_filled`.
    """
    montage = resolve_montage(rec.labels, spec.channels, allow_missing=allow_missing,
                              source_name=f"file '{rec.source or rec.name}'", model_name=model_name)
    if zero_filled is not None:
        zero_filled.extend(montage.missing)
    data = montage.apply(rec.data_uv)
    data = StreamingResampler(len(spec.channels), rec.sfreq_hz, spec.sfreq_hz).process(data)
    filt = StreamingFilter(len(spec.channels), spec.sfreq_hz, spec.band_hz, spec.notch_hz)
    return filt.filter(data)


def make_windows(duration_s: float, seizures: list[Seizure], *, window_s: float, hop_s: float,
                 seizure_hop_s: float | None = None, recording: str = "", patient: str = "",
                 skip_s: float = 0.0) -> list[Window]:
    """Sliding windows over [skip_s, duration_s] with their seizure-overlap labels.

    Windows that touch a seizure use `seizure_hop_s` (a smaller hop gives
    more positive examples); the others use `hop_s`.
    """
    check_seizures_within(seizures, duration_s, recording or "recording")
    seizure_hop_s = seizure_hop_s or hop_s
    out, t = [], skip_s
    while t + window_s <= duration_s + 1e-9:
        end = t + window_s
        overlap, sid = 0.0, ""
        for sz in seizures:
            ov = max(0.0, min(end, sz.end_s) - max(t, sz.start_s))
            if ov > overlap:
                overlap, sid = ov, sz.seizure_id
        out.append(Window(round(t, 6), round(end, 6), overlap / window_s, recording, patient, sid))
        near = any(sz.start_s - window_s < t + hop_s and t < sz.end_s for sz in seizures)
        t += seizure_hop_s if (overlap > 0 or near) else hop_s
    return out


def window_samples(data: np.ndarray, spec: FeatureSpec, start_s: float) -> np.ndarray:
    """Slice one window. data : (n_channels, n_times) → (n_channels, spec.n_samples)."""
    i = int(round(start_s * spec.sfreq_hz))
    return data[:, i: i + spec.n_samples]


def load_labelled(path: str | Path, seizures: list[Seizure], spec: FeatureSpec, *,
                  allow_missing: int = 0, zero_filled: list | None = None) -> tuple[np.ndarray, Recording]:
    """Read and condition one EDF; check its seizures lie inside it."""
    rec = read_edf(path)
    check_seizures_within(seizures, rec.duration_s, str(path))
    return condition_recording(rec, spec, allow_missing=allow_missing, zero_filled=zero_filled), rec
