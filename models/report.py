"""`ictal report MODEL DATA -o DIR`: the XAI & metrics report (report.md + figures).

Metrics come from the leak-free cross-validation stored with the checkpoint
(and, separately, from scoring DATA with the model's stored threshold). The
summary of each example is written by this program from the numbers; an
optional rewrite by a user-configured OpenAI-compatible endpoint is off by
default and falls back to the deterministic text on any failure.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from runtime.channels import REGIONS
from runtime.features import BANDS_HZ

from .data import build_windows
from .evaluate import summarise
from .explain import GradCAM, GradCAMPlusPlus, IntegratedGradients, band_importance, relative
from .figures import confusion_matrix_figure, plt
from .interpret import Interpreter
from .train import binary_target, predict_proba

LLM_ENV = ("ICTAL_LLM_URL", "ICTAL_LLM_API_KEY", "ICTAL_LLM_MODEL")


# ---------------------------------------------------------------- plain-language summary
def plain_summary(fti: np.ndarray, spec, ri: dict, p: float, threshold: float, step_s: float = 2.0) -> str:
    """Which band dominated the Grad-CAM map at each time step, and which region the occlusion pointed to."""
    cols = int(step_s * spec.columns_per_s)
    parts = []
    for k in range(0, fti.shape[1], cols):
        fi = band_importance(fti[:, k:k + cols], spec)
        b = max(fi, key=fi.get)
        lo, hi = BANDS_HZ[b]
        parts.append((k / spec.columns_per_s, (k + cols) / spec.columns_per_s, b, lo, hi, fi[b]))
    merged = []
    for seg in parts:  # join consecutive steps with the same band
        if merged and merged[-1][2] == seg[2]:
            merged[-1] = (merged[-1][0], seg[1], *seg[2:])
        else:
            merged.append(seg)
    verdict = "seizure" if p >= threshold else "no seizure"
    text = [f"The model scored this 10-s window p(seizure) = {p:.2f} (threshold {threshold:.2f}): {verdict}."]
    text.append("Over time, the Grad-CAM evidence was strongest in " + "; ".join(
        f"{b} ({lo:g}–{hi:g} Hz) from {a:g} to {e:g} s" for a, e, b, lo, hi, _ in merged) + ".")
    top = sorted(ri, key=ri.get, reverse=True)
    if ri[top[0]] > 0:
        text.append(f"Replacing channels with quiet baseline EEG changed p most in the {top[0]} region "
                    f"(mean |Δp| {ri[top[0]]:.2g}), then {top[1]} ({ri[top[1]]:.2g}); "
                    f"least in {top[-1]} ({ri[top[-1]]:.2g}).")
        if p > 0.99 and ri[top[0]] < 1e-3:
            text.append("The score is saturated: no single region is needed to reach it, so the region "
                        "ranking is weak evidence.")
    else:
        text.append("No single channel's occlusion changed p: the evidence is spread over the scalp "
                    "(or the score is saturated).")
    return " ".join(text)


def llm_rewrite(text: str, timeout_s: float = 20.0, retries: int = 2) -> tuple[str, str]:
    """Rewrite `text` for clinicians via an OpenAI-compatible chat endpoint named by
    ICTAL_LLM_URL / ICTAL_LLM_API_KEY / ICTAL_LLM_MODEL. Returns (text, source);
    on any failure the deterministic text comes back with the reason."""
    url, key, model = (os.environ.get(k) for k in LLM_ENV)
    if not url:
        return text, "deterministic (ICTAL_LLM_URL not set)"
    body = json.dumps({"model": model or "default", "temperature": 0, "messages": [
        {"role": "system", "content": "Rewrite this EEG model explanation for a neurologist in two plain "
                                      "sentences. Keep every number. Add nothing that is not in the text."},
        {"role": "user", "content": text}]}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    reason = ""
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                out = json.loads(r.read())["choices"][0]["message"]["content"].strip()
                if out:
                    return out, f"rewritten by {model or 'the configured model'}"
        except (urllib.error.URLError, TimeoutError, OSError, KeyError, ValueError, IndexError) as e:
            reason = f"{type(e).__name__}: {e}"
            time.sleep(0.5 * (attempt + 1))
    return text, f"deterministic (LLM rewrite failed: {reason})"


# ---------------------------------------------------------------- example figures
def _imshow(ax, img, spec, title, cmap="viridis", vmin=None, vmax=None, cbar_label=""):
    f = spec.freqs_hz
    im = ax.imshow(img, aspect="auto", origin="lower", extent=[0, spec.window_s, f[0], f[-1]], cmap=cmap,
                   vmin=vmin, vmax=vmax)
    ax.set_xlabel("time in window (s)")
    ax.set_ylabel("frequency (Hz)")
    ax.set_title(title, fontsize=8)
    cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(cbar_label, fontsize=7)
    cb.ax.tick_params(labelsize=6)
    return im


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def example_figures(interp: Interpreter, eeg: np.ndarray, out: Path, stem: str) -> dict:
    """Triptych, Grad-CAM and Grad-CAM++ overlays and IG triptych of one window; returns file names + maps."""
    spec = interp.spec
    x = interp.transform.log_power(eeg)
    xn = spec.normalise(x)
    files = {}
    t = np.arange(eeg.shape[1]) / spec.sfreq_hz
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8), dpi=100)
    ci_order = np.argsort(np.abs(eeg).max(axis=1))[::-1][:6]
    scale = float(np.percentile(np.abs(eeg[ci_order]), 99)) * 2 or 1
    for k, c in enumerate(ci_order):
        ax[0].plot(t, eeg[c] / scale - k, lw=0.5, color="black")
    ax[0].set_yticks(-np.arange(len(ci_order)), [spec.channels[c] for c in ci_order], fontsize=7)
    ax[0].set_xlabel("time in window (s)")
    ax[0].set_title(f"EEG, 6 largest channels ({scale:.0f} µV between traces)", fontsize=8)
    _imshow(ax[1], x.mean(axis=0), spec, "CWT log power, mean over channels", cbar_label="log10 µV²")
    _imshow(ax[2], xn.mean(axis=0), spec, "model input (standardised per frequency), mean over channels",
            cmap="cividis", cbar_label="z-score")
    files["triptych"] = _save(fig, out / f"{stem}_input.png")
    base = xn.mean(axis=0)
    maps = {}
    for name, cls in (("gradcam", GradCAM), ("gradcampp", GradCAMPlusPlus)):
        cam = cls(interp.model, getattr(interp.model, interp.cam_layer)).attribute(xn)[0]
        maps[name] = cam
        fig, ax = plt.subplots(1, 1, figsize=(7, 3.6), dpi=100)
        f = spec.freqs_hz
        ax.imshow(base, aspect="auto", origin="lower", extent=[0, spec.window_s, f[0], f[-1]], cmap="gray")
        im = ax.imshow(cam / (cam.max() or 1), aspect="auto", origin="lower", cmap="jet", alpha=0.45, vmin=0,
                       vmax=1, extent=[0, spec.window_s, f[0], f[-1]])
        for b in (4, 8, 14, 30):
            ax.axhline(b, color="white", lw=0.5, ls="--")
        ax.set_xlabel("time in window (s)")
        ax.set_ylabel("frequency (Hz)")
        label = "Grad-CAM" if name == "gradcam" else "Grad-CAM++"
        ax.set_title(f"{label} ({interp.cam_layer}) over the model input; dashed: band edges 4/8/14/30 Hz", fontsize=8)
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label("relative importance (red = high)", fontsize=7)
        files[name] = _save(fig, out / f"{stem}_{name}.png")
    ig = IntegratedGradients(interp.model, steps=32)
    baseline = spec.normalise(np.full(xn.shape, np.log10(spec.log_eps), np.float32))  # a silent recording
    attr = ig.attribute(xn, baseline)[0]
    attr_tf = attr.sum(axis=0)
    lim = float(np.abs(attr_tf).max()) or 1e-9
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8), dpi=100)
    _imshow(ax[0], base, spec, "model input, mean over channels", cmap="cividis", cbar_label="z-score")
    _imshow(ax[1], attr_tf, spec, "Integrated Gradients, summed over channels", cmap="RdBu_r", vmin=-lim,
            vmax=lim, cbar_label="← non-seizure   logit   seizure →")
    per_ch = attr.sum(axis=(1, 2))
    ax[2].barh(np.arange(len(per_ch)), per_ch, color=np.where(per_ch >= 0, "#b2182b", "#2166ac"))
    ax[2].set_yticks(np.arange(len(per_ch)), spec.channels, fontsize=5)
    ax[2].invert_yaxis()
    ax[2].axvline(0, color="black", lw=0.5)
    ax[2].set_xlabel("logit attribution: red → seizure, blue → non-seizure")
    ax[2].set_title("Integrated Gradients per channel", fontsize=8)
    files["ig"] = _save(fig, out / f"{stem}_ig.png")
    maps["ig_sum"] = float(attr.sum())
    maps["ig_delta"] = float(ig.logits(xn)[0] - ig.logits(baseline)[0])
    return {"files": files, "maps": maps, "x_norm": xn}


LEGENDS = """## Colour legends

