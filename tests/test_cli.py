"""The `ictal` command as a user runs it."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, tiny_spec


def _ictal(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "runtime.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_only_working_subcommands():
    out = _ictal("--help").stdout
    for cmd in ("demo", "monitor", "replay", "simulate", "train", "evaluate", "export", "bench", "explain", "report"):
        assert cmd in out


def test_evaluate_onnx_writes_metrics_and_confusion_matrix(tiny_model, synthetic_dir, tmp_path):
    r = _ictal("evaluate", tiny_model["onnx"], synthetic_dir, "-o", tmp_path, "--hop", "5")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert {"accuracy", "sensitivity", "specificity", "f1", "weighted_f1", "auroc"} <= set(m["window"])
    assert {"sensitivity", "false_alarms_per_24h", "latency_median_s"} <= set(m["event"])
    assert m["event"]["n_events"] == 4
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10_000


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


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    bad = tmp_path / "broken.edf"
    bad.write_bytes(b"0       " + b"x" * 100)
    r = _ictal("replay", bad)
    assert r.returncode == 2
    assert "EDFError" in r.stderr and "broken.edf" in r.stderr and "Traceback" not in r.stderr
