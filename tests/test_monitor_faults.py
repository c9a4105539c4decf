"""Fault injection: the monitor never loses an alert, never goes blind silently, and reads
units, formats, rates and restarted streams correctly. Real LSL on loopback throughout."""
import json
import time

import numpy as np
import pytest

from ictal.runtime.errors import ChannelMismatch, SinkError, StreamError
from ictal.runtime.monitor import Monitor
from ictal.stream_sim.replay import Faults, Replay
from ictal.stream_sim.synthetic import synthetic_recording

from conftest import HEADBOX_HALF, unique_stream_name

SPEED = 20.0


def _monitor(model, tmp_path, name, **kw):
    kw.setdefault("log_path", tmp_path / "log.jsonl")
    return Monitor(model, stream_name=name, console=kw.pop("console", False), name=unique_stream_name("ictal-out"),
                   **kw)


def _replay_into(model, rec, tmp_path, *, replay_kw=None, before_connect=None, **kw):
    name = unique_stream_name()
    replay = Replay(rec, speed=SPEED, name=name, **(replay_kw or {})).start()
    mon = _monitor(model, tmp_path, name, **kw)
    try:
        if before_connect:
            before_connect()
        mon.connect()
        mon.run(idle_exit_s=2.0, duration_s=60)
    finally:
        replay.stop()
        mon.disconnect()
    return mon, _log(kw.get("log_path", tmp_path / "log.jsonl"))


def _log(path):
    return [json.loads(line) for line in open(path).read().splitlines()]


def _events(log, kind):
    return [e for e in log if e["event"] == kind]


# ------------------------------------------------------------------ alerts are never lost
def test_an_unwritable_explanation_folder_never_costs_the_alert(tiny_model, tmp_path):
    def lose_the_folder():  # after the monitor checked it at start: a vanished or full disk
        (tmp_path / "expl" / ".ictal-monitor.lock").unlink()
        (tmp_path / "expl").rmdir()
        (tmp_path / "expl").write_text("a file where the folder was")

    rec = synthetic_recording(110, [(40.0, 80.0)], seed=931, name="sz")
    _, log = _replay_into(tiny_model["onnx"], rec, tmp_path, explain_dir=tmp_path / "expl",
                          before_connect=lose_the_folder)
    onset, expl = _events(log, "alert_onset")[0], _events(log, "alert_explanation")[0]
    assert log.index(onset) < log.index(expl) and "expl" in expl["files_error"]
    assert expl["top_regions"], "the explanation itself is still logged"
    assert any(e["t_lsl"] > onset["t_lsl"] + 20 for e in _events(log, "score")), "scoring went on"


def test_a_failing_log_raises_a_technical_alarm_and_scoring_goes_on(tiny_model, tmp_path, capsys):
    import pylsl

    rec = synthetic_recording(40, [], seed=932, name="full")
    name, out = unique_stream_name(), unique_stream_name("ictal-out")
    replay = Replay(rec, speed=SPEED, name=name).start()
    mon = Monitor(tiny_model["onnx"], stream_name=name, log_path="/dev/full", name=out)
    alerts_in = pylsl.StreamInlet(pylsl.resolve_byprop("name", f"{out}-alerts", timeout=5)[0])
    alerts_in.open_stream(5)
    try:
        mon.connect()
        mon.run(idle_exit_s=2.0, duration_s=60)
        markers, _ = alerts_in.pull_chunk(timeout=1.0)
    finally:
        replay.stop()
        mon.disconnect()
    assert mon.n_scored >= 25
    assert "TECHNICAL ALARM: the JSONL log cannot be written" in capsys.readouterr().out
    alarms = [json.loads(m[0]) for m in markers]
    assert any(a["event"] == "technical_alarm" and a["reason"] == "log_failed" and a["path"] == "/dev/full"
               for a in alarms)


def test_two_monitors_cannot_share_a_log_or_an_explanation_folder(tiny_model, tmp_path):
    first = Monitor(tiny_model["onnx"], log_path=tmp_path / "a.jsonl", explain_dir=tmp_path / "expl",
                    lsl_outputs=False, console=False)
    with pytest.raises(SinkError, match=r"a.jsonl is in use by another running monitor.*--name"):
        Monitor(tiny_model["onnx"], log_path=tmp_path / "a.jsonl", lsl_outputs=False, console=False)
    with pytest.raises(SinkError, match=r"explanation directory .*expl is in use"):
        Monitor(tiny_model["onnx"], log_path=tmp_path / "b.jsonl", explain_dir=tmp_path / "expl",
                lsl_outputs=False, console=False)
    assert first.monitor_id.startswith("ictal@")


