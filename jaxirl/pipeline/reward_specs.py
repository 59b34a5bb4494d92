"""Reward and scorer spec strings, resolved where every layer is in reach.

``--reward`` and the evaluation's scorer name what to use as text: ``profanity``,
``roberta[:PATH]``, ``learned:PATH`` (a saved reward model folder, or its HF-native
``hf/`` folder), ``ensemble:PATH`` (a saved seed ensemble of reward models) or ``linear:PATH`` (a linear reward on base-model features, the
Bayesian posterior mean). The ground truths live in :mod:`jaxirl.rewards`; the learned
ones in :mod:`jaxirl.irl`. Resolving the spec here, in the stage layer, keeps
:mod:`jaxirl.ppo` and :mod:`jaxirl.rewards` free of any import of :mod:`jaxirl.irl`:
PPO receives a plain ``reward(samples, references) -> float [N]`` callable.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import TypeVar

from jaxirl import rewards
from jaxirl.errors import ConfigError, JaxIRLError
from jaxirl.models.hf_files import looks_like_hub_id, split_revision

T = TypeVar("T")
# Spec kinds whose argument is a folder or file (roberta's may be a hub id instead).
_PATH_KINDS = ("roberta", "learned", "ensemble", "linear")


def _split(spec: str) -> tuple[str, str]:
    kind, _, arg = str(spec).strip().partition(":")
    return kind, arg.strip()


def check_spec_path(spec: str, setting: str) -> None:
    """ConfigError naming ``setting`` when ``spec``'s PATH is missing, before any model or
    data is loaded (a hub id, ``roberta``'s, is fetched when the scorer is built)."""
    kind, arg = _split(spec)
    if kind not in _PATH_KINDS or not arg or pathlib.Path(os.path.expanduser(arg)).exists():
        return
    if kind == "roberta" and looks_like_hub_id(split_revision(arg)[0]):
        return
    raise ConfigError(f"{setting} '{spec}': '{arg}' does not exist")


def built_for(setting: str, spec: str, build: Callable[[str], T]) -> T:
    """``build(spec)``; its error names the setting and the spec it failed on."""
    try:
        return build(spec)
    except JaxIRLError as e:
        raise type(e)(f"{setting} '{spec}': {e}") from None


def make_ppo_reward(spec: str) -> Callable:
    """``reward(responses, references) -> float32 [N]`` from a reward spec string.

    Raises:
      ConfigError: ``learned`` without a folder, or an unknown kind.
    """
    kind, arg = _split(spec)
    if kind == "learned":
        from jaxirl.irl.reward_model import make_learned_reward_fn

        if not arg:
            raise ConfigError("reward 'learned:PATH' needs the folder of a saved reward model")
        return make_learned_reward_fn(arg)
    if kind == "ensemble":
        from jaxirl.irl.ensemble_reward import make_ensemble_reward_fn

        return make_ensemble_reward_fn(arg)
    if kind == "linear":
        from jaxirl.irl.linear_reward import make_linear_reward_fn

        return make_linear_reward_fn(arg)
    return rewards.make_reward_fn(spec)


def make_scorer(spec: str) -> rewards.ToxicityScorer:
    """A :class:`~jaxirl.rewards.ToxicityScorer` from a spec; ``learned:PATH`` and
    ``ensemble:PATH`` included.

    A learned reward r reads as log-odds of "not toxic" (see
    :class:`~jaxirl.irl.reward_model.LearnedRewardScorer`).
    """
    kind, arg = _split(spec)
    if kind == "learned":
        from jaxirl.irl.reward_model import make_learned_scorer

        return make_learned_scorer(arg)
    if kind == "ensemble":
        from jaxirl.irl.ensemble_reward import make_ensemble_scorer

        return make_ensemble_scorer(arg)
    return rewards.make_scorer(spec)


__all__ = ["built_for", "check_spec_path", "make_ppo_reward", "make_scorer"]
