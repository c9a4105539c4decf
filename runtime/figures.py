"""Figures the runtime writes at alert time (matplotlib, Agg; no torch)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .artefacts import eye_movement_text  # noqa: E402
from .channels import REGIONS, seizure_like_text  # noqa: E402
from .features import BANDS_HZ  # noqa: E402

BAND_LABELS = [f"{b} {lo:g}–{hi:g} Hz" for b, (lo, hi) in BANDS_HZ.items()]
REGION_LABELS = ["frontal", "central", "parietal-\noccipital", "left\ntemporal", "right\ntemporal"]


def draw_matrix(ax, matrix: np.ndarray, title: str, vmax: float | None = None, cbar: bool = True,
                signed: bool = False, cbar_label: str = "importance (FI × RI)"):
    """A 5×5 band × region matrix with labelled axes, values in the cells and a colour bar.
    signed=True: diverging map symmetric around 0 (red = evidence for seizure); else sequential magma."""
    m = np.asarray(matrix, dtype=float)
    lim = vmax or max(float(np.max(np.abs(m))), 1e-12)
    if signed:
        im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    else:
        im = ax.imshow(m, cmap="magma_r", vmin=0, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(REGIONS)), REGION_LABELS, fontsize=7, rotation=35, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(BAND_LABELS)), BAND_LABELS, fontsize=7)
    ax.set_title(title, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = m[i, j]
            dark = abs(v) > 0.6 * lim
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=6, color="white" if dark else "black")
    if cbar:
        cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label(cbar_label, fontsize=7)
        cb.ax.tick_params(labelsize=6)
    return im


def draw_eeg(ax, t, traces, labels, scale_uv: float | None = None) -> float:
    """Stacked EEG traces, one `scale_uv` apart, with a vertical µV scale bar at the right."""
    traces = np.asarray(traces, dtype=float)
    if scale_uv is None:
        scale_uv = float(np.percentile(np.abs(traces), 99)) * 2 if traces.size else 0.0
    scale_uv = nice_uv(scale_uv or 1.0)
    for k, tr in enumerate(traces):
        ax.plot(t, tr / scale_uv - k, lw=0.5, color="black")
    ax.set_yticks(-np.arange(len(labels)), labels, fontsize=7)
    ax.set_ylim(-len(labels) + 0.3, 0.9)
    x = t[-1] + 0.01 * (t[-1] - t[0])
    ax.plot([x, x], [0.3, -0.7], color="#b2182b", lw=2, clip_on=False)  # exactly scale_uv tall
    ax.text(x, -0.2, f" {scale_uv:g} µV", fontsize=7, color="#b2182b", va="center", ha="left", clip_on=False)
    ax.set_xlim(t[0], x)
    return scale_uv


def nice_uv(v: float) -> float:
    """Round a scale up to 1, 2 or 5 × 10^k µV, as on an EEG reader's sensitivity selector."""
    k = 10 ** np.floor(np.log10(v))
    return float(next(m * k for m in (1, 2, 5, 10) if m * k >= v))


def _clock(wall_time: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_time)) if wall_time else "?"


