"""Bayesian reward posterior (Laplace, mean-field VI, sequential rounds) and calibration."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.errors import ConfigError, RewardError
from jaxirl.irl.bayes import (
    BayesConfig,
    Gaussian,
    bt_log_likelihood,
    completion_features,
    gaussian_log_density,
    laplace_posterior,
    mahalanobis_distance,
    mean_field_vi,
    pairwise_probability,
    predictive_variance,
    sequential_posteriors,
)
from jaxirl.irl.calibration import (
    brier,
    expected_calibration_error,
    platt_apply,
    platt_ece_floor,
    platt_fit,
    reliability_bins,
)
from jaxirl.models import GPTNeoXForCausalLM


def bt_data(n=600, d=6, seed=0, correlated=False):
    """Pair differences x [n, d] whose orientation follows BT with a known θ."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    if correlated:
        x = x @ (np.eye(d) + 0.6 * rng.normal(size=(d, d)) / np.sqrt(d))
    theta = rng.normal(size=d)
    flip = rng.uniform(size=n) > 1 / (1 + np.exp(-x @ theta))
    x[flip] *= -1  # the "expert" is the preferred side of each pair
    return x.astype(np.float32), theta


def log_post(theta, x, prior):
    return bt_log_likelihood(theta, x) + gaussian_log_density(theta, prior)


def test_laplace_is_the_map_with_the_inverse_exact_hessian():
    x, _ = bt_data()
    prior = Gaussian.standard(6)
    post = laplace_posterior(jnp.asarray(x), prior)
    grad = jax.grad(log_post)(post.mean, x, prior)
    assert float(jnp.max(jnp.abs(grad))) < 1e-3
    hess = jax.hessian(log_post)(post.mean, x, prior)
    np.testing.assert_allclose(post.cov, np.linalg.inv(-np.asarray(hess)), rtol=1e-3, atol=1e-6)


def test_sequential_rounds_contract_and_equal_one_batch_update():
    x, theta = bt_data(n=1000)
    folds = np.array_split(x, 5)
    posts, stats = sequential_posteriors(folds, BayesConfig(method="laplace"))
    traces = [s["trace"] for s in stats]
    assert all(b < a for a, b in zip(traces, traces[1:], strict=False))
    assert all(b < a for a, b in zip([s["logdet"] for s in stats], [s["logdet"] for s in stats][1:],
                                     strict=False))
    assert stats[0]["entropy"] == pytest.approx(0.5 * (6 * (1 + np.log(2 * np.pi))
                                                       + stats[0]["logdet"]))
    # Sequential Laplace is close to conditioning on all folds at once (exact for Gaussians).
    joint = laplace_posterior(jnp.asarray(x), Gaussian.standard(6))
    np.testing.assert_allclose(posts[-1].mean, joint.mean, rtol=0.05, atol=0.02)
    assert np.corrcoef(np.asarray(joint.mean), theta)[0, 1] > 0.95


@pytest.mark.optimized  # 3,000 scan steps: run time, not compile time
def test_mean_field_vi_matches_the_gaussian_mean_field_fixed_point():
    x, _ = bt_data(n=500, d=4, seed=1, correlated=True)
    prior = Gaussian.standard(4)
    lap = laplace_posterior(jnp.asarray(x), prior)
    # Converged settings on this data (at most a third of each tolerance off, measured).
    vi = mean_field_vi(jnp.asarray(x), prior, jax.random.PRNGKey(0), steps=3000,
                       learning_rate=1e-2, samples=32)
    np.testing.assert_allclose(vi.mean, lap.mean, rtol=0.1, atol=0.03)
    # For a (near-)Gaussian posterior, mean-field VI's variances are 1 / diag(precision):
    # smaller than the marginal variances when the features are correlated.
    precision = np.linalg.inv(np.asarray(lap.cov))
    np.testing.assert_allclose(np.diag(vi.cov), 1 / np.diag(precision), rtol=0.15)
    assert np.all(np.diag(vi.cov) < np.diag(lap.cov))


def test_predictive_variance_and_probability_by_hand():
    post = Gaussian(jnp.array([1.0, -1.0]), jnp.array([[2.0, 0.5], [0.5, 1.0]]))
    phi = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(predictive_variance(phi, post), [2.0, 4.0])
    p = pairwise_probability(np.array([[1.0, 1.0], [2.0, 0.0]]), post)
    np.testing.assert_allclose(p, [0.5, 1 / (1 + np.exp(-2 / np.sqrt(1 + np.pi * 8 / 8)))])


