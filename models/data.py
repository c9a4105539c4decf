"""Labelled CWT windows from a data directory (CHB-MIT layout, TUH csv_bi/tse_bi, Siena seizure lists or EDF+).

Features are computed once per window with the runtime's CWTransform (the
same code the monitor runs) and kept un-normalised (log10 power); the
normalisation constants are fitted on each training split. The classical
peers' features (line length, relative band powers) are computed from the
same conditioned samples, so model and peers are scored on the same windows.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ictal.runtime.annotations import LabelledRecording, find_labelled_recordings
from ictal.runtime.channels import SATURATED_SHARE, window_rejection
from ictal.runtime.features import BANDS_HZ, CWTransform, FeatureSpec
from ictal.runtime.peers import line_length, relative_band_powers
from ictal.runtime.windows import Window, load_labelled, make_windows, window_samples

WINDOWS_PER_BATCH = 32
_CLIP_SUFFIX = re.compile(r"_(onset|preictal|ictal)$")


def group_of(recording: str) -> str:
    """The leak-free unit of a split: one recording (CHB-MIT clips of one recording share it)."""
    return _CLIP_SUFFIX.sub("", Path(recording).stem)


def binary_target(label: np.ndarray) -> np.ndarray:
    """A window is a seizure window when at least half of it is inside a seizure."""
    return (np.asarray(label) >= 0.5).astype(np.float32)


def unambiguous(label: np.ndarray) -> np.ndarray:
    """Windows that are clearly seizure (≥ 50 %) or clearly not (0 %)."""
    label = np.asarray(label)
    return (label == 0) | (label >= 0.5)


def take_rows(x, idx):
    """Windows `idx` of features in memory (a copy) or on disk (a view: nothing is read)."""
    return x[idx] if isinstance(x, np.ndarray) else x.take(idx)


@functools.lru_cache(maxsize=4)
def _log_power_transform(spec_json: str, threads: int) -> CWTransform:
    return CWTransform(FeatureSpec.from_json(spec_json), threads=threads)


def log_power_transform(spec: FeatureSpec, threads: int = 1) -> CWTransform:
    """The CWT of a spec, for un-normalised log power: built once per spec and process (its kernels
    cost ~15 ms), whatever the spec's fitted normalisation. `threads`: see `CWTransform` (1 where
    several processes share the cores)."""
    spec_json = FeatureSpec(**{**spec.to_dict(), "norm_mean": None, "norm_std": None}).to_json()
    return _log_power_transform(spec_json, max(1, int(threads)))


@dataclasses.dataclass
class WindowSet:
    """Windows with model features and the classical peers' features.

    x : ndarray, shape (n_windows, n_channels, n_freqs, n_columns), float32 log10 power.
    line_length : ndarray, shape (n_windows,), µV per sample.
    band_power : ndarray, shape (n_windows, n_channels, 5), log10 relative band power.
    """

    x: np.ndarray  # or a CachedFeatures (models.cache): the same indexing, read from disk
    windows: list[Window]
    source: list[str]  # data set name per window ('chbmit', 'eegmmidb', ...)
    # {recording: (duration_s, [(seizure start_s, end_s), ...])} for event scoring
    recordings: dict = dataclasses.field(default_factory=dict)
    line_length: np.ndarray | None = None
    band_power: np.ndarray | None = None
    zero_filled: dict = dataclasses.field(default_factory=dict)  # {recording: [channel, ...]} where any

    def __post_init__(self):
        n = len(self.windows)
        if self.line_length is None:
            self.line_length = np.full(n, np.nan, np.float32)
        if self.band_power is None:
            self.band_power = np.full((n, self.x.shape[1] if self.x.ndim > 1 else 0, len(BANDS_HZ)), np.nan,
                                      np.float32)

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
        return WindowSet(take_rows(self.x, idx), wins, [self.source[i] for i in idx],
                         {k: v for k, v in self.recordings.items() if k in recs},
                         self.line_length[idx], self.band_power[idx],
                         {k: v for k, v in self.zero_filled.items() if k in recs})

    @staticmethod
    def concat(sets: list["WindowSet"]) -> "WindowSet":
        sets = [s for s in sets if len(s.windows)]
        recs, zero = {}, {}
        for s in sets:
            recs.update(s.recordings)
            zero.update(s.zero_filled)
        if any(not isinstance(s.x, np.ndarray) for s in sets):  # features on disk stay there
            from .cache import CachedFeatures
            if not all(isinstance(s.x, CachedFeatures) for s in sets):
                raise TypeError("WindowSet.concat: cannot mix cached and in-memory features")
            x = CachedFeatures.concat([s.x for s in sets])
        else:
            x = np.concatenate([s.x for s in sets])
        return WindowSet(x, [w for s in sets for w in s.windows], [src for s in sets for src in s.source], recs,
                         np.concatenate([s.line_length for s in sets]), np.concatenate([s.band_power for s in sets]),
                         zero)

    def save(self, path: str | Path) -> Path:
        """Cache to one .npz (features are the expensive part; LOPO experiments reuse them)."""
        import json
        meta = {"windows": [dataclasses.asdict(w) for w in self.windows], "source": self.source,
                "recordings": self.recordings, "zero_filled": self.zero_filled}
        np.savez(path, x=self.x, line_length=self.line_length, band_power=self.band_power,
                 meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "WindowSet":
        import json
        z = np.load(path)
        meta = json.loads(z["meta"].tobytes().decode())
        recs = {k: (v[0], [tuple(s) for s in v[1]]) for k, v in meta["recordings"].items()}
        return cls(z["x"], [Window(**w) for w in meta["windows"]], meta["source"], recs,
                   z["line_length"], z["band_power"], meta["zero_filled"])


def bad_channel_counts(quality_seconds: list, windows: list, missing: np.ndarray,
                       saturated_share: float = SATURATED_SHARE) -> np.ndarray:
    """Per window, the channels flat over any whole second inside it or saturated on more than
    `saturated_share` of its samples (the monitor's rules), the `missing` (zero-filled) ones left
    out. quality_seconds: the (flat, saturated share) pairs per block of `condition_edf`."""
    flat = np.concatenate([f for f, _ in quality_seconds], axis=1)
    saturated = np.concatenate([s for _, s in quality_seconds], axis=1)
    counts = np.empty(len(windows), int)
    for i, w in enumerate(windows):
        first = int(np.ceil(w.start_s - 1e-9))
        last = min(int(np.floor(w.end_s + 1e-9)), flat.shape[1])  # seconds [first, last) lie inside the window
        bad = flat[:, first:last].any(axis=1) | (saturated[:, first:last].mean(axis=1) > saturated_share)
        counts[i] = int((bad & ~missing).sum())
    return counts


def rejection_reasons(windows: list[Window], missing: list[str], quality_seconds: list, spec: FeatureSpec, *,
                      force: bool = False) -> tuple[list[str | None], np.ndarray]:
    """(why each window of one recording cannot be scored, None where it can; bad channel counts):
    the monitor's rule (`window_rejection`), from the recording's `quality_seconds` and the channels
    it lacks (`missing`, zero-filled)."""
    n_bad = bad_channel_counts(quality_seconds, windows, np.isin(spec.channels, missing))
    return [window_rejection(int(k), len(missing), len(spec.channels), force=force) for k in n_bad], n_bad


def rejected_windows(windows: list[Window], missing: list[str], quality_seconds: list, spec: FeatureSpec, *,
                     force: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rejected, bad channel counts) per window of one recording: the windows the monitor would
    not score (`rejection_reasons`)."""
    reasons, n_bad = rejection_reasons(windows, missing, quality_seconds, spec, force=force)
    return np.array([r is not None for r in reasons], bool), n_bad


def recording_windows(lr: LabelledRecording, spec: FeatureSpec, transform: CWTransform, *, hop_s: float,
                      seizure_hop_s: float, allow_missing: int = 0, source: str = "",
                      on_batch: Callable[[np.ndarray], None] | None = None,
                      quality_seconds: list | None = None, drop_rejected: bool = False) -> WindowSet:
    """Every labelled window of one recording with its model and peer features.

    With `on_batch`, each batch of windows' log power goes to it in order and is not kept (`x` is
    empty): scoring a long recording then holds one batch of features, not all of them (at a 1-s
    hop, 830 MB an hour). With `quality_seconds` (a list), the recording's per-second flat and
    saturated channels are appended to it (see `runtime.windows.condition_edf`). With
    `drop_rejected` (training), windows with more flat or saturated channels than the monitor
    scores are left out: a model is never fitted on EEG it will never be asked to score.
    """
    if drop_rejected and quality_seconds is None:
        quality_seconds = []
    zero_filled: list[str] = []
    data, _ = load_labelled(lr.path, lr.seizures, spec, allow_missing=allow_missing, zero_filled=zero_filled,
                            quality_seconds=quality_seconds)
    duration = data.shape[1] / spec.sfreq_hz
    wins = make_windows(duration, lr.seizures, window_s=spec.window_s, hop_s=hop_s, seizure_hop_s=seizure_hop_s,
                        recording=lr.path.name, patient=lr.patient)
    c = len(spec.channels)
    x = np.empty((0 if on_batch else len(wins), *spec.input_shape), np.float32)
    ll = np.empty(len(wins), np.float32)
    bp = np.empty((len(wins), c, len(BANDS_HZ)), np.float32)
    for i0 in range(0, len(wins), WINDOWS_PER_BATCH):  # the CWT runs on many windows at once
        segs = np.stack([window_samples(data, spec, w.start_s) for w in wins[i0:i0 + WINDOWS_PER_BATCH]])
        log_power = transform.log_power_batch(segs)
        if on_batch:
            on_batch(log_power)
        else:
            x[i0:i0 + len(segs)] = log_power
        for j, seg in enumerate(segs):
            ll[i0 + j] = line_length(seg)
            bp[i0 + j] = relative_band_powers(seg, spec.sfreq_hz)
    if drop_rejected and wins:
        # force: a recording's missing channels were allowed when training asked for them
        rejected = rejected_windows(wins, zero_filled, quality_seconds, spec, force=True)[0]
        if rejected.any():
            keep = np.flatnonzero(~rejected)
            wins, ll, bp = [wins[i] for i in keep], ll[keep], bp[keep]
            x = x if on_batch else x[keep]
    return WindowSet(x, wins, [source] * len(wins),
                     {lr.path.name: (duration, [(sz.start_s, sz.end_s) for sz in lr.seizures])}, ll, bp,
                     {lr.path.name: zero_filled} if zero_filled else {})


def iter_recordings(root: str | Path, spec: FeatureSpec, *, hop_s: float = 10.0, seizure_hop_s: float = 1.0,
                    allow_missing: int = 0, source: str | None = None,
                    max_recordings: int | None = None, threads: int = 1) -> Iterator[WindowSet]:
    """One WindowSet per EDF under `root`: memory stays bounded by the longest recording.
    `threads`: the CWT's, see `CWTransform`."""
    recs: list[LabelledRecording] = find_labelled_recordings(root)[:max_recordings]
    transform = log_power_transform(spec, threads)
    name = source or Path(root).name
    for lr in recs:
        yield recording_windows(lr, spec, transform, hop_s=hop_s, seizure_hop_s=seizure_hop_s, drop_rejected=True,
                                allow_missing=allow_missing, source=name)


def build_windows(root: str | Path, spec: FeatureSpec, *, hop_s: float = 10.0, seizure_hop_s: float = 1.0,
                  allow_missing: int = 0, source: str | None = None, max_recordings: int | None = None,
                  log=print, threads: int = 1) -> WindowSet:
    """All labelled windows of every EDF under `root`, with their log-power and peer features."""
    t0 = time.perf_counter()
    name = source or Path(root).name
    sets = list(iter_recordings(root, spec, hop_s=hop_s, seizure_hop_s=seizure_hop_s, allow_missing=allow_missing,
                                source=name, max_recordings=max_recordings, threads=threads))
    ws = WindowSet.concat(sets) if any(len(s.windows) for s in sets) else WindowSet(
        np.zeros((0, *spec.input_shape), np.float32), [], [], {})
    log(f"{name}: {len(sets)} recordings -> {len(ws.windows)} windows "
        f"({int(np.sum(ws.label >= 0.5))} seizure) in {time.perf_counter() - t0:.1f} s")
    return ws
