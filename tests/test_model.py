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
from ictal.runtime.features import BANDS_HZ  # noqa: E402
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


def test_checkpoint_sidecar_is_strict_json_even_with_undefined_metrics(tmp_path):
    """A cross-validation summary holds NaN (no seizures, no sensitivity); the sidecar must still
    parse in strict JSON readers (null), and the model must load from it."""
    from ictal.models.train import save_checkpoint

    model, spec = _hybrid()
    path = save_checkpoint(tmp_path / "m.pt", model, spec, 0.3,
                           cross_validation_summary={"seizure_free": {"sensitivity": float("nan")}})

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    meta = json.loads(path.with_suffix(".json").read_text(), parse_constant=refuse)
    assert meta["cross_validation_summary"]["seizure_free"]["sensitivity"] is None
    assert load_checkpoint(path)[2] == pytest.approx(0.3)


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


def _hybrid(spec=None):
    from ictal.models.train import TrainConfig, build_model
    from ictal.runtime.features import FeatureSpec

    spec = spec or FeatureSpec(norm_mean=[1.0] * 40, norm_std=[0.5] * 40)
    torch.manual_seed(0)  # the same weights whatever ran before (a Grad-CAM map of a random ResNet can be all 0)
    return build_model(spec, TrainConfig(summary_branch=True)).eval(), spec


def test_hybrid_resnet_sees_no_channel_gain_and_summaries_no_channel_order():
    model, spec = _hybrid()
    rng = np.random.default_rng(0)
    log_power = torch.as_tensor(rng.normal(1.0, 0.5, (2, *spec.input_shape)), dtype=torch.float32)
    std = torch.as_tensor(spec.norm_std)[:, None]
    x = (log_power - torch.as_tensor(spec.norm_mean)[:, None]) / std
    gain_db = torch.as_tensor(rng.uniform(-20, 20, spec.input_shape[0]), dtype=torch.float32)
    louder = x + (gain_db / 10.0)[None, :, None, None] / std  # log10 power rises by dB/10 on every row
    with torch.no_grad():
        # the ResNet branch: identical input whatever each channel's gain (amplifier, population)
        assert torch.allclose(model.resnet_input(x), model.resnet_input(louder), atol=1e-4)
        # the summary branch sees amplitude ...
        assert not torch.allclose(model.summary(model.log_power(x)), model.summary(model.log_power(louder)))
        # ... but not which channel is which: a montage's order does not matter
        perm = torch.as_tensor(rng.permutation(spec.input_shape[0]))
        assert torch.allclose(model.summary.summaries(model.log_power(x)),
                              model.summary.summaries(model.log_power(x[:, perm])), atol=1e-5)


def test_summary_entropy_is_low_for_a_rhythmic_discharge_and_gain_free():
    model, spec = _hybrid()
    n_ch, n_f, n_t = spec.input_shape
    f = np.asarray(spec.freqs_hz)
    background = np.tile(-1.5 * np.log10(f)[None, :, None], (n_ch, 1, n_t))  # 1/f^1.5 power
    rhythmic = background.copy()
    rhythmic[:, np.argmin(abs(f - 3.0))] += 3.0  # a 3 Hz discharge 1000x above the background
    louder = background + 2.0                     # 20 dB more gain, same spectral shape
    entropy = model.summary.summaries(torch.as_tensor(np.stack([background, rhythmic, louder]),
                                                      dtype=torch.float32))[:, 6 * len(model.summary.band_rows)].numpy()
    # (that column: the entropy's median over channels)
    assert 0.0 <= entropy.min() and entropy.max() <= 1.0
    assert entropy[1] < entropy[0] - 0.1
    assert entropy[2] == pytest.approx(entropy[0], abs=1e-5)


