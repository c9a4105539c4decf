"""EDF/EDF+ reading and writing.

We read through `edfio` (pure Python + NumPy, reads and writes EDF and EDF+
including annotations, maintained alongside MNE). Before handing a file to it
we check the fixed-size header ourselves so that truncated files or headers
that lie about their size fail with a message naming the file.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from .channels import names_scalp_electrodes
from .errors import EDFError

# µV per unit, for EDF physical dimensions and LSL <channel><unit> alike (lower case, no spaces)
_UNIT_TO_UV = {}
for _names, _factor in ((("uv", "µv", "μv", "microvolts", "microvolt"), 1.0),
                        (("mv", "millivolts", "millivolt"), 1e3),
                        (("v", "volts", "volt"), 1e6),
                        (("nv", "nanovolts", "nanovolt"), 1e-3)):
    _UNIT_TO_UV.update(dict.fromkeys(_names, _factor))


def unit_factor(unit: str) -> float | None:
    """µV per unit of a declared unit ('uV', 'microvolts', 'mV', 'V', ...); None when unknown."""
    return _UNIT_TO_UV.get(unit.strip().lower().replace(" ", ""))


@dataclasses.dataclass
class Annotation:
    onset_s: float
    duration_s: float
    text: str


@dataclasses.dataclass
class Recording:
    """A multi-channel EEG recording.

    data_uv : ndarray, shape (n_channels, n_times), float64, microvolts.
    """

    data_uv: np.ndarray
    sfreq_hz: float
    labels: list[str]
    source: str = ""
    annotations: list[Annotation] = dataclasses.field(default_factory=list)
    edf_plus: bool = False  # EDF+ files carry their own (possibly empty) annotation list

    @property
    def duration_s(self) -> float:
        return self.data_uv.shape[1] / self.sfreq_hz

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else "<memory>"

    @property
    def n_times(self) -> int:
        return self.data_uv.shape[1]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples [start, stop) in µV, as `EdfFile.read` gives them from disk."""
        return self.data_uv[:, start:stop]


def _field(header: bytes, start: int, width: int, path, what: str) -> str:
    try:
        return header[start:start + width].decode("ascii").strip()
    except UnicodeDecodeError as e:
        raise EDFError(f"{path}: header field '{what}' is not ASCII; not an EDF file") from e


def check_edf_header(path: str | os.PathLike) -> None:
    """Validate the fixed header of an EDF file against the file's real size."""
    path = Path(path)
    if not path.is_file():
        raise EDFError(f"{path}: no such EDF file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(256)
        if len(head) < 256:
            raise EDFError(f"{path}: {size} bytes is shorter than the 256-byte EDF header; not an EDF file")
        if head[:8].strip() != b"0":
            raise EDFError(f"{path}: does not start with the EDF version field '0'; not an EDF file")
        try:
            header_bytes = int(_field(head, 184, 8, path, "header bytes"))
            n_records = int(_field(head, 236, 8, path, "number of data records"))
            n_signals = int(_field(head, 252, 4, path, "number of signals"))
            record_s = float(_field(head, 244, 8, path, "duration of a data record"))
        except ValueError as e:
            raise EDFError(f"{path}: header numbers do not parse ({e}); not an EDF file") from e
        if not record_s > 0:
            raise EDFError(f"{path}: header field 'duration of a data record' is {record_s:g} s; expected a "
                           "positive number of seconds")
        if n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
            raise EDFError(f"{path}: header says {n_signals} signals and {header_bytes} header bytes; "
                           f"expected 256*(signals+1)")
        sig = f.read(256 * n_signals)
        if len(sig) < 256 * n_signals:
            raise EDFError(f"{path}: truncated inside the signal headers")
    labels = [_field(sig, 16 * i, 16, path, "label") for i in range(n_signals)]
    # physical min, physical max, digital min, digital max: 8 characters per signal each, from offset 104·ns
    ranges = {}
    for k, what in enumerate(("physical minimum", "physical maximum", "digital minimum", "digital maximum")):
        values = []
        for i in range(n_signals):
            text = _field(sig, n_signals * (104 + 8 * k) + 8 * i, 8, path, what)
            try:
                values.append(float(text))
            except ValueError:
                raise EDFError(f"{path}: channel {labels[i]!r}: {what} is {text!r}; expected a number") from None
        ranges[what] = values
    for i, label in enumerate(labels):
        if label == "EDF Annotations":
            continue
        for lo, hi in (("physical minimum", "physical maximum"), ("digital minimum", "digital maximum")):
            if ranges[lo][i] == ranges[hi][i]:
                raise EDFError(f"{path}: channel {label!r}: {lo} equals {hi} ({ranges[lo][i]:g}); the samples "
                               "cannot be scaled to physical units")
    off = n_signals * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80)
    try:
        spr = [int(_field(sig, off + 8 * i, 8, path, "samples per record")) for i in range(n_signals)]
    except ValueError as e:
        raise EDFError(f"{path}: 'samples per data record' does not parse ({e})") from e
    record_bytes = 2 * sum(spr)
    if n_records < 0:
        # -1 is legal only while recording; the size tells how many records there are.
        raise EDFError(f"{path}: header gives {n_records} data records (file still being written?)")
    expected = header_bytes + n_records * record_bytes
    if size < expected:
        raise EDFError(f"{path}: header promises {n_records} records ({expected} bytes) but the file has "
                       f"{size} bytes; the file is truncated or the header lies about its size")


