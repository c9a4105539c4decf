"""Figures shared by evaluation and reports (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_figure(confusion: dict, path: str | Path, title: str = "Window confusion matrix",
                            subtitle: str = "") -> Path:
    """2×2 confusion matrix with TN/FP/FN/TP quadrants, counts, row percentages and a colour bar."""
    m = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]], dtype=float)
    row = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, row, out=np.zeros_like(m), where=row > 0)
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=120)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    names = [["TN", "FP"], ["FN", "TP"]]
    for i in range(2):
        for j in range(2):
            colour = "white" if frac[i, j] > 0.55 else "black"
            ax.text(j, i, f"{names[i][j]}\n{int(m[i, j])}\n({100 * frac[i, j]:.1f}% of row)",
                    ha="center", va="center", color=colour, fontsize=11, fontweight="bold")
    ax.set_xticks([0, 1], ["predicted\nnon-seizure", "predicted\nseizure"])
    ax.set_yticks([0, 1], ["true\nnon-seizure", "true\nseizure"])
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("fraction of true class")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