def test_ocular_summary_reads_frontopolar_delta_over_the_rest_gain_free_and_only_past_its_hinge():
    from ictal.models.train import ocular_derivations
    from ictal.runtime.artefacts import LATERAL_FRONTAL_LINKS
    from ictal.runtime.features import DOUBLE_BANANA

    model, spec = _hybrid()
    branch = model.summary
    config = branch.ocular_delta
    assert [spec.channels[i] for i in config["frontopolar"]] == ["FP1-F7", "FP1-F3", "FP2-F4", "FP2-F8"]
    reference = {spec.channels[i] for i in config["reference"]}
    assert not reference & set(LATERAL_FRONTAL_LINKS) and len(reference) == 12
    # one side's frontopolar links alone are not a blink: no such summary for that montage
    assert ocular_derivations([c for c in DOUBLE_BANANA if not c.startswith("FP2")], 0.477) is None
    n_ch, n_f, n_t = spec.input_shape
    f = np.asarray(spec.freqs_hz)
    background = np.tile(-1.5 * np.log10(f)[None, :, None], (n_ch, 1, n_t))
    delta_rows = slice(*branch.band_rows[0])

    def excess(log_power):
        with torch.no_grad():
            x = torch.as_tensor(np.stack(log_power), dtype=torch.float32)
            return branch.ocular_excess(branch.per_channel_features(x)).numpy()

    blinks, small, one_side = background.copy(), background.copy(), background.copy()
    blinks[config["frontopolar"], delta_rows] += 1.0  # ten times the delta power behind them
    small[config["frontopolar"], delta_rows] += 0.3   # twice: under the hinge (log10 3)
    one_side[config["frontopolar"][:2], delta_rows] += 1.0
    louder = blinks + 2.0                             # 20 dB more gain on every channel
    e = excess([background, blinks, small, one_side, louder])
    assert e[0] == 0 and e[2] == 0
    assert e[1] == pytest.approx(1.0 - config["hinge_log10"], abs=1e-4)
    assert e[3] == pytest.approx(0.5 - config["hinge_log10"], abs=1e-4)  # the mean of the four links
    assert e[4] == pytest.approx(e[1], abs=1e-5)
    assert branch.summaries(torch.as_tensor(np.stack([blinks]), dtype=torch.float32))[0, branch.ocular_columns[0]] \
        == pytest.approx(e[1], abs=1e-5)


def test_summaries_read_a_flat_or_zero_filled_channel_as_the_median_channel():
    from ictal.models.train import TrainConfig, build_model

    model, spec = _hybrid()
    unguarded = build_model(spec, TrainConfig(summary_branch=True, flat_channel_log10=None)).eval()
    rng = np.random.default_rng(1)
    n_ch, n_f, n_t = spec.input_shape
    eeg = rng.normal(0.0, 0.3, (1, n_ch, n_f, n_t)) - 1.5 * np.log10(spec.freqs_hz)[None, None, :, None] + 2.0
    eeg[0, :4] += 1.0  # a focal region 10x louder: a real asymmetry, not a flat channel
    with_flat = eeg.copy()
    with_flat[0, 10] = np.log10(spec.log_eps)  # what a zero-filled derivation looks like
    with_weak = eeg.copy()
    with_weak[0, 10] -= 2.0  # a bridged pair: 100x less power than its neighbours
    summaries = {name: m.summary.summaries(torch.as_tensor(np.concatenate([eeg, with_flat, with_weak]),
                                                           dtype=torch.float32)).numpy()
                 for name, m in (("guarded", model), ("unguarded", unguarded))}
    g = summaries["guarded"]
    # a flat or much weaker channel barely moves any summary
    assert np.abs(g[1] - g[0]).max() < 0.2 and np.abs(g[2] - g[0]).max() < 0.2
    u = summaries["unguarded"]
    assert np.abs(u[1] - u[0]).max() > 1.0  # without the guard one dead channel dominates max and spread
    # the asymmetry itself is not taken for a flat channel: the guard leaves the intact window alone
    assert np.allclose(g[0], u[0], atol=1e-5)


