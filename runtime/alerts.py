"""Alert logic: k-of-n windows above threshold open an alert; a quiet period
below threshold closes it; a refractory time after closing keeps the next
alert from opening on the same seizure's tail."""
from __future__ import annotations

import collections
import dataclasses

import numpy as np


@dataclasses.dataclass
class AlertEvent:
    kind: str  # "onset" or "offset"
    t_lsl: float  # LSL timestamp (end of the window that triggered it)
    p: float
    alert_id: int
    first_positive_t_lsl: float | None = None


def check_alert_rule(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise ValueError(f"alert rule needs 1 <= k <= n, got k={k}, n={n}")


class AlertStateMachine:
    """update(t_lsl, p) → AlertEvent or None, once per scored window.

    Gaps (unscorable windows) call `gap()`, which clears the k-of-n history:
    windows on both sides of a gap are never counted together.
    """

    def __init__(self, threshold: float, k: int = 3, n: int = 4, quiet_s: float = 10.0,
                 refractory_s: float = 30.0):
        check_alert_rule(k, n)
        self.threshold, self.k, self.n = threshold, k, n
        self.quiet_s, self.refractory_s = quiet_s, refractory_s
        self.recent: collections.deque = collections.deque(maxlen=n)
        self.active = False
        self.below_since: float | None = None
        self.closed_at: float | None = None
        self.alert_id = 0

    def gap(self) -> None:
        self.recent.clear()

    def update(self, t_lsl: float, p: float) -> AlertEvent | None:
        positive = p >= self.threshold
        self.recent.append((t_lsl, positive))
        if not self.active:
            in_refractory = self.closed_at is not None and t_lsl - self.closed_at < self.refractory_s
            if not in_refractory and sum(pos for _, pos in self.recent) >= self.k:
                self.active, self.below_since = True, None
                self.alert_id += 1
                first = next(t for t, pos in self.recent if pos)
                return AlertEvent("onset", t_lsl, p, self.alert_id, first)
            return None
        if positive:
            self.below_since = None
            return None
        self.below_since = self.below_since if self.below_since is not None else t_lsl
        if t_lsl - self.below_since >= self.quiet_s:
            self.active, self.closed_at = False, t_lsl
            self.recent.clear()
            return AlertEvent("offset", t_lsl, p, self.alert_id)
        return None


@dataclasses.dataclass(frozen=True)
class AlertRule:
    """The monitor's alert rule, for scoring recordings offline as the monitor would alarm."""
    k: int = 3
    n: int = 4
    quiet_s: float = 10.0
    refractory_s: float = 30.0

    def __post_init__(self):
        check_alert_rule(self.k, self.n)

    def events(self, window_ends_s, p, threshold: float) -> list[tuple[float, float]]:
        """(onset, offset) of each alert the monitor raises on windows ending at `window_ends_s`
        with scores `p` (NaN: a window it could not score, which breaks the k-of-n run as a gap
        does live). An alert still open after the last window closes there."""
        machine = AlertStateMachine(threshold, self.k, self.n, self.quiet_s, self.refractory_s)
        order = np.argsort(window_ends_s, kind="stable")
        ends, scores = np.asarray(window_ends_s, float)[order], np.asarray(p, float)[order]
        events, onset = [], None
        for t, s in zip(ends, scores):
            if not np.isfinite(s):
                machine.gap()
                continue
            ev = machine.update(float(t), float(s))
            if ev is not None and ev.kind == "onset":
                onset = ev.t_lsl
            elif ev is not None:
                events.append((onset, ev.t_lsl))
                onset = None
        if onset is not None:
            events.append((onset, float(ends[-1])))
        return events
