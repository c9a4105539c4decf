import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ictal.models.data import build_windows, group_of  # noqa: E402
from ictal.models.evaluate import cross_patient, leave_one_seizure_out  # noqa: E402
from ictal.models.resnet import CWTResNet, count_parameters  # noqa: E402
from ictal.models.train import load_checkpoint, predict_proba  # noqa: E402
from ictal.runtime.errors import ModelError  # noqa: E402
from ictal.runtime.metrics import auroc  # noqa: E402

from conftest import tiny_spec  # noqa: E402


def test_resnet18_takes_eeg_channels_as_input_planes_and_gives_one_logit():
    m = CWTResNet(n_channels=23, width=1.0)
    assert m.stem[0].in_channels == 23
    assert [len(l) for l in (m.layer1, m.layer2, m.layer3, m.layer4)] == [2, 2, 2, 2]
    assert (m.head[1].in_features, m.head[1].out_features, m.head[-1].out_features) == (512, 64, 1)
    assert m(torch.zeros(2, 23, 40, 320)).shape == (2,)
    assert 11_000_000 < count_parameters(m) < 11_500_000
    assert count_parameters(CWTResNet(23, width=0.25)) < count_parameters(m) / 10


def test_last_residual_block_keeps_two_rows_per_band_on_the_default_grid():
    from ictal.runtime.features import FeatureSpec

    spec = FeatureSpec()
    m = CWTResNet(len(spec.channels), width=0.125).eval()
    with torch.no_grad():
        rows = m.features(torch.zeros(1, *spec.input_shape)).shape[2]
    assert rows == len(spec.freqs_hz) // 4 == 10  # the Grad-CAM layer can tell delta from theta


def test_tiny_model_learns_synthetic_seizures(tiny_model):
    hist = tiny_model["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    model, spec, thr, _ = load_checkpoint(tiny_model["checkpoint"])
    ws = tiny_model["windows"].subset(np.flatnonzero(tiny_model["val"]))
    y = ws.label >= 0.5
    keep = (ws.label == 0) | y
    p = predict_proba(model, spec, ws.x)
    assert auroc(y[keep], p[keep]) > 0.9  # held-out synthetic recordings


def test_splits_never_put_one_seizure_in_two_folds(chbmit_dir):
    spec = tiny_spec()
    ws = build_windows(chbmit_dir, spec, hop_s=10, seizure_hop_s=2, log=lambda *_: None)
    groups = ws.groups
    folds = leave_one_seizure_out(ws)
    assert len(folds) == 10  # one per seizure recording
    for f in folds:
        assert not (f.test & f.val).any()
        for part_a, part_b in ((f.test, f.train), (f.val, f.train), (f.test, f.val)):
            assert not set(groups[part_a]) & set(groups[part_b])
        sids = {w.seizure_id for w, t in zip(ws.windows, f.test) if t and w.seizure_id}
        sids_train = {w.seizure_id for w, t in zip(ws.windows, f.train) if t and w.seizure_id}
        assert sids and not sids & sids_train
    # preictal and ictal clips of one recording are one group
    assert group_of("chb01_18_preictal.edf") == group_of("chb01_18_ictal.edf") == "chb01_18"
    cp = cross_patient(ws, "chb01", "chb02")
    assert set(ws.patients[cp.train]) == {"chb01"} and set(ws.patients[cp.test]) == {"chb02"}


def test_checkpoint_loads_weights_only_and_detects_tampering(tiny_model, tmp_path):
    ckpt = tiny_model["checkpoint"]
    model, spec, thr, meta = load_checkpoint(ckpt)
    assert thr == pytest.approx(tiny_model["threshold"]) and spec == tiny_model["spec"]
    bad = tmp_path / "tiny.pt"
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    bad.with_suffix(".json").write_text(ckpt.with_suffix(".json").read_text())
    with pytest.raises(ModelError, match="SHA-256 .* does not match"):
        load_checkpoint(bad)


def test_checkpoint_errors_say_what_is_expected(tiny_model, tmp_path):
    import pickle

    ckpt = tiny_model["checkpoint"]
    with pytest.raises(ModelError, match="exported ONNX model; this needs the .pt checkpoint"):
        load_checkpoint(tiny_model["onnx"])
    bad = tmp_path / "m.pt"
    bad.write_bytes(ckpt.read_bytes())
    bad.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="m.json: not valid JSON"):
        load_checkpoint(bad)
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    del meta["weights_sha256"]
    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="no 'weights_sha256'"):
        load_checkpoint(bad)

    class RunsCode:  # a pickle that would call print() when loaded
        def __reduce__(self):
            return print, ("unpickled code ran",)

    bad.write_bytes(pickle.dumps(RunsCode()))
    meta["weights_sha256"] = hashlib.sha256(bad.read_bytes()).hexdigest()
    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="refusing to unpickle it"):
        load_checkpoint(bad)


def test_scorer_given_a_checkpoint_asks_for_the_onnx(tiny_model):
    from ictal.runtime.scorer import Scorer

    with pytest.raises(ModelError, match="torch checkpoint; scoring needs the exported .onnx"):
        Scorer(tiny_model["checkpoint"])
