"""The PPO train state: trainable/frozen split, optimizer and the shared reference.

With ``num_layers_unfrozen = k`` only the top k blocks, the final norm, the LM
head and the value head train (trlx's ``freeze_bottom_causal_layers``). The
frozen reference policy then differs from the policy only in those subtrees,
so :class:`PPOState` stores a copy of just them (``ref_branch``) and borrows the
frozen trunk from the policy's own params (trlx's "hydra" reference), never
holding two copies of the trunk.

The state owns its optimizer (``tx``) and its trainable mask (``trainable``, the
top-level parameter names that train), as flax's ``TrainState`` and levanter's
``TrainerState`` do: both are static (not arrays), and
:meth:`PPOState.apply_gradients` is the only place they are used.
"""

from __future__ import annotations

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxirl.errors import ConfigError
from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.kl_controller import KLController, kl_controller_from_config
from jaxirl.ppo.reward_scaling import RewardScalingState

TRAIN, FREEZE = "train", "freeze"


@struct.dataclass
class PPOState:
    """Everything a resumed PPO run needs, and the optimizer that steps it.

    Attributes:
      step: PPO iterations done (one rollout + update each).
      params: the policy's full params, including ``value_head``.
      opt_state: optax state; frozen subtrees hold none.
      ref_branch: reference copies of the trainable subtrees (value head excluded).
      kl: adaptive/fixed KL controller state (β).
      reward_moments: running statistics for ``scale_reward="running"``.
      key: PRNG key for the next iteration.
      data_position: prompts consumed so far, so a resumed run continues the same order.
      tx: the optimizer (static): AdamW on trainable leaves, nothing on frozen ones.
      trainable: top-level names of ``params`` that train (static).
    """

    step: chex.Array
    params: Any
    opt_state: Any
    ref_branch: Any
    kl: KLController
    reward_moments: RewardScalingState
    key: chex.Array
    data_position: chex.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    trainable: tuple[str, ...] = struct.field(pytree_node=False)

    def frozen_view(self, params: Any) -> Any:
        """``params`` with ``stop_gradient`` on frozen subtrees, so XLA skips their backward pass."""
        return {name: sub if name in self.trainable
                else jax.tree_util.tree_map(jax.lax.stop_gradient, sub)
                for name, sub in params.items()}

    def apply_gradients(self, grads: Any) -> PPOState:
        """One optimizer step on ``params`` (frozen subtrees get zero updates)."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state)


def trainable_names(params: Any, num_layers: int, num_layers_unfrozen: int) -> tuple[str, ...]:
    """Top-level parameter names that train, sorted.

    ``num_layers_unfrozen < 0`` trains everything; ``k >= 0`` freezes the embedding
    and the bottom ``num_layers - k`` blocks, and ``k = 0`` the LM head too, as trlx's
    ``freeze_bottom_causal_layers`` (the value head and final norm always train).

    Raises:
      ConfigError: ``num_layers_unfrozen`` exceeds ``num_layers`` (as the reward model's).
    """
    if num_layers_unfrozen > num_layers:
        raise ConfigError(f"PPOConfig field 'num_layers_unfrozen' is {num_layers_unfrozen} but "
                          f"the policy has {num_layers} layers: use 0..{num_layers}, or -1 "
                          "for all")
    first_trainable = 0 if num_layers_unfrozen < 0 else max(num_layers - num_layers_unfrozen, 0)

    def trains(name: str) -> bool:
        if num_layers_unfrozen < 0:
            return True
        if name == "embed_in" or (name == "embed_out" and num_layers_unfrozen == 0):
            return False
        if name.startswith("layers_"):
            return int(name.split("_")[1]) >= first_trainable
        return True

    return tuple(sorted(name for name in params if trains(name)))


def trainable_labels(params: Any, trainable: tuple[str, ...]) -> Any:
    """A pytree of ``"train"``/``"freeze"`` labels for ``optax.multi_transform``."""
    return {name: jax.tree_util.tree_map(lambda _, n=name: TRAIN if n in trainable else FREEZE, sub)
            for name, sub in params.items()}


def frozen_trunk_depth(trainable: tuple[str, ...], num_layers: int) -> int:
    """Blocks below the first trainable one (0 when the embedding trains).

    Their output, the residual stream entering block ``depth``, depends on frozen
    params only, so it is the same for every minibatch of an iteration and for the
    reference policy: PPO computes it once per rollout (``Rollout.trunk``).
    """
    if "embed_in" in trainable:
        return 0
    layers = [i for i in range(num_layers) if f"layers_{i}" in trainable]
    return min(layers) if layers else num_layers


def reference_branch(params: Any, trainable: tuple[str, ...]) -> Any:
    """Copies of the trainable LM subtrees: with the frozen trunk, the reference policy."""
    return {name: jax.tree_util.tree_map(jnp.array, sub) for name, sub in params.items()
            if name != "value_head" and name in trainable}


def reference_params(state_params: Any, ref_branch: Any) -> Any:
    """The reference policy's params: the frozen trunk of the policy plus ``ref_branch``."""
    merged = {name: sub for name, sub in state_params.items() if name != "value_head"}
    merged.update(ref_branch)
    return merged


def make_optimizer(config: PPOConfig, trainable: tuple[str, ...]) -> optax.GradientTransformation:
    """AdamW (trlx's optimizer) on trainable leaves, optionally norm-clipped; frozen leaves get no state.

    Cached on the optimizer's own settings only, so that equal settings give the same
    (static) optimizer object and two states built from them have the same pytree
    structure, whatever else differs (the seed, the reward): their runs then share
    one traced and compiled update.
    """
    return _optimizer(config.lr, tuple(config.adam_betas), config.adam_eps,
                      config.weight_decay, config.max_grad_norm, tuple(trainable))


@functools.lru_cache(maxsize=64)
def _optimizer(lr: float, adam_betas: tuple[float, float], adam_eps: float, weight_decay: float,
               max_grad_norm: float | None, trainable: tuple[str, ...]
               ) -> optax.GradientTransformation:
    b1, b2 = adam_betas
    adamw = optax.adamw(lr, b1=b1, b2=b2, eps=adam_eps, weight_decay=weight_decay)
    clip = [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm else []
    train = optax.chain(*clip, adamw)
    return optax.multi_transform({TRAIN: train, FREEZE: optax.set_to_zero()},
                                 functools.partial(trainable_labels, trainable=trainable))


def init_ppo_state(params: Any, config: PPOConfig, num_layers: int, key: chex.PRNGKey) -> PPOState:
    """The initial state: optimizer, trainable mask, reference branch and controllers.

    Args:
      params: the policy's params, with a ``value_head``.
      config: PPO settings (optimizer, KL controller, ``num_layers_unfrozen``).
      num_layers: the policy's block count.
      key: PRNG key of the run.
    """
    trainable = trainable_names(params, num_layers, config.num_layers_unfrozen)
    tx = make_optimizer(config, trainable)
    return PPOState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ref_branch=reference_branch(params, trainable),
        kl=kl_controller_from_config(config),
        reward_moments=RewardScalingState.create(config.ref_mean, config.ref_std),
        key=key,
        data_position=jnp.zeros((), jnp.int32),
        tx=tx,
        trainable=trainable,
    )
