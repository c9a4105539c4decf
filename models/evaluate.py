"""Leak-free evaluation: cross-validation folds, window and event metrics."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ictal.runtime.alerts import AlertRule
from ictal.runtime.artefacts import frontopolar_delta_excess, muscle_like
from ictal.runtime.bandwidth import BAND_LIMITED_DECADES, band_limited_message, top_band_drop
from ictal.runtime.channels import MAX_BAD_CHANNELS, check_zero_fill
from ictal.runtime.errors import DataError
from ictal.runtime.features import FeatureSpec
from ictal.runtime.metrics import (EventCounts, auroc, patient_bootstrap_auroc, score_events, window_metrics,
                                  windows_to_events)

from ictal.runtime.annotations import find_labelled_recordings

from .data import WindowSet, binary_target, take_rows, unambiguous


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


def _recording_hop_s(ends: np.ndarray) -> float:
    """Spacing of a recording's scored windows: a positive window stands for one hop of alarm."""
    return float(np.median(np.diff(np.sort(ends)))) if len(ends) > 1 else 1.0


def _windows_by_recording(ws: WindowSet) -> list[tuple[str, np.ndarray, np.ndarray, float, list]]:
    """(recording, its window indices, their end times, duration, seizures) of each recording of
    ws that has scored windows."""
    by_rec: dict[str, list[int]] = {}
    for i, w in enumerate(ws.windows):
        by_rec.setdefault(w.recording, []).append(i)
    return [(rec, np.array(by_rec[rec]), np.array([ws.windows[i].end_s for i in by_rec[rec]]), duration, seizures)
            for rec, (duration, seizures) in ws.recordings.items() if rec in by_rec]


def event_counts_by_recording(ws: WindowSet, p: np.ndarray, threshold, *, seizure_free: bool | None = None,
                               alert_rule: AlertRule | None = None) -> dict[str, EventCounts]:
    """SzCORE event counts of each scored recording of a window set (all of them, or only the
    seizure-free ones with `seizure_free=True`, or only those with seizures with False).

    Detections are the windows above threshold, each standing for one hop of alarm; with
    `alert_rule`, the alerts the monitor's rule raises on the same windows instead (k of n above
    threshold to open, a quiet time to close, a refractory time after)."""
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), p.shape)
    out = {}
    for rec, idx, ends, duration, seizures in _windows_by_recording(ws):
        if seizure_free is not None and seizure_free == bool(seizures):
            continue
        if alert_rule is None:
            hyp = windows_to_events(ends, p[idx] >= thr[idx], _recording_hop_s(ends))
        else:  # one threshold per recording: a fold's, or the model's
            hyp = alert_rule.events(ends, p[idx], float(thr[idx][0]))
        out[rec] = score_events(seizures, hyp, duration)
    return out


def events_at_false_alarm_caps(ws: WindowSet, p: np.ndarray, caps: dict[str, int]) -> dict[str, dict]:
    """For each cap: the most seizures p finds over ws at any threshold whose false alarms (on the
    seizure-free recordings and outside the seizures) stay ≤ the cap; ties go to fewer false alarms.

    This reads two detectors' curves at one false-alarm count. The threshold is searched on these
    windows, so it measures the score, not the threshold rule (that is the deployed comparison).
    """
    recs = _windows_by_recording(ws)  # grouped once, scored at every candidate threshold
    best = {name: None for name in caps}
    for t in [np.inf, *np.unique(p)[::-1]]:
        total = EventCounts()
        for _, idx, ends, duration, seizures in recs:
            total.add(score_events(seizures, windows_to_events(ends, p[idx] >= t, _recording_hop_s(ends)), duration))
        for name, cap in caps.items():
            if total.fp <= cap and (best[name] is None or (total.tp_ref, -total.fp) > (best[name]["detected"],
                                                                                      -best[name]["false_alarms"])):
                best[name] = {"detected": total.tp_ref, "n_events": total.n_ref, "false_alarms": total.fp,
                              "threshold": float(t) if np.isfinite(t) else None}
    return best


def event_counts(ws: WindowSet, p: np.ndarray, threshold, *, seizure_free: bool | None = None,
                 alert_rule: AlertRule | None = None) -> EventCounts:
    """SzCORE event counts summed over the recordings (see event_counts_by_recording)."""
    total = EventCounts()
    for counts in event_counts_by_recording(ws, p, threshold, seizure_free=seizure_free,
                                            alert_rule=alert_rule).values():
        total.add(counts)
    return total


def summarise(ws: WindowSet, p: np.ndarray, threshold, alert_rule: AlertRule | None = None) -> dict:
    """Window metrics (unambiguous windows) and event metrics of predictions p over ws.

    "event" covers the recordings with seizures; "seizure_free" the recordings without any,
    whose false alarms per 24 h are the bedside false-alarm rate. With `alert_rule`, events are
    the alerts the monitor's rule raises (see `event_counts_by_recording`).
    """
    scored = np.isfinite(p)  # NaN: a window rejected for flat channels, as the monitor rejects it
    keep = unambiguous(ws.label) & scored
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), p.shape)
    wm = window_metrics(binary_target(ws.label[keep]), p[keep], thr[keep])
    wm["threshold"] = float(np.mean(thr)) if np.ndim(threshold) else float(threshold)
    wm["n_ambiguous_windows_excluded"] = int((~unambiguous(ws.label) & scored).sum())
    wm["n_unscorable_windows_excluded"] = int((~scored).sum())
    # specificity per data set: hours of healthy EEG must not hide the seizure patients' own negatives
    src = np.asarray(ws.source)
    neg = keep & (ws.label == 0)
    wm["specificity_by_source"] = {s: {"n_negative_windows": int((neg & (src == s)).sum()),
                                       "specificity": float(np.mean(p[neg & (src == s)] < thr[neg & (src == s)]))}
                                   for s in sorted(set(src[neg]))}
    # false alarms per data set too: minutes of seizure-free clips and hours of healthy EEG are
    # different questions, and a pooled rate hides which one it answers
    source_of = {w.recording: s for w, s in zip(ws.windows, ws.source)}
    free, by_source = EventCounts(), {}
    for rec, counts in event_counts_by_recording(ws, p, thr, seizure_free=True, alert_rule=alert_rule).items():
        free.add(counts)
        by_source.setdefault(source_of[rec], EventCounts()).add(counts)
    return {"window": wm, "event": event_counts(ws, p, thr, seizure_free=False, alert_rule=alert_rule).summary(),
            "seizure_free": seizure_free_summary(free, by_source)}


