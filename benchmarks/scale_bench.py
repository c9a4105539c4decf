"""Scale benchmarks (issue 13): training memory and throughput against hours of cached EEG, and
archive scoring serial / local workers / Ray.

The hours are STITCHED: copies of the real shared CHB-MIT clips and eegmmidb runs, written as
new EDF files until the total reaches the target. They exercise memory and throughput only and
must never be used for quality claims.

    python benchmarks/scale_bench.py [--hours 0.5 2 8] [--device cpu] [--out benchmarks/results/scale.json]

Each training run is its own process (`ictal train --cache`), so its peak RSS is measured by the OS.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def stitched_archive(dest: Path, hours: float) -> float:
    """The real CHB-MIT clips once (the seizures), then copies of the real eegmmidb runs under new
    names (seizure-free EEG) until `hours` of EEG. Returns the hours written."""
    from ictal.runtime.edf import read_edf

    shutil.copytree(DATA / "chbmit", dest / "chbmit")
    total = sum(read_edf(f).duration_s for f in (dest / "chbmit").rglob("*.edf"))
    runs = sorted((DATA / "eegmmidb").rglob("*.edf"))
    k = 0
    while total < hours * 3600:
        src = runs[k % len(runs)]
        copy = dest / "eegmmidb" / src.parent.name / f"{src.stem}c{k // len(runs):03d}.edf"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, copy)
        total += read_edf(src).duration_s
        k += 1
    return total / 3600


def train_run(archive: Path, cache: Path, out: Path, device: str, epochs: int) -> dict:
    """`ictal train --cache` in its own process. Peak RSS: getrusage of a fresh wrapper's children,
    i.e. the largest peak of any one process of the run (the trainer, a feature or DataLoader worker)."""
    cmd = [sys.executable, "-m", "ictal.runtime.cli", "train", str(archive / "chbmit"), "--negatives",
           str(archive / "eegmmidb"), "--allow-missing-negatives", "0", "-o", str(out), "--cache", str(cache),
           "--workers", "2", "--loader-workers", "2", "--epochs", str(epochs), "--device", device, "--hop", "10"]
    wrapper = ("import resource, subprocess, sys, time; t0 = time.perf_counter(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "time.perf_counter() - t0); sys.stderr.write(r.stderr[-3000:]); print(r.stdout)")
    res = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    code, rss_kb, wall = res.stdout.splitlines()[0].split()
    if code != "0":
        raise RuntimeError(f"training failed: {res.stderr[-3000:]}")
    meta = json.loads(out.with_suffix(".json").read_text())
    final = next(line for line in res.stdout.splitlines() if line.startswith("--- final model"))
    n_windows = int(final.split("train ")[1].split(",")[0])
    seconds = sum(h["seconds"] for h in meta["history"])
    return {"peak_rss_mb": int(rss_kb) / 1024, "wall_s": float(wall), "epochs": len(meta["history"]),
            "train_windows": n_windows, "train_windows_per_s": n_windows * len(meta["history"]) / seconds}


def scoring(model: Path, archive: Path, hours: float) -> dict:
    from ictal.models.evaluate import evaluate_model

    out = {}
    for name, kw in (("serial", {}), ("2 local workers", {"workers": 2}), ("Ray, 2 CPUs", {"ray_address": "ray"})):
        if "ray_address" in kw:
            try:
                import ray
            except ImportError:
                out[name] = None
                continue
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            kw = {"ray_address": "auto"}
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            evaluate_model(model, archive, d, hop_s=10.0, **kw)
        wall = time.perf_counter() - t0
        if "ray_address" in kw:
            import ray
            ray.shutdown()
        out[name] = {"wall_s": wall, "hours_per_wall_s": hours / wall, "x_real_time": hours * 3600 / wall}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, nargs="*", default=[0.5, 2.0, 8.0], help="training runs (none: skip)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--score-hours", type=float, default=2.0, help="stitched hours for archive scoring")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale.json"))
    args = ap.parse_args()
    from ictal import SHIPPED_MODEL

    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "device": args.device},
              "note": "stitched copies of real shared recordings: for memory and throughput only, never quality",
              "training": {}, "scoring": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for hours in args.hours:
            archive = tmp / f"archive_{hours:g}h"
            real_h = stitched_archive(archive, hours)
            r = train_run(archive, tmp / "cache", tmp / f"model_{hours:g}h.pt", args.device, args.epochs)
            r["hours"] = real_h
            result["training"][f"{hours:g} h"] = r
            print(f"training on {real_h:.2f} h (stitched): peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"{r['train_windows_per_s']:.0f} windows/s, {r['train_windows']} windows, wall {r['wall_s']:.0f} s",
                  flush=True)
            shutil.rmtree(archive)
        archive = tmp / "score"
        real_h = stitched_archive(archive, args.score_hours)
        result["scoring"] = {"hours": real_h, **scoring(SHIPPED_MODEL, archive, real_h)}
        for name, r in result["scoring"].items():
            if isinstance(r, dict):
                print(f"archive scoring {name}: {r['hours_per_wall_s']:.3f} h of EEG per wall second "
                      f"({r['x_real_time']:.0f}x real time)", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
