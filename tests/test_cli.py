"""The `ictal` command as a user runs it."""
import json
import re
import subprocess
import sys

import pytest

from conftest import REPO, tiny_spec


def _ictal(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ictal", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_only_working_subcommands():
    out = _ictal("--help").stdout
    for cmd in ("demo", "monitor", "view", "replay", "simulate", "train", "evaluate", "export", "bench", "explain", "report"):
        assert cmd in out


def test_evaluate_onnx_writes_metrics_and_confusion_matrix(tiny_model, synthetic_dir, tmp_path):
    r = _ictal("evaluate", synthetic_dir, "--model", tiny_model["onnx"], "--out-dir", tmp_path, "--hop", "5")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert {"accuracy", "sensitivity", "specificity", "f1", "weighted_f1", "auroc"} <= set(m["window"])
    assert {"sensitivity", "false_alarms_per_24h", "latency_median_s"} <= set(m["event"])
    assert m["event"]["n_events"] == 4
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10_000
    assert re.search(r"seizure-free: \d+ false alarms in 0\.\d\d h \(\d+\.\d/24 h, 95 % interval [\d.]+–[\d.]+\)",
                     r.stdout)
    # one recording with a seizure: no seizure-free rate to print, and no 'nan' in its place
    one = _ictal("evaluate", synthetic_dir / "syn00.edf", "--model", tiny_model["onnx"], "--out-dir", tmp_path / "one",
                 "--hop", "5")
    assert one.returncode == 0, one.stderr
    assert "no seizure-free recording" in one.stdout and "nan" not in one.stdout


def test_train_with_cross_validation_writes_checkpoint_and_cv(synthetic_dir, tmp_path):
    pytest.importorskip("torch")
    spec = tiny_spec().save(tmp_path / "spec.json")
    r = _ictal("train", synthetic_dir, "-o", tmp_path / "m.pt", "--spec", spec, "--epochs", "1", "--width", "0.125",
               "--cv", "loso", "--hop", "10", "--seizure-hop", "5", "--exclude", "syn05")
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((tmp_path / "m.json").read_text())
    assert 0 < meta["threshold"] < 1 and meta["held_out"] == ["syn05"]
    assert "syn05.edf" not in meta["trained_on"]
    cv = json.loads((tmp_path / "m.cv.json").read_text())
    assert len(cv["leave_one_seizure_out"]["folds"]) == 4
    assert "leave_one_seizure_out model" in r.stdout and "model vs line_length" in r.stdout
    assert set(meta["classical_peers"]) >= {"line_length_threshold", "band_power_coef"}


def test_train_with_leave_one_patient_out_takes_the_folds_mean_threshold(tmp_path):
    """With --cv lopo the shipped threshold (model and peers) is the mean of the folds' own
    validation thresholds, not the one the final model's few validation patients give."""
    pytest.importorskip("torch")
    import numpy as np

    from ictal.stream_sim.synthetic import write_synthetic_edf

    data = tmp_path / "data"
    for i, seizures in enumerate([[(20, 45)], [(20, 45)], [(25, 50)], [(15, 40)], [(30, 55)], [(20, 45)], []]):
        (data / f"pt{i}").mkdir(parents=True)  # a folder per patient
        write_synthetic_edf(data / f"pt{i}" / f"pt{i}_a.edf", 60, seizures, seed=100 + i)
    spec = tiny_spec().save(tmp_path / "spec.json")
    r = _ictal("train", data, "-o", tmp_path / "m.pt", "--spec", spec, "--epochs", "1", "--width", "0.125",
               "--cv", "lopo", "--hop", "10", "--seizure-hop", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((tmp_path / "m.json").read_text())
    folds = json.loads((tmp_path / "m.cv.json").read_text())["leave_one_patient_out"]["folds"]
    assert len(folds) == 6 and all(set(f["thresholds"]) == {"own", "used"} for f in folds)
    assert all(set(f["at_peer_false_alarms"]) == {"line_length", "band_power"} for f in folds)
    own = [f["thresholds"]["own"] for f in folds]
    assert meta["threshold"] == pytest.approx(np.mean([o["model"] for o in own]))
    peers = meta["classical_peers"]
    assert peers["line_length_threshold"] == pytest.approx(np.mean([o["line_length"] for o in own]))
    assert peers["band_power_threshold"] == pytest.approx(np.mean([o["band_power"] for o in own]))
    assert meta["threshold_from"].startswith("leave-one-patient-out") and "the mean of the" in r.stdout
    # pooled AUROC with intervals over the 7 patients, the model's lead over each peer paired
    pooled = json.loads((tmp_path / "m.cv.json").read_text())["leave_one_patient_out"]["pooled_auroc_intervals"]
    assert pooled["data"]["n_patients"] == 7 and set(pooled["data"]["model_minus"]) == {"line_length", "band_power"}
    lo, hi = pooled["data"]["methods"]["model"]["ci95"]
    assert lo <= pooled["data"]["methods"]["model"]["auroc"] <= hi
    assert "model − line_length" in (tmp_path / "m.cv.md").read_text() and "AUROC, data (7 patients" in r.stdout


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    bad = tmp_path / "broken.edf"
    bad.write_bytes(b"0       " + b"x" * 100)
    r = _ictal("replay", bad)
    assert r.returncode == 2
    assert "EDFError" in r.stderr and "broken.edf" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("argv, expected", [
    (["replay", "x.edf", "--speed", "0"], "--speed: expected a value > 0"),
    (["simulate", "--duration", "0"], "--duration: expected a value > 0"),
    (["monitor", "--model", "m.onnx", "--k", "5", "--n", "4"], "--k 5 windows above threshold cannot be more"),
    (["monitor", "--model", "m.onnx", "--hop", "0"], "--hop: expected a value > 0"),
    (["evaluate", "d", "--model", "m.onnx", "--hop", "-1"], "--hop: expected a value > 0"),
    (["evaluate", "d", "--alert-rule", "5/4"], "expected 1 <= K <= N, got '5/4'"),
    (["evaluate", "d", "--model", "m.onnx", "--threshold", "nan"], "--threshold: expected a number"),
    (["evaluate", "d", "--model", "m.onnx", "--threshold", "2"], "--threshold: expected a value > 0 and ≤ 1"),
    (["explain", "f.edf", "--model", "m.pt", "--start", "50", "--end", "10"], "--end 10 must be after --start 50"),
    (["train", "d", "-o", "m.pt", "--epochs", "-1"], "--epochs: expected a value ≥ 0"),
    (["train", "d", "-o", "m.pt", "--batch-size", "0"], "--batch-size: expected a value ≥ 1"),
    (["replay", "x.edf", "--dropout", "5"], "expected START:SECONDS"),
    (["train", "d", "-o", "m.pt", "--threshold-rule", "specificity:abc"], "the specificity must be a number between"),
    (["evaluate", "d", "-o", "out"], "-o names an output file (train, export); this command writes a folder: "
                                     "use --out-dir DIR"),
    (["report", "d", "--output", "out"], "use --out-dir DIR"),
    (["monitor", "--view", "8765", "--no-lsl-out"], "--view reads the monitor's LSL outputs"),
    (["monitor", "--view", "host:port"], "expected [HOST:]PORT"),
    (["view", "--listen", "99999"], "the port must be 0–65535"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, expected, capsys):
    from ictal.runtime.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and expected in err and "Traceback" not in err


def test_unwritable_log_and_unknown_flat_channel_are_one_line_errors(tiny_model, chbmit_dir, tmp_path):
    (tmp_path / "file").write_text("")
    r = _ictal("monitor", "--model", tiny_model["onnx"], "--log", tmp_path / "file" / "log.jsonl", timeout=60)
    assert r.returncode == 2 and "file/log.jsonl" in r.stderr and "Traceback" not in r.stderr
    r = _ictal("replay", chbmit_dir / "chb01" / "chb01_18_ictal.edf", "--flat", "NOPE", timeout=60)
    assert r.returncode == 2 and "--flat NOPE: not a channel of chb01_18_ictal.edf" in r.stderr


def test_a_view_without_a_monitor_says_which_monitor_it_looked_for():
    pytest.importorskip("starlette", reason="the view needs the [view] extra")
    r = _ictal("view", "--name", "no-such-monitor", "--timeout", "0.5")
    assert r.returncode == 2 and "no monitor named 'no-such-monitor'" in r.stderr and "Traceback" not in r.stderr


def test_training_data_without_seizures_is_a_one_line_error(tmp_path):
    pytest.importorskip("torch")
    from ictal.stream_sim.synthetic import write_synthetic_edf

    for i in range(2):
        write_synthetic_edf(tmp_path / f"calm{i}.edf", 40, [], seed=40 + i)
    r = _ictal("train", tmp_path, "-o", tmp_path / "m.pt", "--epochs", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no seizure windows in" in r.stderr and "training needs labelled seizures" in r.stderr


def test_zero_epochs_fit_the_hybrids_summary_regression_alone_and_mean_nothing_for_a_resnet(synthetic_dir, tmp_path):
    """`--epochs 0` is the quick screen of the summary regression (a 30-fold leave-one-patient-out
    of the shared data in ~2 min): the hybrid's ResNet is left adding nothing; a resnet-only model
    would train nothing, and says so."""
    pytest.importorskip("torch")
    from ictal.models.resnet import resnet_contributes
    from ictal.models.train import load_checkpoint

    r = _ictal("train", synthetic_dir, "-o", tmp_path / "m.pt", "--epochs", "0", "--hop", "10", "--seizure-hop", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "epoch  0: summary branch alone" in r.stdout and "epoch  1" not in r.stdout
    model = load_checkpoint(tmp_path / "m.pt")[0]
    assert model.summary is not None and not resnet_contributes(model)
    r = _ictal("train", synthetic_dir, "-o", tmp_path / "r.pt", "--epochs", "0", "--architecture", "resnet")
    assert r.returncode == 2 and "--epochs 0 trains nothing in a resnet model" in r.stderr and "Traceback" not in r.stderr