def test_a_channel_at_the_flat_limit_cannot_swing_the_summaries():
    """neo07's P8-O2 lies 1.49-1.50 decades below the median channel, right at the guard's limit.
    With a hard step, a gain change carried it across and moved p from 0.85 to 0.26; the ramp
    reads it as partly flat, so the summaries move by little for a small change in its power."""
    from ictal.models.train import TrainConfig, build_model

    model, spec = _hybrid()
    assert model.summary.flat_channel_ramp_log10 > 0  # the default
    hard = build_model(spec, TrainConfig(summary_branch=True, flat_channel_ramp_log10=0.0)).eval()
    rng = np.random.default_rng(2)
    n_ch, n_f, n_t = spec.input_shape
    eeg = rng.normal(0.0, 0.3, (1, n_ch, n_f, n_t)) - 1.5 * np.log10(spec.freqs_hz)[None, None, :, None] + 2.0
    eeg[0, 5] += 0.8 * np.sin(np.linspace(0, 6, n_f))[:, None]  # give the channel a spectrum of its own
    windows = []
    for depth in (1.49, 1.51):  # decades below the median channel's total, either side of the 1.5 limit
        w = eeg.copy()
        bands = np.stack([w[0, :, lo:hi].mean(axis=(1, 2)) for lo, hi in model.summary.band_rows], -1)
        total = np.log10((10.0 ** bands).sum(-1))
        w[0, 5] += np.median(total) - depth - total[5]
        windows.append(w)
    x = torch.as_tensor(np.concatenate(windows), dtype=torch.float32)
    with torch.no_grad():
        soft, stepped = model.summary.summaries(x), hard.summary.summaries(x)
    soft_jump, hard_jump = (soft[1] - soft[0]).abs().max().item(), (stepped[1] - stepped[0]).abs().max().item()
    assert hard_jump > 0.3 and soft_jump < 0.1 * hard_jump


def test_bounded_logistic_regression_is_sklearns_objective_with_nonnegative_columns():
    from sklearn.linear_model import LogisticRegression

    from ictal.models.train import weighted_logistic_regression

    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 6))
    y = (z[:, 0] - z[:, 1] - 0.5 * z[:, 2] + rng.normal(size=400) > 0).astype(float)
    w = rng.uniform(0.2, 3.0, 400)
    free_coef, free_intercept = weighted_logistic_regression(z, y, w, 0.1)
    ref = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit(z, y, sample_weight=w)
    assert np.allclose(free_coef, ref.coef_[0], atol=1e-5) and free_intercept == pytest.approx(ref.intercept_[0], abs=1e-5)
    assert free_coef[1] < -0.1 and free_coef[2] < -0.05  # columns 1 and 2 argue against the class
    coef, _ = weighted_logistic_regression(z, y, w, 0.1, nonnegative=[1, 2, 3])
    assert coef[1] == 0.0 and coef[2] == 0.0 and coef[3] >= 0.0
    # the bounded optimum is the free optimum on the columns whose bound does not bind
    free = [i for i in range(6) if coef[i] != 0.0]
    ref = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit(z[:, free], y, sample_weight=w)
    assert np.allclose(coef[free], ref.coef_[0], atol=1e-5)
    # and columns held at or below 0 (the ocular summary's): column 0 argues for the class
    coef, _ = weighted_logistic_regression(z, y, w, 0.1, nonpositive=[0, 1])
    assert coef[0] == 0.0 and coef[1] < -0.1


def test_hybrid_needs_absolute_features():
    from ictal.runtime.features import FeatureSpec

    with pytest.raises(ValueError, match="relative 'none', not 'channel-window'"):
        _hybrid(FeatureSpec(relative="channel-window", norm_mean=[0.0] * 40, norm_std=[1.0] * 40))


def test_hybrid_summary_branch_is_a_logistic_regression_fitted_before_the_resnet(tiny_hybrid):
    from sklearn.linear_model import LogisticRegression

    from ictal.models.data import binary_target, unambiguous
    from ictal.models.train import sample_weights

    model, spec, thr, meta = load_checkpoint(tiny_hybrid["checkpoint"])
    assert meta["model"]["band_rows"] and spec.relative == "none"
    # epoch 0 is the summary branch alone; the ResNet is kept only if an epoch beat it on validation
    assert any(line.startswith("epoch  0: summary branch alone") for line in tiny_hybrid["log"])
    # the branch is the weighted logistic regression on the standardised summaries, frozen through training
    tr = tiny_hybrid["train"]
    keep = unambiguous(tr.label)
    y = binary_target(tr.label[keep])
    with torch.no_grad():
        feats = model.summary.summaries(torch.as_tensor(tr.x[keep])).double().numpy()
    std = feats.std(0)
    std[std == 0] = 1.0  # as the fit does (the synthetic EEG has no blinks: the ocular column is 0)
    z = (feats - feats.mean(0)) / std
    weights = sample_weights(y, np.asarray(tr.source)[keep])
    coef = model.summary.linear.weight.detach().numpy()[0]
    power, ocular = list(model.summary.absolute_power_columns), model.summary.ocular_columns
    assert (coef[power] >= 0).all()  # more absolute band power never argues against seizure
    assert (coef[ocular] <= 0).all()  # eye artefact never argues for it
    # where a bound binds the weight is 0; the other weights are scikit-learn's regression on the rest
    free = [i for i in range(len(coef)) if not (i in power + ocular and coef[i] == 0.0)]
    ref = LogisticRegression(C=0.1, max_iter=5000).fit(z[:, free], y, sample_weight=weights)
    assert np.allclose(coef[free], ref.coef_[0], atol=1e-3)
    # and the hybrid detects the synthetic seizures of held-out recordings
    ws = tiny_hybrid["windows"].subset(np.flatnonzero(tiny_hybrid["val"]))
    yv = ws.label >= 0.5
    clear = (ws.label == 0) | yv
    assert auroc(yv[clear], predict_proba(model, spec, ws.x)[clear]) > 0.9


