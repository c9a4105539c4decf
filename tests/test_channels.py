import numpy as np
import pytest

from ictal.runtime.channels import REGIONS, channel_region, normalise_label, region_members, resolve_montage
from ictal.runtime.edf import read_edf
from ictal.runtime.errors import ChannelMismatch
from ictal.runtime.features import CHBMIT_CHANNELS, DOUBLE_BANANA


@pytest.mark.parametrize("label,expected", [
    ("EEG FP1-REF", "FP1"), ("Fp1.", "FP1"), ("T3", "T7"), ("EEG T5-LE", "P7"), ("t4-t6", "T8-P8"),
    ("F7-CS2", "F7"), ("fp1-f7", "FP1-F7"), ("T8-P8-1", "T8-P8"), ("EEG Fp1-A1", "FP1"), ("C4-M2", "C4"),
    ("O1-A1+A2", "O1"), ("POL Fp1", "FP1"), ("EEG:Fp1", "FP1"), ("EEG-T3", "T7"), ("Fp1_REF", "FP1"),
    ("EEG Fp1 (REF)", "FP1"), ("C4 (A1+A2)", "C4"), ("EKG", "EKG")])
def test_labels_match_case_insensitively_with_old_and_new_names(label, expected):
    assert normalise_label(label) == expected


def test_bipolar_montage_is_derived_from_referential_eegmmidb_channels(eegmmidb_dir):
    rec = read_edf(eegmmidb_dir / "S001" / "S001R01.edf")
    m = resolve_montage(rec.labels, CHBMIT_CHANNELS, allow_missing=3)
    assert sorted(m.missing) == ["FT10-T8", "FT9-FT10", "T7-FT9"]
    out = m.apply(rec.data_uv)
    fp1, f7 = rec.labels.index("Fp1."), rec.labels.index("F7..")
    np.testing.assert_allclose(out[0], rec.data_uv[fp1] - rec.data_uv[f7])
    assert np.all(out[CHBMIT_CHANNELS.index("T7-FT9")] == 0)


def test_missing_channel_error_names_electrodes_and_the_way_out(eegmmidb_dir):
    rec = read_edf(eegmmidb_dir / "S001" / "S001R01.edf")
    with pytest.raises(ChannelMismatch, match=r"lacks FT9, FT10 needed for T7-FT9, FT9-FT10, FT10-T8.*"
                                              r"--allow-missing 3"):
        resolve_montage(rec.labels, CHBMIT_CHANNELS, source_name="stream 'BioSemi'")


def test_a_reduced_montage_is_refused_as_one_the_model_cannot_score():
    """A NICU's nine-electrode montage lacks 18 of the double banana's 18 derivations: zero-filling
    them is not a way out, and the error says so instead of offering --allow-missing 18 alone."""
    nicu = [f"{e}-REF" for e in ("Fp1", "Fp2", "C3", "C4", "T3", "T4", "O1", "O2", "Cz")]
    with pytest.raises(ChannelMismatch, match=r"lacks F7, P7, .* more than a quarter of the model's 18 channels: "
                                              r"zero-filled, the model's scores mean little.*--allow-missing 18 "
                                              r"--force"):
        resolve_montage(nicu, DOUBLE_BANANA)


def test_tuh_style_labels_and_reversed_derivations():
    src = ["EEG FP1-REF", "EEG F7-REF", "EEG T3-REF", "EEG T5-REF", "EEG O1-REF"]
    m = resolve_montage(src, ["FP1-F7", "F7-T7", "T7-P7", "P7-O1"])
    assert m.how == ["derived FP1-F7", "derived F7-T7", "derived T7-P7", "derived P7-O1"]
    m2 = resolve_montage(["T7-P7"], ["P7-T7"])
    np.testing.assert_allclose(m2.apply(np.array([[1.0, -2.0]])), [[-1.0, 2.0]])


