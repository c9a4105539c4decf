"""`ictal report DATA --model M.pt --out-dir DIR`: the XAI & metrics report (report.md + figures).

Metrics are those of the data passed in, scored with the threshold stored with the
model (the one applied): window metrics, confusion matrix, an event table per
recording and false alarms per 24 h. Cross-validation stored with the model is
shown apart and labelled as such. Examples are true and false positives and
negatives that do not overlap; a kind that does not occur is said to be missing.
Each example's summary is written by this program from its own numbers; an
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

from ictal.runtime.annotations import find_labelled_recordings
from ictal.runtime.artefacts import eye_movement_like, eye_movement_text
from ictal.runtime.channels import seizure_like_text, unique_labels
from ictal.runtime.errors import DataError
from ictal.runtime.features import BANDS_HZ
from ictal.runtime.figures import draw_eeg
from ictal.runtime.occlusion import WITHIN_WINDOW_KIND

from .data import (WindowSet, binary_target, log_power_transform, recording_windows, rejected_windows,
                   unambiguous)
from .evaluate import event_counts_by_recording, false_alarm_table, interval_table, summarise, write_json
from .explain import GradCAMPlusPlus, IntegratedGradients, band_importance
from .figures import confusion_matrix_figure, matrices_figure, plt
from .interpret import Interpreter
from .train import predict_proba

LLM_ENV = ("ICTAL_LLM_URL", "ICTAL_LLM_API_KEY", "ICTAL_LLM_MODEL")


# ---------------------------------------------------------------- plain-language summary
def plain_summary(fti: np.ndarray, spec, occ, threshold: float, start_s: float = 0.0, step_s: float = 2.0,
                  gradcam_meaningful: bool = True, replaced_with: str = "quiet baseline EEG",
                  muscle_like_channels=(), channel_veto: dict | None = None,
                  frontopolar_delta_excess: float | None = None) -> str:
    """This window's own numbers in words: p, the Grad-CAM band over time, what occlusion
    (whole regions, and band × region cells) says carried the evidence, and which derivations
    look like scalp muscle, and (a model with a channel veto) which look like seizure on their own,
    and whether the frontal slow waves are those of eye blinks or movements (`frontopolar_delta_excess`).

    `gradcam_meaningful` is False for a hybrid whose ResNet adds nothing (`resnet_contributes`);
    `replaced_with` names what the occluded parts were taken from."""
    cols = max(1, int(step_s * spec.columns_per_s))
    parts = []
    for k in range(0, fti.shape[1], cols):
        fi = band_importance(fti[:, k:k + cols], spec)
        b = max(fi, key=fi.get)
        parts.append((start_s + k / spec.columns_per_s, start_s + (k + cols) / spec.columns_per_s, b))
    merged = []
    for seg in parts:  # join consecutive steps with the same band
        if merged and merged[-1][2] == seg[2]:
            merged[-1] = (merged[-1][0], seg[1], seg[2])
        else:
            merged.append(seg)
    p = occ.p
    verdict = "seizure" if p >= threshold else "no seizure"
    text = [f"The model scored this 10-s window p(seizure) = {p:.3f} (logit {occ.logit:+.2f}; threshold "
            f"{threshold:.3f}): {verdict}."]
    if not gradcam_meaningful:
        text.append("Grad-CAM: none; this model's ResNet adds nothing to its score (training kept its band-power "
                    "summary branch alone), so the bands below come from occlusion.")
    elif not np.any(fti):
        text.append("Grad-CAM: all zero for this window (no part of the last residual block's map pushed toward "
                    "seizure), so the bands below come from occlusion.")
    else:
        text.append("Grad-CAM's strongest band over time: " + "; ".join(
            f"{b} ({BANDS_HZ[b][0]:g}–{BANDS_HZ[b][1]:g} Hz) from {a:g} to {e:g} s" for a, e, b in merged) + ".")
    ri = occ.region_importance()
    top, low = max(ri, key=ri.get), min(ri, key=ri.get)
    band, region = occ.top_cell()
    cell = float(occ.joint_dlogit.max())
    if ri[top] > 0.1:
        text.append(f"Replacing the {top} channels with {replaced_with} lowered the logit most "
                    f"({ri[top]:+.2f}).")
    else:
        text.append(f"No region on its own carried the score: replacing any one region moved the logit by at most "
                    f"{max(abs(v) for v in ri.values()):.2f}.")
    if ri[low] < -0.1:
        text.append(f"The {low} region argued against seizure (replacing it raised the logit by {-ri[low]:.2f}).")
    if cell > 0.1:
        text.append(f"Of the 25 band × region cells, {band} in the {region} region carried the most evidence "
                    f"(logit drop {cell:.2f} when replaced).")
    if channel_veto:
        named = channel_veto["seizure_like_channels"]
        if named:
            text.append(f"Derivations that look, on their own, at least as seizure-like as the model's least "
                        f"seizure-like training seizure: {seizure_like_text(channel_veto)}.")
        else:
            text.append(f"No derivation looks like seizure on its own (the most seizure-like is "
                        f"{-channel_veto['channel_evidence']:.2f} below the least seizure-like training seizure), "
                        f"so the model pushed this score down.")
    if muscle_like_channels:
        text.append(f"Power rises from 8–12 into 20–30 Hz on {', '.join(muscle_like_channels)}, the shape of scalp "
                    f"muscle (EMG); a seizure's fast activity can look alike: check the traces.")
    if eye_movement_like(frontopolar_delta_excess):
        sentence = eye_movement_text(frontopolar_delta_excess)
        text.append(sentence[0].upper() + sentence[1:] + ".")
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
def _imshow(ax, img, spec, title, cmap="viridis", vmin=None, vmax=None, cbar_label="", t0: float = 0.0):
    f = spec.freqs_hz
    im = ax.imshow(img, aspect="auto", origin="lower", extent=[t0, t0 + spec.window_s, f[0], f[-1]], cmap=cmap,
                   vmin=vmin, vmax=vmax)
    ax.set_xlabel("time in recording (s)")
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


def example_figures(interp: Interpreter, eeg: np.ndarray, seg, out: Path, stem: str, title: str) -> dict:
    """Input, Grad-CAM / Grad-CAM++ overlays, IG and the two matrices of one window; returns file names + maps.

    eeg : (n_channels, n_samples) conditioned µV of the window; seg : its SegmentExplanation.
    """
    spec = interp.spec
    t0 = seg.start_s
    x = interp.transform.log_power(eeg)
    xn = spec.normalise(x)
    files = {}
    t = t0 + np.arange(eeg.shape[1]) / spec.sfreq_hz
    labels = unique_labels(spec.channels)
    dl = seg.occlusion.channel_dlogit
    top = np.argsort(-np.abs(dl))[:6]
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8), dpi=100)
    scale = draw_eeg(ax[0], t, eeg[top], [f"{labels[c]} ({dl[c]:+.2f})" for c in top])
    ax[0].set_xlabel("time in recording (s)")
    ax[0].set_title(f"EEG of the 6 channels whose occlusion moved the logit most (Δlogit); {scale:g} µV apart",
                    fontsize=8)
    _imshow(ax[1], x.mean(axis=0), spec, "CWT log power, mean over channels", cbar_label="log10 µV²", t0=t0)
    kind = "relative, standardised" if spec.relative != "none" else "log power, standardised"
    _imshow(ax[2], xn.mean(axis=0), spec, f"model input ({kind}), mean over channels",
            cmap="cividis", cbar_label="z-score", t0=t0)
    fig.suptitle(title, fontsize=9)
    files["triptych"] = _save(fig, out / f"{stem}_input.png")
    base = xn.mean(axis=0)
    maps = {}
    f = spec.freqs_hz
    extent = [t0, t0 + spec.window_s, f[0], f[-1]]
    maps["gradcam"] = seg.fti_raw  # computed with the segment's explanation
    cams = []
    if interp.gradcam_meaningful:  # a ResNet that adds nothing has zero maps: no overlays to draw
        cams = [("gradcam", seg.fti_raw),
                ("gradcampp", GradCAMPlusPlus(interp.model, getattr(interp.model, interp.cam_layer)).attribute(xn)[0])]
    for name, cam in cams:
        maps[name] = cam
        fig, ax = plt.subplots(1, 1, figsize=(7, 3.6), dpi=100)
        ax.imshow(base, aspect="auto", origin="lower", extent=extent, cmap="gray")
        im = ax.imshow(cam / (cam.max() or 1), aspect="auto", origin="lower", cmap="inferno", alpha=0.6, vmin=0,
                       vmax=1, extent=extent)
        for b in (4, 8, 14, 30):
            ax.axhline(b, color="white", lw=0.5, ls="--")
        ax.set_xlabel("time in recording (s)")
        ax.set_ylabel("frequency (Hz)")
        label = "Grad-CAM" if name == "gradcam" else "Grad-CAM++"
        ax.set_title(f"{title}\n{label} ({interp.cam_layer}) over the model input; dashed: band edges 4/8/14/30 Hz",
                     fontsize=8)
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label("relative importance (bright = high)", fontsize=7)
        files[name] = _save(fig, out / f"{stem}_{name}.png")
    ig = IntegratedGradients(interp.model, steps=32)
    baseline = spec.normalise(np.full(xn.shape, np.log10(spec.log_eps), np.float32))  # a silent recording
    attr = ig.attribute(xn, baseline)[0]
    attr_tf = attr.sum(axis=0)
    lim = float(np.abs(attr_tf).max()) or 1e-9
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8), dpi=100)
    _imshow(ax[0], base, spec, "model input, mean over channels", cmap="cividis", cbar_label="z-score", t0=t0)
    _imshow(ax[1], attr_tf, spec, "Integrated Gradients, summed over channels", cmap="RdBu_r", vmin=-lim,
            vmax=lim, cbar_label="← non-seizure   logit   seizure →", t0=t0)
    per_ch = attr.sum(axis=(1, 2))
    ax[2].barh(np.arange(len(per_ch)), per_ch, color=np.where(per_ch >= 0, "#b2182b", "#2166ac"))
    ax[2].set_yticks(np.arange(len(per_ch)), labels, fontsize=5)
    ax[2].invert_yaxis()
    ax[2].axvline(0, color="black", lw=0.5)
    ax[2].set_xlabel("logit attribution: red → seizure, blue → non-seizure")
    ax[2].set_title("Integrated Gradients per channel", fontsize=8)
    fig.suptitle(title, fontsize=9)
    files["ig"] = _save(fig, out / f"{stem}_ig.png")
    if interp.gradcam_meaningful:
        fris, suptitle = [seg.matrix], "top: joint band × region occlusion (Δlogit) · bottom: the method's FRI = " \
                                       "Grad-CAM FI ⊗ RI"
    else:
        fris, suptitle = None, "joint band × region occlusion (Δlogit); no FRI: this model has no Grad-CAM map"
    matrices_figure([seg.joint], fris, [title], out / f"{stem}_matrices.png", suptitle)
    files["matrices"] = f"{stem}_matrices.png"
    maps["ig_sum"] = float(attr.sum())
    maps["ig_delta"] = float(ig.logits(xn)[0] - ig.logits(baseline)[0])
    return {"files": files, "maps": maps}


LEGENDS = """## How to read the figures

