"""LSL inlet side: find an EEG stream and read labelled chunks from it."""
from __future__ import annotations

import re

import numpy as np

from .edf import unit_factor
from .errors import StreamError


NUMERIC_FORMATS = {1: np.float32, 2: np.float64, 4: np.int32, 5: np.int16, 6: np.int8, 7: np.int64}  # pylsl cf_*


def _lower_xpath(field: str) -> str:
    return f"translate({field},'ABCDEFGHIJKLMNOPQRSTUVWXYZ','abcdefghijklmnopqrstuvwxyz')"


def resolve_stream(name: str | None = None, stream_type: str = "EEG", timeout_s: float = 10.0):
    """StreamInfo of the first stream with this name (or, without a name, this type; the type
    matches whatever its case: 'EEG', 'eeg', 'Eeg')."""
    import pylsl

    prop, value = ("name", name) if name else ("type", stream_type)
    if name:
        found = pylsl.resolve_byprop("name", name, timeout=timeout_s)
    else:
        found = pylsl.resolve_bypred(f"{_lower_xpath('type')}='{stream_type.lower()}'", timeout=timeout_s)
    if not found:
        hint = f"`ictal replay FILE.edf --name {name}`" if name else "`ictal replay FILE.edf`"
        raise StreamError(f"no LSL stream with {prop} '{value}' found within {timeout_s:g} s; is the amplifier's "
                          f"LSL app running? To test without one: {hint}")
    return found[0]


def channel_metadata(info, field: str) -> list[str]:
    """One field ('label', 'unit', ...) of every <channels><channel> in a stream's metadata."""
    values = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        values.append(ch.child_value(field))
        ch = ch.next_sibling()
    return values


def stream_unit_factor(unit: str) -> float | None:
    """µV per unit of an LSL channel's <unit>: a name ('microvolts', 'V', ...), or as mne-lsl
    writes it, an integer power of ten of volts (MNE's unit_mul: '0' volts, '-6' microvolts)."""
    factor = unit_factor(unit)
    if factor is None and re.fullmatch(r"\s*[+-]?\d{1,2}\s*", unit):
        factor = 10.0 ** (int(unit) + 6)
    return factor


def replay_speed(info) -> float:
    """The speed a replay declares in <ictal><replay_speed> (1 for a live source)."""
    text = info.desc().child("ictal").child_value("replay_speed")
    try:
        speed = float(text) if text else 1.0
    except ValueError:
        raise StreamError(f"stream '{info.name()}': <ictal><replay_speed> is {text!r}; expected a number") from None
    if not speed > 0 or speed == float("inf"):
        raise StreamError(f"stream '{info.name()}': <ictal><replay_speed> is {text!r}; expected a positive number")
    return speed


def channel_labels(info) -> list[str]:
    return channel_metadata(info, "label")


