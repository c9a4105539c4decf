"""Seizure annotations: CHB-MIT summary files, EDF+ annotations, TUH csv_bi and tse, Siena seizure lists."""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Callable

from .errors import AnnotationError


@dataclasses.dataclass(frozen=True)
class Seizure:
    start_s: float
    end_s: float
    recording: str = ""
    patient: str = ""
    seizure_id: str = ""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclasses.dataclass
class SummaryEntry:
    """One 'File Name:' block of a CHB-MIT summary file."""

    file_name: str
    seizures: list[Seizure]
    channels: list[str]
    start_time: str | None = None  # clock time as written; may be past 24:00
    end_time: str | None = None


_RE_FILE = re.compile(r"^File Name:\s*(\S+)")
_RE_COUNT = re.compile(r"^Number of Seizures in File:\s*(\d+)")
_RE_SZ = re.compile(r"^Seizure(?:\s+(\d+))?\s+(Start|End)\s+Time:\s*(\d+(?:\.\d+)?)\s*seconds?", re.I)
_RE_CHAN = re.compile(r"^Channel\s+\d+:\s*(.*)$")
_RE_CLOCK = re.compile(r"^File (Start|End) Time:\s*(\S+)")


_RE_PATIENT = re.compile(r"^(chb\d+|[a-z]+\d+(?=[_-])|[a-z]{8}(?=_s\d+))", re.I)


def patient_of(file_name: str, default: str | None = None) -> str:
    """The patient a recording belongs to, from its file name: 'chb01_03' → chb01,
    'neo04_seizure' → neo04 (Helsinki neonatal), 'PN00-1' → pn00 (Siena),
    'aaaaaaac_s001_t000' → aaaaaaac (TUH); `default` (or the stem) when the name has none."""
    m = _RE_PATIENT.match(Path(file_name).name)
    return m.group(1).lower() if m else (default or Path(file_name).stem)


