"""The feature spec and the CWT transform: the one contract between training,
export and the runtime.

A window x : (n_channels, n_samples) becomes a float32 tensor
(n_channels, n_freqs, n_columns): complex Morlet CWT (PyWavelets' wavelet,
FFT convolution), power |W|², mean-pooled over `time_decimation` samples,
log10, then standardised per frequency with constants fitted on training data.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pywt
import scipy.fft

from .errors import SpecError

# The 18-channel longitudinal bipolar "double banana": any 10-20 recording yields it, so it
# carries no trace of which amplifier or data set a window came from (the default).
DOUBLE_BANANA = ["FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1",
                 "FP2-F4", "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
                 "FZ-CZ", "CZ-PZ"]
# CHB-MIT's own 23-channel layout (FT9/FT10 derivations, T8-P8 twice): an option, not the default.
CHBMIT_CHANNELS = ["FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1",
                   "FP2-F4", "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
                   "FZ-CZ", "CZ-PZ", "P7-T7", "T7-FT9", "FT9-FT10", "FT10-T8", "T8-P8"]

BANDS_HZ = {"delta": (1.0, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 14.0),
            "beta": (14.0, 30.0), "gamma": (30.0, 40.0)}

SPEC_VERSION = 1
# How a window's log power is made relative before the per-frequency standardisation:
#   "none"             absolute log10 power (µV²);
#   "channel-window"   minus each channel's own mean log power over the window (all
#                      frequencies and columns): a per-channel gain, an amplifier's scale or a
#                      population's amplitude no longer shows; spectral shape and the rise of
#                      one band against the others do. Needs no history, so it works from the
#                      first window of a recording.
RELATIVE_MODES = ("none", "channel-window")


@dataclasses.dataclass
class FeatureSpec:
    """The feature-spec contract: how EEG becomes the model's input.

    It travels in every exported model's metadata, so the runtime builds its
    preprocessing from the model file alone.

    Attributes
    ----------
    sfreq_hz : float
        Rate the EEG is resampled to.
    channels : list of str
        The model's channels, in order (bipolar derivations such as ``"FP1-F7"``).
    montage : str
        The name of that channel layout.
    window_s : float
        Window length, s.
    band_hz : tuple of float
        Causal band-pass, Hz.
    notch_hz : float | None
        Optional notch, Hz.
    wavelet : str
        PyWavelets' name of the complex Morlet wavelet.
    freqs_hz : list of float
        CWT frequencies, Hz.
    time_decimation : int
        Samples pooled into one column of the time-frequency image.
    log_eps : float
        Added to the power before log10.
    relative : str
        One of `RELATIVE_MODES`.
    norm_mean, norm_std : list of float | None
        Per-frequency standardisation fitted on training windows.
    version : int
        Spec format version.
    """

    sfreq_hz: float = 256.0
    channels: list[str] = dataclasses.field(default_factory=lambda: list(DOUBLE_BANANA))
    montage: str = "bipolar-double-banana"
    window_s: float = 10.0
    band_hz: tuple[float, float] = (0.5, 40.0)
    notch_hz: float | None = None
    wavelet: str = "cmor1.5-1.0"
    freqs_hz: list[float] = dataclasses.field(default_factory=lambda: [float(f) for f in range(1, 41)])
    time_decimation: int = 32  # 8 columns/s: 10-s windows are (channels, freqs, 80)
    log_eps: float = 1e-3
    relative: str = "none"  # one of RELATIVE_MODES
    norm_mean: list[float] | None = None  # per frequency, of log10 power; None = not fitted
    norm_std: list[float] | None = None
    version: int = SPEC_VERSION

    def __post_init__(self):
        # one canonical form, whether built in code or read back from JSON
        self.band_hz = tuple(float(v) for v in self.band_hz)
        self.freqs_hz = [float(f) for f in self.freqs_hz]
        self.channels = list(self.channels)

    # ---- derived --------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(round(self.window_s * self.sfreq_hz))

    @property
    def n_columns(self) -> int:
        return self.n_samples // self.time_decimation

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (len(self.channels), len(self.freqs_hz), self.n_columns)

    @property
    def columns_per_s(self) -> float:
        return self.sfreq_hz / self.time_decimation

    def band_slices(self) -> dict[str, np.ndarray]:
        """{band: boolean mask over freqs_hz}; a frequency on a boundary goes to the upper band."""
        f = np.asarray(self.freqs_hz)
        out = {}
        for name, (lo, hi) in BANDS_HZ.items():
            upper = f <= hi if name == "gamma" else f < hi
            out[name] = (f >= lo) & upper
        return out

    # ---- (de)serialisation ----------------------------------------------
    def validate(self, where: str = "feature spec") -> "FeatureSpec":
        if self.sfreq_hz <= 0 or self.window_s <= 0:
            raise SpecError(f"{where}: sfreq_hz and window_s must be positive")
        if not self.channels:
            raise SpecError(f"{where}: 'channels' is empty")
        if self.time_decimation < 1 or self.n_samples % self.time_decimation:
            raise SpecError(f"{where}: time_decimation {self.time_decimation} must divide the "
                            f"{self.n_samples} samples of a window")
        if max(self.freqs_hz) >= self.sfreq_hz / 2:
            raise SpecError(f"{where}: highest frequency {max(self.freqs_hz)} Hz is not below Nyquist")
        if self.relative not in RELATIVE_MODES:
            raise SpecError(f"{where}: 'relative' is {self.relative!r}; expected one of {', '.join(RELATIVE_MODES)}")
        for name in ("norm_mean", "norm_std"):
            v = getattr(self, name)
            if v is not None and len(v) != len(self.freqs_hz):
                raise SpecError(f"{where}: '{name}' has {len(v)} values, expected one per frequency "
                                f"({len(self.freqs_hz)})")
        try:
            pywt.ContinuousWavelet(self.wavelet)
        except ValueError as e:
            raise SpecError(f"{where}: wavelet {self.wavelet!r} is not a PyWavelets continuous wavelet") from e
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["band_hz"] = list(self.band_hz)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, where: str = "feature spec") -> "FeatureSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"{where}: unknown field(s) {sorted(unknown)}")
        if d.get("version", SPEC_VERSION) != SPEC_VERSION:
            raise SpecError(f"{where}: spec version {d.get('version')} but this ictal reads {SPEC_VERSION}")
        d = dict(d)
        if "band_hz" in d:
            d["band_hz"] = tuple(d["band_hz"])
        return cls(**d).validate(where)

    @classmethod
    def from_json(cls, text: str, where: str = "feature spec") -> "FeatureSpec":
        try:
            return cls.from_dict(json.loads(text), where)
        except json.JSONDecodeError as e:
            raise SpecError(f"{where}: not valid JSON ({e})") from e

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "FeatureSpec":
        return cls.from_json(Path(path).read_text(), where=str(path))

    def make_relative(self, log_power: np.ndarray) -> np.ndarray:
        """Apply `relative` to log10 power.

        log_power : ndarray, shape (..., n_channels, n_freqs, n_columns) → same shape, float32.
        """
        if self.relative == "channel-window":
            return (log_power - log_power.mean(axis=(-2, -1), keepdims=True, dtype=np.float32)).astype(
                np.float32, copy=False)
        return log_power

    def normalise(self, log_power: np.ndarray) -> np.ndarray:
        """Model input from log10 power: `relative`, then the fitted per-frequency standardisation.
        The one code path of training, export, evaluation and the monitor.

        log_power : ndarray, shape (..., n_channels, n_freqs, n_columns) → same shape, float32.
        """
        if self.norm_mean is None:
            raise SpecError("feature spec has no fitted normalisation (norm_mean/norm_std)")
        mean = np.asarray(self.norm_mean, np.float32)[:, None]
        std = np.asarray(self.norm_std, np.float32)[:, None]
        return ((self.make_relative(log_power) - mean) / std).astype(np.float32, copy=False)

    @classmethod
    def seed_method_grid(cls, **kw) -> "FeatureSpec":
        """The original method's grid: 1–40 Hz in 0.1-Hz steps at 128 Hz, no decimation."""
        freqs = [round(1.0 + 0.1 * i, 1) for i in range(391)]
        return cls(sfreq_hz=128.0, freqs_hz=freqs, time_decimation=1, **{"channels": CHBMIT_CHANNELS, **kw})


