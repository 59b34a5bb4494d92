"""IRL losses: reference parity, monotonicity, hand values, regulariser, jit, masks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxirl.errors import ConfigError, RewardError
from jaxirl.irl import (
    LOSSES,
    IRLLossConfig,
    get_loss,
    hinge,
    irl_loss,
    logistic,
    max_margin,
    pair_stats,
    squared,
)


def reference_max_margin(reward_n_t, reward_t):
    """Verbatim from irl_for_llms src/irl_utilities.py get_irl_loss("max_margin")."""

    def custom_operator(input_vector):
        positive_mask = input_vector > 0
        negative_mask = input_vector < 0
        input_vector[positive_mask] *= -1
        input_vector[negative_mask] *= -2
        return input_vector

    reward_diff = reward_n_t - reward_t
    return custom_operator(reward_diff)


def test_max_margin_hand_values():
    # d = [1, -1, 0, 5] → per pair [-1, 2, 0, -5] → mean -1.
    r_e = jnp.array([2.0, 0.5, -1.0, 3.0])
    r_b = jnp.array([1.0, 1.5, -1.0, -2.0])
    assert float(max_margin(r_e, r_b)) == pytest.approx(-1.0)
    g_e, g_b = jax.grad(max_margin, argnums=(0, 1))(r_e, r_b)
    # Slopes -1 (correct pair), -2 (wrong pair), +1 at d = 0 (the reference's identity), / B.
    np.testing.assert_allclose(g_e, [-0.25, -0.5, 0.25, -0.25])
    np.testing.assert_allclose(g_b, -np.asarray(g_e))


def test_max_margin_matches_torch_reference_value_and_grad():
    rng = np.random.default_rng(0)
    r_e = rng.normal(size=16).astype(np.float32)
    r_b = rng.normal(size=16).astype(np.float32)
    r_b[[3, 7]] = r_e[[3, 7]]  # exact ties, d = 0
    t_e = torch.tensor(r_e, requires_grad=True)
    t_b = torch.tensor(r_b, requires_grad=True)
    per_pair = reference_max_margin(t_e, t_b)
    # The reference logs torch.mean of the per-pair vector.
    torch.mean(per_pair).backward()
    value, grads = jax.value_and_grad(max_margin, argnums=(0, 1))(jnp.array(r_e), jnp.array(r_b))
    assert float(value) == pytest.approx(float(torch.mean(per_pair).detach()), rel=1e-6)
    np.testing.assert_allclose(grads[0], t_e.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(grads[1], t_b.grad.numpy(), rtol=1e-6)


def test_hinge_and_logistic_match_reference_formulas():
    rng = np.random.default_rng(1)
    r_e, r_b = rng.normal(size=(2, 32)).astype(np.float32) * 3
    d = torch.tensor(r_e - r_b)
    ref_hinge = torch.nn.functional.relu(1 - d).mean().item()
    ref_logistic = (-torch.log(torch.sigmoid(d))).mean().item()
    assert float(hinge(r_e, r_b)) == pytest.approx(ref_hinge, rel=1e-6)
    assert float(logistic(r_e, r_b)) == pytest.approx(ref_logistic, rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_decreases_as_expert_gap_grows(name):
    # Below every default margin (1.0) every loss must strictly decrease in d (r_base fixed).
    gaps = jnp.linspace(-3.0, 0.9, 40)
    values = jax.vmap(lambda d: irl_loss(name, d[None], jnp.zeros(1)))(gaps)
    assert np.all(np.diff(np.asarray(values)) < 0), values


@pytest.mark.parametrize("name", ["max_margin", "logistic"])
def test_unbounded_margin_losses_keep_decreasing(name):
    gaps = jnp.linspace(1.0, 20.0, 20)
    values = np.asarray(jax.vmap(lambda d: irl_loss(name, d[None], jnp.zeros(1)))(gaps))
    assert np.all(np.diff(values) < 0)


@pytest.mark.parametrize("name", ["hinge", "squared"])
def test_hinge_losses_vanish_beyond_margin(name):
    r_e = jnp.array([1.0, 5.0, 1.5])
    assert float(irl_loss(name, r_e, jnp.zeros(3))) == 0.0
    assert float(irl_loss(name, r_e, jnp.zeros(3), margin=2.0)) > 0.0


def test_values_at_zero_gap():
    r = jnp.array([0.3, -1.2, 4.0])
    assert float(max_margin(r, r)) == 0.0
    assert float(hinge(r, r)) == pytest.approx(1.0)
    assert float(hinge(r, r, margin=2.5)) == pytest.approx(2.5)
    assert float(squared(r, r)) == pytest.approx(1.0)
    assert float(squared(r, r, margin=2.5)) == pytest.approx(6.25)
    assert float(logistic(r, r)) == pytest.approx(math.log(2.0), rel=1e-6)
    # max_margin's margin shifts the kink: d = 0 with margin 1 is a wrong pair, 2·1.
    assert float(max_margin(r, r, margin=1.0)) == pytest.approx(2.0)


def test_logistic_is_stable_for_large_gaps():
    r_e = jnp.array([-200.0, 200.0])
    value, grad = jax.value_and_grad(logistic)(r_e, jnp.zeros(2))
    # −log σ(−200) = 200 (the reference's −log(sigmoid) gives inf); −log σ(200) ≈ 0.
    assert float(value) == pytest.approx(100.0, rel=1e-6)
    np.testing.assert_allclose(grad, [-0.5, 0.0], atol=1e-6)


def test_reward_l2_bounds_max_margin_scale():
    a = jnp.array([1.0, 2.0, 0.5])
    b = jnp.array([0.0, -1.0, 0.2])  # every pair correctly ordered
    gap, sq = float(jnp.mean(a - b)), float(jnp.mean(a**2 + b**2))

    def loss(scale, lam):
        return irl_loss("max_margin", scale * a, scale * b, reward_l2=lam)

    # Without the penalty the loss is −s·gap: unbounded below as s grows.
    unreg = [float(loss(s, 0.0)) for s in (1.0, 10.0, 100.0, 1000.0)]
    np.testing.assert_allclose(unreg, [-gap * s for s in (1.0, 10.0, 100.0, 1000.0)], rtol=1e-5)
    lam = 0.1
    s_star = gap / (2 * lam * sq)
    scales = np.linspace(0.01, 10 * s_star, 2001)
    values = np.asarray(jax.vmap(lambda s: loss(s, lam))(jnp.asarray(scales)))
    assert abs(scales[np.argmin(values)] - s_star) < scales[1] - scales[0]
    assert float(jax.grad(loss)(s_star, lam)) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(s_star, lam)) == pytest.approx(-(gap**2) / (4 * lam * sq), rel=1e-5)


def test_discriminator_is_binary_cross_entropy_of_texts():
    # Each text is a labelled sample (expert 1, base 0) and the reward is its logit.
    discriminator = get_loss("discriminator")
    rng = np.random.default_rng(2)
    r_e, r_b = (rng.normal(size=(2, 16)) * 4).astype(np.float32)
    logits = torch.tensor(np.concatenate([r_e, r_b]))
    labels = torch.cat([torch.ones(16), torch.zeros(16)])
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    assert float(discriminator(r_e, r_b)) == pytest.approx(ref, rel=1e-5)
    # Hand values: r = 0 is log 2; r_e = 2, r_b = -1 is (softplus(-2) + softplus(-1)) / 2.
    assert float(discriminator(jnp.zeros(3), jnp.zeros(3))) == pytest.approx(math.log(2.0))
    expected = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)))
    assert float(discriminator(jnp.array([2.0]), jnp.array([-1.0]))) == pytest.approx(expected)
    # The margin moves the labels' boundary to ±margin.
    assert float(discriminator(jnp.array([1.5]), jnp.array([-1.5]), margin=1.5)) == \
        pytest.approx(math.log(2.0))
    # Stable for large logits (a naive log(sigmoid) gives inf).
    value = discriminator(jnp.array([-200.0, 200.0]), jnp.array([200.0, -200.0]))
    assert float(value) == pytest.approx(100.0, rel=1e-6)


def test_discriminator_minimiser_is_the_log_density_ratio():
    # Three kinds of text; the expert writes them 5:3:2 times, the base policy 2:3:5.
    # A free reward per kind minimises the loss at r = log(n_expert / n_base) (AIRL).
    kinds_e = np.array([0] * 5 + [1] * 3 + [2] * 2)
    kinds_b = np.array([0] * 2 + [1] * 3 + [2] * 5)
    discriminator = get_loss("discriminator")

    def loss(r):
        return discriminator(r[kinds_e], r[kinds_b])

    r_star = jnp.log(jnp.array([5 / 2, 1.0, 2 / 5]))
    np.testing.assert_allclose(jax.grad(loss)(r_star), 0.0, atol=1e-6)
    r = jax.lax.fori_loop(0, 3000, lambda _, r: r - 2.0 * jax.grad(loss)(r), jnp.zeros(3))
    np.testing.assert_allclose(r, r_star, atol=1e-4)
    # Pairwise losses only see differences: logistic's gradient is blind to a common offset.
    g = jax.grad(lambda c: irl_loss("logistic", r_star[kinds_e] + c, r_star[kinds_b] + c))(0.0)
    assert float(g) == pytest.approx(0.0, abs=1e-6)
    assert float(jax.grad(lambda c: loss(r_star + c))(1.0)) > 0.0


def test_discriminator_ignores_the_pairing():
    rng = np.random.default_rng(3)
    r_e, r_b = (rng.normal(size=(2, 8)) * 2).astype(np.float32)
    perm = rng.permutation(8)
    assert float(irl_loss("discriminator", r_e, r_b[perm])) == \
        pytest.approx(float(irl_loss("discriminator", r_e, r_b)), rel=1e-6)
    # The pairwise logistic loss depends on which base text each expert text meets.
    assert float(irl_loss("logistic", r_e, r_b[perm])) != \
        pytest.approx(float(irl_loss("logistic", r_e, r_b)), rel=1e-3)
    # Raising a base text's reward never lowers the loss; raising an expert's never raises it.
    grid = jnp.linspace(-6.0, 6.0, 25)
    up_b = jax.vmap(lambda x: irl_loss("discriminator", jnp.zeros(1), x[None]))(grid)
    down_e = jax.vmap(lambda x: irl_loss("discriminator", x[None], jnp.zeros(1)))(grid)
    assert np.all(np.diff(np.asarray(up_b)) > 0) and np.all(np.diff(np.asarray(down_e)) < 0)


def test_jit_and_grad_of_config():
    config = IRLLossConfig(name="logistic", reward_l2=0.1)
    r_e = jnp.array([0.5, -1.0, 2.0])
    r_b = jnp.array([0.0, 1.0, 1.0])
    eager = config(r_e, r_b)
    jitted = jax.jit(config)(r_e, r_b)
    assert float(jitted) == pytest.approx(float(eager), rel=1e-6)
    g_e = jax.jit(jax.grad(config))(r_e, r_b)
    d = r_e - r_b
    expected = (-(1.0 - jax.nn.sigmoid(d)) + 2 * 0.1 * r_e) / 3
    np.testing.assert_allclose(g_e, expected, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_weights_mask_padding_even_with_nan(name):
    r_e = jnp.array([0.5, -1.0, 2.0, jnp.nan])
    r_b = jnp.array([0.0, 1.0, 1.0, jnp.inf])
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])
    full = irl_loss(name, r_e, r_b, weights=mask, reward_l2=0.01)
    sliced = irl_loss(name, r_e[:3], r_b[:3], reward_l2=0.01)
    assert float(full) == pytest.approx(float(sliced), rel=1e-6)
    grad = jax.grad(lambda x: irl_loss(name, x, r_b, weights=mask, reward_l2=0.01))(r_e)
    assert np.all(np.isfinite(grad)) and float(grad[3]) == 0.0


def test_fractional_weights_equal_repetition():
    r_e, r_b = jnp.array([0.5, -1.0]), jnp.array([0.0, 1.0])
    weighted = hinge(r_e, r_b, weights=jnp.array([2.0, 1.0]))
    repeated = hinge(jnp.array([0.5, 0.5, -1.0]), jnp.array([0.0, 0.0, 1.0]))
    assert float(weighted) == pytest.approx(float(repeated))
    assert float(hinge(r_e, r_b, weights=jnp.zeros(2))) == 0.0


def test_bfloat16_rewards_give_float32_loss():
    r = jnp.array([1.0, 2.0], dtype=jnp.bfloat16)
    assert max_margin(r, r * 0).dtype == jnp.float32


def test_pair_stats_hand_values():
    stats = pair_stats(jnp.array([2.0, 0.0, 1.0]), jnp.array([1.0, 1.0, 1.0]))
    assert float(stats["pair_accuracy"]) == pytest.approx(1 / 3)
    assert float(stats["mean_gap"]) == pytest.approx(0.0)
    assert float(stats["reward_rms"]) == pytest.approx(math.sqrt(0.5 * (5 + 1 + 2) / 3))


def test_unknown_loss_and_bad_config_are_one_line_errors():
    with pytest.raises(ConfigError,
                       match="'mse'.*discriminator, fa_focal, fa_max_margin, fa_maxent, hinge, "
                             "logistic, max_margin, maxent, squared"):
        irl_loss("mse", jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ConfigError, match="'dpo'"):
        IRLLossConfig(name="dpo")
    with pytest.raises(ConfigError, match="reward_l2"):
        IRLLossConfig(reward_l2=-1.0)
    with pytest.raises(ConfigError, match="margin"):
        IRLLossConfig(margin=float("nan"))
    assert IRLLossConfig().effective_margin == 0.0
    assert IRLLossConfig(name="hinge").effective_margin == 1.0


def test_shape_mismatch_is_reward_error():
    with pytest.raises(RewardError, match=r"r_base has shape \(3,\)"):
        max_margin(jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(RewardError, match="r_expert must have shape"):
        hinge(jnp.zeros((2, 2)), jnp.zeros((2, 2)))
    with pytest.raises(RewardError, match="weights"):
        logistic(jnp.zeros(2), jnp.zeros(2), weights=jnp.ones(3))