def test_ear_referenced_recordings_derive_each_chain_within_one_reference():
    """Many hospitals reference each side to its own ear (Fp1-A1 … Fp2-A2). The double banana
    is derived pair by pair within a reference; where an electrode is on both ears, the pair
    takes the reference they share."""
    from ictal.runtime.features import FeatureSpec

    double_banana = list(FeatureSpec().channels)
    left = ["Fp1", "F7", "T3", "T5", "O1", "F3", "C3", "P3"]
    right = ["Fp2", "F8", "T4", "T6", "O2", "F4", "C4", "P4"]
    mid = ["Fz", "Cz", "Pz"]
    src = [f"EEG {e}-A1" for e in left + mid] + [f"EEG {e}-A2" for e in right] + ["EEG Cz-A2"]
    m = resolve_montage(src, double_banana)
    assert not m.missing and all(h.startswith("derived") for h in m.how)
    for row, target in zip(m.matrix, double_banana):
        used = [src[i] for i in np.flatnonzero(row)]
        assert len({u.rsplit("-", 1)[1] for u in used}) == 1, (target, used)  # one reference per derivation
    assert [src[i] for i in np.flatnonzero(m.matrix[double_banana.index("FZ-CZ")])] == ["EEG Fz-A1", "EEG Cz-A1"]


def test_a_derivation_across_two_references_is_missing_and_the_error_says_why():
    with pytest.raises(ChannelMismatch, match=r"cannot build FP1-F7.*no common reference for FP1-F7 "
                                              r"\(FP1 on A1, F7 on A2\).*--allow-missing 1"):
        resolve_montage(["Fp1-A1", "F7-A2"], ["FP1-F7"])
    m = resolve_montage(["Fp1-A1", "F7-A2"], ["FP1-F7"], allow_missing=1)
    assert m.missing == ["FP1-F7"] and not m.matrix.any()
    # a label that names no reference is on the recording's own: it pairs with either
    assert resolve_montage(["Fp1-A1", "F7"], ["FP1-F7"]).how == ["derived FP1-F7"]


def test_a_recording_referenced_to_cz_is_read_as_referential():
    from ictal.runtime.features import FeatureSpec

    double_banana = list(FeatureSpec().channels)
    electrodes = ["Fp1", "F7", "T3", "T5", "O1", "F3", "C3", "P3", "Fp2", "F8", "T4", "T6", "O2", "F4", "C4", "P4",
                  "Fz", "Pz"]
    src = [f"EEG {e}-Cz" for e in electrodes]
    m = resolve_montage(src, double_banana)
    assert not m.missing
    data = np.arange(len(src) * 2, dtype=float).reshape(len(src), 2) ** 2
    out = m.apply(data)
    np.testing.assert_allclose(out[0], data[0] - data[1])  # FP1-F7 = (Fp1-Cz) - (F7-Cz)
    np.testing.assert_allclose(out[double_banana.index("FZ-CZ")], data[electrodes.index("Fz")])
    np.testing.assert_allclose(out[double_banana.index("CZ-PZ")], -data[electrodes.index("Pz")])
    # a bipolar recording never repeats a second electrode that often: it stays bipolar
    assert set(resolve_montage(double_banana, double_banana).how) == {"direct"}
    with pytest.raises(ChannelMismatch, match="lacks FP1, F7"):
        resolve_montage(src[:5], double_banana[:1])  # five against Cz: too few to call Cz the reference
    # a reference name we do not know ('Fp1-Ave') is read the same way: it is on every electrode
    assert not resolve_montage([f"{e}-Ave" for e in electrodes + ["Cz"]], double_banana).missing


def test_every_chbmit_channel_has_one_of_five_regions():
    members = region_members(CHBMIT_CHANNELS)
    assert list(members) == list(REGIONS)
    assert sum(len(v) for v in members.values()) == len(CHBMIT_CHANNELS)
    assert all(members[r] for r in REGIONS)
    assert channel_region("FP1-F7") == "left temporal"  # temporal chain link
    assert channel_region("F8-T8") == "right temporal"
    assert channel_region("C3-P3") == "central" and channel_region("P3-O1") == "parietal-occipital"
    assert channel_region("FZ-CZ") == "frontal"
    assert channel_region("O2") == "parietal-occipital" and channel_region("T4") == "right temporal"