SEIZURE_FREE_KEYS = ("false_alarms", "duration_h", "false_alarms_per_24h", "false_alarms_per_24h_ci95")


def seizure_free_summary(total: EventCounts, by_source: dict[str, EventCounts]) -> dict:
    """False alarms on seizure-free recordings, in all and per data set, with Poisson intervals."""
    def pick(c: EventCounts) -> dict:
        full = c.summary()
        return {k: full[k] for k in SEIZURE_FREE_KEYS}
    return {**pick(total), "by_source": {s: pick(c) for s, c in sorted(by_source.items())}}


def _comparable(label: np.ndarray, scores: dict[str, np.ndarray]) -> np.ndarray:
    """Windows every method can be judged on: unambiguous, and scored by all of them (NaN: a
    window the monitor would not score)."""
    return unambiguous(label) & np.all([np.isfinite(p) for p in scores.values()], axis=0)


def auroc_intervals(ws: WindowSet, scores: dict[str, np.ndarray], n_boot: int = 1000) -> dict:
    """Window AUROC of every method over all windows and per data set, with 95 % intervals from
    resampling patients and the model's paired difference to each peer
    (`runtime.metrics.patient_bootstrap_auroc`). Per data set means its seizure windows against
    its own non-seizure windows: pooled over all data sets, hours of healthy EEG dominate the
    negatives ("all" is given only where there are several data sets). Ambiguous windows and
    windows the monitor would not score (NaN) are left out, and so is a data set without both
    classes.

    Returns ``{"all" | data set: {"n_patients", "n_resamples", "methods", "model_minus"}}``.
    """
    y = ws.label
    keep = _comparable(y, scores)
    src = np.asarray(ws.source, dtype=str)
    unit = np.char.add(np.char.add(src, ":"), ws.patients.astype(str))  # a patient's name is its data set's
    out = {}
    sources = sorted(set(src[keep]))
    for name, m in [("all", keep)] * (len(sources) > 1) + [(s, keep & (src == s)) for s in sources]:
        target = binary_target(y[m])
        if target.all() or not target.any():
            continue
        out[name] = patient_bootstrap_auroc(target, {k: np.asarray(p)[m] for k, p in scores.items()}, unit[m],
                                            compare="model" if "model" in scores else None, n_boot=n_boot)
    return out


