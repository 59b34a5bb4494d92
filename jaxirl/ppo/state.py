"""The PPO train state: trainable/frozen split, optimizer and the shared reference.

With ``num_layers_unfrozen = k`` only the top k blocks, the final norm, the LM
head and the value head train (trlx's ``freeze_bottom_causal_layers``). The
frozen reference policy then differs from the policy only in those subtrees,
so :class:`PPOState` stores a copy of just them (``ref_branch``) and borrows the
frozen trunk from the policy's own params (trlx's "hydra" reference), never
holding two copies of the trunk.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.kl_controller import KLController, kl_controller_from_config
from jaxirl.ppo.reward_scaling import RewardScalingState

TRAIN, FREEZE = "train", "freeze"


@struct.dataclass
class PPOState:
    """Everything a resumed PPO run needs.

    Attributes:
      step: PPO iterations done (one rollout + update each).
      params: the policy's full params, including ``value_head``.
      opt_state: optax state; frozen subtrees hold none.
      ref_branch: reference copies of the trainable subtrees (value head excluded).
      kl: adaptive/fixed KL controller state (β).
      reward_moments: running statistics for ``scale_reward="running"``.
      key: PRNG key for the next iteration.
      data_position: prompts consumed so far, so a resumed run continues the same order.
    """

    step: chex.Array
    params: Any
    opt_state: Any
    ref_branch: Any
    kl: KLController
    reward_moments: RewardScalingState
    key: chex.Array
    data_position: chex.Array


def trainable_labels(params: Any, num_layers: int, num_layers_unfrozen: int) -> Any:
    """A pytree of ``"train"``/``"freeze"`` labels for ``optax.multi_transform``.

    ``num_layers_unfrozen < 0`` trains everything; ``k >= 0`` freezes the
    embedding and the bottom ``num_layers - k`` blocks.
    """
    first_trainable = 0 if num_layers_unfrozen < 0 else max(num_layers - num_layers_unfrozen, 0)

    def label(name: str) -> str:
        if num_layers_unfrozen < 0:
            return TRAIN
        if name == "embed_in":
            return FREEZE
        if name.startswith("layers_"):
            return TRAIN if int(name.split("_")[1]) >= first_trainable else FREEZE
        return TRAIN

    return {name: jax.tree_util.tree_map(lambda _, n=name: label(n), sub) for name, sub in params.items()}


def _top_label(labels: Any, name: str) -> str:
    return jax.tree_util.tree_leaves(labels[name])[0]


def reference_branch(params: Any, labels: Any) -> Any:
    """Copies of the trainable LM subtrees: with the frozen trunk, the reference policy."""
    return {name: jax.tree_util.tree_map(jnp.array, sub) for name, sub in params.items()
            if name != "value_head" and _top_label(labels, name) == TRAIN}


def reference_params(state_params: Any, ref_branch: Any) -> Any:
    """The reference policy's params: the frozen trunk of the policy plus ``ref_branch``."""
    merged = {name: sub for name, sub in state_params.items() if name != "value_head"}
    merged.update(ref_branch)
    return merged


def freeze(params: Any, labels: Any) -> Any:
    """Stops gradients through frozen subtrees so XLA skips their backward pass."""
    return jax.tree_util.tree_map(lambda p, lab: jax.lax.stop_gradient(p) if lab == FREEZE else p,
                                  params, labels)


def make_optimizer(config: PPOConfig, labels: Any) -> optax.GradientTransformation:
    """AdamW (trlx's optimizer) on trainable leaves, optionally norm-clipped; frozen leaves get no state."""
    b1, b2 = config.adam_betas
    adamw = optax.adamw(config.lr, b1=b1, b2=b2, eps=config.adam_eps,
                        weight_decay=config.weight_decay)
    clip = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm else []
    train = optax.chain(*clip, adamw)
    return optax.multi_transform({TRAIN: train, FREEZE: optax.set_to_zero()}, labels)


def init_ppo_state(params: Any, config: PPOConfig, num_layers: int, key: chex.PRNGKey
                   ) -> tuple[PPOState, Any, optax.GradientTransformation]:
    """Builds the initial state; returns ``(state, labels, optimizer)``.

    ``params`` must already contain a ``value_head``.
    """
    labels = trainable_labels(params, num_layers, config.num_layers_unfrozen)
    optimizer = make_optimizer(config, labels)
    state = PPOState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        ref_branch=reference_branch(params, labels),
        kl=kl_controller_from_config(config),
        reward_moments=RewardScalingState.create(),
        key=key,
        data_position=jnp.zeros((), jnp.int32),
    )
    return state, labels, optimizer
