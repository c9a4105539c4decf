"""Figures the runtime writes at alert time (matplotlib, Agg; no torch)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .channels import REGIONS  # noqa: E402
from .features import BANDS_HZ  # noqa: E402

BAND_LABELS = [f"{b} {lo:g}–{hi:g} Hz" for b, (lo, hi) in BANDS_HZ.items()]
REGION_LABELS = ["frontal", "central", "parietal-\noccipital", "left\ntemporal", "right\ntemporal"]


def draw_matrix(ax, matrix: np.ndarray, title: str, vmax: float | None = None, cbar: bool = True):
    """A 5×5 band × region importance matrix with labelled axes and a colour bar."""
    im = ax.imshow(matrix, cmap="magma_r", vmin=0, vmax=vmax or max(float(np.max(matrix)), 1e-12), aspect="auto")
    ax.set_xticks(range(len(REGIONS)), REGION_LABELS, fontsize=7, rotation=35, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(BAND_LABELS)), BAND_LABELS, fontsize=7)
    ax.set_title(title, fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=6,
                    color="white" if v > 0.6 * im.get_clim()[1] else "black")
    if cbar:
        cb = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label("importance (FI × RI)", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    return im


def alert_explanation_figure(payload: dict, path: str | Path) -> Path:
    """Channel and region importance bars (occlusion), plus the 5×5 matrix when Grad-CAM ran."""
    ci = payload["channel_importance"]
    ri = payload["region_importance"]
    has_matrix = "matrix" in payload
    ncols = 3 if has_matrix else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.6), dpi=110,
                             gridspec_kw={"width_ratios": [1.4, 1] + ([1.3] if has_matrix else [])})
    labels = list(ci)
    vals = np.array([ci[k] for k in labels])
    order = np.argsort(vals)
    axes[0].barh(np.arange(len(labels)), vals[order], color="#c0392b")
    axes[0].set_yticks(np.arange(len(labels)), [labels[i] for i in order], fontsize=6)
    axes[0].set_xlabel("channel importance |Δp(seizure)| when occluded")
    axes[0].set_title("Channels (occlusion with the quietest preceding window)", fontsize=8)
    axes[1].bar(range(len(REGIONS)), [ri[r] for r in REGIONS], color="#2c7fb8")
    axes[1].set_xticks(range(len(REGIONS)), REGION_LABELS, fontsize=7)
    axes[1].set_ylabel("region importance (mean |Δp|)")
    axes[1].set_title("Scalp regions", fontsize=8)
    if has_matrix:
        draw_matrix(axes[2], np.asarray(payload["matrix"]), "Band × region (Grad-CAM FI ⊗ occlusion RI)")
    fig.suptitle(f"Alert #{payload['alert_id']} at LSL t = {payload['t_lsl']:.1f} s · p(seizure) = "
                 f"{payload['p']:.2f} · model {payload['model']} · top: {', '.join(payload['top_regions'])}",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def timeline_figure(t_s, p, threshold, seizures, alert_onsets_s, alert_offsets_s, path, title="") -> Path:
    """p(seizure) per window over time with the annotated seizure and the alerts."""
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    for i, (s, e) in enumerate(seizures):
        ax.axvspan(s, e, color="#f4a582", alpha=0.5, label="annotated seizure" if i == 0 else None)
    ax.plot(t_s, p, "-o", ms=2.5, color="#2166ac", label="p(seizure), window ending at t")
    ax.axhline(threshold, ls="--", color="grey", lw=1, label=f"threshold {threshold:.2f}")
    for i, a in enumerate(alert_onsets_s):
        ax.axvline(a, color="#b2182b", lw=2, label="alert onset" if i == 0 else None)
    for i, a in enumerate(alert_offsets_s):
        ax.axvline(a, color="#b2182b", lw=1, ls=":", label="alert closed" if i == 0 else None)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time in recording (s)")
    ax.set_ylabel("p(seizure)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m runtime.figures alert_001.json → alert_001.png
    import json
    import sys

    for arg in sys.argv[1:]:
        src = Path(arg)
        alert_explanation_figure(json.loads(src.read_text()), src.with_suffix(".png"))
