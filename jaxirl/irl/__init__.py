"""Max-margin IRL: pairwise reward losses, evaluation against the true reward, seed ensembles.

``losses`` are pure, jittable functions of the learned rewards of expert and
base-policy texts; ``evaluate`` and ``ensemble`` are host-side metrics
(NumPy / SciPy / scikit-learn). ``demos`` builds expert/base demonstrations,
``reward_model`` is the learned reward (GPT-NeoX trunk + Flax head) and
``train`` fits S seeds at once (vmap) on a device mesh. Conventions follow
ai4ai-lab/irl_for_llms; deviations are documented where they occur.
"""

from jaxirl._lazy import lazy_exports

# Submodule -> its public names, imported on first use (see jaxirl/_lazy.py).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "demos": (
        "DEMO_COLUMNS", "DemoConfig", "Generator", "build_demos", "demos_from_texts", "load_demos",
        "save_demos",
    ),
    "ensemble": (
        "DisagreementStats", "Spread", "disagreement_predicts_error", "ensemble",
        "pairwise_seed_correlation", "seed_spread", "standardize",
    ),
    "evaluate": (
        "RewardMetrics", "as_finite_rewards", "evaluate_pairs", "evaluate_rewards",
        "fit_threshold", "pairwise_accuracy", "resolve_threshold",
    ),
    "losses": (
        "DEFAULT_MARGINS", "LOSSES", "FailureConfig", "IRLLossConfig", "discriminator", "fa_focal",
        "fa_max_margin", "fa_maxent", "failure_flags", "get_loss", "hinge", "irl_loss", "logistic",
        "max_margin", "maxent", "pair_stats", "reward_l2_penalty", "squared", "tie_threshold",
        "weighted_mean",
    ),
    "pairs": ("PairData", "demo_pairs", "pair_data", "score_features"),
    "reward_export": ("export_reward_model", "load_hf_reward_model"),
    "reward_model": (
        "LearnedReward", "LearnedRewardScorer", "RewardModel", "RewardModelConfig",
        "init_reward_model", "load_reward_model", "make_learned_reward_fn", "make_learned_scorer",
        "save_reward_model",
    ),
    "rlhf_comparison": ("ReductionShare", "toxicity_reduction_share"),
    "train": (
        "IRLResult", "IRLState", "IRLTrainConfig", "init_state", "make_train_step", "train_irl",
    ),
})
