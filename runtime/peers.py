"""Classical seizure detectors scored beside the model on the same windows.

- line length: per channel the mean |Δx| (µV per sample at the spec's rate) over
  the window, then the median over channels; a high score means seizure.
- band power: logistic regression on per-channel relative band powers
  (log10 of each band's share of the 1–40 Hz power, 5 bands × n_channels).

Both are fitted (band power) and thresholded (both) on training data only,
stored with the model (checkpoint sidecar and ONNX metadata), and scored here
with NumPy alone, so the torch-free runtime and `ictal evaluate` on an ONNX
model report them too. Fitting lives in `models.peers`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import ModelError
from .features import BANDS_HZ

PEER_NAMES = ("line_length", "band_power")


def line_length(window_uv: np.ndarray) -> float:
    """Median over channels of the mean absolute sample-to-sample change.

    window_uv : ndarray, shape (n_channels, n_samples), µV → µV per sample.
    """
    return float(np.median(np.mean(np.abs(np.diff(window_uv, axis=-1)), axis=-1)))


def relative_band_powers(window_uv: np.ndarray, sfreq_hz: float) -> np.ndarray:
    """log10 share of each band (delta…gamma) in the 1–40 Hz power, per channel.

    window_uv : ndarray, shape (n_channels, n_samples) → float32 (n_channels, 5 bands).
    Hann-windowed periodogram; a flat channel gives equal shares rather than NaN.
    """
    x = window_uv - window_uv.mean(axis=-1, keepdims=True)
    taper = np.hanning(x.shape[-1])
    psd = np.abs(np.fft.rfft(x * taper, axis=-1)) ** 2
    f = np.fft.rfftfreq(x.shape[-1], 1.0 / sfreq_hz)
    bands = np.stack([psd[:, (f >= lo) & (f < hi)].sum(axis=-1) for lo, hi in BANDS_HZ.values()], axis=-1)
    bands += 1e-12
    return np.log10(bands / bands.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass
class ClassicalPeers:
    """Fitted classical detectors: scores and thresholds chosen on training data."""

    line_length_threshold: float
    band_power_coef: list[float]  # one per (channel, band), row-major
    band_power_intercept: float
    band_power_mean: list[float]
    band_power_std: list[float]
    band_power_threshold: float

    def scores(self, line_lengths: np.ndarray, band_powers: np.ndarray) -> dict[str, np.ndarray]:
        """{peer: score per window}; line_lengths : (n,), band_powers : (n, n_channels, 5)."""
        z = band_powers.reshape(len(band_powers), -1)
        if z.shape[1] != len(self.band_power_coef):
            raise ModelError(f"band-power peer was fitted on {len(self.band_power_coef)} features, "
                             f"the windows have {z.shape[1]}")
        z = (z - np.asarray(self.band_power_mean)) / np.asarray(self.band_power_std)
        logit = z @ np.asarray(self.band_power_coef) + self.band_power_intercept
        return {"line_length": np.asarray(line_lengths, dtype=np.float64),
                "band_power": 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))}

    def thresholds(self) -> dict[str, float]:
        return {"line_length": self.line_length_threshold, "band_power": self.band_power_threshold}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "model") -> "ClassicalPeers | None":
        if not d:
            return None
        try:
            return cls(**d)
        except TypeError as e:
            raise ModelError(f"{where}: classical-peer parameters are malformed ({e})") from e
