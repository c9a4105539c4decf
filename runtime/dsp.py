"""The few filters the live path needs, in NumPy alone.

`scipy.signal` pulls in `scipy.stats` on import (~70 MB of the monitor's
memory); the bedside runtime needs only a Butterworth band-pass, a notch, a
second-order-section filter with state and a polyphase FIR resampler. They are
written here (same designs and the same state conventions as scipy.signal, and
tested against it) and used by training and the monitor alike, so both
compute the same samples.
"""
from __future__ import annotations

import numpy as np

_BLOCK = 256  # samples per matrix block in the state-space filter


# ---------------------------------------------------------------- design
def butter_bandpass_sos(order: int, low_hz: float, high_hz: float, fs_hz: float) -> np.ndarray:
    """Digital Butterworth band-pass as second-order sections, shape (order, 6).

    Same design as scipy.signal.butter(order, [low, high], 'bandpass', fs=fs, output='sos'):
    analog prototype, low-pass → band-pass transform, bilinear transform with pre-warping.
    """
    wn = 2.0 * np.array([low_hz, high_hz]) / fs_hz
    warped = 4.0 * np.tan(np.pi * wn / 2.0)  # pre-warp for fs = 2
    p = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))  # prototype poles
    bw, wo = warped[1] - warped[0], np.sqrt(warped[0] * warped[1])
    p_lp = p * bw / 2.0
    p_bp = np.concatenate([p_lp + np.sqrt(p_lp ** 2 - wo ** 2), p_lp - np.sqrt(p_lp ** 2 - wo ** 2)])
    k = bw ** order
    fs2 = 4.0
    # zeros: the band-pass's `order` zeros at s = 0 map to z = +1, the ones at infinity to z = −1
    p_d = (fs2 + p_bp) / (fs2 - p_bp)
    k_d = k * np.real(np.prod(fs2 - np.zeros(order)) / np.prod(fs2 - p_bp))
    upper = p_d[np.imag(p_d) > 0]  # one pole of each conjugate pair
    upper = upper[np.argsort(np.abs(upper))]  # poles nearest the unit circle last, as scipy orders them
    sos = np.zeros((order, 6))
    for i, pole in enumerate(upper):
        sos[i, :3] = [1.0, 0.0, -1.0]  # one zero at +1 and one at −1 per section
        sos[i, 3:] = [1.0, -2.0 * pole.real, abs(pole) ** 2]
    sos[0, :3] *= k_d
    return sos


def notch_sos(notch_hz: float, q: float, fs_hz: float) -> np.ndarray:
    """Second-order IIR notch as one section, shape (1, 6) (scipy.signal.iirnotch's design)."""
    w0 = 2.0 * notch_hz / fs_hz
    bw = w0 / q * np.pi
    w0 *= np.pi
    beta = np.tan(bw / 2.0)  # gb = 1/sqrt(2): -3 dB bandwidth
    gain = 1.0 / (1.0 + beta)
    b = gain * np.array([1.0, -2.0 * np.cos(w0), 1.0])
    a = np.array([1.0, -2.0 * gain * np.cos(w0), 2.0 * gain - 1.0])
    return np.concatenate([b, a])[None]


def sos_steady_state(sos: np.ndarray) -> np.ndarray:
    """Initial state for a unit step input (scipy.signal.sosfilt_zi), shape (n_sections, 2)."""
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for s, (b, a) in enumerate(zip(sos[:, :3], sos[:, 3:])):
        b, a = b / a[0], a / a[0]
        i_minus_a = np.array([[1.0 + a[1], -1.0], [a[2], 1.0]])
        zi[s] = scale * np.linalg.solve(i_minus_a, b[1:] - a[1:] * b[0])
        scale *= b.sum() / a.sum()
    return zi


