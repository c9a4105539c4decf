"""ResNet-18 (BasicBlock x [2, 2, 2, 2]) for CWT input of shape (channels, freqs, time).

The first convolution takes the EEG channels as input planes; the head is
512→64→1 (one seizure logit). `width` scales every stage (1.0 = the
canonical 64-128-256-512; 0.125 ships).

Unlike the image ResNet, the stem and the first two stages stride along time
only: frequency is halved only in layer3 and layer4, so the last residual block
(the method's Grad-CAM layer) keeps a quarter of the frequency rows — 10 of the
default 40, at least two per EEG band — and Grad-CAM can tell delta from theta.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ictal.runtime.bandwidth import BAND_LIMITED_DECADES


# (freq, time) stride of each stage: time is reduced 16x in all, frequency 4x
STAGE_STRIDES = (1, (1, 2), (2, 2), (2, 2))


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _channel_median(per_channel: torch.Tensor) -> torch.Tensor:
    """(batch, channels, k) → (batch, k): the median over channels (mean of the middle two when even)."""
    ordered, _ = torch.sort(per_channel, dim=1)
    c = ordered.shape[1]
    return 0.5 * (ordered[:, (c - 1) // 2] + ordered[:, c // 2])


class BandSummaryBranch(nn.Module):
    """A linear detector on montage-free summaries of absolute and relative band power.

    Per channel: mean log10 power of each band over the window (absolute) and the same minus
    the channel's log10 total over the bands (relative). With `spectral_entropy`, also the
    normalised Shannon entropy of the channel's window spectrum (0: one frequency, 1: flat),
    low for a rhythmic discharge. Per feature: median, max and standard deviation over
    channels, numbers that do not depend on which channels a montage has or in what order.
    Standardised, then one linear layer.

    With `flat_channel_log10`, a channel whose total band power lies more than that many
    decades below the window's median channel (a disconnected or bridged electrode, a
    zero-filled derivation) gives each of its features the median over the channels instead,
    so it moves neither the max nor the spread. Without it, one zero-filled channel per window
    took the CHB-MIT own-window AUROC of a leave-one-patient-out screen from 0.74 to 0.34.
    With `flat_channel_ramp_log10` > 0 that switch is a logistic ramp of that scale (in decades)
    around the limit: a channel near it is read as partly flat, so p moves smoothly instead of
    jumping when rounding or a gain change carries the channel across (0 = a hard step, as in
    models built before the ramp).

    With `band_limited_rows` ((top rows), (reference rows) of the CWT), a second regression on
    the same summaries less those of the band that reaches the top rows (gamma, for the shipped
    spec) takes over on windows that look low-passed below the spec's band: its weight is a
    logistic ramp (scale `band_limited_ramp_log10`) of the window's median over channels of the
    top rows' mean log power minus the reference rows', around `band_limited_log10` (the
    runtime's `bandwidth` check per window). The full regression reads less fast activity as
    more seizure, so on EEG low-passed at 30 Hz healthy adults drew 2.9x its false alarms; the
    gamma-free one does not lean on that band. On unfiltered EEG its weight is ~0.

    With `channel_veto` ({"tau", "depth", "scale"}), a window in which no single derivation looks
    like seizure is pushed below threshold. A second linear score, the same weights on every
    derivation's own features (absolute and relative band power, entropy), is pooled over
    derivations by a soft maximum (temperature `tau`): the evidence of the most seizure-like
    derivation. Below `channel_floor`, the lowest evidence of any training seizure window, the
    logit loses up to `depth` (a logistic step of width `scale`). The summaries can combine one
    derivation's fast activity with another's slow waves into the shape of a seizure (a healthy
    adult's frontal EMG over low delta: every window of one subject alarmed); every seizure the
    model was fitted on had a derivation that looked like seizure on its own.

    With `ocular_delta` ({"frontopolar": [derivation indices], "reference": [derivation indices],
    "hinge_log10"}), one more summary: how far the frontopolar derivations' mean delta power lies
    more than `hinge_log10` decades above the median reference derivation's (0 below that), a
    column whose weight the regression may only make negative. Eye blinks and movements put large
    slow waves on the frontopolar links (FP1-F7 … FP2-F8) and little behind them; held-out healthy
    adults' blinks and eye movements during motor tasks were most of the false alarms left under the
    channel veto in leave-one-patient-out, and few training seizure windows had their delta that
    concentrated frontally (some of a baby's right frontal seizure).

    L : Tensor, shape (batch, n_channels, n_freqs, n_times), log10 power → logits (batch,).
    """

    def __init__(self, band_rows: list[tuple[int, int]], spectral_entropy: bool = False, n_freqs: int | None = None,
                 flat_channel_log10: float | None = None, flat_channel_ramp_log10: float = 0.0,
                 band_limited_rows: tuple[tuple[int, int], tuple[int, int]] | None = None,
                 band_limited_log10: float = BAND_LIMITED_DECADES, band_limited_ramp_log10: float = 0.05,
                 channel_veto: dict | None = None, ocular_delta: dict | None = None):
        super().__init__()
        self.band_rows = [tuple(int(v) for v in r) for r in band_rows]
        self.ocular_delta = None
        if ocular_delta is not None:
            front, reference = list(ocular_delta["frontopolar"]), list(ocular_delta["reference"])
            if not front or not reference or set(front) & set(reference):
                raise ValueError(f"ocular_delta needs disjoint, non-empty frontopolar and reference derivations, "
                                 f"got {ocular_delta!r}")
            self.ocular_delta = {"frontopolar": [int(i) for i in front], "reference": [int(i) for i in reference],
                                 "hinge_log10": float(ocular_delta["hinge_log10"])}
        self.spectral_entropy = bool(spectral_entropy)
        if flat_channel_log10 is not None and not flat_channel_log10 > 0:
            raise ValueError(f"flat_channel_log10 must be a positive number of decades, got {flat_channel_log10!r}")
        self.flat_channel_log10 = flat_channel_log10
        if not flat_channel_ramp_log10 >= 0:
            raise ValueError(f"flat_channel_ramp_log10 must be ≥ 0 decades, got {flat_channel_ramp_log10!r}")
        self.flat_channel_ramp_log10 = float(flat_channel_ramp_log10)
        if self.spectral_entropy and not n_freqs:
            raise ValueError("a summary branch with spectral entropy needs n_freqs (the CWT's frequency count)")
        # the entropy of a flat spectrum over all the CWT's frequencies: entropy 1
        self.max_entropy = math.log(n_freqs) if self.spectral_entropy else 1.0
        n = 6 * len(self.band_rows) + (3 if self.spectral_entropy else 0) + (1 if self.ocular_delta else 0)
        self.register_buffer("feature_mean", torch.zeros(n))  # standardisation fitted with the regression
        self.register_buffer("feature_std", torch.ones(n))
        self.linear = nn.Linear(n, 1)
        self.band_limited_rows = None
        if band_limited_rows is not None:
            (top_lo, top_hi), (ref_lo, ref_hi) = band_limited_rows
            if not (0 <= top_lo < top_hi and 0 <= ref_lo < ref_hi):
                raise ValueError(f"band_limited_rows must be ((first, stop), (first, stop)) of CWT rows, got "
                                 f"{band_limited_rows!r}")
            if not band_limited_ramp_log10 > 0:
                raise ValueError(f"band_limited_ramp_log10 must be > 0 decades, got {band_limited_ramp_log10!r}")
            self.band_limited_rows = ((int(top_lo), int(top_hi)), (int(ref_lo), int(ref_hi)))
            self.band_limited_log10 = float(band_limited_log10)
            self.band_limited_ramp_log10 = float(band_limited_ramp_log10)
            self.band_limited_linear = nn.Linear(n, 1)  # zero on `top_band_columns`
        self.channel_veto = None
        if channel_veto is not None:
            veto = {k: float(channel_veto[k]) for k in ("tau", "depth", "scale")}
            if not all(v > 0 for v in veto.values()):
                raise ValueError(f"channel_veto needs positive tau, depth and scale, got {channel_veto!r}")
            self.channel_veto = veto
            m = 2 * len(self.band_rows) + (1 if self.spectral_entropy else 0)  # features per derivation
            self.register_buffer("channel_feature_mean", torch.zeros(m))  # fitted with the veto
            self.register_buffer("channel_feature_std", torch.ones(m))
            self.register_buffer("channel_weight", torch.zeros(m))
            self.register_buffer("channel_bias", torch.zeros(()))
            self.register_buffer("channel_floor", torch.tensor(-math.inf))
        # False while a threshold is chosen on the regression alone (`models.train.without_channel_veto`)
        self.veto_active = True

    @property
    def absolute_power_columns(self) -> range:
        """Columns of `summaries` that are absolute band power (median, max and spread over channels)."""
        return range(3 * len(self.band_rows))

    @property
    def ocular_columns(self) -> list[int]:
        """Columns of `summaries` whose regression weight may only be ≤ 0: the ocular delta excess."""
        return [self.linear.in_features - 1] if self.ocular_delta else []  # the last column of `summaries`

    def ocular_excess(self, per_channel: torch.Tensor) -> torch.Tensor:
        """(batch,): decades by which the frontopolar derivations' mean delta power exceeds the median
        reference derivation's by more than the hinge (0 when it does not): eye blinks and movements."""
        delta = per_channel[..., 0]  # absolute log power of the lowest band, flat derivations as the median's
        front = delta[:, self.ocular_delta["frontopolar"]].mean(dim=1)
        reference = _channel_median(delta[:, self.ocular_delta["reference"]].unsqueeze(-1)).squeeze(-1)
        return torch.relu(front - reference - self.ocular_delta["hinge_log10"])

    @property
    def top_band_columns(self) -> list[int]:
        """Columns of `summaries` (absolute and relative power) of the bands that reach the top rows
        of the band-limited check: what a low-pass filter below the spec's band removes."""
        if self.band_limited_rows is None:
            return []
        top_lo, top_hi = self.band_limited_rows[0]
        k = len(self.band_rows)
        reaching = [b for b, (lo, hi) in enumerate(self.band_rows) if lo < top_hi and hi > top_lo]
        return sorted(g * 3 * k + stat * k + b for g in (0, 1) for stat in range(3) for b in reaching)

    def band_limited_weight(self, log_power: torch.Tensor) -> torch.Tensor:
        """0 (unfiltered) … 1 (low-passed below the band) per window: (batch,)."""
        (top_lo, top_hi), (ref_lo, ref_hi) = self.band_limited_rows
        drop = log_power[:, :, top_lo:top_hi].mean(dim=(2, 3)) - log_power[:, :, ref_lo:ref_hi].mean(dim=(2, 3))
        median_drop = _channel_median(drop.unsqueeze(-1)).squeeze(-1)
        return torch.sigmoid((self.band_limited_log10 - median_drop) / self.band_limited_ramp_log10)

    def per_channel_features(self, log_power: torch.Tensor) -> torch.Tensor:
        """(batch, channels, m): each derivation's absolute and relative band power (and entropy),
        a flat derivation's replaced by the median derivation's."""
        bands = torch.stack([log_power[:, :, lo:hi].mean(dim=(2, 3)) for lo, hi in self.band_rows], -1)
        total = torch.log10(torch.pow(10.0, bands).sum(-1, keepdim=True))
        per_channel_features = [bands, bands - total]  # each (batch, channels, k)
        if self.spectral_entropy:
            # 10^s / sum(10^s) is a softmax of s·ln 10: the spectrum's share per frequency, stably
            log_share = torch.log_softmax(log_power.mean(dim=3) * math.log(10.0), dim=-1)
            entropy = -(log_share.exp() * log_share).sum(-1) / self.max_entropy
            per_channel_features.append(entropy.unsqueeze(-1))
        if self.flat_channel_log10 is not None:
            below = _channel_median(total).unsqueeze(1) - total - self.flat_channel_log10  # (batch, channels, 1)
            # 0 = intact … 1 = flat: a ramp, or a hard step in models built before it
            flat = (torch.sigmoid(below / self.flat_channel_ramp_log10) if self.flat_channel_ramp_log10 > 0
                    else (below > 0).to(total.dtype))
            per_channel_features = [f + flat * (_channel_median(f).unsqueeze(1) - f) for f in per_channel_features]
        return torch.cat(per_channel_features, -1)

    def summaries(self, log_power: torch.Tensor) -> torch.Tensor:
        per_channel = self.per_channel_features(log_power)
        out = []
        start = 0
        for width in (len(self.band_rows), len(self.band_rows)) + ((1,) if self.spectral_entropy else ()):
            group = per_channel[..., start:start + width]
            out += [_channel_median(group), group.amax(dim=1), group.std(dim=1)]
            start += width
        if self.ocular_delta:
            out.append(self.ocular_excess(per_channel).unsqueeze(-1))
        return torch.cat(out, -1)

    def channel_scores(self, per_channel: torch.Tensor) -> torch.Tensor:
        """(batch, channels): each derivation's own seizure score (channel_veto only)."""
        z = (per_channel - self.channel_feature_mean) / self.channel_feature_std
        return z @ self.channel_weight

    def channel_margins(self, log_power: torch.Tensor, per_channel: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, channels): each derivation's score relative to the floor; ≥ 0: that derivation
        alone looks as seizure-like as the least seizure-like training seizure window did."""
        scores = self.channel_scores(self.per_channel_features(log_power) if per_channel is None else per_channel)
        return scores + self.channel_bias - self.channel_floor

    def pooled_evidence(self, margins: torch.Tensor) -> torch.Tensor:
        """(batch,): the soft maximum over derivations of their margins (below 0: no derivation looks
        as seizure-like as the least of the training seizures; the veto's input)."""
        tau = self.channel_veto["tau"]
        # (a soft maximum less tau·log(channels) would read as a mean at high tau; the floor takes up
        # that constant, and leaving it out keeps the channel count out of the traced graph)
        return tau * torch.logsumexp(margins / tau, dim=1)

    def channel_evidence(self, log_power: torch.Tensor, per_channel: torch.Tensor | None = None) -> torch.Tensor:
        """(batch,): `pooled_evidence` of the window's `channel_margins`."""
        return self.pooled_evidence(self.channel_margins(log_power, per_channel))

    def veto_penalty(self, log_power: torch.Tensor) -> torch.Tensor:
        """(batch,): what the logit loses because no derivation looks like seizure; 0 without a veto."""
        if self.channel_veto is None or not self.veto_active:
            return torch.zeros(log_power.shape[0], dtype=log_power.dtype, device=log_power.device)
        margin = self.channel_evidence(log_power)
        return self.channel_veto["depth"] * torch.sigmoid(-margin / self.channel_veto["scale"])

    def standardised_summaries(self, log_power: torch.Tensor) -> torch.Tensor:
        return (self.summaries(log_power) - self.feature_mean) / self.feature_std

    def regression_logits(self, log_power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(full, gamma-free, band-limited weight), each (batch,): the two regressions and the weight
        that blends them. Occlusion holds the weight at the window's own, so that replacing a band
        measures that band's evidence, not a switch of regression (band_limited_rows only)."""
        z = self.standardised_summaries(log_power)
        penalty = self.veto_penalty(log_power)  # in both, so that any blend of the two carries it
        return (self.linear(z).squeeze(-1) - penalty, self.band_limited_linear(z).squeeze(-1) - penalty,
                self.band_limited_weight(log_power))

    def forward(self, log_power: torch.Tensor) -> torch.Tensor:
        if self.band_limited_rows is None:
            return self.linear(self.standardised_summaries(log_power)).squeeze(-1) - self.veto_penalty(log_power)
        full, gamma_free, weight = self.regression_logits(log_power)
        return full + weight * (gamma_free - full)


class CWTResNet(nn.Module):
    """x : Tensor, shape (batch, n_channels, n_freqs, n_times) → logits (batch,).

    With `band_rows` (a hybrid model), the input is standardised *absolute* log power
    (feature spec ``relative: none``). The model undoes the standardisation (buffers
    `input_mean`/`input_std`, set by `set_input_normalisation`), gives the ResNet each
    channel's log power relative to its own window mean (so gain and a population's
    amplitude do not reach it), and adds the logit of a `BandSummaryBranch` that sees
    amplitude: logit = summary + resnet_weight × ResNet. Training fits the summary branch
    first (a regularised logistic regression) and freezes it; the ResNet then learns what
    it adds.
    """

    def __init__(self, n_channels: int = 23, width: float = 1.0, dropout: float = 0.3,
                 band_rows: list[tuple[int, int]] | None = None, n_freqs: int | None = None,
                 resnet_weight: float = 1.0, spectral_entropy: bool = False,
                 flat_channel_log10: float | None = None, flat_channel_ramp_log10: float = 0.0,
                 band_limited_rows: list | None = None, band_limited_log10: float = BAND_LIMITED_DECADES,
                 band_limited_ramp_log10: float = 0.05, channel_veto: dict | None = None,
                 ocular_delta: dict | None = None):
        super().__init__()
        widths = [max(4, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.config = {"n_channels": n_channels, "width": width, "dropout": dropout}
        self.summary = None
        if band_rows is not None:
            if not n_freqs:
                raise ValueError("a hybrid CWTResNet (band_rows) needs n_freqs")
            self.config.update(band_rows=[list(r) for r in band_rows], n_freqs=n_freqs,
                               resnet_weight=resnet_weight, spectral_entropy=bool(spectral_entropy))
            if flat_channel_log10 is not None:  # absent from the config of models built before the guard
                self.config["flat_channel_log10"] = float(flat_channel_log10)
            if flat_channel_ramp_log10:  # absent from models built with a hard step
                self.config["flat_channel_ramp_log10"] = float(flat_channel_ramp_log10)
            if band_limited_rows is not None:  # absent from models built before the gamma-free fallback
                self.config.update(band_limited_rows=[list(r) for r in band_limited_rows],
                                   band_limited_log10=float(band_limited_log10),
                                   band_limited_ramp_log10=float(band_limited_ramp_log10))
            if channel_veto is not None:  # absent from models built before the veto
                self.config["channel_veto"] = {k: float(channel_veto[k]) for k in ("tau", "depth", "scale")}
            self.resnet_weight = resnet_weight
            self.summary = BandSummaryBranch(band_rows, spectral_entropy, n_freqs, flat_channel_log10,
                                             flat_channel_ramp_log10, band_limited_rows, band_limited_log10,
                                             band_limited_ramp_log10, channel_veto, ocular_delta)
            if self.summary.ocular_delta is not None:  # absent from models built before it
                self.config["ocular_delta"] = dict(self.summary.ocular_delta)
            self.register_buffer("input_mean", torch.zeros(n_freqs))
            self.register_buffer("input_std", torch.ones(n_freqs))
            # per-frequency standardisation of the relative log power, statistics learnt in training
            self.relative_norm = nn.BatchNorm2d(n_freqs, affine=False)
        self.stem = nn.Sequential(
            nn.Conv2d(n_channels, widths[0], (3, 7), (1, 2), (1, 3), bias=False), nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True))
        layers, in_ch = [], widths[0]
        for w, stride in zip(widths, STAGE_STRIDES):
            layers.append(nn.Sequential(BasicBlock(in_ch, w, stride), BasicBlock(w, w)))
            in_ch = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_ch, 64), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(64, 1))
        if self.summary is not None:  # the ResNet starts by adding nothing to the summary branch
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def set_input_normalisation(self, mean, std) -> None:
        """The feature spec's per-frequency standardisation, which a hybrid model undoes."""
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def log_power(self, x):
        """Standardised input → log10 power (hybrid models only)."""
        return x * self.input_std[:, None] + self.input_mean[:, None]

    def resnet_input(self, x):
        if self.summary is None:
            return x
        log_power = self.log_power(x)
        relative = log_power - log_power.mean(dim=(2, 3), keepdim=True)
        return self.relative_norm(relative.transpose(1, 2)).transpose(1, 2)

    def features(self, x):
        """Activations of the last residual block (the Grad-CAM target layer)."""
        x = self.stem(self.resnet_input(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        logit = self.head(self.pool(self.features(x))).squeeze(-1)
        if self.summary is None:
            return logit
        return self.resnet_weight * logit + self.summary(self.log_power(x))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.summary is not None:  # fitted before the ResNet and frozen: its statistics stay
            self.summary.eval()
        return self


def resnet_contributes(model: CWTResNet) -> bool:
    """False for a hybrid whose ResNet adds nothing to the logit (training kept the summary branch
    alone): Grad-CAM of its ResNet is zero and explains nothing."""
    if model.summary is None:
        return True
    last = model.head[-1]
    return bool(model.resnet_weight != 0 and (last.weight.abs().sum() > 0 or last.bias.abs().sum() > 0))


def has_band_limited_fallback(model: nn.Module) -> bool:
    summary = getattr(model, "summary", None)
    return summary is not None and summary.band_limited_rows is not None


def regression_logits(model: CWTResNet, x: torch.Tensor, with_resnet: bool | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(full, gamma-free, band-limited weight) of a model with a band-limited fallback, each (batch,);
    model(x) = full + weight · (gamma-free − full). A contributing ResNet's logit is in both
    (`with_resnet`: whether it contributes, None = `resnet_contributes`; export decides it before tracing)."""
    full, gamma_free, weight = model.summary.regression_logits(model.log_power(x))
    if resnet_contributes(model) if with_resnet is None else with_resnet:
        resnet = model.resnet_weight * model.head(model.pool(model.features(x))).squeeze(-1)
        full, gamma_free = full + resnet, gamma_free + resnet
    return full, gamma_free, weight


def has_channel_veto(model: nn.Module) -> bool:
    summary = getattr(model, "summary", None)
    return summary is not None and summary.channel_veto is not None


def channel_evidence(model: CWTResNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-derivation margins (batch, channels), pooled evidence (batch,)) of a model with a channel
    veto, from standardised input x: which derivations look like seizure on their own."""
    margins = model.summary.channel_margins(model.log_power(x))
    return margins, model.summary.pooled_evidence(margins)


def inference_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """model(x) for scoring; for a hybrid whose ResNet adds nothing (its output layer is zero),
    its summary branch alone: the same logits without the ResNet's forward pass (the shipped
    model: 0.3 instead of 1.0 ms per window on 2 cores)."""
    if isinstance(model, CWTResNet) and model.summary is not None and not resnet_contributes(model):
        return model.summary(model.log_power(x))
    return model(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
