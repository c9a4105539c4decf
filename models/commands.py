"""`ictal train` (needs the [train] extra: torch) and `ictal evaluate` (torch only for a .pt)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ictal.runtime.errors import DataError
from ictal.runtime.features import CHBMIT_CHANNELS, DOUBLE_BANANA, FeatureSpec

from .data import WindowSet, build_windows
from .evaluate import (cross_patient, cv_markdown, evaluate_model, interval_lines, leave_one_patient_out,
                       leave_one_seizure_out, mean_fold_thresholds, run_folds, write_json)

NEG_SOURCE = "negatives"


def load_training_windows(data: list[str], negatives: list[str], spec: FeatureSpec, *,
                          allow_missing_negatives: int, seizure_hop_s: float, negative_hop_s: float,
                          cache: str | None = None, workers: int = 1, log=print) -> WindowSet:
    """Every data directory is one data set (source = its folder name), for balancing and reporting.

    With `cache`, features are computed once per recording by `workers` processes into that
    directory and stay there: the WindowSet reads them window by window.
    """
    def windows(root, **kw):
        if cache:
            from .cache import cached_windows
            return cached_windows(root, spec, cache, workers=workers, log=log, **kw)
        # every core for the CWT, unless torchrun started a process per GPU on this machine
        threads = (os.cpu_count() or 1) if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) == 1 else 1
        return build_windows(root, spec, log=log, threads=threads, **kw)

    sets = [windows(d, hop_s=negative_hop_s, seizure_hop_s=seizure_hop_s) for d in data]
    for neg in negatives:
        ws = windows(neg, hop_s=negative_hop_s, allow_missing=allow_missing_negatives)
        if (ws.label > 0).any():
            raise DataError(f"{neg}: --negatives must be seizure-free, but it has seizure annotations")
        sets.append(ws)
    return WindowSet.concat(sets)


def spec_from_args(args) -> FeatureSpec:
    hybrid = getattr(args, "architecture", "resnet") == "hybrid"
    if args.spec:
        spec = FeatureSpec.load(args.spec)
    else:
        channels = CHBMIT_CHANNELS if args.montage == "chbmit-23" else DOUBLE_BANANA
        spec = FeatureSpec(channels=list(channels), relative=args.relative or ("none" if hybrid else "channel-window"),
                           remove_cardiac_artefact=True)
    cardiac = getattr(args, "cardiac_artefact", None)
    if cardiac is not None:
        spec = dataclasses.replace(spec, remove_cardiac_artefact=cardiac == "remove")
    if hybrid and spec.relative != "none":  # build_model would refuse it too, but only after loading the data
        where = args.spec or "--relative"
        raise DataError(f"{where}: 'relative' is {spec.relative!r}, but the hybrid model takes absolute power "
                        "(relative 'none': it makes the ResNet's input relative itself and its summary branch needs "
                        "amplitude); use --architecture resnet")
    return spec


def _rate_interval(seizure_free: dict) -> str:
    ci = seizure_free.get("false_alarms_per_24h_ci95")
    return f", 95 % interval {ci[0]:.1f}–{ci[1]:.1f}" if ci and np.isfinite(ci).all() else ""


def _print_cv(name: str, res: dict) -> None:
    for method, r in res["pooled"].items():
        w, e, f = r["window"], r["event"], r["seizure_free"]
        print(f"{name} {method:12s}: window AUROC {w['auroc']:.3f} sens {w['sensitivity']:.3f} "
              f"spec {w['specificity']:.3f} | events {e['detected']}/{e['n_events']} | false alarms "
              f"{f['false_alarms_per_24h']:.1f}/24 h{_rate_interval(f)}, on {f['duration_h']:.2f} h of held-out "
              "seizure-free EEG")
        for src_name, c in f.get("by_source", {}).items() if len(f.get("by_source", {})) > 1 else ():
            print(f"{name} {method:12s}:   of which {src_name}: {c['false_alarms']} false alarms in "
                  f"{c['duration_h']:.2f} h, {c['false_alarms_per_24h']:.1f}/24 h{_rate_interval(c)}")
    for line in interval_lines(res.get("pooled_auroc_intervals", {})):
        print(f"{name}: {line}")
    for peer, c in res.get("comparison", {}).items():
        print(f"{name}: model vs {peer}: AUROC ≥ peer in {c['auroc_wins']}/{c['n_folds']} folds; event "
              f"sensitivity ≥ peer at ≤ its false alarms in {c['event_wins']}/{c['n_folds']}"
              + (f" (deployed thresholds), {c['event_wins_at_peer_false_alarms']}/{c['n_folds']} at the peer's "
                 "false-alarm count, both at their best threshold there"
                 if "event_wins_at_peer_false_alarms" in c else ""))


def train_main(args) -> int:
    from .peers import fit_peers
    from .train import TrainConfig, choose_threshold_by, init_distributed, resolve_device, save_checkpoint, train_model

    spec = spec_from_args(args)
    if args.epochs == 0 and args.architecture != "hybrid":
        raise DataError("--epochs 0 trains nothing in a resnet model: it fits the hybrid's summary regression "
                        "alone; use --architecture hybrid, or give epochs")
    cfg = TrainConfig(width=args.width, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                      balance=args.balance, threshold_rule=args.threshold_rule, device=args.device,
                      loader_workers=args.loader_workers, summary_branch=args.architecture == "hybrid")
    choose_threshold_by(cfg.threshold_rule)  # a bad rule fails now, not after an hour of training
    resolve_device(cfg.device)
    rank, world = init_distributed(cfg.device)  # under torchrun: one process per GPU (or CPU share)
    quiet = (lambda *_: None) if rank else print
    if world > 1:
        print(f"rank {rank} of {world}: DistributedDataParallel on {resolve_device(cfg.device)}", flush=True)

    def load():
        return load_training_windows(args.data, args.negatives or [], spec,
                                     allow_missing_negatives=args.allow_missing_negatives,
                                     seizure_hop_s=args.seizure_hop, negative_hop_s=args.hop, cache=args.cache,
                                     workers=args.workers, log=quiet)
    if world > 1 and args.cache:  # rank 0 fills the cache, the others then read it
        import torch.distributed as dist
        ws = load() if rank == 0 else None
        dist.barrier()
        ws = ws or load()
    else:
        ws = load()
    n_seizure = int((ws.label >= 0.5).sum())
    if n_seizure == 0 or n_seizure == len(ws.windows):
        what = "no seizure windows" if n_seizure == 0 else "only seizure windows"
        raise DataError(f"{', '.join(args.data)}: {what} in {len(ws.windows)} windows of {len(ws.recordings)} "
                        "recordings; training needs labelled seizures and seizure-free EEG (check the seizure "
                        "labels: chbNN-summary.txt, csv_bi, Seizures-list-*.txt or EDF+ annotations; add "
                        "--negatives DIR)")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    # per-epoch training state of every fold and of the final model, for --resume
    state_dir = out.with_suffix(".state")
    if rank == 0 and not args.resume:
        shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(exist_ok=True)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    cv = {}
    neg = Path(args.negatives[0]).name if args.negatives else None  # the negatives' data set (source)
    if "lopo" in args.cv:
        cv["leave_one_patient_out"] = run_folds(ws, leave_one_patient_out(ws), spec, cfg, log=quiet,
                                                state_dir=state_dir)
    if "loso" in args.cv:
        cv["leave_one_seizure_out"] = run_folds(ws, leave_one_seizure_out(ws, neg), spec, cfg, log=quiet,
                                                state_dir=state_dir)
    if "cross-patient" in args.cv:
        pats = sorted({p for p, la in zip(ws.patients, ws.label) if la >= 0.5})
        folds = [cross_patient(ws, a, b, neg) for a in pats for b in pats if a != b]
        cv["cross_patient"] = run_folds(ws, folds, spec, cfg, log=quiet, state_dir=state_dir)
    if args.exclude:  # held-out patients/recordings take part in cross-validation, never in the shipped model
        keep = [i for i, w in enumerate(ws.windows)
                if not any(w.recording.startswith(e) or w.patient == e for e in args.exclude)]
        print(f"final model: holding out {len(ws.windows) - len(keep)} windows of {', '.join(args.exclude)}")
        ws = ws.subset(keep)
    # final model: validation = the validation part of the first leave-one-patient-out fold
    # (other patients and seizure-free subjects), so the threshold is never chosen on training windows
    folds = leave_one_patient_out(ws)
    val = folds[0].val if folds and folds[0].val.any() else leave_one_seizure_out(ws)[-1].test
    quiet(f"--- final model: train {int((~val).sum())}, validation {int(val.sum())} windows")
    t0 = time.perf_counter()
    tr, va = ws.subset(np.flatnonzero(~val)), ws.subset(np.flatnonzero(val))
    model, fspec, thr, hist = train_model(tr, va, spec, cfg, log=quiet, state_path=state_dir / "final.pt")
    if world > 1:  # every rank must end with the same weights; a line per rank lets one check
        digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
        print(f"rank {rank} of {world}: final weights sha256 {digest[:16]}", flush=True)
    if rank:  # rank 0 writes the outputs
        return 0
    peers = fit_peers(tr, va, choose_threshold_by(cfg.threshold_rule))
    threshold_from = f"validation windows ({cfg.threshold_rule})"
    if "leave_one_patient_out" in cv:
        # one validation split of 3-5 patients moves the threshold a lot; the folds' mean does not
        thresholds = mean_fold_thresholds(cv["leave_one_patient_out"])
        print(f"threshold: {thresholds['model']:.3f}, the mean of the leave-one-patient-out folds' thresholds "
              f"(this model's own validation windows gave {thr:.3f})")
        thr, threshold_from = thresholds["model"], "leave-one-patient-out folds (mean)"
        peers.line_length_threshold, peers.band_power_threshold = thresholds["line_length"], thresholds["band_power"]
    info = {"trained_on": sorted({w.recording for w in ws.windows}), "held_out": args.exclude or [],
            "threshold_from": threshold_from,
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
            "history": hist, "train_seconds": time.perf_counter() - t0,
            "validation_patients": sorted(set(va.patients)), "classical_peers": peers.to_dict(),
            "cross_validation_summary": {k: {"pooled": v["pooled"], "comparison": v["comparison"],
                                             "pooled_auroc_intervals": v.get("pooled_auroc_intervals", {})}
                                         for k, v in cv.items()}}
    save_checkpoint(out, model, fspec, thr, **info)
    shutil.rmtree(state_dir, ignore_errors=True)  # finished: nothing left to resume
    print(f"wrote {out} (+ {out.with_suffix('.json').name}); threshold {thr:.3f}")
    if cv:
        write_json(cv, out.with_suffix(".cv.json"))
        out.with_suffix(".cv.md").write_text("\n".join(cv_markdown(r, name) for name, r in cv.items()))
        for name, res in cv.items():
            _print_cv(name, res)
    return 0


def evaluate_main(args) -> int:
    results = evaluate_model(args.model, args.data, args.out_dir, hop_s=args.hop, threshold=args.threshold,
                             allow_missing=args.allow_missing, force=args.force, workers=args.workers,
                             ray_address=args.ray, alert_rule=args.alert_rule)
    if args.alert_rule:
        rule = args.alert_rule
        print(f"events: the alerts the monitor's rule raises on these windows ({rule.k} of {rule.n} above threshold, "
              f"closed after {rule.quiet_s:g} s below, {rule.refractory_s:g} s refractory)")
    for m, r in results["methods"].items():
        w, e, f = r["window"], r["event"], r["seizure_free"]
        print(f"{m:12s} windows: sens {w['sensitivity']:.3f} spec {w['specificity']:.3f} AUROC {w['auroc']:.3f} | "
              f"events {e['detected']}/{e['n_events']}, {e['false_alarms']} false alarms in seizure recordings | "
              + (f"seizure-free: {f['false_alarms']} false alarms in {f['duration_h']:.2f} h "
                 f"({f['false_alarms_per_24h']:.1f}/24 h{_rate_interval(f)})" if f['duration_h']
                 else "no seizure-free recording"))
    for line in interval_lines(results["auroc_intervals"]):
        print(line)
    for peer, c in results["by_patient"]["model_vs"].items():
        print(f"patient by patient: model AUROC ≥ {peer} in {c['auroc_better_or_equal']}/{c['patients_with_auroc']} "
              f"patients with seizure and non-seizure windows; seizures found ≥ {peer} at no more false alarms in "
              f"{c['events_better_or_equal_at_no_more_false_alarms']}/{c['patients_with_seizures']} patients with "
              "seizures (patients.csv)")
    print(f"wrote {', '.join(str(p) for p in results['files'])}")
    return 0
