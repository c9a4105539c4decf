"""One installed package, `ictal`, with a public API that works from any directory."""
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

API = ["FeatureSpec", "Scorer", "Monitor", "read_edf", "evaluate_model", "replay_edf", "score_edf"]


def _python(code: str, cwd, timeout=120):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_ictal_works_from_a_folder_with_its_own_models_runtime_and_export(tmp_path):
    for name in ("models", "runtime", "export", "stream_sim"):  # a user's project with generic folder names
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} was imported')\n")
    code = (f"import ictal; from ictal import {', '.join(API)}; from ictal.models.explain import GradCAM; "
            "from ictal.runtime.monitor import Monitor as M; import ictal.runtime.figures; print(ictal.__version__)")
    r = _python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", r.stdout.strip())
    # child processes the monitor starts resolve the same way
    r = subprocess.run([sys.executable, "-m", "ictal", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "monitor" in r.stdout, r.stderr


def test_nothing_generic_is_installed_at_the_top_level(tmp_path):
    for name in ("models", "runtime", "export", "stream_sim"):
        r = _python(f"import {name}", tmp_path)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, (name, r.stdout)


def test_public_api_is_lazy_torch_free_and_documented(tmp_path):
    code = ("import sys, ictal; names = ictal.__all__; [getattr(ictal, n) for n in names if n != 'evaluate_model']; "
            "print('torch' in sys.modules, names)")
    r = _python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("False") and all(n in r.stdout for n in API)
    import ictal

    for name in API:  # numpydoc: every public callable says what it takes
        doc = getattr(ictal, name).__doc__ or ""
        assert "Parameters\n    ----------" in doc or "Attributes\n    ----------" in doc, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ictal.nope


def test_score_edf_scores_every_window_like_the_scorer(tiny_model, synthetic_dir):
    import ictal
    from ictal.runtime.windows import condition_recording, window_samples

    scores = ictal.score_edf(tiny_model["onnx"], synthetic_dir / "syn00.edf", hop_s=5.0)
    assert np.allclose(scores.start_s, np.arange(0, 81, 5.0)) and np.allclose(scores.end_s - scores.start_s, 10)
    scorer = ictal.Scorer(tiny_model["onnx"])
    data = condition_recording(ictal.read_edf(synthetic_dir / "syn00.edf"), scorer.spec)
    one = scorer.score_samples(window_samples(data, scorer.spec, 35.0))
    assert scores.p[7] == pytest.approx(one, abs=1e-6)
    # syn00 has a seizure at 30-70 s: the windows inside it score above the ones before it
    assert scores.p[(scores.start_s >= 30) & (scores.end_s <= 70)].min() > scores.p[scores.end_s <= 30].max()
    assert scores.threshold == pytest.approx(tiny_model["threshold"]) and scores.zero_filled == []


def test_readme_python_example_runs(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 16
    r = _python(code, tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"p\(seizure\) = 0\.\d\d", r.stdout) and "alert(s) explained" in r.stdout
