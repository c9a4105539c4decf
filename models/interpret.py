"""The frequency × region interpretation method, per 10-s segment and over seizures.

Per segment: Grad-CAM on the last residual block → time-frequency importance
FTI (raw, and normalised for display); FI per band = mean over time, then over
each band's frequencies. Occlusion with a baseline (the quietest 10-s window in
the 60 s before the segment), all in one batch (runtime.occlusion): CI_j =
|Δlogit| when channel j is replaced, RI = Δlogit when the whole region is
replaced, and the method's FRI = FI_rel ⊗ max(RI, 0) (FI_rel: largest band = 1),
which is rank 1 by construction.
Beside it, the joint matrix J[band, region] = Δlogit when only that band of that
region's channels is replaced: the band × region matrix that can say "theta on
the left, alpha on the right".
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from ictal.runtime.annotations import Seizure, seizures_for_file
from ictal.runtime.artefacts import muscle_channels, ocular_reading
from ictal.runtime.channels import REGIONS, unique_labels
from ictal.runtime.edf import open_edf
from ictal.runtime.errors import DataError
from ictal.runtime.features import BANDS_HZ, CWTransform
from ictal.runtime.occlusion import WITHIN_WINDOW_KIND, Occlusion, band_region_matrix, baseline_log_power, occlude
from ictal.runtime.scorer import seizure_like_channels
from ictal.runtime.windows import Window, condition_edf

from .data import rejection_reasons
from .explain import GradCAM, band_importance, relative
from .resnet import (channel_evidence, has_band_limited_fallback, has_channel_veto, inference_logits,
                     regression_logits, resnet_contributes)
from .train import load_checkpoint


def flat_channel_guard(model) -> dict | None:
    """The summary branch's flat-channel limit and ramp (decades), as the ONNX metadata carries it."""
    summary = getattr(model, "summary", None)
    if summary is None or summary.flat_channel_log10 is None:
        return None
    return {"limit_log10": float(summary.flat_channel_log10), "ramp_log10": float(summary.flat_channel_ramp_log10)}


def band_limited_fallback(model) -> dict | None:
    """The limit and ramp (decades of top-band drop) at which the summary branch hands a window to its
    gamma-free regression, as the ONNX metadata carries it; None for a model without one."""
    if not has_band_limited_fallback(model):
        return None
    return {"limit_log10": model.summary.band_limited_log10, "ramp_log10": model.summary.band_limited_ramp_log10}


