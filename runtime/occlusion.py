"""Occlusion explanations, torch-free, one batched ONNX call, in logit space.

Given a window x and a baseline b (the quietest 10-s EEG shortly before; with no
seizure-free EEG at all, the window's own median channel), the
batch holds x itself and x with a part taken from b: each channel; each
(band, region) cell, i.e. that region's channels' CWT rows in that band; each
whole region; each whole band. The CWT acts per channel and per frequency, so
every occluded window is assembled from x's and b's log power; nothing is
recomputed. The batch is normalised as one array (the spec's `relative` step
sees the occluded power) and scored in one call.

Importance is the drop of the logit when the part is replaced:
Δlogit = logit(x) − logit(x occluded); positive = the part carried seizure
evidence, negative = it argued against. Δp is kept beside it, but once p
saturates near 1 it is ~0 for every part, so rankings use Δlogit.

- Region importance RI = Δlogit of replacing the whole region. Replacing one
  channel at a time understates a discharge seen on several neighbouring
  derivations (the others still carry it), and the method's |Δ| ranks a region
  whose removal *raises* the score as important: both failed the known-answer
  test (a 5-Hz discharge on the left-temporal chain).
- Channel Δlogit (per derivation) picks the EEG traces to show; CI = |Δlogit|.
- FRI = FI_rel ⊗ max(RI, 0) (Eq. 14 of the method, FI from Grad-CAM): rank 1 by
  construction.
- The joint matrix J[b, r] = Δlogit of occluding band b in region r: what a
  reader takes a band × region matrix to mean.

A model with a band-limited fallback blends two regressions by a weight read from
the window's top band. Every occluded copy is blended with the window's own weight:
otherwise replacing gamma with a quieter baseline's can make a copy look low-passed
and move it to the gamma-free regression, and the band's Δlogit would measure that
switch (chb01_03 against its quietest pre-ictal window: gamma −1.26 instead of −3.82).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .channels import REGIONS, region_members, unique_labels
from .features import BANDS_HZ, FeatureSpec


WITHIN_WINDOW_KIND = "the window's median channel (no seizure-free EEG available)"


# Decades below the flat-channel limit where "quiet" starts: filling one band of a channel this
# close to the limit can carry it across, and the cell would measure the guard, not the EEG.
QUIET_MARGIN_LOG10 = 0.5
DEFAULT_QUIET_LOG10 = 1.0  # a model exported without its guard's limit (the 1.5-decade guard's)


def quiet_limit_log10(flat_channel_guard: dict | None) -> float:
    """How far below the median channel a channel counts as quiet for `within_window_reference`:
    the model's flat-channel limit less max(margin, 5 ramp scales), where its ramp is still ≥ 0.7 %
    flat. The shipped guard (1.5 decades, ramp 0.1) gives 1.0."""
    if flat_channel_guard is None:
        return DEFAULT_QUIET_LOG10
    margin = max(QUIET_MARGIN_LOG10, 5.0 * flat_channel_guard["ramp_log10"])
    return max(flat_channel_guard["limit_log10"] - margin, 0.0)


def within_window_reference(log_power: np.ndarray, spec: FeatureSpec,
                            quiet_log10: float = DEFAULT_QUIET_LOG10) -> np.ndarray:
    """A baseline from the window itself, for when no seizure-free EEG exists: every channel
    becomes the window's median channel (per frequency and time), so occlusion asks how a part
    differs from the rest of the head. Silence (zeros) instead reads every occluded band as a
    dead electrode: cells of −20 logit that say nothing about the EEG.

    A channel whose total band power lies more than `quiet_log10` decades below the median
    channel keeps its own power and is left out of the median: the model reads such a channel
    as flat, and filling it from the median channel would measure that reading, not the EEG.

    log_power : ndarray, shape (n_channels, n_freqs, n_columns), un-normalised log10 power.
    """
    bands = np.stack([log_power[:, rows].mean(axis=(1, 2)) for rows in spec.band_slices().values()], -1)
    total = np.log10(np.power(10.0, bands).sum(-1))
    quiet = total < np.median(total) - quiet_log10
    reference = np.empty_like(log_power)
    reference[:] = np.median(log_power[~quiet], axis=0)
    reference[quiet] = log_power[quiet]
    return reference


def baseline_log_power(transform, spec: FeatureSpec, log_power: np.ndarray, baseline_eeg: np.ndarray | None,
                       flat_channel_guard: dict | None = None):
    """What occlusion takes parts from: the baseline EEG's log power, or, with no baseline EEG
    (None), the window's own `within_window_reference`, quiet by the model's `flat_channel_guard`.
    transform: the model's CWTransform."""
    if baseline_eeg is not None:
        return transform.log_power(baseline_eeg)
    return within_window_reference(log_power, spec, quiet_limit_log10(flat_channel_guard))


