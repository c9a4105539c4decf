import warnings
from pathlib import Path

import numpy as np
import pytest

from ictal.runtime.annotations import find_labelled_recordings, parse_chbmit_summary
from ictal.runtime.bandwidth import top_band_drop
from ictal.runtime.edf import Annotation, Recording, read_edf, write_edf
from ictal.runtime.errors import EDFError


def test_every_chbmit_clip_loads_with_labels_rate_and_seizure_times(chbmit_dir):
    recs = find_labelled_recordings(chbmit_dir)
    assert len(recs) == 16
    n_seizures = 0
    for lr in recs:
        rec = read_edf(lr.path)
        assert rec.sfreq_hz == 256.0
        assert len(rec.labels) == 23 and rec.labels[0] == "FP1-F7"
        assert rec.labels.count("T8-P8") == 2  # the duplicate of the original files is kept
        for sz in lr.seizures:
            assert 0 <= sz.start_s < sz.end_s <= rec.duration_s
        n_seizures += sum(1 for sz in lr.seizures if sz.start_s in (0.0, 10.0))
        assert np.isfinite(rec.data_uv).all() and 1 < np.std(rec.data_uv) < 1000  # microvolts
    assert n_seizures == 16 - 6  # 4 onset clips + 6 ictal clips; preictal clips have none


def test_onset_clip_seizure_starts_at_10_s(chbmit_dir):
    entries = parse_chbmit_summary(chbmit_dir / "chb01" / "chb01-summary.txt")
    sz = entries["chb01_03_onset.edf"].seizures
    assert [(s.start_s, s.end_s) for s in sz] == [(10.0, 50.0)]