class TorchScorer:
    """The runtime's scorer interface (predict_proba over normalised batches) on a torch model."""

    def __init__(self, model, batch_size: int = 64):
        self.model, self.batch_size = model.eval(), batch_size

    @torch.no_grad()
    def _in_batches(self, fn, x: np.ndarray) -> list:
        """fn(tensor of at most batch_size windows) for each batch of x, in order."""
        x = np.asarray(x, np.float32)
        x = x[None] if x.ndim == 3 else x
        return [fn(torch.as_tensor(x[i:i + self.batch_size])) for i in range(0, len(x), self.batch_size)]

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        logits = self._in_batches(lambda b: inference_logits(self.model, b), x)
        return np.concatenate([z.numpy() for z in logits]).astype(np.float64)

    @property
    def has_regression_outputs(self) -> bool:
        return has_band_limited_fallback(self.model)

    def predict_regressions(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(full logit, gamma-free logit, band-limited weight), as the ONNX scorer's."""
        parts = self._in_batches(lambda b: regression_logits(self.model, b), x)
        full, gamma_free, weight = (np.concatenate([p[k].numpy() for p in parts]).astype(np.float64) for k in range(3))
        return full, gamma_free, weight

    def predict_channel_evidence(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(per-derivation margins over the channel veto's floor, pooled evidence), as the ONNX
        scorer's; None without a veto."""
        if not has_channel_veto(self.model):
            return None
        parts = self._in_batches(lambda b: channel_evidence(self.model, b), x)
        return tuple(np.concatenate([p[k].numpy() for p in parts]).astype(np.float64) for k in range(2))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.predict_logits(x)))


@dataclasses.dataclass
class SegmentExplanation:
    start_s: float
    end_s: float
    seizure_overlap: float
    fi: dict  # raw Grad-CAM importance per band
    fi_rel: dict  # largest band = 1
    occlusion: Occlusion
    fti_raw: np.ndarray  # (n_freqs, n_columns)
    baseline: dict
    # derivations whose power rises from 8-12 into 20-30 Hz like scalp muscle: named, never removed
    muscle_like_channels: list = dataclasses.field(default_factory=list)
    # why the monitor would not score this segment (flat or saturated channels), None where it would
    unscorable: str | None = None
    bad_channels: int = 0
    # the channel veto's reading (`runtime.scorer.seizure_like_channels`); {} for a model without one
    channel_veto: dict = dataclasses.field(default_factory=dict)
    # eye blinks or movements (`runtime.artefacts.ocular_reading`): frontopolar_delta_excess, eye_movement_like
    ocular: dict = dataclasses.field(default_factory=dict)

    @property
    def eye_movement_like(self) -> bool:
        return bool(self.ocular.get("eye_movement_like"))

    @property
    def p(self) -> float:
        return self.occlusion.p

    @property
    def ci(self) -> np.ndarray:
        return self.occlusion.ci

    @property
    def ri(self) -> dict:
        return self.occlusion.region_importance()

    @property
    def matrix(self) -> np.ndarray:
        """The method's FRI = FI_rel ⊗ RI."""
        return band_region_matrix(self.fi_rel, self.ri)

    @property
    def joint(self) -> np.ndarray:
        """Joint band × region occlusion, Δlogit."""
        return self.occlusion.joint_dlogit

    @property
    def dominant_band_source(self) -> str:
        return dominant_band([self])[1]

    @property
    def dominant_band(self) -> str:
        return dominant_band([self])[0]

    @property
    def dominant_region(self) -> str:
        return max(self.ri, key=self.ri.get)

    def to_json(self) -> dict:
        return {"start_s": self.start_s, "end_s": self.end_s, "p_seizure": round(self.p, 6),
                "seizure_overlap": round(self.seizure_overlap, 3), "band_importance_raw": self.fi,
                "band_importance": self.fi_rel, **self.occlusion.to_json(),
                "fri_matrix": np.round(self.matrix, 8).tolist(),
                "dominant_band": self.dominant_band, "dominant_band_source": self.dominant_band_source,
                "dominant_region": self.dominant_region,
                "baseline": self.baseline, "muscle_like_channels": self.muscle_like_channels,
                "unscorable": self.unscorable, "bad_channels": self.bad_channels, **self.channel_veto,
                **self.ocular}


def dominant_band(segs: list[SegmentExplanation]) -> tuple[str, str]:
    """(band, source) over segments: Grad-CAM's strongest band on average, or, where Grad-CAM says
    nothing (all zero: a dead map, or a hybrid whose ResNet adds nothing, as the shipped model's),
    the band whose replacement lowers the logit most on average ("occlusion")."""
    if any(max(s.fi_rel.values(), default=0.0) > 0 for s in segs):
        return max(BANDS_HZ, key=lambda b: np.mean([s.fi_rel[b] for s in segs])), "gradcam"
    return max(BANDS_HZ, key=lambda b: np.mean([s.occlusion.band_importance()[b] for s in segs])), "occlusion"


class Interpreter:
    """Explains segments of recordings with one checkpoint."""

    def __init__(self, checkpoint: str | Path, cam_layer: str = "layer4"):
        self.model, self.spec, self.threshold, self.meta = load_checkpoint(checkpoint)
        self.name = Path(checkpoint).stem
        self.transform = CWTransform(self.spec)
        # The method's layer is the last residual block (layer4). On the compact 40-frequency
        # grid its map has only 2-3 frequency rows; layer3/layer2 resolve bands better.
        self.cam_layer = cam_layer
        self.cam = GradCAM(self.model, getattr(self.model, cam_layer))
        self.scorer = TorchScorer(self.model)
        # False for a hybrid whose ResNet adds nothing: its Grad-CAM maps (and the FRI) are zero
        self.gradcam_meaningful = resnet_contributes(self.model)

    def _baseline(self, data: np.ndarray, start: int, seizures: list[Seizure], lookback_s: float = 60.0):
        """Quietest 10-s window ending by `start`, within the lookback; else the quietest seizure-free
        window of the recording; else None (the window's own median channel is used)."""
        sf, n = self.spec.sfreq_hz, self.spec.n_samples
        hop = int(sf)

        def free(s):
            a, b = s / sf, (s + n) / sf
            return not any(sz.start_s < b and sz.end_s > a for sz in seizures)

        cands = [s for s in range(max(0, start - int(lookback_s * sf)), start - n + 1, hop) if free(s)]
        kind = "quietest window in the 60 s before"
        if not cands:
            cands = [s for s in range(0, data.shape[1] - n + 1, hop) if free(s) and (s + n <= start or s >= start + n)]
            kind = "quietest seizure-free window of the recording (too little EEG before)"
        if not cands:
            return None, {"kind": WITHIN_WINDOW_KIND}
        powers = [float(np.mean(data[:, s:s + n] ** 2)) for s in cands]
        s = cands[int(np.argmin(powers))]
        return data[:, s:s + n], {"kind": kind, "start_s": s / sf, "end_s": (s + n) / sf,
                                  "mean_power_uv2": round(min(powers), 3)}

    def explain_segments(self, data: np.ndarray, starts_s, seizures: list[Seizure],
                         quality: tuple[list[str], list] | None = None, force: bool = False
                         ) -> list[SegmentExplanation]:
        """data : (n_channels, n_times) conditioned EEG of one recording; one explanation per start.

        quality: (zero-filled channels, per-second quality) from `condition_edf`; with it each
        segment says whether the monitor would score it (`unscorable`): an explanation of EEG the
        monitor rejects (half a headbox off) explains the artefact, not the brain."""
        sf, n = self.spec.sfreq_hz, self.spec.n_samples
        labels = unique_labels(self.spec.channels)
        reasons, n_bad = [None] * len(starts_s), np.zeros(len(starts_s), int)
        if quality is not None:
            segments = [Window(float(t), float(t) + self.spec.window_s, 0.0, "", "", "") for t in starts_s]
            reasons, n_bad = rejection_reasons(segments, quality[0], quality[1], self.spec, force=force)
        out = []
        for start_s, reason, bad in zip(starts_s, reasons, n_bad):
            i = int(round(start_s * sf))
            log_power = self.transform.log_power(data[:, i:i + n])
            base, base_info = self._baseline(data, i, seizures)
            occ = occlude(self.scorer, self.spec, log_power,
                          baseline_log_power(self.transform, self.spec, log_power, base,
                                             flat_channel_guard(self.model)))
            fti = self.cam.attribute(self.spec.normalise(log_power))[0]
            fi = band_importance(fti, self.spec)
            end_s = start_s + self.spec.window_s
            ov = sum(max(0.0, min(end_s, sz.end_s) - max(start_s, sz.start_s)) for sz in seizures) / self.spec.window_s
            muscle = [labels[c] for c in muscle_channels(log_power, self.spec.freqs_hz)]
            veto = seizure_like_channels(self.scorer, self.spec.normalise(log_power), labels)
            out.append(SegmentExplanation(float(start_s), float(end_s), ov, fi, relative(fi), occ, fti, base_info,
                                          muscle, reason, int(bad), veto,
                                          ocular_reading(log_power, self.spec.freqs_hz, self.spec.channels)))
        return out

    def condition(self, edf: str | Path, allow_missing: int = 0):
        """(recording, conditioned EEG, (zero-filled channels, per-second quality)) of an EDF."""
        rec = open_edf(edf)
        zero_filled: list[str] = []
        quality: list = []
        data = condition_edf(rec, self.spec, allow_missing=allow_missing, model_name=self.name,
                             zero_filled=zero_filled, quality_seconds=quality)
        return rec, data, (zero_filled, quality)

    def explain_file(self, edf: str | Path, start_s: float, end_s: float, allow_missing: int = 0,
                     force: bool = False):
        seizures = seizures_for_file(edf)
        rec, data, quality = self.condition(edf, allow_missing)
        dur = data.shape[1] / self.spec.sfreq_hz
        end_s = min(end_s, dur)
        if end_s - start_s < self.spec.window_s:
            raise DataError(f"{edf}: --start {start_s:g} --end {end_s:g} is shorter than one "
                             f"{self.spec.window_s:g}-s segment (recording is {dur:g} s)")
        starts = np.arange(start_s, end_s - self.spec.window_s + 1e-9, self.spec.window_s)
        return rec, data, seizures, self.explain_segments(data, starts, seizures, quality, force)


def write_explanation(interp: Interpreter, edf, rec, data, seizures, segs, out_dir: str | Path) -> dict:
    """explanation.json, explanation_maps.npz (raw and displayed FTI), matrices.png, local_interpretation.png."""
    from .figures import local_interpretation_figure, matrices_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"model": interp.name, "file": str(edf), "threshold": interp.threshold,
           "seizures": [(s.start_s, s.end_s) for s in seizures],
           "segments": [s.to_json() for s in segs],
           "method": "FI: Grad-CAM (last residual block), mean over time then over band; CI: occlusion with "
                     "the quietest preceding 10-s window (without seizure-free EEG, the window's own "
                     "median channel), |dlogit|; RI: dlogit when the whole region is replaced; "
                     "fri_matrix = FI_rel x max(RI, 0) "
                     "(rank 1); joint_dlogit[band][region] = logit drop when only that band of that region's "
                     "channels is taken from the baseline"}
    (out / "explanation.json").write_text(json.dumps(doc, indent=2) + "\n")
    raw = np.stack([s.fti_raw for s in segs])
    np.savez_compressed(out / "explanation_maps.npz", fti_raw=raw,
                        fti_display=GradCAM.normalise(raw), starts_s=[s.start_s for s in segs],
                        freqs_hz=np.asarray(interp.spec.freqs_hz))
    matrices_figure([s.joint for s in segs], [s.matrix for s in segs] if interp.gradcam_meaningful else None,
                    [f"{s.start_s:g}–{s.end_s:g} s · p={s.p:.2f}" for s in segs], out / "matrices.png",
                    f"{Path(edf).name} · band × region importance per 10-s segment")
    local_interpretation_figure(interp, Path(edf).name, data, seizures, segs, out / "local_interpretation.png")
    return doc


