"""Shared fixtures: real data paths, synthetic recordings, a tiny trained model."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CHBMIT = SHARED_DATA / "chbmit"
EEGMMIDB = SHARED_DATA / "eegmmidb"
NEONATAL = SHARED_DATA / "neonatal"

_names = itertools.count()


def unique_stream_name(prefix: str = "ictal-test") -> str:
    """LSL names must not collide between tests (streams linger briefly on loopback)."""
    return f"{prefix}-{np.random.default_rng().integers(1e9)}-{next(_names)}"


@pytest.fixture(scope="session")
def chbmit_dir() -> Path:
    if not CHBMIT.is_dir():
        pytest.skip(f"real CHB-MIT excerpts not found at {CHBMIT}")
    return CHBMIT


@pytest.fixture(scope="session")
def eegmmidb_dir() -> Path:
    if not EEGMMIDB.is_dir():
        pytest.skip(f"real eegmmidb files not found at {EEGMMIDB}")
    return EEGMMIDB


@pytest.fixture(scope="session")
def neonatal_dir() -> Path:
    if not NEONATAL.is_dir():
        pytest.skip(f"real neonatal clips not found at {NEONATAL}")
    return NEONATAL


def tiny_spec():
    from ictal.runtime.features import FeatureSpec

    # a coarse grid keeps CPU time small; same code paths as the default grid
    return FeatureSpec(freqs_hz=[float(f) for f in range(1, 41, 3)], time_decimation=32)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """Synthetic EDF+ recordings with seizures at known times (training data for the tiny model)."""
    from ictal.stream_sim.synthetic import write_synthetic_edf

    d = tmp_path_factory.mktemp("synthetic")
    layout = [(90, [(30, 70)]), (90, [(20, 55)]), (90, []), (90, [(40, 80)]), (90, []), (90, [(25, 60)])]
    for i, (dur, sz) in enumerate(layout):
        write_synthetic_edf(d / f"syn{i:02d}.edf", dur, sz, seed=100 + i)
    return d


@pytest.fixture(scope="session")
def tiny_model(synthetic_dir, tmp_path_factory):
    """A slim ResNet trained for a few epochs on synthetic seizures, plus its ONNX export."""
    pytest.importorskip("torch")
    from ictal.export.onnx_export import export_onnx
    from ictal.models.data import build_windows
    from ictal.models.peers import fit_peers
    from ictal.models.train import TrainConfig, choose_threshold_by, save_checkpoint, train_model

    spec = tiny_spec()
    ws = build_windows(synthetic_dir, spec, hop_s=5.0, seizure_hop_s=3.0, log=lambda *_: None)
    groups = ws.groups
    val = np.isin(groups, ["syn05", "syn04"])
    cfg = TrainConfig(width=0.125, epochs=8, patience=8, batch_size=16, seed=0)
    tr, va = ws.subset(np.flatnonzero(~val)), ws.subset(np.flatnonzero(val))
    model, fspec, thr, hist = train_model(tr, va, spec, cfg, log=lambda *_: None)
    peers = fit_peers(tr, va, choose_threshold_by(cfg.threshold_rule))
    d = tmp_path_factory.mktemp("model")
    ckpt = save_checkpoint(d / "tiny.pt", model, fspec, thr, history=hist, classical_peers=peers.to_dict())
    onnx_path = export_onnx(ckpt, d / "tiny.onnx")
    return {"checkpoint": ckpt, "onnx": onnx_path, "spec": fspec, "threshold": thr, "history": hist,
            "windows": ws, "val": val}


@pytest.fixture(scope="session")
def tiny_hybrid(synthetic_dir, tmp_path_factory):
    """The shipped architecture, slim: summary branch (fitted first) + ResNet, and its ONNX export."""
    pytest.importorskip("torch")
    from ictal.export.onnx_export import export_onnx
    from ictal.models.data import build_windows
    from ictal.models.train import TrainConfig, save_checkpoint, train_model

    spec = tiny_spec()
    ws = build_windows(synthetic_dir, spec, hop_s=5.0, seizure_hop_s=3.0, log=lambda *_: None)
    val = np.isin(ws.groups, ["syn05", "syn04"])
    cfg = TrainConfig(width=0.125, epochs=3, patience=3, batch_size=16, seed=0, summary_branch=True)
    tr, va = ws.subset(np.flatnonzero(~val)), ws.subset(np.flatnonzero(val))
    lines = []
    model, fspec, thr, hist = train_model(tr, va, spec, cfg, log=lines.append)
    d = tmp_path_factory.mktemp("hybrid")
    ckpt = save_checkpoint(d / "hybrid.pt", model, fspec, thr, history=hist)
    return {"checkpoint": ckpt, "onnx": export_onnx(ckpt, d / "hybrid.onnx"), "log": lines, "windows": ws,
            "val": val, "train": tr}


# The right hemisphere's and the midline's electrodes: 9 of the double banana's 18 derivations
HEADBOX_HALF = {"FP2", "F4", "F8", "C4", "T8", "P4", "P8", "O2", "FZ", "CZ"}


def write_headbox_half_off(eegmmidb_dir: Path, folder: Path, start_s: float = 20.0, end_s: float = 50.0) -> Path:
    """S001R01 (healthy, eyes open, 61 s) with half a headbox off from `start_s` to `end_s`: the
    `HEADBOX_HALF` electrodes read 0 µV there. Written as `folder`/headbox.edf."""
    import dataclasses

    from ictal.runtime.edf import read_edf, write_edf

    rec = read_edf(eegmmidb_dir / "S001" / "S001R01.edf")
    data_uv, sf = rec.data_uv.copy(), rec.sfreq_hz
    for i, label in enumerate(rec.labels):
        if label.strip(".").upper() in HEADBOX_HALF:
            data_uv[i, int(start_s * sf):int(end_s * sf)] = 0.0
    folder.mkdir(parents=True, exist_ok=True)
    return write_edf(dataclasses.replace(rec, data_uv=data_uv), folder / "headbox.edf")
