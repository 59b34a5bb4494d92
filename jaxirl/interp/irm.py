"""The Implicit Reward Model: a linear probe on SAE codes of the fine-tuned policy.

Pipeline for a batch of texts: tokenize -> MLP outputs of the chosen blocks ->
SAE codes per token -> pooled over each text's real tokens -> concatenate layers ->
ridge probe -> one reward per text (in the units of the probe's target transform,
see :mod:`jaxirl.interp.probes`; every such transform is monotone in the reward).
:class:`ImplicitRewardModel` packages this as ``irm(texts) -> rewards [N]``, the
signature of a ground-truth reward model, so it can be compared with the scorer and
the IRL reward text by text. With ``saes=None`` the same probe reads the pooled raw
activations: the paper's baseline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxirl.errors import ConfigError, DataError
from jaxirl.interp.activations import (
    CapturedActivations,
    capture_mlp_activations,
    make_mlp_forward,
    pool_by_text,
    tokenize_texts,
)
from jaxirl.interp.probes import ProbeEvaluation, TargetTransform, evaluate_probes
from jaxirl.interp.sae import TrainedSAE


@jax.jit
def _features(sae: TrainedSAE, x):
    return sae.features(x)


def encode_tokens(sae: TrainedSAE, activations: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Raw activations [N, d] -> SAE codes float32 [N, F], in fixed-shape chunks."""
    x = np.asarray(activations, np.float32)
    if x.ndim != 2 or x.shape[1] != sae.d_model:
        raise DataError(f"activations of shape {x.shape} do not fit an SAE of width {sae.d_model}")
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, sae.num_features), np.float32)
    bs = min(batch_size, n)
    out = []
    for start in range(0, n, bs):
        chunk = x[start:start + bs]
        real = chunk.shape[0]
        if real < bs:
            chunk = np.concatenate([chunk, np.zeros((bs - real, x.shape[1]), np.float32)])
        out.append(np.asarray(_features(sae, chunk))[:real])
    return np.concatenate(out)


def text_features(captured: CapturedActivations, layers: Sequence[int],
                  saes: dict[int, TrainedSAE] | None = None,
                  pooling: str = "mean") -> np.ndarray:
    """Per-text features [N, D]: pooled SAE codes (or raw activations) of ``layers``, concatenated.

    D is ``sum_l F_l`` with SAEs and ``len(layers) * H`` without.
    """
    blocks = []
    for layer in layers:
        if layer not in captured.activations:
            raise DataError(f"layer {layer} was not captured (have "
                            f"{sorted(captured.activations)})")
        acts = captured.activations[layer]
        if saes is not None:
            if layer not in saes:
                raise ConfigError(f"no SAE for layer {layer} (have {sorted(saes)})")
            acts = encode_tokens(saes[layer], acts)
        blocks.append(pool_by_text(acts, captured.text_index, captured.num_texts, pooling))
    return np.concatenate(blocks, axis=1)


def token_features(captured: CapturedActivations, layers: Sequence[int],
                   saes: dict[int, TrainedSAE] | None = None) -> np.ndarray:
    """Per-token probe inputs [num_tokens, D]: SAE codes (or raw activations) of ``layers``.

    For per-token probes, e.g. ``evaluate_probes`` against
    ``jaxirl.interp.features.offensive_token_labels``.
    """
    blocks = []
    for layer in layers:
        acts = captured.activations[layer]
        blocks.append(encode_tokens(saes[layer], acts) if saes is not None else acts)
    return np.concatenate(blocks, axis=1)


class ImplicitRewardModel:
    """texts -> predicted reward [N], read linearly off the policy's internals.

    Attributes:
      model, params: the fine-tuned ``GPTNeoXForCausalLM`` and its parameters.
      tokenizer: its tokenizer (texts are left-padded and left-truncated).
      layers: blocks read, in feature order.
      saes: layer -> :class:`TrainedSAE`, or None for raw activations.
      probe: a fitted regressor with ``predict([N, D]) -> [N]`` (e.g. ridge).
      target: the :class:`TargetTransform` whose scale the probe predicts in, or None.
      max_tokens: token budget per text (longer texts keep their last tokens).
      batch_size: texts per forward pass.
      pooling: ``"mean"``, ``"max"`` or ``"sum"`` over a text's tokens.
    """

    def __init__(self, model, params: Any, tokenizer, layers: Sequence[int], probe,
                 saes: dict[int, TrainedSAE] | None = None, max_tokens: int = 64,
                 batch_size: int = 32, pooling: str = "mean",
                 target: TargetTransform | None = None):
        self.model, self.params, self.tokenizer = model, params, tokenizer
        self.layers = [int(i) for i in layers]
        self.saes, self.probe, self.target = saes, probe, target
        self.max_tokens, self.batch_size, self.pooling = int(max_tokens), int(batch_size), pooling
        self._forward = make_mlp_forward(model, self.layers)

    def capture(self, texts: Sequence[str]) -> CapturedActivations:
        """MLP outputs of ``self.layers`` on the texts' real tokens."""
        from jaxirl.rewards.scorer import check_texts

        texts = check_texts(texts, "text")
        ids, mask = tokenize_texts(texts, self.tokenizer, self.max_tokens)
        return capture_mlp_activations(self.model, self.params, ids, mask, self.layers,
                                       self.batch_size, forward=self._forward)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Pooled probe inputs [N, D] for the texts."""
        return text_features(self.capture(texts), self.layers, self.saes, self.pooling)

    def predict(self, captured: CapturedActivations) -> np.ndarray:
        """Predicted rewards, float64 [N], of texts whose activations are already captured.

        ``captured`` must come from this policy's MLP outputs of (at least)
        ``self.layers``, tokenized as :meth:`capture` does; equal to calling the model
        on the texts, without a second forward pass.
        """
        if self.probe is None:
            raise ConfigError("this ImplicitRewardModel has no fitted probe")
        if captured.num_texts == 0:
            return np.zeros((0,), np.float64)
        features = text_features(captured, self.layers, self.saes, self.pooling)
        return np.asarray(self.probe.predict(features), np.float64)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Predicted rewards, float64 [N] (in ``self.target``'s units; higher = better)."""
        if self.probe is None:
            raise ConfigError("this ImplicitRewardModel has no fitted probe")
        if len(texts) == 0:
            return np.zeros((0,), np.float64)
        return self.predict(self.capture(texts))

    def __repr__(self) -> str:
        kind = "SAE codes" if self.saes is not None else "raw activations"
        return f"ImplicitRewardModel(layers={self.layers}, {kind}, pooling={self.pooling!r})"


