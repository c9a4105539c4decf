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
from pathlib import Path

import numpy as np

from .alerts import AlertStateMachine
from .channels import resolve_montage, unique_labels
from .conditioning import StreamingFilter, StreamingResampler
from .errors import ChannelMismatch, StreamError
from .lsl import LslSource
from .occlusion import band_region_matrix, occlude
from .scorer import Scorer
from .sinks import ConsoleStatus, JsonlLog, LslOutputs


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
    """connect() → run() / step() → disconnect().

    Every scored window and every alert is written to the JSONL log at once.
    """

    def __init__(self, model: str | Path, *, stream_name: str | None = None, stream_type: str = "EEG",
                 hop_s: float = 1.0, allow_missing: int = 0, k: int = 3, n: int = 4, quiet_s: float = 10.0,
                 refractory_s: float = 30.0, log_path: str | Path = "ictal-monitor.jsonl",
                 explain_dir: str | Path | None = None, gradcam_checkpoint: str | Path | None = None,
                 lsl_outputs: bool = True, console: bool = True, resolve_timeout_s: float = 10.0,
                 baseline_lookback_s: float = 60.0, gap_tolerance_s: float = 0.25, stale_s: float = 2.0,
                 max_bad_channels: int = 2, saturation_uv: float = 3000.0, flat_uv: float = 0.5,
                 threads: int | None = None, output_name: str = "ictal", cam_layer: str = "layer4"):
        self.scorer = Scorer(model, threads=threads)
        self.spec = self.scorer.spec
        self.hop_s = hop_s
        self.hop = int(round(hop_s * self.spec.sfreq_hz))
        self.win = self.spec.n_samples
        self.allow_missing = allow_missing
        self.alerts = AlertStateMachine(self.scorer.threshold, k, n, quiet_s, refractory_s)
        self.log = JsonlLog(log_path)
        self.explain_dir = Path(explain_dir) if explain_dir else None
        self.gradcam_checkpoint = gradcam_checkpoint
        self.cam_layer = cam_layer
        self._gradcam = None
        self.outputs = LslOutputs(output_name) if lsl_outputs else None
        self.console = ConsoleStatus() if console else None
        self.source = LslSource(stream_name, stream_type, resolve_timeout_s)
        self.lookback = int(baseline_lookback_s * self.spec.sfreq_hz)
        self.gap_tolerance_s, self.stale_s = gap_tolerance_s, stale_s
        self.max_bad_channels, self.saturation_uv, self.flat_uv = max_bad_channels, saturation_uv, flat_uv
        self.ring = RingBuffer(len(self.spec.channels), self.win * 2 + self.lookback + self.hop)
        self.explanations: list[dict] = []
        self.events: list[dict] = []
        self.n_scored = self.n_rejected = self.n_gaps = self.n_received = 0
        self._clock = None
        self._figure_jobs: list[subprocess.Popen] = []

    # ------------------------------------------------------------ connection
    def connect(self) -> "Monitor":
        import pylsl

        self._clock = pylsl.local_clock
        src = self.source.connect()
        try:
            self.montage = resolve_montage(src.labels, self.spec.channels, allow_missing=self.allow_missing,
                                           source_name=f"stream '{src.stream_name}'",
                                           model_name=f"model {self.scorer.name}")
        except ChannelMismatch:
            self.source.disconnect()
            raise
        c = len(self.spec.channels)
        self.resampler = StreamingResampler(c, src.sfreq_hz, self.spec.sfreq_hz)
        self.filter = StreamingFilter(c, self.spec.sfreq_hz, self.spec.band_hz, self.spec.notch_hz)
        self.last_ts: float | None = None
        self.first_t_lsl: float | None = None  # first sample's LSL time: alerts also say seconds into the stream
        self.last_data_wall = time.monotonic()
        self.stalled = False
        self.since_score = 0
        if self.gradcam_checkpoint and self._gradcam is None:
            from models.explain import GradCAMExplainer  # imports torch: only when Grad-CAM is asked for

            self._gradcam = GradCAMExplainer.from_checkpoint(self.gradcam_checkpoint, self.cam_layer)
        self._record({"event": "connected", "stream": src.stream_name, "sfreq_hz": src.sfreq_hz,
                      "channels": src.labels, "montage": dict(zip(unique_labels(self.spec.channels), self.montage.how)),
                      "model": self.scorer.name, "threshold": self.scorer.threshold, "hop_s": self.hop_s})
        if self.console:
            self.console.line(f"connected to '{src.stream_name}' ({src.n_channels} ch @ {src.sfreq_hz:g} Hz); "
                              f"{self.scorer.describe()}")
        return self

    def disconnect(self) -> None:
        for job in self._figure_jobs:  # let explanation figures finish
            try:
                job.wait(timeout=60)
            except subprocess.TimeoutExpired:
                job.kill()
        self.source.disconnect()
        import resource

        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB
        self._record({"event": "disconnected", "scored": self.n_scored, "rejected": self.n_rejected,
                      "gaps": self.n_gaps, "samples_received": self.n_received, "peak_rss_mb": round(peak_mb, 1),
                      "torch_loaded": "torch" in __import__("sys").modules})
        self.log.close()

    # ------------------------------------------------------------ processing
    def _record(self, rec: dict) -> None:
        rec = {"wall_time": time.time(), **rec}
        self.log.write(rec)
        if rec["event"] not in ("score",):
            self.events.append(rec)

    def _reset_conditioning(self) -> None:
        self.resampler.reset()
        self.filter.reset()
        self.ring.clear()
        self.alerts.gap()
        self.since_score = 0

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
                if self.console:
                    self.console.line(f"no data from '{self.source.stream_name}' for {self.stale_s:g} s; waiting")
            return 0
        if self.stalled:
            self._record({"event": "stream_resumed", "t_lsl": float(ts[0])})
            self.stalled = False
        self.last_data_wall = now
        self.n_received += len(ts)
        self._ingest(data, ts)
        return len(ts)

    def _ingest(self, data: np.ndarray, ts: np.ndarray) -> None:
        period = 1.0 / self.source.sfreq_hz
        if self.last_ts is not None:
            jump = ts[0] - self.last_ts
            if jump > period + self.gap_tolerance_s or jump < -self.gap_tolerance_s:
                kind = "gap" if jump > 0 else "clock_jump"
                self.n_gaps += 1
                self._record({"event": kind, "from_t_lsl": self.last_ts, "to_t_lsl": float(ts[0]),
                              "seconds": round(float(jump), 4)})
                if self.console:
                    self.console.line(f"{kind}: {jump:+.2f} s at LSL t={self.last_ts:.2f}; restarting the buffer")
                self._reset_conditioning()
        if self.first_t_lsl is None:
            self.first_t_lsl = float(ts[0])
        self.last_ts = float(ts[-1])
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
            bad_out[:] = np.interp(t_out, ts, bad.astype(float), left=0, right=0) > 0
        self.ring.append(out, raw, t_out, bad_out)
        self.since_score += m
        while self.since_score >= self.hop:
            self.since_score -= self.hop
            if self.ring.size - self.since_score >= self.win:  # only windows fully inside the buffer
                self._score(skip=self.since_score)

    def _quality(self, raw: np.ndarray) -> tuple[list[str], list[str]]:
        ptp = np.ptp(raw, axis=1)
        sat = np.mean(np.abs(raw) >= self.saturation_uv, axis=1) > 0.01
        flat = [c for c, v in zip(self.spec.channels, ptp) if v < self.flat_uv]
        saturated = [c for c, s in zip(self.spec.channels, sat) if s]
        return flat, saturated

    def _score(self, skip: int = 0) -> None:
        data, raw, t, bad = self.ring.latest(self.win, skip)
        t_end = float(t[-1])
        if bad.any():
            self.n_rejected += 1
            self._record({"event": "window_rejected", "t_lsl": t_end, "reason": "non-finite samples",
                          "bad_samples": int(bad.sum())})
            self.alerts.gap()
            return
        flat, saturated = self._quality(raw)
        missing = [c for c, how in zip(self.spec.channels, self.montage.how) if how.startswith("missing")]
        bad_channels = sorted(set(flat + saturated) - set(missing))
        if len(bad_channels) > self.max_bad_channels:
            self.n_rejected += 1
            self._record({"event": "window_rejected", "t_lsl": t_end, "reason": "flat or saturated channels",
                          "flat": flat, "saturated": saturated})
            self.alerts.gap()
            return
        if bad_channels:  # zero-fill a few bad channels: the model was trained with channel drop-out
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
               "latency_s": round(self._clock() - t_end, 4)}
        if bad_channels:
            rec["zero_filled"] = bad_channels
        self._record(rec)
        if self.outputs:
            self.outputs.score(t_end, p, self.alerts.active)
        if self.console:
            bar = "#" * int(round(p * 20))
            state = "ALERT" if self.alerts.active else "ok"
            self.console.status(f"t={t_end:10.2f}  p={p:.3f} [{bar:<20}] {state}"
                                f"{'  degraded: ' + ','.join(bad_channels) if bad_channels else ''}")
        if event:
            self._alert(event, log_power, feats, data, skip)

    # ------------------------------------------------------------ alerts & explanations
    def _baseline(self, skip: int) -> tuple[np.ndarray, dict]:
        """Baseline for occlusion: the quietest (lowest-power) 10-s window of the
        `baseline_lookback_s` before the segment of interest; with too little
        history, the quietest earlier window even if it overlaps; else zeros."""
        before, overlapping = [], []
        n_back = min(self.ring.size - self.win - skip, self.lookback + self.win)
        for back in range(self.hop, n_back + 1, self.hop):
            d, _, t, b = self.ring.latest(self.win, skip + back)
            if not b.any():
                (before if back >= self.win else overlapping).append((float(np.mean(d ** 2)), d, t))
        pool = before or overlapping
        if not pool:
            return np.zeros((len(self.spec.channels), self.win)), {"kind": "zeros (no earlier EEG in buffer)"}
        power, d, t = min(pool, key=lambda c: c[0])
        kind = "quietest preceding window" if before else "quietest earlier window, overlapping (short history)"
        return d.copy(), {"kind": kind, "t_start": float(t[0]), "t_end": float(t[-1]),
                          "mean_power_uv2": round(power, 3)}

    def _alert(self, event, log_power: np.ndarray, feats: np.ndarray, eeg: np.ndarray, skip: int) -> None:
        payload = {"event": event.kind, "alert_id": event.alert_id, "t_lsl": event.t_lsl, "p": round(event.p, 6),
                   "model": self.scorer.name, "wall_time": time.time(),
                   "t_stream_s": round(event.t_lsl - self.first_t_lsl, 3) if self.first_t_lsl is not None else None}
        if event.kind == "onset":
            t0 = time.perf_counter()
            base, base_info = self._baseline(skip)
            occ = occlude(self.scorer, self.spec, log_power, self.scorer.transform.log_power(base))
            expl = {**occ.to_json(), "baseline": base_info, "first_positive_t_lsl": event.first_positive_t_lsl,
                    "occlusion_ms": round(1e3 * (time.perf_counter() - t0), 1)}
            if self.gradcam_checkpoint:
                fi = self._gradcam.band_importance(feats)
                expl["band_importance"] = fi
                expl["fri_matrix"] = band_region_matrix(fi, occ.region_importance()).round(6).tolist()
            payload.update(expl)
            self.explanations.append(payload)
            self._write_explanation(payload, eeg)
        self._record({**payload, "event": f"alert_{event.kind}"})
        if self.outputs:
            self.outputs.alert(event.t_lsl, payload)
        if self.console:
            if event.kind == "onset":
                self.console.line(f"ALERT #{event.alert_id} onset at LSL t={event.t_lsl:.2f}  p={event.p:.3f}  "
                                  f"regions: {', '.join(payload['top_regions'])}  "
                                  f"strongest band x region: {' / '.join(payload['joint_top_cell'])}")
            else:
                self.console.line(f"ALERT #{event.alert_id} closed at LSL t={event.t_lsl:.2f}")

    def _write_explanation(self, payload: dict, eeg: np.ndarray) -> None:
        if not self.explain_dir:
            return
        self.explain_dir.mkdir(parents=True, exist_ok=True)
        stem = self.explain_dir / f"alert_{payload['alert_id']:03d}"
        payload["files"] = [str(stem.with_suffix(".json")), str(stem.with_suffix(".png")),
                            str(stem.with_suffix(".npz"))]
        # the alerting window's conditioned EEG, so the figure shows the traces behind the alert
        np.savez_compressed(stem.with_suffix(".npz"), eeg_uv=eeg.astype(np.float32),
                            channels=np.array(unique_labels(self.spec.channels)), sfreq_hz=self.spec.sfreq_hz)
        stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        # The PNG is drawn by a separate process: plotting must not stall scoring, and
        # matplotlib would add ~30 MB to the monitor's footprint.
        self._figure_jobs.append(subprocess.Popen([sys.executable, "-m", "runtime.figures",
                                                   str(stem.with_suffix(".json"))]))

    # ------------------------------------------------------------ loop
    def run(self, duration_s: float | None = None, idle_exit_s: float | None = None,
            poll_s: float = 0.01) -> None:
        """Process until `duration_s` of wall time passed or no data came for `idle_exit_s`."""
        start = time.monotonic()
        while True:
            got = self.step()
            now = time.monotonic()
            if duration_s is not None and now - start >= duration_s:
                break
            if idle_exit_s is not None and now - max(self.last_data_wall, start) >= idle_exit_s:
                break
            if not got:
                time.sleep(poll_s)
