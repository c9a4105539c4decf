"""The bedside view: one web page for a running monitor (`ictal view`, `ictal monitor --view`).

It runs as its own process and reads only LSL: the monitor's `NAME-scores` and `NAME-alerts`
streams, and the EEG stream the monitor scores (named in their metadata). So the monitor's
footprint and latency do not change when a screen is attached (measured in the README), and a
view can run on another machine of the LSL network. The page is served by Starlette + uvicorn
(the `[view]` extra) and kept current over Server-Sent Events.

Safe by default: bound to 127.0.0.1; on any other address every request needs a token. The page
can show and acknowledge alerts, nothing else: no route changes what the monitor detects.
Acknowledging writes an `ack` record to the monitor's JSONL log and a marker on `NAME-view`.
"""
from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import secrets
import socket
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .channels import resolve_montage
from .conditioning import StreamingFilter
from .errors import SinkError, StreamError
from .lsl import LslSource, resolve_stream
from .monitor import channel_quality
from .sinks import JsonlLog, _jsonable, unique_source_id

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DISPLAY_HZ = 128.0  # EEG is sent to the page at about this rate (after the display filter)
DISPLAY_BAND_HZ = (0.5, 40.0)  # the monitor's band: the page shows what the model scores
QUALITY_SPAN_S = 2.0  # flat / saturated channels are judged on the last 2 s, as shown


def _meta(info, key: str) -> str:
    return info.desc().child("ictal").child_value(key)