def test_hybrid_hands_windows_low_passed_below_its_band_to_a_gamma_free_regression(tiny_hybrid):
    """EEG that a recording system low-passed below the spec's 40 Hz looks "slower" to the summary
    regression, which reads less fast activity as more seizure. Its second regression never sees
    the band that reaches the top rows and takes over, through a ramp, on windows whose top band
    lies below the band-limited check's limit; on windows above it the model is the full regression."""
    from ictal.models.interpret import band_limited_fallback
    from ictal.runtime.scorer import Scorer

    model, spec, thr, meta = load_checkpoint(tiny_hybrid["checkpoint"])
    branch = model.summary
    (top_lo, top_hi), _ = branch.band_limited_rows
    assert meta["model"]["band_limited_log10"] == branch.band_limited_log10 < 0
    assert Scorer(tiny_hybrid["onnx"]).band_limited_fallback == band_limited_fallback(model)
    fallback = branch.band_limited_linear.weight.detach().numpy()[0]
    assert branch.top_band_columns and (fallback[branch.top_band_columns] == 0).all()
    assert (fallback[[c for c in branch.absolute_power_columns if c not in branch.top_band_columns]] >= 0).all()
    x = torch.as_tensor(tiny_hybrid["windows"].x[:32])
    low = x.clone()
    low[:, :, top_lo:top_hi] -= 2.0  # the top band two decades down, as a low-pass filter leaves it
    with torch.no_grad():
        for lp in (x, low):
            full, gamma_free, weight = branch.regression_logits(lp)
            z = (branch.summaries(lp) - branch.feature_mean) / branch.feature_std
            # both regressions carry the channel veto's penalty, so that any blend of them does
            assert torch.allclose(full, branch.linear(z).squeeze(-1) - branch.veto_penalty(lp), atol=1e-5)
            assert torch.allclose(branch(lp), full + weight * (gamma_free - full), atol=1e-5)
        # synthetic EEG keeps its top band: the full regression scores it; two decades down, the other one
        assert branch.band_limited_weight(x).max() < 0.05
        assert branch.band_limited_weight(low).min() > 0.99
        assert not torch.allclose(branch(low), full, atol=1e-2)


def test_occlusion_blends_every_copy_as_the_window_itself_so_a_band_is_not_read_as_a_filter(tiny_hybrid):
    """Replacing a window's top band with a quieter baseline's can make the copy look low-passed,
    and the model would score it with its gamma-free regression: the band's Δlogit would then
    measure that switch, not the band's evidence (chb01_03 against its quietest pre-ictal window:
    gamma -1.26 instead of -3.82). The ONNX graph outputs both regressions and their weight, and
    occlusion blends every copy with the window's own weight, in the ONNX and the torch scorer alike."""
    from ictal.models.interpret import TorchScorer
    from ictal.runtime.occlusion import occlude, occlusion_batch
    from ictal.runtime.scorer import Scorer

    model, spec, _, _ = load_checkpoint(tiny_hybrid["checkpoint"])
    (top_lo, top_hi), _ = model.summary.band_limited_rows
    onnx = Scorer(tiny_hybrid["onnx"])
    assert onnx.has_regression_outputs
    ws = tiny_hybrid["windows"]
    x = ws.x[int(np.argmax(ws.label))]
    baseline = x - 0.5
    baseline[:, top_lo:] -= 2.0  # a quieter window whose top band lies two decades lower still
    batch = spec.normalise(occlusion_batch(x, baseline, spec))
    full, gamma_free, weight = onnx.predict_regressions(batch)
    np.testing.assert_allclose(full + weight * (gamma_free - full), onnx.predict_logits(batch), atol=1e-5)
    gamma = 1 + len(spec.channels) + 25 + 5 + list(BANDS_HZ).index("gamma")  # the whole gamma band replaced
    assert weight[0] < 0.05 and weight[gamma] > 0.95  # the copy alone would go to the gamma-free regression
    held = full + weight[0] * (gamma_free - full)
    switched = onnx.predict_logits(batch)
    assert abs((held[0] - held[gamma]) - (switched[0] - switched[gamma])) > 0.1  # the test can fail
    for scorer in (onnx, TorchScorer(model)):
        occ = occlude(scorer, spec, x, baseline)
        assert occ.gamma_free_weight == pytest.approx(weight[0], abs=1e-5)
        np.testing.assert_allclose(occ.band_dlogit, held[0] - held[-5:], atol=1e-4)
    assert "gamma_free_weight" in occ.to_json()


