"""Word-count probes: how much of a ground-truth reward a demonstration set identifies.

A black-box IRL method only sees which texts the expert (the RLHF policy) wrote and
which the base model wrote. These probes fit the simplest reward of that kind, a
logistic-regression discriminator on word counts (expert = 1, base = 0), and set it
beside a supervised oracle of the same form (ridge regression of the ground truth on
the same counts, which no IRL method has). They answer three questions about the
demonstrations themselves, whatever reward model is trained on them:

* ``learning_curve``: does the discriminator's Pearson with the ground truth still rise
  with more training pairs (more demonstrations would help), or has it levelled off?
* ``oracle_pearson``: what the word counts can express at all.
* ``oracle_strong_weights_pearson``: the discriminator with its weights on the words the
  oracle calls strongly negative replaced by the oracle's. An expert that avoids every
  such word says little about which of them is worse, so the discriminator's weights
  on them come out alike (``strong_weight_slope``, the least-squares slope of its
  weights on the oracle's over those words, near 0); this row shows how much Pearson
  that alone costs.

scikit-learn does the fitting; texts are split into lower-case words by its
``CountVectorizer``. Plain numpy in and out, no JAX.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxirl.errors import DataError


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def word_count_probes(train_expert: Sequence[str], train_base: Sequence[str],
                      train_true: np.ndarray, test_texts: Sequence[str], test_true: np.ndarray,
                      *, c: float = 1.0, ridge: float = 1.0, strong: float = -1.0,
                      fractions: Sequence[float] = (0.25, 0.5, 1.0), seed: int = 0
                      ) -> dict[str, Any]:
    """Fits the probes on training pairs and scores them on held-out texts.

    Args:
      train_expert, train_base: the training pairs' expert and base texts, P each.
      train_true: ground-truth rewards [2P] of ``train_expert`` then ``train_base``
        (the oracle's target only; the discriminator never sees them).
      test_texts: held-out texts [N]; test_true: their ground-truth rewards [N].
      c: inverse L2 strength of the logistic discriminator (scikit-learn's ``C``).
      ridge: L2 strength of the oracle's ridge regression.
      strong: oracle weight below which a word counts as strongly negative.
      fractions: shares of the training pairs for the learning curve (a seeded subset).
      seed: seed of the subsets.

    Returns:
      A JSON-ready dict: ``discriminator_pearson``, ``learning_curve`` (``pairs``,
      ``pearson`` per fraction), ``oracle_pearson``, ``oracle_strong_weights_pearson``,
      ``strong_words``, ``strong_weight_slope``, ``train_pairs``, ``vocabulary``.

    Raises:
      DataError: mismatched lengths, or no training pairs.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge

    p = len(train_expert)
    train_true, test_true = np.asarray(train_true, np.float64), np.asarray(test_true, np.float64)
    if p == 0 or len(train_base) != p or len(train_true) != 2 * p:
        raise DataError(f"word probes need P expert and P base training texts and 2P true "
                        f"rewards, got {p}, {len(train_base)} and {len(train_true)}")
    if len(test_texts) != len(test_true):
        raise DataError(f"word probes got {len(test_texts)} test texts but "
                        f"{len(test_true)} true rewards")
    texts = list(train_expert) + list(train_base)
    labels = np.r_[np.ones(p), np.zeros(p)]
    vectorizer = CountVectorizer()
    counts = vectorizer.fit_transform(texts)
    test_counts = vectorizer.transform(list(test_texts))

    def discriminator(rows: np.ndarray) -> np.ndarray:
        fit = LogisticRegression(C=c, max_iter=5000).fit(counts[rows], labels[rows])
        return fit.coef_[0]

    curve = []
    order = np.random.default_rng(seed).permutation(p)
    for fraction in fractions:
        pairs = order[: max(1, int(round(fraction * p)))]
        weights = discriminator(np.r_[pairs, pairs + p])
        curve.append({"fraction": float(fraction), "pairs": len(pairs),
                      "pearson": _pearson(test_counts @ weights, test_true)})
    weights = discriminator(np.arange(2 * p))
    oracle = Ridge(alpha=ridge).fit(counts, train_true).coef_
    is_strong = oracle < strong
    swapped = np.where(is_strong, oracle, weights)
    slope = (float(np.polyfit(oracle[is_strong], weights[is_strong], 1)[0])
             if is_strong.sum() >= 2 else float("nan"))
    return {"discriminator_pearson": _pearson(test_counts @ weights, test_true),
            "learning_curve": curve,
            "oracle_pearson": _pearson(test_counts @ oracle, test_true),
            "oracle_strong_weights_pearson": _pearson(test_counts @ swapped, test_true),
            "strong_words": int(is_strong.sum()), "strong_weight_slope": slope,
            "train_pairs": p, "vocabulary": len(oracle), "c": c, "ridge": ridge,
            "strong": strong}


__all__ = ["word_count_probes"]
