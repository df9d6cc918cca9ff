"""raftlab.metrics against hand-computed values and independent reference implementations."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import raftlab.metrics as M
from raftlab.metrics.binning import equal_width_bin_index

torch = pytest.importorskip("torch")
tm = pytest.importorskip("torchmetrics.functional.classification")
netcal_metrics = pytest.importorskip("netcal.metrics")
skm = pytest.importorskip("sklearn.metrics")


def tm_ce(conf, correct, norm, n_bins=10):
    return tm.binary_calibration_error(torch.tensor(conf, dtype=torch.float64), torch.tensor(correct, dtype=torch.long),
                                       n_bins=n_bins, norm=norm).item()


def random_data(n, seed):
    rng = np.random.default_rng(seed)
    conf = rng.random(n)
    correct = (rng.random(n) < conf ** 1.5).astype(int)  # somewhat over-confident
    # continuous data lies on a bin edge with probability 0; make sure, since references use left-closed bins
    assert not np.any(np.isclose(conf * 10, np.round(conf * 10)))
    return conf, correct


# ---------------------------------------------------------------- references on random (off-edge) data

@pytest.mark.parametrize("n,seed", [(7, 0), (50, 1), (333, 2), (2000, 3)])
def test_equal_width_metrics_match_torchmetrics_and_netcal(n, seed):
    conf, correct = random_data(n, seed)
    assert M.ece(conf, correct) == pytest.approx(tm_ce(conf, correct, "l1"), abs=1e-12)
    assert M.mce(conf, correct) == pytest.approx(tm_ce(conf, correct, "max"), abs=1e-12)
    assert M.rms_ce(conf, correct) == pytest.approx(tm_ce(conf, correct, "l2"), abs=1e-12)
    assert M.ece(conf, correct) == pytest.approx(netcal_metrics.ECE(10).measure(conf, correct), abs=1e-12)
    assert M.mce(conf, correct) == pytest.approx(netcal_metrics.MCE(10).measure(conf, correct), abs=1e-12)
    # other bin counts too
    assert M.ece(conf, correct, n_bins=15) == pytest.approx(tm_ce(conf, correct, "l1", 15), abs=1e-12)


@pytest.mark.parametrize("n,seed", [(50, 4), (1000, 5)])
def test_equal_mass_ece_matches_netcal(n, seed):
    # netcal's quantile bins are left-closed, ours right-closed: with n-1 not a multiple of 10 the
    # interpolated quantile edges fall strictly between data points, so both conventions agree.
    conf, correct = random_data(n, seed)
    ref = netcal_metrics.ECE(10, equal_intervals=False).measure(conf, correct)
    assert M.ece_equal_mass(conf, correct) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_auroc_and_brier_match_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    k = 10
    votes = rng.integers(1, k + 1, size=200)
    conf = votes / k  # heavily tied, like self-consistency confidences
    correct = rng.random(200) < conf
    assert M.auroc(conf, correct) == pytest.approx(skm.roc_auc_score(correct, conf), abs=1e-12)
    assert M.brier(conf, correct) == pytest.approx(skm.brier_score_loss(correct, conf), abs=1e-12)
    c2, y2 = random_data(300, seed)
    assert M.auroc(c2, y2) == pytest.approx(skm.roc_auc_score(y2, c2), abs=1e-12)


# ---------------------------------------------------------------- edge cases

def test_all_correct_all_wrong_single_sample_and_conf_one():
    conf = np.array([0.95, 0.85, 1.0, 0.55])
    ones, zeros = np.ones(4, bool), np.zeros(4, bool)
    # all correct (or all wrong) every bin gap has the same sign, so ECE = mean(1 - conf) (mean(conf))
    assert M.ece(conf, ones) == pytest.approx(np.mean(1 - conf))
    assert M.ece(conf, zeros) == pytest.approx(np.mean(conf))
    assert M.mce(conf, zeros) == pytest.approx(0.975)  # 0.95 and 1.0 share the last bin
    assert M.accuracy(ones) == 1.0 and M.accuracy(zeros) == 0.0
    assert np.isnan(M.auroc(conf, ones)) and np.isnan(M.auroc(conf, zeros))
    assert M.brier(conf, zeros) == pytest.approx(np.mean(conf ** 2))
    # these agree with the references (conf 1.0 has its own bin in torchmetrics but the gap is the same)
    assert M.ece(conf, ones) == pytest.approx(tm_ce(conf, ones.astype(int), "l1"))
    assert M.ece(conf, zeros) == pytest.approx(netcal_metrics.ECE(10).measure(conf, zeros.astype(int)), abs=1e-12)

    # a single sample
    assert M.ece([0.7], [True]) == pytest.approx(0.3)
    assert M.mce([0.7], [False]) == pytest.approx(0.7)
    assert M.rms_ce([0.7], [False]) == pytest.approx(0.7)
    assert M.ece_equal_mass([0.7], [False]) == pytest.approx(0.7)
    assert M.brier([0.7], [True]) == pytest.approx(0.09)
    assert np.isnan(M.auroc([0.7], [True]))

    # all confidences 1.0: one bin (the last, never an 11th), ECE = 1 - accuracy
    conf1 = np.ones(6)
    correct = np.array([1, 1, 0, 1, 0, 1])
    assert M.ece(conf1, correct) == pytest.approx(2 / 6)
    assert M.ece(conf1, correct, k=10) == pytest.approx(2 / 6)
    assert M.ece(conf1, correct) == pytest.approx(tm_ce(conf1, correct, "l1"))
    bins = M.reliability_bins(conf1, correct, k=10)
    assert bins.count.tolist() == [0] * 9 + [6] and len(bins.count) == 10


def test_confidences_exactly_on_bin_edges_hand_computed():
    # k = 10 votes: every confidence is on an edge. Right-closed bins (i/10, (i+1)/10]:
    conf = np.array([0.0, 0.1, 0.3, 0.3, 0.4, 0.5, 1.0, 1.0])
    correct = np.array([0, 1, 0, 1, 1, 0, 1, 1])
    # bins: 0.0 & 0.1 -> bin 0; 0.3, 0.3 -> bin 2; 0.4 -> bin 3; 0.5 -> bin 4; 1.0, 1.0 -> bin 9
    assert equal_width_bin_index(conf, k=10).tolist() == [0, 0, 2, 2, 3, 4, 9, 9]
    assert equal_width_bin_index(conf).tolist() == [0, 0, 2, 2, 3, 4, 9, 9]
    gaps = {0: (2, abs(0.5 - 0.05)), 2: (2, abs(0.5 - 0.3)), 3: (1, 0.6), 4: (1, 0.5), 9: (2, 0.0)}
    expected_ece = sum(n / 8 * g for n, g in gaps.values())  # = 0.1125 + 0.05 + 0.075 + 0.0625 = 0.3
    assert expected_ece == pytest.approx(0.3)
    assert M.ece(conf, correct, k=10) == pytest.approx(0.3)
    assert M.ece(conf, correct) == pytest.approx(0.3)
    assert M.mce(conf, correct, k=10) == pytest.approx(0.6)
    assert M.rms_ce(conf, correct, k=10) == pytest.approx(np.sqrt(sum(n / 8 * g ** 2 for n, g in gaps.values())))
    # torchmetrics buckets left-closed against float edges (linspace gives 0.30000000000000004, so 0.3
    # falls below its edge while 0.4 sits on its own, and 1.0 gets an 11th bin): a different convention.
    # 0.35 and 0.4 (k=20 vote shares) share our bin (0.3, 0.4] -> |0.5 - 0.375| = 0.125;
    # left-closed they are split: (|1 - 0.35| + |0 - 0.4|) / 2 = 0.525
    assert M.ece([0.35, 0.4], [1, 0], k=20) == pytest.approx(0.125)
    assert tm_ce(np.array([0.35, 0.4]), np.array([1, 0]), "l1") == pytest.approx(0.525)


def test_float_noise_does_not_move_a_sample_to_another_bin():
    noisy = np.cumsum(np.full(10, 0.1))  # 0.1, 0.2, 0.30000000000000004, ..., 0.9999999999999999
    assert noisy[2] == 0.30000000000000004 and noisy[2] != 0.3
    assert int(np.ceil(noisy[2] * 10)) - 1 == 3  # the naive formula would move it to (0.3, 0.4]
    expected = list(range(10))  # v/10 belongs to bin v - 1
    assert equal_width_bin_index(noisy, k=10).tolist() == expected
    assert equal_width_bin_index(noisy).tolist() == expected
    clean = np.arange(1, 11) / 10
    correct = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1])
    assert M.ece(noisy, correct, k=10) == pytest.approx(M.ece(clean, correct, k=10), abs=1e-12)
    # vote-count binning with k != n_bins, e.g. k = 20: 6/20 = 0.3 -> bin 2, 7/20 = 0.35 -> bin 3
    v = np.arange(21)
    idx = equal_width_bin_index(v / 20 + 1e-13, k=20)
    assert idx.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    # per-sample k
    assert equal_width_bin_index(np.array([2 / 3, 0.3, 1.0]), k=np.array([3, 10, 5])).tolist() == [6, 2, 9]


def test_k10_ece_is_one_bin_per_vote_count_like_the_paper():
    # the paper's code: confidence = votes/10, one bin per vote count, ECE = sum_v n_v/N |acc_v - conf_v|
    rng = np.random.default_rng(12)
    votes = rng.integers(1, 11, 500)
    correct = rng.random(500) < votes / 12
    ref = sum((votes == v).mean() * abs(correct[votes == v].mean() - v / 10) for v in np.unique(votes))
    assert M.ece(votes / 10, correct, k=10) == pytest.approx(ref, abs=1e-12)
    assert M.ece(np.cumsum(np.full(10, 0.1))[votes - 1], correct, k=10) == pytest.approx(ref, abs=1e-12)


def test_k_rejects_confidences_that_are_not_vote_shares():
    with pytest.raises(ValueError, match="multiple of 1/k"):
        M.ece([0.25, 0.5], [1, 0], k=10)
    with pytest.raises(ValueError, match="positive integer"):
        M.ece([0.5], [1], k=0)


def test_invalid_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"conf.*index 1"):
        M.ece([0.2, 1.5], [1, 0])
    with pytest.raises(ValueError, match=r"correct.*index 0"):
        M.ece([0.2], [2])
    with pytest.raises(ValueError, match="same shape"):
        M.brier([0.2, 0.3], [1])
    with pytest.raises(ValueError, match="empty"):
        M.ece([], [])
    with pytest.raises(ValueError, match="finite"):
        M.auroc([np.nan], [1])


def test_equal_mass_hand_examples():
    # quantile edges [0, 0.25, 1]: {0.1, 0.2} gap 0.15, {0.3, 0.4} gap 0.65
    assert M.ece_equal_mass([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], n_bins=2) == pytest.approx(0.4)
    # ties share a bin: edges [0, 0.5, 1]; {0.5 x3} acc 1/3, {0.9} acc 1
    assert M.ece_equal_mass([0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1], n_bins=2) == pytest.approx(0.75 / 6 + 0.025)


def test_auroc_hand_example():
    # pairs (pos, neg): (0.9,0.4) 1, (0.9,0.6) 1, (0.6,0.4) 1, (0.6,0.6) 0.5 -> 3.5 / 4
    assert M.auroc([0.9, 0.6, 0.6, 0.4], [1, 1, 0, 0]) == pytest.approx(0.875)


def test_reliability_bins_table():
    conf = np.array([0.05, 0.15, 0.18, 0.95, 1.0])
    correct = np.array([0, 1, 0, 1, 1])
    bins = M.reliability_bins(conf, correct)
    assert bins.count.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins.accuracy[1] == pytest.approx(0.5) and bins.confidence[1] == pytest.approx(0.165)
    assert np.isnan(bins.accuracy[2]) and np.isnan(bins.confidence[2])
    assert bins.low[0] == 0.0 and bins.high[-1] == 1.0
    rows = bins.to_dicts()
    assert rows[2] == {"low": pytest.approx(0.2), "high": pytest.approx(0.3), "count": 0, "accuracy": None,
                       "confidence": None}
    full = np.nansum(bins.count / 5 * np.abs(bins.gap))
    assert M.ece(conf, correct) == pytest.approx(full)
    mass = M.reliability_bins(conf, correct, n_bins=2, strategy="mass")
    assert mass.count.sum() == 5 and mass.low[0] == 0.0 and mass.high[-1] == 1.0


def test_summarize_has_every_metric():
    conf, correct = random_data(100, 7)
    s = M.summarize(conf, correct)
    assert set(s) == {"n", *M.METRIC_NAMES}
    assert s["n"] == 100 and s["ece"] == M.ece(conf, correct) and s["auroc"] == M.auroc(conf, correct)
    votes = np.random.default_rng(0).integers(0, 11, 40)
    s10 = M.summarize(votes / 10, votes > 5, k=10)
    assert s10["ece"] == pytest.approx(M.ece(votes / 10, votes > 5))


# ---------------------------------------------------------------- batched (2-D) evaluation and bootstrap

def test_batched_metrics_equal_row_by_row():
    rng = np.random.default_rng(3)
    conf = rng.integers(0, 11, size=(6, 40)) / 10
    correct = rng.random((6, 40)) < conf
    for fn in (M.ece, M.mce, M.rms_ce, M.ece_equal_mass, M.brier, M.auroc):
        batched = fn(conf, correct)
        rows = [fn(c, y) for c, y in zip(conf, correct)]
        np.testing.assert_allclose(batched, rows, atol=1e-12, err_msg=fn.__name__)
    np.testing.assert_allclose(M.ece(conf, correct, k=10), [M.ece(c, y, k=10) for c, y in zip(conf, correct)])


@pytest.mark.slow
def test_bootstrap_ci_contains_estimate_and_shrinks_with_n():
    widths = []
    for n in (50, 400, 3200):
        conf, correct = random_data(n, n)
        for fn in (M.accuracy, M.brier, M.auroc):
            args = (correct,) if fn is M.accuracy else (conf, correct)
            ci = M.bootstrap_ci(fn, *args, n_boot=500, seed=1)
            assert ci.low <= ci.value <= ci.high, (fn.__name__, n, ci)
        # binned ECE is biased upwards on resamples: at n=50 the percentile interval may lie above the estimate
        ece_ci = M.bootstrap_ci(M.ece, conf, correct, n_boot=500, seed=1)
        assert ece_ci.low <= ece_ci.high and (n < 400 or ece_ci.low <= ece_ci.value <= ece_ci.high)
        widths.append(M.bootstrap_ci(M.accuracy, correct, n_boot=500).width)
    assert widths[0] > widths[1] > widths[2]
    # sqrt(n) scaling: 8x more data -> about 1/sqrt(8) of the width
    assert widths[2] / widths[1] == pytest.approx(1 / np.sqrt(8), rel=0.3)


def test_bootstrap_vectorised_and_loop_paths_agree_and_are_seeded():
    conf, correct = random_data(120, 9)
    fn = functools.partial(M.ece, n_bins=10)
    assert M.is_vectorized(fn) and not M.is_vectorized(lambda c, y: 0.0)
    fast = M.bootstrap_stats(fn, conf, correct, n_boot=200, seed=5)
    slow = M.bootstrap_stats(fn, conf, correct, n_boot=200, seed=5, vectorized=False)
    np.testing.assert_allclose(fast, slow, atol=1e-12)
    assert M.bootstrap_ci(fn, conf, correct, seed=5) == M.bootstrap_ci(fn, conf, correct, seed=5)
    assert M.bootstrap_ci(fn, conf, correct, seed=5) != M.bootstrap_ci(fn, conf, correct, seed=6)
    # percentile interval of the resampled statistics
    ci = M.bootstrap_ci(fn, conf, correct, n_boot=200, seed=5)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(fast, [0.025, 0.975])))


def test_bootstrap_skips_undefined_resamples_and_validates():
    correct = np.array([1] * 19 + [0])
    conf = np.linspace(0.05, 1, 20)
    ci = M.bootstrap_ci(M.auroc, conf, correct, n_boot=300)
    assert np.isfinite(ci.low) and ci.low <= ci.value <= ci.high
    nan_ci = M.bootstrap_ci(M.auroc, conf, np.ones(20), n_boot=50)
    assert np.isnan(nan_ci.value) and np.isnan(nan_ci.low)
    with pytest.raises(ValueError, match="length"):
        M.bootstrap_ci(M.brier, conf, correct[:5])
    with pytest.raises(ValueError, match="alpha"):
        M.bootstrap_ci(M.accuracy, correct, alpha=1.5)


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap():
    """Same estimator as scipy.stats.bootstrap (paired, percentile): intervals agree up to resampling noise."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(3)
    conf = rng.uniform(0.3, 1.0, 300)
    correct = (rng.uniform(size=300) < conf).astype(float)
    ours = M.bootstrap_ci(M.brier, conf, correct, n_boot=4000, seed=0)
    theirs = bootstrap((conf, correct), lambda c, y: M.brier(c, y), paired=True, vectorized=False,
                       n_resamples=4000, method="percentile", random_state=0).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.004) and ours.high == pytest.approx(theirs.high, abs=0.004)
    assert ours.low < ours.value < ours.high
