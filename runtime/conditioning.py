"""Signal conditioning: polyphase resampling, causal band-pass and notch.

The filters are causal IIR (second-order sections) with carried state, so a
whole recording filtered at once (training) and the same recording filtered
hop by hop (live monitor) give the same samples. Zero-phase filtfilt would
need the future and could not run at the bedside.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal


def resample(data: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Polyphase resampling. data : ndarray, shape (n_channels, n_times)."""
    if from_hz == to_hz:
        return data
    frac = Fraction(to_hz / from_hz).limit_denominator(1000)
    return signal.resample_poly(data, frac.numerator, frac.denominator, axis=-1)


def design_sos(sfreq_hz: float, band_hz: tuple[float, float], notch_hz: float | None,
               order: int = 4) -> np.ndarray:
    """Second-order sections of the band-pass (and optional notch) cascade."""
    lo, hi = band_hz
    hi = min(hi, 0.45 * sfreq_hz)
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=sfreq_hz, output="sos")
    if notch_hz:
        b, a = signal.iirnotch(notch_hz, Q=30.0, fs=sfreq_hz)
        sos = np.vstack([sos, signal.tf2sos(b, a)])
    return sos


class StreamingFilter:
    """Causal band-pass(+notch) filter that keeps its state across calls.

    `filter(chunk)` with chunk : ndarray, shape (n_channels, n_times).
    """

    def __init__(self, n_channels: int, sfreq_hz: float, band_hz, notch_hz=None):
        self.sos = design_sos(sfreq_hz, band_hz, notch_hz)
        self.n_channels = n_channels
        self.reset()

    def reset(self) -> None:
        self.zi = None

    def filter(self, chunk: np.ndarray) -> np.ndarray:
        if self.zi is None:
            # Start in the steady state of the first sample, so a DC offset
            # does not ring through the first seconds (same offline and live).
            base = signal.sosfilt_zi(self.sos)  # (n_sections, 2)
            self.zi = base[:, None, :] * chunk[:, :1][None, :, :]
        out, self.zi = signal.sosfilt(self.sos, chunk, axis=-1, zi=self.zi)
        return out
