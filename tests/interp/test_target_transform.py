"""Monotone target transforms of the ridge probe, and the InterpConfig that selects them."""

import numpy as np
import pytest
import scipy.stats

from jaxirl.errors import ConfigError, DataError
from jaxirl.interp.probes import evaluate_probes, fit_target_transform
from jaxirl.pipeline.interp_stage import InterpConfig


def test_rank_gauss_hand_values_ties_and_clamping():
    t = fit_target_transform(np.array([3.0, 1.0, 2.0, 2.0]), "rank_gauss")
    # Average ranks 4, 1, 2.5, 2.5 of N = 4 -> Phi^-1(r / 5).
    z = scipy.stats.norm.ppf(0.8)
    np.testing.assert_allclose(t(np.array([3.0, 1.0, 2.0, 2.0])), [z, -z, 0.0, 0.0], atol=1e-12)
    # Linear between knots, clamped outside the training range.
    np.testing.assert_allclose(t(np.array([1.5, -100.0, 100.0])), [-z / 2, -z, z], atol=1e-12)


def test_rank_gauss_is_monotone_and_bounded_on_heavy_tails():
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.uniform(3, 5, 800), -np.exp(rng.uniform(0, 3.3, 200))])  # down to -27
    t = fit_target_transform(y, "rank_gauss")
    grid = np.linspace(-40, 10, 5001)
    out = t(grid)
    assert np.all(np.diff(out) >= 0)
    inside = (grid > y.min()) & (grid < y.max())
    assert np.all(np.diff(out[inside]) > 0)  # strictly increasing between the extremes
    # Van der Waerden scores of N = 1000 stay within Phi^-1(1000/1001) ~ 3.1.
    assert np.abs(t(y)).max() == pytest.approx(scipy.stats.norm.ppf(1000 / 1001))
    # Ranks, hence Spearman, are unchanged.
    assert scipy.stats.spearmanr(t(y), y)[0] == pytest.approx(1.0)
    np.testing.assert_array_equal(fit_target_transform(y, "none")(y), y)


def test_bad_transform_inputs():
    with pytest.raises(ConfigError, match="target transform 'log' is not one of none, rank_gauss"):
        fit_target_transform(np.arange(3.0), "log")
    with pytest.raises(DataError, match="2 finite rewards"):
        fit_target_transform(np.array([1.0, np.nan]), "rank_gauss")


def _planted(seed, n=400, d=30):
    """Sparse non-negative features, a reward monotone in a linear score with a heavy tail."""
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.normal(size=(2 * n, d)), 0.0)
    score = (x - x.mean(0)) @ rng.normal(size=d) / np.sqrt(d)
    y = -np.exp(-2.5 * score) + 0.3 * rng.normal(size=2 * n)
    return x[:n], y[:n], x[n:], y[n:]


def test_rank_gauss_probe_beats_raw_target_on_planted_monotone_signal():
    gaps = []
    for seed in range(3):
        x, y, xt, yt = _planted(seed)
        raw = evaluate_probes(x, y, xt, yt, target_transform="none")
        gauss = evaluate_probes(x, y, xt, yt, target_transform="rank_gauss")
        assert gauss.target.kind == "rank_gauss" and raw.target.kind == "none"
        # Metrics live in the probe's units; rank statistics match those on raw rewards up
        # to the few test rewards beyond the training range, which clamp (tie) at the ends.
        pred = gauss.ridge.predict(xt)
        assert gauss.ridge_test.spearman == pytest.approx(scipy.stats.spearmanr(pred, yt)[0],
                                                          abs=1e-3)
        ss = np.sum((pred - gauss.target(yt)) ** 2)
        sst = np.sum((gauss.target(yt) - gauss.target(yt).mean()) ** 2)
        assert gauss.ridge_test.r2 == pytest.approx(1 - ss / sst)
        gaps.append(gauss.ridge_test.spearman - raw.ridge_test.spearman)
    assert min(gaps) > 0.02 and np.mean(gaps) > 0.05, gaps


@pytest.mark.parametrize("kwargs,message", [
    (dict(target_transform="log"), "InterpConfig.target_transform 'log' is not one of"),
    (dict(pooling="median"), "InterpConfig.pooling 'median' is not one of mean, max, sum"),
    (dict(num_layers=0), "InterpConfig.num_layers must be a positive integer"),
    (dict(dict_multiples=()), "InterpConfig.dict_multiples must be positive integers"),
    (dict(dict_multiples=(1, 0)), "InterpConfig.dict_multiples must be positive integers"),
])
def test_interp_config_rejects_bad_fields(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        InterpConfig(**kwargs)