class LslSource:
    """connect() → pull() (data (n_samples, n_channels) in µV, LSL timestamps (n_samples,)
    corrected to this machine's clock) → disconnect().

    Units come from each channel's <unit>; `units` overrides them (for streams that declare
    none). Timestamps go through LSL's clock synchronisation, so a remote amplifier's
    samples line up with this machine's clock.

    A replay faster than real time stamps each sample when it pushes it and declares its
    speed in <ictal><replay_speed>. `pull` returns stamps on the stream's own time axis
    (recording seconds: the first stamp plus elapsed LSL time × speed), so windows, gaps,
    rates and alert timing mean the same at any speed; `lsl_time` maps them back to this
    machine's clock (for latency and for the output streams). At speed 1 both are the same.
    """

    def __init__(self, name: str | None = None, stream_type: str = "EEG", timeout_s: float = 10.0,
                 max_buffer_s: int = 60, units: str | None = None):
        self.name, self.stream_type, self.timeout_s, self.max_buffer_s = name, stream_type, timeout_s, max_buffer_s
        self.units = units
        if units is not None and unit_factor(units) is None:
            raise StreamError(f"--units {units!r}: expected one of V, mV, uV (µV), nV")
        self.inlet = None
        self.uid = None

    def connect(self, info=None):
        import pylsl

        info = info or resolve_stream(self.name, self.stream_type, self.timeout_s)
        name = info.name()
        fmt = info.channel_format()
        if fmt not in NUMERIC_FORMATS:
            raise StreamError(f"stream '{name}' sends {'strings' if fmt == 3 else f'channel_format {fmt}'}; "
                              "EEG must be numeric (float32, float64, int8/16/32/64)")
        if info.channel_count() < 1:
            raise StreamError(f"stream '{name}' declares {info.channel_count()} channels; EEG needs at least one")
        # recover=True: pylsl re-resolves a stream with the same source_id when it comes back;
        # clocksync: timestamps are mapped onto this machine's clock (a remote amplifier's offset)
        self.inlet = pylsl.StreamInlet(info, max_buflen=self.max_buffer_s, recover=True,
                                       processing_flags=pylsl.proc_clocksync)
        full = self.inlet.info(timeout=self.timeout_s)
        self.inlet.open_stream(timeout=self.timeout_s)  # subscribe now: samples from here on are ours
        self.uid, self.source_id = full.uid(), full.source_id()
        self.stream_name = full.name()
        self.sfreq_hz = full.nominal_srate()
        self.n_channels = full.channel_count()
        self.labels = channel_labels(full)
        self.channel_units = channel_metadata(full, "unit")
        if len(self.labels) != self.n_channels:
            raise StreamError(f"stream '{self.stream_name}' declares {self.n_channels} channels but labels "
                              f"{len(self.labels)} in its metadata; labels are needed to map channels")
        if self.sfreq_hz <= 0:
            raise StreamError(f"stream '{self.stream_name}' has an irregular rate; EEG needs a nominal rate")
        self.uv_per_unit = np.array([stream_unit_factor(self.units or u) or np.nan for u in self.channel_units])
        self._buf = np.zeros((int(self.sfreq_hz * 4) + 1, self.n_channels), dtype=NUMERIC_FORMATS[fmt])
        self._scale, self._last_n = None, 0  # check_units sets the scale for the channels the model uses
        self.speed = replay_speed(full)
        self._anchor = None  # LSL time of the first sample: where stream time and LSL time meet
        return self

    def check_units(self, used: np.ndarray) -> None:
        """Refuse channels the model uses whose unit is unknown (unless `units` was given)."""
        unknown = [i for i in np.flatnonzero(used) if np.isnan(self.uv_per_unit[i])]
        if unknown:
            shown = ", ".join(f"{self.labels[i]} ({self.channel_units[i] or 'no unit'!r})" for i in unknown[:4])
            raise StreamError(f"stream '{self.stream_name}': unknown units on {len(unknown)} channel(s) the model "
                              f"uses: {shown}{' …' if len(unknown) > 4 else ''}; expected V, mV, uV or nV in "
                              "<channel><unit>, or pass --units uV (or V, mV, nV)")
        self.uv_per_unit = np.where(np.isnan(self.uv_per_unit), 0.0, self.uv_per_unit)
        self._scale = None if np.all(self.uv_per_unit[used] == 1.0) else self.uv_per_unit

    @property
    def full_pull(self) -> bool:
        """The last pull filled the buffer: more samples were waiting."""
        return self._last_n == self._buf.shape[0]

    def pull(self) -> tuple[np.ndarray, np.ndarray]:
        data, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=self._buf.shape[0], dest_obj=self._buf)
        n = self._last_n = len(ts)
        out = self._buf[:n].astype(np.float64)
        if self._scale is not None:
            out *= self._scale
        ts = np.asarray(ts, dtype=np.float64)
        if self.speed != 1.0 and n:
            if self._anchor is None:
                self._anchor = float(ts[0])
            ts = self._anchor + (ts - self._anchor) * self.speed
        return out, ts

    def lsl_time(self, t_stream: float) -> float:
        """This machine's LSL time of a stream time `pull` returned."""
        if self.speed == 1.0 or self._anchor is None:
            return t_stream
        return self._anchor + (t_stream - self._anchor) / self.speed

    def find_replacement(self, timeout_s: float = 0.2):
        """A stream with our name (or type) that is not the one we hold: the source restarted
        as a new outlet (another source_id or channel layout). None when there is none."""
        import pylsl

        if self.name:
            found = pylsl.resolve_byprop("name", self.name, timeout=timeout_s)
        else:
            found = pylsl.resolve_bypred(f"{_lower_xpath('type')}='{self.stream_type.lower()}'", timeout=timeout_s)
        def replaced(f) -> bool:  # same source_id and layout: LSL's own recovery follows it
            return f.uid() != self.uid and (not f.source_id() or f.source_id() != self.source_id
                                            or f.channel_count() != self.n_channels
                                            or f.nominal_srate() != self.sfreq_hz)
        return next((f for f in found if replaced(f)), None)

    def disconnect(self) -> None:
        if self.inlet is not None:
            self.inlet.close_stream()
            self.inlet = None
