"""Turning sampled responses and their scores into a PPO rollout buffer.

Shapes: ``R`` rollouts, ``P`` prompt tokens (left-padded), ``N`` new tokens.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
from jaxirl.ppo.advantages import gae_advantages, rewards_with_kl_penalty
from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.losses import masked_mean, masked_whiten, mean_sequence_kl
from jaxirl.ppo.reward_scaling import scale_rewards
from jaxirl.ppo.state import PPOState, frozen_trunk_depth, reference_params


@struct.dataclass
class Rollout:
    """One PPO buffer; every array has R rows.

    Attributes:
      sequences: [R, P + N] int32 prompt then response tokens.
      attention_mask: [R, P + N] int32.
      response_mask: [R, N] float32, 1 on response tokens up to and including EOS.
      logprobs: [R, N] behaviour log-probs of the response tokens.
      values: [R, N] value estimates before each response token.
      advantages: [R, N] whitened GAE advantages.
      returns: [R, N] GAE returns (value targets).
      trunk: [R, P + N, H] float32 residual stream entering the first trainable block
        (:func:`~jaxirl.ppo.state.frozen_trunk_depth`), or None when every block trains.
        The frozen blocks below it give the same output for the policy, the reference
        and every minibatch, so they run once per rollout.
    """

    sequences: chex.Array
    attention_mask: chex.Array
    response_mask: chex.Array
    logprobs: chex.Array
    values: chex.Array
    advantages: chex.Array
    returns: chex.Array
    trunk: chex.Array | None = None


def frozen_trunk(model: GPTNeoXForCausalLM, params: Any, sequences: chex.Array,
                 attention_mask: chex.Array, depth: int) -> chex.Array | None:
    """The residual stream [R, T, H] after the frozen blocks ``0 .. depth-1`` (None if depth 0)."""
    if depth == 0:
        return None
    return model.apply({"params": params}, sequences, attention_mask,
                       blocks=(0, depth)).residual


def response_logits(model: GPTNeoXForCausalLM, params: Any, sequences: chex.Array,
                    attention_mask: chex.Array, prompt_len: int,
                    trunk: chex.Array | None = None, depth: int = 0):
    """Logits [R, N, V] that predicted each response token, and values [R, N] (or None).

    With ``trunk``, :func:`frozen_trunk`'s output for ``depth``, only the blocks from
    ``depth`` up run.
    """
    # Position t predicts token t + 1: response token i is predicted at P - 1 + i.
    span = (prompt_len - 1, sequences.shape[1] - 1)
    split = {}
    if trunk is not None:
        split = {"blocks": (depth, model.config.num_hidden_layers), "residual": trunk}
    out = model.apply({"params": params}, sequences, attention_mask, output_span=span, **split)
    return out.logits, out.values


def token_logprobs(logits: chex.Array, tokens: chex.Array) -> chex.Array:
    """log p(tokens) [R, N] from logits [R, N, V]; float32 because bf16 log-probs are too coarse."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]


def make_experience(model: GPTNeoXForCausalLM, state: PPOState, sequences: chex.Array,
                    attention_mask: chex.Array, scores: chex.Array, prompt_len: int,
                    config: PPOConfig):
    """Builds the rollout buffer from responses and their scores (pure; jit it).

    Args:
      model: the policy module (with value head).
      state: the current PPO state (policy, reference branch, β, reward statistics).
      sequences: [R, P + N] prompt + response tokens.
      attention_mask: [R, P + N].
      scores: [R] float32 sequence-level rewards (e.g. −toxicity).
      prompt_len: P (static).
      config: PPO settings.

    Returns:
      ``(rollout, reward_moments, stats)``: the buffer, the updated running reward
      statistics, and scalars (mean score, mean per-sequence KL, ...).
    """
    tokens = sequences[:, prompt_len:]
    mask = attention_mask[:, prompt_len:].astype(jnp.float32)
    depth = frozen_trunk_depth(state.trainable, model.config.num_hidden_layers)
    trunk = frozen_trunk(model, state.params, sequences, attention_mask, depth)
    logits, values = response_logits(model, state.params, sequences, attention_mask, prompt_len,
                                      trunk, depth)
    logprobs = token_logprobs(logits, tokens)
    # The reference is the LM alone: no value head to run. It shares the frozen trunk.
    ref_logits, _ = response_logits(model.clone(with_value_head=False),
                                    reference_params(state.params, state.ref_branch),
                                    sequences, attention_mask, prompt_len, trunk, depth)
    ref_logprobs = token_logprobs(ref_logits, tokens)
    scaled, moments = scale_rewards(scores, state.reward_moments, config.scale_reward,
                                    config.cliprange_reward)
    rewards = rewards_with_kl_penalty(scaled, logprobs, ref_logprobs, mask, state.kl.value)
    advantages, returns = gae_advantages(rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        # Whitened once over the whole rollout (trlx: per minibatch); see BUILD_NOTES.md.
        advantages = masked_whiten(advantages, mask)
    seq_kl = jnp.sum((logprobs - ref_logprobs) * mask, axis=1)
    stats = {
        "score": jnp.mean(scores),
        "scaled_score": jnp.mean(scaled),
        "kl": jnp.mean(seq_kl),
        # trlx feeds its controller this estimator (exp(d) - 1 - d), not the k1 sum above
        # (summed over the response here; trlx also sums the prompt: BUILD_NOTES.md).
        "kl_controller_input": mean_sequence_kl(logprobs, ref_logprobs, mask, "trlx_k3"),
        "kl_coef": state.kl.value,
        "response_length": jnp.mean(jnp.sum(mask, axis=1)),
        "value_mean": masked_mean(values, mask),
    }
    rollout = Rollout(sequences=sequences, attention_mask=attention_mask, response_mask=mask,
                      logprobs=logprobs, values=values, advantages=advantages, returns=returns,
                      trunk=trunk)
    return rollout, moments, stats
