"""Training, cross-validation and checkpoints.

Splits are by recording group (leave-one-seizure-recording-out) or by
patient, never a random split of overlapping windows. The decision
threshold is chosen on the validation split only and saved with the model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ictal.runtime.artefacts import OCULAR_EXCESS_DECADES, ocular_derivation_indices
from ictal.runtime.bandwidth import check_rows
from ictal.runtime.errors import DataError, ModelError
from ictal.runtime.features import FeatureSpec, contiguous_rows
from ictal.runtime.metrics import auroc, choose_threshold, threshold_for_specificity

from .data import WindowSet, binary_target, take_rows, unambiguous
from .evaluate import json_safe
from .resnet import BandSummaryBranch, CWTResNet, inference_logits

FT_CHANNELS = ("T7-FT9", "FT9-FT10", "FT10-T8")


@dataclasses.dataclass
class TrainConfig:
    width: float = 0.125
    epochs: int = 25
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 4
    seed: int = 0
    max_shift_s: float = 1.0
    scale_range: tuple[float, float] = (0.7, 1.4)
    channel_dropout: float = 0.1
    ft_dropout: float = 0.5  # zero FT9/FT10 derivations together: data sets without them exist
    # Artefacts that the healthy negatives carry and seizure recordings rarely do, added to
    # positives and negatives alike so that they stop telling the classes apart:
    channel_gain_db: float = 6.0  # per-channel gain change, ± dB (amplitude)
    muscle_prob: float = 0.3  # a 20–40 Hz burst on a few channels (EMG)
    pop_prob: float = 0.2  # a broadband low-frequency transient on one channel (electrode pop)
    # "source-class": every (data set, class) cell weighs the same, so a seizure data set's own
    # negatives count as much as hours of healthy EEG; "class": positives weighted up to the negatives
    balance: str = "source-class"
    # a hybrid model: the ResNet on channel-window-relative log power plus a linear branch on
    # montage-free absolute and relative band-power summaries (needs spec relative "none")
    summary_branch: bool = False
    summary_c: float = 0.1  # inverse L2 strength of the summary branch's logistic regression
    resnet_weight: float = 1.0  # logit = summary + resnet_weight x ResNet (hybrid only)
    spectral_entropy: bool = True  # the summary branch also sees each channel's spectral entropy
    # a channel this many decades of power below the window's median channel is flat (disconnected,
    # bridged or zero-filled): the summary branch reads it as the median channel; None = no guard
    flat_channel_log10: float | None = 1.5
    # ... through a logistic ramp of this scale (decades), so that a channel right at the limit
    # cannot swing p (neo07's P8-O2 sits at 1.49-1.50 decades: a hard step moved p 0.85 -> 0.26)
    flat_channel_ramp_log10: float = 0.1
    # the summary regression may not weigh absolute band power against seizure: with free signs it
    # learnt "more power, less seizure" (the babies' seizures are quieter than the children's and
    # the adults' background), a population shortcut that a patient's own seizure contradicts
    nonnegative_power_weights: bool = True
    # a second, gamma-free summary regression that takes over on windows whose top band looks
    # low-passed (runtime.bandwidth's check, per window, as a ramp): low-passed EEG looks "slower"
    # to the full regression (a 30-Hz low-pass took held-out healthy false alarms 141 -> 412 per 24 h)
    band_limited_fallback: bool = True
    # a window in which no derivation alone looks like seizure is pushed below threshold (the
    # summary branch's `channel_veto`): healthy adults' EMG over low delta read as a seizure in
    # every held-out file of one subject, from one derivation's fast activity and another's slow waves
    channel_veto: bool = True
    channel_veto_c: float = 0.01  # inverse L2 strength of the per-derivation score (strong: a robust direction)
    channel_veto_tau: float = 0.25  # temperature of the soft maximum over derivations
    channel_veto_depth: float = 10.0  # logit lost by a window whose evidence lies well below the floor
    channel_veto_scale: float = 0.1  # width of that step
    # a summary that may only lower the logit: frontopolar delta more than 3 times (log10 3 decades)
    # the median of the derivations behind them, as eye blinks and movements make (healthy adults'
    # blinks during motor tasks were most of the false alarms left under the veto)
    ocular_delta: bool = True
    ocular_hinge_log10: float = OCULAR_EXCESS_DECADES
    # threshold rule on validation windows: "youden", or "specificity:0.99" (the lowest threshold
    # whose validation specificity reaches 0.99 — fewer false alarms at the bedside)
    threshold_rule: str = "youden"
    device: str = "auto"  # "auto" (CUDA where there is one), "cpu" or "cuda"; mixed precision on CUDA
    loader_workers: int = 0  # DataLoader worker processes reading and augmenting windows


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_normalisation(x, spec: FeatureSpec) -> tuple[list[float], list[float]]:
    """Per-frequency mean/std of the spec's relative log power, read in chunks.
    x : (n_windows, n_channels, n_freqs, n_columns), an ndarray or cached features on disk."""
    from .cache import stream_stats

    return stream_stats(x, spec)


def sample_weights(y: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
    """Per-window loss weights (mean 1): each class, or each (source, class) cell, weighs the same in total."""
    cells = np.array([f"{s}|{int(v)}" for s, v in zip(source, y)]) if source is not None else y.astype(int).astype(str)
    names, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return (w * len(w) / w.sum()).astype(np.float32)


def choose_threshold_by(rule: str):
    """`rule` ('youden' or 'specificity:S') → choose(y_true, scores) → threshold."""
    if rule == "youden":
        return choose_threshold
    if rule.startswith("specificity:"):
        try:
            target = float(rule.split(":", 1)[1])
        except ValueError:
            target = float("nan")
        if not 0 < target < 1:
            raise ValueError(f"threshold rule {rule!r}: the specificity must be a number between 0 and 1")
        return lambda y, p: threshold_for_specificity(y, p, target)
    raise ValueError(f"threshold rule {rule!r}: expected 'youden' or 'specificity:S' (e.g. specificity:0.99)")


class Augmenter:
    """Augmentation on un-normalised log10 power, to positives and negatives alike: time shift,
    amplitude scaling, per-channel gain, channel drop-out, muscle (20–40 Hz) bursts, electrode pops.

    Power adds for independent sources, so an artefact of power B enters as log10(10^x + B).
    """

    def __init__(self, spec: FeatureSpec, cfg: TrainConfig, rng: np.random.Generator | None = None):
        self.spec, self.cfg, self.rng = spec, cfg, rng
        self.floor = math.log10(spec.log_eps)  # what a zero-filled channel looks like
        self.ft_idx = [i for i, c in enumerate(spec.channels) if c in FT_CHANNELS]
        f = np.asarray(spec.freqs_hz)
        self.muscle_rows = np.flatnonzero(f >= 20.0)
        self.pop_shape = np.where(f <= 12.0, 1.0 / f, 0.0)[:, None]  # 1/f below 12 Hz

    def _add_power(self, plane: np.ndarray, rows, cols, log_level: np.ndarray) -> None:
        sub = plane[np.ix_(rows, cols)]
        plane[np.ix_(rows, cols)] = np.log10(10.0 ** sub + 10.0 ** log_level)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = x.copy()
        n, c, _, t = x.shape
        cfg, rng = self.cfg, (rng or self.rng)
        max_shift = int(cfg.max_shift_s * self.spec.columns_per_s)
        for i in range(n):
            if max_shift:
                x[i] = np.roll(x[i], rng.integers(-max_shift, max_shift + 1), axis=-1)
            x[i] += 2 * math.log10(rng.uniform(*cfg.scale_range))
            if cfg.channel_gain_db:
                x[i] += (rng.uniform(-cfg.channel_gain_db, cfg.channel_gain_db, c) / 10.0)[:, None, None]
            if rng.random() < cfg.muscle_prob and self.muscle_rows.size:
                chans = rng.choice(c, size=rng.integers(1, min(c, 4) + 1), replace=False)
                span = int(rng.uniform(0.5, 4.0) * self.spec.columns_per_s)
                start = rng.integers(0, max(1, t - span))
                cols = np.arange(start, min(t, start + span))
                for ch in chans:  # 3–100x the channel's own 20–40 Hz power
                    level = np.median(x[i, ch][self.muscle_rows]) + rng.uniform(0.5, 2.0)
                    self._add_power(x[i, ch], self.muscle_rows, cols, np.full((1, 1), level))
            if rng.random() < cfg.pop_prob:
                ch, t0 = rng.integers(c), rng.integers(t)
                cols = np.arange(t0, min(t, t0 + int(self.spec.columns_per_s)))
                decay = np.exp(-(cols - t0) / (0.3 * self.spec.columns_per_s))[None, :]
                rows = np.flatnonzero(self.pop_shape[:, 0] > 0)
                level = np.median(x[i, ch][rows]) + rng.uniform(1.0, 2.5)
                self._add_power(x[i, ch], rows, cols,
                                level + np.log10(self.pop_shape[rows] / self.pop_shape[rows].max() * decay + 1e-12))
            drop = rng.random(c) < cfg.channel_dropout
            if self.ft_idx and rng.random() < cfg.ft_dropout:
                drop[self.ft_idx] = True
            x[i, drop] = self.floor
        return x


def band_rows(spec: FeatureSpec) -> list[tuple[int, int]]:
    """Each EEG band's rows of the CWT image, as (first, stop)."""
    rows = []
    for name, mask in spec.band_slices().items():
        run = contiguous_rows(mask)
        if run is None:
            raise ValueError(f"feature spec: the {name} band has no contiguous run of CWT frequencies")
        rows.append(run)
    return rows


