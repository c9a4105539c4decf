"""`ictal train` and `ictal evaluate` (need the [train] extra: torch)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from runtime.features import FeatureSpec

from .data import WindowSet, build_windows
from .evaluate import cross_patient, leave_one_seizure_out, run_folds, summarise, write_metrics
from .train import TrainConfig, save_checkpoint, train_model

NEG_SOURCE = "negatives"


def load_training_windows(data: str, negatives: list[str], spec: FeatureSpec, *, allow_missing_negatives: int,
                          seizure_hop_s: float, negative_hop_s: float) -> WindowSet:
    sets = [build_windows(data, spec, hop_s=negative_hop_s, seizure_hop_s=seizure_hop_s, source="seizure-data")]
    for neg in negatives:
        ws = build_windows(neg, spec, hop_s=negative_hop_s, allow_missing=allow_missing_negatives, source=NEG_SOURCE)
        if (ws.label > 0).any():
            raise ValueError(f"{neg}: --negatives must be seizure-free, but it has seizure annotations")
        sets.append(ws)
    return WindowSet.concat(sets)


def train_main(args) -> int:
    spec = FeatureSpec.load(args.spec) if args.spec else FeatureSpec()
    cfg = TrainConfig(width=args.width, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                      balance=args.balance)
    ws = load_training_windows(args.data, args.negatives or [], spec,
                               allow_missing_negatives=args.allow_missing_negatives,
                               seizure_hop_s=args.seizure_hop, negative_hop_s=args.hop)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    neg = NEG_SOURCE if args.negatives else None
    cv = {}
    if "loso" in args.cv:
        cv["leave_one_seizure_out"] = run_folds(ws, leave_one_seizure_out(ws, neg), spec, cfg)
    if "cross-patient" in args.cv:
        pats = sorted({p for p, s in zip(ws.patients, ws.source) if s == "seizure-data"})
        folds = [cross_patient(ws, a, b, neg) for a in pats for b in pats if a != b]
        cv["cross_patient"] = run_folds(ws, folds, spec, cfg)
    if args.exclude:  # held-out recordings take part in cross-validation, never in the shipped model
        keep = [i for i, w in enumerate(ws.windows) if not any(w.recording.startswith(e) for e in args.exclude)]
        print(f"final model: holding out {len(ws.windows) - len(keep)} windows of {', '.join(args.exclude)}")
        ws = ws.subset(keep)
    # final model: all windows, one seizure recording group + one negative subject for validation
    folds = leave_one_seizure_out(ws, neg)
    val = folds[-1].test
    print(f"--- final model: train {int((~val).sum())}, validation {int(val.sum())} windows")
    t0 = time.perf_counter()
    model, fspec, thr, hist = train_model(ws.subset(np.flatnonzero(~val)), ws.subset(np.flatnonzero(val)), spec, cfg)
    info = {"trained_on": sorted({w.recording for w in ws.windows}), "held_out": args.exclude or [],
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
            "history": hist, "train_seconds": time.perf_counter() - t0, "cross_validation": cv,
            "validation_group": folds[-1].name}
    save_checkpoint(out, model, fspec, thr, **info)
    print(f"wrote {out} (+ {out.with_suffix('.json').name}); threshold {thr:.3f}")
    if cv:
        Path(out.with_suffix(".cv.json")).write_text(json.dumps(cv, indent=2, default=float) + "\n")
        for name, res in cv.items():
            w, e = res["pooled"]["window"], res["pooled"]["event"]
            print(f"{name}: specificity by data set {json.dumps(w['specificity_by_source'])}")
            print(f"{name}: window sens {w['sensitivity']:.3f} spec {w['specificity']:.3f} AUROC {w['auroc']:.3f} "
                  f"F1 {w['f1']:.3f} | events {e['detected']}/{e['n_events']} FA/24h {e['false_alarms_per_24h']:.1f} "
                  f"median latency {e['latency_median_s']:.1f} s")
    return 0


def evaluate_main(args) -> int:
    """Evaluate a checkpoint (.pt) or an exported model (.onnx) on a labelled data directory."""
    if str(args.model).endswith(".onnx"):
        from runtime.scorer import Scorer

        scorer = Scorer(args.model)
        spec, threshold = scorer.spec, scorer.threshold
        predict = lambda x: scorer.predict_log_power(x)  # noqa: E731
    else:
        from .train import load_checkpoint, predict_proba

        model, spec, threshold, _ = load_checkpoint(args.model)
        predict = lambda x: predict_proba(model, spec, x)  # noqa: E731
    if args.threshold is not None:
        threshold = args.threshold
    ws = build_windows(args.data, spec, hop_s=args.hop, seizure_hop_s=args.hop, allow_missing=args.allow_missing)
    p = predict(ws.x)
    metrics = summarise(ws, p, threshold)
    metrics["model"], metrics["data"] = str(args.model), str(args.data)
    mpath, cpath = write_metrics(metrics, args.output, f"{Path(args.model).name} on {Path(args.data).name}")
    w, e = metrics["window"], metrics["event"]
    print(f"windows: acc {w['accuracy']:.3f} sens {w['sensitivity']:.3f} spec {w['specificity']:.3f} "
          f"F1 {w['f1']:.3f} AUROC {w['auroc']:.3f}")
    print(f"events: {e['detected']}/{e['n_events']} detected, {e['false_alarms']} false alarms "
          f"({e['false_alarms_per_24h']:.1f}/24 h), median latency {e['latency_median_s']:.1f} s")
    print(f"wrote {mpath} and {cpath}")
    return 0
