"""Cardiac artefact removal: heart beats come out of real EEG, seizures stay in."""
import numpy as np
import pytest

from ictal.runtime.artefacts import (OCULAR_EXCESS_DECADES, eye_movement_like, eye_movement_text, find_cardiac_beats,
                                     frontopolar_delta_excess, muscle_channels, ocular_reading, remove_cardiac_artefact)
from ictal.runtime.edf import open_edf
from ictal.runtime.features import CWTransform, FeatureSpec
from ictal.runtime.windows import condition_edf, window_samples

SPEC = FeatureSpec()  # 18-channel double banana at 256 Hz


def _window(path, start_s: float) -> np.ndarray:
    data = condition_edf(open_edf(path), SPEC, allow_missing=3)
    return window_samples(data, SPEC, start_s).astype(np.float64)


def _qrs_train(beat_times_s, gains_uv) -> np.ndarray:
    """An ECG-like beat (small Q, tall narrow R, S, slow T wave) at each beat time, with one fixed
    gain per channel (the ECG's field over the scalp)."""
    t = np.arange(SPEC.n_samples) / SPEC.sfreq_hz
    wave = np.zeros_like(t)
    for b in beat_times_s:
        for offset_s, width_s, height in ((-0.03, 0.01, -0.15), (0.0, 0.01, 1.0), (0.03, 0.012, -0.3),
                                          (0.25, 0.05, 0.25)):
            wave += height * np.exp(-0.5 * ((t - b - offset_s) / width_s) ** 2)
    return np.asarray(gains_uv)[:, None] * wave[None]


def _band_rms(x: np.ndarray) -> float:
    import scipy.signal
    sos = scipy.signal.butter(2, (5, 30), "bandpass", fs=SPEC.sfreq_hz, output="sos")
    return float(np.sqrt(np.mean(scipy.signal.sosfiltfilt(sos, x, axis=1) ** 2)))


def test_added_heart_beats_are_found_and_removed_from_real_eeg(eegmmidb_dir):
    clean = _window(eegmmidb_dir / "S001" / "S001R01.edf", 20.0)  # eyes-open rest, no ECG
    assert not find_cardiac_beats(clean, SPEC.sfreq_hz).is_cardiac
    rng = np.random.default_rng(3)
    beats = np.cumsum(rng.uniform(0.78, 0.9, 12)) + 0.1  # ~72 beats/min, not perfectly regular
    beats = beats[beats < SPEC.window_s - 0.4]
    # as large as S003's (below): an artefact a reader sees at once
    gains = rng.choice([-1, 1], len(SPEC.channels)) * rng.uniform(100, 200, len(SPEC.channels))
    ecg = _qrs_train(beats, gains)
    dirty = clean + ecg

    found = find_cardiac_beats(dirty, SPEC.sfreq_hz)
    assert found.is_cardiac
    expected = np.round(beats * SPEC.sfreq_hz)
    inside = expected[(expected >= 0.2 * SPEC.sfreq_hz) & (expected < SPEC.n_samples - 0.3 * SPEC.sfreq_hz)]
    assert len(found.peaks) == len(inside)
    assert np.max(np.abs(found.peaks - inside)) <= 3  # within 12 ms of each beat

    cleaned = remove_cardiac_artefact(dirty, SPEC.sfreq_hz)
    # what is left of the artefact is small against the artefact, and the EEG is kept
    assert _band_rms(cleaned - clean) < 0.25 * _band_rms(ecg)
    assert _band_rms(cleaned - clean) < 0.5 * _band_rms(clean)


def test_real_ecg_artefact_is_removed_and_lowers_the_power_it_added(eegmmidb_dir):
    """S003's runs carry a large ECG artefact on every channel (about 150 µV, 50 beats/min)."""
    dirty = _window(eegmmidb_dir / "S003" / "S003R05.edf", 112.0)
    found = find_cardiac_beats(dirty, SPEC.sfreq_hz)
    assert found.is_cardiac and found.stereotypy > 0.85
    assert 7 <= len(found.peaks) <= 9  # 50 beats/min over the 9.5 s where a beat fits whole
    cleaned = remove_cardiac_artefact(dirty, SPEC.sfreq_hz)
    rms = lambda x: np.sqrt(np.mean(x ** 2, axis=1))  # noqa: E731
    assert np.median(rms(cleaned) / rms(dirty)) < 0.7  # the beats carried most of the power
    assert np.all(rms(cleaned) > 0.3 * rms(dirty))  # and the EEG under them is kept
    assert not find_cardiac_beats(cleaned, SPEC.sfreq_hz).is_cardiac


