import numpy as np
import pytest
import pywt

from ictal.runtime.conditioning import StreamingFilter, StreamingResampler
from ictal.runtime.errors import SpecError
from ictal.runtime.features import CWTransform, FeatureSpec
from ictal.runtime.windows import make_windows


def test_cwt_matches_pywavelets_fft_method():
    spec = FeatureSpec(channels=["FP1-F7", "F7-T7"])
    tr = CWTransform(spec)
    x = np.random.default_rng(0).normal(0, 20, (2, spec.n_samples))
    ref, _ = pywt.cwt(x, tr.scales, spec.wavelet, method="fft", axis=-1)
    ref = np.moveaxis(ref, 0, 1)
    scale = np.abs(ref).max()
    assert np.abs(tr.cwt(x) - ref).max() < 1e-4 * scale
    assert np.abs(tr.cwt(x, tr.q) - ref[..., ::tr.q]).max() < 1e-4 * scale


def test_default_features_have_the_documented_shape_and_dtype():
    spec = FeatureSpec()
    f = CWTransform(spec)(np.random.default_rng(1).normal(0, 20, (18, 2560)))
    assert f.shape == (18, 40, 80) == spec.input_shape and f.dtype == np.float32


def test_sinusoid_power_peaks_at_its_frequency():
    spec = FeatureSpec(channels=["FP1-F7"])
    t = np.arange(spec.n_samples) / spec.sfreq_hz
    lp = CWTransform(spec).log_power(50 * np.sin(2 * np.pi * 6.0 * t)[None])
    edge = int(1.25 * spec.columns_per_s)  # away from the window's edges
    assert spec.freqs_hz[int(np.argmax(lp[0, :, edge:-edge].mean(axis=1)))] == 6.0


def test_seed_method_grid_is_reachable_by_configuration():
    spec = FeatureSpec.seed_method_grid(channels=["FP1-F7"])
    assert spec.input_shape == (1, 391, 1280) and spec.sfreq_hz == 128.0
    assert CWTransform(spec)(np.zeros((1, 1280)) + 1.0).shape == (1, 391, 1280)


def test_spec_survives_json_and_refuses_bad_fields(tmp_path):
    spec = FeatureSpec(norm_mean=[0.0] * 40, norm_std=[1.0] * 40, notch_hz=50.0)
    back = FeatureSpec.load(spec.save(tmp_path / "spec.json"))
    assert back == spec
    with pytest.raises(SpecError, match="unknown field"):
        FeatureSpec.from_dict({**spec.to_dict(), "colour": "red"})
    with pytest.raises(SpecError, match="time_decimation 7 must divide"):
        FeatureSpec(time_decimation=7).validate()
    with pytest.raises(SpecError, match="'norm_mean' has 3 values"):
        FeatureSpec(norm_mean=[0, 0, 0], norm_std=[1, 1, 1]).validate()


def test_nan_windows_are_refused_not_scored():
    spec = FeatureSpec(channels=["FP1-F7"])
    x = np.zeros((1, spec.n_samples))
    x[0, 100] = np.nan
    with pytest.raises(SpecError, match="NaN"):
        CWTransform(spec)(x)


def test_band_masks_cover_1_to_40_hz_once():
    masks = FeatureSpec().band_slices()
    total = sum(m.astype(int) for m in masks.values())
    assert np.all(total == 1)
    assert list(masks) == ["delta", "theta", "alpha", "beta", "gamma"]


def test_filter_and_resampler_give_the_same_samples_in_chunks_as_at_once():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 30, (4, 160 * 20)) + 200.0  # with a DC offset
    whole_f = StreamingFilter(4, 160.0, (0.5, 40.0), 50.0).filter(x)
    f = StreamingFilter(4, 160.0, (0.5, 40.0), 50.0)
    chunked = np.concatenate([f.filter(x[:, i:i + 37]) for i in range(0, x.shape[1], 37)], axis=1)
    np.testing.assert_allclose(chunked, whole_f, atol=1e-9)
    assert abs(whole_f[:, 160:].mean()) < 5  # DC removed without a start-up ring
    whole_r = StreamingResampler(4, 160.0, 256.0).process(x)
    r = StreamingResampler(4, 160.0, 256.0)
    chunked_r = np.concatenate([r.process(x[:, i:i + 50]) for i in range(0, x.shape[1], 50)], axis=1)
    assert whole_r.shape == (4, 256 * 20)
    np.testing.assert_allclose(chunked_r, whole_r, atol=1e-9)


def test_windows_carry_seizure_overlap_and_use_a_smaller_hop_near_seizures():
    from ictal.runtime.annotations import Seizure
    sz = [Seizure(30.0, 45.0, "r.edf", "p", "r#1")]
    w = make_windows(100.0, sz, window_s=10, hop_s=10, seizure_hop_s=1, recording="r.edf", patient="p")
    by_start = {x.start_s: x for x in w}
    assert by_start[30.0].label == 1.0 and by_start[30.0].seizure_id == "r#1"
    assert by_start[0.0].label == 0.0
    assert by_start[25.0].label == pytest.approx(0.5)
    assert 21.0 in by_start and 22.0 in by_start  # 1-s hop around the seizure
    assert all(x.end_s <= 100 for x in w)


