"""The bedside monitor: LSL EEG in → conditioned ring buffer → CWT features
every hop → ONNX score → alert state machine → explanation at alert onset →
LSL markers, LSL scores, JSONL log, console.

Torch is imported only when Grad-CAM is asked for (a checkpoint is given).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np

from .alerts import AlertStateMachine
from .artefacts import eye_movement_text, muscle_channels, ocular_reading
from .bandwidth import BAND_LIMITED_DECADES, top_band_drop
from .channels import (FLAT_UV, MAX_BAD_CHANNELS, SATURATED_SHARE, SATURATION_UV, check_zero_fill, flat_channels,
                       resolve_montage, seizure_like_text, unique_labels, window_rejection)
from .conditioning import StreamingFilter, StreamingResampler
from .errors import ChannelMismatch, SinkError, StreamError
from .lsl import LslSource
from .occlusion import WITHIN_WINDOW_KIND, band_region_matrix, baseline_log_power, occlude
from .scorer import Scorer, seizure_like_channels
from .sinks import ConsoleStatus, JsonlLog, LslOutputs, lock_exclusively, unique_source_id

# Technical alarms: the monitor cannot monitor. Kept apart from seizure alerts, as clinical
# monitors separate technical from physiological alarms (IEC 60601-1-8).
TECHNICAL_ALARMS = {
    "no_data": "no EEG samples are arriving",
    "windows_rejected": "EEG windows cannot be scored",
    "falling_behind": "the monitor is falling behind the stream",
    "rate_mismatch": "the stream's effective sampling rate differs from its declared rate",
    "log_failed": "the JSONL log cannot be written",
    "band_limited": "the EEG looks low-passed below the model's band: check the acquisition filter (a model "
                    "without a gamma-free fallback scores such EEG high)",
}


# Windows whose median top-band drop decides the band_limited alarm, and the hysteresis that clears it
BAND_CHECK_WINDOWS, BAND_CLEAR_MARGIN = 30, 0.1


def channel_quality(raw_uv: np.ndarray, channels: list[str], flat_uv: float = FLAT_UV,
                    saturation_uv: float = SATURATION_UV, block: int | None = None) -> tuple[list[str], list[str]]:
    """(flat, saturated) channel names of montaged, unfiltered µV, shape (n_channels, n_times);
    with `block`, a channel flat over any `block` consecutive samples is flat (see `flat_channels`)."""
    flat = flat_channels(raw_uv, flat_uv, block)
    sat = np.mean(np.abs(raw_uv) >= saturation_uv, axis=1) > SATURATED_SHARE
    return [c for c, f in zip(channels, flat) if f], [c for c, s in zip(channels, sat) if s]


class RingBuffer:
    """Fixed-capacity buffer of (n_channels, n_times) samples with per-sample time and flags."""

    def __init__(self, n_channels: int, capacity: int):
        self.data = np.zeros((n_channels, capacity))
        self.raw = np.zeros((n_channels, capacity))  # montaged, unfiltered µV: for flat/saturation checks
        self.t = np.zeros(capacity)
        self.bad = np.zeros(capacity, dtype=bool)
        self.capacity, self.size, self.end = capacity, 0, 0  # end: write position

    def clear(self) -> None:
        self.size = 0

    def append(self, data, raw, t, bad) -> None:
        n = data.shape[1]
        if n >= self.capacity:
            data, raw, t, bad = data[:, -self.capacity:], raw[:, -self.capacity:], t[-self.capacity:], bad[-self.capacity:]
            n = self.capacity
        idx = (self.end + np.arange(n)) % self.capacity
        self.data[:, idx], self.raw[:, idx], self.t[idx], self.bad[idx] = data, raw, t, bad
        self.end = (self.end + n) % self.capacity
        self.size = min(self.capacity, self.size + n)

    def latest(self, n: int, skip: int = 0):
        """The n samples ending `skip` samples before the newest: (data, raw, t, bad)."""
        idx = (self.end - skip - n + np.arange(n)) % self.capacity
        return self.data[:, idx], self.raw[:, idx], self.t[idx], self.bad[idx]


class Monitor:
    """The bedside monitor: a live LSL EEG stream in, alerts, explanations and technical alarms out.

    ``connect()`` → ``run()`` (or ``step()`` in your own loop) → ``disconnect()``. Every scored
    window and every alert is written to the JSONL log at once; an alert is logged and
    published before it is explained.

    Parameters
    ----------
    model : str | Path
        An exported ``.onnx`` model; its feature spec sets the channels, rate and windows.
    stream_name : str | None
        The LSL stream to read; by default the first stream of `stream_type`.
    stream_type : str
        LSL type to resolve when no name is given (any case).
    hop_s : float
        Seconds between scored windows.
    allow_missing : int
        Model channels the stream may lack (zero-filled). More than a quarter of them is refused
        unless `force`; so is a window whose missing and flat or saturated channels together are
        more than a quarter (rejected, not scored: the model's scores on it mean little).
    force : bool
        Accept zero-filling more than a quarter of the model's channels.
    k, n : int
        An alert opens when `k` of the last `n` windows are above the threshold.
    quiet_s, refractory_s : float
        Seconds below threshold that close an alert; seconds after it before a new one.
    log_path : str | Path | None
        The JSONL log (default ``{name}-monitor.jsonl``), flushed per line and locked.
    explain_dir : str | Path | None
        Where alert explanations (JSON + PNG) go; None keeps them in memory only.
    gradcam_checkpoint : str | Path | None
        The model's ``.pt`` checkpoint, for Grad-CAM band importance (imports torch).
    lsl_outputs : bool
        Publish ``{name}-alerts`` (markers) and ``{name}-scores`` LSL streams.
    name : str
        This monitor's name; its source_id is made unique per run.
    units : str | None
        Units of a stream that declares none (V, mV, uV, nV).
    threshold : float | None
        Decision threshold in (0, 1] instead of the model's (a unit's own operating point); logged
        beside the model's, and published in the scores stream's metadata.

    The other parameters tune technical alarms and signal checks; their defaults are the
    ones documented in the README.

    Attributes
    ----------
    events : list of dict
        Alert onsets and offsets, gaps and technical alarms, as logged.
    explanations : list of dict
        One per alert: region, band and band × region importance.
    technical : dict
        The technical alarms active now, by reason.
    """

    def __init__(self, model: str | Path, *, stream_name: str | None = None, stream_type: str = "EEG",
                 hop_s: float = 1.0, allow_missing: int = 0, force: bool = False, k: int = 3, n: int = 4,
                 quiet_s: float = 10.0, refractory_s: float = 30.0, log_path: str | Path | None = None,
                 explain_dir: str | Path | None = None, gradcam_checkpoint: str | Path | None = None,
                 lsl_outputs: bool = True, console: bool = True, resolve_timeout_s: float = 10.0,
                 baseline_lookback_s: float = 60.0, gap_tolerance_s: float = 0.25, stale_s: float = 2.0,
                 max_bad_channels: int = MAX_BAD_CHANNELS, saturation_uv: float = SATURATION_UV,
                 flat_uv: float = FLAT_UV,
                 threads: int | None = None, name: str = "ictal", cam_layer: str = "layer4",
                 units: str | None = None, rejected_alarm_windows: int = 3, behind_s: float = 5.0,
                 rate_tolerance: float = 0.02, rate_span_s: float = 30.0, threshold: float | None = None):
        if hop_s <= 0:
            raise ValueError(f"hop_s must be positive, got {hop_s}")
        if threshold is not None and not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.scorer = Scorer(model, threads=threads)
        self.model_threshold = self.scorer.threshold
        if threshold is not None:  # e.g. a unit's own operating point (MODEL_CARD: neonatal operating points)
            self.scorer.threshold = float(threshold)
        self.spec = self.scorer.spec
        self.hop_s = hop_s
        self.hop = max(1, int(round(hop_s * self.spec.sfreq_hz)))
        self.win = self.spec.n_samples
        self.allow_missing, self.force = allow_missing, force
        check_zero_fill(allow_missing, len(self.spec.channels), force=force, model_name=f"model {self.scorer.name}")
        self.alerts = AlertStateMachine(self.scorer.threshold, k, n, quiet_s, refractory_s)
        self.name = name
        self.monitor_id = unique_source_id(name)
        self.log = JsonlLog(log_path or f"{name}-monitor.jsonl", exclusive=True)
        self.explain_dir = Path(explain_dir) if explain_dir else None
        if self.explain_dir:
            self._explain_lock = self._claim_explain_dir()
        self.gradcam_checkpoint = gradcam_checkpoint
        self.cam_layer = cam_layer
        self._gradcam = None
        self.outputs = (LslOutputs(name, self.monitor_id, hop_s=hop_s, model=self.scorer.name,
                                   threshold=self.scorer.threshold, channels=self.spec.channels,
                                   eeg_stream=stream_name or "", eeg_type=stream_type,
                                   log=str(self.log.path.resolve())) if lsl_outputs else None)
        self.console = ConsoleStatus() if console else None
        self.source = LslSource(stream_name, stream_type, resolve_timeout_s, units=units)
        self.technical: dict[str, dict] = {}  # active technical alarms: reason → details
        self.rejected_alarm_windows, self.behind_s = rejected_alarm_windows, behind_s
        self.rate_tolerance, self.rate_span_s = rate_tolerance, rate_span_s
        self._log_failing = False
        self.lookback = int(baseline_lookback_s * self.spec.sfreq_hz)
        self.gap_tolerance_s, self.stale_s = gap_tolerance_s, stale_s
        self.max_bad_channels, self.saturation_uv, self.flat_uv = max_bad_channels, saturation_uv, flat_uv
        self.ring = RingBuffer(len(self.spec.channels), self.win * 2 + self.lookback + self.hop)
        self.explanations: list[dict] = []
        self.events: list[dict] = []
        self.n_scored = self.n_rejected = self.n_gaps = self.n_received = 0
        # the top-band drop of the last scored windows: their median says whether the stream is band-limited
        self._band_drops: deque = deque(maxlen=BAND_CHECK_WINDOWS)
        self._clock = None
        self._figure_jobs: list[subprocess.Popen] = []

    def _claim_explain_dir(self):
        try:
            self.explain_dir.mkdir(parents=True, exist_ok=True)
            lock = open(self.explain_dir / ".ictal-monitor.lock", "w")
        except OSError as e:
            raise SinkError(f"explanation directory {self.explain_dir}: cannot write there "
                            f"({e.strerror or e}); expected a writable directory (--explain-dir)") from None
        lock_exclusively(lock, f"explanation directory {self.explain_dir}")
        return lock

    # ------------------------------------------------------------ connection
    def connect(self, info=None) -> "Monitor":
        import pylsl

        self._clock = pylsl.local_clock
        src = self.source.connect(info)
        try:
            self.montage = resolve_montage(src.labels, self.spec.channels, allow_missing=self.allow_missing,
                                           source_name=f"stream '{src.stream_name}'",
                                           model_name=f"model {self.scorer.name}")
            src.check_units(self.montage.matrix.any(axis=0))
        except (ChannelMismatch, StreamError):
            self.source.disconnect()
            raise
        c = len(self.spec.channels)
        self.resampler = StreamingResampler(c, src.sfreq_hz, self.spec.sfreq_hz)
        self.filter = StreamingFilter(c, self.spec.sfreq_hz, self.spec.band_hz, self.spec.notch_hz)
        self.ring.clear()
        self.alerts.gap()
        if info is None:  # a new outlet of the same source keeps these, so its gap is still logged
            self.last_ts: float | None = None
            self.first_t_lsl: float | None = None  # first sample's LSL time: alerts also say seconds into the stream
            self.stalled = False
        self.last_data_wall = time.monotonic()
        self._last_resolve = 0.0
        self.since_score = 0
        self.n_rejected_run = 0  # consecutive rejected windows
        self._rate_t0, self._rate_n = None, 0
        self._timestamp_jitter_s, self._suspect_jump = 0.0, None  # see _follow_clock
        if self.gradcam_checkpoint and self._gradcam is None:
            from ictal.models.explain import GradCAMExplainer  # imports torch: only when Grad-CAM is asked for

            self._gradcam = GradCAMExplainer.from_checkpoint(self.gradcam_checkpoint, self.cam_layer)
        self._record({"event": "connected", "monitor": self.monitor_id, "stream": src.stream_name,
                      "stream_uid": src.uid, "sfreq_hz": src.sfreq_hz, "channels": src.labels,
                      "units": src.channel_units, "uv_per_unit": src.uv_per_unit.tolist(),
                      "montage": dict(zip(unique_labels(self.spec.channels), self.montage.how)),
                      "model": self.scorer.name, "threshold": self.scorer.threshold,
                      "model_threshold": self.model_threshold, "hop_s": self.hop_s})
        if self.console:
            self.console.line(f"connected to '{src.stream_name}' ({src.n_channels} ch @ {src.sfreq_hz:g} Hz); "
                              f"{self.scorer.describe()}"
                              + (f" (set by --threshold; the model's is {self.model_threshold:.3f})"
                                 if self.scorer.threshold != self.model_threshold else ""))
        return self

    def _reconnect(self, info) -> None:
        """The source came back as a new outlet: re-check its channels and go on, or stop
        with a clear error (ChannelMismatch / StreamError)."""
        old = self.source.labels
        self.source.disconnect()
        self._record({"event": "stream_replaced", "old_channels": len(old), "new_channels": info.channel_count(),
                      "new_uid": info.uid()})
        if self.console:
            self.console.line(f"stream '{info.name()}' came back as a new outlet ({info.channel_count()} channels); "
                              "re-checking its channels")
        self.connect(info)

    def disconnect(self) -> None:
        for job in self._figure_jobs:  # let explanation figures finish
            try:
                job.wait(timeout=60)
            except subprocess.TimeoutExpired:
                job.kill()
        self.source.disconnect()
        import resource

        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB
        self._record({"event": "disconnected", "monitor": self.monitor_id, "scored": self.n_scored,
                      "rejected": self.n_rejected, "technical_alarms_active": sorted(self.technical),
                      "gaps": self.n_gaps, "samples_received": self.n_received, "peak_rss_mb": round(peak_mb, 1),
                      "torch_loaded": "torch" in __import__("sys").modules})
        self.log.close()

    # ------------------------------------------------------------ processing
    def _record(self, rec: dict) -> None:
        """Log one record. A failing log never stops monitoring: it raises a technical alarm."""
        rec = {"wall_time": time.time(), **rec}
        if rec["event"] not in ("score",):
            self.events.append(rec)
        try:
            self.log.write(rec)
        except OSError as e:
            if not self._log_failing:
                self._log_failing = True
                self._technical("log_failed", True, path=str(self.log.path), error=e.strerror or str(e))
            return
        if self._log_failing:
            self._log_failing = False
            self._technical("log_failed", False)

    def _technical(self, reason: str, active: bool, **detail) -> None:
        """Raise or clear a technical alarm: console, JSONL, a marker on the alerts stream and
        a status sample on the scores stream. Each alarm is announced once, and once cleared."""
        if active == (reason in self.technical):
            return
        if active:
            self.technical[reason] = detail
        else:
            detail = {**self.technical.pop(reason), **detail}
        kind = "technical_alarm" if active else "technical_alarm_cleared"
        rec = {"event": kind, "reason": reason, "message": TECHNICAL_ALARMS[reason], "monitor": self.monitor_id,
               **detail}
        if self.outputs:
            t = self._clock() if self._clock else 0.0
            self.outputs.alert(t, rec)
            self.outputs.score(t, float("nan"), self.alerts.active, bool(self.technical))
        if self.console:
            extra = ", ".join(f"{k}={v}" for k, v in detail.items())
            self.console.line(f"TECHNICAL ALARM: {TECHNICAL_ALARMS[reason]}{' (' + extra + ')' if extra else ''}"
                              if active else f"technical alarm cleared: {TECHNICAL_ALARMS[reason]}")
        self._record(rec)

    def _reset_conditioning(self) -> None:
        self.resampler.reset()
        self.filter.reset()
        self.ring.clear()
        self.alerts.gap()
        self.since_score = 0
        self._rate_t0, self._rate_n = None, 0  # a rate is measured over unbroken data only

    def step(self) -> int:
        """Pull what the inlet has, condition it, score every completed hop. Returns samples read."""
        try:
            data, ts = self.source.pull()
        except Exception as e:  # pylsl.LostError when the stream cannot be recovered
            self._record({"event": "stream_lost", "error": str(e)})
            raise StreamError(f"stream '{self.source.stream_name}' lost: {e}") from e
        now = time.monotonic()
        if not len(ts):
            if not self.stalled and now - self.last_data_wall > self.stale_s:
                self.stalled = True
                self._record({"event": "stream_stalled", "since_t_lsl": self.last_ts,
                              "seconds_without_data": round(now - self.last_data_wall, 2)})
                self._technical("no_data", True, stream=self.source.stream_name, since_t_lsl=self.last_ts)
            if self.stalled and now - self._last_resolve > self.stale_s:
                # the source may have restarted as a new outlet (another source_id or layout),
                # which LSL's own recovery does not follow
                self._last_resolve = now
                replacement = self.source.find_replacement()
                if replacement is not None:
                    self._reconnect(replacement)
            return 0
        # samples lost before this chunk were the monitor's overrun only if it was already behind
        # then; a backlog that a reconnected inlet delivers late is the source's gap
        was_behind = "falling_behind" in self.technical and not self.stalled
        if self.stalled:
            self._record({"event": "stream_resumed", "t_lsl": float(ts[0])})
            self.stalled = False
        self._technical("no_data", False)
        self.last_data_wall = now
        self.n_received += len(ts)
        lag = self._clock() - self.source.lsl_time(float(ts[-1]))  # how far behind the newest sample we are
        if lag > self.behind_s or (self.source.full_pull and lag > self.behind_s / 2):
            self._technical("falling_behind", True, lag_s=round(lag, 2))
        elif lag < self.behind_s / 2:
            self._technical("falling_behind", False, lag_s=round(lag, 2))
        self._ingest(data, ts, was_behind)
        return len(ts)

    def _check_rate(self, first: float, last: float, n: int) -> None:
        """Compare the rate the timestamps show over `rate_span_s` with the declared one: a
        source that declares 256 Hz and sends 250 would shift every frequency by 2 %."""
        if self._rate_t0 is None:
            self._rate_t0, self._rate_n = first, 0
        self._rate_n += n
        span = last - self._rate_t0
        if span < self.rate_span_s:
            return
        effective = (self._rate_n - 1) / span
        declared = self.source.sfreq_hz
        off = abs(effective / declared - 1.0) > self.rate_tolerance
        self._technical("rate_mismatch", off, declared_hz=declared, effective_hz=round(effective, 2))
        self._rate_t0, self._rate_n = None, 0

    def _follow_clock(self, ts: np.ndarray, was_behind: bool = False) -> tuple[float, float]:
        """Place a chunk on the stream's timeline: its (first, last) sample time. After a gap or
        clock jump (logged; the buffers restart) the timeline starts again at this chunk.

        The chunk's start is the median of its stamps minus their sample offsets, and the
        timeline follows it slowly (drift, not jitter), so timestamp jitter neither looks like
        a gap nor reaches the window times. A jump beyond `gap_tolerance_s` counts at once on a
        clean stream; where the stamps jitter, only when the next chunk confirms it."""
        period = 1.0 / self.source.sfreq_hz
        n = len(ts)
        offsets = ts - np.arange(n) * period
        start = float(np.median(offsets))
        if self.last_ts is None:
            return start, start + (n - 1) * period
        expected = self.last_ts + period
        jump = start - expected
        if abs(jump) > self.gap_tolerance_s:
            confirmed = (self._timestamp_jitter_s < self.gap_tolerance_s / 4
                         or (self._suspect_jump is not None and self._suspect_jump * jump > 0))
            if not confirmed:  # one chunk off the line: jitter, until the next chunk says otherwise
                self._suspect_jump = jump
                return expected, expected + (n - 1) * period
            self._suspect_jump = None
            # samples lost while the monitor was behind are an overrun, not the source's gap
            kind = ("overrun" if was_behind else "gap") if jump > 0 else "clock_jump"
            self.n_gaps += 1
            self._record({"event": kind, "from_t_lsl": self.last_ts, "to_t_lsl": float(ts[0]),
                          "seconds": round(float(jump + period), 4)})
            if self.console:
                self.console.line(f"{kind}: {jump + period:+.2f} s at LSL t={self.last_ts:.2f}; restarting the buffer")
            self._reset_conditioning()
            return start, start + (n - 1) * period
        self._suspect_jump = None
        self._timestamp_jitter_s += 0.1 * (float(np.median(np.abs(offsets - expected))) - self._timestamp_jitter_s)
        start = expected + 0.05 * jump  # follow a drifting clock, average the jitter out
        return start, start + (n - 1) * period

    def _ingest(self, data: np.ndarray, ts: np.ndarray, was_behind: bool = False) -> None:
        first, last = self._follow_clock(ts, was_behind)
        if self.first_t_lsl is None:
            self.first_t_lsl = float(ts[0])
        self.last_ts = last
        self._check_rate(first, last, len(ts))
        bad = ~np.isfinite(data).all(axis=1)
        if bad.any():  # hold the last good value so NaN never enters the filter state
            data = data.copy()
            for j in range(data.shape[1]):
                col = data[:, j]
                ok = np.isfinite(col)
                if not ok.all():
                    fill = np.maximum.accumulate(np.where(ok, np.arange(len(col)), -1))
                    col[:] = np.where(fill >= 0, col[np.maximum(fill, 0)], 0.0)
        raw = self.resampler.process(self.montage.apply(data.T))  # unfiltered: quality checks use it
        out = self.filter.filter(raw)
        m = out.shape[1]
        if not m:
            return
        # per-output-sample LSL time: the output grid sits on the input clock
        t_out = self.last_ts - (np.arange(m)[::-1]) / self.spec.sfreq_hz
        bad_out = np.zeros(m, dtype=bool)
        if bad.any():
            t_in = first + np.arange(len(ts)) / self.source.sfreq_hz  # on the timeline, not the raw stamps
            bad_out[:] = np.interp(t_out, t_in, bad.astype(float), left=0, right=0) > 0
        self.ring.append(out, raw, t_out, bad_out)
        self.since_score += m
        while self.since_score >= self.hop:
            self.since_score -= self.hop
            if self.ring.size - self.since_score >= self.win:  # only windows fully inside the buffer
                self._score(skip=self.since_score)

    def _reject(self, t_end: float, reason: str, **detail) -> None:
        """A window that cannot be scored: logged, a NaN on the scores stream, and after
        `rejected_alarm_windows` in a row a technical alarm (the monitor is blind)."""
        self.n_rejected += 1
        self.n_rejected_run += 1
        self._record({"event": "window_rejected", "t_lsl": t_end, "reason": reason, **detail})
        self.alerts.gap()
        if self.n_rejected_run >= self.rejected_alarm_windows:
            self._technical("windows_rejected", True, why=reason, windows=self.n_rejected_run, **detail)
        if self.outputs:
            self.outputs.score(self.source.lsl_time(t_end), float("nan"), self.alerts.active, bool(self.technical))

    def _score(self, skip: int = 0) -> None:
        data, raw, t, bad = self.ring.latest(self.win, skip)
        t_end = float(t[-1])
        if bad.any():
            return self._reject(t_end, "non-finite samples", bad_samples=int(bad.sum()))
        # flat over any second of the window: an electrode that came off mid-window leaves EEG
        # that is no longer the head's (half the channels flat for 3 s of 10 read p 0.61)
        flat, saturated = channel_quality(raw, self.spec.channels, self.flat_uv, self.saturation_uv,
                                          block=int(round(self.spec.sfreq_hz)))
        missing = [c for c, how in zip(self.spec.channels, self.montage.how) if how.startswith("missing")]
        bad_channels = sorted(set(flat + saturated) - set(missing))
        why = window_rejection(len(bad_channels), len(missing), len(self.spec.channels),
                               max_bad=self.max_bad_channels, force=self.force)
        if why:
            present = set(self.spec.channels) - set(missing)
            if present <= set(flat):  # no EEG at all: say where to look
                why = (f"every channel flat (peak-to-peak under {self.flat_uv:g} µV over a second): no EEG "
                       f"reaches the monitor; check the amplifier and headbox, and the stream's units (EEG sent "
                       f"in volts and declared as microvolts reads a million times too small)")
            elif present <= set(saturated):
                why = (f"every channel saturated (at ±{self.saturation_uv:g} µV): check the amplifier, and the "
                       f"stream's units (EEG sent in microvolts and declared as volts reads a million times too "
                       f"large)")
            return self._reject(t_end, why, flat=flat, saturated=saturated,
                                **({"missing": missing} if missing else {}))
        self.n_rejected_run = 0
        self._technical("windows_rejected", False)
        # zero-fill a few bad channels: the ResNet was trained with channel drop-out, and the summary
        # branch of models trained since its flat-channel guard reads a zero-filled channel as a typical one
        if bad_channels:
            data = data.copy()
            data[[self.spec.channels.index(c) for c in bad_channels]] = 0.0
        log_power = self.scorer.transform.log_power(data)
        feats = self.spec.normalise(log_power)
        p = float(self.scorer.predict_proba(feats)[0])
        self.n_scored += 1
        event = self.alerts.update(t_end, p)
        # age of the window's newest sample when its score is out: the end-to-end latency
        # when the source stamps samples at capture time (LSL clock)
        rec = {"event": "score", "t_lsl": t_end, "p": round(p, 6), "alert": self.alerts.active,
               "quality": "degraded" if bad_channels else "clean",
               "latency_s": round(self._clock() - self.source.lsl_time(t_end), 4)}
        if bad_channels:
            rec["zero_filled"] = bad_channels
        cleaned = bool(self.scorer.transform.last_heart_beats_removed[0])
        if cleaned:  # the features, and an alert's explanation, are of the EEG without its heart beats
            rec["heart_beats_removed"] = True
        self._record(rec)
        if self.outputs:
            self.outputs.score(self.source.lsl_time(t_end), p, self.alerts.active, bool(self.technical))
        if self.console:
            bar = "#" * int(round(p * 20))
            state = "ALERT" if self.alerts.active else ("TECHNICAL ALARM" if self.technical else "ok")
            self.console.status(f"t={t_end:10.2f}  p={p:.3f} [{bar:<20}] {state}"
                                f"{'  degraded: ' + ','.join(bad_channels) if bad_channels else ''}"
                                f"{'  ECG removed' if cleaned else ''}")
        self._check_band(log_power)
        if event:
            self._alert(event, log_power, feats, data, skip, heart_beats_removed=cleaned)

    def _check_band(self, log_power: np.ndarray) -> None:
        """Raise `band_limited` when the median top-band drop of the last `BAND_CHECK_WINDOWS`
        windows is below the limit; clear it `BAND_CLEAR_MARGIN` decades above. Nothing is said
        before that many windows are scored."""
        self._band_drops.append(float(top_band_drop(log_power[None], self.spec)[0]))
        if len(self._band_drops) < BAND_CHECK_WINDOWS:
            return
        drop = float(np.median(self._band_drops))
        if drop < BAND_LIMITED_DECADES:
            self._technical("band_limited", True, top_band_drop=round(drop, 2),
                            gamma_free_fallback=self.scorer.band_limited_fallback is not None)
        elif drop > BAND_LIMITED_DECADES + BAND_CLEAR_MARGIN:
            self._technical("band_limited", False, top_band_drop=round(drop, 2))

    # ------------------------------------------------------------ alerts & explanations
    def _baseline(self, skip: int) -> tuple[np.ndarray | None, dict]:
        """Baseline EEG for occlusion: the quietest (lowest-power) 10-s window of the
        `baseline_lookback_s` before the segment of interest, sharing no sample with it; with
        less history than that (an alert in the monitor's first ~20 s), None: the explanation
        then uses the window's own median channel. An overlapping earlier window would share
        most of its EEG with the alert window, and every part would read as ≈ 0."""
        candidates = []
        n_back = min(self.ring.size - self.win - skip, self.lookback + self.win)
        for back in range(self.win, n_back + 1, self.hop):
            d, _, t, b = self.ring.latest(self.win, skip + back)
            if not b.any():
                candidates.append((float(np.mean(d ** 2)), d, t))
        if not candidates:
            return None, {"kind": WITHIN_WINDOW_KIND}
        power, d, t = min(candidates, key=lambda c: c[0])
        return d.copy(), {"kind": "quietest preceding window", "t_start": float(t[0]), "t_end": float(t[-1]),
                          "mean_power_uv2": round(power, 3)}

    def _alert(self, event, log_power: np.ndarray, feats: np.ndarray, eeg: np.ndarray, skip: int,
               heart_beats_removed: bool = False) -> None:
        """The alert is logged and published first; its explanation and files come after,
        and their failure is logged, never fatal."""
        payload = {"event": event.kind, "alert_id": event.alert_id, "t_lsl": event.t_lsl, "p": round(event.p, 6),
                   "model": self.scorer.name, "monitor": self.monitor_id, "wall_time": time.time(),
                   "t_stream_s": round(event.t_lsl - self.first_t_lsl, 3) if self.first_t_lsl is not None else None}
        if event.kind == "onset":
            payload["first_positive_t_lsl"] = event.first_positive_t_lsl
            payload["heart_beats_removed"] = heart_beats_removed  # of the window that opened the alert
        self._record({**payload, "event": f"alert_{event.kind}"})
        if self.outputs:
            self.outputs.alert(self.source.lsl_time(event.t_lsl), payload)
        if self.console:
            self.console.line(f"ALERT #{event.alert_id} onset at LSL t={event.t_lsl:.2f}  p={event.p:.3f}"
                              if event.kind == "onset" else f"ALERT #{event.alert_id} closed at LSL t={event.t_lsl:.2f}")
        if event.kind == "onset":
            self._explain(payload, log_power, feats, eeg, skip)

    def _explain(self, alert: dict, log_power: np.ndarray, feats: np.ndarray, eeg: np.ndarray, skip: int) -> None:
        payload = {**alert, "event": "explanation"}
        try:
            t0 = time.perf_counter()
            base, base_info = self._baseline(skip)
            occ = occlude(self.scorer, self.spec, log_power,
                          baseline_log_power(self.scorer.transform, self.spec, log_power, base,
                                             self.scorer.flat_channel_guard))
            labels = unique_labels(self.spec.channels)
            payload.update({**occ.to_json(), "baseline": base_info,
                            "muscle_like_channels": [labels[c] for c in muscle_channels(log_power, self.spec.freqs_hz)],
                            **ocular_reading(log_power, self.spec.freqs_hz, self.spec.channels),
                            **seizure_like_channels(self.scorer, feats, labels),
                            "occlusion_ms": round(1e3 * (time.perf_counter() - t0), 1)})
            fi = self._gradcam.band_importance(feats) if self.gradcam_checkpoint else None
            if fi is not None:
                payload["band_importance"] = fi
                payload["fri_matrix"] = band_region_matrix(fi, occ.region_importance()).round(6).tolist()
            elif self.gradcam_checkpoint:  # a hybrid that kept its summary branch alone: nothing to map
                payload["gradcam"] = "none: this model's ResNet adds nothing to its score; bands come from occlusion"
        except Exception as e:  # an explanation must never cost the alert or the monitoring
            self._record({"event": "explanation_failed", "alert_id": alert["alert_id"],
                          "error": f"{type(e).__name__}: {e}"})
            if self.console:
                self.console.line(f"  explanation of alert #{alert['alert_id']} failed: {type(e).__name__}: {e}")
            return
        try:
            self._write_explanation(payload, eeg)
        except OSError as e:
            payload["files_error"] = f"{e.strerror or e}: {getattr(e, 'filename', '') or self.explain_dir}"
            if self.console:
                self.console.line(f"  explanation files of alert #{alert['alert_id']} not written: "
                                  f"{payload['files_error']}")
        self.explanations.append(payload)
        self._record({**payload, "event": "alert_explanation"})
        if self.outputs:
            self.outputs.alert(self.source.lsl_time(alert["t_lsl"]), payload)
        if self.console:
            self.console.line(f"  alert #{alert['alert_id']} regions: {', '.join(payload['top_regions'])}  "
                              f"strongest band x region: {' / '.join(payload['joint_top_cell'])}")
            if payload.get("seizure_like_channels"):
                self.console.line(f"  alert #{alert['alert_id']}: seizure-like on their own: "
                                  + seizure_like_text(payload, shown=5))
            if payload["muscle_like_channels"]:
                self.console.line(f"  alert #{alert['alert_id']}: power rising from 8-12 into 20-30 Hz on "
                                  f"{', '.join(payload['muscle_like_channels'])}, the shape of scalp muscle (EMG); "
                                  "a seizure's fast activity can look alike: check the traces")
            if payload["eye_movement_like"]:
                self.console.line(f"  alert #{alert['alert_id']}: "
                                  + eye_movement_text(payload["frontopolar_delta_excess"]))

    def _write_explanation(self, payload: dict, eeg: np.ndarray) -> None:
        if not self.explain_dir:
            return
        stem = self.explain_dir / f"alert_{payload['alert_id']:03d}"
        payload["files"] = [str(stem.with_suffix(".json")), str(stem.with_suffix(".png")),
                            str(stem.with_suffix(".npz"))]
        # the alerting window's conditioned EEG, so the figure shows the traces behind the alert
        np.savez_compressed(stem.with_suffix(".npz"), eeg_uv=eeg.astype(np.float32),
                            channels=np.array(unique_labels(self.spec.channels)), sfreq_hz=self.spec.sfreq_hz)
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        # The PNG is drawn by a separate process: plotting must not stall scoring, and
        # matplotlib would add ~30 MB to the monitor's footprint.
        self._figure_jobs.append(subprocess.Popen([sys.executable, "-m", "ictal.runtime.figures",
                                                   str(stem.with_suffix(".json"))]))

    # ------------------------------------------------------------ loop
    def run(self, duration_s: float | None = None, idle_exit_s: float | None = None,
            poll_s: float = 0.01, source_finished: Callable[[], bool] | None = None) -> None:
        """Process until `duration_s` of wall time passed or no data came for `idle_exit_s`, or,
        with `source_finished` (a callable: has the source sent its last sample?), once it has and
        the inlet is drained: a replay that ended is not a stalled stream, and must not raise the
        "no EEG samples" technical alarm on its way out."""
        start = time.monotonic()
        drained_s = min(0.5, self.stale_s / 2)  # no sample for this long after the source ended
        while True:
            got = self.step()
            now = time.monotonic()
            if duration_s is not None and now - start >= duration_s:
                break
            idle_s = now - max(self.last_data_wall, start)
            if idle_exit_s is not None and idle_s >= idle_exit_s:
                break
            if source_finished is not None and not got and idle_s >= drained_s and source_finished():
                break
            if not got:
                time.sleep(poll_s)
