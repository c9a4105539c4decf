import numpy as np
import pytest

from ictal.runtime.metrics import auroc, choose_threshold, score_events, window_metrics, windows_to_events


def test_detection_20_s_before_onset_counts_as_true_positive():
    c = score_events([(100, 160)], [(80, 85)], 3600)
    assert (c.tp_ref, c.fp) == (1, 0)
    assert c.latencies_s == [-20]


def test_detection_70_s_after_the_end_is_a_false_alarm():
    c = score_events([(100, 160)], [(230, 235)], 3600)
    assert (c.tp_ref, c.fp) == (0, 1)


def test_two_alarms_30_s_apart_are_one_false_alarm():
    c = score_events([], [(1000, 1005), (1035, 1040)], 3600)
    assert c.fp == 1 and c.n_hyp == 1
    assert c.summary()["false_alarms_per_24h"] == pytest.approx(24.0)


def test_events_longer_than_300_s_are_split():
    c = score_events([(0, 700)], [], 3600)
    assert c.n_ref == 3


def test_windows_become_events_at_the_time_a_live_detector_raises_them():
    ends = np.arange(10, 40, 1.0)
    pos = (ends >= 20) & (ends <= 25)
    assert windows_to_events(ends, pos, 1.0) == [(19.0, 25.0)]


def test_window_metrics_on_a_known_confusion():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.2, 0.1, 0.6, 0.3, 0.2, 0.1])
    m = window_metrics(y, p, 0.5)
    assert m["confusion"] == {"tn": 4, "fp": 1, "fn": 1, "tp": 2}
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 5 * 0.8) / 8)
    assert m["auroc"] == pytest.approx(12.5 / 15)  # the tie at 0.2 counts one half


def test_auroc_handles_ties_and_threshold_separates_validation():
    assert auroc([0, 1], [0.5, 0.5]) == 0.5
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    t = choose_threshold(y, p)
    assert 0.3 < t <= 0.7
