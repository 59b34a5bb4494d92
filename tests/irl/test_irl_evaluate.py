"""Reward metrics and seed-ensemble helpers against hand values, SciPy and the reference."""

import math

import numpy as np
import pytest
import scipy.stats
from scipy.spatial.distance import cosine
from sklearn.metrics import accuracy_score, f1_score

from jaxirl.errors import RewardError
from jaxirl.irl import (
    RewardMetrics,
    disagreement_predicts_error,
    ensemble,
    evaluate_pairs,
    evaluate_rewards,
    fit_threshold,
    pairwise_accuracy,
    pairwise_seed_correlation,
    resolve_threshold,
    seed_spread,
    standardize,
)

# Preferred (> 0): true [T, T, T, T, F, F], learned [T, T, T, F, T, F].
TRUE = np.array([1.0, 2.0, 0.5, 3.0, -1.0, -2.0])
LEARNED = np.array([0.3, 1.2, 2.0, -0.4, 0.1, -1.5])
PAIRS = np.array([[0, 4], [1, 5], [2, 3], [3, 4]])


def reference_accuracy_f1(true_rewards, learned_rewards):
    """Verbatim from irl_for_llms src/irl_utilities.py calculate_accuracy_f1."""
    true_rewards_labels = [0 if reward > 0 else 1 for reward in true_rewards]
    learned_rewards_labels = [0 if reward > 0 else 1 for reward in learned_rewards]
    return accuracy_score(true_rewards_labels, learned_rewards_labels), f1_score(
        true_rewards_labels, learned_rewards_labels
    )


def test_metrics_hand_values():
    m = evaluate_rewards(LEARNED, TRUE, pairs=PAIRS)
    assert m.accuracy == pytest.approx(4 / 6)
    # Toxic (≤ 0) class: TP 1 (idx 5), FP 1 (idx 3), FN 1 (idx 4) → 2/4.
    assert m.f1 == pytest.approx(0.5)
    # Preferred class: TP 3, FP 1, FN 1 → 6/8.
    assert m.f1_preferred == pytest.approx(0.75)
    # Positives {0.3, 1.2, 2.0, -0.4} vs negatives {0.1, -1.5}: 7 of 8 pairs ranked right.
    assert m.roc_auc == pytest.approx(7 / 8)
    assert m.euclidean_distance == pytest.approx(math.sqrt(16.4))
    # Pairs: (0,4) right, (1,5) right, (2,3) wrong, (3,4) wrong.
    assert m.pairwise_accuracy == pytest.approx(0.5)
    assert m.expert_preferred_rate == pytest.approx(0.75)
    assert (m.threshold, m.num_texts, m.num_pairs) == (0.0, 6, 4)


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    true = rng.normal(size=50)
    learned = 0.5 * true + rng.normal(size=50)
    m = evaluate_rewards(learned, true)
    assert m.pearson_correlation == pytest.approx(scipy.stats.pearsonr(true, learned)[0])
    assert m.spearman == pytest.approx(scipy.stats.spearmanr(true, learned)[0])
    assert m.kendall_tau == pytest.approx(scipy.stats.kendalltau(true, learned)[0])
    assert m.cosine_similarity == pytest.approx(1 - cosine(true, learned))
    assert math.isnan(m.pairwise_accuracy) and m.num_pairs == 0


def test_accuracy_and_f1_match_reference_transcription():
    rng = np.random.default_rng(1)
    true, learned = rng.normal(size=(2, 200))
    learned[:5] = 0.0  # exact zeros count as toxic in the reference
    acc, f1 = reference_accuracy_f1(true, learned)
    m = evaluate_rewards(learned, true)
    assert (m.accuracy, m.f1) == pytest.approx((acc, f1))


def test_pairwise_accuracy_ties():
    learned = np.array([1.0, 1.0, 0.0])
    true = np.array([3.0, 2.0, 1.0])
    # (0,1): learned tie → 0.5; (0,2) right; (2,1) right.
    assert pairwise_accuracy(learned, true, np.array([[0, 1], [0, 2], [2, 1]])) == (
        pytest.approx(2.5 / 3),
        3,
    )
    # A pair tied in the ground truth has no order and is left out.
    acc, n = pairwise_accuracy(learned, np.array([2.0, 2.0, 1.0]), np.array([[0, 1], [0, 2]]))
    assert (acc, n) == (1.0, 1)