- **Confusion matrix:** blue intensity = fraction of the true class (row); TN/FP/FN/TP in each quadrant.
- **EEG panels:** the derivations whose occlusion moved the logit most, with their Δlogit; the red bar at the
  right is the µV scale (the traces' spacing). Times are seconds from the start of the recording.
- **CWT power:** viridis, log10 µV². **Model input:** cividis, the log power the model reads (relative to the
  window for a ResNet-only model), standardised per frequency.
- **Grad-CAM / Grad-CAM++ overlays:** inferno (perceptually uniform) at 60 % opacity over the grey model input;
  bright = most important, each map scaled to its own maximum. Dashed white lines: band edges (4, 8, 14, 30 Hz).
- **Integrated Gradients:** diverging red–blue, symmetric around 0; **red = pushes toward seizure,
  blue = pushes toward non-seizure**, in logit units (they sum to the logit difference from a silent baseline).
- **Joint band × region occlusion (top matrix):** each cell is the drop of the logit when only that band of
  that region's channels is replaced by the quietest preceding EEG; red = the cell carried seizure evidence,
  blue = it argued against. This is the matrix to read as "which band where".
- **The method's FRI (bottom matrix):** Grad-CAM band importance (largest = 1) × whole-region occlusion
  (Δlogit, negatives as 0). An outer product: every row has the same shape, so it cannot say "theta on the
  left, alpha on the right".
- Every matrix has its own colour scale; read the numbers in the cells.
"""

KINDS = ("true positive", "true negative", "false positive", "false negative")


def pick_examples(ws, p: np.ndarray, threshold: float, per_kind: int) -> dict[str, list[int]]:
    """Up to `per_kind` windows of each kind, typical rather than extreme (closest to the kind's
    median p), from as many recordings as possible, never overlapping one another."""
    y = binary_target(ws.label)
    keep = unambiguous(ws.label) & np.isfinite(p)  # NaN: a window the monitor would not score
    pos = p >= threshold
    masks = {"true positive": keep & (y == 1) & pos, "true negative": keep & (y == 0) & ~pos,
             "false positive": keep & (y == 0) & pos, "false negative": keep & (y == 1) & ~pos}
    chosen: list[int] = []
    out = {}
    for kind, mask in masks.items():
        idx = np.flatnonzero(mask)
        order = idx[np.argsort(np.abs(p[idx] - np.median(p[idx])))] if idx.size else idx
        picks: list[int] = []
        for second_pass in (False, True):  # first one per recording, then fill up
            for i in order:
                w = ws.windows[i]
                if len(picks) == per_kind or i in picks:
                    continue
                if not second_pass and any(ws.windows[j].recording == w.recording for j in picks):
                    continue
                if any(ws.windows[j].recording == w.recording and ws.windows[j].start_s < w.end_s
                       and w.start_s < ws.windows[j].end_s for j in chosen + picks):
                    continue
                picks.append(int(i))
        out[kind] = picks
        chosen += picks
    return out


def _window_table(rows: list[tuple[str, dict]]) -> list[str]:
    out = ["| evaluation | windows | accuracy | sensitivity | specificity | F1 | AUROC | threshold |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, w in rows:
        thr = w["threshold"] if isinstance(w["threshold"], str) else f"{w['threshold']:.3f}"
        out.append(f"| {name} | {w['n_windows']} | {w['accuracy']:.3f} | {w['sensitivity']:.3f} | "
                   f"{w['specificity']:.3f} | {w['f1']:.3f} | {w['auroc']:.3f} | {thr} |")
    return out


def event_table(ws, p: np.ndarray, threshold: float) -> list[dict]:
    """One row per recording: seizures, detected, false alarms, latency (SzCORE rules)."""
    rows = []
    for rec, counts in event_counts_by_recording(ws, p, threshold).items():
        duration, seizures = ws.recordings[rec]
        e = counts.summary()
        rows.append({"recording": rec, "duration_s": duration, "seizures": len(seizures),
                     "detected": e["detected"], "false_alarms": e["false_alarms"],
                     "latency_s": e["latencies_s"], "already_alarming": e["detected_while_already_alarming"]})
    return rows


def _windows(data, spec, hop_s: float, allow_missing: int, force: bool, log) -> tuple:
    """(windows with features, rejected) of every labelled recording under `data`, as `ictal
    evaluate` windows them, with the windows the monitor would reject for flat or saturated channels."""
    t0 = time.perf_counter()
    transform = log_power_transform(spec)
    sets, rejected = [], []
    for lr in find_labelled_recordings(data):
        quality: list = []
        rec = recording_windows(lr, spec, transform, hop_s=hop_s, seizure_hop_s=hop_s, allow_missing=allow_missing,
                                source=Path(data).name, quality_seconds=quality)
        if rec.windows:
            sets.append(rec)
            missing = [label for labels in rec.zero_filled.values() for label in labels]
            rejected.append(rejected_windows(rec.windows, missing, quality, spec, force=force)[0])
    if not sets:
        raise DataError(f"{data}: no recording is long enough for one {spec.window_s:g}-s window")
    ws = WindowSet.concat(sets)
    log(f"{Path(data).name}: {len(sets)} recordings -> {len(ws.windows)} windows "
        f"({int(np.sum(ws.label >= 0.5))} seizure, {int(np.sum(np.concatenate(rejected)))} not scorable) "
        f"in {time.perf_counter() - t0:.1f} s")
    return ws, np.concatenate(rejected)


def write_report(checkpoint: str | Path, data: str | Path, out_dir: str | Path, *, n_examples: int = 1,
                 use_llm: bool = False, hop_s: float = 5.0, allow_missing: int = 0, force: bool = False,
                 cam_layer: str = "layer4", threshold: float | None = None, log=print) -> Path:
    from ictal.runtime.annotations import Seizure
    from ictal.runtime.channels import check_zero_fill
    from ictal.runtime.edf import open_edf
    from ictal.runtime.windows import condition_edf

    interp = Interpreter(checkpoint, cam_layer)
    model_threshold = interp.threshold
    if threshold is not None:  # a unit's own operating point: the metrics, examples and texts all use it
        interp.threshold = float(threshold)
    spec, thr = interp.spec, interp.threshold
    check_zero_fill(allow_missing, len(spec.channels), force=force, model_name=f"model {interp.name}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ws, rejected = _windows(data, spec, hop_s, allow_missing, force, log)
    p = predict_proba(interp.model, spec, ws.x)
    p[rejected] = np.nan  # windows the monitor would not score: no metric, event or example counts them
    on_data = summarise(ws, p, thr)
    trained = set(interp.meta.get("trained_on", []))
    seen = sorted({w.recording for w in ws.windows} & trained)
    md = [f"# ictal XAI & metrics report — model `{interp.name}`", "",
          f"Data: `{data}` ({len(ws.windows)} windows of {spec.window_s:g} s every {hop_s:g} s from "
          f"{len(ws.recordings)} recordings). **Not a medical device.**", "",
          "## Metrics on this data", "",
          f"Threshold applied: **{thr:.3f}** "
          + (f"(set by --threshold; the model's own, {model_threshold:.3f}, was chosen on "
             if threshold is not None else "(stored with the model; chosen on ")
          + f"{interp.meta.get('threshold_from', 'its validation patients')}). "
          "Windows with 0–50 % seizure overlap are left out of window metrics."]
    if seen:
        md += ["", f"**Caution:** {len(seen)} of these recordings were in the model's training set "
                   f"({', '.join(seen[:6])}{'…' if len(seen) > 6 else ''}); metrics on them are optimistic."]
    else:
        md += ["", "None of these recordings was in the model's training set."]
    md += [""] + _window_table([("this data", on_data["window"])])
    conf = on_data["window"]["confusion"]
    confusion_matrix_figure(conf, out / "confusion_matrix.png", "Confusion matrix — this data",
                            f"threshold {thr:.3f} · sensitivity {on_data['window']['sensitivity']:.2f} · "
                            f"specificity {on_data['window']['specificity']:.2f}")
    md += ["", "![confusion matrix on this data](confusion_matrix.png)", ""]
    ev, free = on_data["event"], on_data["seizure_free"]
    events = event_table(ws, p, thr)
    md += ["### Events (SzCORE: ±30 s / +60 s tolerance, alarms merged, long seizures in 300-s parts)", "",
           f"{ev['detected']}/{ev['n_events']} seizure events detected; {ev['false_alarms']} false alarms in "
           f"{ev['duration_h']:.2f} h of recordings with seizures; "
           + (f"{free['false_alarms']} false alarms in {free['duration_h']:.2f} h of seizure-free recordings = "
              f"**{free['false_alarms_per_24h']:.0f} per 24 h**"
              + (" (from less than an hour: a weak estimate)." if free["duration_h"] < 1 else ".")
              if free["duration_h"] else
              "no seizure-free recordings in this data, so no false-alarm rate per 24 h."), "",
           "| recording | length (s) | seizures | detected | false alarms | latency (s) |",
           "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in events:
        lat = ", ".join(f"{x:+.0f}" for x in r["latency_s"]) or ("already alarming" if r["already_alarming"] else "–")
        md.append(f"| {r['recording']} | {r['duration_s']:.0f} | {r['seizures']} | {r['detected']} | "
                  f"{r['false_alarms']} | {lat} |")
    cv = interp.meta.get("cross_validation_summary", {})
    md += ["", "## Cross-validation stored with the model (not this data)", ""]
    if cv:
        rows = [(f"{name}: model, pooled over held-out folds",
                 {**r["pooled"]["model"]["window"], "threshold": "per fold"}) for name, r in cv.items()]
        md += _window_table(rows)
        how = ("was scored at the mean of the thresholds that the other folds chose on validation windows "
               "without its patients (at its own where fewer than 3 such folds exist)"
               if "threshold_from" in interp.meta else
               "threshold was chosen on its own validation patients and applied to its held-out patient")
        md += ["", f"Each fold {how}. Pooled over all windows, hours of healthy EEG dominate the negatives; per "
               "data set, the model beside its classical peers on the same windows:"]
        for name, r in cv.items():
            methods = list(r["pooled"])
            md += ["", f"**{name}:** false alarms per 24 h (exact Poisson 95 % intervals)", ""]
            md += false_alarm_table(r["pooled"])
            if r.get("pooled_auroc_intervals"):
                md += interval_table(r["pooled_auroc_intervals"], methods)
    else:
        md += ["No cross-validation was stored with this model (trained without `--cv`); the leave-one-patient-out "
               "evaluation of the architecture is in MODEL_CARD.md and docs/lopo/."]
    md += ["", LEGENDS]
    if not interp.gradcam_meaningful:
        md += ["**This model has no Grad-CAM map.** Its ResNet adds nothing to the score (training kept the "
               "band-power summary branch alone), so Grad-CAM, Grad-CAM++ and the FRI would be all zero and are "
               "not drawn. Occlusion (channels, band × region) and Integrated Gradients explain it.", ""]
    md += ["## Examples", ""]
    picks = pick_examples(ws, p, thr, n_examples)
    missing = [k for k in KINDS if not picks[k]]
    if missing:
        md += [f"This data has no {' and no '.join(missing)} window at threshold {thr:.3f}, so there is no such "
               "example.", ""]
    cache = {}
    n_done = 0
    y = binary_target(ws.label)
    for kind in KINDS:
        for i in picks[kind]:
            w = ws.windows[i]
            path = next(pth for pth in Path(data).rglob(w.recording)) if Path(data).is_dir() else Path(data)
            if w.recording not in cache:
                cache[w.recording] = condition_edf(open_edf(path), spec, allow_missing=allow_missing)
            cond = cache[w.recording]
            a = int(round(w.start_s * spec.sfreq_hz))
            eeg = cond[:, a:a + spec.n_samples]
            szs = [Seizure(a_, b_, w.recording) for a_, b_ in ws.recordings[w.recording][1]]
            seg = interp.explain_segments(cond, [w.start_s], szs)[0]
            n_done += 1
            stem = f"ex{n_done:02d}_{kind.replace(' ', '_')}"
            title = f"Example {n_done}: {kind} · {w.recording} {w.start_s:g}–{w.end_s:g} s · p = {seg.p:.3f}"
            ex = example_figures(interp, eeg, seg, out, stem, title)
            summary = plain_summary(ex["maps"]["gradcam"], spec, seg.occlusion, thr, start_s=w.start_s,
                                    gradcam_meaningful=interp.gradcam_meaningful,
                                    replaced_with=("the window's median channel"
                                                   if seg.baseline["kind"] == WITHIN_WINDOW_KIND
                                                   else "quiet baseline EEG"),
                                    muscle_like_channels=seg.muscle_like_channels, channel_veto=seg.channel_veto,
                                    frontopolar_delta_excess=seg.ocular.get("frontopolar_delta_excess"))
            summary, source = llm_rewrite(summary) if use_llm else (summary, "deterministic")
            band, region = seg.occlusion.top_cell()
            md += [f"### Example {n_done}: {kind}", "",
                   f"- true label: {'seizure' if y[i] else 'non-seizure'} ({100 * w.label:.0f} % of the window "
                   f"inside an annotated seizure)",
                   f"- prediction: {'seizure' if seg.p >= thr else 'non-seizure'} (threshold {thr:.3f})",
                   f"- p_seizure: {seg.p:.4f} (logit {seg.occlusion.logit:+.2f})",
                   f"- recording: `{path}` {w.start_s:g}–{w.end_s:g} s",
                   f"- occlusion: top region {seg.occlusion.top_regions(1)[0]}, strongest cell {band} in {region} "
                   f"(Δlogit {float(seg.joint.max()):+.2f}); " + (
                       f"Grad-CAM dominant band {seg.dominant_band}" if seg.dominant_band_source == "gradcam" else
                       f"band whose replacement lowers the logit most {seg.dominant_band} (Grad-CAM: "
                       + ("none, the ResNet adds nothing)" if not interp.gradcam_meaningful else "all zero here)")),
                   "- EMG-like derivations (power rising from 8–12 into 20–30 Hz, named, not removed): "
                   + (", ".join(seg.muscle_like_channels) or "none"),
                   *(["- derivations that look like seizure on their own (margin over the least seizure-like "
                      "training seizure): " + (seizure_like_text(seg.channel_veto) or
                                                f"none (evidence {seg.channel_veto['channel_evidence']:+.2f}: "
                                                f"the channel veto lowered the score)")]
                     if seg.channel_veto else []),
                   "- eye blinks or movements: " + (
                       eye_movement_text(seg.ocular["frontopolar_delta_excess"]) if seg.eye_movement_like else
                       "not measured (the montage lacks a frontopolar link on each side)"
                       if seg.ocular.get("frontopolar_delta_excess") is None else
                       "none (frontopolar delta under 3x the derivations behind them)"),
                   f"- occlusion baseline: {seg.baseline['kind']}" + (
                       f", {seg.baseline['start_s']:g}–{seg.baseline['end_s']:g} s" if "start_s" in seg.baseline else ""),
                   f"- Integrated Gradients completeness: Σ attributions {ex['maps']['ig_sum']:.3f} vs "
                   f"f(x) − f(baseline) {ex['maps']['ig_delta']:.3f} (logit)", "",
                   f"**Summary** ({source}): {summary}", "",
                   "Input (EEG, CWT power, model input):", "", f"![input]({ex['files']['triptych']})", "",
                   "Band × region matrices:", "", f"![matrices]({ex['files']['matrices']})", ""]
            if interp.gradcam_meaningful:
                md += ["Grad-CAM overlay:", "", f"![grad-cam]({ex['files']['gradcam']})", "",
                       "Grad-CAM++ overlay:", "", f"![grad-cam++]({ex['files']['gradcampp']})", ""]
            md += ["Integrated-Gradients triptych:", "", f"![ig]({ex['files']['ig']})", ""]
            log(f"example {n_done}: {kind} {w.recording} {w.start_s:g} s p={seg.p:.3f}")
    write_json({"threshold_applied": thr, "model_threshold": model_threshold, "on_data": on_data,
                "events_per_recording": events, "examples_missing": missing,
                "cross_validation_pooled": {k: v["pooled"] for k, v in cv.items()}}, out / "metrics.json")
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n")
    return report