def ocular_derivations(channels: list[str], hinge_log10: float) -> dict | None:
    """The summary branch's `ocular_delta` for a montage (`runtime.artefacts.ocular_derivation_indices`:
    its frontopolar links against every derivation not near the eyes); None for a montage without them."""
    derivations = ocular_derivation_indices(channels)
    if derivations is None:
        return None
    return {"frontopolar": derivations[0], "reference": derivations[1], "hinge_log10": hinge_log10}


def build_model(spec: FeatureSpec, cfg: TrainConfig) -> CWTResNet:
    """The network `cfg` asks for, for a spec with fitted normalisation."""
    if not cfg.summary_branch:
        return CWTResNet(len(spec.channels), cfg.width)
    if spec.relative != "none":
        raise ValueError(f"a summary-branch model derives relative power itself; its feature spec needs relative "
                         f"'none', not {spec.relative!r}")
    model = CWTResNet(len(spec.channels), cfg.width, band_rows=band_rows(spec), n_freqs=len(spec.freqs_hz),
                      resnet_weight=cfg.resnet_weight, spectral_entropy=cfg.spectral_entropy,
                      flat_channel_log10=cfg.flat_channel_log10, flat_channel_ramp_log10=cfg.flat_channel_ramp_log10,
                      band_limited_rows=check_rows(spec) if cfg.band_limited_fallback else None,
                      channel_veto={"tau": cfg.channel_veto_tau, "depth": cfg.channel_veto_depth,
                                    "scale": cfg.channel_veto_scale} if cfg.channel_veto else None,
                      ocular_delta=ocular_derivations(spec.channels, cfg.ocular_hinge_log10) if cfg.ocular_delta else None)
    model.set_input_normalisation(spec.norm_mean, spec.norm_std)
    return model