def json_safe(obj):
    """NaN/inf → None (JSON null), numpy scalars → Python: metrics.json stays valid JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    return obj


def write_json(obj, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")
    return path


def write_metrics(metrics: dict, out_dir: str | Path, title: str = "") -> tuple[Path, Path]:
    from .figures import confusion_matrix_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mpath = write_json(metrics, out / "metrics.json")
    w = metrics["window"]
    sub = f"threshold {w['threshold']:.3f} · sensitivity {w['sensitivity']:.2f} · specificity {w['specificity']:.2f}"
    cpath = confusion_matrix_figure(w["confusion"], out / "confusion_matrix.png", title or "Window confusion matrix", sub)
    return mpath, cpath


def leave_one_patient_out(ws: WindowSet, n_val_patients: int = 3, min_patients_for_val: int = 5) -> list[Fold]:
    """One fold per patient with seizure windows: the headline evaluation.

    Test: that patient, plus one held-out seizure-free subject of every data set that has
    them (rotating), for false alarms per 24 h on EEG no model of the fold has seen.
    Validation (early stopping, thresholds): `n_val_patients` other seizure patients of every
    data set with at least `min_patients_for_val` of them (a data set with two patients keeps
    its other patient in training), plus the next seizure-free subject of each data set.
    """
    pats, src, lab = ws.patients, np.asarray(ws.source), ws.label
    seizure_pats = sorted({p for p, la in zip(pats, lab) if la >= 0.5})
    source_of = {p: s for p, s in zip(pats, src)}
    by_source: dict[str, list[str]] = {}
    for p in seizure_pats:
        by_source.setdefault(source_of[p], []).append(p)
    free: dict[str, list[str]] = {}
    for s in sorted(set(src)):
        units = sorted(set(pats[src == s]) - set(seizure_pats))
        if units:
            free[s] = units
    folds = []
    for k, pat in enumerate(seizure_pats):
        test = pats == pat
        val_pats = []
        for s, members in by_source.items():
            others = [p for p in members if p != pat]
            if len(members) >= min_patients_for_val:
                val_pats += [others[(k + j) % len(others)] for j in range(n_val_patients)]
        val = np.isin(pats, val_pats)
        for s, units in free.items():
            test |= pats == units[k % len(units)]
            if len(units) > 1:
                val |= pats == units[(k + 1) % len(units)]
        folds.append(Fold(f"lopo:{pat}", test, val & ~test))
    return folds


def score_methods(model_p: np.ndarray, model_thr: float, ws: WindowSet, peers) -> dict:
    """{method: (scores, threshold)} for the model and the classical peers on the same windows."""
    out = {"model": (np.asarray(model_p, dtype=np.float64), float(model_thr))}
    if peers is not None:
        scores, thr = peers.scores(ws.line_length, ws.band_power), peers.thresholds()
        out.update({name: (scores[name], thr[name]) for name in scores})
    return out


def within_patient_auroc(ws: WindowSet, p: np.ndarray) -> dict:
    """Window AUROC on the seizure patients' own windows only (their seizures against their own
    non-seizure EEG); NaN where a patient has no unambiguous non-seizure window.

    A fold's test set also holds other subjects' seizure-free EEG; its AUROC then mostly measures
    how a patient's seizures differ from another person's EEG, which a data-set shortcut can win.
    """
    pats, lab = ws.patients, ws.label
    keep = unambiguous(lab)
    out = {}
    for pat in sorted({q for q, la in zip(pats, lab) if la >= 0.5}):
        sel = keep & (pats == pat)
        y = binary_target(lab[sel])
        out[pat] = auroc(y, np.asarray(p)[sel]) if 0 < y.sum() < len(y) else float("nan")
    return out


def patient_table(ws: WindowSet, scores: dict[str, np.ndarray], thresholds: dict[str, float],
                  alert_rule: AlertRule | None = None) -> dict:
    """Patient by patient, every method on the same windows: hours, seizures, windows, own-window
    AUROC (the patient's seizure windows against its own non-seizure windows; NaN without both),
    seizures detected and false alarms (SzCORE, at each method's threshold), and per peer how
    many patients the model matches or beats.

    Returns ``{"patients": [{"patient", "hours", "seizures", "seizure_windows",
    "non_seizure_windows", "methods": {name: {"auroc", "detected", "false_alarms"}}}],
    "model_vs": {peer: {"patients_with_auroc", "auroc_better_or_equal", "patients_with_seizures",
    "events_better_or_equal_at_no_more_false_alarms"}}}``.
    """
    pats, lab = ws.patients, ws.label
    keep = _comparable(lab, scores)
    patient_of = {w.recording: w.patient for w in ws.windows}
    counts = {m: {} for m in scores}
    for m, p in scores.items():
        for rec, c in event_counts_by_recording(ws, np.asarray(p), thresholds[m], alert_rule=alert_rule).items():
            counts[m].setdefault(patient_of[rec], EventCounts()).add(c)
    rows = []
    for pat in sorted(set(pats)):
        sel = keep & (pats == pat)
        y = binary_target(lab[sel])
        first = counts[next(iter(scores))].get(pat, EventCounts())
        rows.append({"patient": str(pat), "hours": first.duration_s / 3600.0, "seizures": first.n_ref,
                     "seizure_windows": int(y.sum()), "non_seizure_windows": int(len(y) - y.sum()),
                     "methods": {m: {"auroc": auroc(y, np.asarray(p)[sel]) if 0 < y.sum() < len(y) else float("nan"),
                                     "detected": counts[m].get(pat, EventCounts()).tp_ref,
                                     "false_alarms": counts[m].get(pat, EventCounts()).fp}
                                 for m, p in scores.items()}})
    model_vs = {}
    for peer in (m for m in scores if m != "model" and "model" in scores):
        with_auc = [r for r in rows if np.isfinite(r["methods"]["model"]["auroc"])]
        with_sz = [r for r in rows if r["seizures"]]
        model_vs[peer] = {
            "patients_with_auroc": len(with_auc),
            "auroc_better_or_equal": sum(r["methods"]["model"]["auroc"] >= r["methods"][peer]["auroc"] - 1e-9
                                         for r in with_auc),
            "patients_with_seizures": len(with_sz),
            "events_better_or_equal_at_no_more_false_alarms": sum(
                r["methods"]["model"]["detected"] >= r["methods"][peer]["detected"]
                and r["methods"]["model"]["false_alarms"] <= r["methods"][peer]["false_alarms"] for r in with_sz)}
    return {"patients": rows, "model_vs": model_vs}


def _csv_number(v: float) -> str:
    return f"{v:.4f}" if np.isfinite(v) else ""  # empty, not "nan": spreadsheets read it as missing


def write_patient_csv(table: dict, path: str | Path) -> Path:
    """`patient_table` as one CSV row per patient, each method's columns side by side."""
    rows = table["patients"]
    methods = list(rows[0]["methods"]) if rows else []
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient", "hours", "seizures", "seizure_windows", "non_seizure_windows"]
                        + [f"{k}_{m}" for m in methods for k in ("auroc", "detected", "false_alarms")])
        for r in rows:
            writer.writerow([r["patient"], f"{r['hours']:.3f}", r["seizures"], r["seizure_windows"],
                             r["non_seizure_windows"]]
                            + [v for m in methods for v in (_csv_number(r["methods"][m]["auroc"]),
                                                            r["methods"][m]["detected"],
                                                            r["methods"][m]["false_alarms"])])
    return Path(path)


def cross_validated_thresholds(ws: WindowSet, folds: list[Fold], own: list[dict[str, float]],
                               min_donors: int = 3) -> list[dict[str, float]]:
    """Per fold and method, the mean of the thresholds that the *other* folds chose on validation
    windows holding none of this fold's test patients; a fold's own threshold where fewer than
    `min_donors` such folds exist.

    A threshold chosen on the 3-5 validation patients of one fold swings with which patients
    they are (Youden's J: 0.02 to 0.998 over the 30 shared leave-one-patient-out folds); the
    mean over folds is one estimate from every validation patient. The donor folds' models did
    train on this fold's patient (every other fold does), but their thresholds never saw its
    windows.
    """
    pats = ws.patients
    test_pats = [set(pats[f.test]) for f in folds]
    val_pats = [set(pats[f.val]) for f in folds]
    out = []
    for k in range(len(folds)):
        donors = [j for j in range(len(folds)) if j != k and not (val_pats[j] & test_pats[k])]
        if len(donors) < min_donors:
            out.append(dict(own[k]))
        else:
            out.append({m: float(np.mean([own[j][m] for j in donors])) for m in own[k]})
    return out


def mean_fold_thresholds(cv_result: dict) -> dict[str, float]:
    """{method: mean of the thresholds the folds chose on their own validation windows}: the
    threshold a model trained on all patients takes from its cross-validation."""
    own = [f["thresholds"]["own"] for f in cv_result["folds"]]
    return {m: float(np.mean([o[m] for o in own])) for m in own[0]}


def run_folds(ws: WindowSet, folds: list[Fold], spec, cfg, log=print, state_dir: Path | None = None) -> dict:
    """Train and test every fold, model and classical peers side by side on the test windows.

    Each fold's model and peers choose thresholds on that fold's validation windows; each fold
    is then scored at `cross_validated_thresholds` (both are kept in the result).
    """
    from .peers import fit_peers
    from .train import choose_threshold_by, predict_proba, train_model

    trained = []
    for fold in folds:
        log(f"--- fold {fold.name}: train {int(fold.train.sum())}, val {int(fold.val.sum())}, "
            f"test {int(fold.test.sum())} windows")
        tr, va = ws.subset(np.flatnonzero(fold.train)), ws.subset(np.flatnonzero(fold.val))
        te = ws.subset(np.flatnonzero(fold.test))
        state = Path(state_dir) / f"{fold.name.replace(':', '_').replace('/', '_')}.pt" if state_dir else None
        model, fspec, thr, hist = train_model(tr, va, spec, cfg, log=log, state_path=state)
        peers = fit_peers(tr, va, choose_threshold_by(cfg.threshold_rule))
        methods = score_methods(predict_proba(model, fspec, te.x), thr, te, peers)
        val_methods = score_methods(predict_proba(model, fspec, va.x), thr, va, peers)
        log("    thresholds on this fold's validation windows: "
            + ", ".join(f"{name} {t:.3f}" for name, (_, t) in methods.items()))
        # scored: the metrics below need the windows, not their features. Kept, 30 folds' features
        # took the shared data's run from 3.4 to 10.7 GB. No rows taken, not x[:0]: a slice is a
        # view that keeps the whole array alive.
        te, va = (dataclasses.replace(s, x=take_rows(s.x, np.arange(0))) for s in (te, va))
        trained.append((fold, te, va, hist, methods, val_methods))
    own = [{name: t for name, (_, t) in methods.items()} for *_, methods, _ in trained]
    used = cross_validated_thresholds(ws, folds, own)
    per_fold, pooled_parts = [], {}
    for (fold, te, va, hist, methods, val_methods), own_t, used_t in zip(trained, own, used):
        m = {"fold": fold.name, "epochs": len(hist),
             "seconds_per_epoch": float(np.mean([h["seconds"] for h in hist])),
             "test_patients": sorted(set(te.patients)),
             "thresholds": {"own": own_t, "used": used_t},
             "methods": {name: summarise(te, p, used_t[name]) for name, (p, _) in methods.items()},
             "within_patient_auroc": {name: within_patient_auroc(te, p) for name, (p, _) in methods.items()},
             "scores": {name: [round(float(v), 6) for v in p] for name, (p, _) in methods.items()},
             "test_windows": [[w.recording, w.start_s, round(float(w.label), 3)] for w in te.windows],
             # kept so that other threshold rules can be compared without retraining
             "validation": {"labels": [round(float(v), 3) for v in va.label],
                            "scores": {name: [round(float(v), 6) for v in p] for name, (p, _) in val_methods.items()}}}
        # both curves read at the peer's deployed false-alarm count, each at its best threshold there
        caps = {name: _false_alarms(r) for name, r in m["methods"].items() if name != "model"}
        model_best = events_at_false_alarm_caps(te, methods["model"][0], caps)
        m["at_peer_false_alarms"] = {
            peer: {"model": model_best[peer],
                   "peer": events_at_false_alarm_caps(te, methods[peer][0], {peer: cap})[peer]}
            for peer, cap in caps.items()}
        per_fold.append(m)
        log(f"    {fold.name}: " + " | ".join(
            f"{name}: AUROC {r['window']['auroc']:.3f} events {r['event']['detected']}/{r['event']['n_events']} "
            f"FA/24h(seizure-free) {r['seizure_free']['false_alarms_per_24h']:.0f} (threshold {used_t[name]:.3f})"
            for name, r in m["methods"].items()))
        for name, (p, _) in methods.items():
            pooled_parts.setdefault(name, []).append((te, p, used_t[name]))
    # Every method was tested on the same windows, fold by fold. A seizure-free window may be
    # tested in several folds (by different models); pool every test.
    tested = WindowSet(ws.x[:0], sum((list(te.windows) for _, te, *_ in trained), []),
                       sum((list(te.source) for _, te, *_ in trained), []), {})
    pooled_p = {name: np.concatenate([pp for _, pp, _ in parts]) for name, parts in pooled_parts.items()}
    pooled = {}
    for name, parts in pooled_parts.items():
        thr = np.concatenate([np.full(len(pp), t) for _, pp, t in parts])
        wm = summarise(tested, pooled_p[name], thr)["window"]
        ev, free, free_by_source = EventCounts(), EventCounts(), {}
        for m in per_fold:
            r = m["methods"][name]
            ev.add(_counts_from_summary(r["event"]))
            free.add(_counts_from_summary(r["seizure_free"]))
            for src_name, c in r["seizure_free"]["by_source"].items():
                free_by_source.setdefault(src_name, EventCounts()).add(_counts_from_summary(c))
        pooled[name] = {"window": wm, "event": ev.summary(), "seizure_free": seizure_free_summary(free, free_by_source)}
    intervals = auroc_intervals(tested, pooled_p)
    return {"pooled": pooled, "pooled_auroc_intervals": intervals, "folds": per_fold,
            "comparison": compare_to_peers(per_fold)}


def _counts_from_summary(e: dict) -> EventCounts:
    n_det = e.get("n_detections", e["false_alarms"])
    return EventCounts(e.get("n_events", 0), e.get("detected", 0), n_det, n_det - e["false_alarms"],
                       e["false_alarms"], e["duration_h"] * 3600.0, list(e.get("latencies_s", [])),
                       e.get("detected_while_already_alarming", 0))


def _false_alarms(method_summary: dict) -> int:
    """A fold's false alarms: on its seizure-free recordings and outside the seizures."""
    return method_summary["seizure_free"]["false_alarms"] + method_summary["event"]["false_alarms"]


def compare_to_peers(per_fold: list[dict]) -> dict:
    """Fold by fold: does the model beat each peer on window AUROC, and on event sensitivity at
    equal or fewer false alarms on the held-out seizure-free EEG?

    Two readings of the event bar: at the thresholds both deploy (the model must find as many
    seizures *and* raise no more false alarms: an operating point that trades one for the
    other loses), and, where the fold kept `at_peer_false_alarms`, at the peer's deployed
    false-alarm count, each detector at its best threshold there (searched on the test
    windows: the two curves compared at one point, not the threshold rules).
    """
    out = {}
    for peer in ("line_length", "band_power"):
        rows = []
        for m in per_fold:
            if peer not in m["methods"]:
                continue
            a, b = m["methods"]["model"], m["methods"][peer]
            auc_a, auc_b = a["window"]["auroc"], b["window"]["auroc"]
            sens_a, sens_b = a["event"]["sensitivity"], b["event"]["sensitivity"]
            fa_a, fa_b = _false_alarms(a), _false_alarms(b)
            row = {"fold": m["fold"], "auroc_model": auc_a, "auroc_peer": auc_b,
                   "auroc_better_or_equal": bool(auc_a >= auc_b - 1e-9),
                   "events_model": sens_a, "events_peer": sens_b, "false_alarms_model": fa_a,
                   "false_alarms_peer": fa_b,
                   "events_better_or_equal_at_no_more_false_alarms": bool(sens_a >= sens_b and fa_a <= fa_b)}
            matched = m.get("at_peer_false_alarms", {}).get(peer)
            if matched is not None:
                row["at_peer_false_alarms"] = matched
                row["events_better_or_equal_at_peer_false_alarms"] = bool(
                    matched["model"]["detected"] >= matched["peer"]["detected"])
            rows.append(row)
        if rows:
            out[peer] = {"folds": rows,
                         "auroc_wins": sum(r["auroc_better_or_equal"] for r in rows),
                         "event_wins": sum(r["events_better_or_equal_at_no_more_false_alarms"] for r in rows),
                         "n_folds": len(rows)}
            if all("events_better_or_equal_at_peer_false_alarms" in r for r in rows):
                out[peer]["event_wins_at_peer_false_alarms"] = sum(
                    r["events_better_or_equal_at_peer_false_alarms"] for r in rows)
    return out


def _fmt(v, spec=".2f") -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _false_alarm_rate(seizure_free: dict) -> str:
    ci = seizure_free.get("false_alarms_per_24h_ci95")
    return (_fmt(seizure_free["false_alarms_per_24h"], ".0f")
            + (f" [{_fmt(ci[0], '.1f' if ci[0] < 10 else '.0f')}–{_fmt(ci[1], '.1f' if ci[1] < 10 else '.0f')}]"
               if ci else ""))


def _interval(ci, spec=".2f") -> str:
    return f" [{_fmt(ci[0], spec)}–{_fmt(ci[1], spec)}]" if ci else ""


def _false_alarms_by_source(pooled: dict, methods: list[str]) -> list[tuple[str, str, list[str]]]:
    """(data set, its hours, each method's rate with its interval) per data set with seizure-free
    recordings; nothing where there is only one (the pooled rate is its rate)."""
    by_source = pooled[methods[0]]["seizure_free"].get("by_source", {})
    return [(name, _fmt(c["duration_h"]),
             [_false_alarm_rate(pooled[m]["seizure_free"]["by_source"][name]) for m in methods])
            for name, c in by_source.items()] if len(by_source) > 1 else []


def false_alarm_table(pooled: dict) -> list[str]:
    """Markdown: false alarms per 24 h on held-out seizure-free EEG, in all and per data set, every
    method with its exact Poisson interval."""
    methods = list(pooled)
    total = pooled[methods[0]]["seizure_free"]
    out = ["| held-out seizure-free EEG | hours | " + " | ".join(methods) + " |", "|" + " --- |" * (len(methods) + 2),
           f"| all | {_fmt(total['duration_h'])} | "
           + " | ".join(_false_alarm_rate(pooled[m]["seizure_free"]) for m in methods) + " |"]
    return out + [f"| {name} | {hours} | " + " | ".join(rates) + " |"
                  for name, hours, rates in _false_alarms_by_source(pooled, methods)]


INTERVAL_LEGEND = (
    "Pooled over the folds, per data set (its seizure windows against its own non-seizure windows; `all`: "
    "every window, where hours of healthy EEG dominate the negatives). In brackets, 95 % intervals from "
    "resampling patients (none with fewer than 5 patients); an interval of model − peer that excludes 0 says the "
    "model's lead is more than which patients were drawn. False-alarm intervals are exact for a Poisson count: "
    "alarms that cluster in a few recordings make them wider.")


def interval_table(intervals: dict, methods: list[str]) -> list[str]:
    """Markdown rows: per data set, each method's pooled AUROC and the model's difference to each
    peer, with their 95 % intervals from resampling patients."""
    if not intervals:
        return []
    peers = [m for m in methods if m != "model"]
    head = ["data set", "patients"] + [f"{m} AUROC" for m in methods] + [f"model − {p}" for p in peers]
    lines = ["", INTERVAL_LEGEND, "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, r in intervals.items():
        row = [name, str(r["n_patients"])]
        row += [_fmt(r["methods"][m]["auroc"]) + _interval(r["methods"][m]["ci95"]) for m in methods]
        row += [_fmt(r["model_minus"][p]["difference"], "+.2f") + _interval(r["model_minus"][p]["ci95"], "+.2f")
                for p in peers if p in r.get("model_minus", {})]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def interval_lines(intervals: dict) -> list[str]:
    """One console line per data set: each method's AUROC and the model's lead over each peer,
    with 95 % intervals from resampling patients."""
    lines = []
    for name, r in intervals.items():
        parts = [f"{m} {_fmt(v['auroc'], '.3f')}{_interval(v['ci95'])}" for m, v in r["methods"].items()]
        parts += [f"model − {p} {_fmt(v['difference'], '+.3f')}{_interval(v['ci95'], '+.2f')}"
                  for p, v in r.get("model_minus", {}).items()]
        lines.append(f"AUROC, {name} ({r['n_patients']} patients; 95 % interval over patients"
                     f"{'' if r['n_resamples'] else ': too few patients'}): " + ", ".join(parts))
    return lines


def cv_markdown(res: dict, title: str = "Leave-one-patient-out") -> str:
    """A Markdown table of a cross-validation result: per fold, model beside each peer."""
    methods = list(res["pooled"])
    head = ["fold"] + [f"{m} AUROC" for m in methods] + [f"{m} AUROC within patient" for m in methods] + \
        [f"{m} events" for m in methods] + [f"{m} FA (seizure-free h)" for m in methods]
    lines = [f"### {title}", ""]
    if any("thresholds" in f for f in res["folds"]):
        lines += ["Each fold (model and peers alike) is scored at the mean of the thresholds that the other "
                  "folds chose on validation windows without its patients; `thresholds` in the JSON holds "
                  "both.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for f in res["folds"]:
        r = f["methods"]
        row = [f["fold"].split(":", 1)[-1]]
        row += [_fmt(r[m]["window"]["auroc"]) for m in methods]
        within = {m: np.array([np.nan if v is None else v for v in w.values()], float)  # null in JSON = NaN
                  for m, w in f.get("within_patient_auroc", {}).items()}
        row += [_fmt(float(np.nanmean(within[m]))) if m in within and np.isfinite(within[m]).any() else "–"
                for m in methods]
        row += [f"{r[m]['event']['detected']}/{r[m]['event']['n_events']}" for m in methods]
        row += [f"{r[m]['seizure_free']['false_alarms'] + r[m]['event']['false_alarms']} "
                f"({_fmt(r[m]['seizure_free']['duration_h'])} h)" for m in methods]
        lines.append("| " + " | ".join(row) + " |")
    aucs = {m: [f["methods"][m]["window"]["auroc"] for f in res["folds"]] for m in methods}
    lines += ["", "| pooled | " + " | ".join(methods) + " |", "|" + " --- |" * (len(methods) + 1)]
    for label, fn in (("median fold AUROC", lambda m: _fmt(float(np.nanmedian(np.asarray(aucs[m], float))))),
                      ("mean fold AUROC", lambda m: _fmt(float(np.nanmean(np.asarray(aucs[m], float))))),
                      ("events detected (sensitivity's exact 95 % interval)",
                       lambda m: f"{res['pooled'][m]['event']['detected']}/{res['pooled'][m]['event']['n_events']}"
                       + _interval(res["pooled"][m]["event"].get("sensitivity_ci95"))),
                      ("FA / 24 h, held-out seizure-free EEG",
                       lambda m: _false_alarm_rate(res["pooled"][m]["seizure_free"]))):
        lines.append(f"| {label} | " + " | ".join(fn(m) for m in methods) + " |")
    lines += [f"| … of which {src_name} ({hours} h) | " + " | ".join(rates) + " |"
              for src_name, hours, rates in _false_alarms_by_source(res["pooled"], methods)]
    lines += interval_table(res.get("pooled_auroc_intervals", {}), methods)
    for peer, c in res.get("comparison", {}).items():
        lines.append(f"\nModel vs {peer}: window AUROC ≥ peer in {c['auroc_wins']}/{c['n_folds']} folds; event "
                     f"sensitivity ≥ peer at no more false alarms in {c['event_wins']}/{c['n_folds']}"
                     + (f" at the deployed thresholds, in {c['event_wins_at_peer_false_alarms']}/{c['n_folds']} "
                        "at the peer's false-alarm count, each at its best threshold there (searched on the "
                        "test windows: the curves compared, not the threshold rules)"
                        if "event_wins_at_peer_false_alarms" in c else "") + ".")
    return "\n".join(lines) + "\n"


class LoadedModel(NamedTuple):
    predict: Callable  # log_power → p
    spec: FeatureSpec
    threshold: float
    peers: object  # ClassicalPeers or None
    band_limited_fallback: bool  # low-passed windows go to a gamma-free regression (warnings say so)
    # log_power → (p, the channel veto's evidence per window: below 0, no derivation looked like
    # seizure on its own and the score was pushed down; NaN for a model without a veto)
    predict_with_evidence: Callable | None = None


def load_model(model: str | Path, threads: int | None = None) -> LoadedModel:
    """A .onnx model, or a .pt (imports torch), ready to score log power.
    `threads`: ONNX Runtime intra-op threads (1 in each of several worker processes)."""
    if str(model).endswith(".onnx"):
        from ictal.runtime.scorer import Scorer

        scorer = Scorer(model, threads=threads)
        return LoadedModel(scorer.predict_log_power, scorer.spec, scorer.threshold, scorer.peers,
                           scorer.band_limited_fallback is not None, scorer.predict_log_power_and_evidence)
    from ictal.runtime.peers import ClassicalPeers

    from .train import load_checkpoint, predict_proba

    if threads:
        import torch
        torch.set_num_threads(threads)
    from .interpret import TorchScorer
    from .resnet import has_channel_veto

    net, spec, threshold, meta = load_checkpoint(model)
    def predict_with_evidence(x):
        p = predict_proba(net, spec, x)
        if not has_channel_veto(net):
            return p, np.full(len(p), np.nan)
        return p, TorchScorer(net).predict_channel_evidence(spec.normalise(x))[1]

    return LoadedModel(lambda x: predict_proba(net, spec, x), spec, threshold,
                       ClassicalPeers.from_dict(meta.get("classical_peers"), where=str(model)),
                       "band_limited_rows" in meta["model"], predict_with_evidence)


# One loaded model per scoring process (a local worker or a Ray worker), keyed by its file.
_LOADED: dict = {}


def _loaded(model: str, threads: int | None):
    st = Path(model).stat() if Path(model).is_file() else None
    key = (str(Path(model).resolve()), st and st.st_size, st and st.st_mtime_ns)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_model(model, threads)
    return _LOADED[key]


class ScoredRecording(NamedTuple):
    windows: WindowSet  # features dropped
    scores: dict  # {method: per-window scores}
    top_band_drop: float  # median over the windows of `top_band_drop` (NaN without windows)
    heart_beats_removed: np.ndarray  # per window: were its heart beats removed before the features?
    muscle_like_channels: np.ndarray  # per window: derivations whose power rises into 20-30 Hz (EMG-like)
    bad_channels: np.ndarray  # per window: derivations flat over a second of it or saturated, besides the missing
    channel_evidence: np.ndarray  # per window: the channel veto's evidence (NaN: no veto, or not scored)
    frontopolar_delta_excess: np.ndarray  # per window: eye blinks' and movements' measure, decades (NaN: none)


def score_recording(model: str, lr, hop_s: float, allow_missing: int, source: str,
                    threads: int | None = None, force: bool = False) -> ScoredRecording:
    """One recording's windows, scores and checks: the unit of work of serial, local-worker and
    Ray scoring alike. A window the monitor would reject for flat or saturated channels
    (`window_rejection`) gets NaN from every method: the monitor scores nothing there, so nothing
    can alarm there."""
    from .data import log_power_transform, recording_windows, rejected_windows

    _, spec, threshold, peers, _, predict_with_evidence = _loaded(model, threads)
    transform = log_power_transform(spec, threads or os.cpu_count() or 1)  # threads=1 in worker processes
    model_p: list[np.ndarray] = []  # scored a batch at a time: a long recording's features are never all held
    drops: list[np.ndarray] = []
    cleaned: list[np.ndarray] = []
    muscle: list[np.ndarray] = []
    quality_seconds: list[tuple[np.ndarray, np.ndarray]] = []
    evidence: list[np.ndarray] = []
    ocular: list[np.ndarray] = []

    def score_batch(log_power):
        p, channel_evidence = predict_with_evidence(log_power)  # one pass of the graph for both
        model_p.append(p)
        evidence.append(channel_evidence)
        drops.append(top_band_drop(log_power, spec))
        cleaned.append(transform.last_heart_beats_removed.copy())
        muscle.append(muscle_like(log_power, spec.freqs_hz).sum(axis=1))
        excess = frontopolar_delta_excess(log_power, spec.freqs_hz, spec.channels)
        ocular.append(np.full(len(log_power), np.nan) if excess is None else excess)

    rec = recording_windows(lr, spec, transform, hop_s=hop_s, seizure_hop_s=hop_s, allow_missing=allow_missing,
                            source=source, on_batch=score_batch, quality_seconds=quality_seconds)
    if not rec.windows:
        return ScoredRecording(WindowSet(rec.x, rec.windows, rec.source, rec.recordings, zero_filled=rec.zero_filled),
                               {}, float("nan"), np.zeros(0, bool), np.zeros(0, int), np.zeros(0, int), np.zeros(0),
                               np.zeros(0))
    missing = [label for labels in rec.zero_filled.values() for label in labels]
    rejected, n_bad = rejected_windows(rec.windows, missing, quality_seconds, spec, force=force)
    methods = score_methods(np.concatenate(model_p), threshold, rec, peers)
    scores = {m: np.where(rejected, np.nan, p).astype(np.float32) for m, (p, _) in methods.items()}
    return ScoredRecording(WindowSet(rec.x, rec.windows, rec.source, rec.recordings, zero_filled=rec.zero_filled),
                           scores, float(np.median(np.concatenate(drops))), np.concatenate(cleaned),
                           np.concatenate(muscle), n_bad, np.where(rejected, np.nan, np.concatenate(evidence)),
                           np.concatenate(ocular))


def _scored_recordings(model: str, recs: list, hop_s: float, allow_missing: int, source: str, *,
                       workers: int = 1, ray_address: str | None = None, force: bool = False):
    """(windows, scores) of each recording, in order, scored in this process, in `workers` local
    processes, or as one Ray task per recording."""
    if ray_address:
        try:
            import ray
        except ImportError:
            raise DataError("--ray needs Ray: pip install 'ictal[cluster]'") from None
        started = not ray.is_initialized()
        if started:
            ray.init(address=None if ray_address == "local" else ray_address, log_to_driver=False)
        task = ray.remote(num_cpus=1)(score_recording)
        refs = [task.remote(model, lr, hop_s, allow_missing, source, 1, force) for lr in recs]
        try:
            for ref in refs:  # in order, so scores.csv is the same as serial
                yield ray.get(ref)
        finally:
            if started:
                ray.shutdown()
    elif workers > 1 and len(recs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from functools import partial

        # spawn, not fork: a forked child would inherit this process's ONNX Runtime session and
        # thread pools. One BLAS/OpenMP thread per worker, as Ray does for its tasks: N workers
        # with a thread per core each ran at 0.45x serial on 2 cores.
        single = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        saved = {k: os.environ.get(k) for k in single}
        os.environ.update(single)  # read by the spawned interpreters, not by this one's loaded libraries
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                yield from pool.map(partial(score_recording, model, hop_s=hop_s, allow_missing=allow_missing,
                                            source=source, threads=1, force=force), recs)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    else:
        for lr in recs:
            yield score_recording(model, lr, hop_s, allow_missing, source, force=force)


SCORE_COLUMNS = ["recording", "patient", "start_s", "end_s", "seizure_fraction", "p"]
# after the peers' scores: 1 where the window's cardiac artefact was subtracted before its features;
# how many derivations rise from 8-12 into 20-30 Hz like scalp muscle (named, not removed); how
# many are flat over a second of the window or saturated, besides the missing ones (too many: NaN scores);
# the channel veto's evidence (below 0: no derivation looked like seizure on its own and the score was
# pushed down; nan for a model without a veto or a window not scored); the decades by which the
# frontopolar links' delta power exceeds the derivations' behind them (over log10 3: eye blinks or
# movements, which the shipped model reads as evidence against seizure; nan for a montage without them)
CLEANING_COLUMNS = ["heart_beats_removed", "muscle_like_channels", "bad_channels", "channel_evidence",
                    "frontopolar_delta_excess"]


def evaluate_model(model: str | Path, data: str | Path, out_dir: str | Path = "evaluation", *, hop_s: float = 1.0,
                   threshold: float | None = None, allow_missing: int = 0, force: bool = False, workers: int = 1,
                   ray_address: str | None = None, alert_rule: AlertRule | None = None) -> dict:
    """Window and SzCORE event metrics of a model and its classical peers on a labelled data directory.

    Recording by recording, each read a minute at a time and scored a batch of windows at a
    time: memory holds the longest recording's conditioned EEG (133 MB an hour), not its raw
    signals or its windows' features. The classical peers stored with the model are scored on
    the same windows.

    Parameters
    ----------
    model : str | Path
        An exported ``.onnx`` model (torch-free), or a ``.pt`` checkpoint (imports torch).
    data : str | Path
        A directory of EDF files with seizure labels (CHB-MIT summary, TUH ``csv_bi``/``tse_bi``,
        Siena seizure list or EDF+).
    out_dir : str | Path
        Written here: ``scores.csv`` (one row per window, flushed per recording), ``metrics.json``
        and ``confusion_matrix.png``.
    hop_s : float
        Seconds between window starts.
    threshold : float | None
        Decision threshold in (0, 1]; by default the model's own.
    allow_missing : int
        Channels a recording may lack; they are zero-filled and reported.
    force : bool
        Accept zero-filling more than a quarter of the model's channels.
    workers : int
        Score recordings in this many local processes (one ONNX thread each).
    ray_address : str | None
        Score one Ray task per recording on this cluster ("auto": a running one, "local": start
        one on this machine). The recordings and the model must be readable at the same paths
        on every node.
    alert_rule : AlertRule | None
        Score events as the alerts the monitor's rule raises on these windows (k of n above
        threshold, quiet and refractory times; use the monitor's hop) instead of every window
        above threshold: the false alarms a bedside user would see.

    Returns
    -------
    results : dict
        ``methods``: ``{"model" | peer name: {"window", "event", "seizure_free"}}``;
        ``metrics``: what ``metrics.json`` holds; ``files``: the paths written.
    """
    _, spec, model_threshold, peers, fallback, _ = _loaded(str(model), None)
    threshold = model_threshold if threshold is None else threshold
    check_zero_fill(allow_missing, len(spec.channels), force=force, model_name=f"model {Path(str(model)).stem}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peer_names = list(peers.thresholds()) if peers else []
    methods_p: dict[str, list[np.ndarray]] = {}
    kept: list[WindowSet] = []
    zero_filled, band_limited, unscorable = {}, {}, {}
    with open(out / "scores.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SCORE_COLUMNS + peer_names + CLEANING_COLUMNS)
        recs = find_labelled_recordings(data)
        for rec, scores, drop, cleaned, muscle, bad, evidence, ocular in _scored_recordings(
                str(model), recs, hop_s, allow_missing, Path(data).name, workers=workers, ray_address=ray_address,
                force=force):
            if not rec.windows:
                continue
            n_rejected = int(np.isnan(scores["model"]).sum())
            if n_rejected:
                name = rec.windows[0].recording
                unscorable[name] = n_rejected
                print(f"warning: {name}: {n_rejected} of {len(rec.windows)} windows not scored: flat or saturated "
                      f"channels (more than {MAX_BAD_CHANNELS}, or with the missing ones more than a quarter), as the "
                      f"monitor rejects them; they cannot alarm", file=sys.stderr)
            for name, chans in rec.zero_filled.items():
                zero_filled[name] = chans
                print(f"warning: {name}: {len(chans)} channel(s) zero-filled: {', '.join(chans)}", file=sys.stderr)
            if drop < BAND_LIMITED_DECADES:
                name = rec.windows[0].recording
                band_limited[name] = round(drop, 3)
                print(f"warning: {name}: {band_limited_message(drop, spec, fallback)}", file=sys.stderr)
            for i, w in enumerate(rec.windows):
                writer.writerow([w.recording, w.patient, f"{w.start_s:.3f}", f"{w.end_s:.3f}", f"{w.label:.4f}"]
                                + [f"{scores[m][i]:.6g}" for m in ["model"] + peer_names]
                                + [int(cleaned[i]), int(muscle[i]), int(bad[i]), f"{evidence[i]:.4g}",
                                   f"{ocular[i]:.4g}"])
            fh.flush()
            for m, p in scores.items():
                methods_p.setdefault(m, []).append(p)
            # the features were dropped: only windows' labels and scores stay in memory
            kept.append(WindowSet(rec.x[:0], rec.windows, rec.source, rec.recordings))
    if not kept:
        raise DataError(f"{data}: no recording is long enough for one {spec.window_s:g}-s window")
    ws = WindowSet.concat(kept)
    thresholds = {"model": threshold, **(peers.thresholds() if peers else {})}
    scores = {m: np.concatenate(ps) for m, ps in methods_p.items()}
    results = {m: summarise(ws, p, thresholds[m], alert_rule) for m, p in scores.items()}
    intervals = auroc_intervals(ws, scores)
    by_patient = patient_table(ws, scores, thresholds, alert_rule)
    ppath = write_patient_csv(by_patient, out / "patients.csv")
    metrics = {**results["model"], "model": str(model), "data": str(data), "model_threshold": model_threshold,
               "classical_peers": {m: r for m, r in results.items() if m != "model"},
               # per data set, each method's AUROC with a 95 % interval from resampling patients
               "auroc_intervals": intervals,
               # patient by patient, every method on the same windows (also patients.csv)
               "by_patient": by_patient,
               # events: the monitor's alerts on these windows (null: every window above threshold)
               "alert_rule": dataclasses.asdict(alert_rule) if alert_rule else None,
               "zero_filled_channels": zero_filled,
               # {recording: windows not scored because channels went flat or saturated (NaN in scores.csv)}
               "unscorable_windows": unscorable,
               # {recording: median top_band_drop} of recordings that look low-passed below the spec's band
               "band_limited_recordings": band_limited}
    mpath, cpath = write_metrics(metrics, out, f"{Path(model).name} on {Path(data).name}")
    return {"methods": results, "auroc_intervals": intervals, "by_patient": by_patient, "metrics": metrics,
            "files": [mpath, cpath, out / "scores.csv", ppath]}
