"""Fitting the classical peers (runtime.peers) on training windows.

The line-length detector has no parameters but its threshold; the band-power
detector is an L2 logistic regression on standardised per-channel relative
band powers (scikit-learn). Both thresholds are chosen on the same validation
windows, with the same rule, as the model's: nothing of the test patient is seen.
"""
from __future__ import annotations

import numpy as np

from ictal.runtime.peers import ClassicalPeers

from .data import binary_target, unambiguous


def fit_peers(train, val, choose) -> ClassicalPeers:
    """Fit on `train`, threshold on `val` (WindowSets) with `choose(y, score) → threshold`."""
    from sklearn.linear_model import LogisticRegression

    keep = unambiguous(train.label)
    y = binary_target(train.label[keep])
    z = train.band_power[keep].reshape(int(keep.sum()), -1).astype(np.float64)
    mean, std = z.mean(axis=0), z.std(axis=0) + 1e-6
    lr = LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000)
    lr.fit((z - mean) / std, y)
    peers = ClassicalPeers(float("nan"), [float(v) for v in lr.coef_[0]], float(lr.intercept_[0]),
                           [float(v) for v in mean], [float(v) for v in std], float("nan"))
    vkeep = unambiguous(val.label)
    yv = binary_target(val.label[vkeep])
    scores = peers.scores(val.line_length[vkeep], val.band_power[vkeep])
    peers.line_length_threshold = float(choose(yv, scores["line_length"]))
    peers.band_power_threshold = float(choose(yv, scores["band_power"]))
    return peers
