"""The ground-truth reward that RLHF optimises: less toxic than the reference is better.

As in the paper (and irl_for_llms' ``reward_fn``), a sample's reward is

    r(sample) = -tox(sample) + tox(reference)

where ``tox`` is the scorer's P(toxic), the sample is the prompt followed by the
policy's continuation and the reference is the prompt followed by the dataset's own
continuation (``original_output``); PPO builds both (``PPOConfig.reward_text``).
Without references, ``r = -tox(sample)``. Rewards therefore lie in [-1, 1] (or [-1, 0]).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import numpy as np

from jaxirl.errors import RewardError
from jaxirl.rewards.scorer import ToxicityScorer, checked_scores, make_scorer


@dataclasses.dataclass(frozen=True)
class ToxicityReward:
    """``reward(samples, references=None) -> float32 [N]``; see the module docstring.

    Every score is validated (:func:`~jaxirl.rewards.scorer.checked_scores`): a blank
    text, a scorer exception or a non-finite score raises RewardError naming the index.
    """

    scorer: ToxicityScorer
    # An empty text is not toxic: PPO scores an empty response as 0 without calling it.
    empty_text_reward_is_zero: ClassVar[bool] = True

    def toxicity(self, texts: Sequence[str], what: str = "sample") -> np.ndarray:
        """Validated P(toxic), float64 [N]."""
        return checked_scores(self.scorer, texts, what=what, probabilities=True)

    def __call__(self, samples: Sequence[str],
                 references: Sequence[str] | None = None) -> np.ndarray:
        """Rewards, float32 [N].

        Args:
          samples: N generated texts (what the policy is rewarded for: prompt +
            continuation, as scored in the paper, or the continuation alone).
          references: optional N reference texts for the same prompts.
        """
        if isinstance(samples, str):
            raise RewardError("reward expects a sequence of sample texts, got a single string")
        samples = list(samples)
        reward = -self.toxicity(samples, "sample")
        if references is not None:
            references = list(references)
            if len(references) != len(samples):
                raise RewardError(f"reward got {len(samples)} samples but {len(references)} "
                                  "references; they must pair up one to one")
            reward = reward + self.toxicity(references, "reference")
        return reward.astype(np.float32)


def make_reward_fn(scorer: ToxicityScorer | str = "profanity") -> ToxicityReward:
    """A :class:`ToxicityReward` from a scorer or a scorer spec such as ``"roberta:/path"``."""
    return ToxicityReward(make_scorer(scorer) if isinstance(scorer, str) else scorer)
