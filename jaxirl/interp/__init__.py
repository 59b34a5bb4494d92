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

from jaxirl.interp.activations import (
    CapturedActivations,
    capture_mlp_activations,
    make_mlp_forward,
    pool_by_text,
    tokenize_texts,
)
from jaxirl.interp.compare import RewardComparison, compare_rewards
from jaxirl.interp.features import (
    FeatureLabels,
    contains_offensive,
    decode_contexts,
    label_features,
    offensive_token_labels,
    offensive_words,
    top_context_rows,
)
from jaxirl.interp.firing import FiringRateTest, GroupRates, firing_rate_test
from jaxirl.interp.irm import (
    ImplicitRewardModel,
    IRMFit,
    encode_tokens,
    fit_implicit_reward_model,
    text_features,
    token_features,
)
from jaxirl.interp.layers import layer_divergences, select_divergent_layers
from jaxirl.interp.probes import (
    TARGET_TRANSFORMS,
    ClassificationMetrics,
    ProbeEvaluation,
    RegressionMetrics,
    TargetTransform,
    classification_metrics,
    evaluate_probes,
    fit_logistic_probe,
    fit_ridge_probe,
    fit_target_transform,
    regression_metrics,
)
from jaxirl.interp.sae import (
    SAEConfig,
    SAEMetrics,
    SAEState,
    TrainedSAE,
    decode,
    encode,
    evaluate_sae,
    init_sae,
    init_state,
    make_epoch_fn,
    make_train_step,
    sae_loss,
    train_sae,
)
from jaxirl.interp.sae_lens_format import load_sae, save_sae

__all__ = [
    "TARGET_TRANSFORMS",
    "CapturedActivations",
    "ClassificationMetrics",
    "FeatureLabels",
    "FiringRateTest",
    "GroupRates",
    "IRMFit",
    "ImplicitRewardModel",
    "ProbeEvaluation",
    "RegressionMetrics",
    "RewardComparison",
    "SAEConfig",
    "SAEMetrics",
    "SAEState",
    "TargetTransform",
    "TrainedSAE",
    "capture_mlp_activations",
    "classification_metrics",
    "compare_rewards",
    "contains_offensive",
    "decode",
    "decode_contexts",
    "encode",
    "encode_tokens",
    "evaluate_probes",
    "evaluate_sae",
    "firing_rate_test",
    "fit_implicit_reward_model",
    "fit_logistic_probe",
    "fit_ridge_probe",
    "fit_target_transform",
    "init_sae",
    "init_state",
    "label_features",
    "layer_divergences",
    "load_sae",
    "make_epoch_fn",
    "make_mlp_forward",
    "make_train_step",
    "offensive_token_labels",
    "offensive_words",
    "pool_by_text",
    "regression_metrics",
    "sae_loss",
    "save_sae",
    "select_divergent_layers",
    "text_features",
    "token_features",
    "tokenize_texts",
    "top_context_rows",
    "train_sae",
]