def test_numpy_dsp_matches_scipy_signal():
    from scipy import signal

    from ictal.runtime.dsp import SosFilter, butter_bandpass_sos, kaiser_lowpass, notch_sos, sos_steady_state
    fs = 256.0
    ours = np.vstack([butter_bandpass_sos(4, 0.5, 40.0, fs), notch_sos(50.0, 30.0, fs)])
    b, a = signal.iirnotch(50.0, 30.0, fs)
    ref = np.vstack([signal.butter(4, [0.5, 40.0], btype="bandpass", fs=fs, output="sos"), signal.tf2sos(b, a)])
    _, h_ours = signal.sosfreqz(ours, 4096, fs=fs)
    _, h_ref = signal.sosfreqz(ref, 4096, fs=fs)
    assert np.abs(h_ours - h_ref).max() < 1e-9
    np.testing.assert_allclose(sos_steady_state(ref), signal.sosfilt_zi(ref), atol=1e-12)
    x = np.random.default_rng(3).normal(0, 30, (5, 3000)) + 80
    zi = sos_steady_state(ref)[:, None, :] * x[:, :1][None]
    y_ref, z_ref = signal.sosfilt(ref, x, axis=-1, zi=zi)
    y, z = SosFilter(ref).filter(x, zi)
    np.testing.assert_allclose(y, y_ref, atol=1e-9)
    np.testing.assert_allclose(z, z_ref, atol=1e-9)
    np.testing.assert_allclose(kaiser_lowpass(161, 1 / 8), signal.firwin(161, 1 / 8, window=("kaiser", 5.0)),
                               atol=1e-15)


def test_runtime_does_not_import_scipy_signal():
    import subprocess
    import sys
    code = "import sys, ictal.runtime.monitor, ictal.runtime.windows; print('scipy.signal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_batched_log_power_is_the_per_window_log_power_and_pywavelets_pooled_power():
    """Offline scoring transforms many windows at once; the monitor one at a time. Both must give the
    features the model was trained on: |pywt.cwt|² mean-pooled over time_decimation samples, log10."""
    spec = FeatureSpec(channels=["FP1-F7", "F7-T7", "T7-P7"])
    tr = CWTransform(spec)
    x = np.random.default_rng(4).normal(0, 20, (5, 3, spec.n_samples))  # 15 rows: blocks cross windows
    batch = tr.log_power_batch(x, rows_per_block=4)
    assert batch.shape == (5, *spec.input_shape) and batch.dtype == np.float32
    assert np.abs(batch - np.stack([tr.log_power(w) for w in x])).max() < 1e-5
    ref, _ = pywt.cwt(x[0], tr.scales, spec.wavelet, method="fft", axis=-1)
    power = (np.abs(np.moveaxis(ref, 0, 1)) ** 2).reshape(3, len(spec.freqs_hz), spec.n_columns, -1).mean(-1)
    err = np.abs(batch[0] - np.log10(power + spec.log_eps))  # pooled from every q-th coefficient
    assert np.median(err) < 0.03 and err.max() < 0.25, (np.median(err), err.max())  # white noise: the worst case
    with pytest.raises(SpecError, match="window 2 of 5 contains NaN"):
        bad = x.copy()
        bad[2, 1, 7] = np.nan
        tr.log_power_batch(bad)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork is POSIX-only")
def test_a_threaded_transform_still_works_in_a_forked_child():
    """A forked worker (a DataLoader's, a multiprocessing pool's) inherits the transform's thread
    pool but not its threads: the pool must start again there instead of waiting for ever."""
    import multiprocessing

    spec = FeatureSpec(channels=["FP1-F7", "F7-T7", "T7-P7"])
    transform = CWTransform(spec, threads=2)
    x = np.random.default_rng(0).normal(0, 20, (20, 3, spec.n_samples))  # 60 rows: two blocks
    parent = transform.log_power_batch(x)

    def child(queue):
        queue.put(bool(np.array_equal(transform.log_power_batch(x), parent)))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
        pytest.fail("the forked child hung on the inherited thread pool")
    assert proc.exitcode == 0 and queue.get(timeout=10)


def test_cwt_matches_pywavelets_where_a_kernel_crosses_nyquist():
    spec = FeatureSpec(sfreq_hz=128.0, channels=["FP1-F7"], freqs_hz=[4.0, 20.0, 40.0], time_decimation=1)
    tr = CWTransform(spec)
    x = np.random.default_rng(5).normal(0, 20, (1, spec.n_samples))
    ref, _ = pywt.cwt(x, tr.scales, spec.wavelet, method="fft", axis=-1)
    ref = np.moveaxis(ref, 0, 1)
    assert np.abs(tr.cwt(x) - ref).max() < 1e-4 * np.abs(ref).max()
