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
from .channels import FLAT_UV, SATURATION_UV, flat_blocks, resolve_montage, saturated_fraction_blocks
from .conditioning import StreamingFilter, StreamingResampler
from .edf import EdfFile, Recording, open_edf
from .features import FeatureSpec


@dataclasses.dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float
    label: float  # fraction of the window inside a seizure, 0..1
    recording: str
    patient: str
    seizure_id: str  # id of the overlapped seizure, '' when none


class _Conditioner:
    """Montage → resample → causal band-pass/notch, carried block to block: a recording fed to it
    whole or a block at a time gives the same samples.

    With `quality_seconds` (a list), each second of the montaged, resampled EEG *before* the filter
    is checked as the monitor checks its unfiltered samples (after the band-pass an electrode that
    goes flat still swings for seconds, and a railed one is no longer at its rail): per block a
    pair (flat, saturated) of (n_channels, n_seconds) arrays is appended, flat: peak-to-peak under
    FLAT_UV; saturated: the share of samples at ±SATURATION_UV."""

    def __init__(self, labels: list[str], sfreq_hz: float, spec: FeatureSpec, *, source: str, allow_missing: int,
                 model_name: str, zero_filled: list | None, quality_seconds: list | None = None):
        self.montage = resolve_montage(labels, spec.channels, allow_missing=allow_missing,
                                       source_name=f"file '{source}'", model_name=model_name)
        if zero_filled is not None:
            zero_filled.extend(self.montage.missing)
        self.resampler = StreamingResampler(len(spec.channels), sfreq_hz, spec.sfreq_hz)
        self.filter = StreamingFilter(len(spec.channels), spec.sfreq_hz, spec.band_hz, spec.notch_hz)
        self.quality_seconds = quality_seconds
        self.second = max(1, int(round(spec.sfreq_hz)))
        self._unchecked = np.zeros((len(spec.channels), 0))  # raw samples short of a whole second

    def __call__(self, block_uv: np.ndarray) -> np.ndarray:
        raw = self.resampler.process(self.montage.apply(block_uv))
        if self.quality_seconds is not None:
            pending = np.concatenate([self._unchecked, raw], axis=1)
            whole = pending.shape[1] // self.second * self.second
            self.quality_seconds.append((flat_blocks(pending[:, :whole], FLAT_UV, self.second),
                                         saturated_fraction_blocks(pending[:, :whole], SATURATION_UV, self.second)))
            self._unchecked = pending[:, whole:]
        return self.filter.filter(raw)


def condition_recording(rec: Recording, spec: FeatureSpec, *, allow_missing: int = 0,
                        model_name: str = "model", zero_filled: list | None = None,
                        quality_seconds: list | None = None) -> np.ndarray:
    """Montage, resampling and filtering of a whole recording.

    Returns data_uv : ndarray, float32, shape (len(spec.channels), n_times) at spec.sfreq_hz (the
    CWT reads float32 anyway: the same features at half the memory).
    The names of channels the recording lacks (zero-filled) are appended to `zero_filled`; with
    `quality_seconds` (a list), per-second flat and saturated channels (see `_Conditioner`).
    """
    return _Conditioner(rec.labels, rec.sfreq_hz, spec, source=rec.source or rec.name, allow_missing=allow_missing,
                        model_name=model_name, zero_filled=zero_filled,
                        quality_seconds=quality_seconds)(rec.data_uv).astype(np.float32)


CONDITION_BLOCK_S = 60.0


def condition_edf(edf: EdfFile, spec: FeatureSpec, *, allow_missing: int = 0, model_name: str = "model",
                  zero_filled: list | None = None, block_s: float = CONDITION_BLOCK_S,
                  quality_seconds: list | None = None) -> np.ndarray:
    """`condition_recording` of an EDF on disk, read `block_s` at a time (the same samples).

    Memory holds the conditioned EEG in float32 (18 channels at 256 Hz: 66 MB an hour; the CWT
    reads float32, so float64 would buy no feature) and one block of the file, not every signal
    of the file in float64 at its own rate (a 14-hour, 512-Hz Siena recording of 30 signals: 7 GB).
    """
    step = max(1, int(round(block_s * edf.sfreq_hz)))
    condition = _Conditioner(edf.labels, edf.sfreq_hz, spec, source=edf.source, allow_missing=allow_missing,
                             model_name=model_name, zero_filled=zero_filled,
                             quality_seconds=quality_seconds)
    out = np.empty((len(spec.channels), condition.resampler.output_length(edf.n_times)), np.float32)
    k = 0
    for i in range(0, edf.n_times, step):
        block = condition(edf.read(i, i + step))
        out[:, k:k + block.shape[1]] = block
        k += block.shape[1]
    return out


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
                  allow_missing: int = 0, zero_filled: list | None = None,
                  quality_seconds: list | None = None) -> tuple[np.ndarray, EdfFile]:
    """Read and condition one EDF, a block at a time; check its seizures lie inside it."""
    edf = open_edf(path)
    check_seizures_within(seizures, edf.duration_s, str(path))
    return condition_edf(edf, spec, allow_missing=allow_missing, zero_filled=zero_filled,
                         quality_seconds=quality_seconds), edf