def test_hybrid_exports_to_onnx_with_the_same_scores_and_drops_a_resnet_that_adds_nothing(tiny_hybrid, tmp_path):
    import onnx

    from ictal.export.onnx_export import export_onnx
    from ictal.models.resnet import resnet_contributes
    from ictal.models.train import save_checkpoint
    from ictal.runtime.scorer import Scorer

    model, spec, thr, _ = load_checkpoint(tiny_hybrid["checkpoint"])
    x = tiny_hybrid["windows"].x[:24]
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
    dead = export_onnx(save_checkpoint(tmp_path / "dead.pt", model, spec, thr), tmp_path / "dead.onnx")
    p_dead = predict_proba(model, spec, x)
    with torch.no_grad():
        model.head[-1].weight.fill_(0.05)
    assert resnet_contributes(model)
    live = export_onnx(save_checkpoint(tmp_path / "live.pt", model, spec, thr), tmp_path / "live.onnx")
    p_live = predict_proba(model, spec, x)
    for path, p_torch, has_resnet in ((dead, p_dead, False), (live, p_live, True)):
        proto = onnx.load(str(path))
        assert any(n.op_type == "Conv" for n in proto.graph.node) == has_resnet
        graph = {e.key: e.value for e in proto.metadata_props}["ictal.graph"]
        assert graph.startswith("whole network" if has_resnet else "summary branch only")
        assert np.abs(p_torch - Scorer(path).predict_log_power(x)).max() < 1e-4
    assert np.abs(p_live - p_dead).max() > 1e-3  # the live ResNet does change the scores


def test_grad_cam_of_a_hybrid_whose_resnet_adds_nothing_is_none_not_a_map_of_zeros():
    from ictal.models.explain import GradCAMExplainer
    from ictal.models.resnet import resnet_contributes

    model, spec = _hybrid()
    x = np.random.default_rng(1).normal(size=spec.input_shape).astype(np.float32)
    assert not resnet_contributes(model)  # the ResNet's output layer starts at zero
    assert GradCAMExplainer(model, spec).band_importance(x) is None
    with torch.no_grad():
        model.head[-1].weight.fill_(0.1)
    fi = GradCAMExplainer(model, spec).band_importance(x)
    assert resnet_contributes(model) and max(fi.values()) == pytest.approx(1.0)


def test_scoring_skips_a_resnet_that_adds_nothing_and_gives_the_same_p():
    """predict_proba leaves out the forward pass of a ResNet whose output layer is zero (the
    shipped model: 0.3 instead of 1.0 ms per window): the same p, and the full model once the
    ResNet adds something."""
    from ictal.models.train import _normaliser, predict_proba

    model, spec = _hybrid()
    log_power = np.random.default_rng(2).normal(1.0, 0.5, (5, *spec.input_shape)).astype(np.float32)

    def full_forward():
        with torch.no_grad():
            return torch.sigmoid(model(_normaliser(spec)(log_power))).numpy()

    calls = []
    hook = model.stem.register_forward_hook(lambda *_: calls.append(1))
    np.testing.assert_allclose(predict_proba(model, spec, log_power), full_forward(), rtol=0, atol=1e-7)
    assert len(calls) == 1  # the reference's forward pass only
    with torch.no_grad():
        model.head[-1].bias.fill_(0.7)
    np.testing.assert_allclose(predict_proba(model, spec, log_power), full_forward(), rtol=0, atol=1e-6)
    assert len(calls) == 3
    hook.remove()


