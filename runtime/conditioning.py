"""Signal conditioning: causal polyphase resampling, causal band-pass and notch.

The filters are causal (second-order sections and a polyphase FIR) with
carried state, so a whole recording filtered at once (training) and the same
recording filtered hop by hop (live monitor) give the same samples. Zero-phase
filtfilt would need the future and could not run at the bedside. The DSP is
NumPy-only (runtime/dsp.py): importing scipy.signal would cost the monitor
~70 MB.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .dsp import SosFilter, butter_bandpass_sos, kaiser_lowpass, notch_sos, polyphase_resample_block, \
    sos_steady_state


def design_sos(sfreq_hz: float, band_hz: tuple[float, float], notch_hz: float | None,
               order: int = 4) -> np.ndarray:
    """Second-order sections of the band-pass (and optional notch, Q = 30) cascade."""
    lo, hi = band_hz
    hi = min(hi, 0.45 * sfreq_hz)
    sos = butter_bandpass_sos(order, lo, hi, sfreq_hz)
    if notch_hz:
        sos = np.vstack([sos, notch_sos(notch_hz, 30.0, sfreq_hz)])
    return sos


class StreamingFilter:
    """Causal band-pass(+notch) filter that keeps its state across calls.

    `filter(chunk)` with chunk : ndarray, shape (n_channels, n_times).
    """

    def __init__(self, n_channels: int, sfreq_hz: float, band_hz, notch_hz=None):
        self.sos = design_sos(sfreq_hz, band_hz, notch_hz)
        self._cascade = SosFilter(self.sos)
        self.n_channels = n_channels
        self.reset()

    def reset(self) -> None:
        self.zi = None

    def filter(self, chunk: np.ndarray) -> np.ndarray:
        if self.zi is None:
            # Start in the steady state of the first sample, so a DC offset
            # does not ring through the first seconds (same offline and live).
            base = sos_steady_state(self.sos)  # (n_sections, 2)
            self.zi = base[:, None, :] * chunk[:, :1][None, :, :]
        out, self.zi = self._cascade.filter(chunk, self.zi)
        return out


class StreamingResampler:
    """Causal polyphase resampler (the Kaiser anti-alias FIR of scipy's resample_poly)
    that keeps its context across calls, so a recording resampled at once and
    the same samples resampled chunk by chunk give identical output.

    It delays the signal by the FIR's half length (≈ 10 input samples).
    `process(chunk)` with chunk : ndarray, shape (n_channels, n_times).
    """

    BLOCK = 8192  # outputs per gather, bounds memory on whole recordings

    def __init__(self, n_channels: int, from_hz: float, to_hz: float):
        frac = Fraction(to_hz / from_hz).limit_denominator(1000)
        self.up, self.down = frac.numerator, frac.denominator
        self.identity = self.up == self.down
        self.n_channels = n_channels
        self.reset()
        if self.identity:
            return
        half_len = 10 * max(self.up, self.down)
        self.h = kaiser_lowpass(2 * half_len + 1, 1.0 / max(self.up, self.down)) * self.up
        self.ctx_len = -(-len(self.h) // self.up)  # input samples that reach one output

    def output_length(self, n_in: int) -> int:
        """Output samples that `n_in` input samples give, fed at once or in any blocks."""
        return n_in if self.identity else (n_in * self.up - 1) // self.down + 1 if n_in else 0

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
        last_j = self.n_in * self.up - 1  # newest upsampled index fully inside the input
        stop = last_j // self.down + 1  # outputs m with m*down <= last_j
        js = np.arange(self.n_out, stop) * self.down - first * self.up
        self.n_out = max(self.n_out, stop)
        self.ctx = buf[:, -self.ctx_len:]
        parts = [polyphase_resample_block(buf, self.h, self.up, js[i:i + self.BLOCK])
                 for i in range(0, len(js), self.BLOCK)]
        return np.concatenate(parts, axis=1) if parts else np.zeros((buf.shape[0], 0))
