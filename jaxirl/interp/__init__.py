"""Interpretability: sparse autoencoders, Learned-Feedback-Pattern probes, Implicit Reward Models.

Following Marks et al. (arXiv 2310.08164): pick the blocks that fine-tuning moved
most (:func:`select_divergent_layers`), record their MLP outputs
(:func:`capture_mlp_activations`), train a sparse autoencoder per block
(:func:`train_sae`), fit linear probes from pooled SAE codes to the reward (the
Implicit Reward Model, :func:`fit_implicit_reward_model`), label features offline
by their top contexts (:func:`label_features`) and test their firing rates
(:func:`firing_rate_test`). :func:`compare_rewards` sets the IRM against the IRL
reward; :mod:`jaxirl.interp.plots` draws the figures. :func:`jaxirl.pipeline.interp_stage.run_interp`
runs it all on one (base, RLHF) model pair.
"""

from jaxirl._lazy import lazy_exports

# Submodule -> its public names, imported on first use (see jaxirl/_lazy.py).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "activations": (
        "CapturedActivations", "capture_mlp_activations", "make_mlp_forward", "pool_by_text",
        "tokenize_texts",
    ),
    "compare": ("RewardComparison", "compare_rewards"),
    "config": ("InterpConfig",),
    "features": (
        "FeatureLabels", "contains_offensive", "decode_contexts", "label_features",
        "offensive_token_labels", "offensive_words", "top_context_rows",
    ),
    "firing": ("FiringRateTest", "GroupRates", "firing_rate_test"),
    "irm": (
        "ImplicitRewardModel", "IRMFit", "encode_tokens", "fit_implicit_reward_model",
        "text_features", "token_features",
    ),
    "layers": ("layer_divergences", "select_divergent_layers"),
    "probes": (
        "TARGET_TRANSFORMS", "ClassificationMetrics", "ProbeEvaluation", "RegressionMetrics",
        "TargetTransform", "classification_metrics", "evaluate_probes", "fit_logistic_probe",
        "fit_ridge_probe", "fit_target_transform", "regression_metrics",
    ),
    "sae": (
        "SAEConfig", "SAEMetrics", "SAEState", "TrainedSAE", "decode", "encode", "evaluate_sae",
        "init_sae", "init_state", "make_epoch_fn", "make_train_step", "sae_loss", "train_sae",
    ),
    "sae_lens_format": ("load_sae", "save_sae"),
})