def kaiser_lowpass(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """Windowed-sinc low-pass, cutoff as a fraction of Nyquist, unit DC gain (scipy's firwin)."""
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    return h / h.sum()


# ---------------------------------------------------------------- filtering
class _Section:
    """One biquad in direct form II transposed, run as a linear state-space system over blocks."""

    def __init__(self, b, a):
        b, a = np.asarray(b, float) / a[0], np.asarray(a, float) / a[0]
        self.A = np.array([[-a[1], 1.0], [-a[2], 0.0]])
        self.B = np.array([b[1] - a[1] * b[0], b[2] - a[2] * b[0]])
        self.D = b[0]
        self._cache: dict[int, tuple] = {}

    def _mats(self, n: int):
        if n not in self._cache:
            powers = [np.eye(2)]
            for _ in range(n):
                powers.append(self.A @ powers[-1])
            h = np.empty(n)
            h[0] = self.D
            for m in range(1, n):
                h[m] = (powers[m - 1] @ self.B)[0]
            idx = np.arange(n)
            toeplitz = np.where(idx[:, None] >= idx[None], h[np.clip(idx[:, None] - idx[None], 0, None)], 0.0)
            observe = np.stack([p[0] for p in powers[:n]])  # row n: C A^n, (n, 2)
            drive = np.stack([powers[n - 1 - k] @ self.B for k in range(n)], axis=1)  # (2, n)
            self._cache[n] = (toeplitz, observe, drive, powers[n])
        return self._cache[n]

    def run(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x : (n_channels, n_times); state : (n_channels, 2) → (y, new state)."""
        y = np.empty_like(x)
        s = state.T  # (2, n_channels)
        for start in range(0, x.shape[1], _BLOCK):
            blk = x[:, start:start + _BLOCK].T  # (n, C)
            toeplitz, observe, drive, a_n = self._mats(blk.shape[0])
            y[:, start:start + blk.shape[0]] = (toeplitz @ blk + observe @ s).T
            s = a_n @ s + drive @ blk
        return y, s.T


class SosFilter:
    """A cascade of second-order sections with state: `filter(x, zi)` like scipy.signal.sosfilt.

    x : (n_channels, n_times); zi : (n_sections, n_channels, 2).
    """

    def __init__(self, sos: np.ndarray):
        self.sos = np.asarray(sos, float)
        self.sections = [_Section(row[:3], row[3:]) for row in self.sos]

    def filter(self, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zf = np.empty_like(zi)
        y = np.asarray(x, float)
        for i, sec in enumerate(self.sections):
            y, zf[i] = sec.run(y, zi[i])
        return y, zf


def polyphase_resample_block(buf: np.ndarray, h: np.ndarray, up: int, js: np.ndarray) -> np.ndarray:
    """Samples j of conv(upsample(buf, up), h), for the requested indices js only.

    buf : (n_channels, n_in) → (n_channels, len(js)). z[j] = Σ_i buf[i]·h[j − i·up].
    """
    k = -(-len(h) // up)  # taps per phase
    hp = np.zeros(k * up)
    hp[:len(h)] = h
    phase = js % up
    base = js // up  # newest input index touching output j
    taps = np.arange(k)
    idx = base[:, None] - taps[None]  # (n_out, k)
    w = hp[phase[:, None] + taps[None] * up]  # (n_out, k)
    valid = (idx >= 0) & (idx < buf.shape[1])
    w = np.where(valid, w, 0.0)
    gathered = buf[:, np.clip(idx, 0, buf.shape[1] - 1)]  # (C, n_out, k)
    return np.einsum("cok,ok->co", gathered, w)


def band_power_difference(log_power: np.ndarray, band: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per channel, the mean log10 power over the `band` rows minus that over the `reference` rows
    (decades), each averaged over the window's columns too; masks over the CWT's frequencies.
    log_power : (..., n_channels, n_freqs, n_columns) → (..., n_channels)."""
    log_power = np.asarray(log_power)
    return log_power[..., band, :].mean(axis=(-2, -1)) - log_power[..., reference, :].mean(axis=(-2, -1))