class CWTransform:
    """Complex-Morlet CWT power features for windows of one FeatureSpec.

    The wavelet kernels and their FFTs are computed once here; pywt.cwt would
    recompute them for every window. The arithmetic is PyWavelets' FFT method
    (integrated wavelet, linear convolution, derivative) and is tested to match it.
    """

    def __init__(self, spec: FeatureSpec):
        self.spec = spec.validate()
        wav = pywt.ContinuousWavelet(spec.wavelet)
        freqs = np.asarray(spec.freqs_hz, dtype=np.float64)
        self.scales = pywt.frequency2scale(wav, freqs / spec.sfreq_hz)
        int_psi, x = pywt.integrate_wavelet(wav, precision=12)
        int_psi = np.conj(int_psi)  # pywt convolves with the conjugate for complex wavelets
        step = x[1] - x[0]
        kernels = []
        for scale in self.scales:  # PyWavelets' resampling of the integrated wavelet
            j = (np.arange(scale * (x[-1] - x[0]) + 1) / (scale * step)).astype(int)
            kernels.append(int_psi[j[j < int_psi.size]][::-1])
        n = spec.n_samples
        # Complex coefficients are computed at sfreq/q: the Morlet output at f ≤ fmax
        # has no energy above ~1.6·fmax, so folding the spectrum decimates exactly.
        d = spec.time_decimation
        self.q = max(k for k in range(1, d + 1) if d % k == 0 and spec.sfreq_hz / k >= 1.6 * max(freqs))
        max_len = max(k.size for k in kernels)
        self.fft_len = self.q * scipy.fft.next_fast_len(-(-(n + max_len - 1) // self.q))
        k = np.arange(self.fft_len)
        rot = np.exp(2j * np.pi * k / self.fft_len)
        g = np.empty((len(kernels), self.fft_len), dtype=np.complex128)
        for i, (kern, scale) in enumerate(zip(kernels, self.scales)):
            # pywt: coef = -sqrt(scale) * diff(conv)[offset : offset + n]; the diff and the
            # crop offset become a derivative filter and a phase shift in the spectrum.
            offset = (kern.size - 2) // 2
            g[i] = -np.sqrt(scale) * scipy.fft.fft(kern, self.fft_len) * (rot - 1) * rot ** offset
        self.kernel_ffts = g.astype(np.complex64)  # (F, L)
        # Each Morlet kernel is narrow-band: keep only the bins where it is not
        # negligible (1e-5 of its peak; tested against pywt), which cuts the spectral product ~6x.
        mag = np.abs(g)
        self.bands = []
        for i in range(len(kernels)):
            nz = np.flatnonzero(mag[i] > 1e-5 * mag[i].max())
            self.bands.append((int(nz[0]), int(nz[-1]) + 1))

    def cwt(self, x: np.ndarray, q: int = 1) -> np.ndarray:
        """Complex CWT coefficients (pywt.cwt(method='fft')), every q-th sample.

        x : ndarray, shape (n_channels, n_samples) → (n_channels, n_freqs, n_samples // q) complex64.
        """
        n, L = x.shape[-1], self.fft_len
        m = L // q
        xf = scipy.fft.fft(x.astype(np.float32), L, axis=-1)  # (C, L)
        spec = np.zeros((x.shape[0], len(self.bands), m), dtype=np.complex64)
        for i, (a, b) in enumerate(self.bands):
            prod = xf[:, a:b] * self.kernel_ffts[i, a:b]
            # y[q·t] = ifft_{L/q}(Σ_j Y[k + j·L/q]) / q: fold the band onto L/q bins
            for start in range(a - a % m, b, m):
                lo, hi = max(a, start), min(b, start + m)
                spec[:, i, lo - start: hi - start] += prod[:, lo - a: hi - a]
        return scipy.fft.ifft(spec, axis=-1, overwrite_x=True)[..., : n // q] / q

    def log_power(self, x: np.ndarray) -> np.ndarray:
        """Un-normalised log10 power. x : (n_channels, n_samples) → float32 (n_channels, n_freqs, n_columns)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (len(self.spec.channels), self.spec.n_samples):
            raise SpecError(f"window has shape {x.shape}; the spec expects "
                            f"({len(self.spec.channels)}, {self.spec.n_samples})")
        if not np.all(np.isfinite(x)):
            raise SpecError("window contains NaN/inf samples; refusing to compute features")
        coef = self.cwt(x, self.q)
        power = coef.real ** 2 + coef.imag ** 2
        pool = self.spec.time_decimation // self.q
        if pool > 1:
            power = power.reshape(*power.shape[:2], -1, pool).mean(axis=-1)
        return np.log10(power + self.spec.log_eps).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Model input. x : (n_channels, n_samples) µV → float32 (n_channels, n_freqs, n_columns)."""
        lp = self.log_power(x)
        return self.spec.normalise(lp) if self.spec.norm_mean is not None else self.spec.make_relative(lp)