def test_an_explanation_folder_that_is_a_file_is_refused_at_start(tiny_model, tmp_path):
    (tmp_path / "expl").write_text("")
    with pytest.raises(SinkError, match=r"explanation directory .*expl: cannot write there"):
        Monitor(tiny_model["onnx"], log_path=tmp_path / "a.jsonl", explain_dir=tmp_path / "expl",
                lsl_outputs=False, console=False)


# ------------------------------------------------------------------ never blind silently
def test_windows_rejected_in_a_row_raise_a_technical_alarm_on_the_console(tiny_model, tmp_path, capsys):
    rec = synthetic_recording(40, [], seed=933, name="flat3")
    flat = ["FP1-F7", "F7-T7", "T7-P7"]
    mon, log = _replay_into(tiny_model["onnx"], rec, tmp_path, replay_kw={"faults": Faults(flat_channels=flat)},
                            console=True)
    assert mon.n_scored == 0 and mon.n_rejected >= 20
    alarm = _events(log, "technical_alarm")
    assert alarm[0]["reason"] == "windows_rejected" and alarm[0]["flat"] == flat
    assert "TECHNICAL ALARM: EEG windows cannot be scored" in capsys.readouterr().out


def test_missing_and_flat_channels_together_beyond_a_quarter_are_not_scored(tiny_model, tmp_path):
    """A stream may lack a few derivations (--allow-missing) and lose a few more to flat or saturated
    electrodes; zero-filled together beyond a quarter of the model's channels, the model's scores
    mean little (the shipped model read every healthy window as a seizure with half of them), so
    such windows are rejected and said so, not scored."""
    import dataclasses

    from ictal.runtime.channels import zero_fill_limit

    rec = synthetic_recording(40, [], seed=941, name="missing3")
    lacking = ["FP1-F3", "F3-C3", "C3-P3"]  # no other derivation of the stream stands in for them
    keep = [i for i, label in enumerate(rec.labels) if label not in lacking]
    rec = dataclasses.replace(rec, data_uv=rec.data_uv[keep], labels=[rec.labels[i] for i in keep])
    limit = zero_fill_limit(18)
    assert limit == 4  # the tiny model's double banana
    with pytest.raises(ChannelMismatch, match=r"--allow-missing 5 would zero-fill more than a quarter .*--force"):
        _monitor(tiny_model["onnx"], tmp_path, "any", allow_missing=5, lsl_outputs=False)

    one_flat = ["FP2-F4"]
    mon, log = _replay_into(tiny_model["onnx"], rec, tmp_path, allow_missing=3,
                            replay_kw={"faults": Faults(flat_channels=one_flat)})
    assert mon.n_scored >= 10 and mon.n_rejected == 0
    assert all(set(e["zero_filled"]) == set(one_flat) for e in _events(log, "score"))

    two_flat = ["FP2-F4", "F4-C4"]
    mon, log = _replay_into(tiny_model["onnx"], rec, tmp_path, allow_missing=3, log_path=tmp_path / "two.jsonl",
                            replay_kw={"faults": Faults(flat_channels=two_flat)})
    assert mon.n_scored == 0 and mon.n_rejected >= 20
    alarm = _events(log, "technical_alarm")[0]
    assert alarm["reason"] == "windows_rejected" and alarm["missing"] == lacking
    assert set(two_flat) <= set(alarm["flat"])

    mon, log = _replay_into(tiny_model["onnx"], rec, tmp_path, allow_missing=3, force=True,
                            log_path=tmp_path / "forced.jsonl", replay_kw={"faults": Faults(flat_channels=two_flat)})
    assert mon.n_scored >= 10, "--force scores them anyway"


