import pytest

from ictal.runtime.annotations import (check_seizures_within, find_labelled_recordings, parse_chbmit_summary,
                                 parse_tuh_csv_bi, seizures_from_edf_annotations)
from ictal.runtime.edf import read_edf
from ictal.runtime.errors import AnnotationError
from ictal.stream_sim.synthetic import write_synthetic_edf


def test_all_24_original_chbmit_summaries_parse(chbmit_dir):
    files = sorted((chbmit_dir / "summaries").glob("chb*-summary.txt"))
    assert len(files) == 24
    per_file = {f.name: parse_chbmit_summary(f) for f in files}
    total = sum(len(e.seizures) for entries in per_file.values() for e in entries.values())
    assert total == 198  # every seizure of the database
    chb01 = per_file["chb01-summary.txt"]
    assert [(s.start_s, s.end_s) for s in chb01["chb01_03.edf"].seizures] == [(2996.0, 3036.0)]
    # 'Seizure 1 Start Time' style and channel lists that change mid-patient
    chb12 = per_file["chb12-summary.txt"]
    assert sum(len(e.seizures) for e in chb12.values()) == 40
    assert len({tuple(e.channels) for e in chb12.values()}) > 1
    assert all(s.seizure_id and s.patient == "chb12" for e in chb12.values() for s in e.seizures)


def test_summary_garbage_line_is_a_clear_error(tmp_path):
    p = tmp_path / "chb99-summary.txt"
    p.write_text("File Name: chb99_01.edf\nNumber of Seizures in File: 1\nSeizure Start Time: ten seconds\n")
    with pytest.raises(AnnotationError, match=r"chb99-summary.txt:3: .*does not parse"):
        parse_chbmit_summary(p)


def test_summary_count_mismatch_is_an_error(tmp_path):
    p = tmp_path / "chb98-summary.txt"
    p.write_text("File Name: chb98_01.edf\nNumber of Seizures in File: 2\n"
                 "Seizure Start Time: 10 seconds\nSeizure End Time: 20 seconds\n")
    with pytest.raises(AnnotationError, match="says 2 seizures but lists 1"):
        parse_chbmit_summary(p)


def test_tuh_csv_bi_labels_merge_channels_into_events(tmp_path):
    p = tmp_path / "aaaaaaac_s001_t000.csv_bi"
    p.write_text("# version = csv_v1.0.0\n# bname = aaaaaaac_s001_t000\n# duration = 301.00 secs\n#\n"
                 "channel,start_time,stop_time,label,confidence\n"
                 "TERM,0.0000,40.0000,bckg,1.0000\nTERM,40.0000,95.5000,seiz,1.0000\n"
                 "TERM,95.5000,301.0000,bckg,1.0000\n")
    sz = parse_tuh_csv_bi(p)
    assert [(s.start_s, s.end_s) for s in sz] == [(40.0, 95.5)]


def test_tusz_v1_tse_labels_are_read_beside_their_edf(tmp_path):
    """TUSZ v1.5 ships `tse_bi` (and the multi-class `tse`) instead of v2's `csv_bi`."""
    from ictal.runtime.annotations import parse_tuh_tse

    edf = write_synthetic_edf(tmp_path / "aaaaaaac_s001_t000.edf", 60, [], seed=5)
    (tmp_path / "aaaaaaac_s001_t000.tse_bi").write_text(
        "version = tse_v1.0.0\n\n0.0000 12.2500 bckg 1.0000\n12.2500 40.0000 seiz 1.0000\n"
        "40.0000 60.0000 bckg 1.0000\n")
    (one,) = find_labelled_recordings(tmp_path)
    assert one.path == edf and one.patient == "aaaaaaac"
    assert [(s.start_s, s.end_s) for s in one.seizures] == [(12.25, 40.0)]  # not the EDF+'s empty annotations
    multi = tmp_path / "other.tse"
    multi.write_text("version = tse_v1.0.0\n\n0.0 5.0 bckg 1.0\n5.0 9.0 fnsz 1.0\n9.0 20.0 cpsz 1.0\n")
    assert [(s.start_s, s.end_s) for s in parse_tuh_tse(multi)] == [(5.0, 20.0)]
    multi.write_text("version = tse_v1.0.0\n\n0.0 5.0 bckg 1.0\n5.0 9.0 fnzs 1.0\n")
    with pytest.raises(AnnotationError, match=r"other.tse:4: label 'fnzs' is not a TUH label"):
        parse_tuh_tse(multi)


def test_tuh_csv_bi_malformed_row_names_file_and_line(tmp_path):
    p = tmp_path / "bad.csv_bi"
    p.write_text("channel,start_time,stop_time,label,confidence\nTERM,abc,10,seiz,1\n")
    with pytest.raises(AnnotationError, match=r"bad.csv_bi:2: start/stop times are not numbers"):
        parse_tuh_csv_bi(p)


def test_edf_plus_seizure_annotations_are_read(tmp_path):
    path = write_synthetic_edf(tmp_path / "s.edf", 60, [(12, 30)], seed=3)
    sz = seizures_from_edf_annotations(read_edf(path))
    assert [(s.start_s, s.end_s) for s in sz] == [(12.0, 30.0)]