def test_mahalanobis_distance_by_hand_and_affine_invariant():
    # Reference rows with mean (1, 0) and covariance diag(8/3, 1/6) (np.cov divides by n - 1).
    ref = np.array([[-1.0, 0.0], [3.0, 0.0], [1.0, 0.5], [1.0, -0.5]])
    np.testing.assert_allclose(np.cov(ref, rowvar=False), [[8 / 3, 0.0], [0.0, 1 / 6]])
    phi = np.array([[1.0, 0.0], [3.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(mahalanobis_distance(phi, ref, ridge=0.0), [0.0, 1.5, 6.0])
    # Any invertible affine map of the features leaves the distance unchanged.
    rng = np.random.default_rng(0)
    ref, phi = rng.normal(size=(200, 3)), rng.normal(size=(10, 3)) * 3
    a, b = rng.normal(size=(3, 3)) + 3 * np.eye(3), rng.normal(size=3)
    np.testing.assert_allclose(mahalanobis_distance(phi @ a.T + b, ref @ a.T + b, ridge=0.0),
                               mahalanobis_distance(phi, ref, ridge=0.0), rtol=1e-9)


def test_completion_features_do_not_depend_on_the_batch():
    model, params = tiny_policy(layers=2)
    params = {k: v for k, v in params.items() if k != "value_head"}
    lm, tok = GPTNeoXForCausalLM(model.config), tiny_tokenizer()
    texts = [" the cat sat on a mat", " good", ""]
    together = completion_features(lm, params, tok, texts, batch_size=2)
    alone = np.concatenate([completion_features(lm, params, tok, [t]) for t in texts])
    assert together.shape == (3, 32)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_platt_brier_ece_by_hand():
    rng = np.random.default_rng(0)
    s = rng.normal(size=20000)
    y = (rng.uniform(size=s.size) < 1 / (1 + np.exp(-(2 * s - 1)))).astype(float)
    a, b = platt_fit(s, y)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-1.0, abs=0.1)
    assert expected_calibration_error(platt_apply(s, a, b), y) < 0.02
    assert expected_calibration_error(platt_apply(s, 5 * a, b), y) > 0.05
    # By hand: two quantile bins {0.1, 0.2} and {0.7, 0.9}; targets 0,1 and 1,1.
    p, t = np.array([0.1, 0.9, 0.2, 0.7]), np.array([0.0, 1.0, 1.0, 1.0])
    conf, acc, count = reliability_bins(p, t, bins=2)
    np.testing.assert_allclose(conf, [0.15, 0.8])
    np.testing.assert_allclose(acc, [0.5, 1.0])
    assert expected_calibration_error(p, t, bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.2)
    assert brier(p, t) == pytest.approx((0.01 + 0.01 + 0.64 + 0.09) / 4)
    # Soft targets are allowed; targets outside [0, 1] are not.
    assert platt_fit(s[:100], np.full(100, 0.5))[0] >= 0
    with pytest.raises(RewardError, match=r"\[0, 1\]"):
        brier(p, t + 1)


def test_platt_ece_floor_reaches_zero_on_a_platt_shape_and_never_exceeds_the_fit():
    rng = np.random.default_rng(1)
    s = rng.normal(size=3000)
    # Soft targets that are exactly a Platt map of the scores: some map has ECE 0.
    ece, a, b = platt_ece_floor(s, 1 / (1 + np.exp(-(0.7 * s + 0.3))))
    assert ece < 1e-4 and a == pytest.approx(0.7, abs=0.05) and b == pytest.approx(0.3, abs=0.05)
    # Targets no monotone logistic map fits (a step at 0 on a narrow score band): the floor
    # is above 0 and at most the cross-entropy fit's ECE.
    y = (s > 0).astype(float) * 0.6 + 0.2
    fa, fb = platt_fit(s, y)
    floor = platt_ece_floor(s, y)[0]
    assert 0.005 < floor <= expected_calibration_error(platt_apply(s, fa, fb), y) + 1e-12


def test_bad_bayes_config():
    with pytest.raises(ConfigError, match="method"):
        BayesConfig(method="mcmc")
    with pytest.raises(ConfigError, match="rounds"):
        BayesConfig(rounds=0)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("JAXIRL_SLOW"), reason="opt-in: JAXIRL_SLOW=1")
def test_laplace_and_vi_against_nuts():
    """NUTS (blackjax) reference: Laplace's mean within 5% and no under-coverage; mean-field
    VI under-covers exactly as the mean-field fixed point of NUTS's covariance predicts."""
    import blackjax

    x, _ = bt_data(n=1500, d=8, seed=2, correlated=True)
    prior = Gaussian.standard(8)
    x = jnp.asarray(x)

    def logdensity(theta):
        return log_post(theta, x, prior)

    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity)
    key_warm, key_run = jax.random.split(jax.random.PRNGKey(0))
    (state, params), _ = warmup.run(key_warm, jnp.zeros(8), num_steps=1000)
    kernel = blackjax.nuts(logdensity, **params).step

    def one(state, key):
        state, _ = kernel(key, state)
        return state, state.position

    _, samples = jax.lax.scan(one, state, jax.random.split(key_run, 4000))
    nuts_mean, nuts_std = np.asarray(samples.mean(0)), np.asarray(samples.std(0))
    lap = laplace_posterior(x, prior)
    vi = mean_field_vi(x, prior, jax.random.PRNGKey(1), steps=10000, learning_rate=3e-3,
                       samples=32)
    rel = np.linalg.norm(np.asarray(lap.mean) - nuts_mean) / np.linalg.norm(nuts_mean)
    assert rel <= 0.05, rel
    lap_ratio = np.sqrt(np.diag(np.asarray(lap.cov))) / nuts_std
    vi_ratio = np.sqrt(np.diag(np.asarray(vi.cov))) / nuts_std
    print(f"Laplace mean rel. error {rel:.4f}; std ratio to NUTS: Laplace "
          f"{lap_ratio.min():.3f}-{lap_ratio.max():.3f}, mean-field VI "
          f"{vi_ratio.min():.3f}-{vi_ratio.max():.3f}")
    assert 0.9 <= lap_ratio.min() and lap_ratio.max() <= 1.1
    # Mean-field VI keeps only the diagonal of the precision, so with correlated features it
    # under-covers (measured: std ratios 0.51-0.82 here); it does so by exactly that amount.
    nuts_cov = np.cov(np.asarray(samples), rowvar=False)
    fixed_point = 1 / np.diag(np.linalg.inv(nuts_cov))
    np.testing.assert_allclose(np.diag(np.asarray(vi.cov)), fixed_point, rtol=0.2)
