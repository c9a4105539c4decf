"""Sanity checks of the explanations (issue 10):

- a known answer at system level: a 5-Hz discharge injected into the left-temporal
  derivations of real healthy EEG must come out as "theta, left temporal" from
  occlusion (channel and joint band × region) and from Grad-CAM, on a small model
  trained for the test on the shipped architecture and grid;
- model-parameter randomisation (Adebayo et al. 2018): explanations change when
  the weights are randomised, layer by layer from the top;
- the hand-written Grad-CAM and Integrated Gradients agree with Captum's, and
  Captum's IG passes its completeness check.
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ictal.runtime.channels import region_members  # noqa: E402
from ictal.runtime.features import BANDS_HZ, CWTransform, FeatureSpec  # noqa: E402
from ictal.runtime.occlusion import occlude  # noqa: E402

INJECT_HZ = 5.0


def _spearman(a, b) -> float:
    ra, rb = (np.argsort(np.argsort(np.ravel(v))) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _discharge(n: int, sf: float, rng) -> np.ndarray:
    """A rhythmic 5-Hz discharge, random phase. Sinusoidal: harmonics at 10 and 15 Hz would be
    alpha and beta evidence of their own, and the known answer would no longer be one band."""
    t = np.arange(n) / sf
    return np.sin(2 * np.pi * INJECT_HZ * t + rng.uniform(0, 2 * np.pi))


@pytest.fixture(scope="module")
def left_temporal_task(eegmmidb_dir):
    """Windows of real healthy EEG (eegmmidb motor-task runs), each once as is (negative) and
    once with the discharge in the four left-temporal derivations (positive), and a small
    model trained on them."""
    from ictal.models.data import WindowSet
    from ictal.models.train import TrainConfig, train_model
    from ictal.runtime.annotations import patient_of
    from ictal.runtime.windows import Window, load_labelled

    spec = FeatureSpec()  # the shipped grid and montage: (18, 40, 80)
    cwt = CWTransform(spec)
    left = region_members(list(spec.channels))["left temporal"]
    rng = np.random.default_rng(7)
    parts = {"train": [], "val": []}
    for subject, part in (("S001", "train"), ("S002", "train"), ("S003", "val")):
        for run in ("R03", "R04"):
            path = eegmmidb_dir / subject / f"{subject}{run}.edf"
            data, _ = load_labelled(path, [], spec)
            for a in range(0, data.shape[1] - spec.n_samples + 1, int(3 * spec.sfreq_hz)):
                win = data[:, a:a + spec.n_samples]
                pos = win.copy()
                amp = rng.uniform(2.0, 4.0) * np.median(np.std(win[left], axis=1))
                pos[left] += amp * _discharge(spec.n_samples, spec.sfreq_hz, rng)
                for eeg, label in ((win, 0.0), (pos, 1.0)):
                    w = Window(a / spec.sfreq_hz, a / spec.sfreq_hz + spec.window_s, label, path.name,
                               patient_of(path.name, subject), "")
                    parts[part].append((cwt.log_power(eeg), w, eeg))
    sets = {k: WindowSet(np.stack([x for x, _, _ in v]), [w for _, w, _ in v], ["eegmmidb"] * len(v))
            for k, v in parts.items()}
    cfg = TrainConfig(epochs=6, patience=6, batch_size=32, seed=0, muscle_prob=0.0, pop_prob=0.0,
                      channel_gain_db=0.0, channel_dropout=0.0, ft_dropout=0.0)
    model, fspec, thr, _ = train_model(sets["train"], sets["val"], spec, cfg, log=lambda *_: None)
    val = parts["val"]
    positives = [(x, eeg) for x, w, eeg in val if w.label == 1.0]
    negatives = [(x, eeg) for x, w, eeg in val if w.label == 0.0]
    return {"model": model, "spec": fspec, "threshold": thr, "positives": positives, "negatives": negatives}


def _explain(model, spec, log_power, baseline_log_power, layer="layer4"):
    from ictal.models.explain import GradCAM, band_importance
    from ictal.models.interpret import TorchScorer

    occ = occlude(TorchScorer(model), spec, log_power, baseline_log_power)
    cam = GradCAM(model, getattr(model, layer)).attribute(spec.normalise(log_power))[0]
    return occ, cam, band_importance(cam, spec)


def test_injected_left_temporal_theta_is_found_by_occlusion_and_gradcam(left_temporal_task):
    from ictal.models.explain import relative

    task = left_temporal_task
    model, spec = task["model"], task["spec"]
    base = min(task["negatives"], key=lambda n: float(np.mean(n[1] ** 2)))[0]  # quietest clean window
    found = {"region": 0, "cell": 0, "band": 0}
    examples = task["positives"][:8]
    for x, _ in examples:
        occ, cam, fi = _explain(model, spec, x, base)
        assert occ.p > task["threshold"]  # the model detects the discharge
        found["region"] += occ.top_regions(1) == ["left temporal"]
        found["cell"] += occ.top_cell() == ("theta", "left temporal")
        found["band"] += relative(fi)["theta"] >= 0.75
    # every positive, for all three read-outs. Occlusion names the region and the cell; layer-4
    # Grad-CAM puts theta first or close behind alpha, its neighbour (over training seeds 0-5 it
    # ranked alpha first on 0 to 8 of the 8 positives, theta ≥ 0.79 of the top band on all)
    assert found == {"region": len(examples), "cell": len(examples), "band": len(examples)}, found


def test_occlusion_isolates_the_discharge_and_gradcam_only_ranks_it(left_temporal_task):
    """What each read-out can claim. The joint matrix isolates the one cell (all others < 1/5
    of it). Layer-4 Grad-CAM spreads theta into the neighbouring bands (its layer-4 units see
    most of the 40 rows): theta is at or near the top, but whether it or alpha comes first
    depends on the training seed, so its band profile is a coarse ranking, not a separation;
    beta and gamma stay well below."""
    from ictal.models.explain import relative

    task = left_temporal_task
    x, _ = task["positives"][0]
    base = task["negatives"][0][0]
    occ, _, fi = _explain(task["model"], task["spec"], x, base)
    j = occ.joint_dlogit
    b, r = list(BANDS_HZ).index("theta"), 3  # REGIONS[3] == "left temporal"
    others = np.delete(j.ravel(), b * 5 + r)
    assert np.max(np.abs(others)) < j[b, r] / 5, np.round(j, 2)
    bands = occ.band_importance()
    assert occ.top_regions(1) == ["left temporal"] and max(bands, key=bands.get) == "theta"
    fi = relative(fi)
    assert fi["theta"] >= 0.75 and fi["beta"] < 0.8 and fi["gamma"] < 0.5, fi


def test_without_seizure_free_eeg_the_window_itself_is_the_reference_and_the_answer_holds(left_temporal_task):
    """No EEG before the window and none without a seizure (a clip that starts at onset): the
    baseline is the window's own median channel. The discharge is on 4 of 18 derivations, so
    the median channel does not carry it, and occlusion still names "theta, left temporal"."""
    from ictal.runtime.occlusion import within_window_reference

    task = left_temporal_task
    examples = task["positives"][:8]
    for x, _ in examples:
        occ, _, _ = _explain(task["model"], task["spec"], x, within_window_reference(x, task["spec"]))
        assert occ.top_regions(1) == ["left temporal"] and occ.top_cell() == ("theta", "left temporal")
        assert np.abs(occ.joint_dlogit).max() < 2 * occ.joint_dlogit.max()  # no cell argues hard against


def test_the_within_window_reference_leaves_a_quiet_channel_as_it_is():
    """A near-flat derivation (an electrode off) keeps its own power and stays out of the
    median: filled from the median channel it would read as a channel that came back."""
    from ictal.runtime.occlusion import within_window_reference

    spec = FeatureSpec()
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 0.2, (18, 40, 80)).astype(np.float32)
    x[5] -= 2.0  # two decades below the other channels
    ref = within_window_reference(x, spec)
    assert np.array_equal(ref[5], x[5])
    assert np.allclose(ref[0], np.median(np.delete(x, 5, axis=0), axis=0)) and np.allclose(ref[0], ref[17])


def test_what_counts_as_quiet_follows_the_models_flat_channel_guard():
    """A channel 1.2 decades below the others is intact to a model that reads 3 decades as flat:
    its cells must compare it with the median channel. To the shipped guard (1.5 decades, ramp
    0.1) it is near enough to the limit that filling one band could cross it: it keeps its own."""
    from ictal.runtime.occlusion import baseline_log_power, quiet_limit_log10

    spec = FeatureSpec()
    x = np.random.default_rng(1).normal(1.0, 0.2, (18, 40, 80)).astype(np.float32)
    x[3] -= 1.2
    shipped, lenient = {"limit_log10": 1.5, "ramp_log10": 0.1}, {"limit_log10": 3.0, "ramp_log10": 0.1}
    assert quiet_limit_log10(shipped) == pytest.approx(1.0) and quiet_limit_log10(None) == 1.0
    assert quiet_limit_log10({"limit_log10": 2.0, "ramp_log10": 0.0}) == pytest.approx(1.5)
    transform = CWTransform(spec)
    assert np.array_equal(baseline_log_power(transform, spec, x, None, shipped)[3], x[3])
    filled = baseline_log_power(transform, spec, x, None, lenient)
    assert np.allclose(filled[3], np.median(x, axis=0)) and np.allclose(filled[3], filled[0])


def test_explanations_change_when_weights_are_randomised_layer_by_layer(left_temporal_task):
    """Cascading randomisation from the read-out down: every step below the head moves Grad-CAM
    or the joint occlusion matrix away from the trained model's, and the fully random model's
    Grad-CAM no longer ranks time-frequency pixels like it.

    What this does not show (measured over training seeds 0-5): randomising the one-unit head
    alone can leave both unchanged (Spearman 0.99 and 1.00), and the fully random model's joint
    occlusion matrix still ranks cells like the trained one's (Spearman 0.48-0.79): occluding
    the cell that holds a strong discharge moves the output of any network. So occlusion passing
    its part of this check is weaker evidence of model dependence than Grad-CAM's."""
    task = left_temporal_task
    model, spec = task["model"], task["spec"]
    x, _ = task["positives"][0]
    base = task["negatives"][0][0]
    occ0, cam0, _ = _explain(model, spec, x, base)
    rand = copy.deepcopy(model)
    torch.manual_seed(123)
    corr = {}
    for name in ("head", "layer4", "layer3", "layer2", "layer1", "stem"):
        for m in getattr(rand, name).modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        occ, cam, _ = _explain(rand, spec, x, base)
        corr[name] = (_spearman(cam0, cam), _spearman(occ0.joint_dlogit, occ.joint_dlogit))
        if name != "head":
            assert corr[name][0] < 0.95 or corr[name][1] < 0.95, corr
    cam_rho, joint_rho = corr["stem"]
    assert cam_rho < 0.5 and joint_rho < 0.95, corr