def test_the_torch_scorer_behind_occlusion_skips_a_resnet_that_adds_nothing_with_the_same_logits():
    """Occlusion of a .pt model scores every occluded copy through TorchScorer: the same logits as
    the model's forward pass, without the ResNet's while it adds nothing."""
    from ictal.models.interpret import TorchScorer

    model, spec = _hybrid()
    x = np.random.default_rng(3).normal(size=(4, *spec.input_shape)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.as_tensor(x)).numpy()
    calls = []
    hook = model.stem.register_forward_hook(lambda *_: calls.append(1))
    np.testing.assert_allclose(TorchScorer(model).predict_logits(x), reference, rtol=0, atol=1e-6)
    assert not calls
    hook.remove()


def test_channel_veto_only_lowers_scores_keeps_every_seemingly_seizure_window_and_leaves_the_threshold(tiny_hybrid):
    """The veto pushes down windows in which no derivation alone looks like seizure; it never
    raises a score, its floor lies at or below every training and validation seizure window, and
    the threshold is the regression's own (a veto that lowers validation negatives would otherwise
    let Youden's threshold fall, and the windows it does not veto alarm more)."""
    from ictal.models.data import binary_target, unambiguous
    from ictal.models.train import predict_proba, without_channel_veto
    from ictal.runtime.metrics import choose_threshold

    model, spec, thr, meta = load_checkpoint(tiny_hybrid["checkpoint"])
    assert meta["model"]["channel_veto"] == {"tau": 0.25, "depth": 10.0, "scale": 0.1}
    ws = tiny_hybrid["windows"]
    x = torch.as_tensor(spec.normalise(ws.x))
    with torch.no_grad():
        vetoed = model(x)
        with without_channel_veto(model):
            alone = model(x)
        evidence = model.summary.channel_evidence(model.log_power(x))
    assert torch.all(vetoed <= alone + 1e-6) and torch.any(vetoed < alone - 1.0)
    seizure = torch.as_tensor(ws.label >= 0.5)
    assert evidence[seizure].min() >= -1e-5  # training and validation seizures alike
    val = tiny_hybrid["val"] & unambiguous(ws.label)  # the windows training chose its threshold on
    with without_channel_veto(model):
        p_val = predict_proba(model, spec, ws.x[val])
    assert thr == pytest.approx(choose_threshold(binary_target(ws.label[val]), p_val))


def test_onnx_names_the_derivations_that_look_like_seizure_on_their_own_as_torch_does(tiny_hybrid):
    """The graph of a model with a channel veto outputs each derivation's margin over the veto's
    floor and their pooled evidence (the veto's input), equal to torch's; an explanation names the
    derivations at or over the floor, most seizure-like first, and the pooled evidence is never
    below the best single derivation's (a soft maximum)."""
    from ictal.models.interpret import TorchScorer
    from ictal.runtime.channels import unique_labels
    from ictal.runtime.scorer import Scorer, seizure_like_channels

    model, spec, _, _ = load_checkpoint(tiny_hybrid["checkpoint"])
    scorer = Scorer(tiny_hybrid["onnx"])
    assert scorer.has_channel_outputs and scorer.has_regression_outputs
    ws = tiny_hybrid["windows"]
    x = spec.normalise(ws.x)
    margins, evidence = scorer.predict_channel_evidence(x)
    torch_margins, torch_evidence = TorchScorer(model).predict_channel_evidence(x)
    assert margins.shape == (len(x), len(spec.channels))
    assert np.abs(margins - torch_margins).max() < 1e-4 and np.abs(evidence - torch_evidence).max() < 1e-4
    assert (evidence >= margins.max(axis=1) - 1e-5).all()
    labels = unique_labels(spec.channels)
    seizure = int(np.argmax(np.where(ws.label >= 0.5, margins.max(axis=1), -np.inf)))
    named = seizure_like_channels(scorer, x[seizure], labels)
    expected = sorted((c for c in range(len(labels)) if margins[seizure, c] >= 0), key=lambda c: -margins[seizure, c])
    assert named["seizure_like_channels"] == [labels[c] for c in expected] != []
    assert named["channel_evidence"] == pytest.approx(evidence[seizure], abs=1e-3)
