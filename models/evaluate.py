"""Leak-free evaluation: cross-validation folds, window and event metrics."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from runtime.metrics import EventCounts, score_events, window_metrics, windows_to_events

from .data import WindowSet
from .train import binary_target, unambiguous


@dataclasses.dataclass
class Fold:
    name: str
    test: np.ndarray  # boolean masks over the windows of one WindowSet
    val: np.ndarray

    @property
    def train(self) -> np.ndarray:
        return ~(self.test | self.val)


def _seizure_groups(ws: WindowSet) -> list[str]:
    g, lab = ws.groups, ws.label
    return sorted({gg for gg, la in zip(g, lab) if la >= 0.5})


def _negative_units(ws: WindowSet, negative_source: str | None):
    """Per-window unit labels and the sorted units of the seizure-free data: its
    subjects, or its recordings when there are too few subjects to rotate."""
    pats = ws.patients
    if not negative_source:
        return pats, []
    is_neg = np.asarray(ws.source) == negative_source
    units = sorted(set(pats[is_neg]))
    if len(units) < 3:
        pats = np.where(is_neg, ws.groups, pats)
        units = sorted(set(pats[is_neg]))
    return pats, units


def leave_one_seizure_out(ws: WindowSet, negative_source: str | None = None) -> list[Fold]:
    """One fold per seizure recording group; validation is the next group.

    Windows of one group (a recording, or CHB-MIT clips cut from one
    recording) are never in two parts of a split. Seizure-free negative
    patients (e.g. eegmmidb subjects) rotate through test and validation.
    """
    groups = _seizure_groups(ws)
    g = ws.groups
    pats, neg_pat = _negative_units(ws, negative_source)
    folds = []
    for k, grp in enumerate(groups):
        test, val = g == grp, g == groups[(k + 1) % len(groups)]
        if neg_pat:
            test |= pats == neg_pat[k % len(neg_pat)]
            val |= pats == neg_pat[(k + 1) % len(neg_pat)]
        folds.append(Fold(f"loso:{grp}", test, val & ~test))
    return folds


def cross_patient(ws: WindowSet, train_patient: str, test_patient: str,
                  negative_source: str | None = None) -> Fold:
    """Train on one patient, test on another; negatives split in halves by subject."""
    g = ws.groups
    pats = ws.patients
    test = pats == test_patient
    train_groups = [x for x in _seizure_groups(ws) if x.startswith(train_patient)]
    val = g == train_groups[-1]
    units, neg = _negative_units(ws, negative_source)
    if neg:
        half = len(neg) // 2
        first, second = (neg[:half], neg[half:]) if train_patient < test_patient else (neg[half:], neg[:half])
        test |= np.isin(units, second)
        val |= units == first[0]
    other = ~np.isin(pats, [train_patient, test_patient]) & ~np.isin(ws.source, [negative_source])
    test |= other  # windows of patients in neither role are test-only, never trained on
    return Fold(f"cross-patient:{train_patient}->{test_patient}", test, val & ~test)


def event_counts(ws: WindowSet, p: np.ndarray, threshold, hop_s: float = 1.0) -> EventCounts:
    """SzCORE event counts over every recording of a window set."""
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), p.shape)
    total = EventCounts()
    for rec, (duration, seizures) in ws.recordings.items():
        idx = [i for i, w in enumerate(ws.windows) if w.recording == rec]
        if not idx:
            continue
        ends = np.array([ws.windows[i].end_s for i in idx])
        hyp = windows_to_events(ends, p[idx] >= thr[idx], hop_s)
        total.add(score_events(seizures, hyp, duration))
    return total


def summarise(ws: WindowSet, p: np.ndarray, threshold) -> dict:
    """Window metrics (unambiguous windows) and event metrics of predictions p over ws."""
    keep = unambiguous(ws.label)
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), p.shape)
    wm = window_metrics(binary_target(ws.label[keep]), p[keep], thr[keep])
    wm["threshold"] = float(np.mean(thr)) if np.ndim(threshold) else float(threshold)
    wm["n_ambiguous_windows_excluded"] = int((~keep).sum())
    # specificity per data set: hours of healthy EEG must not hide the seizure patients' own negatives
    src = np.asarray(ws.source)
    neg = keep & (ws.label == 0)
    wm["specificity_by_source"] = {s: {"n_negative_windows": int((neg & (src == s)).sum()),
                                       "specificity": float(np.mean(p[neg & (src == s)] < thr[neg & (src == s)]))}
                                   for s in sorted(set(src[neg]))}
    return {"window": wm, "event": event_counts(ws, p, thr).summary()}


def write_metrics(metrics: dict, out_dir: str | Path, title: str = "") -> tuple[Path, Path]:
    from .figures import confusion_matrix_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / "metrics.json"
    mpath.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    w = metrics["window"]
    sub = f"threshold {w['threshold']:.3f} · sensitivity {w['sensitivity']:.2f} · specificity {w['specificity']:.2f}"
    cpath = confusion_matrix_figure(w["confusion"], out / "confusion_matrix.png", title or "Window confusion matrix", sub)
    return mpath, cpath


def run_folds(ws: WindowSet, folds: list[Fold], spec, cfg, log=print) -> dict:
    """Train and test every fold; pooled window and event metrics over the test parts.

    Each fold uses its own validation-chosen threshold for its test windows.
    """
    from .train import predict_proba, train_model

    per_fold, p_all, thr_all, idx_all = [], [], [], []
    for fold in folds:
        log(f"--- fold {fold.name}: train {int(fold.train.sum())}, val {int(fold.val.sum())}, "
            f"test {int(fold.test.sum())} windows")
        tr, va = ws.subset(np.flatnonzero(fold.train)), ws.subset(np.flatnonzero(fold.val))
        test_idx = np.flatnonzero(fold.test)
        te = ws.subset(test_idx)
        model, fspec, thr, hist = train_model(tr, va, spec, cfg, log=log)
        p = predict_proba(model, fspec, te.x)
        m = summarise(te, p, thr)
        m["fold"], m["epochs"] = fold.name, len(hist)
        m["seconds_per_epoch"] = float(np.mean([h["seconds"] for h in hist]))
        per_fold.append(m)
        log(f"    threshold {thr:.3f}  window sens {m['window']['sensitivity']:.2f} spec "
            f"{m['window']['specificity']:.2f}  events {m['event']['detected']}/{m['event']['n_events']} "
            f"FA {m['event']['false_alarms']}")
        p_all.append(p), thr_all.append(np.full(len(p), thr)), idx_all.append(test_idx)
    idx = np.concatenate(idx_all)
    # A window may be tested in more than one fold (shared negatives); pool all test predictions.
    pooled = WindowSet(ws.x[:0], [ws.windows[i] for i in idx], [ws.source[i] for i in idx], {})
    pooled_metrics = {"window": summarise(pooled, np.concatenate(p_all), np.concatenate(thr_all))["window"]}
    ev = EventCounts()
    for m in per_fold:
        e = m["event"]
        ev.add(EventCounts(e["n_events"], e["detected"], e["n_detections"], e["n_detections"] - e["false_alarms"],
                           e["false_alarms"], e["duration_h"] * 3600.0, list(e["latencies_s"])))
    pooled_metrics["event"] = ev.summary()
    return {"pooled": pooled_metrics, "folds": per_fold}
