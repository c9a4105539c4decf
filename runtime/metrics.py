"""Window-level and event-level (SzCORE) seizure-detection metrics, torch-free.

Event rules follow SzCORE / the `timescoring` library: events closer than
90 s are merged, events longer than 300 s are split, a reference event is
detected when any detection overlaps it extended by 30 s before onset and
60 s after its end; detections that overlap no extended reference event are
false alarms.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.stats import beta, chi2, rankdata

MERGE_GAP_S = 90.0
MAX_EVENT_S = 300.0
TOL_BEFORE_S = 30.0
TOL_AFTER_S = 60.0


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); NaN if one class is absent."""
    y_true = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))  # ties share their average rank
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------- uncertainty
def rate_interval_per_24h(count: int, duration_s: float, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) Poisson interval of an event rate, per 24 h: `count` events in
    `duration_s`. It assumes independent events; alarms that cluster in a few recordings make
    the true uncertainty wider. (nan, nan) without any duration."""
    if duration_s <= 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    lo = 0.0 if count == 0 else chi2.ppf(alpha / 2, 2 * count) / 2
    hi = chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2
    scale = 86400.0 / duration_s
    return float(lo * scale), float(hi * scale)


def proportion_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a proportion k/n, e.g. seizures detected; (nan, nan)
    for n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    lo = 0.0 if k == 0 else beta.ppf(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else beta.ppf(1 - alpha / 2, k + 1, n - k)
    return float(lo), float(hi)


MIN_PATIENTS_FOR_INTERVAL = 5


def patient_bootstrap_auroc(y_true: np.ndarray, scores: dict[str, np.ndarray], patients: np.ndarray, *,
                            compare: str | None = None, n_boot: int = 1000, level: float = 0.95,
                            seed: int = 0) -> dict:
    """Pooled window AUROC of each method with an interval from resampling *patients*.

    Windows of one patient are not independent (a seizure gives many windows, a patient's
    background repeats), so patients are drawn with replacement and their windows taken whole:
    a percentile interval over `n_boot` resamples. The methods share the resamples, so with
    `compare` (the model) its difference to each other method (compare − other) is paired. Resamples
    without both classes are skipped. With fewer than `MIN_PATIENTS_FOR_INTERVAL` patients no
    interval is given (None): resampling two patients says nothing about a third.

    Returns ``{"n_patients", "n_resamples", "methods": {name: {"auroc", "ci95"}},
    f"{compare}_minus": {other: {"difference", "ci95"}}}``.
    """
    y = np.asarray(y_true).astype(bool)
    patients = np.asarray(patients)
    units = [np.flatnonzero(patients == u) for u in np.unique(patients)]
    point = {m: auroc(y, s) for m, s in scores.items()}
    out = {"n_patients": len(units), "n_resamples": 0,
           "methods": {m: {"auroc": a, "ci95": None} for m, a in point.items()}}
    others = [m for m in scores if compare is not None and m != compare]
    if compare is not None:
        out[f"{compare}_minus"] = {m: {"difference": point[compare] - point[m], "ci95": None} for m in others}
    if len(units) < MIN_PATIENTS_FOR_INTERVAL or not np.isfinite(list(point.values())).all():
        return out
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in scores}
    for _ in range(n_boot):
        idx = np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
        if y[idx].all() or not y[idx].any():
            continue
        for m, s in scores.items():
            draws[m].append(auroc(y[idx], np.asarray(s)[idx]))
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    out["n_resamples"] = len(draws[next(iter(scores))])
    if not out["n_resamples"]:
        return out
    for m in scores:
        out["methods"][m]["ci95"] = [float(v) for v in np.percentile(draws[m], q)]
    for m in others:
        diff = np.asarray(draws[compare]) - np.asarray(draws[m])
        out[f"{compare}_minus"][m]["ci95"] = [float(v) for v in np.percentile(diff, q)]
    return out


def window_metrics(y_true: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Metrics of per-window predictions. y_true : (n,) 0/1; p : (n,) probabilities."""
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(p) >= threshold
    tp, tn = int(np.sum(pred & y)), int(np.sum(~pred & ~y))
    fp, fn = int(np.sum(pred & ~y)), int(np.sum(~pred & y))

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    sens, spec = ratio(tp, tp + fn), ratio(tn, tn + fp)
    prec = ratio(tp, tp + fp)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    f1_neg = ratio(2 * tn, 2 * tn + fn + fp)
    n = len(y)
    weighted = (np.nan_to_num(f1) * (tp + fn) + np.nan_to_num(f1_neg) * (tn + fp)) / n if n else float("nan")
    thr = float(threshold) if np.ndim(threshold) == 0 else float(np.mean(threshold))
    return {"n_windows": n, "threshold": thr, "accuracy": ratio(tp + tn, n),
            "sensitivity": sens, "specificity": spec, "precision": prec, "f1": f1,
            "weighted_f1": float(weighted), "auroc": auroc(y, p),
            "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp}}


def choose_threshold(y_true: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising Youden's J (sensitivity + specificity − 1) on validation windows.

    Ties go to the higher threshold (fewer false alarms at the bedside).
    """
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    if y.all() or (~y).all():
        return 0.5
    cands = np.unique(np.concatenate([p, [0.5]]))
    best, best_t = -np.inf, 0.5
    for t in cands:
        pred = p >= t
        j = pred[y].mean() + (~pred[~y]).mean() - 1
        if j >= best - 1e-12:
            best, best_t = j, t
    # midpoint to the next lower score keeps the same split but is less brittle
    lower = p[p < best_t]
    return float((best_t + lower.max()) / 2) if lower.size else float(best_t)


def threshold_for_specificity(y_true: np.ndarray, p: np.ndarray, specificity: float) -> float:
    """The lowest threshold at which at least `specificity` of the negatives score below it
    (the most sensitive operating point that keeps false positives that rare)."""
    y = np.asarray(y_true).astype(bool)
    neg = np.sort(np.asarray(p, dtype=np.float64)[~y])
    if neg.size == 0:
        return 0.5
    k = int(np.ceil(specificity * neg.size))  # negatives that must fall below the threshold
    if k >= neg.size:
        return float(np.nextafter(neg[-1], np.inf))
    return float((neg[k - 1] + neg[k]) / 2) if k > 0 and neg[k] > neg[k - 1] else float(np.nextafter(neg[k], np.inf))


# ---------------------------------------------------------------- events
def merge_events(events: list[tuple[float, float]], gap_s: float = MERGE_GAP_S) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(events):
        if out and s - out[-1][1] < gap_s:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def split_long_events(events, max_s: float = MAX_EVENT_S):
    out = []
    for s, e in events:
        while e - s > max_s:
            out.append((s, s + max_s))
            s += max_s
        out.append((s, e))
    return out


def windows_to_events(window_ends_s: np.ndarray, positive: np.ndarray, hop_s: float) -> list[tuple[float, float]]:
    """Detections as events: a positive window marks [end − hop, end], the span in which a
    live detector would have raised it."""
    ends = np.asarray(window_ends_s)[np.asarray(positive, bool)]
    return merge_events([(float(e - hop_s), float(e)) for e in ends], gap_s=1e-9)


@dataclasses.dataclass
class EventCounts:
    n_ref: int = 0
    tp_ref: int = 0
    n_hyp: int = 0
    tp_hyp: int = 0
    fp: int = 0
    duration_s: float = 0.0
    latencies_s: list = dataclasses.field(default_factory=list)
    # detected seizures whose overlapping alarm began before onset − 30 s: the detector was
    # already alarming, so no latency is claimed (the alarm's start is a false alarm)
    already_alarming: int = 0

    def add(self, other: "EventCounts") -> "EventCounts":
        for f in ("n_ref", "tp_ref", "n_hyp", "tp_hyp", "fp", "duration_s", "already_alarming"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.latencies_s = self.latencies_s + other.latencies_s
        return self

    def summary(self) -> dict:
        sens = self.tp_ref / self.n_ref if self.n_ref else float("nan")
        prec = self.tp_hyp / self.n_hyp if self.n_hyp else float("nan")
        f1 = 2 * sens * prec / (sens + prec) if self.n_ref and self.n_hyp and (sens + prec) else float("nan")
        fa = self.fp * 86400.0 / self.duration_s if self.duration_s else float("nan")
        lat = np.asarray(self.latencies_s, dtype=float)
        return {"n_events": self.n_ref, "detected": self.tp_ref, "n_detections": self.n_hyp,
                "false_alarms": self.fp, "duration_h": self.duration_s / 3600.0,
                "sensitivity": sens, "sensitivity_ci95": list(proportion_interval(self.tp_ref, self.n_ref)),
                "precision": prec, "f1": f1, "false_alarms_per_24h": fa,
                "false_alarms_per_24h_ci95": list(rate_interval_per_24h(self.fp, self.duration_s)),
                "latency_median_s": float(np.median(lat)) if lat.size else float("nan"),
                "detected_while_already_alarming": self.already_alarming,
                "latencies_s": [round(float(x), 2) for x in lat]}


def score_events(reference, hypothesis, duration_s: float) -> EventCounts:
    """SzCORE event scoring of one recording. Events are (start_s, end_s) pairs.

    Counts (detected seizures, false alarms) agree with `timescoring.EventScoring` at its
    defaults (tested against it). Latency is ours: measured from a seizure's real onset (not
    from the start of a 300-s chunk of a long seizure) to the first alarm that starts within
    the tolerance window; an alarm already running before onset − 30 s claims no latency.
    """
    merged_ref = merge_events(reference)
    onsets = {s for s, _ in merged_ref}
    ref = split_long_events(merged_ref)
    hyp = split_long_events(merge_events(hypothesis))
    counts = EventCounts(n_ref=len(ref), n_hyp=len(hyp), duration_s=duration_s)
    extended = [(s - TOL_BEFORE_S, e + TOL_AFTER_S) for s, e in ref]
    for (rs, _), (xs, xe) in zip(ref, extended):
        hits = [h for h in hyp if h[0] < xe and h[1] > xs]
        if hits:
            counts.tp_ref += 1
            if rs not in onsets:
                continue  # a later chunk of a long seizure: no onset to measure from
            fresh = [h[0] for h in hits if h[0] >= xs]
            if fresh:
                counts.latencies_s.append(min(fresh) - rs)
            else:
                counts.already_alarming += 1
    for hs, he in hyp:
        if any(hs < xe and he > xs for xs, xe in extended):
            counts.tp_hyp += 1
        else:
            counts.fp += 1
    return counts
