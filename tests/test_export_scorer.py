import subprocess
import sys

import numpy as np
import onnx
import pytest

from ictal.runtime.errors import ModelError, SpecError
from ictal.runtime.scorer import META_SPEC, Scorer

from conftest import REPO


def test_importing_runtime_and_stream_sim_does_not_import_torch():
    code = ("import sys, ictal, ictal.runtime.monitor, ictal.runtime.scorer, ictal.runtime.cli, ictal.runtime.demo, ictal.runtime.view, ictal.stream_sim, "
            "ictal.stream_sim.replay, ictal.stream_sim.synthetic; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_onnx_model_carries_spec_threshold_and_weights_hash(tiny_model):
    proto = onnx.load(str(tiny_model["onnx"]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert META_SPEC in meta and "ictal.weights_sha256" in meta and float(meta["ictal.threshold"]) > 0
    onnx.checker.check_model(proto)
    s = Scorer(tiny_model["onnx"])
    assert s.spec == tiny_model["spec"] and s.threshold == pytest.approx(tiny_model["threshold"])
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_onnx_and_torch_give_the_same_probabilities(tiny_model):
    from ictal.export.onnx_export import parity_check

    s = Scorer(tiny_model["onnx"])
    x = s.spec.normalise(tiny_model["windows"].x[:40])
    res = parity_check(tiny_model["checkpoint"], tiny_model["onnx"], x.astype(np.float32))
    assert res["max_abs_logit_diff"] < 1e-4 and res["n_windows"] == 40


def test_scorer_refuses_nan_wrong_shape_and_foreign_models(tiny_model, tmp_path):
    s = Scorer(tiny_model["onnx"])
    x = np.zeros((1, *s.spec.input_shape), np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(SpecError, match="NaN"):
        s.predict_proba(x)
    with pytest.raises(SpecError, match="shape"):
        s.predict_proba(np.zeros((1, 3, 4, 5), np.float32))
    proto = onnx.load(str(tiny_model["onnx"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelError, match="no 'ictal.feature_spec'"):
        Scorer(tmp_path / "bare.onnx")
    with pytest.raises(ModelError, match="SHA-256"):
        Scorer(tiny_model["onnx"], expected_sha256="0" * 64)


def test_int8_model_keeps_metadata_and_predictions_close(tiny_model, tmp_path):
    from ictal.export.onnx_export import compare_int8, quantize_int8

    s = Scorer(tiny_model["onnx"])
    x = s.spec.normalise(tiny_model["windows"].x[:24])
    q = quantize_int8(tiny_model["onnx"], tmp_path / "tiny.int8.onnx", x)
    assert Scorer(q).spec == s.spec
    cmp = compare_int8(tiny_model["onnx"], q, x)
    assert cmp["int8_bytes"] < cmp["fp32_bytes"] and cmp["max_abs_prob_diff"] < 0.2


def _rewrite(src, dst, change):
    import onnx

    proto = onnx.load(str(src))
    change(proto)
    onnx.save(proto, str(dst))
    return dst


def _set_metadata(key: str, value: str):
    """A `_rewrite` change: metadata `key` set to `value`."""
    def change(proto):
        next(p for p in proto.metadata_props if p.key == key).value = value
    return change


def test_scorer_refuses_changed_weights_a_missing_hash_and_a_bad_threshold(tiny_model, tmp_path):
    import onnx
    from onnx import numpy_helper

    from ictal.runtime.scorer import META_GRAPH, META_THRESHOLD

    def zero_weights(proto):
        for init in proto.graph.initializer:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))

    def drop(key):
        def change(proto):
            kept = [p for p in proto.metadata_props if p.key != key]
            del proto.metadata_props[:]
            proto.metadata_props.extend(kept)
        return change

    src = tiny_model["onnx"]
    with pytest.raises(ModelError, match="graph's SHA-256 does not match.*changed or corrupted"):
        Scorer(_rewrite(src, tmp_path / "zeroed.onnx", zero_weights))
    with pytest.raises(ModelError, match=f"no '{META_GRAPH}'.*re-export"):
        Scorer(_rewrite(src, tmp_path / "nohash.onnx", drop(META_GRAPH)))
    for value in ("nan", "2.0", "abc", "0"):
        with pytest.raises(ModelError, match=rf"'{META_THRESHOLD}' is '{value}'; expected a probability"):
            Scorer(_rewrite(src, tmp_path / "thr.onnx", _set_metadata(META_THRESHOLD, value)))
    assert onnx.load(str(src)).graph.initializer, "the fixture itself is untouched"
    Scorer(src)


def test_onnx_model_carries_its_flat_channel_guard_for_the_explanations(tiny_hybrid, tiny_model, tmp_path):
    """The flat-channel guard lives inside the graph; explanations without seizure-free EEG need
    its limit (a channel the model reads as flat keeps its own power), so the export carries it."""
    from ictal.runtime.scorer import META_FLAT_GUARD

    hybrid = Scorer(tiny_hybrid["onnx"])
    assert hybrid.flat_channel_guard == {"limit_log10": 1.5, "ramp_log10": 0.1}  # TrainConfig's defaults
    assert Scorer(tiny_model["onnx"]).flat_channel_guard is None  # no summary branch, no guard

    for value in ('{"limit_log10": -1, "ramp_log10": 0.1}', "1.5", '{"limit_log10": 1.5}'):
        with pytest.raises(ModelError, match=rf"'{META_FLAT_GUARD}' is .*expected null or"):
            Scorer(_rewrite(tiny_hybrid["onnx"], tmp_path / "guard.onnx", _set_metadata(META_FLAT_GUARD, value)))


def test_onnx_model_says_where_it_hands_low_passed_windows_to_its_gamma_free_regression(tiny_hybrid, tiny_model,
                                                                                        tmp_path):
    """`ictal evaluate` warns differently for a model with the fallback, so the export carries its
    limit and ramp; a malformed field is refused, not read as "no fallback"."""
    from ictal.runtime.scorer import META_BAND_FALLBACK

    assert Scorer(tiny_hybrid["onnx"]).band_limited_fallback == {"limit_log10": -0.8, "ramp_log10": 0.05}
    assert Scorer(tiny_model["onnx"]).band_limited_fallback is None  # no summary branch, no fallback

    for value in ('{"limit_log10": 0.8, "ramp_log10": 0.05}', '{"limit_log10": -0.8, "ramp_log10": 0}', "-0.8"):
        with pytest.raises(ModelError, match=rf"'{META_BAND_FALLBACK}' is .*expected null or"):
            Scorer(_rewrite(tiny_hybrid["onnx"], tmp_path / "fallback.onnx",
                            _set_metadata(META_BAND_FALLBACK, value)))
