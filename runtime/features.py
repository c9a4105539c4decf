"""The feature spec and the CWT transform: the one contract between training,
export and the runtime.

A window x : (n_channels, n_samples) becomes a float32 tensor
(n_channels, n_freqs, n_columns): complex Morlet CWT (PyWavelets' wavelet,
FFT convolution), power |W|², mean-pooled over `time_decimation` samples,
log10, then standardised per frequency with constants fitted on training data.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pywt
import scipy.fft

from .artefacts import CardiacArtefactRemover
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
    remove_cardiac_artefact : bool
        Subtract stereotyped heart beats from each window before the transform
        (`runtime.artefacts`). False in specs written before it existed.
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
    remove_cardiac_artefact: bool = False
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
        if not isinstance(self.remove_cardiac_artefact, bool):
            raise SpecError(f"{where}: 'remove_cardiac_artefact' is {self.remove_cardiac_artefact!r}; expected "
                            "true or false")
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


def contiguous_rows(mask: np.ndarray) -> tuple[int, int] | None:
    """(first, stop) of the CWT rows a frequency mask selects, None unless they are one non-empty run."""
    idx = np.flatnonzero(mask)
    if idx.size == 0 or idx[-1] - idx[0] + 1 != idx.size:
        return None
    return int(idx[0]), int(idx[-1]) + 1


class CWTransform:
    """Complex-Morlet CWT power features for windows of one FeatureSpec.

    The wavelet kernels and their FFTs are computed once here; pywt.cwt would
    recompute them for every window. The arithmetic is PyWavelets' FFT method
    (integrated wavelet, linear convolution, derivative) and is tested to match it.
    """

    def __init__(self, spec: FeatureSpec, workers: int | None = None, threads: int = 1):
        self.spec = spec.validate()
        # `log_power_batch` transforms its row blocks in this many threads (NumPy and the FFT release
        # the GIL); `workers` is scipy.fft's own, which measured no faster on these short FFTs
        if threads < 1:
            raise ValueError(f"threads must be ≥ 1, got {threads!r}")
        self.threads, self._pool, self._pool_pid = int(threads), None, None
        self.remove_cardiac = CardiacArtefactRemover(spec.sfreq_hz) if spec.remove_cardiac_artefact else None
        self.last_heart_beats_removed = np.zeros(0, bool)
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
        # Linear convolution with a kernel of K samples needs an FFT of ≥ n + K − 1 points, and the
        # 1-Hz kernel is 16x longer than the 16-Hz one. So frequencies are grouped by kernel length
        # and each group gets its own, shorter FFT: the same numbers for ~half the spectral work.
        self.workers = workers
        lengths = np.array([k.size for k in kernels])
        self.groups = []  # (fft_len, frequency indices, kernel spectra (F_g, half or all bins), bands)
        for idx in self._group_by_kernel_length(lengths, n):
            fft_len = self._fft_len(n, lengths[idx].max())
            k = np.arange(fft_len)
            rot = np.exp(2j * np.pi * k / fft_len)
            g = np.empty((len(idx), fft_len), dtype=np.complex128)
            bands = []
            for row, i in enumerate(idx):
                # pywt: coef = -sqrt(scale) * diff(conv)[offset : offset + n]; the diff and the
                # crop offset become a derivative filter and a phase shift in the spectrum.
                kern, scale = kernels[i], self.scales[i]
                offset = (kern.size - 2) // 2
                g[row] = -np.sqrt(scale) * scipy.fft.fft(kern, fft_len) * (rot - 1) * rot ** offset
                mag = np.abs(g[row])
                # Each Morlet kernel is narrow-band: keep only the bins where it is not negligible
                # (1e-5 of its peak; tested against pywt), which cuts the spectral product ~6x.
                nz = np.flatnonzero(mag > 1e-5 * mag.max())
                bands.append((int(nz[0]), int(nz[-1]) + 1))
            # Analytic kernels below Nyquist need only the real signal's half spectrum (rfft);
            # a kernel whose tail crosses Nyquist (e.g. 40 Hz at 128 Hz) needs the full one.
            n_bins = fft_len // 2 + 1 if max(b for _, b in bands) <= fft_len // 2 + 1 else fft_len
            self.groups.append((fft_len, idx, g[:, :n_bins].astype(np.complex64), bands))

    def _fft_len(self, n: int, kernel_len: int) -> int:
        """The shortest fast FFT length, a multiple of q, for a linear convolution of n and kernel_len samples."""
        return self.q * scipy.fft.next_fast_len(-(-(n + kernel_len - 1) // self.q))

    def _group_by_kernel_length(self, lengths: np.ndarray, n: int) -> list[np.ndarray]:
        """Frequency groups (contiguous in kernel length) that minimise the estimated FFT work: per group
        one forward FFT of the window at its length L, and one inverse FFT of L/q per frequency."""
        order = np.argsort(lengths, kind="stable")
        fft_lens = [self._fft_len(n, int(lengths[i])) for i in order]

        def cost(i, j):  # frequencies order[i:j] as one group, its FFT length set by the longest kernel
            return fft_lens[j - 1] * (1.0 + (j - i) / self.q)
        best, cut = [0.0] + [np.inf] * len(order), [0] * (len(order) + 1)
        for j in range(1, len(order) + 1):
            for i in range(j):
                if best[i] + cost(i, j) < best[j]:
                    best[j], cut[j] = best[i] + cost(i, j), i
        groups, j = [], len(order)
        while j:
            groups.append(np.sort(order[cut[j]:j]))
            j = cut[j]
        return groups[::-1]

    def _group_cwt(self, rows: np.ndarray, group: int, q: int) -> np.ndarray:
        """Complex coefficients of one frequency group, every q-th sample. rows : (R, n) float32 → (R, F_g, n // q)."""
        fft_len, idx, kernel_ffts, bands = self.groups[group]
        m = fft_len // q
        if kernel_ffts.shape[1] < fft_len:  # half spectrum
            xf = scipy.fft.rfft(rows, fft_len, axis=-1, workers=self.workers)
        else:
            xf = scipy.fft.fft(rows, fft_len, axis=-1, workers=self.workers)
        spec = np.zeros((rows.shape[0], len(idx), m), dtype=np.complex64)
        for row, (a, b) in enumerate(bands):
            # y[q·t] = ifft_{L/q}(Σ_j Y[k + j·L/q]) / q: fold the band onto L/q bins (contiguous
            # slices: fancy indexing of the same bins is several times slower)
            for start in range(a - a % m, b, m):
                lo, hi = max(a, start), min(b, start + m)
                spec[:, row, lo - start: hi - start] += xf[:, lo:hi] * kernel_ffts[row, lo:hi]
        coef = scipy.fft.ifft(spec, axis=-1, overwrite_x=True, workers=self.workers)[..., : rows.shape[1] // q]
        if q > 1:
            coef /= q
        return coef

    def cwt(self, x: np.ndarray, q: int = 1) -> np.ndarray:
        """Complex CWT coefficients (pywt.cwt(method='fft')), every q-th sample (q divides self.q).

        x : ndarray, shape (..., n_samples) → (..., n_freqs, n_samples // q) complex64.
        """
        n = x.shape[-1]
        rows = x.reshape(-1, n).astype(np.float32)
        out = np.empty((rows.shape[0], len(self.scales), n // q), np.complex64)
        for group, (_, idx, _, _) in enumerate(self.groups):
            out[:, idx] = self._group_cwt(rows, group, q)
        return out.reshape(*x.shape[:-1], len(self.scales), n // q)

    def log_power(self, x: np.ndarray) -> np.ndarray:
        """Un-normalised log10 power. x : (n_channels, n_samples) → float32 (n_channels, n_freqs, n_columns)."""
        x = np.asarray(x)
        if x.shape != (len(self.spec.channels), self.spec.n_samples):
            raise SpecError(f"window has shape {x.shape}; the spec expects "
                            f"({len(self.spec.channels)}, {self.spec.n_samples})")
        return self.log_power_batch(x[None])[0]

    def log_power_batch(self, x: np.ndarray, rows_per_block: int = 32) -> np.ndarray:
        """Un-normalised log10 power of many windows at once, the same numbers as `log_power` per window.

        All windows' channels are transformed together, `rows_per_block` (window, channel) rows
        at a time: small blocks stay in the CPU cache (measured faster than larger ones), and memory
        stays bounded however many windows.

        x : (n_windows, n_channels, n_samples) → float32 (n_windows, n_channels, n_freqs, n_columns).
        """
        x = np.asarray(x)
        c, n = len(self.spec.channels), self.spec.n_samples
        if x.ndim != 3 or x.shape[1:] != (c, n):
            raise SpecError(f"windows have shape {x.shape}; the spec expects (n_windows, {c}, {n})")
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=(1, 2)))[0])
            raise SpecError(f"window {bad} of {len(x)} contains NaN/inf samples; refusing to compute features")
        if self.remove_cardiac is not None:
            x = self.remove_cardiac(x)
        # per window of this batch: were heart beats removed? (scores.csv and the monitor's log say so)
        self.last_heart_beats_removed = (self.remove_cardiac.last_removed if self.remove_cardiac is not None
                                         else np.zeros(len(x), bool))
        rows = x.reshape(-1, n).astype(np.float32)
        out = np.empty((rows.shape[0], len(self.scales), self.spec.n_columns), np.float32)
        pool = self.spec.time_decimation // self.q

        def transform_block(r0: int) -> None:  # blocks write disjoint rows of `out`
            block = rows[r0:r0 + rows_per_block]
            for group, (_, idx, _, _) in enumerate(self.groups):
                # |coef|² pooled over `pool` samples, as one float32 dot product per column
                parts = self._group_cwt(block, group, self.q).view(np.float32)
                parts = parts.reshape(*parts.shape[:2], self.spec.n_columns, 2 * pool)
                power = np.einsum("rfck,rfck->rfc", parts, parts) / pool
                out[r0:r0 + rows_per_block, idx] = np.log10(power + self.spec.log_eps)

        starts = range(0, rows.shape[0], rows_per_block)
        if self.threads > 1 and len(starts) > 1:
            list(self._executor().map(transform_block, starts))  # re-raises a block's exception
        else:
            for r0 in starts:
                transform_block(r0)
        return out.reshape(len(x), c, len(self.scales), self.spec.n_columns)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread pool, started on first use, and again in a forked child, which inherits the
        pool but not its threads (a forked DataLoader or multiprocessing worker)."""
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="ictal-cwt")
            self._pool_pid = os.getpid()
        return self._pool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Model input. x : (n_channels, n_samples) µV → float32 (n_channels, n_freqs, n_columns)."""
        lp = self.log_power(x)
        return self.spec.normalise(lp) if self.spec.norm_mean is not None else self.spec.make_relative(lp)