@pytest.mark.parametrize("clip, start_s", [("chbmit/chb01/chb01_03_onset.edf", 18.0),
                                           ("chbmit/chb02/chb02_16_ictal.edf", 0.0),
                                           ("neonatal/neo44_seizure.edf", 10.0)])
def test_seizure_windows_without_ecg_are_returned_untouched(chbmit_dir, clip, start_s):
    window = _window(chbmit_dir.parent / clip, start_s)
    assert remove_cardiac_artefact(window, SPEC.sfreq_hz) is window


def test_the_spec_turns_removal_on_in_the_transform_and_old_specs_keep_it_off(eegmmidb_dir):
    old = FeatureSpec.from_dict({k: v for k, v in FeatureSpec().to_dict().items()
                                 if k != "remove_cardiac_artefact"})
    assert old.remove_cardiac_artefact is False
    on = FeatureSpec(remove_cardiac_artefact=True)
    assert FeatureSpec.from_json(on.to_json()).remove_cardiac_artefact is True
    dirty = _window(eegmmidb_dir / "S003" / "S003R05.edf", 112.0)
    calm = _window(eegmmidb_dir / "S001" / "S001R01.edf", 20.0)
    kept, removed = CWTransform(old), CWTransform(on)
    np.testing.assert_array_equal(kept.log_power(calm), removed.log_power(calm))
    low = np.asarray(SPEC.freqs_hz) <= 30
    assert removed.log_power(dirty)[:, low].mean() < kept.log_power(dirty)[:, low].mean() - 0.1


def test_a_batch_transformed_in_threads_gives_the_same_features_and_heart_beat_flags(eegmmidb_dir):
    """Offline scoring (`score_edf`, `ictal evaluate` in one process) transforms a batch's row blocks
    in one thread per core: the features must be one thread's, bit for bit, and each window's
    `heart_beats_removed` flag its own."""
    dirty = _window(eegmmidb_dir / "S003" / "S003R05.edf", 112.0)  # real ECG artefact
    calm = _window(eegmmidb_dir / "S001" / "S001R01.edf", 20.0)
    batch = np.stack([calm, dirty, calm, calm, dirty])  # 90 rows: three blocks of 32
    on = FeatureSpec(remove_cardiac_artefact=True)
    one, two = CWTransform(on, threads=1), CWTransform(on, threads=2)
    np.testing.assert_array_equal(one.log_power_batch(batch), two.log_power_batch(batch))
    assert two.last_heart_beats_removed.tolist() == one.last_heart_beats_removed.tolist() == [False, True, False,
                                                                                               False, True]
    with pytest.raises(ValueError, match="threads"):
        CWTransform(on, threads=0)


def test_scalp_muscle_is_named_on_its_derivations_and_a_seizure_is_not(eegmmidb_dir, chbmit_dir):
    """S005's frontal EMG (a false alarm of the leave-one-patient-out folds) raises power from
    8-12 Hz into 20-30 Hz on the derivations that carry it; chb01's seizure, louder than anything
    around it, does not: the monitor names the first beside its alert and not the second."""
    transform = CWTransform(SPEC)
    emg = transform.log_power(_window(eegmmidb_dir / "S005" / "S005R07.edf", 38.0))
    named = [SPEC.channels[c] for c in muscle_channels(emg, SPEC.freqs_hz)]
    assert {"FP2-F4", "FP2-F8", "F8-T8"} <= set(named) and not {"C3-P3", "P3-O1", "CZ-PZ"} & set(named)
    seizure = transform.log_power(_window(chbmit_dir / "chb01" / "chb01_03_onset.edf", 12.0))
    assert muscle_channels(seizure, SPEC.freqs_hz) == []
    assert muscle_channels(emg, [1.0, 2.0, 3.0]) == []  # a grid without both bands names nothing