def test_evaluate_pairs_equals_concatenation():
    p = evaluate_pairs(LEARNED[:3], LEARNED[3:], TRUE[:3], TRUE[3:])
    full = evaluate_rewards(LEARNED, TRUE, pairs=np.array([[0, 3], [1, 4], [2, 5]]))
    assert p == full


def test_thresholds_calibrate_an_arbitrary_offset():
    shifted = LEARNED + 100.0
    # Reference threshold 0: everything "preferred", accuracy = share preferred.
    assert evaluate_rewards(shifted, TRUE).accuracy == pytest.approx(4 / 6)
    m = evaluate_rewards(shifted, TRUE, threshold="median")
    assert m.threshold == pytest.approx(np.median(shifted))
    assert m.accuracy == pytest.approx(evaluate_rewards(LEARNED, TRUE, threshold="median").accuracy)
    # match_rate: 4 of 6 true rewards are > 0, so 4 learned ones must be above the threshold.
    thr = resolve_threshold(shifted, "match_rate", TRUE)
    assert int(np.sum(shifted > thr)) == 4
    with pytest.raises(RewardError, match="'mean'"):
        evaluate_rewards(LEARNED, TRUE, threshold="mean")


def test_fit_threshold_hand_values_and_brute_force():
    assert fit_threshold([0.1, 0.2, 0.3, 0.4], [-1, -1, 1, 1]) == pytest.approx(0.25)
    thr = fit_threshold([5.0, 6.0, 7.0], [1.0, 1.0, 1.0])
    assert thr < 5.0
    rng = np.random.default_rng(2)
    for _ in range(20):
        learned = np.round(rng.normal(size=15), 1)  # rounding makes ties
        true = learned + rng.normal(size=15)
        values = np.unique(learned)
        mids = (values[1:] + values[:-1]) / 2
        candidates = np.concatenate([[values[0] - 1.0], mids, values[-1:]])
        best = max(np.mean((learned > c) == (true > 0)) for c in candidates)
        assert np.mean((learned > fit_threshold(learned, true)) == (true > 0)) == best


