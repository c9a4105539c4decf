import numpy as np
import pytest

from ictal.runtime.metrics import (EventCounts, auroc, choose_threshold, patient_bootstrap_auroc, proportion_interval,
                                  rate_interval_per_24h, score_events, window_metrics, windows_to_events)


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


@pytest.mark.parametrize("count", [0, 1, 3])
def test_false_alarm_interval_is_the_exact_poisson_interval(count):
    from scipy.stats import poisson

    hours = 9.3
    lo, hi = rate_interval_per_24h(count, hours * 3600)
    to_count = hours / 24  # a rate per 24 h, as the expected count over the hours watched
    assert poisson.cdf(count, hi * to_count) == pytest.approx(0.025, abs=1e-6)
    if count:
        assert poisson.sf(count - 1, lo * to_count) == pytest.approx(0.025, abs=1e-6)
    else:
        assert lo == 0
    summary = EventCounts(fp=count, duration_s=hours * 3600).summary()
    assert summary["false_alarms_per_24h_ci95"] == [lo, hi]
    assert lo <= summary["false_alarms_per_24h"] <= hi
    assert np.isnan(rate_interval_per_24h(1, 0)).all()


def test_event_sensitivity_interval_is_clopper_pearson():
    from scipy.stats import binom

    lo, hi = proportion_interval(36, 38)
    assert binom.sf(35, 38, lo) == pytest.approx(0.025, abs=1e-6)
    assert binom.cdf(36, 38, hi) == pytest.approx(0.025, abs=1e-6)
    assert proportion_interval(7, 7)[1] == 1.0 and proportion_interval(0, 7)[0] == 0.0
    assert EventCounts(n_ref=38, tp_ref=36).summary()["sensitivity_ci95"] == [lo, hi]


def _patients_with_one_inverted(n_patients=12, per_patient=40, seed=0):
    """Windows of n_patients, a quarter of each seizure; the model separates every patient but
    the last, whose seizure windows score lowest."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), per_patient)
    y = np.tile(np.arange(per_patient) < per_patient // 4, n_patients)
    model = np.where(y, 2.0, 0.0) + rng.normal(0, 0.5, y.size)
    last = patients == n_patients - 1
    model[last & y] = -3.0
    return y, model, patients, rng.normal(0, 1, y.size)


def test_auroc_interval_resamples_patients_not_windows():
    """A patient whose seizures the model misses moves the pooled AUROC by the luck of the draw:
    the interval over patients is wide where one over windows, which treats 40 windows of one
    patient as 40 independent draws, would be narrow."""
    y, model, patients, peer = _patients_with_one_inverted()
    r = patient_bootstrap_auroc(y, {"model": model, "peer": peer}, patients, compare="model", n_boot=400)
    by_window = patient_bootstrap_auroc(y, {"model": model}, np.arange(y.size), n_boot=400)
    lo, hi = r["methods"]["model"]["ci95"]
    assert r["n_patients"] == 12 and r["n_resamples"] == 400
    assert lo < r["methods"]["model"]["auroc"] < hi
    assert hi - lo > 2 * np.subtract(*by_window["methods"]["model"]["ci95"][::-1])
    # paired: the model's lead over a coin holds however the patients are drawn
    assert r["model_minus"]["peer"]["ci95"][0] > 0
    assert r["model_minus"]["peer"]["difference"] == pytest.approx(auroc(y, model) - auroc(y, peer))
    same = patient_bootstrap_auroc(y, {"model": model, "copy": model.copy()}, patients, compare="model", n_boot=50)
    assert same["model_minus"]["copy"]["ci95"] == [0.0, 0.0]
    # the same seed, the same interval: a report can be regenerated
    again = patient_bootstrap_auroc(y, {"model": model, "peer": peer}, patients, compare="model", n_boot=400)
    assert again["methods"]["model"]["ci95"] == r["methods"]["model"]["ci95"]


def test_no_auroc_interval_from_fewer_than_five_patients():
    y, model, patients, _ = _patients_with_one_inverted(n_patients=4)
    r = patient_bootstrap_auroc(y, {"model": model}, patients)
    assert r["methods"]["model"] == {"auroc": auroc(y, model), "ci95": None} and r["n_resamples"] == 0


def test_alert_rule_scores_events_as_the_monitor_alarms():
    """Offline events with the monitor's rule: an isolated window above threshold raises nothing;
    3 of 4 open an alert at the third; 10 s below close it; a run inside the refractory 30 s after
    it raises nothing, and raises an alert of its own without a refractory time."""
    from ictal.runtime.alerts import AlertRule

    ends = np.arange(1.0, 61.0)
    p = np.full(ends.size, 0.1)
    p[np.isin(ends, [5, 20, 21, 23, 40, 41, 42])] = 0.9
    assert AlertRule(3, 4).events(ends, p, 0.5) == [(23.0, 34.0)]
    assert AlertRule(3, 4, refractory_s=0).events(ends, p, 0.5) == [(23.0, 34.0), (42.0, 53.0)]
    # order-free, as windows come from several batches
    shuffled = np.random.default_rng(0).permutation(ends.size)
    assert AlertRule(3, 4).events(ends[shuffled], p[shuffled], 0.5) == [(23.0, 34.0)]
    # an unscorable window breaks the run as a gap does live; an alert open at the end closes there
    q = np.full(ends.size, 0.1)
    q[np.isin(ends, [10, 11, 13])] = 0.9
    assert AlertRule(3, 4).events(ends, q, 0.5) == [(13.0, 24.0)]
    q[ends == 12] = np.nan
    assert AlertRule(3, 4).events(ends, q, 0.5) == []
    q[ends >= 55] = 0.9
    assert AlertRule(3, 4).events(ends, q, 0.5) == [(57.0, 60.0)]