def test_eye_blinks_are_named_by_their_frontopolar_delta_and_seizures_are_not(eegmmidb_dir, chbmit_dir,
                                                                              neonatal_dir):
    """S003R05's blinks and lateral eye movements (400 µV slow waves on FP1/FP2 and F7/F8 every
    1-1.5 s, a false alarm of the seventh build's leave-one-patient-out folds) carry more than three
    times the delta power of the derivations behind them; chb01's and neo07's seizures do not. The
    monitor, `ictal explain` and `ictal report` name the first and not the others."""
    transform = CWTransform(SPEC)
    blinks = transform.log_power(_window(eegmmidb_dir / "S003" / "S003R05.edf", 14.0))
    excess = frontopolar_delta_excess(blinks, SPEC.freqs_hz, SPEC.channels)
    assert eye_movement_like(excess) and excess > OCULAR_EXCESS_DECADES + 0.3
    reading = ocular_reading(blinks, SPEC.freqs_hz, SPEC.channels)
    assert reading == {"frontopolar_delta_excess": round(excess, 3), "eye_movement_like": True}
    assert f"{10 ** excess:.1f}x the derivations behind them" in eye_movement_text(excess)
    for seizure in (transform.log_power(_window(chbmit_dir / "chb01" / "chb01_03_onset.edf", 12.0)),
                    transform.log_power(_window(neonatal_dir / "neo07_seizure.edf", 12.0))):
        assert not ocular_reading(seizure, SPEC.freqs_hz, SPEC.channels)["eye_movement_like"]
    # a batch reads like its windows one by one
    both = frontopolar_delta_excess(np.stack([blinks, blinks - 1.0]), SPEC.freqs_hz, SPEC.channels)
    assert np.allclose(both, excess)  # and a gain change does not move it
    # a montage without a frontopolar link on each side has no such measure
    assert ocular_reading(blinks[:8], SPEC.freqs_hz, SPEC.channels[:8]) == {"frontopolar_delta_excess": None,
                                                                            "eye_movement_like": False}


def test_beat_picking_follows_scipy_find_peaks_height_and_distance_rules():
    """The runtime does not import scipy.signal (its memory); its peak picker must agree with it."""
    from scipy.signal import find_peaks

    from ictal.runtime.artefacts import _peaks
    rng = np.random.default_rng(1)
    for _ in range(50):
        envelope = np.abs(rng.normal(size=600)).cumsum() % 7  # plateaus, ramps and ties
        height, distance = rng.uniform(1, 5), int(rng.integers(2, 80))
        expected, _ = find_peaks(envelope, height=height, distance=distance)
        np.testing.assert_array_equal(_peaks(envelope, height, distance), expected)


@pytest.mark.parametrize("argv, removes", [([], True), (["--cardiac-artefact", "keep"], False),
                                           (["--cardiac-artefact", "remove"], True)])
def test_training_removes_cardiac_artefact_unless_told_to_keep_it(argv, removes, tmp_path):
    from ictal.models.commands import spec_from_args
    from ictal.runtime.cli import build_parser
    args = build_parser().parse_args(["train", "data", "-o", str(tmp_path / "m.pt"), *argv])
    assert spec_from_args(args).remove_cardiac_artefact is removes
    # a spec file decides for itself unless the flag is given
    FeatureSpec(remove_cardiac_artefact=False).save(tmp_path / "spec.json")
    args = build_parser().parse_args(["train", "data", "-o", str(tmp_path / "m.pt"), "--spec",
                                      str(tmp_path / "spec.json"), *argv])
    assert spec_from_args(args).remove_cardiac_artefact is (removes and bool(argv))


def test_a_focal_periodic_seizure_discharge_is_not_taken_for_heart_beats(neonatal_dir):
    """neo38's seizure: sharp discharges every ~0.4 s on F3-C3 and C3-P3, as alike from one to the
    next as heart beats are. They are the seizure's evidence and stay; only a field spread over the
    head is read as the heart."""
    window = _window(neonatal_dir / "neo38_seizure.edf", 1.0)
    found = find_cardiac_beats(window, SPEC.sfreq_hz)
    assert len(found.peaks) >= 5 and found.stereotypy >= 0.8  # regular and stereotyped ...
    assert found.focality > 0.9 and not found.is_cardiac  # ... but on two channels
    assert remove_cardiac_artefact(window, SPEC.sfreq_hz) is window


def test_the_zero_phase_band_is_the_butterworths_squared_magnitude():
    from scipy.signal import butter, sosfreqz

    from ictal.runtime.artefacts import BAND_HZ, _sos_power_response
    from ictal.runtime.dsp import butter_bandpass_sos
    freqs = np.linspace(0, 127, 300)
    _, h = sosfreqz(butter(2, BAND_HZ, "bandpass", fs=256.0, output="sos"), freqs, fs=256.0)
    np.testing.assert_allclose(_sos_power_response(butter_bandpass_sos(2, *BAND_HZ, 256.0), freqs, 256.0),
                               np.abs(h) ** 2, atol=1e-12)