def alert_explanation_figure(payload: dict, path: str | Path, eeg_path: str | Path | None = None,
                             n_traces: int = 6) -> Path:
    """The alerting window's EEG (most important channels, µV scale bar), per-channel Δlogit,
    the joint band × region occlusion matrix, and the method's FRI when Grad-CAM ran."""
    labels = list(payload["channel_dlogit"])
    dl = np.array([payload["channel_dlogit"][k] for k in labels])
    has_fri = "fri_matrix" in payload
    ncols = 3 if has_fri else 2
    fig = plt.figure(figsize=(5.2 * ncols, 8.4), dpi=110)
    gs = fig.add_gridspec(2, ncols, height_ratios=[1, 1.15], hspace=0.45, wspace=0.45)
    ax_eeg = fig.add_subplot(gs[0, :])
    # the most seizure-like derivations on their own (channel veto) fill up to half the traces
    seizure_like = payload.get("seizure_like_channels") or []
    first = [labels.index(c) for c in seizure_like[:n_traces // 2]]
    top = np.array(first + [c for c in np.argsort(-np.abs(dl)) if c not in first][:n_traces - len(first)])
    eeg_path = Path(eeg_path) if eeg_path else Path(path).with_suffix(".npz")
    t_end = payload.get("t_stream_s")
    if eeg_path.exists():
        with np.load(eeg_path) as z:
            eeg, sf = z["eeg_uv"], float(z["sfreq_hz"])
        t = np.arange(eeg.shape[1]) / sf + ((t_end - eeg.shape[1] / sf) if t_end is not None else 0.0)
        muscle = payload.get("muscle_like_channels") or []
        scale = draw_eeg(ax_eeg, t, eeg[top], [f"{labels[c]} (Δlogit {dl[c]:+.2f})"
                                               + (" · seizure-like alone" if labels[c] in seizure_like else "")
                                               + (" · EMG-like" if labels[c] in muscle else "") for c in top])
        ax_eeg.set_xlabel("time since the stream's first sample (s)" if t_end is not None else "time in window (s)")
        ax_eeg.set_title("Alerting 10-s window: "
                         + (f"the {len(first)} derivations most seizure-like on their own, then " if first else "")
                         + f"the channels whose occlusion moved the logit most (traces {scale:g} µV apart)"
                         + (f"\n{len(seizure_like)} of {len(labels)} derivations look like seizure on their own "
                            f"(margin over the least seizure-like training seizure): "
                            + seizure_like_text(payload) if seizure_like else "")
                         + (f"\npower rising from 8–12 into 20–30 Hz, the shape of scalp muscle (EMG), on "
                            f"{', '.join(muscle)}: read the traces" if muscle else "")
                         + ("\n" + eye_movement_text(payload["frontopolar_delta_excess"])
                            if payload.get("eye_movement_like") else ""), fontsize=8)
    else:
        ax_eeg.text(0.5, 0.5, f"EEG not saved ({eeg_path.name} missing)", ha="center", va="center")
        ax_eeg.axis("off")
    ax = fig.add_subplot(gs[1, 0])
    order = np.argsort(dl)
    ax.barh(np.arange(len(labels)), dl[order], color=np.where(dl[order] >= 0, "#b2182b", "#2166ac"))
    ax.set_yticks(np.arange(len(labels)), [labels[i] for i in order], fontsize=6)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("Δlogit when the channel is replaced by baseline\n(red: carried seizure evidence)", fontsize=7)
    ax.set_title("Channels (occlusion)", fontsize=8)
    draw_matrix(fig.add_subplot(gs[1, 1]), np.asarray(payload["joint_dlogit"]),
                "Joint band × region occlusion\n(each cell occluded on its own)", signed=True,
                cbar_label="Δlogit (red: evidence for seizure)")
    if has_fri:
        draw_matrix(fig.add_subplot(gs[1, 2]), np.asarray(payload["fri_matrix"]),
                    "Method's FRI = Grad-CAM FI ⊗ occlusion RI\n(rank 1: an outer product)",
                    cbar_label="FI (max 1) × RI (region Δlogit, negatives as 0)")
    where = f"t = {t_end:.1f} s into the stream" if t_end is not None else f"LSL t = {payload['t_lsl']:.1f} s"
    fig.suptitle(f"Alert #{payload['alert_id']} at {_clock(payload.get('wall_time'))} ({where}) · "
                 f"p(seizure) = {payload['p']:.3f} · model {payload['model']}\n"
                 f"top regions: {', '.join(payload['top_regions'])} · strongest cell: "
                 f"{' in '.join(payload['joint_top_cell'])}", fontsize=9)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def timeline_figure(t_s, p, threshold, seizures, alert_onsets_s, alert_offsets_s, path, title="",
                    duration_s: float | None = None, window_s: float = 10.0) -> Path:
    """p(seizure) per window over time from the recording's start, with the annotated seizure,
    the windows that end before it (pre-ictal) marked, the first window's span, and the alerts."""
    t_s, p = np.asarray(t_s, float), np.asarray(p, float)
    fig, ax = plt.subplots(figsize=(9, 3.4), dpi=110)
    for i, (s, e) in enumerate(seizures):
        ax.axvspan(s, e, color="#f4a582", alpha=0.5, label="annotated seizure" if i == 0 else None)
    ax.plot(t_s, p, "-o", ms=2.5, color="#2166ac", label="p(seizure), window ending at t")
    if seizures and len(t_s):
        pre = t_s <= min(s for s, _ in seizures)
        if pre.any():
            ax.plot(t_s[pre], p[pre], "s", ms=4, color="#e08214", label="window entirely before onset")
    if len(t_s):  # the first score needs a whole window: show what it covers
        ax.annotate("", xy=(t_s[0] - window_s, -0.08), xytext=(t_s[0], -0.08),
                    arrowprops={"arrowstyle": "|-|", "color": "grey", "lw": 1})
        ax.text(t_s[0] - window_s / 2, -0.06, "first window", fontsize=6, color="grey", ha="center", va="bottom")
    ax.axhline(threshold, ls="--", color="grey", lw=1, label=f"threshold {threshold:.2f}")
    for i, a in enumerate(alert_onsets_s):
        ax.axvline(a, color="#b2182b", lw=2, label="alert onset" if i == 0 else None)
    for i, a in enumerate(alert_offsets_s):
        ax.axvline(a, color="#b2182b", lw=1, ls=":", label="alert closed" if i == 0 else None)
    ax.set_ylim(-0.12, 1.02)
    ax.set_xlim(0, duration_s if duration_s else (t_s[-1] if len(t_s) else 1.0))
    ax.set_xlabel("time since the recording's start (s)")
    ax.set_ylabel("p(seizure)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m ictal.runtime.figures alert_001.json → alert_001.png
    import json
    import sys

    for arg in sys.argv[1:]:
        src = Path(arg)
        alert_explanation_figure(json.loads(src.read_text()), src.with_suffix(".png"))
