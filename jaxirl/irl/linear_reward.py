"""A linear reward θᵀφ(o) on frozen base-model features, saved to a folder and used as a PPO reward.

This is the Bayesian posterior's mean reward (:mod:`jaxirl.irl.bayes`) in
deployable form: ``linear_reward.json`` names the base model and the feature
settings, ``linear_reward.npz`` holds θ and the z-scoring statistics. As a PPO
reward (``--reward linear:PATH``) it mirrors the learned reward model:
r(response) − r(reference) when references are given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from jaxirl.errors import CheckpointError, ConfigError, RewardError

CONFIG_FILE = "linear_reward.json"
ARRAYS_FILE = "linear_reward.npz"


@dataclasses.dataclass(eq=False)
class LinearFeatureReward:
    """r(o) = θᵀ((φ(o) − mean) / std), φ = :func:`~jaxirl.irl.bayes.completion_features`."""

    base_model: str
    theta: np.ndarray
    feature_mean: np.ndarray
    feature_std: np.ndarray
    max_tokens: int = 128
    batch_size: int = 64
    _model: Any = dataclasses.field(default=None, repr=False)
    # Its features are of the completion read on its own (jaxirl.irl.bayes), so PPO
    # must hand it responses alone (PPOConfig.reward_text = "response").
    reward_text: ClassVar[str] = "response"

    def _load(self):
        if self._model is None:
            from jaxirl.models.hf_io import load_pretrained, load_tokenizer

            module, params = load_pretrained(self.base_model)
            self._model = (module, params, load_tokenizer(self.base_model))
        return self._model

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """z-scored features [N, d] of completion texts."""
        from jaxirl.irl.bayes import completion_features

        module, params, tokenizer = self._load()
        raw = completion_features(module, params, tokenizer, list(texts), self.max_tokens,
                                  self.batch_size)
        return (raw - self.feature_mean) / self.feature_std

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Rewards float64 [N]."""
        if len(texts) == 0:
            return np.zeros(0)
        return self.features(texts) @ self.theta

    def __call__(self, responses: Sequence[str],
                 references: Sequence[str] | None = None) -> np.ndarray:
        reward = self.score(responses)
        if references is not None:
            references = list(references)
            if len(references) != len(reward):
                raise RewardError(f"linear reward got {len(reward)} responses but "
                                  f"{len(references)} references")
            reward = reward - self.score(references)
        bad = np.flatnonzero(~np.isfinite(reward))
        if bad.size:
            raise RewardError(f"linear reward is {reward[bad[0]]} for response {bad[0]}")
        return reward.astype(np.float32)


def save_linear_reward(path: str | os.PathLike, reward: LinearFeatureReward,
                       extra: dict | None = None) -> pathlib.Path:
    """Writes ``linear_reward.json`` and ``linear_reward.npz`` into ``path``."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / ARRAYS_FILE, theta=reward.theta, feature_mean=reward.feature_mean,
             feature_std=reward.feature_std)
    blob = {"base_model": str(reward.base_model), "max_tokens": reward.max_tokens,
            **(extra or {})}
    (path / CONFIG_FILE).write_text(json.dumps(blob, indent=2) + "\n")
    return path


def load_linear_reward(path: str | os.PathLike) -> LinearFeatureReward:
    """Reads a folder written by :func:`save_linear_reward`; CheckpointError naming it if bad."""
    path = pathlib.Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / ARRAYS_FILE).is_file():
        raise CheckpointError(f"'{path}' is not a linear reward folder (needs {CONFIG_FILE} "
                              f"and {ARRAYS_FILE})")
    try:
        blob = json.loads((path / CONFIG_FILE).read_text())
        arrays = np.load(path / ARRAYS_FILE)
        return LinearFeatureReward(blob["base_model"], arrays["theta"], arrays["feature_mean"],
                                   arrays["feature_std"], int(blob.get("max_tokens", 128)))
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path} is malformed: {type(e).__name__}: {e}") from None


def make_linear_reward_fn(spec_path: str) -> LinearFeatureReward:
    """PPO reward of ``--reward linear:PATH``."""
    if not spec_path:
        raise ConfigError("--reward linear:PATH needs the folder of a saved linear reward")
    return load_linear_reward(spec_path)


__all__ = ["LinearFeatureReward", "load_linear_reward", "make_linear_reward_fn",
           "save_linear_reward"]
