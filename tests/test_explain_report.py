import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from ictal.models.explain import GradCAM, GradCAMPlusPlus, IntegratedGradients, band_importance  # noqa: E402
from ictal.runtime.channels import REGIONS  # noqa: E402
from ictal.runtime.features import FeatureSpec  # noqa: E402


class _BlobModel(nn.Module):
    """A model whose evidence is exactly where the input is positive: a fixed 1x1 conv
    (identity on channel 0), ReLU, global average pool, positive linear read-out."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Conv2d(2, 3, 1, bias=False)
        with torch.no_grad():
            self.layer.weight.zero_()
            self.layer.weight[0, 0] = 1.0
            self.layer.weight[1, 1] = 1.0
        self.head = nn.Linear(3, 1)
        with torch.no_grad():
            self.head.weight[:] = torch.tensor([[2.0, 0.0, 0.0]])
            self.head.bias.zero_()

    def forward(self, x):
        a = torch.relu(self.layer(x))
        return self.head(a.mean(dim=(2, 3))).squeeze(-1)


def test_gradcam_and_gradcam_plus_plus_find_a_known_blob():
    x = np.zeros((2, 20, 40), np.float32)
    x[0, 12:15, 25:30] = 3.0  # the evidence
    x[1, 2:5, 2:6] = 3.0  # a distractor channel the read-out ignores
    model = _BlobModel()
    for cls in (GradCAM, GradCAMPlusPlus):
        cam = cls(model, model.layer).attribute(x)[0]
        f, t = np.unravel_index(np.argmax(cam), cam.shape)
        assert 12 <= f < 15 and 25 <= t < 30, cls.__name__
        assert cam[2:5, 2:6].max() == 0  # nothing on the distractor
        assert cam.shape == x.shape[1:]


def test_integrated_gradients_satisfy_completeness(tiny_model):
    from ictal.models.train import load_checkpoint

    model, spec, _, _ = load_checkpoint(tiny_model["checkpoint"])
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, *spec.input_shape)).astype(np.float32)
    base = np.full_like(x, -2.0)
    ig = IntegratedGradients(model, steps=128)
    attr = ig.attribute(x, base)
    assert attr.shape == x.shape
    delta = ig.logits(x) - ig.logits(base)
    np.testing.assert_allclose(attr.reshape(2, -1).sum(1), delta, rtol=0.03, atol=0.02)


def test_band_importance_averages_time_then_band():
    spec = FeatureSpec(freqs_hz=[float(f) for f in range(1, 41)])
    fti = np.zeros((40, 10))
    fti[4:7, :] = 1.0  # 5-7 Hz: theta
    fi = band_importance(fti, spec)
    assert max(fi, key=fi.get) == "theta" and fi["alpha"] == fi["beta"] == fi["gamma"] == 0


def test_explain_writes_matrix_json_png_and_raw_maps(tiny_model, synthetic_dir, tmp_path):
    from ictal.models.interpret import Interpreter, write_explanation

    interp = Interpreter(tiny_model["checkpoint"])
    edf = synthetic_dir / "syn00.edf"  # seizure 30-70 s
    rec, data, seizures, segs = interp.explain_file(edf, 10, 80)
    doc = write_explanation(interp, edf, rec, data, seizures, segs, tmp_path)
    assert [s["start_s"] for s in doc["segments"]] == [10, 20, 30, 40, 50, 60, 70]
    for s in doc["segments"]:
        fi = np.array([s["band_importance"][b] for b in doc["segments"][0]["matrix_axes"]["rows"]])
        ri = np.array([s["region_importance"][r] for r in s["matrix_axes"]["columns"]])
        fri = np.outer(fi, np.maximum(ri, 0))  # the method's FRI: a region arguing against seizure gets 0
        np.testing.assert_allclose(np.array(s["fri_matrix"]), fri, rtol=1e-3, atol=1e-5)
        assert np.array(s["joint_dlogit"]).shape == (5, 5)
        assert len(s["channel_dlogit"]) == 18
    # the baseline of a seizure segment is taken from before the seizure
    seg40 = next(s for s in doc["segments"] if s["start_s"] == 40)
    assert seg40["baseline"]["end_s"] <= 30.0
    maps = np.load(tmp_path / "explanation_maps.npz")
    assert maps["fti_raw"].shape == (7, *interp.spec.input_shape[1:])
    assert maps["fti_display"].max() <= 1.0
    for png in ("matrices.png", "local_interpretation.png"):
        assert (tmp_path / png).stat().st_size > 20_000
    json.loads((tmp_path / "explanation.json").read_text())


def test_global_interpretation_averages_matrices_per_patient(tiny_model, synthetic_dir, tmp_path):
    from ictal.models.interpret import Interpreter, global_interpretation

    doc = global_interpretation(Interpreter(tiny_model["checkpoint"]), synthetic_dir, tmp_path, log=lambda *_: None)
    assert doc["n_seizures"] == 4
    assert np.array(doc["overall"]["joint_mean"]).shape == np.array(doc["overall"]["fri_mean"]).shape == (5, 5)
    assert len(doc["per_patient"]) == 1  # synthetic files sit in one folder: one "patient"
    assert (tmp_path / "global_interpretation.png").exists()


def test_report_has_metrics_of_the_data_events_examples_and_falls_back_without_llm(tiny_model, synthetic_dir,
                                                                                   tmp_path, monkeypatch):
    from ictal.models.data import build_windows
    from ictal.models.evaluate import summarise
    from ictal.models.report import KINDS, write_report
    from ictal.models.train import load_checkpoint, predict_proba

    monkeypatch.setenv("ICTAL_LLM_URL", "http://127.0.0.1:9/v1")  # nothing listens: must fall back
    report = write_report(tiny_model["checkpoint"], synthetic_dir, tmp_path, n_examples=1, use_llm=True,
                          hop_s=10.0, log=lambda *_: None)
    md = report.read_text()
    for needed in ("## Metrics on this data", "Threshold applied: **", "![confusion matrix on this data]",
                   "| recording | length (s) | seizures | detected | false alarms | latency (s) |",
                   "## Cross-validation stored with the model (not this data)", "Joint band × region occlusion",
                   "- p_seizure:", "- true label:", "Grad-CAM++ overlay", "Integrated-Gradients triptych",
                   "deterministic (LLM rewrite failed"):
        assert needed in md, needed
    # the metrics are those of the data passed in, at the stored threshold
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    ws = build_windows(synthetic_dir, tiny_model["spec"], hop_s=10.0, seizure_hop_s=10.0, log=lambda *_: None)
    model = load_checkpoint(tiny_model["checkpoint"])[0]
    expected = summarise(ws, predict_proba(model, tiny_model["spec"], ws.x), tiny_model["threshold"])
    assert metrics["threshold_applied"] == pytest.approx(tiny_model["threshold"])
    assert metrics["on_data"]["window"]["confusion"] == expected["window"]["confusion"]
    assert len(metrics["events_per_recording"]) == 6
    # every kind is shown or said to be missing; examples never overlap
    shown = [k for k in KINDS if f": {k}\n" in md]
    assert set(shown) | set(metrics["examples_missing"]) == set(KINDS)
    for kind in metrics["examples_missing"]:
        assert f"no {kind}" in md
    spans = [(m[1], float(m[2]), float(m[3])) for m in re.finditer(r"- recording: `(.+?)` ([\d.]+)–([\d.]+) s", md)]
    assert len(spans) == len(shown)
    for i, (rec, a, b) in enumerate(spans):
        assert not any(rec == r2 and a < b2 and a2 < b for r2, a2, b2 in spans[i + 1:]), spans
    for line in md.splitlines():
        if line.startswith("![") and "](" in line:
            assert (tmp_path / line.split("](")[1].rstrip(")")).stat().st_size > 5_000


def test_plain_summary_tells_a_dead_resnet_from_a_zero_gradcam_map():
    from ictal.models.report import plain_summary
    from ictal.runtime.features import FeatureSpec
    from ictal.runtime.occlusion import Occlusion

    spec = FeatureSpec()
    joint = np.zeros((5, 5))
    joint[1, 2] = 0.8  # theta in the third region carries the evidence
    occ = Occlusion(list(spec.channels), logit=1.2, p=0.77, channel_dlogit=np.zeros(18), channel_dp=np.zeros(18),
                    joint_dlogit=joint, joint_dp=joint / 4, region_dlogit=np.array([0.0, 0.0, 0.9, 0.0, 0.0]),
                    band_dlogit=np.zeros(5))
    zero_map = np.zeros(spec.input_shape[1:])
    dead = plain_summary(zero_map, spec, occ, 0.5, gradcam_meaningful=False)
    quiet = plain_summary(zero_map, spec, occ, 0.5)
    assert "ResNet adds nothing" in dead and "ResNet adds nothing" not in quiet
    assert "all zero for this window" in quiet
    assert "p(seizure) = 0.770" in dead and "theta in the" in dead
    assert "scalp muscle" not in dead
    emg = plain_summary(zero_map, spec, occ, 0.5, gradcam_meaningful=False, muscle_like_channels=["FP2-F8", "F8-T8"])
    assert "20–30 Hz on FP2-F8, F8-T8, the shape of scalp muscle" in emg
    # a model with a channel veto: the derivations over its floor, or why the score was pushed down
    margin = {c: -1.0 for c in spec.channels} | {"FP2-F8": 1.93, "T8-P8": 0.4}
    focal = plain_summary(zero_map, spec, occ, 0.5, gradcam_meaningful=False, channel_veto={
        "channel_evidence": 1.95, "channel_margin": margin, "seizure_like_channels": ["FP2-F8", "T8-P8"]})
    assert "least seizure-like training seizure: FP2-F8 (+1.93), T8-P8 (+0.40)." in focal
    vetoed = plain_summary(zero_map, spec, occ, 0.5, gradcam_meaningful=False, channel_veto={
        "channel_evidence": -0.6, "channel_margin": margin, "seizure_like_channels": []})
    assert "No derivation looks like seizure on its own (the most seizure-like is 0.60 below" in vetoed
    assert "seizure-like" not in dead
    # eye blinks or movements: named past log10 3 decades of frontopolar delta excess, not below
    eyes = plain_summary(zero_map, spec, occ, 0.5, gradcam_meaningful=False, frontopolar_delta_excess=0.68)
    assert "Frontopolar delta 4.8x the derivations behind them, the shape of eye blinks or movements" in eyes
    for quiet in (0.3, None):
        assert "eye blinks" not in plain_summary(zero_map, spec, occ, 0.5, gradcam_meaningful=False,
                                                 frontopolar_delta_excess=quiet)


def test_explain_names_emg_like_derivations_and_takes_the_band_from_occlusion_without_gradcam(eegmmidb_dir,
                                                                                              chbmit_dir, neonatal_dir,
                                                                                              tmp_path):
    """`ictal explain` with the shipped checkpoint, whose ResNet adds nothing: its Grad-CAM map is
    all zero, so the dominant band comes from occlusion (it was 'delta', the first band of an all-zero
    map, for every segment); S005R07's frontal EMG is named per segment, chb01's seizure has none."""
    from ictal.models.interpret import Interpreter, write_explanation
    from ictal.runtime.shipped import SHIPPED_CHECKPOINT

    interp = Interpreter(SHIPPED_CHECKPOINT)
    assert not interp.gradcam_meaningful
    rec, data, seizures, segs = interp.explain_file(eegmmidb_dir / "S005" / "S005R07.edf", 30.0, 50.0)
    doc = write_explanation(interp, "S005R07.edf", rec, data, seizures, segs, tmp_path / "emg")
    for seg, js in zip(segs, doc["segments"]):
        assert {"FP2-F4", "FP2-F8", "F8-T8"} <= set(js["muscle_like_channels"])
        # the EMG windows the channel veto exists for: no derivation looks like seizure on its own
        assert js["seizure_like_channels"] == [] and js["channel_evidence"] < 0
        occluded = seg.occlusion.band_importance()
        assert js["dominant_band_source"] == "occlusion" and js["dominant_band"] == max(occluded, key=occluded.get)
    assert (tmp_path / "emg" / "local_interpretation.png").stat().st_size > 20_000
    _, _, _, (before, seizure) = interp.explain_file(chbmit_dir / "chb01" / "chb01_03_onset.edf", 0.0, 20.0)
    assert before.dominant_band == "alpha" and before.dominant_band_source == "occlusion"  # alpha +3.4 Δlogit
    assert seizure.p > interp.threshold and seizure.muscle_like_channels == []
    # neo73's right-frontotemporal rhythmic delta: FP2-F8 alone looks like seizure in its first 10 s
    _, _, _, (onset, *_) = interp.explain_file(neonatal_dir / "neo73_seizure.edf", 0.0, 30.0)
    assert onset.channel_veto["seizure_like_channels"] == ["FP2-F8"] and onset.dominant_region == "right temporal"
    assert not before.eye_movement_like and not seizure.eye_movement_like
    # neo73's right frontal discharge reaches the eye-movement measure too (the words say it can)
    assert onset.eye_movement_like and onset.p > interp.threshold
    # S003R05's blinks: named in the JSON, below threshold, and its frontal delta argues against seizure
    rec, data, seizures, (blinks,) = interp.explain_file(eegmmidb_dir / "S003" / "S003R05.edf", 14.0, 24.0)
    js = write_explanation(interp, "S003R05.edf", rec, data, seizures, [blinks], tmp_path / "eyes")["segments"][0]
    assert js["eye_movement_like"] and js["frontopolar_delta_excess"] > 0.477
    assert blinks.p < interp.threshold
    assert blinks.joint[0, REGIONS.index("frontal")] < 0  # replacing frontal delta raises the logit


def test_report_of_a_hybrid_whose_resnet_adds_nothing_draws_no_gradcam_and_says_why(tiny_hybrid, synthetic_dir,
                                                                                     tmp_path):
    from ictal.models.report import write_report
    from ictal.models.train import load_checkpoint, save_checkpoint

    model, spec, thr, _ = load_checkpoint(tiny_hybrid["checkpoint"])
    with torch.no_grad():  # the shipped case: training kept the summary branch alone
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
    ckpt = save_checkpoint(tmp_path / "dead.pt", model, spec, thr)
    report = write_report(ckpt, synthetic_dir, tmp_path / "r", n_examples=1, hop_s=10.0, log=lambda *_: None)
    md = report.read_text()
    assert "This model has no Grad-CAM map" in md and "(Grad-CAM: none, the ResNet adds nothing)" in md
    assert "band whose replacement lowers the logit most" in md
    assert "Grad-CAM overlay" not in md and "Grad-CAM dominant band" not in md
    assert not list((tmp_path / "r").glob("*gradcam*.png"))
    assert list((tmp_path / "r").glob("*_matrices.png")) and list((tmp_path / "r").glob("*_ig.png"))


def test_report_leaves_out_the_windows_the_monitor_would_not_score(eegmmidb_dir, tmp_path):
    """Half a headbox off for 30 s of healthy EEG: the shipped model reads every such window as a
    seizure, the monitor rejects them, and `ictal report` must neither count them as false alarms
    nor pick one as a false-positive example."""
    from conftest import write_headbox_half_off

    from ictal.models.report import write_report
    from ictal.runtime.shipped import SHIPPED_CHECKPOINT

    folder = tmp_path / "data"
    write_headbox_half_off(eegmmidb_dir, folder)
    report = write_report(SHIPPED_CHECKPOINT, folder, tmp_path / "r", n_examples=1, hop_s=2.0, log=lambda *_: None)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    window = metrics["on_data"]["window"]
    assert window["n_unscorable_windows_excluded"] >= 10 and window["confusion"]["fp"] == 0
    assert metrics["events_per_recording"][0]["false_alarms"] == 0
    assert "### Example 1: true negative" in report.read_text() and "false positive" in metrics["examples_missing"]
    # the cross-validation stored with the shipped model, per data set: healthy adults' false alarms
    # apart from the babies' clips, and each data set's AUROC with the patients it rests on
    text = report.read_text()
    assert "| held-out seizure-free EEG | hours | model | line_length | band_power |" in text
    assert "| eegmmidb | 9.28 | 3 [0.1–14] |" in text and "| neonatal | 41 | 0.81 [0.69–0.90] |" in text


def test_report_at_a_units_own_threshold_judges_and_picks_examples_by_it(tmp_path):
    """`ictal report --threshold 0.99` (a unit's operating point): the demo seizure (p up to 0.98)
    is then missed, so its windows are false negatives, the example shown is one, and the text
    says which threshold was applied and which is the model's."""
    import shutil

    from ictal.runtime.cli import main
    from ictal.runtime.shipped import DEMO_CLIP

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DEMO_CLIP, data)
    assert main(["report", str(data), "--threshold", "0.99", "--examples", "1", "--hop", "2",
                 "--out-dir", str(tmp_path / "r")]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["threshold_applied"] == 0.99 and metrics["model_threshold"] == pytest.approx(0.278, abs=0.001)
    assert metrics["on_data"]["window"]["confusion"]["tp"] == 0 and metrics["on_data"]["window"]["confusion"]["fn"] > 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Threshold applied: **0.990** (set by --threshold; the model's own, 0.278" in text
    assert re.search(r"### Example \d: false negative", text) and "true positive" in metrics["examples_missing"]


def test_explain_says_which_segments_the_monitor_would_not_score(eegmmidb_dir, tmp_path):
    """Half a headbox off from 20 to 50 s: the shipped model reads those segments as p = 1 and
    their 'explanation' is the flat electrodes. `ictal explain` still explains them (the user asked)
    but marks each as not scorable; `--global` leaves such segments out of a seizure's mean and a
    seizure with none left out of the matrices."""
    from conftest import write_headbox_half_off

    from ictal.runtime.cli import main

    folder = tmp_path / "data"
    edf = write_headbox_half_off(eegmmidb_dir, folder)
    assert main(["explain", str(edf), "--start", "0", "--end", "60", "--out-dir", str(tmp_path / "one")]) == 0
    segments = json.loads((tmp_path / "one" / "explanation.json").read_text())["segments"]
    unscorable = {s["start_s"]: (s["unscorable"], s["bad_channels"]) for s in segments}
    assert unscorable == {0.0: (None, 0), 10.0: (None, 0), 20.0: ("flat or saturated channels", 9),
                          30.0: ("flat or saturated channels", 9), 40.0: ("flat or saturated channels", 9),
                          50.0: (None, 0)}
    # two 'seizures' on the same file: the first keeps its segment before the headbox came off,
    # the second lies wholly in the flat stretch
    (folder / "chb99-summary.txt").write_text(
        "File Name: headbox.edf\nNumber of Seizures in File: 2\n"
        "Seizure 1 Start Time: 2 seconds\nSeizure 1 End Time: 18 seconds\n"
        "Seizure 2 Start Time: 25 seconds\nSeizure 2 End Time: 45 seconds\n")
    assert main(["explain", str(folder), "--global", "--out-dir", str(tmp_path / "all")]) == 0
    doc = json.loads((tmp_path / "all" / "global_interpretation.json").read_text())
    assert doc["n_seizures"] == 1 and len(doc["seizures_left_out_unscorable"]) == 1
    (first,) = doc["seizures"]
    assert (first["segments"], first["segments_unscorable"]) == (1, 1)  # 2-12 s kept, 12-22 s has flat seconds
    assert first["mean_p"] < 0.5
