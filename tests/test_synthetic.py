import numpy as np

from ictal.runtime.features import CHBMIT_CHANNELS
from ictal.stream_sim.synthetic import synthetic_recording


def _band_power(x, sf, lo, hi):
    f = np.fft.rfftfreq(x.shape[-1], 1 / sf)
    p = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    return p[..., (f >= lo) & (f < hi)].sum(axis=-1)


def test_synthetic_seizure_is_rhythmic_3_8_hz_and_starts_in_its_onset_region():
    rec = synthetic_recording(90, [(30, 70)], seed=4, onset_region="left temporal")
    assert rec.labels == CHBMIT_CHANNELS and rec.sfreq_hz == 256.0
    sf = rec.sfreq_hz
    pre, ictal = rec.data_uv[:, : int(25 * sf)], rec.data_uv[:, int(40 * sf): int(65 * sf)]
    ratio = _band_power(ictal, sf, 3, 8) / _band_power(pre, sf, 3, 8)
    assert np.median(ratio) > 10
    # first 2 s of the seizure: the left temporal chain leads, the right side has not joined yet
    early = rec.data_uv[:, int(32 * sf): int(34.5 * sf)]
    left = _band_power(early[CHBMIT_CHANNELS.index("F7-T7")], sf, 3, 8)
    right = _band_power(early[CHBMIT_CHANNELS.index("F8-T8")], sf, 3, 8)
    assert left > 5 * right
    assert [(a.onset_s, a.duration_s, a.text) for a in rec.annotations] == [(30.0, 40.0, "seizure")]


def test_synthetic_eeg_is_reproducible_from_its_seed():
    a = synthetic_recording(20, [(5, 15)], seed=7).data_uv
    b = synthetic_recording(20, [(5, 15)], seed=7).data_uv
    c = synthetic_recording(20, [(5, 15)], seed=8).data_uv
    assert np.array_equal(a, b) and not np.array_equal(a, c)
