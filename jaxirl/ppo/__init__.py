"""PPO for RLHF of a causal LM: pure, jittable losses, GAE, KL control and reward scaling.

Semantics follow trlx's PPO (what the paper trained Pythia with); deviations
are documented where they occur.

The pure API a researcher jits in their own code:

* :func:`init_ppo_state` -> :class:`PPOState` (params, the optimizer and the
  trainable mask it owns, the reference branch, KL controller, reward statistics);
* :func:`make_experience` (state, sequences, mask, scores) -> :class:`Rollout`;
* :func:`make_update` (model, config, prompt_len) -> ``update(state, rollout, key)``,
  which differentiates :class:`PPOLoss`, i.e. :func:`ppo_loss`, the loss tested
  against trlx.

:class:`~jaxirl.ppo.trainer.PPOTrainer` is the host loop over them (sampling,
rewards, checkpoints) on a :mod:`jaxirl.parallel` mesh.
"""

from jaxirl.ppo import kl_controller
from jaxirl.ppo.advantages import gae_advantages, last_token_index, rewards_with_kl_penalty
from jaxirl.ppo.config import PRESETS, PPOConfig, get_preset
from jaxirl.ppo.experience import Rollout, make_experience
from jaxirl.ppo.kl_controller import (
    KLController,
    adaptive_kl_controller,
    fixed_kl_controller,
    kl_controller_from_config,
)
from jaxirl.ppo.losses import (
    PPOLoss,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    kl_penalty_per_token,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    mean_sequence_kl,
    ppo_loss,
    token_entropy,
)
from jaxirl.ppo.reward_scaling import (
    RewardScalingState,
    RunningMoments,
    scale_rewards,
    update_running_moments,
)
from jaxirl.ppo.state import PPOState, init_ppo_state
from jaxirl.ppo.update import make_update

update_kl_controller = kl_controller.update

__all__ = [
    "PRESETS",
    "KLController",
    "PPOConfig",
    "PPOLoss",
    "PPOState",
    "RewardScalingState",
    "Rollout",
    "RunningMoments",
    "adaptive_kl_controller",
    "clipped_policy_loss",
    "clipped_value_loss",
    "entropy_from_logits",
    "fixed_kl_controller",
    "gae_advantages",
    "init_ppo_state",
    "get_preset",
    "kl_controller_from_config",
    "kl_penalty_per_token",
    "last_token_index",
    "make_experience",
    "make_update",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "mean_sequence_kl",
    "ppo_loss",
    "rewards_with_kl_penalty",
    "scale_rewards",
    "token_entropy",
    "update_kl_controller",
    "update_running_moments",
]