@dataclasses.dataclass
class EdfFile:
    """An EDF/EDF+ file opened for its EEG signals: the header facts now, the samples when read.

    `read(start, stop)` decodes samples [start, stop) of every EEG signal, in µV; reading a long
    recording block by block holds one block, not the file's every signal in float64.
    """

    source: str
    sfreq_hz: float
    labels: list[str]
    annotations: list[Annotation]
    edf_plus: bool
    n_times: int
    _signals: list = dataclasses.field(repr=False)
    _uv_per_unit: list[float] = dataclasses.field(repr=False)

    @property
    def duration_s(self) -> float:
        return self.n_times / self.sfreq_hz

    @property
    def name(self) -> str:
        return Path(self.source).name

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples [start, stop) of every EEG signal, shape (n_channels, stop - start), µV, float64."""
        stop = self.n_times if stop is None else min(stop, self.n_times)
        whole = start == 0 and stop == self.n_times
        data = np.empty((len(self._signals), max(0, stop - start)), dtype=np.float64)
        for row, s, factor in zip(data, self._signals, self._uv_per_unit):
            values = s.data if whole else s.get_data_slice(start / self.sfreq_hz, stop / self.sfreq_hz)
            np.multiply(values, factor, out=row)
        if not np.all(np.isfinite(data)):
            raise EDFError(f"{self.source}: contains non-finite samples")
        return data


_WARNED_FOLDERS: set[tuple[str, str]] = set()


def _warn_once_per_folder(path, what: str) -> None:
    """Warn that a file's other sensors were skipped, once per folder and kind: an archive's
    recordings share their sensors, and 700 identical lines would hide the warnings that matter."""
    folder = str(Path(path).resolve().parent)
    if (folder, what) in _WARNED_FOLDERS:
        return
    _WARNED_FOLDERS.add((folder, what))
    warnings.warn(f"{path}: {what} (said once for the files of {folder})", stacklevel=4)


def open_edf(path: str | os.PathLike) -> EdfFile:
    """Open an EDF/EDF+ file for its EEG signals (see `read_edf`) without reading the samples."""
    import edfio

    check_edf_header(path)
    try:
        edf = edfio.read_edf(path)
    except Exception as e:  # edfio raises ValueError/IndexError on malformed content
        raise EDFError(f"{path}: cannot be read as EDF ({type(e).__name__}: {e})") from e
    signals = [s for s in edf.signals if s.label.strip() not in ("", "-", ".")]
    # a signal that is not a voltage and names no scalp electrode (Siena's SPO2 in %, HR in bpm;
    # TUSZ's IBI and BURSTS) is another sensor: skipped, not a reason to refuse the file
    others = [s for s in signals if unit_factor(s.physical_dimension) is None and not names_scalp_electrodes(s.label)]
    if others:
        named = ", ".join(f"{s.label.strip()} ({s.physical_dimension.strip() or 'no unit'})" for s in others)
        _warn_once_per_folder(path, f"skipped {named}: not a voltage and not a scalp electrode")
        signals = [s for s in signals if not any(s is o for o in others)]
    if not signals:
        raise EDFError(f"{path}: contains no EEG signals")
    rates = [float(s.sampling_frequency) for s in signals]
    # the EEG rate: the one most signals share; an ECG or respiration channel at another rate is skipped
    rate = max(set(rates), key=lambda r: (rates.count(r), r))
    skipped = [s for s, r in zip(signals, rates) if r != rate]
    if skipped:
        named = ", ".join(f"{s.label.strip()} ({s.sampling_frequency:g} Hz)" for s in skipped)
        _warn_once_per_folder(path, f"skipped {named}: not at the EEG rate of {rate:g} Hz")
        signals = [s for s, r in zip(signals, rates) if r == rate]
    unknown = [f"{s.label.strip()} ({s.physical_dimension.strip() or 'no unit'!r})" for s in signals
               if unit_factor(s.physical_dimension) is None]
    if unknown:
        raise EDFError(f"{path}: unknown physical dimension on {', '.join(unknown[:4])}"
                       f"{' …' if len(unknown) > 4 else ''}; expected uV, mV, V or nV")
    reserved = str(getattr(edf, 'reserved', ''))
    if reserved.startswith('EDF+D') and not edf.is_continuous:
        # read as one signal, windows would join EEG across the gaps and every annotation after the
        # first gap would sit early by the gaps' length
        raise EDFError(f"{path}: an EDF+D (discontinuous) recording with gaps between its data records; "
                       "expected continuous EEG: export it as EDF+C, or as one file per continuous part")
    annotations = [Annotation(float(a.onset), float(a.duration or 0.0), a.text) for a in edf.annotations]
    edf_plus = reserved.startswith('EDF+')
    n_times = int(round(edf.num_data_records * signals[0].samples_per_data_record))
    return EdfFile(str(path), rate, [s.label.strip() for s in signals], annotations, edf_plus, n_times,
                   signals, [unit_factor(s.physical_dimension) for s in signals])


def read_edf(path: str | os.PathLike) -> Recording:
    """Read the EEG signals and annotations of an EDF/EDF+ file.

    Dummy channels (label '-' or '.') and the 'EDF Annotations' channel are
    dropped; duplicate labels (CHB-MIT's second 'T8-P8') are kept in order.
    Signals are converted to microvolts. Channels at another rate than the EEG
    (an ECG, say) are skipped with a warning.

    Parameters
    ----------
    path : str | os.PathLike
        The EDF or EDF+ file.

    Returns
    -------
    recording : Recording
        ``data_uv`` (n_channels, n_times) in µV, ``sfreq_hz``, ``labels`` and ``annotations``.

    Raises
    ------
    EDFError
        A truncated file, a header that lies, unknown units or bad calibration, naming the
        file and the channel.
    """
    f = open_edf(path)
    return Recording(f.read(), f.sfreq_hz, f.labels, f.source, f.annotations, f.edf_plus)


def write_edf(recording: Recording, path: str | os.PathLike) -> Path:
    """Write a Recording (microvolts) as EDF+ with its annotations.

    Physical ranges are set from the data (with a margin) so 16-bit
    quantisation keeps ~0.01 µV resolution for typical scalp EEG.
    """
    import edfio

    path = Path(path)
    sfreq = float(recording.sfreq_hz)
    n = recording.data_uv.shape[1]
    record_s = 1.0 if float(sfreq).is_integer() else None
    if record_s and n % int(sfreq):
        n = n - n % int(sfreq)  # EDF stores whole data records
    signals = []
    for label, row in zip(recording.labels, recording.data_uv):
        row = np.asarray(row[:n], dtype=np.float64)
        lim = float(max(np.max(np.abs(row)) * 1.05, 1.0))
        signals.append(edfio.EdfSignal(row, sfreq, label=label, physical_dimension="uV",
                                       physical_range=(-lim, lim)))
    anns = [edfio.EdfAnnotation(a.onset_s, a.duration_s or None, a.text) for a in recording.annotations]
    edf = edfio.Edf(signals, annotations=anns, data_record_duration=record_s)
    edf.write(path)
    return path
