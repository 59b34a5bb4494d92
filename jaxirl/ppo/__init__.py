"""PPO for RLHF of a causal LM: pure, jittable losses, GAE, KL control and reward scaling.

Semantics follow trlx's PPO (what the paper trained Pythia with); deviations
are documented where they occur.
"""

from jaxirl.ppo import kl_controller
from jaxirl.ppo.advantages import gae_advantages, last_token_index, rewards_with_kl_penalty
from jaxirl.ppo.config import PRESETS, PPOConfig, get_preset
from jaxirl.ppo.kl_controller import (
    KLController,
    adaptive_kl_controller,
    fixed_kl_controller,
    kl_controller_from_config,
)
from jaxirl.ppo.losses import (
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

update_kl_controller = kl_controller.update

__all__ = [
    "PRESETS",
    "KLController",
    "PPOConfig",
    "RewardScalingState",
    "RunningMoments",
    "adaptive_kl_controller",
    "clipped_policy_loss",
    "clipped_value_loss",
    "entropy_from_logits",
    "fixed_kl_controller",
    "gae_advantages",
    "get_preset",
    "kl_controller_from_config",
    "kl_penalty_per_token",
    "last_token_index",
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
