"""The PPO update: ``ppo_epochs`` passes over minibatches in one jitted ``lax.scan``.

:func:`make_update` returns a pure ``update(state, rollout, key)`` written for the
global batch. On one device jit it as is; on a mesh, :class:`~jaxirl.ppo.trainer.PPOTrainer`
jits it with the state's and the rollout's shardings (:mod:`jaxirl.parallel`):
every minibatch is drawn from the same global permutation and kept split over the
mesh's batch axes, and XLA's SPMD partitioner reduces the gradient of the global
masked-mean loss, so N devices take the single-device step on the same rollout.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxirl import parallel
from jaxirl.errors import ConfigError
from jaxirl.finite import tree_finite
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.experience import Rollout, response_logits, token_logprobs
from jaxirl.ppo.losses import PPOLoss
from jaxirl.ppo.state import PPOState, frozen_trunk_depth


def check_batch_split(config: PPOConfig, batch_split: int = 1) -> None:
    """Raises ConfigError unless the rollout and minibatch split evenly (over ``batch_split`` devices)."""
    if config.num_rollouts % config.batch_size:
        raise ConfigError(f"PPOConfig.num_rollouts {config.num_rollouts} is not divisible by "
                          f"PPOConfig.batch_size {config.batch_size}")
    # Rollouts decode in batches that need not split (the sampler pads them); minibatches must.
    if config.batch_size % batch_split:
        raise ConfigError(f"PPOConfig.batch_size {config.batch_size} is not divisible by the "
                          f"{batch_split} devices of the mesh (--num_devices / --mesh)")


def ppo_objective(model: GPTNeoXForCausalLM, params, batch: Rollout, prompt_len: int,
                  loss: PPOLoss, trunk_depth: int = 0):
    """The loss of one minibatch, ``(loss, stats)``: the policy's forward pass, then ``loss``.

    With ``batch.trunk`` the forward pass starts at block ``trunk_depth`` from it.
    """
    logits, values = response_logits(model, params, batch.sequences, batch.attention_mask,
                                     prompt_len, batch.trunk, trunk_depth)
    logprobs = token_logprobs(logits, batch.sequences[:, prompt_len:])
    total, stats = loss(logprobs, values, batch.logprobs, batch.values, batch.advantages,
                        batch.returns, batch.response_mask, logits)
    return total, {"loss": stats.pop("total_loss"), **stats}


def minibatch_order(key: jax.Array, num_rollouts: int, batch_size: int, epochs: int) -> jax.Array:
    """Rollout indices of every minibatch step, [epochs · num_rollouts / batch_size, batch_size].

    Each epoch is a fresh permutation of all ``num_rollouts`` rows (``key`` folded with
    the epoch), cut into consecutive minibatches, as trlx reshuffles its rollout store
    every epoch. ``num_rollouts`` must be a multiple of ``batch_size``.
    """
    num_minibatches = num_rollouts // batch_size

    def epoch_order(epoch):
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_rollouts)
        return perm.reshape(num_minibatches, batch_size)

    order = jax.vmap(epoch_order)(jnp.arange(epochs))
    return order.reshape(epochs * num_minibatches, batch_size)


def make_update(model: GPTNeoXForCausalLM, config: PPOConfig, prompt_len: int) -> Callable:
    """Returns ``update(state, rollout, key) -> (state, metrics)``, pure and not yet jitted.

    Args:
      model: the policy module (with value head).
      config: PPO settings (epochs, minibatch size, loss hyperparameters).
      prompt_len: P, the prompt width of the rollout's sequences (static).

    ``state.tx`` steps the params; frozen subtrees (``state.trainable``) get no
    gradient. ``metrics`` are the means over all minibatch steps (``grad_norm`` among
    them), plus ``params_finite``: 1.0 while every updated parameter is finite.
    """
    batch_size = config.batch_size
    loss = PPOLoss.from_config(config)

    def minibatch_step(state: PPOState, indices, rollout):
        # A gather by global indices; on a mesh its rows stay split over the batch axes.
        batch = parallel.constrain_rows(jax.tree_util.tree_map(lambda x: x[indices], rollout))
        depth = frozen_trunk_depth(state.trainable, model.config.num_hidden_layers)
        grads, stats = jax.grad(
            lambda p: ppo_objective(model, state.frozen_view(p), batch, prompt_len, loss, depth),
            has_aux=True)(state.params)
        stats["grad_norm"] = optax.global_norm(grads)
        return state.apply_gradients(grads), stats

    def update(state: PPOState, rollout: Rollout, key: jax.Array):
        order = minibatch_order(key, config.num_rollouts, batch_size, config.ppo_epochs)
        state, stats = jax.lax.scan(lambda s, idx: minibatch_step(s, idx, rollout), state, order)
        metrics = jax.tree_util.tree_map(jnp.mean, stats)
        # On device, with the metrics fetched anyway: the host's divergence check is free.
        metrics["params_finite"] = tree_finite(state.params).astype(jnp.float32)
        return state, metrics

    return update
