"""GAE and per-token reward placement against hand arithmetic and NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxirl.ppo import gae_advantages, last_token_index, rewards_with_kl_penalty


def trlx_gae(rewards, values, gamma, lam):
    """trlx get_advantages_and_returns (no whitening), unmasked, on one [T] or [B, T] array."""
    rewards, values = np.atleast_2d(rewards), np.atleast_2d(values)
    n = rewards.shape[1]
    lastgaelam = 0.0
    out = []
    for t in reversed(range(n)):
        nextvalues = values[:, t + 1] if t < n - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        out.append(lastgaelam)
    adv = np.stack(out[::-1], axis=1)
    return adv, adv + values


def sliced_trlx_gae(rewards, values, mask, gamma, lam):
    """trlx's rollout store: each sample keeps its own length, GAE runs on it, zero right pad."""
    adv = np.zeros_like(rewards)
    ret = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        n = int(mask[b].sum())
        if n:
            a, r = trlx_gae(rewards[b, :n], values[b, :n], gamma, lam)
            adv[b, :n], ret[b, :n] = a[0], r[0]
    return adv, ret


def episodic_gae(rewards, values, mask, gamma, lam):
    """Plain loop for arbitrary masks: a 0 ends the episode (no bootstrap, no carry)."""
    adv = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        lastgae, nextv = 0.0, 0.0
        for t in reversed(range(rewards.shape[1])):
            if not mask[b, t]:
                lastgae, nextv = 0.0, 0.0
                continue
            delta = rewards[b, t] + gamma * nextv - values[b, t]
            lastgae = delta + gamma * lam * lastgae
            adv[b, t] = lastgae
            nextv = values[b, t]
    return adv, np.where(mask > 0, adv + values, 0.0)


def right_padded_mask(rng, batch, length):
    lengths = rng.integers(0, length + 1, size=batch)
    lengths[0] = length  # one full row: no padding
    return (np.arange(length)[None, :] < lengths[:, None]).astype(np.float32)


def test_gae_hand_values_with_padding():
    gamma, lam = 1.0, 0.5
    rewards = np.array([[0.0, 0.0, 1.0], [0.2, 1.0, 99.0]], np.float32)
    values = np.array([[0.5, 0.5, 0.5], [1.0, 2.0, 50.0]], np.float32)
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    adv, ret = jax.jit(gae_advantages)(rewards, values, mask, gamma, lam)
    # Row 0 (full):
    #   t=2: no next token -> d2 = 1 + 0 - 0.5 = 0.5;          A2 = 0.5
    #   t=1: d1 = 0 + 1*0.5 - 0.5 = 0;   A1 = 0 + 1*0.5*0.5   = 0.25
    #   t=0: d0 = 0 + 1*0.5 - 0.5 = 0;   A0 = 0 + 0.5*0.25    = 0.125
    #   R = A + V = [0.625, 0.75, 1.0]
    # Row 1 (t=2 is padding holding garbage 99 / 50, which must not leak):
    #   t=2: A2 = R2 = 0
    #   t=1: next is padding -> d1 = 1.0 + 0 - 2.0 = -1.0;      A1 = -1.0
    #   t=0: d0 = 0.2 + 1*2.0 - 1.0 = 1.2; A0 = 1.2 + 0.5*(-1) = 0.7
    #   R = [0.7 + 1.0, -1.0 + 2.0, 0] = [1.7, 1.0, 0]
    np.testing.assert_allclose(adv, [[0.125, 0.25, 0.5], [0.7, -1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(ret, [[0.625, 0.75, 1.0], [1.7, 1.0, 0.0]], atol=1e-6)


def test_gae_discounted_monte_carlo_hand_values():
    # lam = 1 and V = 0: A_t = R_t = discounted return.
    #   R2 = 4;  R1 = 2 + 0.5*4 = 4;  R0 = 1 + 0.5*4 = 3
    rewards = np.array([[1.0, 2.0, 4.0]], np.float32)
    values = np.zeros_like(rewards)
    adv, ret = gae_advantages(rewards, values, np.ones_like(rewards), 0.5, 1.0)
    np.testing.assert_allclose(adv, [[3.0, 4.0, 4.0]], atol=1e-6)
    np.testing.assert_allclose(ret, [[3.0, 4.0, 4.0]], atol=1e-6)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.95), (0.9, 0.0), (0.7, 1.0)])