def parse_chbmit_summary(path: str | os.PathLike) -> dict[str, SummaryEntry]:
    """Parse a CHB-MIT `chbNN-summary.txt` into {file name: SummaryEntry}.

    Handles both 'Seizure Start Time' and 'Seizure 3 Start Time', extra
    spaces, channel lists that change mid-patient ('Channels changed:'),
    dummy '-' channels, and clock times past midnight.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read summary file ({e})") from e
    patient = patient_of(path.name)
    entries: dict[str, SummaryEntry] = {}
    first_line: dict[str, int] = {}
    channels: list[str] = []
    reading_channels = False
    current: SummaryEntry | None = None
    expected = None
    pending_start: float | None = None

    def finish(lineno: int):
        if current is None:
            return
        if pending_start is not None:
            raise AnnotationError(f"{path}:{lineno}: seizure start in {current.file_name} has no end time")
        if expected is not None and expected != len(current.seizures):
            raise AnnotationError(f"{path}: {current.file_name} says {expected} seizures but lists "
                                  f"{len(current.seizures)}")

    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("*"):
            continue
        if line.startswith("Channels in EDF Files") or line.startswith("Channels changed"):
            channels, reading_channels = [], True
            continue
        m = _RE_CHAN.match(line)
        if m and reading_channels:
            channels.append(m.group(1).strip())
            continue
        m = _RE_FILE.match(line)
        if m:
            finish(lineno)
            reading_channels = False
            if m.group(1) in entries:  # which entry's seizures are right? refuse rather than drop one
                raise AnnotationError(f"{path}:{lineno}: {m.group(1)} is listed again (first at line "
                                      f"{first_line[m.group(1)]}); each file must appear once")
            first_line[m.group(1)] = lineno
            current = SummaryEntry(m.group(1), [], list(channels))
            entries[current.file_name] = current
            expected, pending_start = None, None
            continue
        if line.startswith("Data Sampling Rate"):
            continue
        if current is None:
            raise AnnotationError(f"{path}:{lineno}: unexpected line before any 'File Name:': {line!r}")
        m = _RE_CLOCK.match(line)
        if m:
            setattr(current, "start_time" if m.group(1) == "Start" else "end_time", m.group(2))
            continue
        m = _RE_COUNT.match(line)
        if m:
            expected = int(m.group(1))
            continue
        m = _RE_SZ.match(line)
        if m:
            t = float(m.group(3))
            if m.group(2).lower() == "start":
                pending_start = t
            else:
                if pending_start is None:
                    raise AnnotationError(f"{path}:{lineno}: seizure end without a start in {current.file_name}")
                if t <= pending_start:
                    raise AnnotationError(f"{path}:{lineno}: seizure in {current.file_name} ends at {t:g} s, "
                                          f"not after its start {pending_start:g} s")
                sid = f"{Path(current.file_name).stem}#{len(current.seizures) + 1}"
                current.seizures.append(Seizure(pending_start, t, current.file_name, patient, sid))
                pending_start = None
            continue
        raise AnnotationError(f"{path}:{lineno}: line does not parse as a CHB-MIT summary line: {line!r}")
    finish(len(lines))
    if not entries:
        raise AnnotationError(f"{path}: no 'File Name:' entries; not a CHB-MIT summary file")
    return entries


_SEIZURE_WORDS = re.compile(r"seiz|\bsz\b|ictal|^(fnsz|gnsz|cpsz|absz|tnsz|tcsz|spsz|mysz|atsz)$", re.I)
_NOT_SEIZURE = re.compile(r"pre-?ictal|inter-?ictal|post-?ictal|non-?seiz|\bbckg\b", re.I)


def is_seizure_text(text: str) -> bool:
    t = text.strip()
    return bool(_SEIZURE_WORDS.search(t)) and not _NOT_SEIZURE.search(t)


def seizures_from_edf_annotations(recording, patient: str = "") -> list[Seizure]:
    """Seizures from EDF+ annotations whose text names a seizure (of a `Recording` or an opened
    `EdfFile`).

    Annotations with a duration give the interval; a 'seizure start'/'end'
    pair of zero-length annotations is joined.
    """
    out, open_start = [], None
    name = recording.name
    for a in sorted(recording.annotations, key=lambda a: a.onset_s):
        if not is_seizure_text(a.text):
            continue
        low = a.text.lower()
        if a.duration_s > 0:
            out.append((a.onset_s, a.onset_s + a.duration_s))
        elif "end" in low or "offset" in low:
            if open_start is None:
                raise AnnotationError(f"{recording.source}: annotation {a.text!r} at {a.onset_s:g} s ends a "
                                      "seizure that never started")
            out.append((open_start, a.onset_s))
            open_start = None
        else:
            open_start = a.onset_s
    if open_start is not None:
        raise AnnotationError(f"{recording.source}: seizure starting at {open_start:g} s has no end annotation")
    patient = patient or patient_of(name)
    return [Seizure(s, e, name, patient, f"{Path(name).stem}#{i + 1}") for i, (s, e) in enumerate(out)]


# TUSZ labels: background, seizure, and the seizure-type codes of the multi-class files
TUH_LABELS = {"bckg", "seiz", "fnsz", "gnsz", "spsz", "cpsz", "absz", "tnsz", "cnsz", "tcsz", "atsz", "mysz", "nesz"}
TUH_LABEL_SUFFIXES = (".csv_bi", ".tse_bi", ".tse")  # TUSZ v2 (csv_bi), v1.5 (tse_bi, and the multi-class tse)


def _read_tuh_lines(path: Path, what: str) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read TUH label file ({e})") from e
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        lineno = raw[:e.start].count(b"\n") + 1
        raise AnnotationError(f"{path}:{lineno}: byte {raw[e.start]:#04x} is not UTF-8 text; expected a TUH "
                              f"{what} label file") from None


def _tuh_interval(path: Path, lineno: int, line: str, start: str, stop: str, label: str) -> tuple[float, float] | None:
    """(start, stop) of a seizure row, None for background; a malformed row is an error."""
    try:
        t0, t1 = float(start), float(stop)
    except ValueError as e:
        raise AnnotationError(f"{path}:{lineno}: start/stop times are not numbers: {line!r}") from e
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise AnnotationError(f"{path}:{lineno}: start/stop times must be finite seconds, got {line!r}")
    if t1 <= t0:
        raise AnnotationError(f"{path}:{lineno}: stop_time {t1:g} is not after start_time {t0:g}")
    if label.lower() not in TUH_LABELS:  # a typo must not turn a seizure into background
        raise AnnotationError(f"{path}:{lineno}: label {label!r} is not a TUH label; expected bckg, seiz "
                              f"or a seizure type ({', '.join(sorted(TUH_LABELS - {'bckg', 'seiz'}))})")
    return None if label.lower() == "bckg" else (t0, t1)


def _tuh_seizures(path: Path, intervals: list[tuple[float, float]], patient: str) -> list[Seizure]:
    intervals.sort()
    merged: list[list[float]] = []
    for s, e in intervals:  # per-channel rows of one event overlap; merge them
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    rec = path.stem
    return [Seizure(s, e, rec, patient or rec.split("_")[0], f"{rec}#{i + 1}") for i, (s, e) in enumerate(merged)]


@dataclasses.dataclass(frozen=True)
class _TuhFormat:
    name: str
    header: str  # the line a file of this format opens with, as the error names it
    is_header: Callable[[str], bool]
    fields: Callable[[str], list[str]]
    columns: tuple[int, int, int]  # start, stop, label
    row: str  # what a row holds, as the error names it


_CSV_BI = _TuhFormat("csv_bi", "header 'channel,start_time,stop_time,label,confidence'",
                     lambda line: [p.strip() for p in line.split(",")][:4] == ["channel", "start_time", "stop_time",
                                                                               "label"],
                     lambda line: [p.strip() for p in line.split(",")], (1, 2, 3), "5 comma-separated fields")
_TSE = _TuhFormat("tse", "'version = tse_v1.0.0' line",
                  lambda line: line.replace(" ", "").lower().startswith("version="), str.split, (0, 1, 2),
                  "'start stop label confidence'")


def _parse_tuh(path: str | os.PathLike, patient: str, fmt: _TuhFormat) -> list[Seizure]:
    """A TUH label file: its opening line, then one row per interval; seizure rows merged into events."""
    path = Path(path)
    header_seen, intervals = False, []
    for lineno, line in enumerate(_read_tuh_lines(path, fmt.name), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not header_seen:
            if not fmt.is_header(line):
                raise AnnotationError(f"{path}:{lineno}: expected {fmt.header}, got {line!r}")
            header_seen = True
            continue
        parts = fmt.fields(line)
        if len(parts) <= max(fmt.columns):
            raise AnnotationError(f"{path}:{lineno}: expected {fmt.row}, got {line!r}")
        interval = _tuh_interval(path, lineno, line, *(parts[i] for i in fmt.columns))
        if interval:
            intervals.append(interval)
    if not header_seen:
        raise AnnotationError(f"{path}: no {fmt.header}; not a TUH {fmt.name} label file")
    return _tuh_seizures(path, intervals, patient)


def parse_tuh_csv_bi(path: str | os.PathLike, patient: str = "") -> list[Seizure]:
    """Parse a TUH `csv_bi` label file (channel,start_time,stop_time,label,confidence).

    Rows labelled 'seiz' (or a seizure-type code) are seizures; 'bckg' is not.
    """
    return _parse_tuh(path, patient, _CSV_BI)


def parse_tuh_tse(path: str | os.PathLike, patient: str = "") -> list[Seizure]:
    """Parse a TUSZ v1.5 `tse_bi` or `tse` label file: 'version = tse_v1.0.0', then rows of
    'start stop label confidence' for the whole recording (no channel)."""
    return _parse_tuh(path, patient, _TSE)


def tuh_labels_of(edf: Path) -> Path | None:
    """The TUH label file beside an EDF: its csv_bi, else its tse_bi, else its tse."""
    return next((edf.with_suffix(sfx) for sfx in TUH_LABEL_SUFFIXES if edf.with_suffix(sfx).exists()), None)


def parse_tuh_labels(path: Path, patient: str = "") -> list[Seizure]:
    return (parse_tuh_csv_bi if path.suffix == ".csv_bi" else parse_tuh_tse)(path, patient)


SIENA_LIST_GLOB = "Seizures-list-*.txt"
_RE_SIENA_FIELD = re.compile(r"^(file\s*name|registration\s+start\s+time|registration\s+end\s+time|"
                             r"(?:seizure\s+)?start\s+time|(?:seizure\s+)?end\s+time)\s*:\s*(.*)$", re.I)
_RE_SIENA_CLOCK = re.compile(r"^(\d{1,2})[.:](\d{1,2})[.:](\d{1,2})$")
_RE_HAS_CLOCK = re.compile(r"\d{1,2}\s*[.:]\s*\d{1,2}\s*[.:]\s*\d{1,2}")
DAY_S = 24 * 3600


def siena_file_key(name: str) -> str:
    """How a Siena seizure list and the folder's EDFs are matched: the upper-case stem, the letter O
    read as zero in the patient number ('PNO6-1' → PN06-1) and a dangling dash dropped ('PN11-' →
    PN11), the three ways the database's lists misspell its own file names."""
    stem = re.sub(r"\.EDF$", "", name.strip().upper())
    m = re.match(r"^PN([O0-9]+)(.*)$", stem)
    if m:
        stem = "PN" + m.group(1).replace("O", "0") + m.group(2)
    return stem.rstrip("-")