def quietest_window(candidates: list[np.ndarray]) -> int:
    """Index of the lowest-power candidate window. Each : (n_channels, n_samples)."""
    powers = [float(np.mean(np.square(c))) for c in candidates]
    return int(np.argmin(powers))


def _parts(spec: FeatureSpec) -> list[tuple[list[int], np.ndarray]]:
    """(channel indices, frequency rows) replaced by each occlusion after the per-channel ones:
    25 band × region cells (band-major, BANDS_HZ × REGIONS), 5 whole regions, 5 whole bands."""
    members = list(region_members(spec.channels).values())
    bands = [np.flatnonzero(m) for m in spec.band_slices().values()]
    every_row, every_channel = np.arange(len(spec.freqs_hz)), list(range(len(spec.channels)))
    return ([(m, rows) for rows in bands for m in members] + [(m, every_row) for m in members]
            + [(every_channel, rows) for rows in bands])


def occlusion_batch(log_power: np.ndarray, baseline_log_power: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(1 + C + 35, C, F, T) log power: row 0 is x, row 1 + j is x with channel j from the
    baseline, then the parts of `_parts`. Built in one allocation (the monitor's largest array).

    log_power, baseline_log_power : ndarray, shape (n_channels, n_freqs, n_columns).
    """
    c = log_power.shape[0]
    parts = _parts(spec)
    batch = np.empty((1 + c + len(parts), *log_power.shape), dtype=np.float32)
    batch[:] = log_power
    ch = np.arange(c)
    batch[ch + 1, ch] = baseline_log_power
    for k, (members, rows) in enumerate(parts):
        if members:  # an empty region occludes nothing: Δ = 0
            cells = np.ix_(members, rows)
            batch[1 + c + k][cells] = baseline_log_power[cells]
    return batch


@dataclasses.dataclass
class Occlusion:
    """Occlusion of one window; Δ = score(x) − score(x occluded)."""

    channels: list
    logit: float
    p: float
    channel_dlogit: np.ndarray  # (n_channels,)
    channel_dp: np.ndarray  # (n_channels,)
    joint_dlogit: np.ndarray  # (5 bands, 5 regions)
    joint_dp: np.ndarray  # (5 bands, 5 regions)
    region_dlogit: np.ndarray  # (5,) whole region replaced, REGIONS order
    band_dlogit: np.ndarray  # (5,) whole band replaced on every channel, BANDS_HZ order
    # the window's band-limited weight, held for every occluded copy (None: a model without a fallback)
    gamma_free_weight: float | None = None

    @property
    def ci(self) -> np.ndarray:
        """The method's channel importance, in logit units: CI_j = |Δlogit_j|."""
        return np.abs(self.channel_dlogit)

    def region_importance(self) -> dict[str, float]:
        """RI: Δlogit when the whole region is replaced (signed)."""
        return dict(zip(REGIONS, self.region_dlogit.tolist()))

    def band_importance(self) -> dict[str, float]:
        """Δlogit when the band is replaced on every channel (signed)."""
        return dict(zip(BANDS_HZ, self.band_dlogit.tolist()))

    def top_regions(self, n: int = 2) -> list[str]:
        ri = self.region_importance()
        return sorted(ri, key=ri.get, reverse=True)[:n]

    def top_cell(self) -> tuple[str, str]:
        """(band, region) of the joint matrix's largest Δlogit."""
        b, r = np.unravel_index(int(np.argmax(self.joint_dlogit)), self.joint_dlogit.shape)
        return list(BANDS_HZ)[b], REGIONS[r]

    def to_json(self) -> dict:
        labels = unique_labels(self.channels)
        return {"p": round(self.p, 6), "logit": round(self.logit, 4),
                "channel_dlogit": dict(zip(labels, np.round(self.channel_dlogit, 5).tolist())),
                "channel_dp": dict(zip(labels, np.round(self.channel_dp, 7).tolist())),
                "region_importance": {k: round(v, 6) for k, v in self.region_importance().items()},
                "band_importance_occlusion": {k: round(v, 6) for k, v in self.band_importance().items()},
                "top_regions": self.top_regions(),
                "joint_dlogit": np.round(self.joint_dlogit, 5).tolist(),
                "joint_dp": np.round(self.joint_dp, 7).tolist(),
                "joint_top_cell": list(self.top_cell()),
                "matrix_axes": {"rows": list(BANDS_HZ), "columns": list(REGIONS)},
                **({} if self.gamma_free_weight is None else {"gamma_free_weight": round(self.gamma_free_weight, 6)})}


def occlude(scorer, spec: FeatureSpec, log_power: np.ndarray, baseline_log_power: np.ndarray) -> Occlusion:
    """Channel, band × region, region and band occlusion of one window with one scorer call.

    scorer : anything with predict_logits(normalised batch), e.g. ictal.runtime.scorer.Scorer; with
    `has_regression_outputs`, its `predict_regressions` serves instead, and every copy is blended
    with the window's own band-limited weight.
    log_power, baseline_log_power : ndarray, shape (n_channels, n_freqs, n_columns), un-normalised.
    """
    batch = spec.normalise(occlusion_batch(log_power, baseline_log_power, spec))
    held = None
    if getattr(scorer, "has_regression_outputs", False):
        full, gamma_free, weight = (np.asarray(a, np.float64) for a in scorer.predict_regressions(batch))
        held = float(weight[0])
        z = full + held * (gamma_free - full)
    else:
        z = np.asarray(scorer.predict_logits(batch), np.float64)
    p = 1.0 / (1.0 + np.exp(-z))
    dz, dp = z[0] - z[1:], p[0] - p[1:]
    c, nb, nr = log_power.shape[0], len(BANDS_HZ), len(REGIONS)
    j = slice(c, c + nb * nr)
    return Occlusion(list(spec.channels), float(z[0]), float(p[0]), dz[:c], dp[:c],
                     dz[j].reshape(nb, nr), dp[j].reshape(nb, nr),
                     dz[c + nb * nr: c + nb * nr + nr], dz[c + nb * nr + nr:], held)


def band_region_matrix(fi: dict[str, float], ri: dict[str, float]) -> np.ndarray:
    """The method's FRI = FI ⊗ max(RI, 0), shape (5 bands, 5 regions), BANDS_HZ × REGIONS order
    (a region that argued against seizure gets 0, not a negative product)."""
    return np.outer([fi[b] for b in BANDS_HZ], [max(ri[r], 0.0) for r in REGIONS])


__all__ = ["quietest_window", "within_window_reference", "quiet_limit_log10", "baseline_log_power",
           "WITHIN_WINDOW_KIND", "occlusion_batch", "occlude", "Occlusion", "band_region_matrix", "REGIONS",
           "BANDS_HZ"]
