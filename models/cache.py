"""A feature cache on disk: each recording's windows are transformed once, in parallel worker
processes, and read back window by window, so that training memory does not grow with the
hours of EEG.

One entry per recording, keyed by a SHA-256 of everything its features depend on: the feature
spec (without the normalisation, which is fitted later), the windowing, the source file (path,
size, modification time) and its seizure labels. A changed spec, file or label gives a new key,
so the entry is rebuilt; an unchanged one is reused. An entry is a directory written under a
temporary name and renamed when complete, so an interrupted build never leaves a half entry:

    <cache>/<key>/x.npy      float32 (n_windows, n_channels, n_freqs, n_columns), log10 power
    <cache>/<key>/peers.npz  line_length (n_windows,), band_power (n_windows, n_channels, 5)
    <cache>/<key>/meta.json  windows, data set, recording duration and seizures, zero-filled channels
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ictal.runtime.annotations import LabelledRecording, find_labelled_recordings
from ictal.runtime.errors import DataError
from ictal.runtime.features import FeatureSpec
from ictal.runtime.windows import Window

CACHE_VERSION = 2  # 2: windows the monitor would reject for flat or saturated channels are left out


def _feature_fields(spec: FeatureSpec) -> dict:
    """What the features depend on: the spec without its fitted normalisation."""
    d = spec.to_dict()
    d.pop("norm_mean"), d.pop("norm_std")
    return d


def entry_key(lr: LabelledRecording, spec: FeatureSpec, *, hop_s: float, seizure_hop_s: float,
              allow_missing: int) -> str:
    st = lr.path.stat()
    ident = {"cache_version": CACHE_VERSION, "spec": _feature_fields(spec), "hop_s": hop_s,
             "seizure_hop_s": seizure_hop_s, "allow_missing": allow_missing,
             "file": str(lr.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "seizures": [[s.start_s, s.end_s] for s in lr.seizures], "patient": lr.patient}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


class CachedFeatures:
    """Read-only, array-like view of cached windows of one or more entries.

    `len`, `shape`, `dtype` and indexing like an ndarray: ``x[i]``, ``x[a:b]`` and ``x[index_array]``
    read those windows from disk (positioned reads, not a memory map, so the pages read do not count
    in the process's memory); `take(index)` is a view of a subset, read nothing.
    """

    def __init__(self, files: list[Path], counts: list[int], window_shape: tuple, index: np.ndarray | None = None):
        self.files, self.counts, self.window_shape = [Path(f) for f in files], list(counts), tuple(window_shape)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.index = np.arange(self.offsets[-1]) if index is None else np.asarray(index, dtype=np.int64)
        self.window_bytes = int(np.prod(self.window_shape)) * 4
        self._data_offset = {}

    dtype = np.dtype(np.float32)
    ndim = 4

    @property
    def shape(self) -> tuple:
        return (len(self.index), *self.window_shape)

    def __len__(self) -> int:
        return len(self.index)

    def take(self, idx) -> "CachedFeatures":
        return CachedFeatures(self.files, self.counts, self.window_shape, self.index[np.asarray(idx, dtype=np.int64)])

    @staticmethod
    def concat(parts: list["CachedFeatures"]) -> "CachedFeatures":
        files, counts, index, base = [], [], [], 0
        for p in parts:
            files += p.files
            counts += p.counts
            index.append(p.index + base)
            base += int(p.offsets[-1])
        shape = parts[0].window_shape if parts else ()
        return CachedFeatures(files, counts, shape, np.concatenate(index) if index else np.zeros(0, np.int64))

    def _header(self, k: int) -> int:
        if k not in self._data_offset:
            with open(self.files[k], "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(fh)
                if dtype != np.float32 or fortran or tuple(shape[1:]) != self.window_shape:
                    raise DataError(f"{self.files[k]}: cached features are {dtype} {shape}; expected float32 "
                                    f"(n, {', '.join(map(str, self.window_shape))}); delete the cache entry")
                self._data_offset[k] = fh.tell()
        return self._data_offset[k]

    def __getitem__(self, item) -> np.ndarray:
        if isinstance(item, (int, np.integer)):
            return self[np.array([item])][0]
        rows = self.index[item] if isinstance(item, slice) else self.index[np.asarray(item, dtype=np.int64)]
        out = np.empty((len(rows), *self.window_shape), np.float32)
        entry = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(entry):
            sel = np.flatnonzero(entry == k)
            local = rows[sel] - self.offsets[k]
            fd = os.open(self.files[k], os.O_RDONLY)
            try:
                base = self._header(int(k))
                for j, r in zip(sel, local):
                    buf = os.pread(fd, self.window_bytes, base + int(r) * self.window_bytes)
                    out[j] = np.frombuffer(buf, np.float32).reshape(self.window_shape)
            finally:
                os.close(fd)
        return out


def _build_entry(args) -> tuple[str, bool]:
    """Worker: features of one recording into the cache (if not there yet). Returns (key, built)."""
    from .data import log_power_transform, recording_windows

    lr, spec, root, hop_s, seizure_hop_s, allow_missing, source = args
    key = entry_key(lr, spec, hop_s=hop_s, seizure_hop_s=seizure_hop_s, allow_missing=allow_missing)
    final = root / key
    if (final / "meta.json").is_file():
        return key, False
    tmp = root / f".{key}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ws = recording_windows(lr, spec, log_power_transform(spec), hop_s=hop_s, seizure_hop_s=seizure_hop_s,
                           allow_missing=allow_missing, source=source, drop_rejected=True)
    np.save(tmp / "x.npy", ws.x)
    np.savez(tmp / "peers.npz", line_length=ws.line_length, band_power=ws.band_power)
    meta = {"windows": [dataclasses.asdict(w) for w in ws.windows], "source": source,
            "recordings": ws.recordings, "zero_filled": ws.zero_filled, "spec": _feature_fields(spec),
            "file": str(lr.path), "n_windows": len(ws.windows)}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        tmp.rename(final)
    except OSError:  # another process built the same entry meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return key, True


def load_entry(root: Path, key: str, spec: FeatureSpec):
    """One cached recording as a WindowSet whose features stay on disk."""
    from .data import WindowSet

    d = root / key
    meta = json.loads((d / "meta.json").read_text())
    peers = np.load(d / "peers.npz")
    x = CachedFeatures([d / "x.npy"], [meta["n_windows"]], spec.input_shape)
    recs = {k: (v[0], [tuple(s) for s in v[1]]) for k, v in meta["recordings"].items()}
    return WindowSet(x, [Window(**w) for w in meta["windows"]], [meta["source"]] * meta["n_windows"], recs,
                     peers["line_length"], peers["band_power"], meta["zero_filled"])


def cached_windows(root_data: str | Path, spec: FeatureSpec, cache_dir: str | Path, *, hop_s: float = 10.0,
                   seizure_hop_s: float = 1.0, allow_missing: int = 0, source: str | None = None,
                   workers: int = 1, log=print):
    """Every labelled window under `root_data`, features computed once into `cache_dir` by `workers`
    processes and read back lazily. Returns a WindowSet whose `x` is a CachedFeatures."""
    from .data import WindowSet

    recs = find_labelled_recordings(root_data)
    name = source or Path(root_data).name
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(lr, spec, root, hop_s, seizure_hop_s, allow_missing, name) for lr in recs]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_build_entry, jobs))
    else:
        results = [_build_entry(j) for j in jobs]
    built = sum(b for _, b in results)
    log(f"{name}: {len(results)} recordings, {built} transformed, {len(results) - built} from the cache {root}")
    sets = [load_entry(root, key, spec) for key, _ in results]
    sets = [s for s in sets if len(s.windows)]
    if not sets:
        raise DataError(f"{root_data}: no recording is long enough for one {spec.window_s:g}-s window")
    return WindowSet.concat(sets)


def stream_stats(x, spec: FeatureSpec, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Per-frequency mean/std of the spec's relative log power, read `chunk` windows at a time
    (the same numbers as over all windows at once, up to float64 rounding)."""
    n_f = len(spec.freqs_hz)
    total, total_sq, count = np.zeros(n_f), np.zeros(n_f), 0
    for i in range(0, len(x), chunk):
        part = spec.make_relative(np.asarray(x[i:i + chunk])).astype(np.float64)
        total += part.sum(axis=(0, 1, 3))
        total_sq += (part ** 2).sum(axis=(0, 1, 3))
        count += part.shape[0] * part.shape[1] * part.shape[3]
    if count == 0:
        print("warning: no windows to fit the normalisation on", file=sys.stderr)
        return [0.0] * n_f, [1.0] * n_f
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0)) + 1e-6
    return [float(v) for v in mean], [float(v) for v in std]
