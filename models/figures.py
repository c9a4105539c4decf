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


# ---------------------------------------------------------------- interpretation figures
from ictal.runtime.channels import unique_labels  # noqa: E402
from ictal.runtime.figures import draw_eeg, draw_matrix  # noqa: E402

JOINT_LABEL = "joint occlusion Δlogit (red: evidence for seizure)"
FRI_LABEL = "method's FRI = FI (max 1) × RI (region Δlogit, negatives as 0)"


def matrices_figure(joints, fris, titles, path, suptitle: str, joint_stds=None, fri_stds=None) -> Path:
    """Per panel column: the joint band × region occlusion matrix (top row) and the method's
    FRI (bottom row; left out when `fris` is None: a model without a Grad-CAM map has no FRI).
    Each matrix has its own colour scale: a shared one blanks the weak panels."""
    n = len(joints)
    rows = [(joints, joint_stds, True, JOINT_LABEL)]
    if fris is not None:
        rows.append((fris, fri_stds, False, FRI_LABEL))
    fig, axes = plt.subplots(len(rows), n, figsize=(3.9 * n + 0.6, 3.6 * len(rows)), dpi=110, squeeze=False)
    for k in range(n):
        for row, (mats, stds, signed, label) in enumerate(rows):
            ax = axes[row, k]
            draw_matrix(ax, np.asarray(mats[k]), (titles[k] + "\n" if row == 0 else "") +
                        ("joint band × region occlusion" if row == 0 else "method's FRI (rank 1)"),
                        signed=signed, cbar_label=label if k == n - 1 else "")
            if stds is not None:
                for i in range(5):
                    for j in range(5):
                        ax.text(j, i + 0.32, f"±{stds[k][i][j]:.1g}", ha="center", va="center", fontsize=5,
                                color="grey")
            if k:
                ax.set_yticklabels([])
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def local_interpretation_figure(interp, name: str, data: np.ndarray, seizures, segs, path, n_channels: int = 6):
    """The method's local interpretation: EEG of the most important channels with true and predicted
    seizure intervals, the time-frequency power, the Grad-CAM map, and the joint occlusion matrix
    under each segment."""
    spec = interp.spec
    sf = spec.sfreq_hz
    t0, t1 = segs[0].start_s, segs[-1].end_s
    i0, i1 = int(t0 * sf), int(t1 * sf)
    mean_ci = np.mean([s.ci for s in segs], axis=0)
    top = np.argsort(mean_ci)[::-1][:n_channels]
    labels = unique_labels(spec.channels)
    n = len(segs)
    fig = plt.figure(figsize=(max(10, 2.4 * n + 2), 11), dpi=110)
    gs = fig.add_gridspec(4, n, height_ratios=[2.2, 1.3, 1.3, 1.6], hspace=0.45, wspace=0.15)
    ax_eeg = fig.add_subplot(gs[0, :])
    t = np.arange(i0, i1) / sf
    # a derivation that looks like scalp muscle in some segments says so beside its trace
    muscle = {label: sum(label in s.muscle_like_channels for s in segs) for label in labels}
    scale = draw_eeg(ax_eeg, t, data[top, i0:i1],
                     [f"{labels[c]} (|Δlogit| {mean_ci[c]:.2g})"
                      + (f" · EMG-like in {muscle[labels[c]]}/{n}" if muscle[labels[c]] else "") for c in top])
    for sz in seizures:
        if sz.end_s > t0 and sz.start_s < t1:
            ax_eeg.axvspan(max(sz.start_s, t0), min(sz.end_s, t1), color="#f4a582", alpha=0.35, lw=0)
    for s in segs:
        if s.unscorable:  # the monitor would not score it: no prediction to draw
            ax_eeg.axvspan(s.start_s, s.end_s, facecolor="none", edgecolor="grey", hatch="//", lw=0)
        elif s.p >= interp.threshold:
            ax_eeg.plot([s.start_s, s.end_s], [0.75, 0.75], color="#b2182b", lw=5, solid_capstyle="butt")
        ax_eeg.axvline(s.start_s, color="grey", lw=0.5, ls=":")
    ax_eeg.set_xlabel("time in recording (s)")
    from matplotlib.patches import Patch
    handles = [Patch(color="#f4a582", alpha=0.5, label="annotated seizure (true)"),
               Patch(color="#b2182b", label=f"predicted seizure (p ≥ {interp.threshold:.2f})")]
    if any(s.unscorable for s in segs):
        handles.append(Patch(facecolor="none", edgecolor="grey", hatch="//",
                             label="not scorable: flat or saturated channels (the monitor rejects it)"))
    ax_eeg.legend(handles=handles, fontsize=7, loc="upper right", ncol=len(handles))
    named = [label for label, k in muscle.items() if k]
    eyes = [s for s in segs if s.eye_movement_like]
    ax_eeg.set_title(f"{name} · EEG of the {len(top)} most important channels (occlusion, mean |Δlogit|) · "
                     f"traces {scale:g} µV apart"
                     + (f"\npower rising from 8–12 into 20–30 Hz, the shape of scalp muscle (EMG), on "
                        f"{', '.join(named)}: read the traces" if named else "")
                     + (f"\neye blinks or movements in {len(eyes)}/{n} segments (frontopolar delta up to "
                        f"{10 ** max(s.ocular['frontopolar_delta_excess'] for s in eyes):.1f}x the derivations "
                        f"behind them; a frontal discharge can reach it too): evidence against seizure to the "
                        f"model" if eyes else ""), fontsize=9)
    freqs = np.asarray(spec.freqs_hz)
    power = np.concatenate([interp.transform.log_power(data[:, int(s.start_s * sf): int(s.start_s * sf) +
                                                             spec.n_samples]).mean(axis=0) for s in segs], axis=1)
    cams = np.concatenate([s.fti_raw / (s.fti_raw.max() or 1.0) for s in segs], axis=1)
    extent = [t0, t1, freqs[0], freqs[-1]]
    ax_p = fig.add_subplot(gs[1, :])
    im = ax_p.imshow(power, aspect="auto", origin="lower", extent=extent, cmap="viridis")
    ax_p.set_ylabel("frequency (Hz)")
    ax_p.set_title("time-frequency power (CWT, mean over channels)", fontsize=9)
    fig.colorbar(im, ax=ax_p, fraction=0.02, pad=0.01).set_label("log10 µV²", fontsize=7)
    ax_c = fig.add_subplot(gs[2, :])
    if interp.gradcam_meaningful:
        im = ax_c.imshow(cams, aspect="auto", origin="lower", extent=extent, cmap="inferno", vmin=0, vmax=1)
        ax_c.set_title(f"Grad-CAM ({interp.cam_layer}) time-frequency importance (each segment scaled to its "
                       f"maximum)", fontsize=9)
        fig.colorbar(im, ax=ax_c, fraction=0.02, pad=0.01).set_label("relative importance", fontsize=7)
    else:
        # a black Grad-CAM map would read as "no band mattered": show what occlusion says per band instead
        rows = [np.flatnonzero(m) for m in spec.band_slices().values()]
        bands = np.zeros((len(freqs), cams.shape[1]))
        width = cams.shape[1] // len(segs)
        for k, seg in enumerate(segs):
            for r, value in zip(rows, seg.occlusion.band_importance().values()):
                # a segment the monitor rejects is left grey: its Δlogits (tens, from flat channels)
                # would set the scale and wash out the segments that mean something
                bands[r, k * width:(k + 1) * width] = np.nan if seg.unscorable else value
        lim = float(np.nanmax(np.abs(bands), initial=0.0)) or 1.0
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="lightgrey")
        im = ax_c.imshow(bands, aspect="auto", origin="lower", extent=extent, cmap=cmap, vmin=-lim, vmax=lim)
        ax_c.set_title("Δlogit when each band is replaced on every channel (occlusion; red = evidence for "
                       "seizure). No Grad-CAM: this model's ResNet adds nothing to its score", fontsize=9)
        fig.colorbar(im, ax=ax_c, fraction=0.02, pad=0.01).set_label("Δlogit", fontsize=7)
    ax_c.set_ylabel("frequency (Hz)")
    ax_c.set_xlabel("time in recording (s)")
    for ax in (ax_p, ax_c):
        ax.set_xlim(t0, t1)
        for edge in (4, 8, 14, 30):
            ax.axhline(edge, color="white", lw=0.4, ls="--")
        for s in segs:
            ax.axvline(s.start_s, color="white", lw=0.6)
    for k, s in enumerate(segs):
        ax = fig.add_subplot(gs[3, k])
        draw_matrix(ax, s.joint, f"{s.start_s:g}–{s.end_s:g} s · p={s.p:.2f}"
                    + (f"\nNOT SCORABLE: {s.bad_channels} bad channels" if s.unscorable else ""),
                    signed=True, cbar=False)
        if k:
            ax.set_yticklabels([])
        ax.tick_params(labelsize=6)
    fig.suptitle(f"Local interpretation · model {interp.name} · bottom: joint band × region occlusion "
                 f"(Δlogit, red = evidence for seizure, each matrix on its own scale)", fontsize=10)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