def parse_siena_seizure_list(path: str | os.PathLike) -> dict[str, list[tuple[float, float]]]:
    """Parse a Siena Scalp EEG `Seizures-list-PNnn.txt` into {listed file name: [(start_s, end_s)]}.

    The list gives clock times: each seizure's start and end and its file's registration start.
    Seconds from the file's start are the clock differences, across midnight where a recording
    runs past it. The forms the database uses are all read: 'Seizure start time:' or 'Start
    time:', '19.58.36' or '21:51:02', several seizures after one registration block, a later
    seizure block that names the file but not its registration again, and stray spaces inside a
    time ('1 6.49.25'). Header lines such as 'Seizure n 2' are skipped; a line that holds a clock
    time in any other field is an error, so that a seizure is never dropped unread.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read Siena seizure list ({e})") from e
    out: dict[str, list[tuple[float, float]]] = {}
    registration: dict[str, tuple[float, float | None]] = {}
    current: str | None = None
    pending: tuple[float, int] | None = None

    def clock(value: str, lineno: int) -> float:
        m = _RE_SIENA_CLOCK.match(re.sub(r"\s+", "", value))
        if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3)) > 59:
            raise AnnotationError(f"{path}:{lineno}: {value.strip()!r} is not a clock time; expected hh.mm.ss "
                                  "or hh:mm:ss")
        return int(m.group(1)) * 3600.0 + int(m.group(2)) * 60.0 + int(m.group(3))

    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        m = _RE_SIENA_FIELD.match(line)
        if not m:
            if _RE_HAS_CLOCK.search(line):
                raise AnnotationError(f"{path}:{lineno}: line holds a time but is not a Siena seizure-list "
                                      f"field: {line!r}")
            continue
        field, value = re.sub(r"\s+", " ", m.group(1).lower()), m.group(2)
        if field.replace(" ", "") == "filename":
            if pending is not None:
                raise AnnotationError(f"{path}:{pending[1]}: seizure start in {current} has no end time")
            current = value.strip()
            out.setdefault(current, [])
            continue
        if current is None:
            raise AnnotationError(f"{path}:{lineno}: {line!r} comes before any 'File name:'")
        t = clock(value, lineno)
        if field == "registration start time":
            registration[current] = (t, None)
        elif field == "registration end time":
            if current not in registration:
                raise AnnotationError(f"{path}:{lineno}: registration end of {current} before its start")
            registration[current] = (registration[current][0], t)
        elif field.endswith("start time"):
            if pending is not None:
                raise AnnotationError(f"{path}:{pending[1]}: seizure start in {current} has no end time")
            pending = (t, lineno)
        else:
            if pending is None:
                raise AnnotationError(f"{path}:{lineno}: seizure end without a start in {current}")
            if current not in registration:
                raise AnnotationError(f"{path}:{pending[1]}: seizure in {current} before any 'Registration start "
                                      "time:' for that file; its seconds cannot be known")
            reg_start, reg_end = registration[current]
            start, end = (pending[0] - reg_start) % DAY_S, (t - reg_start) % DAY_S
            if end <= start:
                raise AnnotationError(f"{path}:{lineno}: seizure in {current} ends at {value.strip()}, not after "
                                      "its start")
            if reg_end is not None and end > (reg_end - reg_start) % DAY_S:
                raise AnnotationError(f"{path}:{lineno}: seizure in {current} ends at {value.strip()}, after the "
                                      "registration's end")
            out[current].append((start, end))
            pending = None
    if pending is not None:
        raise AnnotationError(f"{path}:{pending[1]}: seizure start in {current} has no end time")
    if not out:
        raise AnnotationError(f"{path}: no 'File name:' entries; not a Siena seizure list")
    return out


def siena_seizures(folder: str | os.PathLike) -> dict[str, list[Seizure]]:
    """Seizures of the EDFs in `folder` that its Siena seizure lists cover ({} without a list).

    The folder's own EDFs are matched, whichever of them a caller reads: one file passed alone is
    judged against its siblings, as in the whole folder.

    A list is its patient's whole seizure list, so an EDF of that patient that the list does not
    name is seizure-free. A listed name without a run number ('PN01.edf') names the patient's only
    EDF. A listed file that matches no EDF while an EDF of the patient goes unlisted is an error:
    a misspelt name must not turn a recording's seizures into background.
    """
    folder = Path(folder)
    lists = sorted(folder.glob(SIENA_LIST_GLOB))
    if not lists:
        return {}
    keys = {siena_file_key(p.name): p.name for p in folder.iterdir() if p.suffix.lower() == ".edf"}
    intervals: dict[str, list[tuple[float, float]]] = {}
    unmatched: list[str] = []
    patients: set[str] = set()
    for lst in lists:
        patients.add(siena_file_key(lst.stem[len("Seizures-list-"):]))
        for listed, times in parse_siena_seizure_list(lst).items():
            key = siena_file_key(listed)
            match = [keys[key]] if key in keys else [n for k, n in keys.items() if "-" not in key and
                                                     k.startswith(key + "-")]
            if len(match) > 1:
                raise AnnotationError(f"{lst}: {listed!r} has no run number and {folder} holds "
                                      f"{', '.join(sorted(match))}; which one is meant?")
            if match:
                intervals.setdefault(match[0], []).extend(times)
            else:
                unmatched.append(listed)
    unlisted = sorted(n for k, n in keys.items() if n not in intervals and
                      any(k == p or k.startswith(p + "-") for p in patients))
    if unmatched and unlisted:
        raise AnnotationError(f"{folder}: the Siena seizure list names {', '.join(unmatched)}, which match no EDF "
                              f"here, and does not name {', '.join(unlisted)}; rename the file or the list entry "
                              "so that they agree")
    found = {name: [] for name in unlisted}
    for name, times in intervals.items():
        found[name] = [Seizure(start, end, name, patient_of(name), f"{Path(name).stem}#{i + 1}")
                       for i, (start, end) in enumerate(sorted(times))]
    return found


def check_seizures_within(seizures: list[Seizure], duration_s: float, source: str) -> None:
    """Refuse seizure times that lie past the end of their recording."""
    for sz in seizures:
        if sz.start_s < 0 or sz.end_s > duration_s + 1e-6:
            raise AnnotationError(f"{source}: seizure {sz.seizure_id} at {sz.start_s:g}-{sz.end_s:g} s lies "
                                  f"outside the recording (0-{duration_s:g} s)")


@dataclasses.dataclass
class LabelledRecording:
    path: Path
    seizures: list[Seizure]
    patient: str


def seizures_for_file(path: str | os.PathLike) -> list[Seizure]:
    """Seizures of one EDF from a summary file beside it, a csv_bi, a Siena seizure list, or its EDF+
    annotations ([] if none)."""
    from .edf import open_edf

    path = Path(path)
    for s in sorted(path.parent.glob("*-summary.txt")):
        entry = parse_chbmit_summary(s).get(path.name)
        if entry is not None:
            return entry.seizures
    tuh = tuh_labels_of(path)
    if tuh:
        return parse_tuh_labels(tuh)
    siena = siena_seizures(path.parent)
    if path.name in siena:
        return siena[path.name]
    return seizures_from_edf_annotations(open_edf(path))  # the header and annotations, not the samples


def find_labelled_recordings(root: str | os.PathLike) -> list[LabelledRecording]:
    """Every EDF under `root` (a folder, or one EDF file) with its seizures.

    Labels come from, in order: a `chbNN-summary.txt` in the same folder that
    lists the file, a TUH `*.csv_bi` (or TUSZ v1.5 `*.tse_bi`, `*.tse`) with the same stem, a Siena
    `Seizures-list-PNnn.txt` in the same folder, or the file's own EDF+
    annotations. A plain EDF with none of these is an error: an
    unlabelled file must not silently count as seizure-free.
    """
    from .edf import open_edf

    root = Path(root)
    if not root.exists():
        raise AnnotationError(f"{root}: no such EDF file or data directory")
    if root.is_file():
        if root.suffix.lower() != ".edf":
            raise AnnotationError(f"{root}: not an .edf file; expected an EDF recording or a folder of them")
        edfs = [root]
    else:
        edfs = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".edf")
    if not edfs:
        raise AnnotationError(f"{root}: contains no .edf files")
    summaries: dict[Path, dict[str, SummaryEntry]] = {}
    siena: dict[Path, dict[str, list[Seizure]]] = {}
    out = []
    for edf in edfs:
        folder = edf.parent
        if folder not in summaries:
            found = {}
            for s in sorted(folder.glob("*-summary.txt")):
                found.update(parse_chbmit_summary(s))
            summaries[folder] = found
            siena[folder] = siena_seizures(folder)
        entry = summaries[folder].get(edf.name)
        # one patient per folder (eegmmidb S001/) unless the file name names one (neonatal/neo04_…)
        patient = patient_of(edf.name, default=folder.name)
        if entry is not None:
            out.append(LabelledRecording(edf, entry.seizures, patient))
            continue
        tuh = tuh_labels_of(edf)
        if tuh:
            out.append(LabelledRecording(edf, parse_tuh_labels(tuh, patient), patient))
            continue
        if edf.name in siena[folder]:
            out.append(LabelledRecording(edf, siena[folder][edf.name], patient))
            continue
        rec = open_edf(edf)  # the header and annotations, not the samples
        if not rec.edf_plus:
            raise AnnotationError(f"{edf}: no seizure labels (not in a chbNN-summary.txt, no {edf.stem}.csv_bi, "
                                  ".tse_bi or .tse, no Seizures-list-*.txt, not EDF+ with annotations)")
        out.append(LabelledRecording(edf, seizures_from_edf_annotations(rec, patient), patient))
    return out