def test_edf_write_read_roundtrip_keeps_data_and_annotations(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(0, 30, (3, 256 * 5))
    rec = Recording(data, 256.0, ["FP1", "F7", "T8-P8"], "x.edf", [Annotation(1.5, 2.0, "seizure")])
    back = read_edf(write_edf(rec, tmp_path / "x.edf"))
    assert back.labels == ["FP1", "F7", "T8-P8"] and back.sfreq_hz == 256.0
    assert np.max(np.abs(back.data_uv - data)) < 0.02  # 16-bit quantisation of ±~150 µV
    assert [(a.onset_s, a.duration_s, a.text) for a in back.annotations] == [(1.5, 2.0, "seizure")]


def test_a_discontinuous_edf_with_gaps_is_refused_and_one_without_gaps_is_read(tmp_path):
    """EDF+D stores only the recorded parts: read as one signal, windows would join EEG across a
    pause and every annotation after it would sit early by the pause's length."""
    rec = Recording(np.random.default_rng(1).normal(0, 30, (3, 256 * 6)), 256.0, ["FP1", "F7", "T7"], "d.edf",
                    [Annotation(4.0, 1.0, "seizure")])
    raw = bytearray(write_edf(rec, tmp_path / "c.edf").read_bytes())
    assert raw[192:197] == b"EDF+C"
    raw[192:197] = b"EDF+D"
    (tmp_path / "no_gap.edf").write_bytes(bytes(raw))
    assert read_edf(tmp_path / "no_gap.edf").data_uv.shape == (3, 256 * 6)  # contiguous records: as EDF+C
    second = raw.find(b"+1\x14\x14")  # the time-keeping annotation of the second 1-s data record
    raw[second:second + 2] = b"+3"  # it starts 2 s after the first ends: a pause
    (tmp_path / "gap.edf").write_bytes(bytes(raw))
    with pytest.raises(EDFError, match=r"gap.edf: an EDF\+D \(discontinuous\) recording with gaps"):
        read_edf(tmp_path / "gap.edf")


def test_truncated_edf_is_refused_naming_the_file(chbmit_dir, tmp_path):
    src = (chbmit_dir / "chb01" / "chb01_18_ictal.edf").read_bytes()
    bad = tmp_path / "cut.edf"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(EDFError, match="cut.edf.*truncated or the header lies"):
        read_edf(bad)


def test_header_that_lies_about_record_count_is_refused(chbmit_dir, tmp_path):
    src = bytearray((chbmit_dir / "chb01" / "chb01_18_ictal.edf").read_bytes())
    src[236:244] = b"99      "  # claims 99 one-second records; the file holds 10
    bad = tmp_path / "liar.edf"
    bad.write_bytes(bytes(src))
    with pytest.raises(EDFError, match="liar.edf.*99 records"):
        read_edf(bad)


def test_non_edf_file_is_refused(tmp_path):
    p = tmp_path / "notes.edf"
    p.write_text("this is a text file, not an EDF recording\n" * 20)
    with pytest.raises(EDFError, match="notes.edf.*not an EDF"):
        read_edf(p)
    with pytest.raises(EDFError, match="no such EDF"):
        read_edf(tmp_path / "missing.edf")


def _patched(src: bytes, tmp_path, name, patch) -> Path:
    data = bytearray(src)
    patch(data, int(data[252:256].decode().strip()))
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out


def _signal_field(data, ns, start, index, text):
    """Overwrite one 8-character per-signal header field (start = its offset in units of ns)."""
    pos = 256 + ns * start + 8 * index
    data[pos:pos + 8] = f"{text:<8}".encode()


def _equal_physical_range(data, ns):  # signal 2's physical maximum set to its physical minimum
    lo, hi = 256 + ns * 104 + 16, 256 + ns * 112 + 16
    data[hi:hi + 8] = data[lo:lo + 8]


@pytest.mark.parametrize("name, patch, match", [
    ("zero_record.edf", lambda d, ns: d.__setitem__(slice(244, 252), b"0       "),
     r"'duration of a data record' is 0 s; expected a positive"),
    ("flat_range.edf", _equal_physical_range, r"channel '.*': physical minimum equals physical maximum"),
    ("text_range.edf", lambda d, ns: _signal_field(d, ns, 128, 0, "abc"),
     r"channel '.*': digital maximum is 'abc'; expected a number"),
    ("furlongs.edf", lambda d, ns: _signal_field(d, ns, 96, 1, "furlong"),
     r"unknown physical dimension on .*'furlong'.*expected uV, mV, V or nV"),
])
def test_header_values_that_cannot_be_scaled_are_refused_naming_the_channel(chbmit_dir, tmp_path, name, patch,
                                                                             match):
    src = (chbmit_dir / "chb01" / "chb01_18_ictal.edf").read_bytes()
    with pytest.raises(EDFError, match=match):
        read_edf(_patched(src, tmp_path, name, patch))


def test_a_channel_at_another_rate_is_skipped_with_a_note(tmp_path):
    import edfio

    t = np.arange(2560) / 256.0
    eeg = [edfio.EdfSignal(20 * np.sin(2 * np.pi * 10 * t + i), 256.0, label=lab, physical_dimension="uV",
                           physical_range=(-100, 100)) for i, lab in enumerate(["FP1-F7", "F7-T7"])]
    ecg = edfio.EdfSignal(np.zeros(5120), 512.0, label="ECG", physical_dimension="mV", physical_range=(-5, 5))
    path = tmp_path / "with_ecg.edf"
    edfio.Edf(eeg + [ecg]).write(path)
    with pytest.warns(UserWarning, match=r"with_ecg.edf: skipped ECG \(512 Hz\): not at the EEG rate of 256 Hz"):
        rec = read_edf(path)
    assert rec.labels == ["FP1-F7", "F7-T7"] and rec.sfreq_hz == 256.0
    # an archive's files share their sensors: said once per folder, not once per file
    edfio.Edf(eeg + [ecg]).write(tmp_path / "with_ecg_2.edf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_edf(tmp_path / "with_ecg_2.edf").labels == ["FP1-F7", "F7-T7"]
    (tmp_path / "other_patient").mkdir()
    edfio.Edf(eeg + [ecg]).write(tmp_path / "other_patient" / "with_ecg.edf")
    with pytest.warns(UserWarning, match=r"said once for the files of .*other_patient"):
        read_edf(tmp_path / "other_patient" / "with_ecg.edf")


def test_a_recording_is_read_and_conditioned_a_block_at_a_time_with_the_same_samples(eegmmidb_dir):
    """Training and evaluation read an EDF a minute at a time (a 14-hour Siena file does not fit
    in memory as float64); the samples must be those of the whole file read at once."""
    from ictal.runtime.edf import open_edf
    from ictal.runtime.features import FeatureSpec
    from ictal.runtime.windows import condition_edf, condition_recording

    path = eegmmidb_dir / "S001" / "S001R03.edf"  # 64 channels at 160 Hz: resampled to 256 Hz
    whole = read_edf(path)
    edf = open_edf(path)
    assert (edf.n_times, edf.sfreq_hz, edf.labels) == (whole.data_uv.shape[1], whole.sfreq_hz, whole.labels)
    np.testing.assert_array_equal(edf.read(1001, 4999), whole.data_uv[:, 1001:4999])
    spec = FeatureSpec()
    ref = condition_recording(whole, spec)
    # 7.3-s blocks: neither a whole data record nor a whole number of output samples
    blocks = condition_edf(edf, spec, block_s=7.3)
    assert blocks.shape == ref.shape and blocks.dtype == ref.dtype == np.float32
    # the same samples: float64 sums that differ by ~4e-9 µV may round to neighbouring float32 values
    np.testing.assert_allclose(blocks, ref, rtol=2 * np.finfo(np.float32).eps, atol=1e-6)


def test_scoring_a_recording_keeps_one_batch_of_features_and_gives_the_same_scores(neonatal_dir):
    from ictal.models.data import log_power_transform, recording_windows
    from ictal.models.evaluate import load_model, score_recording
    from ictal.runtime.shipped import SHIPPED_MODEL

    (lr,) = find_labelled_recordings(neonatal_dir / "neo07_seizure.edf")
    scored = score_recording(str(SHIPPED_MODEL), lr, hop_s=1.0, allow_missing=0, source="neonatal")
    windows, scores, drop, cleaned = scored.windows, scored.scores, scored.top_band_drop, scored.heart_beats_removed
    predict, spec, *_ = load_model(SHIPPED_MODEL)
    kept = recording_windows(lr, spec, log_power_transform(spec), hop_s=1.0, seizure_hop_s=1.0)
    assert len(windows.x) == 0 and len(windows.windows) == len(kept.x) == 21
    np.testing.assert_allclose(scores["model"], predict(kept.x), rtol=0, atol=1e-6)
    assert drop == pytest.approx(float(np.median(top_band_drop(kept.x, spec))), abs=1e-6)
    assert cleaned.shape == (21,) and not cleaned.any()  # neo07 carries no ECG


def test_other_sensors_in_their_own_units_are_skipped_not_a_reason_to_refuse(tmp_path):
    """Siena files carry SPO2 in % and HR in bpm beside the EEG; an EEG channel in an unknown
    unit is still refused (test above)."""
    import edfio

    t = np.arange(2560) / 256.0
    eeg = [edfio.EdfSignal(20 * np.sin(2 * np.pi * 10 * t + i), 256.0, label=lab, physical_dimension="uV",
                           physical_range=(-100, 100)) for i, lab in enumerate(["EEG Fp1", "EEG F7"])]
    spo2 = edfio.EdfSignal(np.full(2560, 97.0), 256.0, label="SPO2", physical_dimension="%", physical_range=(0, 100))
    hr = edfio.EdfSignal(np.full(2560, 80.0), 256.0, label="HR", physical_dimension="bpm", physical_range=(0, 250))
    path = tmp_path / "siena_like.edf"
    edfio.Edf(eeg + [spo2, hr]).write(path)
    with pytest.warns(UserWarning, match=r"siena_like.edf: skipped SPO2 \(%\), HR \(bpm\): not a voltage and not a "
                      r"scalp electrode"):
        rec = read_edf(path)
    assert rec.labels == ["EEG Fp1", "EEG F7"]
    np.testing.assert_allclose(rec.data_uv[0], 20 * np.sin(2 * np.pi * 10 * t), atol=0.01)
