"""Attribution methods with one call shape (as Captum's):
`method.attribute(inputs, baselines=None)` → ndarray.

- GradCAM / GradCAMPlusPlus: maps over the input's (freq, time) plane,
  shape (n, n_freqs, n_times); `raw` (un-normalised, comparable across
  windows) and the display map normalised to [0, 1].
- IntegratedGradients: shape (n, n_channels, n_freqs, n_times), same axes as
  the input, in logit units; sums to f(x) − f(baseline) (completeness).

Written here rather than taken from Captum / pytorch-grad-cam: each method is
a few lines on top of autograd, and neither library is needed at run time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ictal.runtime.features import BANDS_HZ, FeatureSpec


def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return t[None] if t.ndim == 3 else t


class _CamBase:
    """Shared hook plumbing: activations and gradients of `target_layer`."""

    def __init__(self, model: nn.Module, target_layer: nn.Module):
        self.model, self.target_layer = model.eval(), target_layer

    def _acts_and_grads(self, x: torch.Tensor):
        store = {}

        def fwd(_, __, out):
            store["a"] = out
            out.register_hook(lambda g: store.__setitem__("g", g))

        h = self.target_layer.register_forward_hook(fwd)
        try:
            x = x.clone().requires_grad_(True)
            logits = self.model(x)
            self.model.zero_grad()
            logits.sum().backward()
        finally:
            h.remove()
        return store["a"].detach(), store["g"].detach(), logits.detach()

    def _weights(self, a, g):
        raise NotImplementedError

    def attribute(self, inputs, baselines=None, upsample: bool = True) -> np.ndarray:
        """inputs : (n, C, F, T) or (C, F, T) → raw CAM, shape (n, F, T) (or the layer's grid)."""
        x = _as_tensor(inputs)
        a, g, logits = self._acts_and_grads(x)
        cam = F.relu((self._weights(a, g)[:, :, None, None] * a).sum(dim=1, keepdim=True))
        if upsample:
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
        self.last_logits = logits.numpy()
        return cam[:, 0].numpy()

    @staticmethod
    def normalise(cam: np.ndarray) -> np.ndarray:
        """Per-map scaling to [0, 1] for display."""
        m = cam.reshape(len(cam), -1).max(axis=1)[:, None, None]
        return np.divide(cam, m, out=np.zeros_like(cam), where=m > 0)


class GradCAM(_CamBase):
    """Selvaraju et al. 2017: channel weights = spatial mean of the gradients."""

    def _weights(self, a, g):
        return g.mean(dim=(2, 3))


class GradCAMPlusPlus(_CamBase):
    """Chattopadhay et al. 2018: positive gradients weighted by α = g² / (2g² + ΣA·g³)."""

    def _weights(self, a, g):
        g2, g3 = g ** 2, g ** 3
        denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
        return (alpha * F.relu(g)).sum(dim=(2, 3))


class IntegratedGradients:
    """Sundararajan et al. 2017 with the trapezoid rule along the straight path."""

    def __init__(self, model: nn.Module, steps: int = 64, batch_size: int = 16):
        self.model, self.steps, self.batch_size = model.eval(), steps, batch_size

    def attribute(self, inputs, baselines=None) -> np.ndarray:
        """inputs, baselines : (n, C, F, T) → attributions (n, C, F, T) in logit units."""
        x = _as_tensor(inputs)
        b = torch.zeros_like(x) if baselines is None else _as_tensor(baselines).expand_as(x)
        alphas = torch.linspace(0, 1, self.steps + 1)
        w = torch.ones(self.steps + 1)
        w[0] = w[-1] = 0.5
        w = w / self.steps
        out = []
        for xi, bi in zip(x, b):
            total = torch.zeros_like(xi)
            for s in range(0, len(alphas), self.batch_size):
                al = alphas[s:s + self.batch_size][:, None, None, None]
                path = (bi + al * (xi - bi)).requires_grad_(True)
                grads, = torch.autograd.grad(self.model(path).sum(), path)
                total += (grads * w[s:s + self.batch_size][:, None, None, None]).sum(0)
            out.append(((xi - bi) * total).detach().numpy())
        return np.stack(out)

    def logits(self, x) -> np.ndarray:
        with torch.no_grad():
            return self.model(_as_tensor(x)).numpy()


def band_importance(fti: np.ndarray, spec: FeatureSpec) -> dict[str, float]:
    """FI per band from a time-frequency importance map.

    fti : ndarray, shape (n_freqs, n_times) → mean over time per frequency,
    then mean over the frequencies of each band (delta … gamma).
    """
    per_freq = np.asarray(fti).mean(axis=-1)
    return {b: float(per_freq[mask].mean()) if mask.any() else 0.0 for b, mask in spec.band_slices().items()}


def relative(fi: dict[str, float]) -> dict[str, float]:
    """Band importances scaled so the largest is 1 (the matrix keeps RI's units)."""
    m = max(fi.values()) if fi else 0.0
    return {k: (v / m if m > 0 else 0.0) for k, v in fi.items()}


class GradCAMExplainer:
    """Grad-CAM of a retained torch model, for the runtime's on-demand explanations."""

    def __init__(self, model, spec: FeatureSpec, cam_layer: str = "layer4"):
        self.model, self.spec = model, spec
        self.cam = GradCAM(model, getattr(model, cam_layer))

    @classmethod
    def from_checkpoint(cls, path: str | Path, cam_layer: str = "layer4") -> "GradCAMExplainer":
        from .train import load_checkpoint

        model, spec, _, _ = load_checkpoint(path)
        return cls(model, spec, cam_layer)

    def fti(self, features: np.ndarray) -> np.ndarray:
        """Raw Grad-CAM map, shape (n_freqs, n_times), of one normalised feature window."""
        return self.cam.attribute(features)[0]

    def band_importance(self, features: np.ndarray) -> dict[str, float] | None:
        """Relative FI per band (largest = 1) of one normalised window (n_channels, n_freqs, n_times);
        None for a hybrid model whose ResNet adds nothing (its Grad-CAM would be all zeros)."""
        from .resnet import resnet_contributes

        if not resnet_contributes(self.model):
            return None
        return relative(band_importance(self.fti(features), self.spec))


__all__ = ["GradCAM", "GradCAMPlusPlus", "IntegratedGradients", "band_importance", "relative", "GradCAMExplainer",
           "BANDS_HZ"]