def weighted_logistic_regression(z: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float,
                                 nonnegative=(), nonpositive=()) -> tuple[np.ndarray, float]:
    """scikit-learn's L2 logistic regression objective, C·Σ wᵢ·logloss + ½‖β‖² (intercept not
    penalised), minimised by L-BFGS-B with the coefficients of columns `nonnegative` kept ≥ 0 and
    those of `nonpositive` ≤ 0.

    z : (n, d) features, y : (n,) 0/1 targets, weights : (n,) sample weights.
    Returns (coef (d,), intercept).
    """
    from scipy.optimize import minimize

    z, y, w = np.asarray(z, float), np.asarray(y, float), np.asarray(weights, float)
    d = z.shape[1]

    def loss_and_grad(beta):
        logit = z @ beta[:d] + beta[d]
        loss = c * np.sum(w * (np.logaddexp(0.0, logit) - y * logit)) + 0.5 * beta[:d] @ beta[:d]
        residual = c * w * (0.5 * (1.0 + np.tanh(0.5 * logit)) - y)  # tanh form: a sigmoid that cannot overflow
        return loss, np.append(z.T @ residual + beta[:d], residual.sum())

    low, high = set(nonnegative), set(nonpositive)
    fit = minimize(loss_and_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   bounds=[(0.0 if i in low else None, 0.0 if i in high else None) for i in range(d + 1)],
                   options={"maxiter": 5000, "maxfun": 20000, "ftol": 1e-12, "gtol": 1e-8})
    return fit.x[:d], float(fit.x[d])


