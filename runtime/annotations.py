"""Seizure annotations: CHB-MIT summary files, EDF+ annotations, TUH csv_bi."""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

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
    """Seizures from EDF+ annotations whose text names a seizure.

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


# TUSZ csv_bi labels: background, seizure, and the seizure-type codes of the multi-class files
TUH_LABELS = {"bckg", "seiz", "fnsz", "gnsz", "spsz", "cpsz", "absz", "tnsz", "cnsz", "tcsz", "atsz", "mysz", "nesz"}


def parse_tuh_csv_bi(path: str | os.PathLike, patient: str = "") -> list[Seizure]:
    """Parse a TUH `csv_bi` label file (channel,start_time,stop_time,label,confidence).

    Rows labelled 'seiz' (or a seizure-type code) are seizures; 'bckg' is not.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read TUH label file ({e})") from e
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        lineno = raw[:e.start].count(b"\n") + 1
        raise AnnotationError(f"{path}:{lineno}: byte {raw[e.start]:#04x} is not UTF-8 text; expected a TUH "
                              "csv_bi label file") from None
    header_seen, intervals = False, []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if not header_seen:
            if parts[:4] != ["channel", "start_time", "stop_time", "label"]:
                raise AnnotationError(f"{path}:{lineno}: expected header 'channel,start_time,stop_time,label,"
                                      f"confidence', got {line!r}")
            header_seen = True
            continue
        if len(parts) < 4:
            raise AnnotationError(f"{path}:{lineno}: expected 5 comma-separated fields, got {line!r}")
        try:
            start, stop = float(parts[1]), float(parts[2])
        except ValueError as e:
            raise AnnotationError(f"{path}:{lineno}: start/stop times are not numbers: {line!r}") from e
        if not (math.isfinite(start) and math.isfinite(stop)):
            raise AnnotationError(f"{path}:{lineno}: start/stop times must be finite seconds, got {line!r}")
        if stop <= start:
            raise AnnotationError(f"{path}:{lineno}: stop_time {stop:g} is not after start_time {start:g}")
        label = parts[3].lower()
        if label not in TUH_LABELS:  # a typo must not turn a seizure into background
            raise AnnotationError(f"{path}:{lineno}: label {parts[3]!r} is not a TUH label; expected bckg, seiz "
                                  f"or a seizure type ({', '.join(sorted(TUH_LABELS - {'bckg', 'seiz'}))})")
        if label != "bckg":
            intervals.append((start, stop))
    if not header_seen:
        raise AnnotationError(f"{path}: no csv_bi header line; not a TUH label file")
    intervals.sort()
    merged: list[list[float]] = []
    for s, e in intervals:  # per-channel rows of one event overlap; merge them
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    rec = path.stem
    return [Seizure(s, e, rec, patient or rec.split("_")[0], f"{rec}#{i + 1}") for i, (s, e) in enumerate(merged)]


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
    """Seizures of one EDF from a summary file beside it, a csv_bi, or its EDF+ annotations ([] if none)."""
    from .edf import read_edf

    path = Path(path)
    for s in sorted(path.parent.glob("*-summary.txt")):
        entry = parse_chbmit_summary(s).get(path.name)
        if entry is not None:
            return entry.seizures
    csv = path.with_suffix(".csv_bi")
    if csv.exists():
        return parse_tuh_csv_bi(csv)
    return seizures_from_edf_annotations(read_edf(path))


def find_labelled_recordings(root: str | os.PathLike) -> list[LabelledRecording]:
    """Every EDF under `root` (a folder, or one EDF file) with its seizures.

    Labels come from, in order: a `chbNN-summary.txt` in the same folder that
    lists the file, a TUH `*.csv_bi` with the same stem, or the file's own
    EDF+ annotations. A plain EDF with none of these is an error: an
    unlabelled file must not silently count as seizure-free.
    """
    from .edf import read_edf

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
    out = []
    for edf in edfs:
        folder = edf.parent
        if folder not in summaries:
            found = {}
            for s in sorted(folder.glob("*-summary.txt")):
                found.update(parse_chbmit_summary(s))
            summaries[folder] = found
        entry = summaries[folder].get(edf.name)
        # one patient per folder (eegmmidb S001/) unless the file name names one (neonatal/neo04_…)
        patient = patient_of(edf.name, default=folder.name)
        if entry is not None:
            out.append(LabelledRecording(edf, entry.seizures, patient))
            continue
        csv = edf.with_suffix(".csv_bi")
        if csv.exists():
            out.append(LabelledRecording(edf, parse_tuh_csv_bi(csv, patient), patient))
            continue
        rec = read_edf(edf)
        if not rec.edf_plus:
            raise AnnotationError(f"{edf}: no seizure labels (not in a chbNN-summary.txt, no {csv.name}, "
                                  "not EDF+ with annotations)")
        out.append(LabelledRecording(edf, seizures_from_edf_annotations(rec, patient), patient))
    return out
