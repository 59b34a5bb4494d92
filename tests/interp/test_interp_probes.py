"""Probes recover planted linear signals; metrics and reward comparison on hand cases."""

import numpy as np
import pytest
import scipy.stats

from jaxirl.errors import DataError
from jaxirl.interp import (
    classification_metrics,
    compare_rewards,
    evaluate_probes,
    fit_logistic_probe,
    regression_metrics,
)


def planted(n=600, d=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d)  # mixed scales
    w = np.zeros(d)
    w[:5] = rng.normal(size=5)
    y = (x / x.std(0)) @ w + 0.1 * rng.normal(size=n)
    return x, y


def test_ridge_and_logistic_recover_planted_signal():
    x, y = planted()
    labels = (y > np.median(y)).astype(int)
    ev = evaluate_probes(x[:400], y[:400], x[400:], y[400:], labels[:400], labels[400:])
    assert ev.ridge_test.r2 > 0.95 and ev.ridge_test.kendall > 0.85
    assert ev.logistic_test.accuracy > 0.9 and ev.logistic_test.roc_auc > 0.97
    assert ev.num_features == 30 and ev.summary()["ridge_n"] == 200


def test_probe_on_noise_does_not_generalise():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 20)), rng.normal(size=300)
    ev = evaluate_probes(x[:200], y[:200], x[200:], y[200:])
    assert abs(ev.ridge_test.kendall) < 0.2 and ev.ridge_test.r2 < 0.1


def test_regression_metrics_match_scipy_and_hand_values():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=50), rng.normal(size=50)
    m = regression_metrics(a, b)
    assert m.kendall == pytest.approx(scipy.stats.kendalltau(a, b)[0])
    assert m.spearman == pytest.approx(scipy.stats.spearmanr(a, b)[0])
    perfect = regression_metrics(np.array([1.0, 2, 3]), np.array([1.0, 2, 3]))
    assert (perfect.r2, perfect.kendall, perfect.rmse) == (1.0, pytest.approx(1.0), 0.0)
    assert np.isnan(regression_metrics(np.ones(3), np.arange(3.0)).kendall)
    c = classification_metrics(np.array([0.9, 0.2, 0.6, 0.4]), np.array([1, 0, 0, 1]))
    assert c.accuracy == 0.5 and c.roc_auc == 0.75


def test_rmse_divides_the_squared_error_by_n():
    # Errors 1, -1, 2, 0: SSE 6 over n = 4, RMSE sqrt(1.5) (not sqrt(6 / 3)).
    m = regression_metrics(np.array([2.0, 1.0, 5.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert m.rmse == pytest.approx(np.sqrt(1.5))
    assert m.n == 4


def test_classification_accuracy_counts_probability_one_half_as_class_one():
    c = classification_metrics(np.array([0.5, 0.5, 0.9, 0.1]), np.array([1, 1, 1, 0]))
    assert c.accuracy == 1.0


def test_logistic_needs_both_classes():
    with pytest.raises(DataError, match="both classes"):
        fit_logistic_probe(np.ones((4, 2)), np.ones(4))


def test_compare_rewards_hand_cases():
    a = np.array([-1.0, -2.0, 3.0, 4.0])
    b = np.array([10.0, 0.0, 20.0, 30.0])  # same order, arbitrary scale
    c = compare_rewards(a, b)
    assert c.spearman == pytest.approx(1.0) and c.kendall == pytest.approx(1.0)
    assert c.threshold_b == 20.0 and c.agreement == 1.0 and c.cohen_kappa == pytest.approx(1.0)
    flipped = compare_rewards(a, -b, threshold_b=-15.0)  # -b < -15: texts 2 and 3 toxic
    assert flipped.kendall == pytest.approx(-1.0) and flipped.agreement == 0.0
    assert flipped.toxic_fraction_b == 0.5
    with pytest.raises(DataError, match="NaN"):
        compare_rewards(np.array([np.nan, 1.0]), np.array([1.0, 2.0]))