def test_one_edf_file_is_read_like_a_folder_that_holds_only_it(tmp_path):
    path = write_synthetic_edf(tmp_path / "s.edf", 60, [(12, 30)], seed=3)
    write_synthetic_edf(tmp_path / "other.edf", 60, [], seed=4)
    (one,) = find_labelled_recordings(path)
    assert one.path.name == "s.edf" and [(s.start_s, s.end_s) for s in one.seizures] == [(12.0, 30.0)]
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AnnotationError, match="notes.txt: not an .edf file"):
        find_labelled_recordings(tmp_path / "notes.txt")


def test_seizure_past_the_end_of_recording_is_refused():
    from ictal.runtime.annotations import Seizure
    with pytest.raises(AnnotationError, match="rec.edf: seizure x#1 at 50-70 s lies outside the recording"):
        check_seizures_within([Seizure(50, 70, "rec.edf", "x", "x#1")], 60.0, "rec.edf")


def test_plain_edf_without_labels_is_not_silently_seizure_free(tmp_path, chbmit_dir):
    d = tmp_path / "unlabelled"
    d.mkdir()
    (d / "x.edf").write_bytes((chbmit_dir / "chb01" / "chb01_18_ictal.edf").read_bytes())
    with pytest.raises(AnnotationError, match="x.edf: no seizure labels"):
        find_labelled_recordings(d)


def test_a_file_listed_twice_in_a_summary_is_an_error(tmp_path):
    entry = ("File Name: chb99_01.edf\nFile Start Time: 10:00:00\nFile End Time: 11:00:00\n"
             "Number of Seizures in File: 1\nSeizure Start Time: 10 seconds\nSeizure End Time: 50 seconds\n\n")
    path = tmp_path / "chb99-summary.txt"
    path.write_text(entry + entry.replace("Number of Seizures in File: 1\nSeizure Start Time: 10 seconds\n"
                                          "Seizure End Time: 50 seconds\n", "Number of Seizures in File: 0\n"))
    with pytest.raises(AnnotationError, match=r"chb99-summary.txt:8: chb99_01.edf is listed again \(first at line 1\)"):
        parse_chbmit_summary(path)


@pytest.mark.parametrize("row, match", [
    ("FP1-F7,10.0,20.0,siez,1.0", r":2: label 'siez' is not a TUH label; expected bckg, seiz"),
    ("FP1-F7,nan,20.0,seiz,1.0", r":2: start/stop times must be finite"),
])
def test_tuh_csv_bi_typos_and_nan_times_are_errors_not_background(tmp_path, row, match):
    path = tmp_path / "rec.csv_bi"
    path.write_text(f"channel,start_time,stop_time,label,confidence\n{row}\n")
    with pytest.raises(AnnotationError, match=match):
        parse_tuh_csv_bi(path)


def test_tuh_csv_bi_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "rec.csv_bi"
    path.write_bytes(b"# version = csv_v1.0.0\nchannel,start_time,stop_time,label,confidence\nFP1,1,2,bckg\xff,1\n")
    with pytest.raises(AnnotationError, match=r"rec.csv_bi:3: byte 0xff is not UTF-8"):
        parse_tuh_csv_bi(path)


# A Siena Scalp EEG seizure list in the forms the database's own lists use: 'Seizure start time'
# or 'Start time', '.' or ':' in clock times, several seizures after one registration block,
# a block that does not repeat its registration, a stray space inside a time, midnight.
SIENA_LIST = """Seizures list of patient PN05

Seizure n 1
File name: PNO5-1.edf
Registration start time: 19.39.33
Registration end time: 19.40.33
Seizure start time: 19.39.53
Seizure end time: 19.40.08

Seizure n 2
File name: PN05-2.edf
Registration start time:2 3.59.40
Registration end time: 00.00.40

Seizure n 2
Start time: 23:59:50
End time: 00:00:02

Seizure n 3
Start time: 00:00:20
End time: 00:00:30
"""


def test_siena_seizure_list_reads_every_form_the_database_uses(tmp_path):
    from ictal.runtime.annotations import parse_siena_seizure_list

    p = tmp_path / "Seizures-list-PN05.txt"
    p.write_text(SIENA_LIST + "\nSeizure n 4\nFile name: PN05-2.edf\nSeizure start time: 00.00.31\n"
                 "Seizure end time: 00.00.35\n")
    assert parse_siena_seizure_list(p) == {"PNO5-1.edf": [(20.0, 35.0)],
                                           "PN05-2.edf": [(10.0, 22.0), (40.0, 50.0), (51.0, 55.0)]}