def test_gae_matches_trlx_on_right_padded_batches(gamma, lam):
    rng = np.random.default_rng(0)
    b, t = 6, 11
    mask = right_padded_mask(rng, b, t)
    rewards = rng.normal(size=(b, t)).astype(np.float32)
    values = rng.normal(size=(b, t)).astype(np.float32)
    # Garbage in the padding must not matter.
    rewards_g = np.where(mask > 0, rewards, 1e3).astype(np.float32)
    values_g = np.where(mask > 0, values, -1e3).astype(np.float32)
    adv, ret = jax.jit(gae_advantages)(rewards_g, values_g, mask, gamma, lam)

    ref_adv, ref_ret = sliced_trlx_gae(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)
    # trlx's own zero padding gives the same numbers at real tokens.
    pad_adv, pad_ret = trlx_gae(rewards * mask, values * mask, gamma, lam)
    np.testing.assert_allclose(adv, pad_adv * mask, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, pad_ret * mask, rtol=1e-5, atol=1e-5)


def test_gae_arbitrary_mask_ends_episodes():
    rng = np.random.default_rng(1)
    b, t = 5, 9
    mask = (rng.random((b, t)) < 0.7).astype(np.float32)
    rewards = rng.normal(size=(b, t)).astype(np.float32)
    values = rng.normal(size=(b, t)).astype(np.float32)
    adv, ret = gae_advantages(rewards, values, mask, 0.95, 0.9)
    ref_adv, ref_ret = episodic_gae(rewards, values, mask, 0.95, 0.9)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


def test_gae_vmaps_over_leading_axis_and_traced_hyperparameters():
    rng = np.random.default_rng(2)
    n, b, t = 3, 4, 7
    mask = np.stack([right_padded_mask(rng, b, t) for _ in range(n)])
    rewards = rng.normal(size=(n, b, t)).astype(np.float32)
    values = rng.normal(size=(n, b, t)).astype(np.float32)
    gammas = jnp.array([1.0, 0.9, 0.5])
    adv, ret = jax.jit(jax.vmap(gae_advantages, in_axes=(0, 0, 0, 0, None)))(
        rewards, values, mask, gammas, 0.95
    )
    for i in range(n):
        ref_adv, ref_ret = sliced_trlx_gae(rewards[i], values[i], mask[i], float(gammas[i]), 0.95)
        np.testing.assert_allclose(adv[i], ref_adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret[i], ref_ret, rtol=1e-5, atol=1e-5)


def test_last_token_index():
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(last_token_index(mask), [2, 3, 0, 0])


def test_rewards_score_on_last_real_token_minus_kl():
    logprobs = np.array([[0.1, -0.2, 0.3, 9.0], [0.0, 0.0, 0.0, 0.5], [1.0, 1.0, 1.0, 1.0]])
    ref_logprobs = np.zeros_like(logprobs)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
    scores = np.array([2.0, -1.0, 5.0], np.float32)
    rewards = jax.jit(rewards_with_kl_penalty)(scores, logprobs, ref_logprobs, mask, 0.5)
    # r_t = -0.5 * (logp - ref) on real tokens, + score on the last real token:
    #   row 0: [-0.05, 0.1, -0.15 + 2 = 1.85, 0 (pad)]
    #   row 1: [0, 0, 0, -0.25 - 1 = -1.25]
    #   row 2: no real token -> all 0, the score goes nowhere
    expected = [[-0.05, 0.1, 1.85, 0.0], [0.0, 0.0, 0.0, -1.25], [0.0, 0.0, 0.0, 0.0]]
    np.testing.assert_allclose(rewards, expected, atol=1e-6)


def test_rewards_match_trlx_loop_on_random_batches():
    rng = np.random.default_rng(3)
    b, t, beta = 8, 10, 0.13
    mask = right_padded_mask(rng, b, t)
    mask[1] = 0.0
    mask[1, 0] = 1.0  # a one-token response
    logprobs = rng.normal(size=(b, t)).astype(np.float32)
    ref_logprobs = rng.normal(size=(b, t)).astype(np.float32)
    scores = rng.normal(size=b).astype(np.float32)
    got = rewards_with_kl_penalty(scores, logprobs, ref_logprobs, mask, beta)
    expected = np.zeros((b, t), np.float32)
    for i in range(b):
        n = int(mask[i].sum())
        if n == 0:
            continue
        r = beta * -(logprobs[i, :n] - ref_logprobs[i, :n])  # trlx: kl_ctl.value * -log_ratio
        r[-1] += scores[i]  # trlx: rewards[-1] += scores[sample_idx][0]
        expected[i, :n] = r
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_rewards_k3_penalty_is_nonnegative_kl():
    logprobs = np.log(np.array([[0.5, 0.5]], np.float32))
    ref_logprobs = np.log(np.array([[0.25, 0.5]], np.float32))
    rewards = rewards_with_kl_penalty(
        np.zeros(1, np.float32), logprobs, ref_logprobs, np.ones((1, 2)), 1.0, kl_mode="k3"
    )
    # log r = ln 2: k3 = (1/2 - 1) + ln 2 = 0.193147; second token log r = 0 -> 0.
    np.testing.assert_allclose(rewards, [[-(np.log(2.0) - 0.5), 0.0]], atol=1e-6)