def fit_summary_branch(model: CWTResNet, x, y: np.ndarray, weights: np.ndarray, c: float,
                       chunk: int = 256, nonnegative_power_weights: bool = True) -> None:
    """Fit a hybrid model's summary branch as a weighted, L2-regularised logistic regression on
    un-augmented training windows (x: log10 power), then freeze it. With
    `nonnegative_power_weights`, no absolute band-power summary may lower the logit."""
    branch = model.summary
    with torch.no_grad():
        feats = torch.cat([branch.summaries(torch.as_tensor(np.asarray(x[i:i + chunk]), dtype=torch.float32))
                           for i in range(0, len(y), chunk)]).double().numpy()
    mean, std = feats.mean(0), feats.std(0)
    std[std == 0] = 1.0
    z = (feats - mean) / std
    nonnegative = list(branch.absolute_power_columns) if nonnegative_power_weights else []
    nonpositive = branch.ocular_columns  # eye artefact may only argue against seizure
    coef, intercept = weighted_logistic_regression(z, y, weights, c, nonnegative=nonnegative, nonpositive=nonpositive)
    with torch.no_grad():
        branch.feature_mean.copy_(torch.as_tensor(mean))
        branch.feature_std.copy_(torch.as_tensor(std))
        branch.linear.weight.copy_(torch.as_tensor(coef[None]))
        branch.linear.bias.copy_(torch.as_tensor([intercept]))
    if branch.band_limited_rows is not None:
        dropped = set(branch.top_band_columns)  # a property: computed once, not per column
        kept = [j for j in range(z.shape[1]) if j not in dropped]
        kept_coef, kept_intercept = weighted_logistic_regression(
            z[:, kept], y, weights, c, nonnegative=[i for i, j in enumerate(kept) if j in nonnegative],
            nonpositive=[i for i, j in enumerate(kept) if j in nonpositive])
        # one threshold serves both: the fallback's Youden threshold on these windows moved onto the full one's
        kept_intercept += (choose_threshold(y, z @ coef + intercept)
                           - choose_threshold(y, z[:, kept] @ kept_coef + kept_intercept))
        fallback = np.zeros(z.shape[1])
        fallback[kept] = kept_coef
        with torch.no_grad():
            branch.band_limited_linear.weight.copy_(torch.as_tensor(fallback[None]))
            branch.band_limited_linear.bias.copy_(torch.as_tensor([kept_intercept]))
    for p in branch.parameters():
        p.requires_grad_(False)


def _per_channel_features(branch, x, chunk: int = 256) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([branch.per_channel_features(torch.as_tensor(np.asarray(x[i:i + chunk]), dtype=torch.float32))
                          for i in range(0, len(x), chunk)]).double().numpy()