@pytest.mark.parametrize("text, match", [
    ("File name: PN05-1.edf\nRegistration start time: 10.00.00\nSeizure onset: 10.00.05\n",
     r"Seizures-list-PN05.txt:3: line holds a time but is not a Siena seizure-list field"),
    ("File name: PN05-1.edf\nRegistration start time: 10.00.00\nRegistration end time: 10.01.00\n"
     "Seizure start time: 10.00.50\nSeizure end time: 10.01.10\n", r":5: seizure in PN05-1.edf ends at 10.01.10, "
     "after the registration's end"),
    ("File name: PN05-1.edf\nSeizure start time: 10.00.50\nSeizure end time: 10.01.10\n",
     r":2: seizure in PN05-1.edf before any 'Registration start time:'"),
    ("File name: PN05-1.edf\nRegistration start time: 10.00.00\nSeizure start time: 10.00.50\n",
     r":3: seizure start in PN05-1.edf has no end time"),
    ("File name: PN05-1.edf\nRegistration start time: 10.00.00\nSeizure start time: 10.61.00\n",
     r":3: '10.61.00' is not a clock time"),
])
def test_siena_list_errors_name_the_line(tmp_path, text, match):
    from ictal.runtime.annotations import parse_siena_seizure_list

    p = tmp_path / "Seizures-list-PN05.txt"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=match):
        parse_siena_seizure_list(p)


def _siena_folder(tmp_path, eegmmidb_dir, runs=("PN05-1", "PN05-2", "PN05-3")):
    """A Siena-layout patient folder of real EEG: eegmmidb S001R01 as Siena writes it (labels
    'EEG Fp1', 512 Hz, 60 s), one EDF per run, and the seizure list above."""
    from scipy.signal import resample_poly

    from ictal.runtime.edf import Recording, write_edf

    src = read_edf(eegmmidb_dir / "S001" / "S001R01.edf")
    keep = [i for i, lab in enumerate(src.labels) if lab.strip(".").upper() in
            {"FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T7", "C3", "CZ", "C4", "T8", "P7", "P3", "PZ", "P4",
             "P8", "O1", "O2"}]
    data = resample_poly(src.data_uv[keep, :160 * 60], 16, 5, axis=1)
    labels = ["EEG " + src.labels[i].strip(".").capitalize() for i in keep]
    d = tmp_path / "PN05"
    d.mkdir()
    for run in runs:
        write_edf(Recording(data, 512.0, labels), d / f"{run}.edf")
    (d / "Seizures-list-PN05.txt").write_text(SIENA_LIST)
    return d


def test_a_siena_patient_folder_trains_as_it_is_downloaded(tmp_path, eegmmidb_dir):
    from ictal.models.data import build_windows
    from ictal.runtime.annotations import seizures_for_file
    from conftest import tiny_spec

    d = _siena_folder(tmp_path, eegmmidb_dir)
    recs = {lr.path.name: lr for lr in find_labelled_recordings(d)}
    assert {n: [(s.start_s, s.end_s) for s in lr.seizures] for n, lr in recs.items()} == {
        "PN05-1.edf": [(20.0, 35.0)], "PN05-2.edf": [(10.0, 22.0), (40.0, 50.0)], "PN05-3.edf": []}
    assert {lr.patient for lr in recs.values()} == {"pn05"}
    assert [s.seizure_id for s in recs["PN05-2.edf"].seizures] == ["PN05-2#1", "PN05-2#2"]
    assert seizures_for_file(d / "PN05-2.edf") == recs["PN05-2.edf"].seizures
    # one file passed alone is judged against its siblings: the unlisted one is seizure-free, not an error
    (alone,) = find_labelled_recordings(d / "PN05-3.edf")
    assert alone.seizures == []
    # the 512-Hz referential EEG becomes the double banana, and the windows carry the list's labels
    spec = tiny_spec()
    ws = build_windows(d, spec, hop_s=5, seizure_hop_s=5, log=lambda *_: None)
    by_window = {(w.recording, w.start_s): w.label for w in ws.windows}
    assert by_window[("PN05-1.edf", 20.0)] == 1.0 and by_window[("PN05-1.edf", 0.0)] == 0.0
    assert by_window[("PN05-2.edf", 40.0)] == 1.0
    assert max(v for (r, _), v in by_window.items() if r == "PN05-3.edf") == 0


def test_a_misspelt_siena_file_name_is_an_error_not_background(tmp_path, eegmmidb_dir):
    d = _siena_folder(tmp_path, eegmmidb_dir, runs=("PN05-1", "PN05-3"))
    with pytest.raises(AnnotationError, match=r"PN05: the Siena seizure list names PN05-2.edf, which match no EDF "
                       r"here, and does not name PN05-3.edf"):
        find_labelled_recordings(d)
    # a list name without a run number names the patient's only EDF, and is refused when there are several
    (d / "PN05-3.edf").unlink()
    (d / "Seizures-list-PN05.txt").write_text(SIENA_LIST.replace("PNO5-1.edf", "PN05.edf").split("Seizure n 2")[0])
    assert [(s.start_s, s.end_s) for s in find_labelled_recordings(d)[0].seizures] == [(20.0, 35.0)]
    (d / "PN05-1.edf").rename(d / "PN05-3.edf")
    (d / "PN05-4.edf").write_bytes((d / "PN05-3.edf").read_bytes())
    with pytest.raises(AnnotationError, match=r"'PN05.edf' has no run number and .*PN05 holds PN05-3.edf, PN05-4.edf"):
        find_labelled_recordings(d)
