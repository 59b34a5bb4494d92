"""The PPO update: ``ppo_epochs`` passes over minibatches in one jitted ``lax.scan``.

The same function serves one device (``jax.jit``) and N devices
(``jax.pmap(..., axis_name=AXIS)``). Under pmap every device receives the whole
rollout and the same key, draws the same global minibatch permutation, and
takes its 1/N slice of each minibatch; each device's masked-mean loss is
re-weighted by its share of the global token count, so that the ``pmean`` of
gradients equals the single-device gradient of the same global minibatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxirl.errors import ConfigError
from jaxirl.finite import tree_finite
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.experience import Rollout, response_logits, token_logprobs
from jaxirl.ppo.losses import clipped_policy_loss, clipped_value_loss, entropy_from_logits
from jaxirl.ppo.state import PPOState, freeze

AXIS = "devices"


def check_batch_split(config: PPOConfig, num_devices: int) -> None:
    """Raises ConfigError unless the rollout and minibatch split evenly."""
    if config.num_rollouts % config.batch_size:
        raise ConfigError(f"PPOConfig.num_rollouts {config.num_rollouts} is not divisible by "
                          f"PPOConfig.batch_size {config.batch_size}")
    if config.batch_size % num_devices:
        raise ConfigError(f"PPOConfig.batch_size {config.batch_size} is not divisible by the device count "
                          f"{num_devices} (num_devices)")


def ppo_objective(model: GPTNeoXForCausalLM, params: Any, batch: Rollout, prompt_len: int,
                  config: PPOConfig):
    """Policy + value + entropy loss of one minibatch; returns (loss, stats)."""
    tokens = batch.sequences[:, prompt_len:]
    mask = batch.response_mask
    logits, values = response_logits(model, params, batch.sequences, batch.attention_mask, prompt_len)
    logprobs = token_logprobs(logits, tokens)
    pg_loss, pg_stats = clipped_policy_loss(logprobs, batch.logprobs, batch.advantages, mask,
                                            config.cliprange)
    vf_loss, vf_stats = clipped_value_loss(values, batch.values, batch.returns, mask,
                                           config.cliprange_value)
    loss = pg_loss + config.vf_coef * vf_loss
    if config.ent_coef:
        entropy = entropy_from_logits(logits, mask)
        loss = loss - config.ent_coef * entropy
    else:
        # A logged statistic only: 0 * entropy would still be differentiated (XLA keeps
        # x * 0 for NaN semantics), a softmax backward over [B, N, V] per minibatch.
        entropy = entropy_from_logits(jax.lax.stop_gradient(logits), mask)
    stats = {"loss": loss, "policy_loss": pg_loss, "value_loss": vf_loss, "entropy": entropy,
             **pg_stats, **vf_stats}
    return loss, stats


def make_update(model: GPTNeoXForCausalLM, config: PPOConfig, optimizer: optax.GradientTransformation,
                labels: Any, prompt_len: int, axis_name: str | None = None) -> Callable:
    """Returns ``update(state, rollout, key) -> (state, metrics)`` (not yet jitted).

    Args:
      axis_name: the pmap axis name when run under ``jax.pmap``; None for one device.
    """
    batch_size = config.batch_size
    num_minibatches = config.num_rollouts // batch_size

    def minibatch_step(carry, indices, rollout):
        params, opt_state = carry
        batch = jax.tree_util.tree_map(lambda x: x[indices], rollout)
        weight = 1.0
        if axis_name is not None:
            count = jnp.sum(batch.response_mask)
            total = jax.lax.psum(count, axis_name)
            weight = jax.lax.psum(1, axis_name) * count / jnp.maximum(total, 1.0)

        def loss_fn(p):
            loss, stats = ppo_objective(model, freeze(p, labels), batch, prompt_len, config)
            return loss * weight, stats

        grads, stats = jax.grad(loss_fn, has_aux=True)(params)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            stats = jax.lax.pmean(stats, axis_name)
        stats["grad_norm"] = optax.global_norm(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), stats

    def update(state: PPOState, rollout: Rollout, key: jax.Array):
        def epoch_order(epoch):
            perm = jax.random.permutation(jax.random.fold_in(key, epoch), config.num_rollouts)
            return perm.reshape(num_minibatches, batch_size)

        order = jax.vmap(epoch_order)(jnp.arange(config.ppo_epochs))
        order = order.reshape(config.ppo_epochs * num_minibatches, batch_size)
        if axis_name is not None:
            local = batch_size // jax.lax.psum(1, axis_name)
            start = jax.lax.axis_index(axis_name) * local
            order = jax.lax.dynamic_slice_in_dim(order, start, local, axis=1)
        (params, opt_state), stats = jax.lax.scan(
            lambda c, idx: minibatch_step(c, idx, rollout), (state.params, state.opt_state), order)
        metrics = jax.tree_util.tree_map(jnp.mean, stats)
        # On device, with the metrics fetched anyway: the host's divergence check is free.
        metrics["params_finite"] = tree_finite(params).astype(jnp.float32)
        return state.replace(params=params, opt_state=opt_state), metrics

    return update
