"""Max-margin IRL: pairwise reward losses, evaluation against the true reward, seed ensembles.

``losses`` are pure, jittable functions of the learned rewards of expert and
base-policy texts; ``evaluate`` and ``ensemble`` are host-side metrics
(NumPy / SciPy / scikit-learn). Conventions follow ai4ai-lab/irl_for_llms;
deviations are documented where they occur.
"""

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

__all__ = [
    "DEFAULT_MARGINS",
    "LOSSES",
    "DisagreementStats",
    "IRLLossConfig",
    "RewardMetrics",
    "Spread",
    "as_finite_rewards",
    "disagreement_predicts_error",
    "ensemble",
    "evaluate_pairs",
    "evaluate_rewards",
    "fit_threshold",
    "get_loss",
    "hinge",
    "irl_loss",
    "logistic",
    "max_margin",
    "pair_stats",
    "pairwise_accuracy",
    "pairwise_seed_correlation",
    "resolve_threshold",
    "reward_l2_penalty",
    "seed_spread",
    "squared",
    "standardize",
    "weighted_mean",
]