@dataclasses.dataclass(frozen=True, eq=False)
class IRMFit:
    """The IRM on SAE codes and the raw-activation baseline, with their held-out scores."""

    irm: ImplicitRewardModel
    sae_probes: ProbeEvaluation
    baseline: ImplicitRewardModel
    raw_probes: ProbeEvaluation

    def summary(self) -> dict[str, dict[str, float]]:
        return {"sae": self.sae_probes.summary(), "raw": self.raw_probes.summary()}


def _given_or_captured(irm: ImplicitRewardModel, texts: Sequence[str],
                        captured: CapturedActivations | None, name: str) -> CapturedActivations:
    if captured is None:
        return irm.capture(texts)
    if captured.num_texts != len(texts):
        raise DataError(f"{name} holds {captured.num_texts} texts but {len(texts)} were given")
    missing = sorted(set(irm.layers) - set(captured.activations))
    if missing:
        raise DataError(f"{name} lacks layer(s) {missing} (has {sorted(captured.activations)})")
    return captured


def fit_implicit_reward_model(
    model, params: Any, tokenizer, layers: Sequence[int], saes: dict[int, TrainedSAE],
    train_texts: Sequence[str], train_rewards: np.ndarray,
    test_texts: Sequence[str], test_rewards: np.ndarray,
    train_labels: np.ndarray | None = None, test_labels: np.ndarray | None = None,
    max_tokens: int = 64, batch_size: int = 32, pooling: str = "mean",
    target_transform: str = "none",
    train_activations: CapturedActivations | None = None,
    test_activations: CapturedActivations | None = None,
) -> IRMFit:
    """Fits the IRM (probe on SAE codes) and the raw-activation baseline on the same texts.

    Args:
      model, params, tokenizer: the fine-tuned policy.
      layers: blocks to read (e.g. from ``select_divergent_layers``).
      saes: one trained SAE per layer.
      train_texts / test_texts: N / M texts; train_rewards / test_rewards: [N] / [M]
        ground-truth rewards (higher = better, e.g. the scorer's ``log_odds``).
      train_labels / test_labels: optional 0/1 preferred labels for the logistic probe.
      max_tokens, batch_size, pooling: see :class:`ImplicitRewardModel`.
      target_transform: monotone transform of the rewards both ridge probes are fit to
        (``"none"`` or ``"rank_gauss"``, see :func:`~jaxirl.interp.probes.fit_target_transform`;
        fitted on ``train_rewards`` only).
      train_activations / test_activations: the texts' MLP outputs if the caller has
        already captured them (as :meth:`ImplicitRewardModel.capture` does, with the same
        ``max_tokens``): the fit then runs no forward pass of its own for that split.
    """
    if len(train_texts) != len(train_rewards) or len(test_texts) != len(test_rewards):
        raise DataError(f"{len(train_texts)} train texts vs {len(train_rewards)} rewards, "
                        f"{len(test_texts)} test texts vs {len(test_rewards)} rewards")
    irm = ImplicitRewardModel(model, params, tokenizer, layers, None, saes, max_tokens,
                              batch_size, pooling)
    cap_train = _given_or_captured(irm, train_texts, train_activations, "train_activations")
    cap_test = _given_or_captured(irm, test_texts, test_activations, "test_activations")
    fits = {}
    for name, use_saes in (("sae", saes), ("raw", None)):
        x_tr = text_features(cap_train, irm.layers, use_saes, pooling)
        x_te = text_features(cap_test, irm.layers, use_saes, pooling)
        fits[name] = evaluate_probes(x_tr, train_rewards, x_te, test_rewards, train_labels,
                                     test_labels, target_transform=target_transform)
    irm.probe, irm.target = fits["sae"].ridge, fits["sae"].target
    baseline = ImplicitRewardModel(model, params, tokenizer, layers, fits["raw"].ridge, None,
                                   max_tokens, batch_size, pooling, fits["raw"].target)
    return IRMFit(irm=irm, sae_probes=fits["sae"], baseline=baseline, raw_probes=fits["raw"])
