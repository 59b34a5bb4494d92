"""The default ground-truth toxicity scorer: alt-profanity-check.

A calibrated linear SVM on bag-of-words features (``profanity_check.predict_prob``);
it runs offline on CPU in microseconds per text, which makes it the cheap
stand-in for the paper's RoBERTa classifier in tests and small experiments.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from jaxirl.errors import ConfigError, RewardError
from jaxirl.rewards.scorer import check_texts

# predict_prob returns exactly 0.0 or 1.0 for some texts; log-odds are computed on
# probabilities clipped to [eps, 1 - eps], i.e. bounded by about +-27.6.
LOG_ODDS_EPS = 1e-12


class ProfanityScorer:
    """P(toxic) from alt-profanity-check; see :class:`~jaxirl.rewards.scorer.ToxicityScorer`."""

    name = "profanity"

    def __init__(self):
        try:
            with warnings.catch_warnings():
                # The pickled sklearn model may warn about a newer sklearn version.
                warnings.simplefilter("ignore")
                from profanity_check import predict_prob
        except ImportError as e:
            raise RewardError(f"the 'profanity' scorer needs alt-profanity-check "
                              f"(`pip install alt-profanity-check`): {e}") from None
        self._predict_prob = predict_prob

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """P(toxic) as float64 [N] in [0, 1]."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0,), np.float64)
        return np.asarray(self._predict_prob(texts), dtype=np.float64).reshape(len(texts))

    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        """log P(not toxic) - log P(toxic) as float64 [N], from clipped probabilities."""
        p = np.clip(self(texts), LOG_ODDS_EPS, 1.0 - LOG_ODDS_EPS)
        return np.log1p(-p) - np.log(p)

    def __repr__(self) -> str:
        return "ProfanityScorer()"


def make_profanity_scorer(arg: str = "") -> ProfanityScorer:
    """Registry factory for ``"profanity"``; takes no argument."""
    if arg:
        raise ConfigError(f"the 'profanity' scorer takes no argument, got 'profanity:{arg}'")
    return ProfanityScorer()