def fit_channel_veto(model: CWTResNet, x, y: np.ndarray, weights: np.ndarray, c: float) -> None:
    """Fit the summary branch's per-derivation score (`BandSummaryBranch.channel_veto`) and set its
    floor to the lowest evidence of any seizure window among these (training) windows.

    One weight vector for every derivation, pooled by the branch's soft maximum: multiple-instance
    learning (a seizure window needs one seizure-like derivation, a non-seizure window none),
    weighted, L2-regularised (`c` as in `weighted_logistic_regression`), by L-BFGS in float64.
    Absolute band power may only raise the score, as in the regression."""
    branch = model.summary
    feats = torch.as_tensor(_per_channel_features(branch, x))  # (n, channels, m)
    flat = feats.reshape(-1, feats.shape[-1])
    mean, std = flat.mean(0), flat.std(0)
    std[std == 0] = 1.0
    z = (feats - mean) / std
    m, k = feats.shape[-1], len(branch.band_rows)
    free = torch.zeros(m, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    absolute = torch.arange(m) < k  # absolute band power: weights kept ≥ 0 through a softplus

    def coefficients():
        return torch.where(absolute, nn.functional.softplus(free), free)

    tau = branch.channel_veto["tau"]
    target, w = torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(weights, dtype=torch.float64)

    def pooled(coef):
        return tau * torch.logsumexp((z @ coef) / tau, dim=1) + bias

    opt = torch.optim.LBFGS([free, bias], max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        coef = coefficients()
        loss = c * (w * nn.functional.binary_cross_entropy_with_logits(pooled(coef), target, reduction="none")).sum()
        loss = loss + 0.5 * (coef ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        coef = coefficients()
        branch.channel_feature_mean.copy_(mean.float())
        branch.channel_feature_std.copy_(std.float())
        branch.channel_weight.copy_(coef.float())
        branch.channel_bias.copy_(bias.float())
        branch.channel_floor.zero_()
        evidence = branch.channel_evidence(None, feats.float())
        branch.channel_floor.fill_(float(evidence[torch.as_tensor(y) > 0.5].min()))


def lower_channel_floor(model: CWTResNet, x, y: np.ndarray) -> None:
    """Lower the veto's floor to the evidence of any seizure window among `x` (validation windows)
    that lies below it: no seizure the model has been shown is vetoed."""
    branch = getattr(model, "summary", None)
    if branch is None or branch.channel_veto is None or not np.any(y > 0.5):
        return
    with torch.no_grad():
        seizures = take_rows(x, np.flatnonzero(y > 0.5))
        evidence = branch.channel_evidence(None, torch.as_tensor(_per_channel_features(branch, seizures)).float())
        branch.channel_floor += min(0.0, float(evidence.min()))


@contextlib.contextmanager
def without_channel_veto(model: nn.Module):
    """The model's (or its summary branch's) logits without its channel veto, e.g. to choose a
    threshold on the regression alone: a veto that lowers the validation negatives would otherwise
    let Youden's threshold fall."""
    branch = model if isinstance(model, BandSummaryBranch) else getattr(model, "summary", None)
    if branch is None:
        yield model
        return
    branch.veto_active = False
    try:
        yield model
    finally:
        branch.veto_active = True


def _normaliser(spec: FeatureSpec):
    return lambda x: torch.as_tensor(spec.normalise(x))


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA where available, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build or machine has no CUDA device (try --device auto)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def distributed() -> tuple[int, int]:
    """(rank, world size) of the process group torchrun started, or (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str = "auto") -> tuple[int, int]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dev = resolve_device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return distributed()


@torch.no_grad()
def predict_proba(model: nn.Module, spec: FeatureSpec, x, batch_size: int = 64) -> np.ndarray:
    """p(seizure) per window. x : (n_windows, n_channels, n_freqs, n_columns) un-normalised log power
    (an ndarray or cached features on disk, read a batch at a time)."""
    model.eval()
    device = next(model.parameters()).device
    norm = _normaliser(spec)
    with torch.no_grad():
        out = [torch.sigmoid(inference_logits(model, norm(x[i:i + batch_size]).to(device))).float().cpu().numpy()
               for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _bar(frac: float, width: int = 20) -> str:
    k = int(round(frac * width))
    return "[" + "#" * k + "." * (width - k) + "]"


class WindowDataset(torch.utils.data.Dataset):
    """Training windows, read one at a time (from memory or the on-disk cache), augmented and normalised.

    A window's augmentation draws from an RNG seeded by (seed, epoch, window index), so a sample is
    the same whichever DataLoader worker or DDP rank reads it, and a resumed run repeats it.
    """

    def __init__(self, x, y: np.ndarray, weights: np.ndarray, spec: FeatureSpec, augment: "Augmenter", seed: int):
        self.x, self.y, self.weights, self.spec, self.augment, self.seed = x, y, weights, spec, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        x = self.spec.normalise(self.augment(np.asarray(self.x[int(i)])[None], rng))[0]
        return torch.from_numpy(x), torch.tensor(self.y[i]), torch.tensor(self.weights[i]), int(i)


def _signature(cfg: TrainConfig, spec: FeatureSpec, n_train: int, n_val: int) -> str:
    """What a resumed run must share with the run that saved its state."""
    keep = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("epochs", "patience", "loader_workers")}
    text = json.dumps({"cfg": keep, "spec": spec.to_dict(), "n_train": n_train, "n_val": n_val}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_model(train: WindowSet, val: WindowSet, spec: FeatureSpec, cfg: TrainConfig = TrainConfig(),
                log=print, state_path: str | Path | None = None):
    """Train one model; early stopping on validation loss; threshold on validation windows.

    Windows stream through a DataLoader (features may stay on disk, see models.cache). Under
    torchrun the model is wrapped in DistributedDataParallel: each rank trains on its share of
    every epoch's permutation (DistributedSampler), cfg.batch_size is the global batch, and
    every rank validates on the whole validation split, so all ranks stop at the same epoch
    with the same weights. With `state_path`, the state is saved after every epoch and a run
    started again with the same path resumes after the last finished epoch.

    Returns (model on the CPU in eval mode, spec with fitted normalisation, threshold, history).
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    seed_everything(cfg.seed)
    rank, world = distributed()
    device = resolve_device(cfg.device)
    amp = device.type == "cuda"
    keep = unambiguous(train.label)
    xtr = take_rows(train.x, np.flatnonzero(keep))
    ytr = binary_target(train.label[keep])
    src = np.asarray(train.source)[keep]
    vkeep = unambiguous(val.label)
    xva = take_rows(val.x, np.flatnonzero(vkeep))
    yva = binary_target(val.label[vkeep])
    if ytr.sum() == 0 or ytr.sum() == len(ytr):
        raise DataError(f"training split ({len(ytr)} windows) needs both seizure and non-seizure windows")
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} is the global batch; it must divide by the {world} ranks")
    mean, std = fit_normalisation(xtr, spec)
    spec = FeatureSpec(**{**spec.to_dict(), "norm_mean": mean, "norm_std": std})
    norm = _normaliser(spec)
    pos_weight = torch.tensor((len(ytr) - ytr.sum()) / ytr.sum())
    if cfg.balance == "source-class":
        weights = sample_weights(ytr, src)
    else:  # positives weighted up to the negatives
        weights = np.where(ytr > 0, float(pos_weight), 1.0).astype(np.float32)
        weights *= len(weights) / weights.sum()
    model = build_model(spec, cfg)
    if model.summary is not None:
        fit_summary_branch(model, xtr, ytr, weights, cfg.summary_c,
                           nonnegative_power_weights=cfg.nonnegative_power_weights)
        if model.summary.channel_veto is not None:
            fit_channel_veto(model, xtr, ytr, weights, cfg.channel_veto_c)
    model = model.to(device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    bce = nn.BCEWithLogitsLoss(reduction="none")
    val_loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    dataset = WindowDataset(xtr, ytr, weights, spec, Augmenter(spec, cfg), cfg.seed)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size // world, sampler=sampler,
                        num_workers=cfg.loader_workers, pin_memory=amp)
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    best = (math.inf, None, 0)
    history: list[dict] = []
    start = 1
    state_path = Path(state_path) if state_path else None
    signature = _signature(cfg, spec, len(ytr), len(yva))
    if state_path and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state.get("signature") != signature:
            raise DataError(f"{state_path}: saved by a run with other data or settings; delete it to start afresh")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        best = (state["best_loss"], state["best_state"], state["best_epoch"])
        history, start = state["history"], state["epoch"] + 1
        log(f"resuming {state_path.name} after epoch {state['epoch']}"
            + (" (it had stopped early)" if state.get("finished") else ""))
        if state.get("finished"):
            start = cfg.epochs + 1

    def validate():
        model.eval()
        with torch.no_grad():
            logits = torch.cat([inference_logits(model, norm(xva[i:i + 64]).to(device)).float().cpu()
                                for i in range(0, len(xva), 64)]) if len(xva) else None
        return logits, float(val_loss_fn(logits, torch.as_tensor(yva))) if logits is not None else float("nan")

    if model.summary is not None and start == 1:
        # the fitted summary branch alone (the ResNet's output layer starts at zero) is "epoch 0":
        # the ResNet is kept only from an epoch that beats it on validation loss
        _, vloss0 = validate()
        best = (vloss0, {k: v.detach().clone() for k, v in model.state_dict().items()}, 0)
        log(f"epoch  0: summary branch alone, val_loss {vloss0:.4f}")
    tty = sys.stdout.isatty() and rank == 0
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        losses = []
        n_batches = len(loader)
        for b, (xb, yb, wb, _) in enumerate(loader):
            if len(yb) < 2:
                continue  # BatchNorm needs two samples (every rank's last batch has the same size)
            xb, yb, wb = xb.to(device, non_blocking=True), yb.to(device), wb.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = (bce(net(xb).float(), yb) * wb).mean()
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
            if tty:
                print(f"\repoch {epoch:2d}/{cfg.epochs} {_bar((b + 1) / n_batches)} loss {np.mean(losses):.4f}",
                      end="", flush=True)
        if world > 1:  # BatchNorm running statistics: every rank takes rank 0's, so all validate alike
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        logits, vloss = validate()
        if world > 1:  # one early-stopping decision for all ranks: rank 0's
            shared = torch.tensor([vloss], device=device)
            dist.broadcast(shared, 0)
            vloss = float(shared)
        vauc = auroc(yva, torch.sigmoid(logits).numpy()) if logits is not None else float("nan")
        history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                        "val_loss": vloss, "val_auroc": vauc, "seconds": time.perf_counter() - t0})
        prefix = "\r" if tty else ""
        if rank == 0:
            log(f"{prefix}epoch {epoch:2d}/{cfg.epochs} {_bar(1.0)} loss {history[-1]['loss']:.4f} "
                f"val_loss {vloss:.4f} val_auroc {vauc:.3f} ({history[-1]['seconds']:.1f} s)")
        stop = False
        if vloss < best[0] - 1e-4 or best[1] is None:
            best = (vloss, {k: v.detach().clone() for k, v in model.state_dict().items()}, epoch)
        elif epoch - best[2] >= cfg.patience:
            if rank == 0:
                log(f"early stop: validation loss has not improved for {cfg.patience} epochs (best epoch {best[2]})")
            stop = True
        if state_path and rank == 0:
            tmp = state_path.with_suffix(".tmp")
            torch.save({"signature": signature, "epoch": epoch, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "scaler": scaler.state_dict(), "best_loss": best[0],
                        "best_state": best[1], "best_epoch": best[2], "history": history,
                        "finished": stop}, tmp)  # early-stopped; a resume with more epochs goes on otherwise
            tmp.replace(state_path)  # a crash while saving leaves the previous epoch's state
        if stop:
            break
    model.load_state_dict(best[1])
    model = model.cpu().eval()
    with without_channel_veto(model):  # the veto only ever lowers a score; it does not move the threshold
        threshold = choose_threshold_by(cfg.threshold_rule)(yva, predict_proba(model, spec, xva)) if len(xva) else 0.5
    if len(xva):
        lower_channel_floor(model, xva, yva)
    return model, spec, threshold, history


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | Path, model: CWTResNet, spec: FeatureSpec, threshold: float, **info) -> Path:
    """`path` (.pt: plain state dict) + `path`.json (feature spec, config, threshold, provenance)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    meta = {"spec": spec.to_dict(), "model": model.config, "threshold": float(threshold),
            "weights_sha256": digest, **info}
    # cross-validation summaries hold NaN (e.g. sensitivity without seizures): null keeps it JSON
    sidecar(path).write_text(json.dumps(json_safe(meta), indent=2, allow_nan=False) + "\n")
    spec.save(path.with_suffix(".spec.json"))
    return path


def sidecar(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def load_checkpoint(path: str | Path):
    """Returns (model in eval mode, spec, threshold, meta). Never unpickles code."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise ModelError(f"{path}: this is an exported ONNX model; this needs the .pt checkpoint it was exported "
                         f"from (Grad-CAM and training run on the torch model), e.g. --model {path.with_suffix('.pt')}")
    if not path.is_file() or not sidecar(path).is_file():
        raise ModelError(f"{path}: checkpoint needs both {path.name} and {sidecar(path).name}")
    try:
        meta = json.loads(sidecar(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{sidecar(path)}: not valid JSON ({e}); expected the sidecar `ictal train` writes") from None
    if not isinstance(meta, dict) or not meta.get("weights_sha256"):
        raise ModelError(f"{sidecar(path)}: no 'weights_sha256', so {path.name} cannot be verified; "
                         "expected the sidecar `ictal train` writes")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if meta["weights_sha256"] != digest:
        raise ModelError(f"{path}: SHA-256 {digest[:12]}… does not match {sidecar(path).name} "
                         f"({meta['weights_sha256'][:12]}…); the weights were changed or corrupted")
    spec = FeatureSpec.from_dict(meta["spec"], where=str(sidecar(path)))
    model = CWTResNet(**meta["model"])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(f"{path}: not a plain state dict of tensors; refusing to unpickle it, since that can run "
                         f"code ({str(e).splitlines()[0]})") from None
    model.load_state_dict(state)
    model.eval()
    return model, spec, float(meta["threshold"]), meta