def test_scores_csv_and_the_monitor_say_which_windows_had_their_heart_beats_removed(eegmmidb_dir, tmp_path):
    """A reader of an alert or of scores.csv must be able to tell that a score, and its
    explanation, are of EEG without its heart beats: S003's ECG-laden run is flagged,
    window by window, in `ictal evaluate`'s scores.csv and in the monitor's score records."""
    import csv
    import dataclasses
    import shutil

    from test_cli import _ictal
    from test_monitor_faults import _events, _replay_into

    from ictal.runtime.edf import read_edf
    from ictal.runtime.shipped import SHIPPED_MODEL

    run = eegmmidb_dir / "S003" / "S003R05.edf"
    (tmp_path / "data").mkdir()
    shutil.copy(run, tmp_path / "data" / run.name)
    r = _ictal("evaluate", tmp_path / "data", "--model", SHIPPED_MODEL, "--out-dir", tmp_path / "out", "--hop", "5")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "scores.csv")))
    flags = np.array([int(row["heart_beats_removed"]) for row in rows])
    assert set(flags) <= {0, 1} and flags.mean() > 0.5  # 74 % of S003's windows meet the rule

    rec = read_edf(run)
    rec = dataclasses.replace(rec, data_uv=rec.data_uv[:, :int(30 * rec.sfreq_hz)], annotations=[])
    (tmp_path / "monitor").mkdir()
    mon, log = _replay_into(SHIPPED_MODEL, rec, tmp_path / "monitor", lsl_outputs=False)
    scored = _events(log, "score")
    assert len(scored) >= 15
    assert 0.5 < np.mean([e.get("heart_beats_removed", False) for e in scored])


def test_scores_csv_counts_the_emg_like_derivations_of_each_window(eegmmidb_dir, tmp_path):
    """A researcher sorting false alarms offline sees the monitor's EMG cue too: every window of
    S005R07 (frontal and temporal muscle throughout) has EMG-like derivations in `ictal evaluate`'s
    scores.csv, its window at 38 s the four named above, and S001's eyes-open rest has none."""
    import csv
    import shutil

    from test_cli import _ictal

    from ictal.runtime.shipped import SHIPPED_MODEL

    emg, rest = eegmmidb_dir / "S005" / "S005R07.edf", eegmmidb_dir / "S001" / "S001R01.edf"
    eyes = eegmmidb_dir / "S003" / "S003R05.edf"
    (tmp_path / "data").mkdir()
    for run in (emg, rest, eyes):
        shutil.copy(run, tmp_path / "data" / run.name)
    r = _ictal("evaluate", tmp_path / "data", "--model", SHIPPED_MODEL, "--out-dir", tmp_path / "out", "--hop", "2")
    assert r.returncode == 0, r.stderr
    counts: dict[str, dict[float, int]] = {}
    evidence: dict[str, list[float]] = {}
    ocular: dict[str, dict[float, float]] = {}
    for row in csv.DictReader(open(tmp_path / "out" / "scores.csv")):
        counts.setdefault(row["recording"], {})[float(row["start_s"])] = int(row["muscle_like_channels"])
        evidence.setdefault(row["recording"], []).append(float(row["channel_evidence"]))
        ocular.setdefault(row["recording"], {})[float(row["start_s"])] = float(row["frontopolar_delta_excess"])
    # the channel veto's reading beside each score: on most of S005R07's windows no derivation
    # looks like seizure on its own (evidence below 0: the score was pushed down)
    assert np.all(np.isfinite(evidence[emg.name])) and np.median(evidence[emg.name]) < 0
    window = CWTransform(SPEC).log_power(_window(emg, 38.0))
    assert counts[emg.name][38.0] == len(muscle_channels(window, SPEC.freqs_hz)) >= 3
    assert min(counts[emg.name].values()) >= 1
    assert max(counts[rest.name].values()) == 0
    # and the eye-movement measure: S003R05's blinks at 14 s as the monitor reads them
    blinks = CWTransform(SPEC).log_power(_window(eyes, 14.0))
    assert ocular[eyes.name][14.0] == pytest.approx(frontopolar_delta_excess(blinks, SPEC.freqs_hz, SPEC.channels),
                                                    abs=1e-3)
    assert eye_movement_like(ocular[eyes.name][14.0])