def test_a_window_is_rejected_as_soon_as_half_the_head_goes_flat_not_once_all_of_it_is_flat(tiny_model, tmp_path):
    """Half a headbox comes off at 20 s (the right hemisphere's and the midline's electrodes: 9 of
    the 18 derivations flat). A window with a flat second in it is no longer the head's EEG (the
    shipped model read 3 flat seconds of 10 as p 0.61), so it is rejected then, not 10 s later
    when the whole window has gone flat."""
    import dataclasses

    from ictal.stream_sim.synthetic import ELECTRODES

    rec = synthetic_recording(40, [], seed=942, labels=list(ELECTRODES), name="headbox")
    off = [i for i, e in enumerate(rec.labels) if e in HEADBOX_HALF]
    data_uv = rec.data_uv.copy()
    data_uv[off, int(20 * rec.sfreq_hz):] = 0.0
    mon, log = _replay_into(tiny_model["onnx"], dataclasses.replace(rec, data_uv=data_uv), tmp_path)
    t0 = mon.first_t_lsl
    scored = [e["t_lsl"] - t0 for e in _events(log, "score")]
    rejected = [e for e in _events(log, "window_rejected")]
    assert scored and max(scored) < 21.1, "no window with a whole flat second is scored"
    assert min(e["t_lsl"] - t0 for e in rejected) < 21.1 and len(rejected) >= 15
    assert all(e["reason"] == "flat or saturated channels" and len(e["flat"]) == 9 for e in rejected)


def test_a_stream_that_lies_about_its_rate_raises_a_rate_alarm(tiny_model, tmp_path):
    rec = synthetic_recording(40, [], seed=934, name="rate")  # 256 Hz samples declared as 250 Hz
    _, log = _replay_into(tiny_model["onnx"], rec, tmp_path, replay_kw={"faults": Faults(declared_rate_hz=250.0)},
                          rate_span_s=10.0)
    alarm = [e for e in _events(log, "technical_alarm") if e["reason"] == "rate_mismatch"]
    # a 10-s real-time estimate on a loaded 2-core machine is off by up to ~1 % (CI saw 258.8);
    # ±3 Hz still tells the true 256 Hz from the declared 250
    assert alarm and alarm[0]["declared_hz"] == 250.0 and alarm[0]["effective_hz"] == pytest.approx(256, abs=3)


def test_timestamp_jitter_is_not_a_gap_but_a_real_drop_out_still_is(tiny_model, tmp_path):
    # `replay --jitter 0.2` made every chunk look like a gap, so no window ever filled
    rec = synthetic_recording(150, [(50.0, 90.0)], seed=937, name="jitter")
    mon, log = _replay_into(tiny_model["onnx"], rec, tmp_path,
                            replay_kw={"faults": Faults(jitter_s=0.2, dropouts=[(115.0, 5.0)])})
    gaps = _events(log, "gap") + _events(log, "clock_jump")
    assert len(gaps) == 1 and gaps[0]["event"] == "gap" and gaps[0]["seconds"] == pytest.approx(5.0, abs=0.5)
    assert mon.n_scored >= 150 - 10 - 5 - 10 - 2  # all but the drop-out and the refill after it
    onsets = _events(log, "alert_onset")
    assert len(onsets) == 1 and 50.0 <= onsets[0]["t_stream_s"] <= 65.0
    scores = [e["t_lsl"] for e in _events(log, "score")]
    assert np.all(np.diff(scores) > 0.9)  # window times on the dejittered timeline, one per hop


def test_a_stream_restarted_with_other_channels_is_followed_or_refused(tiny_model, eegmmidb_dir, tmp_path):
    from ictal.runtime.edf import read_edf

    name = unique_stream_name()
    first = Replay(synthetic_recording(30, [], seed=935, name="a"), speed=SPEED, name=name, markers=False).start()
    mon = _monitor(tiny_model["onnx"], tmp_path, name, stale_s=0.5)
    mon.connect()
    second = third = None
    try:
        mon.run(idle_exit_s=1.5, duration_s=30)
        first.stop()
        # the amplifier comes back as a new outlet, 64 referential channels at 160 Hz
        second = Replay(read_edf(eegmmidb_dir / "S001" / "S001R01.edf"), speed=SPEED, name=name,
                        markers=False).start()
        mon.run(idle_exit_s=3.0, duration_s=30)
        second.stop()
        third = Replay(synthetic_recording(30, [], seed=936, labels=["FP1", "F7", "T7"], name="c"), speed=SPEED,
                       name=name, markers=False).start()
        with pytest.raises(ChannelMismatch, match=rf"stream '{name}' lacks"):
            mon.run(idle_exit_s=3.0, duration_s=30)
    finally:
        for r in (first, second, third):
            if r:
                r.stop()
        mon.disconnect()
    log = _log(tmp_path / "log.jsonl")
    connected = _events(log, "connected")
    assert [c["sfreq_hz"] for c in connected] == [256.0, 160.0]
    assert _events(log, "stream_replaced")[0]["new_channels"] == 64
    after = [e for e in log[log.index(connected[1]):] if e["event"] == "score"]
    assert len(after) >= 30 and mon.n_scored - len(after) >= 15, "scored both streams"


