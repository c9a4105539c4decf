"""Replay a recording as an LSL EEG stream, with its seizure annotations on a
parallel marker stream and optional injected faults.

Every sample is stamped when it is pushed, at any speed: sample i at
t0 + i / (sfreq_hz · speed), where t0 is the LSL time of the recording's start, and an
annotation at onset s at t0 + s / speed. The stream declares its speed in
<ictal><replay_speed>, so a monitor maps the stamps back onto recording seconds
(`runtime.lsl.LslSource.pull`).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np

from ictal.runtime.annotations import is_seizure_text, seizures_for_file
from ictal.runtime.edf import Annotation, EdfFile, Recording, open_edf, read_edf
from ictal.runtime.errors import ChannelMismatch
from ictal.runtime.lsl import unit_factor


def _with_seizures(rec, path):
    if not any(is_seizure_text(a.text) for a in rec.annotations):
        rec.annotations += [Annotation(s.start_s, s.duration_s, "seizure") for s in seizures_for_file(path)]
    return rec


def recording_with_seizures(path: str | Path) -> Recording:
    """Read an EDF and attach its seizures (from a CHB-MIT summary, csv_bi, a Siena seizure list
    or EDF+ annotations) as 'seizure' annotations, for the marker stream."""
    return _with_seizures(read_edf(path), path)


def edf_with_seizures(path: str | Path) -> EdfFile:
    """`recording_with_seizures` without reading the samples: a replay reads them a block at a
    time, so a many-hour recording is not held in memory."""
    return _with_seizures(open_edf(path), path)


@dataclasses.dataclass
class Faults:
    """Faults to inject. Times are in recording seconds."""

    dropouts: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (start, seconds) not sent
    nan_bursts: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (start, seconds) of NaN
    flat_channels: list[str] = dataclasses.field(default_factory=list)  # held at a constant value
    jitter_s: float = 0.0  # std of Gaussian timestamp jitter, recording seconds
    declared_rate_hz: float | None = None  # declare this rate instead of the recording's (a lying amplifier)
    seed: int = 0


class Replay:
    """start() → pushes in a background thread → stop(). `wait()` blocks until done.

    `recording`: a `Recording` in memory, or an EDF path, opened and read 10 s at a time.
    """

    def __init__(self, recording: Recording | str | Path, *, speed: float = 1.0, loop: bool = False,
                 name: str = "ictal-replay", source_id: str | None = None, chunk_s: float = 1 / 32,
                 faults: Faults | None = None, start_s: float = 0.0, markers: bool = True, t0: float | None = None,
                 wait_for_consumer_s: float = 5.0, unit: str = "microvolts", channel_format: str = "float32",
                 stream_type: str = "EEG", keep_outlet_until_stop: bool = False):
        """`unit` is what the stream declares and sends (the data is converted from µV; an
        unknown unit sends µV values under that name); `channel_format` any LSL numeric
        format ('float32', 'double64', 'int16', ...). With `keep_outlet_until_stop`, the outlet
        stays open after the last sample until `stop()`: `finished` is set, and a monitor can
        end on it instead of seeing the stream vanish."""
        self.rec = recording if isinstance(recording, Recording) else edf_with_seizures(recording)
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed, self.loop, self.name = speed, loop, name
        self.source_id = source_id or f"ictal-replay:{self.rec.name}"
        self.chunk = max(1, int(round(chunk_s * self.rec.sfreq_hz)))
        self.faults = faults or Faults()
        unknown = [c for c in self.faults.flat_channels if c.upper() not in {l.upper() for l in self.rec.labels}]
        if unknown:
            raise ChannelMismatch(f"--flat {', '.join(unknown)}: not a channel of {self.rec.name}; it has "
                                  f"{', '.join(self.rec.labels)}")
        self.start_sample = int(round(start_s * self.rec.sfreq_hz))
        self.with_markers = markers
        self.t0 = t0
        self.wait_for_consumer_s = wait_for_consumer_s
        self.unit, self.channel_format, self.stream_type = unit, channel_format, stream_type
        self._stop = threading.Event()
        self.keep_outlet_until_stop = keep_outlet_until_stop
        self.finished = threading.Event()  # set once the last sample has been pushed and drained
        self._thread: threading.Thread | None = None
        self.pushed = 0  # samples pushed
        self.push_log: list[tuple[int, float]] = []  # (sample index, wall LSL clock at push) for latency benches

    def _outlets(self):
        import pylsl

        rec = self.rec
        rate = self.faults.declared_rate_hz or rec.sfreq_hz
        info = pylsl.StreamInfo(self.name, self.stream_type, len(rec.labels), rate, self.channel_format,
                                self.source_id)
        chans = info.desc().append_child("channels")
        for label in rec.labels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", self.unit)
            ch.append_child_value("type", "EEG")
        info.desc().append_child_value("manufacturer", "ictal stream_sim")
        info.desc().append_child_value("source_file", rec.name)
        # stamps are push times: a monitor needs the speed to read them as recording seconds
        info.desc().append_child("ictal").append_child_value("replay_speed", repr(float(self.speed)))
        eeg = pylsl.StreamOutlet(info, chunk_size=self.chunk, max_buffered=360)
        markers = None
        if self.with_markers:
            mi = pylsl.StreamInfo(f"{self.name}-annotations", "Markers", 1, pylsl.IRREGULAR_RATE, "string",
                                  f"{self.source_id}-annotations")
            markers = pylsl.StreamOutlet(mi)
        return eeg, markers

    READ_BLOCK_S = 10.0  # read from the recording this much at a time

    def _samples(self, i: int, j: int) -> np.ndarray:
        """Samples [i, j) as (j - i, channels) in the stream's unit and format, faults applied."""
        start, block = self._block
        if not (start <= i and j <= start + block.shape[0]):
            size = max(j - i, int(self.READ_BLOCK_S * self.rec.sfreq_hz))
            start, block = i, self.rec.read(i, i + size).T * self._per_uv
            self._block = start, block
        data = block[i - start:j - start].astype(np.float64 if self.channel_format == "double64" else np.float32)
        sf = self.rec.sfreq_hz
        for onset, dur in self.faults.nan_bursts:
            a, b = max(int(onset * sf), i), min(int((onset + dur) * sf), j)
            if a < b:
                data[a - i:b - i] = np.nan
        data[:, self._flat] = self._first[self._flat]  # held at the recording's first value
        return data

    def _skipped(self, i: int) -> bool:
        t = i / self.rec.sfreq_hz
        return any(s <= t < s + d for s, d in self.faults.dropouts)

    def run(self) -> None:
        """Push the recording (blocking)."""
        import pylsl

        eeg, markers = self._outlets()
        sf = self.rec.sfreq_hz
        self._per_uv = 1.0 / (unit_factor(self.unit) or 1.0)
        self._block = (0, np.zeros((0, len(self.rec.labels))))
        self._first = self.rec.read(0, 1)[:, 0] * self._per_uv
        flat = {label.upper() for label in self.faults.flat_channels}
        self._flat = [k for k, lab in enumerate(self.rec.labels) if lab.upper() in flat]
        rng = np.random.default_rng(self.faults.seed)
        seizure_marks = []
        for a in self.rec.annotations:
            if is_seizure_text(a.text):
                seizure_marks += [(a.onset_s, f"seizure-onset {a.text}"), (a.onset_s + a.duration_s, "seizure-offset")]
        # a monitor that subscribes late would miss the first samples: wait for one (bounded)
        if self.wait_for_consumer_s:
            eeg.wait_for_consumers(self.wait_for_consumer_s)
        # t0: LSL time of the recording's sample 0, so that sample start_sample goes out now
        t0 = self.t0 if self.t0 is not None else pylsl.local_clock() - self.start_sample / (sf * self.speed)
        self.t0 = t0
        wall0 = time.perf_counter()
        i, offset_s = self.start_sample, 0.0
        n = self.rec.n_times
        pending = sorted(seizure_marks)
        while not self._stop.is_set():
            if i >= n:
                if not self.loop:
                    break
                offset_s += n / sf
                i = 0
                pending = sorted(seizure_marks)
            j = min(n, i + self.chunk)
            # pace: sample j is due at (j - start) / (sf * speed) seconds after start
            due = wall0 + ((j - self.start_sample) / sf + offset_s) / self.speed
            delay = due - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            idx = np.arange(i, j)
            keep = np.array([not self._skipped(k) for k in idx]) if self.faults.dropouts else np.ones(len(idx), bool)
            stamps = t0 + (offset_s + idx / sf) / self.speed
            if self.faults.jitter_s:
                stamps = stamps + rng.normal(0, self.faults.jitter_s, len(idx)) / self.speed  # recording s
            if keep.any():
                chunk = self._samples(i, j)[keep]
                if self.channel_format.startswith("int"):
                    chunk = np.round(np.nan_to_num(chunk))
                eeg.push_chunk(np.ascontiguousarray(chunk), stamps[keep].tolist())
                self.push_log.append((int(idx[keep][-1]), pylsl.local_clock()))
                self.pushed += int(keep.sum())
            if markers is not None:
                while pending and pending[0][0] * sf < j:
                    onset, text = pending.pop(0)
                    markers.push_sample([text], t0 + (offset_s + onset) / self.speed)
            i = j
        time.sleep(0.3)  # let the last chunk drain before the outlet goes away
        self.finished.set()
        if self.keep_outlet_until_stop:
            self._stop.wait()
        del eeg, markers

    def start(self) -> "Replay":
        self._thread = threading.Thread(target=self.run, name=f"replay-{self.name}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self.wait(5)

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())


def replay_edf(edf: str | Path | Recording, *, speed: float = 1.0, name: str = "ictal-replay", loop: bool = False,
               faults: Faults | None = None, **options) -> Replay:
    """Start replaying an EDF recording as an LSL EEG stream, in a background thread.

    The seizures of the recording (CHB-MIT summary, TUH ``csv_bi``/``tse_bi``, Siena seizure list
    or EDF+ annotations) go out on a parallel ``{name}-annotations`` marker stream.

    Parameters
    ----------
    edf : str | Path | Recording
        The EDF/EDF+ file, or a recording already read.
    speed : float
        Times real time.
    name : str
        The LSL stream name (type ``EEG``).
    loop : bool
        Start again at the end, until `Replay.stop`.
    faults : Faults | None
        Drop-outs, NaN bursts, flat channels or timestamp jitter to inject.
    **options
        Passed to `Replay` (``unit``, ``channel_format``, ``chunk_s``, ...).

    Returns
    -------
    replay : Replay
        Running; ``replay.wait()`` blocks until it ends, ``replay.stop()`` ends it.
    """
    return Replay(edf, speed=speed, loop=loop, name=name, faults=faults, **options).start()
