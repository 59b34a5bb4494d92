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

from collections.abc import Callable

from jaxirl import rewards
from jaxirl.errors import ConfigError


def _split(spec: str) -> tuple[str, str]:
    kind, _, arg = str(spec).strip().partition(":")
    return kind, arg.strip()


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


__all__ = ["make_ppo_reward", "make_scorer"]
