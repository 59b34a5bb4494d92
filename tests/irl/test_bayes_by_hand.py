"""The Bayesian posterior and calibration against values worked out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer


def _lm(seed=0):
    from jaxirl.models import GPTNeoXForCausalLM
    model, params = tiny_policy(seed, layers=2)
    params = {k: v for k, v in params.items() if k != "value_head"}
    return GPTNeoXForCausalLM(model.config), params


def test_completion_features_keep_the_first_max_tokens_minus_one():
    from jaxirl.irl.bayes import completion_features
    lm, params = _lm()
    tok = tiny_tokenizer()
    cut = completion_features(lm, params, tok, [" the cat sat on a mat"], max_tokens=3)
    want = completion_features(lm, params, tok, [" the cat"])  # EOS + 2 tokens = 3
    np.testing.assert_allclose(cut, want, atol=1e-6)


def test_zscore_by_hand():
    from jaxirl.irl.bayes import zscore
    z, mean, std = zscore(np.array([[0.0], [2.0]]))
    np.testing.assert_allclose(z, [[-1.0], [1.0]])
    assert mean.tolist() == [1.0] and std.tolist() == [1.0]


def test_prior_scale_is_the_prior_std():
    from jaxirl.irl.bayes import BayesConfig, Gaussian, laplace_posterior, sequential_posteriors
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    posts, _ = sequential_posteriors([x], BayesConfig(rounds=1, prior_scale=2.0))
    want = laplace_posterior(jnp.asarray(x), Gaussian(jnp.zeros(3), 4.0 * jnp.eye(3)))
    np.testing.assert_allclose(posts[0].cov, want.cov, rtol=1e-4)


@pytest.mark.optimized
def test_sequential_vi_matches_one_batch_vi():
    from jaxirl.irl.bayes import BayesConfig, Gaussian, mean_field_vi, sequential_posteriors
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    theta = np.array([1.0, -1.0, 0.5])
    flip = rng.uniform(size=600) > 1 / (1 + np.exp(-x @ theta))
    x[flip] *= -1
    x = x.astype(np.float32)
    cfg = BayesConfig(method="vi", vi_steps=3000, vi_samples=16)
    posts, _ = sequential_posteriors(np.array_split(x, 3), cfg)
    joint = mean_field_vi(jnp.asarray(x), Gaussian.standard(3), jax.random.PRNGKey(0),
                          steps=3000, samples=16)
    np.testing.assert_allclose(posts[-1].mean, joint.mean, rtol=0.05, atol=0.03)


def test_ece_weights_bins_by_count():
    from jaxirl.irl.calibration import expected_calibration_error
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.8])
    y = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    # bins {0.1,0.2,0.3} (|0.2 - 1/3|) and {0.6,0.8} (|0.7 - 1|): (3*(2/15) + 2*0.3)/5 = 0.2
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.2)


def test_uniform_bins_by_hand():
    from jaxirl.irl.calibration import reliability_bins
    conf, acc, count = reliability_bins(np.array([0.45, 0.55, 0.7]), np.array([0.0, 1.0, 1.0]),
                                        bins=2, strategy="uniform")
    np.testing.assert_allclose(conf, [0.45, 0.625])
    np.testing.assert_allclose(acc, [0.0, 1.0])
    assert count.tolist() == [1, 2]


def test_ece_floor_searches_from_the_given_starts(monkeypatch):
    import scipy.optimize

    import jaxirl.irl.calibration as cal
    seen = []
    real = scipy.optimize.minimize

    def spy(fun, x0, **kw):
        seen.append(np.asarray(x0, float).tolist())
        return real(fun, x0, **kw)
    monkeypatch.setattr(cal.scipy.optimize, "minimize", spy)
    s = np.random.default_rng(0).normal(size=200)
    y = (s > 0).astype(float)
    cal.platt_ece_floor(s, y, starts=((2.0, 0.5),))
    assert any(np.allclose(x, [np.log(2.0), 0.5]) for x in seen)
