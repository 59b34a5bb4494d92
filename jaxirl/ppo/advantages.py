"""Token-level rewards and GAE for RLHF episodes over right-padded responses.

One episode is one response: action t is response token t, ``mask[b, t] = 1``
for the tokens the sample actually produced (EOS included) and 0 for the
right padding after it. Time is the last axis; any leading batch shape works,
so the functions are jittable and vmappable.

Reference: trlx ``PPOConfig.get_advantages_and_returns`` and
``AcceleratePPOTrainer.make_experience``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxirl.models.gpt_neox import last_token_index
from jaxirl.ppo.losses import KLMode, kl_penalty_per_token


def rewards_with_kl_penalty(
    scores: chex.Array,
    logprobs: chex.Array,
    ref_logprobs: chex.Array,
    mask: chex.Array,
    kl_coef: float | chex.Array,
    kl_mode: KLMode = "k1",
) -> chex.Array:
    """Per-token rewards: r_t = −β · kl_t + 1[t = last real token] · score.

    trlx's ``make_experience`` with one scalar score per sample: every response
    token is penalised by β·(logπ − logπ_ref) (k1) and the sequence score is
    added on the final token ("final reward given at EOS"). Padded positions get 0.

    One deliberate difference: trlx's slice end ``ends = start +
    attention_mask[:, start:].sum(1) + 1`` runs one token past EOS when
    pad == eos (Pythia), so its score lands on the first pad position (see
    CarperAI/trlx PR #433). Here it lands on the last token with mask = 1, so
    build ``mask`` to include the EOS the policy emitted.

    Args:
      scores: [B] reward-model scores (already scaled and clipped).
      logprobs: [B, T] log π(a_t) of the sampled response tokens, rollout policy.
      ref_logprobs: [B, T] the same under the frozen reference model.
      mask: [B, T] 0/1 real response tokens, right-padded.
      kl_coef: β, the current KL coefficient (``KLController.value``).
      kl_mode: per-token KL estimator (trlx: ``"k1"``).

    Returns:
      [B, T] float32 rewards.
    """
    chex.assert_equal_shape([logprobs, ref_logprobs, mask])
    chex.assert_equal_shape_prefix([scores, mask], scores.ndim)
    chex.assert_rank(scores, mask.ndim - 1)
    real = mask > 0
    kl = kl_penalty_per_token(logprobs, ref_logprobs, kl_mode)
    rewards = jnp.where(real, -kl_coef * kl, 0.0)
    t = jnp.arange(mask.shape[-1], dtype=jnp.int32)
    is_last = (t == last_token_index(mask)[..., None]) & real
    return (rewards + jnp.where(is_last, scores[..., None], 0.0)).astype(jnp.float32)


def gae_advantages(
    rewards: chex.Array,
    values: chex.Array,
    mask: chex.Array,
    gamma: float | chex.Array,
    lam: float | chex.Array,
) -> tuple[chex.Array, chex.Array]:
    """Generalised advantage estimation (Schulman et al. 2016) over masked episodes.

    With m_t the mask and V, r zeroed where m_t = 0:
      δ_t = r_t + γ · m_{t+1} V_{t+1} − V_t            (m_T = 0: no bootstrap at the end)
      A_t = δ_t + γ λ · m_{t+1} A_{t+1}
      R_t = A_t + V_t
    and A_t = R_t = 0 where m_t = 0. A 0 in the mask ends the episode: nothing
    flows back across it, neither values nor advantages.

    For right-padded masks this equals trlx's unmasked loop run on rewards and
    values that are zero-padded after each sequence, which is what trlx's
    rollout store feeds it. trlx then whitens the advantages (not the
    returns); do that with :func:`jaxirl.ppo.masked_whiten`.

    Computed with ``lax.scan(reverse=True)`` over time.

    Args:
      rewards: [B, T] per-token rewards (see :func:`rewards_with_kl_penalty`).
      values: [B, T] value predictions at rollout time.
      mask: [B, T] 0/1 real response tokens.
      gamma: discount γ.
      lam: GAE λ.

    Returns:
      (advantages, returns), both [B, T] float32, zero where the mask is 0.
    """
    chex.assert_equal_shape([rewards, values, mask])
    real = mask > 0
    m = real.astype(jnp.float32)
    r = jnp.where(real, rewards, 0.0).astype(jnp.float32)
    v = jnp.where(real, values, 0.0).astype(jnp.float32)

    def shift_left(x):
        # x_{t+1}, with 0 past the last position.
        return jnp.concatenate([x[..., 1:], jnp.zeros_like(x[..., :1])], axis=-1)

    next_m = shift_left(m)
    deltas = r + gamma * shift_left(v) * next_m - v
    decay = gamma * lam * next_m

    def step(next_adv, xs):
        delta_t, decay_t = xs
        adv_t = delta_t + decay_t * next_adv
        return adv_t, adv_t

    # Scan over time: move it to the front.
    xs = (jnp.moveaxis(deltas, -1, 0), jnp.moveaxis(decay, -1, 0))
    init = jnp.zeros(deltas.shape[:-1], jnp.float32)
    _, adv = jax.lax.scan(step, init, xs, reverse=True)
    advantages = jnp.moveaxis(adv, 0, -1) * m
    returns = (advantages + v) * m
    return advantages, returns
