"""LSL inlet side: find an EEG stream and read labelled chunks from it."""
from __future__ import annotations

import numpy as np

from .errors import StreamError


def resolve_stream(name: str | None = None, stream_type: str = "EEG", timeout_s: float = 10.0):
    """StreamInfo of the first stream with this name (or, without a name, this type)."""
    import pylsl

    prop, value = ("name", name) if name else ("type", stream_type)
    found = pylsl.resolve_byprop(prop, value, timeout=timeout_s)
    if not found:
        hint = f"`ictal replay FILE.edf --name {name}`" if name else "`ictal replay FILE.edf`"
        raise StreamError(f"no LSL stream with {prop} '{value}' found within {timeout_s:g} s; is the amplifier's "
                          f"LSL app running? To test without one: {hint}")
    return found[0]


def channel_labels(info) -> list[str]:
    """Channel labels from a stream's <channels><channel><label> metadata."""
    labels = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    return labels


class LslSource:
    """connect() → pull() (data (n_samples, n_channels), timestamps (n_samples,)) → disconnect()."""

    def __init__(self, name: str | None = None, stream_type: str = "EEG", timeout_s: float = 10.0,
                 max_buffer_s: int = 60):
        self.name, self.stream_type, self.timeout_s, self.max_buffer_s = name, stream_type, timeout_s, max_buffer_s
        self.inlet = None

    def connect(self):
        import pylsl

        info = resolve_stream(self.name, self.stream_type, self.timeout_s)
        # recover=True: pylsl re-resolves a stream with the same source_id when it comes back
        self.inlet = pylsl.StreamInlet(info, max_buflen=self.max_buffer_s, recover=True)
        full = self.inlet.info(timeout=self.timeout_s)
        self.inlet.open_stream(timeout=self.timeout_s)  # subscribe now: samples from here on are ours
        self.stream_name = full.name()
        self.sfreq_hz = full.nominal_srate()
        self.n_channels = full.channel_count()
        self.labels = channel_labels(full)
        if len(self.labels) != self.n_channels:
            raise StreamError(f"stream '{self.stream_name}' declares {self.n_channels} channels but labels "
                              f"{len(self.labels)} in its metadata; labels are needed to map channels")
        if self.sfreq_hz <= 0:
            raise StreamError(f"stream '{self.stream_name}' has an irregular rate; EEG needs a nominal rate")
        self._buf = np.zeros((int(self.sfreq_hz * 4) + 1, self.n_channels), dtype=np.float32)
        return self

    def pull(self) -> tuple[np.ndarray, np.ndarray]:
        data, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=self._buf.shape[0], dest_obj=self._buf)
        n = len(ts)
        return self._buf[:n].astype(np.float64), np.asarray(ts, dtype=np.float64)

    def disconnect(self) -> None:
        if self.inlet is not None:
            self.inlet.close_stream()
            self.inlet = None
