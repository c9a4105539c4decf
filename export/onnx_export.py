"""torch → ONNX with the feature spec, threshold and weights' SHA-256 in
metadata_props; onnx.checker; a parity check against torch on real windows;
optional static int8 (QDQ) quantisation."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import torch

from ictal.models.train import load_checkpoint
from ictal.runtime.errors import ModelError
from ictal.runtime.scorer import (CHANNEL_OUTPUTS, META_GRAPH, REGRESSION_OUTPUTS, Scorer, file_sha256, metadata_json,
                                  onnx_graph_sha256)

PARITY_TOL = 1e-4


class SummaryBranchLogit(torch.nn.Module):
    """A hybrid whose ResNet adds nothing (`resnet_contributes` is False), as the function it
    computes: the summary branch on the input's log power. Exporting this instead of the whole
    network gives the same logits without the dead ResNet's time and memory at the bedside."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.summary(self.model.log_power(x))


class LogitAndRegressions(torch.nn.Module):
    """A model with a band-limited fallback and/or a channel veto: its logit, then the two
    regressions and the weight that blends them (`REGRESSION_OUTPUTS`), so that occlusion can hold
    the weight at the window's own, then each derivation's margin over the veto's floor and their
    pooled evidence (`CHANNEL_OUTPUTS`), so that an explanation can name the derivations that look
    like seizure on their own."""

    def __init__(self, model, with_resnet: bool, regressions: bool, channels: bool):
        super().__init__()
        self.model, self.with_resnet = model, with_resnet
        self.regressions, self.channels = regressions, channels

    def forward(self, x):
        from ictal.models.resnet import channel_evidence, regression_logits

        if self.regressions:
            full, gamma_free, weight = regression_logits(self.model, x, self.with_resnet)
            out = (full + weight * (gamma_free - full), full, gamma_free, weight)
        else:
            out = (self.model(x) if self.with_resnet else self.model.summary(self.model.log_power(x)),)
        return out + (channel_evidence(self.model, x) if self.channels else ())


def export_onnx(checkpoint: str | Path, output: str | Path, opset: int = 17) -> Path:
    from ictal.models.interpret import band_limited_fallback, flat_channel_guard
    from ictal.models.resnet import has_band_limited_fallback, has_channel_veto, resnet_contributes

    model, spec, threshold, meta = load_checkpoint(checkpoint)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, *spec.input_shape)
    contributes = resnet_contributes(model)
    graph = "whole network" if contributes else "summary branch only (the ResNet adds nothing)"
    regressions, channels = has_band_limited_fallback(model), has_channel_veto(model)
    if regressions or channels:
        exported = LogitAndRegressions(model, contributes, regressions, channels).eval()
        outputs = ["logit", *(REGRESSION_OUTPUTS if regressions else ()), *(CHANNEL_OUTPUTS if channels else ())]
    else:
        exported, outputs = (model if contributes else SummaryBranchLogit(model).eval()), ["logit"]
    torch.onnx.export(exported, (dummy,), str(output), input_names=["cwt"], output_names=outputs,
                      dynamic_axes={"cwt": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                      opset_version=opset, dynamo=False)
    proto = onnx.load(str(output))
    name = Path(checkpoint).stem
    for k, v in metadata_json(spec, threshold, meta["weights_sha256"], name, Path(checkpoint).name,
                                meta.get("classical_peers"), flat_channel_guard(model),
                                band_limited_fallback(model)).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    entry = proto.metadata_props.add()
    entry.key, entry.value = "ictal.graph", graph
    proto.producer_name = "ictal"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(output))
    return stamp_graph_hash(output)


def stamp_graph_hash(path: str | Path) -> Path:
    """Write the SHA-256 of the file's graph (nodes + weights) into its metadata; the
    runtime refuses a model whose graph no longer matches it."""
    path = Path(path)
    proto = onnx.load(str(path))
    for i in reversed(range(len(proto.metadata_props))):
        if proto.metadata_props[i].key == META_GRAPH:
            del proto.metadata_props[i]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_GRAPH, onnx_graph_sha256(path.read_bytes(), str(path))
    onnx.save(proto, str(path))
    if onnx_graph_sha256(path.read_bytes(), str(path)) != entry.value:  # the graph must serialise the same
        raise ModelError(f"{path}: the graph changed when its metadata was written; cannot stamp its hash")
    return path


def parity_check(checkpoint: str | Path, onnx_path: str | Path, x: np.ndarray) -> dict:
    """Max |Δlogit| between torch and ONNX Runtime on the same normalised windows.

    x : ndarray, shape (n_windows, n_channels, n_freqs, n_columns), normalised features.
    """
    model, spec, _, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        ref = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    got = Scorer(onnx_path).predict_logits(x)
    diff = float(np.max(np.abs(ref - got))) if len(x) else 0.0
    pref, pgot = 1 / (1 + np.exp(-ref)), 1 / (1 + np.exp(-got))
    result = {"n_windows": int(len(x)), "max_abs_logit_diff": diff,
              "max_abs_prob_diff": float(np.max(np.abs(pref - pgot))) if len(x) else 0.0}
    if diff > PARITY_TOL:
        raise ModelError(f"{onnx_path}: ONNX and torch disagree by {diff:.2e} in logit on {len(x)} windows "
                         f"(tolerance {PARITY_TOL:g})")
    return result


def quantize_int8(onnx_path: str | Path, output: str | Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) of the ResNet's convolutions, calibrated on
    real windows. The rest stays float: a hybrid's summary branch (a log-sum-exp of band powers into a
    30-weight regression) loses up to 0.25 in p when its activations are int8."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"cwt": calibration[i:i + 1].astype(np.float32)} for i in range(len(calibration)))

        def get_next(self):
            return next(self.it, None)

    output = Path(output)
    pre = output.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre))
    quantize_static(str(pre), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    pre.unlink(missing_ok=True)
    # carry the metadata over: the runtime needs the spec
    src, dst = onnx.load(str(onnx_path)), onnx.load(str(output))
    del dst.metadata_props[:]
    for p in src.metadata_props:
        e = dst.metadata_props.add()
        e.key, e.value = p.key, p.value
    onnx.save(dst, str(output))
    return stamp_graph_hash(output)  # its own graph, not the fp32 one


def time_scorer(path: str | Path, x: np.ndarray, repeats: int = 30) -> float:
    """Median seconds of one batch-1 ONNX call."""
    s = Scorer(path, threads=1)
    s.predict_logits(x[:1])
    t = []
    for i in range(repeats):
        t0 = time.perf_counter()
        s.predict_logits(x[i % len(x): i % len(x) + 1])
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def compare_int8(fp32: str | Path, int8: str | Path, x: np.ndarray) -> dict:
    a, b = Scorer(fp32), Scorer(int8)
    pa, pb = a.predict_proba(x), b.predict_proba(x)
    return {"fp32_bytes": Path(fp32).stat().st_size, "int8_bytes": Path(int8).stat().st_size,
            "fp32_ms": 1e3 * time_scorer(fp32, x), "int8_ms": 1e3 * time_scorer(int8, x),
            "max_abs_prob_diff": float(np.max(np.abs(pa - pb))),
            "decision_flips": int(np.sum((pa >= a.threshold) != (pb >= a.threshold))),
            "sha256_fp32": file_sha256(fp32)}
