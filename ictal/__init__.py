"""ictal: interpretable seizure detection for scalp EEG.

The public API. Names are imported on first use, so ``import ictal`` stays light and
never imports torch; only `evaluate_model` on a ``.pt`` checkpoint does.

Examples
--------
>>> import ictal
>>> scores = ictal.score_edf(ictal.SHIPPED_MODEL, "recording.edf")  # doctest: +SKIP
>>> scores.start_s[scores.above_threshold]  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ictal")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"

# public name → the module that defines it
_API = {
    "FeatureSpec": "ictal.runtime.features",
    "Recording": "ictal.runtime.edf",
    "read_edf": "ictal.runtime.edf",
    "write_edf": "ictal.runtime.edf",
    "Scorer": "ictal.runtime.scorer",
    "RecordingScores": "ictal.runtime.scorer",
    "score_edf": "ictal.runtime.scorer",
    "Monitor": "ictal.runtime.monitor",
    "evaluate_model": "ictal.models.evaluate",
    "Replay": "ictal.stream_sim.replay",
    "Faults": "ictal.stream_sim.replay",
    "replay_edf": "ictal.stream_sim.replay",
    "synthetic_recording": "ictal.stream_sim.synthetic",
    "IctalError": "ictal.runtime.errors",
    "SHIPPED_MODEL": "ictal.runtime.shipped",
    "SHIPPED_CHECKPOINT": "ictal.runtime.shipped",
    "DEMO_CLIP": "ictal.runtime.shipped",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'ictal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