class MonitorFeed:
    """A running monitor as the page sees it, read from LSL on the caller's thread.

    ``connect()`` finds ``NAME-scores``, ``NAME-alerts`` and the EEG stream; each ``poll()``
    reads what arrived and returns it as page messages; ``snapshot()`` is the whole state a
    newly opened page starts from. ``ack(alert_id)`` logs an acknowledgement.
    """

    def __init__(self, name: str = "ictal", *, timeout_s: float = 10.0, eeg_seconds: float = 20.0,
                 trend_seconds: float = 3600.0, log_path: str | Path | None = None, units: str | None = None):
        self.name, self.timeout_s = name, timeout_s
        self.eeg_seconds, self.trend_seconds = eeg_seconds, trend_seconds
        self.log_path, self.units = log_path, units
        self.view_id = unique_source_id(f"{name}-view")
        self.lock = threading.Lock()

    # ------------------------------------------------------------ connection
    def connect(self) -> "MonitorFeed":
        import pylsl

        try:
            scores_info = resolve_stream(f"{self.name}-scores", timeout_s=self.timeout_s)
            alerts_info = resolve_stream(f"{self.name}-alerts", timeout_s=self.timeout_s)
        except StreamError:
            raise StreamError(f"no monitor named '{self.name}' on the LSL network (no '{self.name}-scores' and "
                              f"'{self.name}-alerts' streams within {self.timeout_s:g} s); start one with "
                              f"`ictal monitor --name {self.name}`, or give the view its --name") from None
        self.scores = pylsl.StreamInlet(scores_info, max_buflen=60, recover=True,
                                        processing_flags=pylsl.proc_clocksync)
        self.alerts = pylsl.StreamInlet(alerts_info, max_buflen=60, recover=True,
                                        processing_flags=pylsl.proc_clocksync)
        full = self.scores.info(timeout=self.timeout_s)
        self.channels = [c for c in _meta(full, "channels").split(",") if c]
        if not self.channels:
            raise StreamError(f"stream '{self.name}-scores' names no channels in <ictal><channels>; "
                              "it is not from an ictal monitor of this version")
        threshold = _meta(full, "threshold")
        self.threshold = float(threshold) if threshold else None
        self.hop_s = float(_meta(full, "hop_s") or 1.0)
        self.model, self.monitor_id = _meta(full, "model"), _meta(full, "monitor")
        log = self.log_path or _meta(full, "log")
        self.log = JsonlLog(log) if log else None  # not exclusive: the monitor holds that lock
        self.eeg = LslSource(_meta(full, "eeg_stream") or None, _meta(full, "eeg_type") or "EEG", self.timeout_s,
                             units=self.units).connect()
        self.montage = resolve_montage(self.eeg.labels, self.channels, allow_missing=len(self.channels),
                                       source_name=f"stream '{self.eeg.stream_name}'")
        self.eeg.check_units(self.montage.matrix.any(axis=0))
        sf = self.eeg.sfreq_hz
        self.filter = StreamingFilter(len(self.channels), sf, DISPLAY_BAND_HZ)
        self.step = max(1, int(sf // DISPLAY_HZ))  # keep every step-th filtered sample
        self.display_hz = sf / self.step
        self._phase = 0
        n = int(round(self.eeg_seconds * self.display_hz))
        self.eeg_ring = collections.deque(maxlen=n)  # display samples, one list of channel values each
        self.raw_ring = collections.deque(maxlen=int(QUALITY_SPAN_S * sf))  # montaged, unfiltered
        self.trend = collections.deque()  # [t_lsl, p or None, active, technical]
        self.alert_log: list[dict] = []  # markers of the monitor, as received
        self.acked: dict[int, dict] = {}
        self.technical: dict[str, dict] = {}
        self.n_rejected = self.n_scores = 0
        self.last_eeg_wall = self.last_score_wall = None
        self.bad_channels: dict[str, str] = {}
        self._last_quality = 0.0
        self.marker = pylsl.StreamOutlet(pylsl.StreamInfo(f"{self.name}-view", "Markers", 1, pylsl.IRREGULAR_RATE,
                                                          "string", self.view_id))
        return self

    def disconnect(self) -> None:
        self.eeg.disconnect()
        for inlet in (self.scores, self.alerts):
            inlet.close_stream()
        if self.log:
            self.log.close()

    # ------------------------------------------------------------ reading
    def poll(self) -> list[dict]:
        """Read what the three streams hold now; returns the page messages it makes."""
        out = []
        data, _ = self.eeg.pull()
        if len(data):
            self.last_eeg_wall = time.time()
            raw = self.montage.apply(data.T)
            self.raw_ring.extend(raw.T)
            shown = self.filter.filter(raw)[:, (self._phase - np.arange(raw.shape[1])) % self.step == 0]
            self._phase = (self._phase - raw.shape[1]) % self.step
            if shown.shape[1]:
                rows = np.round(shown.T, 1).tolist()
                with self.lock:
                    self.eeg_ring.extend(rows)
                out.append({"type": "eeg", "data": rows})
        values, stamps = self.scores.pull_chunk(timeout=0.0)
        for v, t in zip(values, stamps):
            p = None if math.isnan(v[0]) else float(v[0])
            self.n_scores += 1
            self.n_rejected += p is None
            self.last_score_wall = time.time()
            row = [float(t), p, bool(v[1]), bool(v[2])]
            with self.lock:
                self.trend.append(row)
                while self.trend and self.trend[0][0] < t - self.trend_seconds:
                    self.trend.popleft()
            out.append({"type": "score", "score": row, "wall_time": self.last_score_wall})
        markers, _ = self.alerts.pull_chunk(timeout=0.0)
        for (text,) in markers:
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                continue  # not ours to show
            event = payload.get("event")
            if event == "technical_alarm":
                self.technical[payload.get("reason", "?")] = payload
            elif event == "technical_alarm_cleared":
                self.technical.pop(payload.get("reason", "?"), None)
            with self.lock:
                self.alert_log.append(payload)
            out.append({"type": "alert", "payload": payload})
        if time.monotonic() - self._last_quality >= 0.5:
            self._last_quality = time.monotonic()
            self._check_channels()
            out.append({"type": "status", "status": self.status()})
        return out

    def _check_channels(self) -> None:
        bad = {c: "zero-filled: not in the stream" for c in self.montage.missing}
        if len(self.raw_ring) == self.raw_ring.maxlen:
            flat, saturated = channel_quality(np.asarray(self.raw_ring).T, self.channels)
            bad.update({c: "flat" for c in flat if c not in bad})
            bad.update({c: "saturated" for c in saturated if c not in bad})
        self.bad_channels = bad

    def status(self) -> dict:
        now = time.time()
        eeg_age = None if self.last_eeg_wall is None else now - self.last_eeg_wall
        score_age = None if self.last_score_wall is None else now - self.last_score_wall
        return {"eeg_connected": eeg_age is not None and eeg_age < 2.0,
                "monitor_scoring": score_age is not None and score_age < max(3.0, 3 * self.hop_s),
                "eeg_age_s": eeg_age, "score_age_s": score_age, "scores": self.n_scores,
                "rejected_windows": self.n_rejected, "bad_channels": self.bad_channels,
                "technical_alarms": {k: v.get("message", k) for k, v in self.technical.items()},
                "falling_behind": "falling_behind" in self.technical}

    def snapshot(self) -> dict:
        with self.lock:
            return {"type": "hello", "name": self.name, "monitor": self.monitor_id, "model": self.model,
                    "threshold": self.threshold, "hop_s": self.hop_s, "channels": self.channels,
                    "display_hz": self.display_hz, "eeg_seconds": self.eeg_seconds,
                    "trend_seconds": self.trend_seconds, "eeg": list(self.eeg_ring), "trend": list(self.trend),
                    "alerts": list(self.alert_log), "acked": self.acked, "status": self.status(),
                    "eeg_stream": self.eeg.stream_name}

    # ------------------------------------------------------------ the one action
    def ack(self, alert_id: int) -> dict:
        """Acknowledge an alert: an `ack` record in the monitor's JSONL log and a marker on NAME-view.
        Raises SinkError when the log cannot be written (the marker is sent all the same)."""
        known = {a.get("alert_id") for a in self.alert_log if a.get("event") == "onset"}
        if alert_id not in known:
            raise KeyError(alert_id)
        rec = {"wall_time": time.time(), "event": "ack", "alert_id": alert_id, "monitor": self.monitor_id,
               "by": self.view_id}
        self.marker.push_sample([json.dumps(rec)])
        with self.lock:
            self.acked[alert_id] = rec
        if self.log is None:
            raise SinkError("the monitor publishes no log path and no --log was given: the ack is on "
                            f"the LSL stream '{self.name}-view' only")
        try:
            self.log.write(rec)
        except OSError as e:
            raise SinkError(f"log {self.log.path}: cannot write the ack ({e.strerror or e}); it is on the LSL "
                            f"stream '{self.name}-view' only") from None
        return rec


# ---------------------------------------------------------------- the web app
def page_html() -> str:
    return resources.files("ictal.runtime.assets").joinpath("view.html").read_text(encoding="utf-8")


def build_app(feed: MonitorFeed, token: str | None = None, poll_s: float = 0.02):
    """The Starlette app: GET / (the page), GET /events (SSE), GET /state (JSON), POST /ack."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    clients: set[asyncio.Queue] = set()

    def dumps(msg: dict) -> str:
        return json.dumps(msg, default=_jsonable, separators=(",", ":"), allow_nan=False)

    async def pump():
        """Poll LSL and fan the messages out; a client too slow to keep up is dropped (its
        browser reconnects and starts again from a snapshot)."""
        while True:
            try:
                msgs = await asyncio.to_thread(feed.poll)
            except Exception as e:  # a broken stream must show on the page, not kill the server
                msgs = [{"type": "error", "error": f"{type(e).__name__}: {e}"}]
                await asyncio.sleep(1.0)
            for msg in msgs:
                msg["sent_wall"] = time.time()
                text = dumps(msg)
                for q in list(clients):
                    try:
                        q.put_nowait(text)
                    except asyncio.QueueFull:
                        clients.discard(q)
            await asyncio.sleep(poll_s)

    async def lifespan(app):
        task = asyncio.create_task(pump())
        try:
            yield
        finally:
            task.cancel()

    async def index(request):
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-store"})

    async def events(request):
        q: asyncio.Queue = asyncio.Queue(maxsize=2000)

        async def stream():
            yield f"data: {dumps({**feed.snapshot(), 'sent_wall': time.time()})}\n\n"
            clients.add(q)
            try:
                while q in clients:
                    try:
                        text = await asyncio.wait_for(q.get(), timeout=15.0)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {text}\n\n"
            finally:
                clients.discard(q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def state(request):
        return JSONResponse(json.loads(dumps(feed.snapshot())))

    async def ack(request):
        try:
            body = await request.json()
            alert_id = int(body["alert_id"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"ok": False, "error": "expected JSON {\"alert_id\": N}"}, status_code=400)
        try:
            rec = feed.ack(alert_id)
        except KeyError:
            return JSONResponse({"ok": False, "error": f"no alert #{alert_id} from this monitor"}, status_code=404)
        except SinkError as e:
            return JSONResponse({"ok": False, "logged": False, "error": str(e)}, status_code=500)
        return JSONResponse({"ok": True, "logged": True, "record": rec})

    class TokenCheck(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            given = request.query_params.get("token") or request.headers.get("x-ictal-token") or ""
            if not secrets.compare_digest(given, token):
                return PlainTextResponse("ictal view: a token is required (open the URL the view printed)",
                                         status_code=401)
            return await call_next(request)

    middleware = [Middleware(TokenCheck)] if token else []
    routes = [Route("/", index), Route("/events", events), Route("/state", state),
              Route("/ack", ack, methods=["POST"])]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def parse_listen(text: str) -> tuple[str, int]:
    """'[HOST:]PORT' → (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port_n = int(port)
    except ValueError:
        raise ValueError(f"--view/--listen {text!r}: expected [HOST:]PORT, e.g. 8765 or 0.0.0.0:8765") from None
    if not 0 <= port_n <= 65535:
        raise ValueError(f"--view/--listen {text!r}: the port must be 0–65535")
    return host, port_n


def serve(feed: MonitorFeed, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          announce=print) -> None:
    """Serve the page until interrupted. Any address but the loopback needs a token: the given
    one, $ICTAL_VIEW_TOKEN, or a new random one (printed in the URL)."""
    import uvicorn

    if host not in LOCAL_HOSTS:
        token = token or os.environ.get("ICTAL_VIEW_TOKEN") or secrets.token_urlsafe(16)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # listening before the URL is printed: a browser that opens it at once waits, not refused
    except OSError as e:
        raise SinkError(f"view: cannot listen on {host}:{port} ({e.strerror or e})") from None
    port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    announce(f"ictal view of monitor '{feed.name}' (EEG '{feed.eeg.stream_name}'): "
             f"http://{shown}:{port}/{'?token=' + token if token else ''}", flush=True)
    config = uvicorn.Config(build_app(feed, token), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