@pytest.fixture(scope="module")
def captum():
    return pytest.importorskip("captum.attr")


def test_gradcam_matches_captum_layer_gradcam(tiny_model, captum):
    from ictal.models.explain import GradCAM
    from ictal.models.train import load_checkpoint

    model, spec, _, _ = load_checkpoint(tiny_model["checkpoint"])
    x = np.random.default_rng(1).normal(0, 1, (3, *spec.input_shape)).astype(np.float32)
    ours = GradCAM(model, model.layer4).attribute(x, upsample=False)
    theirs = captum.LayerGradCam(model, model.layer4).attribute(torch.as_tensor(x), relu_attributions=True)
    np.testing.assert_allclose(ours, theirs.detach().numpy()[:, 0], rtol=1e-4, atol=1e-6)


def test_integrated_gradients_match_captum_and_pass_its_completeness_check(tiny_model, captum):
    from ictal.models.explain import IntegratedGradients
    from ictal.models.train import load_checkpoint

    model, spec, _, _ = load_checkpoint(tiny_model["checkpoint"])
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (2, *spec.input_shape)).astype(np.float32)
    base = np.full_like(x, -2.0)
    theirs, delta = captum.IntegratedGradients(model).attribute(
        torch.as_tensor(x), torch.as_tensor(base), n_steps=128, return_convergence_delta=True)
    logit_gap = (model(torch.as_tensor(x)) - model(torch.as_tensor(base))).detach().numpy()
    assert np.all(np.abs(delta.detach().numpy()) < 0.02 * np.maximum(1.0, np.abs(logit_gap)))  # completeness
    ours = IntegratedGradients(model, steps=128).attribute(x, base)
    for a, b in zip(ours, theirs.detach().numpy()):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
        np.testing.assert_allclose(a.sum(), b.sum(), rtol=0.03, atol=0.02)


def test_one_batch_holds_the_window_every_channel_and_every_band_region_cell():
    from ictal.runtime.occlusion import occlusion_batch

    spec = FeatureSpec()
    rng = np.random.default_rng(3)
    x = rng.normal(size=spec.input_shape).astype(np.float32)
    b = rng.normal(size=spec.input_shape).astype(np.float32)
    batch = occlusion_batch(x, b, spec)
    c = len(spec.channels)
    assert batch.shape == (1 + c + 25 + 5 + 5, *spec.input_shape)
    np.testing.assert_array_equal(batch[0], x)
    np.testing.assert_array_equal(batch[1 + 4, 4], b[4])
    bands, members = spec.band_slices(), region_members(list(spec.channels))
    k = 1 + c + list(BANDS_HZ).index("theta") * 5 + list(members).index("left temporal")
    changed = np.argwhere(batch[k] != x)
    assert set(changed[:, 0]) == set(members["left temporal"])
    assert set(changed[:, 1]) == set(np.flatnonzero(bands["theta"]))