- **Confusion matrix:** blue intensity = fraction of the true class (row); TN/FP/FN/TP in each quadrant.
- **CWT power:** viridis, log10 µV²; yellow = high power.
- **Model input:** cividis, z-score per frequency against the training windows.
- **Grad-CAM / Grad-CAM++ overlays:** jet at 45 % opacity over the grey model input; red = most important,
  blue = least, each map scaled to its own maximum. Dashed white lines: band edges (4, 8, 14, 30 Hz).
- **Integrated Gradients:** diverging red–blue, symmetric around 0; **red = pushes toward seizure,
  blue = pushes toward non-seizure**, in logit units (they sum to the logit difference from a silent baseline).
- **Band × region matrices:** light → dark = low → high importance (Grad-CAM band, max = 1) × (occlusion |Δp|).
"""


def _table(rows: list[tuple[str, dict]]) -> list[str]:
    out = ["| evaluation | windows | accuracy | sensitivity | specificity | F1 | weighted F1 | AUROC | threshold |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, w in rows:
        out.append(f"| {name} | {w['n_windows']} | {w['accuracy']:.3f} | {w['sensitivity']:.3f} | "
                   f"{w['specificity']:.3f} | {w['f1']:.3f} | {w['weighted_f1']:.3f} | {w['auroc']:.3f} | "
                   f"{w['threshold']:.3f} |")
    return out


def write_report(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *, n_examples: int = 2,
                 use_llm: bool = False, hop_s: float = 5.0, allow_missing: int = 0, cam_layer: str = "layer4",
                 log=print) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    interp = Interpreter(checkpoint, cam_layer)
    spec, thr = interp.spec, interp.threshold
    ws = build_windows(data, spec, hop_s=hop_s, seizure_hop_s=hop_s, allow_missing=allow_missing, log=log)
    p = predict_proba(interp.model, spec, ws.x)
    on_data = summarise(ws, p, thr)
    trained = set(interp.meta.get("trained_on", []))
    seen = sorted({w.recording for w in ws.windows} & trained)
    md = [f"# ictal XAI & metrics report — model `{interp.name}`", "",
          f"Data: `{data}` ({len(ws.windows)} windows of {spec.window_s:g} s from {len(ws.recordings)} "
          f"recordings). Decision threshold **{thr:.3f}**, chosen on validation data only and stored with the "
          "model. **Not a medical device.**", "", "## Metrics", ""]
    rows, cv = [], interp.meta.get("cross_validation", {})
    for key, label in (("leave_one_seizure_out", "leak-free CV: leave one seizure recording out"),
                       ("cross_patient", "leak-free CV: cross-patient")):
        if key in cv:
            rows.append((label, cv[key]["pooled"]["window"]))
    rows.append((f"this data with the shipped threshold{' (includes training recordings!)' if seen else ''}",
                 on_data["window"]))
    md += _table(rows)
    md += ["", "Cross-validation folds split by recording (never a random split of overlapping windows); each "
           "fold's threshold (the best on its validation part, Youden's J) is applied to its test part. "
           "Windows with 0–50 % seizure overlap are left out of window metrics."]
    if seen:
        md += ["", f"Of these recordings, {len(seen)} were in the model's training set "
                   f"({', '.join(seen[:6])}{'…' if len(seen) > 6 else ''}); the last row is optimistic for them."]
    ev = on_data["event"]
    md += ["", f"Event level on this data (SzCORE rules): {ev['detected']}/{ev['n_events']} seizures detected, "
               f"{ev['false_alarms']} false alarms in {ev['duration_h']:.2f} h, median latency "
               f"{ev['latency_median_s']:.1f} s.", ""]
    conf = rows[0][1]["confusion"]
    confusion_matrix_figure(conf, out / "confusion_matrix.png", f"Confusion matrix — {rows[0][0]}",
                            f"threshold per fold · sensitivity {rows[0][1]['sensitivity']:.2f} · "
                            f"specificity {rows[0][1]['specificity']:.2f}")
    md += ["![confusion matrix](confusion_matrix.png)", "", LEGENDS, "## Examples", ""]
    y = binary_target(ws.label)
    keep = (ws.label == 0) | (ws.label >= 0.5)
    order = np.argsort(p)
    kinds = {"true positive": [i for i in order[::-1] if keep[i] and y[i] and p[i] >= thr],
             "true negative": [i for i in order if keep[i] and not y[i] and p[i] < thr],
             "false positive": [i for i in order[::-1] if keep[i] and not y[i] and p[i] >= thr],
             "false negative": [i for i in order if keep[i] and y[i] and p[i] < thr]}
    from runtime.edf import read_edf
    from runtime.windows import condition_recording
    cache = {}
    n_done = 0
    for kind, idxs in kinds.items():
        for rank, i in enumerate(idxs[: n_examples if kind.startswith("true") else 1]):
            w = ws.windows[i]
            path = next(pth for pth in Path(data).rglob(w.recording))
            if w.recording not in cache:
                cache[w.recording] = condition_recording(read_edf(path), spec, allow_missing=allow_missing)
            cond = cache[w.recording]
            a = int(round(w.start_s * spec.sfreq_hz))
            eeg = cond[:, a:a + spec.n_samples]
            stem = f"ex{n_done + 1:02d}_{kind.replace(' ', '_')}"
            ex = example_figures(interp, eeg, out, stem)
            from runtime.annotations import Seizure
            szs = [Seizure(a_, b_, w.recording) for a_, b_ in ws.recordings[w.recording][1]]
            seg = interp.explain_segments(cond, [w.start_s], szs)[0]
            summary = plain_summary(ex["maps"]["gradcam"], spec, seg.ri, float(p[i]), thr)
            summary, source = llm_rewrite(summary) if use_llm else (summary, "deterministic")
            md += [f"### Example {n_done + 1}: {kind}", "",
                   f"- true label: {'seizure' if y[i] else 'non-seizure'} ({100 * w.label:.0f} % of the window "
                   f"inside an annotated seizure)",
                   f"- prediction: {'seizure' if p[i] >= thr else 'non-seizure'} (threshold {thr:.3f})",
                   f"- p_seizure: {p[i]:.4f}",
                   f"- files: `{path}` {w.start_s:g}–{w.end_s:g} s; figures `{ex['files']['triptych']}`, "
                   f"`{ex['files']['gradcam']}`, `{ex['files']['gradcampp']}`, `{ex['files']['ig']}`",
                   f"- Integrated Gradients completeness: Σ attributions {ex['maps']['ig_sum']:.3f} vs "
                   f"f(x) − f(baseline) {ex['maps']['ig_delta']:.3f} (logit)",
                   f"- dominant band {seg.to_json(spec.channels)['dominant_band']}, dominant region "
                   f"{seg.to_json(spec.channels)['dominant_region']}", "",
                   f"**Summary** ({source}): {summary}", "",
                   "Input triptych:", "", f"![input]({ex['files']['triptych']})", "",
                   "Grad-CAM overlay:", "", f"![grad-cam]({ex['files']['gradcam']})", "",
                   "Grad-CAM++ overlay:", "", f"![grad-cam++]({ex['files']['gradcampp']})", "",
                   "Integrated-Gradients triptych:", "", f"![ig]({ex['files']['ig']})", ""]
            n_done += 1
            log(f"example {n_done}: {kind} {w.recording} {w.start_s:g} s p={p[i]:.3f}")
    (out / "metrics.json").write_text(json.dumps({"on_data": on_data, "cross_validation_pooled": {
        k: v["pooled"] for k, v in cv.items()}}, indent=2, default=float) + "\n")
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n")
    return report