def test_degenerate_inputs_give_nan_not_errors():
    m = evaluate_rewards(np.ones(4), np.array([1.0, -1.0, 2.0, 3.0]))
    assert math.isnan(m.pearson_correlation) and math.isnan(m.spearman)
    one_class = evaluate_rewards(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert math.isnan(one_class.roc_auc) and one_class.accuracy == 1.0


def test_non_finite_inputs_name_array_and_index():
    bad = LEARNED.copy()
    bad[3] = np.nan
    msg = r"learned rewards has a non-finite value \(nan\) at index 3"
    with pytest.raises(RewardError, match=msg):
        evaluate_rewards(bad, TRUE)
    bad_true = TRUE.copy()
    bad_true[0] = np.inf
    with pytest.raises(RewardError, match="true rewards .* at index 0"):
        evaluate_rewards(LEARNED, bad_true)
    with pytest.raises(RewardError, match="true base rewards .* index 1"):
        evaluate_pairs([1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [0.0, np.nan])
    seeds = np.zeros((2, 3))
    seeds[1, 2] = np.nan
    with pytest.raises(RewardError, match=r"seed rewards .* at index \(1, 2\)"):
        ensemble(seeds)
    with pytest.raises(RewardError, match="6 texts but true rewards has 5"):
        evaluate_rewards(LEARNED, TRUE[:5])
    with pytest.raises(RewardError, match=r"pairs\[1\] = \[1, 6\] is out of range"):
        evaluate_rewards(LEARNED, TRUE, pairs=np.array([[0, 1], [1, 6]]))


def test_identical_seeds_up_to_scale_agree_perfectly():
    rng = np.random.default_rng(3)
    r = rng.normal(size=10)
    seeds = np.stack([r, 3.0 * r + 5.0, 0.1 * r - 2.0])
    np.testing.assert_allclose(pairwise_seed_correlation(seeds), np.ones((3, 3)), atol=1e-12)
    mean, std = ensemble(seeds)
    np.testing.assert_allclose(std, 0.0, atol=1e-12)
    np.testing.assert_allclose(mean, (r - r.mean()) / r.std())
    metrics = [evaluate_rewards(s, r, threshold="median") for s in seeds]
    spread = seed_spread(metrics)
    assert spread["pearson_correlation"].mean == pytest.approx(1.0)
    assert spread["accuracy"].std == 0.0 and spread["accuracy"].n == 3


def test_ensemble_and_correlation_known_values():
    seeds = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    mean, std = ensemble(seeds)
    np.testing.assert_allclose(mean, 0.0, atol=1e-12)
    np.testing.assert_allclose(std, [math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    np.testing.assert_allclose(pairwise_seed_correlation(seeds), [[1, -1], [-1, 1]])
    z = standardize(np.array([[2.0, 4.0, 6.0, 8.0], [5.0, 5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(z[0].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[0].std(), 1.0)
    np.testing.assert_array_equal(z[1], 0.0)
    rng = np.random.default_rng(4)
    many = rng.normal(size=(4, 30))
    corr = pairwise_seed_correlation(many)
    assert corr.shape == (4, 4)
    assert corr[1, 3] == pytest.approx(scipy.stats.pearsonr(many[1], many[3])[0])


def test_seed_spread_hand_values():
    spread = seed_spread([{"a": 1.0, "b": float("nan")}, {"a": 3.0, "b": 2.0}])
    assert spread["a"] == (2.0, pytest.approx(math.sqrt(2.0)), 2)
    assert spread["b"] == (2.0, 0.0, 1)
    with pytest.raises(RewardError, match=r"seed 1 .*\['c'\]"):
        seed_spread([{"a": 1.0}, {"a": 1.0, "c": 2.0}])
    assert isinstance(evaluate_rewards(LEARNED, TRUE), RewardMetrics)


def test_disagreement_flags_the_ensemble_errors():
    # Seeds agree on texts 0 and 1 and disagree on 2 and 3, where the ensemble
    # mean is 0 → labelled dispreferred, while the truth says preferred.
    seeds = np.array([[2.0, -2.0, 1.0, -1.0], [2.0, -2.0, -1.0, 1.0]])
    stats = disagreement_predicts_error(seeds, np.array([1.0, -1.0, 1.0, 1.0]))
    assert stats.roc_auc == 1.0
    assert (stats.error_rate, stats.num_errors) == (0.5, 2)
    assert (stats.error_rate_uncertain, stats.error_rate_confident) == (1.0, 0.0)
    # Errors exactly where the seeds agree: disagreement anti-predicts them.
    flipped = disagreement_predicts_error(seeds, np.array([-1.0, 1.0, -1.0, -1.0]))
    assert flipped.roc_auc == 0.0 and flipped.error_rate_confident == 1.0


def test_kendall_tau_is_tau_b_with_ties():
    # One tie in learned (texts 0 and 1), none in true; the other 5 of 6 pairs concordant:
    # tau-b = (C − D) / sqrt((n0 − n1)(n0 − n2)) = 5 / sqrt(6 · 5) (tau-c would be 15/16).
    m = evaluate_rewards(np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert m.kendall_tau == pytest.approx(5 / math.sqrt(30))


def test_expert_preferred_rate_counts_learned_ties_as_not_preferred():
    learned = np.array([1.0, 1.0, 2.0, 0.0])
    true = np.array([2.0, 1.0, 2.0, 1.0])
    m = evaluate_rewards(learned, true, pairs=np.array([[0, 1], [2, 3]]))
    # Pair (0, 1) is a learned tie: only pair (2, 3) has learned(expert) > learned(base).
    assert m.expert_preferred_rate == pytest.approx(0.5)


def test_disagreement_halves_leave_the_middle_text_out_for_odd_n():
    # Seed 2 is seed 1 with texts 0↔1 and 2↔4 swapped, so both z-score alike and the
    # ensemble std is 0 (text 3) < std(0) = std(1) < std(2) = std(4); the stable order is
    # [3, 0, 1, 2, 4]. N = 5: confident = {3, 0}, uncertain = {2, 4}, text 1 in neither.
    # Ensemble means: texts 0, 1 < 0 (dispreferred), texts 2, 3, 4 > 0 (preferred).
    seeds = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0], [-1.0, -2.0, 2.0, 1.0, 0.0]])
    true = np.array([-1.0, 1.0, 1.0, 1.0, 1.0])  # the only error is text 1
    stats = disagreement_predicts_error(seeds, true)
    assert (stats.error_rate, stats.num_errors) == (pytest.approx(0.2), 1)
    assert stats.error_rate_uncertain == 0.0
    assert stats.error_rate_confident == 0.0
