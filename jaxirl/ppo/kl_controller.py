"""KL-coefficient controllers (Ziegler et al. 2019, §2.2) as checkpointable pytrees.

trlx's ``AdaptiveKLController`` / ``FixedKLController`` keep β in a mutable
Python object. Here the state is a ``flax.struct.dataclass`` (so it can sit in
a train state and go through orbax) and :func:`update` is pure and jittable.

trlx calls ``kl_ctl.update(mean_kl, n_steps=batch_size)`` once per PPO epoch
(``post_backward_callback`` after the minibatch loop of ``AccelerateRLTrainer.learn``),
so ``ppo_epochs`` times per rollout, where ``mean_kl`` is the rollout statistic of
:func:`jaxirl.ppo.mean_sequence_kl` (estimator ``"trlx_k3"``).
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
from flax import struct

from jaxirl.errors import ConfigError


@struct.dataclass
class KLController:
    """β and, for the adaptive controller, its target and horizon.

    Attributes:
      value: scalar float32, the current KL coefficient β.
      target: scalar float32, target KL in nats per sequence (NaN when fixed).
      horizon: scalar float32, steps over which β may change by a factor ~e^0.2.
      adaptive: static; False means :func:`update` leaves β alone.
    """

    value: chex.Array
    target: chex.Array
    horizon: chex.Array
    adaptive: bool = struct.field(pytree_node=False, default=True)


def adaptive_kl_controller(init_kl_coef: float, target: float, horizon: float) -> KLController:
    """Ziegler et al.'s proportional controller, starting at β = ``init_kl_coef``."""
    if not init_kl_coef >= 0:
        raise ConfigError(f"KL controller 'init_kl_coef' must be >= 0, got {init_kl_coef}")
    if not target > 0:
        raise ConfigError(f"KL controller 'target' must be > 0, got {target}")
    if not horizon > 0:
        raise ConfigError(f"KL controller 'horizon' must be > 0, got {horizon}")
    return KLController(
        value=jnp.asarray(init_kl_coef, jnp.float32),
        target=jnp.asarray(target, jnp.float32),
        horizon=jnp.asarray(horizon, jnp.float32),
        adaptive=True,
    )


def fixed_kl_controller(kl_coef: float) -> KLController:
    """A constant β."""
    if not kl_coef >= 0:
        raise ConfigError(f"KL controller 'init_kl_coef' must be >= 0, got {kl_coef}")
    nan = jnp.asarray(jnp.nan, jnp.float32)
    return KLController(
        value=jnp.asarray(kl_coef, jnp.float32), target=nan, horizon=nan, adaptive=False
    )


def kl_controller_from_config(config) -> KLController:
    """Adaptive when ``config.target`` is set, else fixed (trlx's rule).

    Args:
      config: a :class:`jaxirl.ppo.PPOConfig` (anything with ``init_kl_coef``,
        ``target`` and ``horizon``).
    """
    if config.target is None:
        return fixed_kl_controller(config.init_kl_coef)
    return adaptive_kl_controller(config.init_kl_coef, config.target, config.horizon)


def update(state: KLController, current_kl: chex.Numeric, n_steps: chex.Numeric) -> KLController:
    """One controller step: β ← β · (1 + e · n_steps / horizon).

    e = clip(current_kl / target − 1, −0.2, 0.2) is the proportional error.
    A fixed controller returns ``state`` unchanged.

    Args:
      state: the controller.
      current_kl: KL between the current and the reference policy, nats per
        sequence (the same unit as ``target``).
      n_steps: samples since the last update (trlx passes ``batch_size``).
    """
    if not state.adaptive:
        return state
    error = jnp.clip(current_kl / state.target - 1.0, -0.2, 0.2)
    mult = 1.0 + error * n_steps / state.horizon
    return state.replace(value=(state.value * mult).astype(state.value.dtype))
