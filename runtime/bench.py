"""`ictal bench`: latency and footprint of every stage, end to end over LSL.

Writes bench.json, bench.md (a Markdown table) and bench.png. Torch is
imported only for the torch-side rows (Grad-CAM, eager inference), after the
torch-free rows are measured.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .channels import resolve_montage
from .conditioning import StreamingFilter, StreamingResampler
from .features import CWTransform, FeatureSpec
from .occlusion import baseline_log_power, occlude


def _stats(samples_s) -> dict:
    a = np.asarray(samples_s, dtype=float) * 1e3
    return {"n": int(a.size), "median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def _time(fn, repeats: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return _stats(out)


class IncrementalCWT:
    """The alternative we measured and did not ship: per hop, transform only the
    newest hop plus a left margin and append its columns to a rolling feature
    buffer. Cheaper, but older columns keep the right-edge effect they had when
    they were newest, so the window's features differ from the whole-window
    transform the model was trained on (the bench reports by how much)."""

    def __init__(self, spec: FeatureSpec, hop_s: float, margin_s: float = 3.0):
        self.spec = spec
        self.hop = int(hop_s * spec.sfreq_hz)
        self.margin = int(margin_s * spec.sfreq_hz)
        seg = FeatureSpec(**{**spec.to_dict(), "window_s": (self.hop + self.margin) / spec.sfreq_hz})
        self.t = CWTransform(seg)
        self.cols = self.hop // spec.time_decimation
        self.buf = None

    def __call__(self, recent: np.ndarray) -> np.ndarray:
        """recent : (n_channels, >= hop + margin) newest samples → (C, F, n_columns) rolling features."""
        new = self.t(recent[:, -(self.hop + self.margin):])[..., -self.cols:]
        if self.buf is None:
            self.buf = np.zeros((new.shape[0], new.shape[1], self.spec.n_columns), np.float32)
        self.buf = np.concatenate([self.buf[..., self.cols:], new], axis=-1)
        return self.buf


def mne_style_morlet_power(x: np.ndarray, sfreq: float, freqs, n_cycles=None) -> np.ndarray:
    """Morlet power as MNE's tfr_array_morlet computes it (a complex Morlet per
    frequency with n_cycles = f/2, FFT convolution per wavelet): the seed
    method's transform, for the cost comparison. x : (n_channels, n_times)."""
    from scipy.signal import fftconvolve

    freqs = np.asarray(freqs, float)
    n_cycles = freqs / 2.0 if n_cycles is None else np.broadcast_to(n_cycles, freqs.shape)
    out = np.empty((x.shape[0], len(freqs), x.shape[1]))
    for i, (f, nc) in enumerate(zip(freqs, n_cycles)):
        sigma_t = nc / (2.0 * np.pi * f)
        t = np.arange(-5 * sigma_t, 5 * sigma_t, 1.0 / sfreq)
        w = np.exp(2j * np.pi * f * t) * np.exp(-t ** 2 / (2 * sigma_t ** 2))
        w /= np.sqrt(0.5) * np.linalg.norm(w)
        if len(w) > x.shape[1]:
            w = w[(len(w) - x.shape[1]) // 2:][: x.shape[1]]
        out[:, i] = np.abs(fftconvolve(x, w[None], mode="same", axes=-1)) ** 2
    return out


def stage_benchmarks(model: Path, clip: Path, repeats: int, checkpoint: Path | None) -> dict:
    from .edf import read_edf
    from .scorer import Scorer
    from .sinks import JsonlLog, LslOutputs

    scorer = Scorer(model, threads=None)
    spec = scorer.spec
    rec = read_edf(clip)
    montage = resolve_montage(rec.labels, spec.channels)
    hop = int(spec.sfreq_hz)
    src_hop = rec.data_uv[:, :int(rec.sfreq_hz)]
    res = StreamingResampler(len(spec.channels), rec.sfreq_hz, spec.sfreq_hz)
    filt = StreamingFilter(len(spec.channels), spec.sfreq_hz, spec.band_hz, spec.notch_hz)
    rows = {}
    rows["conditioning per 1-s hop (montage, resample, filter)"] = _time(
        lambda: filt.filter(res.process(montage.apply(src_hop))), repeats)
    from .windows import condition_recording
    data = condition_recording(rec, spec)
    window = data[:, -spec.n_samples:]
    rows["CWT features per hop, whole window (shipped)"] = _time(lambda: scorer.transform(window), repeats)
    inc = IncrementalCWT(spec, 1.0)
    starts = list(range(spec.n_samples + inc.margin, data.shape[1], hop))
    k = iter(starts * (repeats // max(1, len(starts)) + 3))
    rows["CWT features per hop, incremental (not shipped)"] = _time(
        lambda: inc(data[:, :next(k)][:, -(inc.hop + inc.margin):]), repeats)
    # how far incremental features drift from the contract
    inc2 = IncrementalCWT(spec, 1.0)
    for end in range(inc.margin + hop, data.shape[1] + 1, hop):
        f_inc = inc2(data[:, :end])
    f_whole = scorer.transform(data[:, data.shape[1] - spec.n_samples: data.shape[1]])
    drift = float(np.max(np.abs(f_inc - f_whole)))
    feats = scorer.transform(window)
    rows["ONNX score, batch 1"] = _time(lambda: scorer.predict_proba(feats), repeats)
    rows["features + score per hop"] = _time(lambda: scorer.predict_proba(scorer.transform(window)), repeats)
    # what an alert costs: the baseline's features, then x + C channels + 25 band × region cells
    # + 5 regions + 5 bands, occluded, as one batch
    lp = scorer.transform.log_power(window)
    rows[f"alert explanation (baseline CWT + 1 + {len(spec.channels)} + 35 occlusions, one batch)"] = _time(
        lambda: occlude(scorer, spec, lp, scorer.transform.log_power(data[:, :spec.n_samples])), max(5, repeats // 4))
    # an alert with no seizure-free EEG before it (the monitor's first ~20 s): no second CWT
    rows[f"alert explanation, no baseline EEG (within-window reference + 1 + {len(spec.channels)} + 35 occlusions)"] = \
        _time(lambda: occlude(scorer, spec, lp, baseline_log_power(scorer.transform, spec, lp, None,
                                                                    scorer.flat_channel_guard)), max(5, repeats // 4))
    tmp = Path(tempfile.mkdtemp())
    log = JsonlLog(tmp / "b.jsonl")
    rec_line = {"event": "score", "t_lsl": 1.0, "p": 0.5, "alert": False, "quality": "clean", "latency_s": 0.01}
    rows["JSONL score line (write + flush + fsync)"] = _time(lambda: log.write(rec_line), repeats)
    outs = LslOutputs(f"ictal-bench-{os.getpid()}")
    rows["LSL score push"] = _time(lambda: outs.score(1.0, 0.5, False), repeats)
    extra = {"incremental_max_abs_feature_diff": drift, "feature_std": float(np.std(f_whole))}
    if checkpoint is not None:
        extra.update(torch_rows(rows, checkpoint, model, feats, repeats))
    return {"rows": rows, "extra": extra, "spec": {"input_shape": list(spec.input_shape)}}


def torch_rows(rows: dict, checkpoint: Path, model: Path, feats: np.ndarray, repeats: int) -> dict:
    import torch

    from ictal.models.explain import GradCAMExplainer
    from ictal.models.train import load_checkpoint

    from .scorer import Scorer

    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.perf_counter()
    expl = GradCAMExplainer.from_checkpoint(checkpoint)
    load_s = time.perf_counter() - t0
    rows["Grad-CAM on demand (torch, model loaded)"] = _time(lambda: expl.band_importance(feats), max(5, repeats // 4))
    net, _, _, _ = load_checkpoint(checkpoint)
    x = torch.as_tensor(feats[None])

    def eager():
        with torch.no_grad():
            net(x)
    rows["torch eager score, batch 1"] = _time(eager, repeats)
    out = {"gradcam_first_load_s": load_s}
    int8 = Path(tempfile.mkdtemp()) / "int8.onnx"
    try:
        from ictal.export.onnx_export import quantize_int8
        calib = np.repeat(feats[None], 8, axis=0) + np.random.default_rng(0).normal(0, 0.1, (8, *feats.shape)).astype(np.float32)
        quantize_int8(model, int8, calib.astype(np.float32))
        q = Scorer(int8)
        rows["ONNX int8 score, batch 1"] = _time(lambda: q.predict_proba(feats), repeats)
        out["int8_bytes"] = int8.stat().st_size
    except Exception as e:  # quantisation tooling is part of onnxruntime; report, don't die
        out["int8_error"] = str(e)
    return out


def seed_grid_benchmarks(repeats: int) -> dict:
    """Cost of the seed method's grid (391 freqs at 128 Hz, no decimation) vs ours."""
    rng = np.random.default_rng(0)
    ours = FeatureSpec()
    seed = FeatureSpec.seed_method_grid(channels=ours.channels)  # the same montage, only the grid differs
    rows = {}
    c = len(ours.channels)  # the default montage's channels, for both grids
    x256 = rng.normal(0, 20, (c, ours.n_samples))
    x128 = rng.normal(0, 20, (c, seed.n_samples))
    t_ours, t_seed = CWTransform(ours), CWTransform(seed)
    names = {"default": f"CWT default grid ({c} x {len(ours.freqs_hz)} x {ours.n_samples // ours.time_decimation})",
             "seed": f"CWT seed grid, our FFT method ({c} x {len(seed.freqs_hz)} x {seed.n_samples})",
             "mne": f"CWT seed grid, MNE-style Morlet ({c} x {len(seed.freqs_hz)} x {seed.n_samples})",
             "pywt": f"CWT seed grid, pywt.cwt fft per call ({c} x {len(seed.freqs_hz)} x {seed.n_samples})"}
    rows[names["default"]] = _time(lambda: t_ours(x256), repeats)
    rows[names["seed"]] = _time(lambda: t_seed(x128), max(3, repeats // 10))
    rows[names["mne"]] = _time(lambda: mne_style_morlet_power(x128, 128.0, seed.freqs_hz), 3, warmup=1)
    import pywt
    rows[names["pywt"]] = _time(lambda: pywt.cwt(x128, t_seed.scales, seed.wavelet, method="fft", axis=-1), 3,
                                warmup=1)
    import onnxruntime as ort  # noqa: F401
    return {"rows": rows, "names": names, "input_bytes": {"default": int(np.prod(ours.input_shape) * 4),
                                          "seed": int(np.prod(seed.input_shape) * 4)}}


def offline_throughput(model: Path, minutes: float = 30.0) -> dict:
    """Hours of EEG scored per second of wall time on a synthetic recording."""
    from ictal.stream_sim.synthetic import synthetic_recording

    from .scorer import Scorer
    from .windows import condition_recording

    scorer = Scorer(model)
    spec = scorer.spec
    rec = synthetic_recording(minutes * 60, [(600.0, 660.0)], seed=3)
    out = {}
    for hop_s in (10.0, 1.0):
        t0 = time.perf_counter()
        data = condition_recording(rec, spec)
        starts = np.arange(0, data.shape[1] - spec.n_samples + 1, int(hop_s * spec.sfreq_hz))
        for i in range(0, len(starts), 32):  # CWT and ONNX batched across windows
            segs = np.stack([data[:, s:s + spec.n_samples] for s in starts[i:i + 32]])
            scorer.predict_log_power(scorer.transform.log_power_batch(segs))
        wall = time.perf_counter() - t0
        out[f"hop_{hop_s:g}s"] = {"recording_s": rec.duration_s, "wall_s": wall, "windows": int(len(starts)),
                                  "x_real_time": rec.duration_s / wall,
                                  "hours_per_wall_second": rec.duration_s / 3600 / wall}
    return out


def end_to_end(model: Path, checkpoint: Path | None, out_dir: Path) -> dict:
    """The bundled real clip replayed in real time into `ictal monitor` in its own process, over LSL."""
    from ictal.stream_sim.replay import Replay, recording_with_seizures

    from .shipped import DEMO_CLIP

    results = {}
    rec = recording_with_seizures(DEMO_CLIP)  # real EEG, a real seizure, real time
    onset = next(a.onset_s for a in rec.annotations if "seizure" in a.text)
    for label, gradcam in (("monitor", None), ("monitor + Grad-CAM", checkpoint)):
        if label != "monitor" and gradcam is None:
            continue
        name = f"ictal-bench-{os.getpid()}-{len(results)}"
        log = out_dir / f"e2e_{len(results)}.jsonl"
        log.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "ictal", "monitor", "--model", str(model), "--stream", name,
               "--log", str(log), "--idle-exit", "3", "--explain-dir", str(out_dir / f"e2e_expl_{len(results)}"),
               "--no-lsl-out"]
        if gradcam:
            cmd += ["--gradcam", str(gradcam)]
        start = time.time()
        # the monitor runs in this directory, so relative --out-dir paths mean the same to it
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        replay = Replay(rec, speed=1.0, name=name).start()
        replay.wait()
        proc.wait(timeout=60)
        recs = [json.loads(line) for line in log.read_text().splitlines()]
        scores = [r for r in recs if r["event"] == "score"]
        conn = next(r for r in recs if r["event"] == "connected")
        disc = next(r for r in recs if r["event"] == "disconnected")
        alerts = [r for r in recs if r["event"] == "alert_onset"]
        row = {"sample_to_score": _stats([s["latency_s"] for s in scores]),
               "samples_pushed": replay.pushed, "samples_received": disc["samples_received"],
               "samples_dropped": replay.pushed - disc["samples_received"],
               "windows_scored": len(scores), "peak_rss_mb": disc["peak_rss_mb"],
               "torch_loaded": disc["torch_loaded"], "process_start_to_connected_s": conn["wall_time"] - start,
               "process_start_to_first_score_s": scores[0]["wall_time"] - start if scores else None,
               "onset_to_alert_s": (alerts[0]["t_lsl"] - replay.t0 - onset) if alerts else None,
               "alert_explanation_ms": alerts[0].get("occlusion_ms") if alerts else None}
        results[label] = row
    return results


def write_outputs(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    lines = [f"# ictal bench — {result['machine']}", "", "| stage | median ms | p95 ms | p99 ms | n |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for section in ("stages", "seed_grid"):
        for name, s in result[section]["rows"].items():
            lines.append(f"| {name} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} | {s['p99_ms']:.2f} | {s['n']} |")
    lines += ["", "| end to end over LSL (1-s hop, real time) | value |", "| --- | ---: |"]
    for label, row in result.get("end_to_end", {}).items():
        st = row["sample_to_score"]
        lines += [f"| {label}: sample pushed → score logged, median / p95 / p99 ms | "
                  f"{st['median_ms']:.1f} / {st['p95_ms']:.1f} / {st['p99_ms']:.1f} |",
                  f"| {label}: samples dropped | {row['samples_dropped']} of {row['samples_pushed']} |",
                  f"| {label}: annotated onset → alert, s | {row['onset_to_alert_s']} |",
                  f"| {label}: peak RSS, MB (torch loaded: {row['torch_loaded']}) | {row['peak_rss_mb']} |",
                  f"| {label}: process start → connected / first score, s | "
                  f"{row['process_start_to_connected_s']:.2f} / {row['process_start_to_first_score_s']:.2f} |"]
    lines += ["", "| offline scoring | × real time | hours of EEG per wall second |", "| --- | ---: | ---: |"]
    for hop, r in result["offline"].items():
        lines.append(f"| {hop} | {r['x_real_time']:.0f} | {r['hours_per_wall_second']:.3f} |")
    rows = result["stages"]["rows"]
    ratios = {}
    onnx_ms = rows["ONNX score, batch 1"]["median_ms"]
    if "torch eager score, batch 1" in rows:
        ratios["torch eager / ONNX fp32"] = rows["torch eager score, batch 1"]["median_ms"] / onnx_ms
    if "ONNX int8 score, batch 1" in rows:
        ratios["ONNX int8 / ONNX fp32"] = rows["ONNX int8 score, batch 1"]["median_ms"] / onnx_ms
    seed, names = result["seed_grid"]["rows"], result["seed_grid"]["names"]
    ratios["seed grid CWT / default grid CWT (our method)"] = (
        seed[names["seed"]]["median_ms"] / seed[names["default"]]["median_ms"])
    ratios["seed grid MNE-style Morlet / default grid CWT"] = (
        seed[names["mne"]]["median_ms"] / seed[names["default"]]["median_ms"])
    result["ratios"] = ratios
    lines += ["", "| ratio (same run) | value |", "| --- | ---: |"] + [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    ex = result["stages"]["extra"]
    lines += ["", f"Incremental CWT drifts from the whole-window features by up to "
              f"{ex['incremental_max_abs_feature_diff']:.2f} (feature std {ex['feature_std']:.2f}); "
              "the runtime keeps the whole-window transform the model was trained on."]
    (out_dir / "bench.md").write_text("\n".join(lines) + "\n")
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    _plot(result, out_dir / "bench.png")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {**result["stages"]["rows"], **result["seed_grid"]["rows"]}
    names = list(rows)
    med = np.array([rows[n]["median_ms"] for n in names])
    p99 = np.array([rows[n]["p99_ms"] for n in names])
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(names) + 1.5), dpi=110)
    y = np.arange(len(names))
    ax.barh(y, med, color="#2c7fb8", label="median")
    ax.errorbar(med, y, xerr=[np.zeros_like(med), p99 - med], fmt="none", ecolor="black", capsize=3,
                label="to p99")
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.axvline(30, ls="--", color="#d95f02", lw=1, label="30 ms per-hop target")
    ax.axvline(300, ls=":", color="#d95f02", lw=1, label="300 ms occlusion target")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper right")  # the top rows are the short ones
    ax.set_title(f"ictal stage latencies on {result['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_bench(out_dir: str | Path = "bench_out", *, model: Path | None = None, checkpoint: Path | None = None,
              clip: Path | None = None, repeats: int = 50, offline_min: float = 30.0,
              torch: bool = True) -> dict:
    from .demo import torch_available
    from .shipped import DEMO_CLIP, SHIPPED_CHECKPOINT, SHIPPED_MODEL

    model, clip = Path(model or SHIPPED_MODEL), Path(clip or DEMO_CLIP)
    checkpoint = Path(checkpoint or SHIPPED_CHECKPOINT) if (torch and torch_available()) else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"bench: {machine}; model {model.name}")
    result = {"machine": machine}
    result["end_to_end"] = end_to_end(model, checkpoint, out)
    print("bench: end to end done")
    gc.collect()
    result["stages"] = stage_benchmarks(model, clip, repeats, checkpoint)
    print("bench: stages done")
    result["seed_grid"] = seed_grid_benchmarks(repeats)
    result["offline"] = offline_throughput(model, offline_min)
    write_outputs(result, out)
    print((out / "bench.md").read_text())
    return result
