"""Where scores and alerts go: a JSONL log flushed per line, LSL outlets for
alerts (JSON markers) and per-window probabilities, and a console status line."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from .errors import SinkError


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def unique_source_id(name: str) -> str:
    """An LSL source_id no other monitor has: LabRecorder tells two monitors apart by it."""
    return f"{name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lock_exclusively(f, what: str) -> None:
    """Hold an advisory lock on an open file for the process's lifetime, so two monitors
    never write the same log or explanation files."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SinkError(f"{what} is in use by another running monitor; give this one its own --name "
                        "(or --log / --explain-dir)") from None


class JsonlLog:
    """Append-only JSON-lines log. Every record is written, flushed and fsync'ed
    at once, so nothing already recorded is lost if the process is killed.

    A failing write (disk full, I/O error) raises OSError to the caller, which must
    report it and go on: the log is never the reason scoring stops.
    """

    def __init__(self, path: str | Path, fsync: bool = True, exclusive: bool = False):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(self.path, "a", buffering=1, encoding="utf-8")
        except OSError as e:
            raise SinkError(f"log {self.path}: cannot open it for writing ({e.strerror or e})") from None
        if exclusive and self.path.is_file():
            lock_exclusively(self.f, f"log {self.path}")
        self.fsync = fsync

    def write(self, record: dict) -> None:
        line = json.dumps(record, default=_jsonable, separators=(",", ":")) + "\n"
        try:
            self.f.write(line)
            self.f.flush()
            if self.fsync:
                os.fsync(self.f.fileno())
        except OSError as e:
            if e.errno == errno.EINVAL:  # fsync on /dev/null and the like: nothing to sync
                return
            raise

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:  # the last flush failed; the caller already reported the failing sink
            pass


SCORE_CHANNELS = (("p_seizure", "probability"), ("alert_active", "boolean"), ("technical_alarm", "boolean"))


class LslOutputs:
    """Two LSL outlets: '<name>-alerts' (string markers, JSON: alerts, explanations and
    technical alarms) and '<name>-scores' (float32 at 1/hop: p_seizure, alert_active,
    technical_alarm; p is NaN for a window that could not be scored), stamped with the
    window's LSL time. Both carry the model, threshold, monitor id, the model's channels and
    the EEG stream read and the JSONL log in their metadata."""

    def __init__(self, name: str = "ictal", source_id: str | None = None, *, hop_s: float = 0.0,
                 model: str = "", threshold: float | None = None, channels: list[str] | None = None,
                 eeg_stream: str = "", eeg_type: str = "EEG", log: str = ""):
        import pylsl

        source_id = source_id or unique_source_id(name)
        ai = pylsl.StreamInfo(f"{name}-alerts", "Markers", 1, pylsl.IRREGULAR_RATE, "string", f"{source_id}-alerts")
        si = pylsl.StreamInfo(f"{name}-scores", "SeizureProbability", len(SCORE_CHANNELS),
                              1.0 / hop_s if hop_s > 0 else pylsl.IRREGULAR_RATE, "float32", f"{source_id}-scores")
        chans = si.desc().append_child("channels")
        for label, unit in SCORE_CHANNELS:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
        for info in (ai, si):
            meta = info.desc().append_child("ictal")
            # what a viewer needs to show the monitor's EEG and scores: `ictal view` reads these
            for key, value in (("monitor", source_id), ("model", model),
                               ("threshold", "" if threshold is None else repr(float(threshold))),
                               ("hop_s", repr(float(hop_s))), ("channels", ",".join(channels or [])),
                               ("eeg_stream", eeg_stream or ""), ("eeg_type", eeg_type), ("log", log)):
                meta.append_child_value(key, value)
        self.source_id = source_id
        self.alerts = pylsl.StreamOutlet(ai)
        self.scores = pylsl.StreamOutlet(si)

    def score(self, t_lsl: float, p: float, active: bool, technical_alarm: bool = False) -> None:
        self.scores.push_sample([float(p), float(active), float(technical_alarm)], t_lsl)

    def alert(self, t_lsl: float, payload: dict) -> None:
        self.alerts.push_sample([json.dumps(payload, default=_jsonable)], t_lsl)


class ConsoleStatus:
    """One readable status line per scored window; alerts on their own lines."""

    def __init__(self, stream=None, every_s: float = 0.0):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every_s, self.last = every_s, 0.0

    def status(self, text: str) -> None:
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()
