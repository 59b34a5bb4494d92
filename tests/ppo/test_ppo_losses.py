"""PPO losses, whitening, entropy and KL estimators against hand values and NumPy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxirl.errors import ConfigError
from jaxirl.ppo import (
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    kl_penalty_per_token,
    masked_mean,
    masked_whiten,
    mean_sequence_kl,
    ppo_loss,
)


def np_trlx_loss(logprobs, values, old_logprobs, old_values, advantages, returns, mask, c, cv):
    """Transcription of trlx PPOConfig.loss in NumPy (approx_kl over masked tokens)."""
    n = mask.sum()
    values_clipped = np.clip(values, old_values - cv, old_values + cv)
    vf1 = (values - returns) ** 2
    vf2 = (values_clipped - returns) ** 2
    vf_loss = 0.5 * np.sum(np.maximum(vf1, vf2) * mask) / n
    vf_clipfrac = np.sum((vf2 > vf1) * mask) / n
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = np.exp(log_ratio)
    approx_kl = np.sum(((ratio - 1) - log_ratio) * mask) / n
    pg1 = -advantages * ratio
    pg2 = -advantages * np.clip(ratio, 1 - c, 1 + c)
    pg_loss = np.sum(np.maximum(pg1, pg2) * mask) / n
    pg_clipfrac = np.sum((pg2 > pg1) * mask) / n
    return pg_loss, vf_loss, pg_clipfrac, vf_clipfrac, approx_kl


def random_batch(seed, b=4, t=9):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t + 1, size=b)
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.float32)
    f = lambda *s: rng.normal(size=s).astype(np.float32)
    old_logprobs = -np.abs(f(b, t)) - 0.5
    logprobs = old_logprobs + 0.3 * f(b, t)  # ratios spread across the clip range
    old_values = f(b, t)
    values = old_values + 0.4 * f(b, t)
    return dict(
        logprobs=logprobs,
        values=values,
        old_logprobs=old_logprobs,
        old_values=old_values,
        advantages=f(b, t),
        returns=f(b, t),
        mask=mask,
    )


def test_masked_mean_ignores_garbage_and_empty_mask():
    x = np.array([1.0, 2.0, np.nan, np.inf], np.float32)
    mask = np.array([1, 1, 0, 0])
    assert float(jax.jit(masked_mean)(x, mask)) == pytest.approx(1.5)
    assert float(masked_mean(x, np.zeros(4))) == 0.0
    np.testing.assert_allclose(
        masked_mean(np.array([[1.0, 3.0], [5.0, 7.0]]), np.array([[1, 1], [1, 0]]), axis=-1),
        [2.0, 5.0],
    )


def test_whiten_hand_values():
    x = np.array([1.0, 2.0, 3.0, 100.0], np.float32)
    mask = np.array([1, 1, 1, 0], np.float32)
    # Real entries 1, 2, 3: mean 2, unbiased var (1 + 0 + 1) / (3 - 1) = 1.
    np.testing.assert_allclose(jax.jit(masked_whiten)(x, mask), [-1.0, 0.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(masked_whiten(x, mask, shift_mean=False), [1, 2, 3, 0], atol=1e-6)


def test_whiten_matches_numpy_and_trlx_unmasked():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(5, 8)).astype(np.float32)
    mask = (rng.random((5, 8)) < 0.6).astype(np.float32)
    real = x[mask > 0]
    expected = np.where(mask > 0, (x - real.mean()) / np.sqrt(real.var(ddof=1) + 1e-8), 0.0)
    np.testing.assert_allclose(masked_whiten(x, mask), expected, rtol=1e-5, atol=1e-5)
    # trlx whitens the whole tensor with torch.var_mean (unbiased): mask of ones.
    trlx = (x - x.mean()) / np.sqrt(x.var(ddof=1) + 1e-8)
    np.testing.assert_allclose(masked_whiten(x, np.ones_like(x)), trlx, rtol=1e-5, atol=1e-5)


def test_policy_loss_hand_values_clipped_and_unclipped():
    eps = 0.2
    ratios = np.array([[1.5, 0.9, 0.5, 0.5, 3.0]], np.float32)
    advantages = np.array([[1.0, 2.0, -1.0, 1.0, 7.0]], np.float32)
    mask = np.array([[1, 1, 1, 1, 0]], np.float32)
    old = np.full((1, 5), -1.0, np.float32)
    logprobs = old + np.log(ratios)
    # token: -A*r        -A*clip(r, 0.8, 1.2)  max     clipped term larger?
    #  a   : -1.5        -1.2                  -1.2    yes (clip active)
    #  b   : -1.8        -1.8                  -1.8    no  (0.9 inside the range)
    #  c   : +0.5        +0.8                  +0.8    yes (A < 0, r < 0.8)
    #  d   : -0.5        -0.8                  -0.5    no  (clipping would help: inactive)
    #  e   : padding
    # loss = (-1.2 - 1.8 + 0.8 - 0.5) / 4 = -0.675; clipfrac = 2 / 4
    loss, metrics = jax.jit(clipped_policy_loss)(logprobs, old, advantages, mask, eps)
    assert float(loss) == pytest.approx(-0.675, abs=1e-6)
    assert float(metrics["clipfrac"]) == pytest.approx(0.5)
    k3 = [r - 1 - math.log(r) for r in (1.5, 0.9, 0.5, 0.5)]
    assert float(metrics["approx_kl"]) == pytest.approx(sum(k3) / 4, abs=1e-6)

    # d loss / d logprob = -A * r where unclipped, 0 where clipped or padded:
    #   a: 0, b: -2 * 0.9 / 4 = -0.45, c: 0, d: -1 * 0.5 / 4 = -0.125, e: 0
    grad = jax.grad(lambda lp: clipped_policy_loss(lp, old, advantages, mask, eps)[0])(logprobs)
    np.testing.assert_allclose(grad, [[0.0, -0.45, 0.0, -0.125, 0.0]], atol=1e-6)


def test_ratio_metric_is_the_mean_over_masked_tokens_only():
    # Padding has log ratio 0 (ratio 1) inside the loss; it must not enter the mean.
    ratios = np.array([[2.0, 1.0, 3.0, 3.0]], np.float32)
    mask = np.array([[1, 1, 0, 0]], np.float32)
    old = np.full((1, 4), -1.0, np.float32)
    _, metrics = clipped_policy_loss(old + np.log(ratios), old, np.ones((1, 4)), mask, 0.2)
    assert float(metrics["ratio"]) == pytest.approx((2.0 + 1.0) / 2, rel=1e-6)


def test_policy_loss_without_clipping_is_plain_surrogate():
    ratios = np.array([[1.1, 0.85, 1.0]], np.float32)
    advantages = np.array([[1.0, -2.0, 3.0]], np.float32)
    old = np.zeros((1, 3), np.float32)
    loss, metrics = clipped_policy_loss(np.log(ratios), old, advantages, np.ones((1, 3)), 0.2)
    # -(1.1*1 + 0.85*(-2) + 1.0*3) / 3 = -(1.1 - 1.7 + 3) / 3 = -0.8
    assert float(loss) == pytest.approx(-0.8, abs=1e-6)
    assert float(metrics["clipfrac"]) == 0.0


def test_value_loss_hand_values():
    values = np.array([[1.5, 1.1, 1.5, 42.0]], np.float32)
    old_values = np.array([[1.0, 1.0, 1.0, 0.0]], np.float32)
    returns = np.array([[2.0, 0.0, 1.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 1, 0]], np.float32)
    # token: V_clip   (V-R)^2   (V_clip-R)^2   max    clipped larger?
    #  a   : 1.2      0.25      0.64           0.64   yes
    #  b   : 1.1      1.21      1.21           1.21   no (inside the range)
    #  c   : 1.2      0.25      0.04           0.25   no (clipping would help)
    # loss = 0.5 * (0.64 + 1.21 + 0.25) / 3 = 0.35; vf_clipfrac = 1/3
    loss, metrics = jax.jit(clipped_value_loss)(values, old_values, returns, mask, 0.2)
    assert float(loss) == pytest.approx(0.35, abs=1e-6)
    assert float(metrics["vf_clipfrac"]) == pytest.approx(1 / 3, abs=1e-6)
    loss, metrics = clipped_value_loss(values, old_values, returns, mask, 10.0)
    # No clipping: 0.5 * (0.25 + 1.21 + 0.25) / 3 = 0.285
    assert float(loss) == pytest.approx(0.285, abs=1e-6)
    assert float(metrics["vf_clipfrac"]) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_loss_matches_numpy_trlx(seed):
    batch = random_batch(seed)
    c, cv, vf_coef = 0.2, 0.2, 0.7
    loss, m = jax.jit(lambda b: ppo_loss(**b, cliprange=c, cliprange_value=cv, vf_coef=vf_coef))(
        batch
    )
    pg, vf, pg_cf, vf_cf, akl = np_trlx_loss(**batch, c=c, cv=cv)
    assert 0.0 < pg_cf < 1.0 and 0.0 < vf_cf < 1.0  # both clipping branches exercised
    np.testing.assert_allclose(float(m["policy_loss"]), pg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(m["value_loss"]), vf, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss), pg + vf_coef * vf, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(m["total_loss"]), float(loss))
    np.testing.assert_allclose(float(m["clipfrac"]), pg_cf, atol=1e-6)
    np.testing.assert_allclose(float(m["vf_clipfrac"]), vf_cf, atol=1e-6)
    np.testing.assert_allclose(float(m["approx_kl"]), akl, rtol=1e-5, atol=1e-7)


def test_ppo_loss_entropy_term_and_vmap():
    batch = random_batch(3)
    logits = np.random.default_rng(3).normal(size=batch["mask"].shape + (6,)).astype(np.float32)
    kw = dict(cliprange=0.2, cliprange_value=0.2, vf_coef=1.0)
    base, _ = ppo_loss(**batch, **kw)
    loss, m = ppo_loss(**batch, **kw, ent_coef=0.01, logits=logits)
    assert float(loss) == pytest.approx(float(base) - 0.01 * float(m["entropy"]), abs=1e-6)
    with pytest.raises(ConfigError, match="ent_coef"):
        ppo_loss(**batch, **kw, ent_coef=0.01)
    # vmap over a leading axis of minibatches equals a Python loop.
    stacked = {k: np.stack([v, v[::-1]]) for k, v in batch.items()}
    losses, _ = jax.vmap(lambda b: ppo_loss(**b, **kw))(stacked)
    for i in range(2):
        single, _ = ppo_loss(**{k: v[i] for k, v in stacked.items()}, **kw)
        assert float(losses[i]) == pytest.approx(float(single), abs=1e-6)


def test_entropy_hand_values_numpy_and_bf16():
    v = 8
    logits = np.zeros((1, 2, v), np.float32)
    logits[0, 1] = [0.0, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf]
    # Uniform over 8 -> ln 8; one-hot (others -inf) -> 0 and no NaN.
    mask = np.ones((1, 2))
    h = jax.jit(entropy_from_logits)(logits, mask)
    assert float(h) == pytest.approx(math.log(8) / 2, abs=1e-6)
    grad = jax.grad(lambda x: entropy_from_logits(x, mask))(jnp.asarray(logits))
    assert np.isfinite(np.asarray(grad)).all()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 50)).astype(np.float32) * 3
    m = (rng.random((3, 4)) < 0.7).astype(np.float32)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    h_np = -(p * np.log(p)).sum(-1)
    np.testing.assert_allclose(entropy_from_logits(x, m), (h_np * m).sum() / m.sum(), rtol=1e-5)
    # bf16 logits are upcast: same result as the float32 copy of the same bf16 values.
    xb = jnp.asarray(x, jnp.bfloat16)
    h_b = entropy_from_logits(xb, m)
    assert h_b.dtype == jnp.float32
    assert float(h_b) == pytest.approx(float(entropy_from_logits(xb.astype(jnp.float32), m)))


def test_kl_estimators_hand_values():
    logp = np.log(np.array([0.5], np.float32))
    ref = np.log(np.array([0.25], np.float32))
    ln2 = math.log(2.0)  # log r
    expected = {"k1": ln2, "k2": 0.5 * ln2**2, "k3": (0.5 - 1) + ln2, "trlx_k3": (2 - 1) - ln2}
    for mode, value in expected.items():
        got = jax.jit(kl_penalty_per_token, static_argnums=2)(logp, ref, mode)
        assert float(got[0]) == pytest.approx(value, abs=1e-6), mode
    with pytest.raises(ConfigError, match="kl mode"):
        kl_penalty_per_token(logp, ref, "k4")


def test_kl_estimator_expectations_under_policy():
    # Exact expectation over a 5-token vocabulary with tokens drawn from p.
    p = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    q = np.array([0.2, 0.2, 0.2, 0.2, 0.2])
    kl = float(np.sum(p * np.log(p / q)))
    chi2 = float(np.sum(p * p / q) - 1.0)
    lp, lq = np.log(p).astype(np.float32), np.log(q).astype(np.float32)
    expect = lambda mode: float(np.sum(p * np.asarray(kl_penalty_per_token(lp, lq, mode))))
    assert expect("k1") == pytest.approx(kl, abs=1e-6)
    assert expect("k3") == pytest.approx(kl, abs=1e-6)  # unbiased
    assert expect("trlx_k3") == pytest.approx(chi2 - kl, abs=1e-6)  # what trlx feeds β


def test_mean_sequence_kl_matches_trlx_rollout_stat():
    rng = np.random.default_rng(4)
    logprobs = rng.normal(size=(4, 6)).astype(np.float32) * 0.3
    ref_logprobs = rng.normal(size=(4, 6)).astype(np.float32) * 0.3
    mask = (np.arange(6)[None] < np.array([[6], [3], [1], [5]])).astype(np.float32)
    # trlx make_experience: log_ratio masked, kl = exp(lr) - 1 - lr, kl.sum(1).mean()
    log_ratio = (logprobs - ref_logprobs) * mask
    expected = (np.exp(log_ratio) - 1 - log_ratio).sum(1).mean()
    got = jax.jit(mean_sequence_kl)(logprobs, ref_logprobs, mask)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    k1 = mean_sequence_kl(logprobs, ref_logprobs, mask, "k1")
    assert float(k1) == pytest.approx(float(log_ratio.sum(1).mean()), rel=1e-5, abs=1e-6)
