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


class StreamingResampler:
    """Causal polyphase resampler (the anti-alias FIR of scipy's resample_poly)
    that keeps its context across calls, so a recording resampled at once and
    the same samples resampled chunk by chunk give identical output.

    It delays the signal by the FIR's half length (≈ 10 input samples).
    `process(chunk)` with chunk : ndarray, shape (n_channels, n_times).
    """

    def __init__(self, n_channels: int, from_hz: float, to_hz: float):
        frac = Fraction(to_hz / from_hz).limit_denominator(1000)
        self.up, self.down = frac.numerator, frac.denominator
        self.identity = self.up == self.down
        self.n_channels = n_channels
        self.reset()
        if self.identity:
            return
        half_len = 10 * max(self.up, self.down)
        self.h = signal.firwin(2 * half_len + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
        self.ctx_len = -(-len(self.h) // self.up)  # input samples that reach one output

    def reset(self) -> None:
        self.ctx = np.zeros((self.n_channels, 0))
        self.n_in = 0  # input samples seen
        self.n_out = 0  # output samples produced

    def process(self, chunk: np.ndarray) -> np.ndarray:
        if self.identity:
            return chunk
        buf = np.concatenate([self.ctx, chunk], axis=1)
        first = self.n_in - self.ctx.shape[1]  # global input index of buf[:, 0]
        self.n_in += chunk.shape[1]
        z = signal.upfirdn(self.h, buf, self.up, 1, axis=-1)  # upsampled-filtered, starting at first*up
        last_j = self.n_in * self.up - 1  # newest upsampled index fully inside the input
        stop = last_j // self.down + 1  # outputs m with m*down <= last_j
        js = np.arange(self.n_out, stop) * self.down - first * self.up
        self.n_out = max(self.n_out, stop)
        self.ctx = buf[:, -self.ctx_len:]
        return z[:, js]
