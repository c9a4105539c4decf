"""Channel-occlusion explanation, torch-free, one batched ONNX call.

CI_j = |p(x) − p(x with channel j replaced by a baseline)|, the baseline being
the quietest (lowest-power) window shortly before the window of interest.
The CWT acts per channel, so the features of "x with channel j replaced" are
x's features with channel j's (freq × time) plane taken from the baseline's:
one feature computation for the baseline, then all C occlusions as one batch.
"""
from __future__ import annotations

import numpy as np

from .channels import REGIONS, region_members
from .features import BANDS_HZ


def quietest_window(candidates: list[np.ndarray]) -> int:
    """Index of the lowest-power candidate window. Each : (n_channels, n_samples)."""
    powers = [float(np.mean(np.square(c))) for c in candidates]
    return int(np.argmin(powers))


def occluded_batch(features: np.ndarray, baseline_features: np.ndarray) -> np.ndarray:
    """(1 + C, C, F, T) batch: row 0 is `features`, row 1 + j is `features` with
    channel j taken from the baseline. Built in one allocation (it is the
    monitor's largest array).

    features, baseline_features : ndarray, shape (n_channels, n_freqs, n_columns).
    """
    c = features.shape[0]
    batch = np.empty((c + 1, *features.shape), dtype=np.float32)
    batch[:] = features
    idx = np.arange(c)
    batch[idx + 1, idx] = baseline_features
    return batch


def channel_importance(scorer, features: np.ndarray, baseline_features: np.ndarray) -> tuple[float, np.ndarray]:
    """(p(x), CI) with CI : ndarray, shape (n_channels,); one ONNX call for x and all occlusions."""
    p = scorer.predict_proba(occluded_batch(features, baseline_features))
    return float(p[0]), np.abs(p[0] - p[1:])


def region_importance(ci: np.ndarray, channels: list[str]) -> dict[str, float]:
    """Mean CI over the channels of each of the five scalp regions (0 for an empty region)."""
    members = region_members(channels)
    return {r: float(np.mean(ci[idx])) if idx else 0.0 for r, idx in members.items()}


def band_region_matrix(fi: dict[str, float], ri: dict[str, float]) -> np.ndarray:
    """FRI = FI ⊗ RI, shape (5 bands, 5 regions), in BANDS_HZ × REGIONS order."""
    return np.outer([fi[b] for b in BANDS_HZ], [ri[r] for r in REGIONS])


__all__ = ["quietest_window", "occluded_batch", "channel_importance", "region_importance",
           "band_region_matrix", "REGIONS", "BANDS_HZ"]