# ------------------------------------------------------------------ units and formats
def test_a_stream_in_volts_scores_as_the_same_stream_in_microvolts(tiny_model, tmp_path):
    rec = synthetic_recording(30, [(5.0, 25.0)], seed=937, name="volts")
    _, uv = _replay_into(tiny_model["onnx"], rec, tmp_path / "uv")
    _, v = _replay_into(tiny_model["onnx"], rec, tmp_path / "v", replay_kw={"unit": "volts"})
    assert _events(v, "connected")[0]["uv_per_unit"][0] == 1e6
    p_uv, p_v = [np.array([e["p"] for e in _events(log, "score")]) for log in (uv, v)]
    assert len(p_v) == len(p_uv) >= 18 and not _events(v, "window_rejected")
    np.testing.assert_allclose(p_v, p_uv, atol=1e-3)


def test_volts_declared_as_microvolts_raise_a_technical_alarm_that_names_the_units(tiny_model, tmp_path, capsys):
    """A stream whose EEG is in volts but whose channels say microvolts reads a million times too
    small: every channel is flat. The alarm must send the reader to the units, not only say that
    windows cannot be scored."""
    import dataclasses

    rec = synthetic_recording(30, [], seed=943, name="mislabelled")
    mon, log = _replay_into(tiny_model["onnx"], dataclasses.replace(rec, data_uv=rec.data_uv * 1e-6), tmp_path,
                            console=True)
    assert mon.n_scored == 0
    alarm = _events(log, "technical_alarm")[0]
    assert alarm["reason"] == "windows_rejected" and alarm["why"].startswith("every channel flat")
    assert "declared as microvolts" in alarm["why"] and "declared as microvolts" in capsys.readouterr().out


def test_unknown_units_are_refused_unless_given(tiny_model, tmp_path):
    rec = synthetic_recording(30, [], seed=938, name="furlong")
    name = unique_stream_name()
    replay = Replay(rec, speed=2.0, name=name, unit="furlongs").start()
    try:
        with pytest.raises(StreamError, match=r"unknown units .*FP1-F7 \('furlongs'\).*--units uV"):
            _monitor(tiny_model["onnx"], tmp_path, name).connect()
        mon = _monitor(tiny_model["onnx"], tmp_path, name, units="uV", log_path=tmp_path / "ok.jsonl").connect()
        mon.disconnect()
    finally:
        replay.stop()
    assert _events(_log(tmp_path / "ok.jsonl"), "connected")[0]["units"][0] == "furlongs"


@pytest.mark.parametrize("fmt", ["double64", "int16"])
def test_numeric_formats_and_a_lower_case_type_are_accepted(tiny_model, tmp_path, fmt):
    rec = synthetic_recording(25, [], seed=939, name="fmt")
    kind = unique_stream_name("EEGTYPE")
    name = unique_stream_name()
    replay = Replay(rec, speed=SPEED, name=name, channel_format=fmt, stream_type=kind.lower()).start()
    mon = Monitor(tiny_model["onnx"], stream_type=kind.upper(), log_path=tmp_path / "log.jsonl", console=False,
                  lsl_outputs=False)
    try:
        mon.connect()
        mon.run(idle_exit_s=2.0, duration_s=30)
    finally:
        replay.stop()
        mon.disconnect()
    assert mon.source.stream_name == name and mon.n_scored >= 10


def test_string_and_empty_streams_are_refused_with_a_clear_error(tiny_model, tmp_path):
    import pylsl

    for channels, fmt, match in ((1, "string", "sends strings; EEG must be numeric"),
                                 (0, "float32", "declares 0 channels")):
        name = unique_stream_name()
        outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EEG", channels, 256, fmt, name))
        with pytest.raises(StreamError, match=match):
            _monitor(tiny_model["onnx"], tmp_path, name, allow_missing=23, force=True, lsl_outputs=False).connect()
        del outlet


