"""Where scores and alerts go: a JSONL log flushed per line, LSL outlets for
alerts (JSON markers) and per-window probabilities, and a console status line."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


class JsonlLog:
    """Append-only JSON-lines log. Every record is written, flushed and fsync'ed
    at once, so nothing already recorded is lost if the process is killed."""

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a", buffering=1, encoding="utf-8")
        self.fsync = fsync

    def write(self, record: dict) -> None:
        self.f.write(json.dumps(record, default=_jsonable, separators=(",", ":")) + "\n")
        self.f.flush()
        if self.fsync:
            os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


class LslOutputs:
    """Two LSL outlets: '<name>-alerts' (string markers, JSON) and '<name>-scores'
    (float32: p_seizure, alert_active) stamped with the window's LSL time."""

    def __init__(self, name: str = "ictal", source_id: str = "ictal-monitor"):
        import pylsl

        ai = pylsl.StreamInfo(f"{name}-alerts", "Markers", 1, pylsl.IRREGULAR_RATE, "string", f"{source_id}-alerts")
        si = pylsl.StreamInfo(f"{name}-scores", "SeizureProbability", 2, pylsl.IRREGULAR_RATE, "float32",
                              f"{source_id}-scores")
        chans = si.desc().append_child("channels")
        for label in ("p_seizure", "alert_active"):
            chans.append_child("channel").append_child_value("label", label)
        self.alerts = pylsl.StreamOutlet(ai)
        self.scores = pylsl.StreamOutlet(si)

    def score(self, t_lsl: float, p: float, active: bool) -> None:
        self.scores.push_sample([float(p), float(active)], t_lsl)

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