def global_interpretation(interp: Interpreter, data_dir: str | Path, out_dir: str | Path,
                          allow_missing: int = 0, log=print, force: bool = False) -> dict:
    """Mean (and std) joint occlusion matrix and FRI over the seizure segments of every seizure,
    per patient and overall.

    Each seizure contributes its non-overlapping 10-s segments from onset that lie ≥ 50 % inside it,
    but for those the monitor would not score (flat or saturated channels); a seizure left with
    none is named and left out.
    """
    from ictal.runtime.annotations import find_labelled_recordings

    from .figures import matrices_figure

    per_patient: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    rows, skipped = [], []
    for lr in find_labelled_recordings(data_dir):
        if not lr.seizures:
            continue
        _, data, quality = interp.condition(lr.path, allow_missing)
        dur = data.shape[1] / interp.spec.sfreq_hz
        for sz in lr.seizures:
            starts = [t for t in np.arange(sz.start_s, sz.end_s, interp.spec.window_s)
                      if t + interp.spec.window_s <= dur and min(sz.end_s, t + 10) - t >= 5]
            if not starts and sz.end_s - sz.start_s > 0 and dur >= interp.spec.window_s:
                starts = [min(sz.start_s, dur - interp.spec.window_s)]
            explained = interp.explain_segments(data, starts, lr.seizures, quality, force)
            segs = [s for s in explained if s.unscorable is None]
            if not segs:
                skipped.append(sz.seizure_id)
                log(f"{sz.seizure_id}: left out, the monitor would score none of its {len(explained)} segment(s) "
                    f"({explained[0].unscorable}: {max(s.bad_channels for s in explained)} channels)")
                continue
            joint, fri = np.mean([s.joint for s in segs], axis=0), np.mean([s.matrix for s in segs], axis=0)
            per_patient.setdefault(lr.patient, []).append((joint, fri))
            rows.append({"seizure": sz.seizure_id, "patient": lr.patient, "segments": len(segs),
                         "segments_unscorable": len(explained) - len(segs),
                         "mean_p": float(np.mean([s.p for s in segs])), "joint_dlogit": joint.round(6).tolist(),
                         "fri_matrix": fri.round(8).tolist(),
                         **dict(zip(("dominant_band", "dominant_band_source"), dominant_band(segs)))})
            log(f"{sz.seizure_id}: {len(segs)} segment(s), mean p {rows[-1]['mean_p']:.2f}"
                + (f" ({len(explained) - len(segs)} not scorable, left out)" if len(explained) > len(segs) else ""))
    if not rows:
        raise DataError(f"{data_dir}: no seizures to interpret"
                        + (f" (the monitor would score none of the segments of {', '.join(skipped)})" if skipped else ""))

    def stats(pairs):
        j, f = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
        return {"n_seizures": len(pairs), "joint_mean": j.mean(0).tolist(), "joint_std": j.std(0).tolist(),
                "fri_mean": f.mean(0).tolist(), "fri_std": f.std(0).tolist()}

    every = [pair for v in per_patient.values() for pair in v]
    doc = {"model": interp.name, "data": str(data_dir), "n_seizures": len(rows),
           "seizures_left_out_unscorable": skipped, "overall": stats(every),
           "per_patient": {p: stats(v) for p, v in per_patient.items()},
           "seizures": rows, "matrix_axes": {"rows": list(BANDS_HZ), "columns": list(REGIONS)}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "global_interpretation.json").write_text(json.dumps(doc, indent=2) + "\n")
    # overall, then the patients with the most seizures (a figure of 30 columns is unreadable)
    shown = sorted(per_patient, key=lambda p: -len(per_patient[p]))[:4]
    panels = [("all patients", doc["overall"])] + [(p, doc["per_patient"][p]) for p in shown]
    matrices_figure([d["joint_mean"] for _, d in panels],
                    [d["fri_mean"] for _, d in panels] if interp.gradcam_meaningful else None,
                    [f"{name} ({d['n_seizures']} seizures)" for name, d in panels], out / "global_interpretation.png",
                    f"Global interpretation · model {interp.name} · mean over seizures (± std); "
                    f"{len(shown)} of {len(per_patient)} patients shown, all in global_interpretation.json",
                    joint_stds=[d["joint_std"] for _, d in panels],
                    fri_stds=[d["fri_std"] for _, d in panels] if interp.gradcam_meaningful else None)
    return doc
