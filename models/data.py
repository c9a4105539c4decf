"""Labelled CWT windows from a data directory (CHB-MIT layout, TUH csv_bi or EDF+).

Features are computed once per window with the runtime's CWTransform (the
same code the monitor runs) and kept un-normalised (log10 power); the
normalisation constants are fitted on each training split.
"""
from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import numpy as np

from runtime.annotations import LabelledRecording, find_labelled_recordings
from runtime.features import CWTransform, FeatureSpec
from runtime.windows import Window, load_labelled, make_windows, window_samples

_CLIP_SUFFIX = re.compile(r"_(onset|preictal|ictal)$")


def group_of(recording: str) -> str:
    """The leak-free unit of a split: one recording (CHB-MIT clips of one recording share it)."""
    return _CLIP_SUFFIX.sub("", Path(recording).stem)


@dataclasses.dataclass
class WindowSet:
    """x : ndarray, shape (n_windows, n_channels, n_freqs, n_columns), float32 log10 power."""

    x: np.ndarray
    windows: list[Window]
    source: list[str]  # data set name per window ('chbmit', 'eegmmidb', ...)
    # {recording: (duration_s, [(seizure start_s, end_s), ...])} for event scoring
    recordings: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> np.ndarray:
        return np.array([w.label for w in self.windows], dtype=np.float32)

    @property
    def groups(self) -> np.ndarray:
        return np.array([group_of(w.recording) for w in self.windows])

    @property
    def patients(self) -> np.ndarray:
        return np.array([w.patient for w in self.windows])

    def subset(self, idx) -> "WindowSet":
        idx = np.asarray(idx, dtype=int)
        wins = [self.windows[i] for i in idx]
        recs = {w.recording for w in wins}
        return WindowSet(self.x[idx], wins, [self.source[i] for i in idx],
                         {k: v for k, v in self.recordings.items() if k in recs})

    @staticmethod
    def concat(sets: list["WindowSet"]) -> "WindowSet":
        sets = [s for s in sets if len(s.windows)]
        recs = {}
        for s in sets:
            recs.update(s.recordings)
        return WindowSet(np.concatenate([s.x for s in sets]), sum((s.windows for s in sets), []),
                         sum((s.source for s in sets), []), recs)


def build_windows(root: str | Path, spec: FeatureSpec, *, hop_s: float = 10.0, seizure_hop_s: float = 1.0,
                  allow_missing: int = 0, source: str | None = None, max_recordings: int | None = None,
                  log=print) -> WindowSet:
    """All labelled windows of every EDF under `root`, with their log-power features."""
    recs: list[LabelledRecording] = find_labelled_recordings(root)[:max_recordings]
    transform = CWTransform(FeatureSpec(**{**spec.to_dict(), "norm_mean": None, "norm_std": None}))
    xs, wins, recordings = [], [], {}
    t0 = time.perf_counter()
    for lr in recs:
        data, rec = load_labelled(lr.path, lr.seizures, spec, allow_missing=allow_missing)
        duration = data.shape[1] / spec.sfreq_hz
        recordings[lr.path.name] = (duration, [(sz.start_s, sz.end_s) for sz in lr.seizures])
        for w in make_windows(duration, lr.seizures, window_s=spec.window_s, hop_s=hop_s,
                              seizure_hop_s=seizure_hop_s, recording=lr.path.name, patient=lr.patient):
            xs.append(transform.log_power(window_samples(data, spec, w.start_s)))
            wins.append(w)
    name = source or Path(root).name
    log(f"{name}: {len(recs)} recordings -> {len(wins)} windows "
        f"({sum(w.label >= 0.5 for w in wins)} seizure) in {time.perf_counter() - t0:.1f} s")
    x = np.stack(xs) if xs else np.zeros((0, *spec.input_shape), np.float32)
    return WindowSet(x, wins, [name] * len(wins), recordings)
