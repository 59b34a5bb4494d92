"""Max-margin IRL: pairwise reward losses, evaluation against the true reward, seed ensembles.

``losses`` are pure, jittable functions of the learned rewards of expert and
base-policy texts; ``evaluate`` and ``ensemble`` are host-side metrics
(NumPy / SciPy / scikit-learn). ``demos`` builds expert/base demonstrations,
``reward_model`` is the learned reward (GPT-NeoX trunk + Flax head) and
``train`` fits S seeds at once (vmap) on N devices (pmap). Conventions follow
ai4ai-lab/irl_for_llms; deviations are documented where they occur.
"""

from jaxirl.irl.demos import (
    DEMO_COLUMNS,
    DemoConfig,
    Generator,
    build_demos,
    demos_from_texts,
    load_demos,
    save_demos,
)
from jaxirl.irl.ensemble import (
    DisagreementStats,
    Spread,
    disagreement_predicts_error,
    ensemble,
    pairwise_seed_correlation,
    seed_spread,
    standardize,
)
from jaxirl.irl.evaluate import (
    RewardMetrics,
    as_finite_rewards,
    evaluate_pairs,
    evaluate_rewards,
    fit_threshold,
    pairwise_accuracy,
    resolve_threshold,
)
from jaxirl.irl.losses import (
    DEFAULT_MARGINS,
    LOSSES,
    IRLLossConfig,
    discriminator,
    get_loss,
    hinge,
    irl_loss,
    logistic,
    max_margin,
    pair_stats,
    reward_l2_penalty,
    squared,
    weighted_mean,
)
from jaxirl.irl.pairs import PairData, demo_pairs, pair_data, score_features
from jaxirl.irl.reward_export import export_reward_model, load_hf_reward_model
from jaxirl.irl.reward_model import (
    LearnedReward,
    LearnedRewardScorer,
    RewardModel,
    RewardModelConfig,
    init_reward_model,
    load_reward_model,
    make_learned_reward_fn,
    make_learned_scorer,
    save_reward_model,
)
from jaxirl.irl.rlhf_comparison import ReductionShare, toxicity_reduction_share
from jaxirl.irl.train import (
    IRLResult,
    IRLState,
    IRLTrainConfig,
    make_train_step,
    train_irl,
)

__all__ = [
    "DEFAULT_MARGINS",
    "DEMO_COLUMNS",
    "DemoConfig",
    "DisagreementStats",
    "Generator",
    "IRLLossConfig",
    "IRLResult",
    "IRLState",
    "IRLTrainConfig",
    "LOSSES",
    "LearnedReward",
    "LearnedRewardScorer",
    "PairData",
    "ReductionShare",
    "RewardMetrics",
    "RewardModel",
    "RewardModelConfig",
    "Spread",
    "as_finite_rewards",
    "build_demos",
    "demo_pairs",
    "demos_from_texts",
    "disagreement_predicts_error",
    "ensemble",
    "discriminator",
    "evaluate_pairs",
    "evaluate_rewards",
    "export_reward_model",
    "fit_threshold",
    "get_loss",
    "hinge",
    "init_reward_model",
    "irl_loss",
    "load_demos",
    "load_hf_reward_model",
    "load_reward_model",
    "logistic",
    "make_learned_reward_fn",
    "make_learned_scorer",
    "make_train_step",
    "max_margin",
    "pair_data",
    "pair_stats",
    "pairwise_accuracy",
    "pairwise_seed_correlation",
    "resolve_threshold",
    "reward_l2_penalty",
    "save_demos",
    "score_features",
    "save_reward_model",
    "seed_spread",
    "squared",
    "standardize",
    "toxicity_reduction_share",
    "train_irl",
    "weighted_mean",
]
