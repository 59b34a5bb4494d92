"""Prompt-bootstrap scorecards: estimates equal the plain metrics, a resample equals the
metrics of the expanded multiset, baselines behave as they must, and all is deterministic."""

import numpy as np
import pytest

from jaxirl.errors import RewardError
from jaxirl.irl.bootstrap import (
    bootstrap_draws,
    cluster_bootstrap,
    group_ids,
    percentile_interval,
    rank_kernel,
    spearman_intervals,
)
from jaxirl.irl.ensemble import pairwise_seed_correlation, seed_agreement
from jaxirl.irl.evaluate import evaluate_rewards, fit_threshold
from jaxirl.irl.scorecard import (
    _SeedMetrics,
    majority_rewards,
    random_rewards,
    reward_scorecard,
)

P, PROMPTS, S = 120, 12, 3
KEYS = {"accuracy": "accuracy", "f1": "f1", "roc_auc": "roc_auc",
        "pearson": "pearson_correlation", "spearman": "spearman",
        "pairwise_accuracy": "pairwise_accuracy"}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=2 * P) + 1.0
    true[:10] = true[0]  # ties in the ground truth
    train_true = rng.normal(size=400) + 1.0
    test = true + rng.normal(size=(S, 2 * P)) * 1.5
    test[:, 20:30] = test[:, 20:21]  # ties in the learned reward
    train = train_true + rng.normal(size=(S, 400)) * 1.5
    prompts = np.repeat([f"prompt {i}" for i in range(PROMPTS)], P // PROMPTS)
    return train, train_true, test, true, prompts


def _pairs():
    return np.stack([np.arange(P), np.arange(P) + P], axis=1)


def test_estimates_equal_plain_metrics_with_a_training_threshold():
    train, train_true, test, true, prompts = _data()
    card = reward_scorecard(train, train_true, test, true, prompts, n_resamples=50)
    for s in range(S):
        thr = fit_threshold(train[s], train_true)
        assert card["thresholds"][s] == thr
        fitted = evaluate_rewards(test[s], true, pairs=_pairs(), threshold=thr)
        zero = evaluate_rewards(test[s], true, pairs=_pairs(), threshold=0.0)
        match = evaluate_rewards(test[s], true, pairs=_pairs(), threshold="match_rate")
        for ours, theirs in KEYS.items():
            assert card["per_seed"][ours][s] == pytest.approx(getattr(fitted, theirs), abs=1e-12)
        assert card["per_seed"]["accuracy_threshold_zero"][s] == pytest.approx(zero.accuracy)
        assert card["per_seed"]["f1_threshold_zero"][s] == pytest.approx(zero.f1)
        assert card["per_seed"]["accuracy_match_rate"][s] == pytest.approx(match.accuracy)
        assert card["per_seed"]["f1_match_rate"][s] == pytest.approx(match.f1)
    for key, iv in card["metrics"].items():
        assert iv["estimate"] == pytest.approx(np.mean(card["per_seed"][key]))
        assert iv["low"] <= iv["estimate"] <= iv["high"], key
    assert card["num_prompts"] == PROMPTS and card["num_texts"] == 2 * P


def test_a_resample_equals_the_metrics_of_its_multiset():
    train, train_true, test, true, prompts = _data(1)
    pair_gid, g = group_ids(prompts)
    counts = np.zeros((1, g))
    picks = np.random.default_rng(3).integers(0, g, g)
    np.add.at(counts[0], picks, 1)
    idx = np.concatenate([np.flatnonzero(pair_gid == k) for k in picks])
    texts = np.concatenate([idx, idx + P])
    n = len(idx)
    thr = fit_threshold(train[0], train_true)
    kernel = rank_kernel(true, np.concatenate([pair_gid, pair_gid]), g)
    ours = _SeedMetrics(test[0], true, thr, pair_gid, g, kernel)(counts)
    pairs = np.stack([np.arange(n), np.arange(n) + n], axis=1)
    plain = evaluate_rewards(test[0][texts], true[texts], pairs=pairs, threshold=thr)
    match = evaluate_rewards(test[0][texts], true[texts], pairs=pairs, threshold="match_rate")
    for key, attr in KEYS.items():
        assert ours[key][0] == pytest.approx(getattr(plain, attr), abs=1e-12), key
    assert ours["accuracy_match_rate"][0] == pytest.approx(match.accuracy)
    assert ours["f1_match_rate"][0] == pytest.approx(match.f1)


def test_baselines_and_determinism():
    train, train_true, test, true, prompts = _data(2)
    a = reward_scorecard(train, train_true, test, true, prompts, n_resamples=80, seed=4)
    b = reward_scorecard(train, train_true, test, true, prompts, n_resamples=80, seed=4)
    assert a == b
    tr, te = majority_rewards(400, 2 * P)
    majority = reward_scorecard(tr, train_true, te, true, prompts, n_resamples=80)["metrics"]
    clean_share = np.mean(true > 0)  # the training majority here is "clean"
    assert majority["accuracy"]["estimate"] == pytest.approx(clean_share)
    assert majority["f1"]["estimate"] == 0.0 and majority["roc_auc"]["estimate"] == 0.5
    assert np.isnan(majority["pearson"]["estimate"])
    tr, te = random_rewards(400, 2 * P, 4, seed=0)
    noise = reward_scorecard(tr, train_true, te, true, prompts, n_resamples=80)["metrics"]
    assert abs(noise["roc_auc"]["estimate"] - 0.5) < 0.1
    assert noise["roc_auc"]["low"] < 0.5 < noise["roc_auc"]["high"]
    with pytest.raises(RewardError, match="train rewards"):
        reward_scorecard(train[:, :10], train_true, test, true, prompts)


def test_cluster_bootstrap_resamples_groups_not_texts():
    # Texts within a group are identical, so the group is the unit: a text-level bootstrap
    # of 100 texts would give an interval ~sqrt(10) times narrower than this one.
    groups = np.repeat(np.arange(10), 10)
    values = np.repeat(np.arange(10, dtype=float), 10)
    gid, g = group_ids(groups)

    def mean(c):
        return {"mean": (c @ np.bincount(gid, values)) / (c @ np.bincount(gid))}

    iv = cluster_bootstrap(mean, groups, n_resamples=2000, seed=0)["mean"]
    assert iv.estimate == pytest.approx(4.5)
    se_groups = np.std(np.arange(10)) / np.sqrt(10)  # ≈ 0.91
    assert iv.high - iv.low == pytest.approx(2 * 1.96 * se_groups, rel=0.2)


def test_seed_agreement_and_spearman_intervals():
    _, _, test, true, prompts = _data(3)
    groups = np.concatenate([prompts, prompts])
    agree = seed_agreement(test, true, groups, n_resamples=100)
    corr = pairwise_seed_correlation(test)
    assert agree["seed_vs_seed"]["estimate"] == pytest.approx(corr[~np.eye(S, dtype=bool)].mean())
    assert agree["seed_vs_true"]["estimate"] == pytest.approx(
        np.mean([np.corrcoef(r, true)[0, 1] for r in test]))
    assert np.asarray(agree["matrix"]).shape == (S + 1, S + 1)
    rho = spearman_intervals({"a": test[0], "b": test[1]}, true, groups, n_resamples=100)
    plain = [evaluate_rewards(test[i], true).spearman for i in (0, 1)]
    assert rho["a"].estimate == pytest.approx(plain[0])
    assert rho["difference"].estimate == pytest.approx(plain[0] - plain[1])


def test_percentile_interval_puts_half_the_tail_on_each_side():
    # Draws 0, 1, ..., 100: the p-th percentile is p, so a 90% interval is [5, 95].
    iv = percentile_interval(50.0, np.arange(101.0), confidence=0.9, num_groups=7)
    assert (iv.estimate, iv.low, iv.high) == (50.0, pytest.approx(5.0), pytest.approx(95.0))
    assert (iv.confidence, iv.num_groups) == (0.9, 7)


def test_every_resample_draws_as_many_groups_as_there_are():
    def drawn(c):
        return {"groups_drawn": c.sum(axis=1), "distinct": (c > 0).sum(axis=1)}

    estimate, draws = bootstrap_draws(drawn, 5, n_resamples=300, seed=1, batch=128)
    assert estimate == {"groups_drawn": 5.0, "distinct": 5.0}
    np.testing.assert_array_equal(draws["groups_drawn"], np.full(300, 5.0))
    # With replacement: some resample repeats a group (all 300 distinct has prob ≈ 0).
    assert draws["distinct"].min() < 5