def test_falling_behind_is_reported_as_such(tiny_model, tmp_path):
    rec = synthetic_recording(40, [], seed=940, name="behind")
    name = unique_stream_name()
    replay = Replay(rec, speed=1.0, name=name, t0=None).start()
    mon = _monitor(tiny_model["onnx"], tmp_path, name, behind_s=2.0, lsl_outputs=False)
    mon.connect()
    try:
        time.sleep(8.0)  # a monitor stalled by something else: samples queue up in the inlet
        mon.run(duration_s=3.0)
    finally:
        replay.stop()
        mon.disconnect()
    log = _log(tmp_path / "log.jsonl")
    behind = [e for e in _events(log, "technical_alarm") if e["reason"] == "falling_behind"]
    assert behind and behind[0]["lag_s"] > 2.0
    assert [e for e in _events(log, "technical_alarm_cleared") if e["reason"] == "falling_behind"], \
        "cleared once it caught up"


def test_replaying_an_edf_reads_it_a_block_at_a_time_and_sends_every_sample_with_its_faults(eegmmidb_dir):
    """A many-hour file is replayed without holding it in memory: the replay reads the EDF in
    10-s blocks, and what arrives over LSL is the file itself, with the faults asked for."""
    import pylsl

    from ictal.runtime.edf import EdfFile, read_edf

    path = eegmmidb_dir / "S001" / "S001R01.edf"  # 64 channels at 160 Hz, 61 s
    name = unique_stream_name()
    replay = Replay(path, speed=40.0, name=name, markers=False, keep_outlet_until_stop=True,
                    faults=Faults(nan_bursts=[(12.5, 1.0)], flat_channels=["Cz.."])).start()
    assert isinstance(replay.rec, EdfFile)  # opened, not read
    inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", name, timeout=5)[0], max_buflen=120)
    got = []
    try:
        while not (replay.finished.is_set() and inlet.samples_available() == 0):
            chunk, _ = inlet.pull_chunk(timeout=0.5, max_samples=4096)
            got += chunk
    finally:
        replay.stop()
    got = np.asarray(got, dtype=np.float64)
    want = read_edf(path).data_uv.T.astype(np.float32).astype(np.float64)
    assert got.shape == want.shape == (9760, 64)
    nan_rows = np.isnan(got).any(axis=1)
    assert np.flatnonzero(nan_rows).tolist() == list(range(2000, 2160))  # 12.5-13.5 s at 160 Hz
    cz = replay.rec.labels.index("Cz..")
    assert (got[~nan_rows, cz] == want[0, cz]).all()
    others = np.arange(64) != cz
    np.testing.assert_array_equal(got[~nan_rows][:, others], want[~nan_rows][:, others])


def test_a_stream_low_passed_below_the_models_band_raises_a_band_alarm(eegmmidb_dir, tmp_path):
    """A bedside system filtering at 30 Hz removes the top of the model's 0.5-40 Hz band, which
    its full summary regression reads as seizure-like slowing: once 30 windows are scored the
    monitor says so (a technical alarm, saying whether the model scores such windows with its
    gamma-free fallback), and says nothing on the same EEG unfiltered."""
    import dataclasses

    from test_generalisation import _low_passed

    from ictal.runtime.bandwidth import BAND_LIMITED_DECADES
    from ictal.runtime.edf import read_edf
    from ictal.runtime.shipped import SHIPPED_MODEL

    rec = read_edf(eegmmidb_dir / "S002" / "S002R03.edf")
    rec = dataclasses.replace(rec, data_uv=rec.data_uv[:, :int(50 * rec.sfreq_hz)], annotations=[])
    for filtered in (False, True):
        played = _low_passed(rec, 30.0, "S002R03-30hz") if filtered else rec
        (tmp_path / str(filtered)).mkdir()
        mon, log = _replay_into(SHIPPED_MODEL, played, tmp_path / str(filtered), lsl_outputs=False)
        alarms = [e for e in _events(log, "technical_alarm") if e["reason"] == "band_limited"]
        assert mon.n_scored >= 35
        if filtered:
            assert len(alarms) == 1 and alarms[0]["top_band_drop"] < BAND_LIMITED_DECADES
            assert alarms[0]["gamma_free_fallback"] is True  # the shipped model has one
            first_score = next(i for i, e in enumerate(log) if e["event"] == "score")
            assert sum(e["event"] == "score" for e in log[first_score:log.index(alarms[0])]) >= 30
        else:
            assert not alarms
