"""A reward's held-out scorecard: leak-free threshold, baselines, intervals over prompts.

A learned reward's offset is arbitrary, so accuracy and F1 need a threshold. The
scorecard's headline threshold is fitted on the TRAINING texts only
(:func:`~jaxirl.irl.evaluate.fit_threshold`, per seed) and then applied to the held-out
texts. Beside it: the reference's threshold 0, and ``match_rate``, which takes the
held-out texts' share of toxic texts and therefore reads the test labels' prior (an
upper reference, not a deployable classifier). ROC-AUC, correlations and pairwise
accuracy need no threshold.

Every metric is the mean over the S reward seeds, with a 95% interval from a bootstrap
over prompts (:func:`~jaxirl.irl.bootstrap.cluster_bootstrap`): a held-out (expert,
base) pair and both its texts belong to one prompt, and prompts are what is
resampled. Baselines go through the same code: :func:`majority_rewards` (a constant
reward: its fitted threshold predicts the training majority class) and
:func:`random_rewards` (Gaussian noise). Any other reward, e.g. a log-ratio reward,
is scored by calling :func:`reward_scorecard` on its train and test rewards.
"""

from __future__ import annotations

import numpy as np

from jaxirl.errors import RewardError
from jaxirl.irl.bootstrap import (
    cluster_bootstrap,
    group_ids,
    group_sums,
    moments_pearson,
    rank_kernel,
    weighted_pearson,
    weighted_quantile,
)
from jaxirl.irl.evaluate import as_finite_rewards, fit_threshold

METRICS = ("roc_auc", "accuracy", "f1", "pearson", "spearman", "pairwise_accuracy",
           "accuracy_threshold_zero", "f1_threshold_zero", "accuracy_match_rate",
           "f1_match_rate")


def _f1_toxic(tp, fp, fn) -> np.ndarray:
    # The reference's positive class is "toxic" (reward <= threshold).
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def _counts(pred_preferred, preferred) -> np.ndarray:
    """[..., 4, N] indicators: correct, true positive, false positive, false negative
    (positive = toxic)."""
    return np.stack([pred_preferred == preferred, ~pred_preferred & ~preferred,
                     ~pred_preferred & preferred, pred_preferred & ~preferred], -2)


class _SeedMetrics:
    """Every metric of one reward [2P] under resamples of prompts (group counts [B, G]).

    Sums over texts are precomputed per group, so a batch of resamples costs a few
    matrix products; see :mod:`jaxirl.irl.bootstrap`.
    """

    def __init__(self, rewards, true, threshold, pair_gid, num_groups, true_rank_kernel):
        p = len(rewards) // 2
        g = num_groups
        self.gid = np.concatenate([pair_gid, pair_gid])  # expert and base text of a pair
        self.r, self.preferred = rewards, true > 0
        self.n = group_sums(np.ones(2 * p), self.gid, g)
        self.n_pref = group_sums(self.preferred, self.gid, g)
        fixed = np.stack([_counts(rewards > t, self.preferred) for t in (threshold, 0.0)])
        self.fixed = group_sums(fixed, self.gid, g)  # [2, 4, G]
        self.moments = group_sums(np.stack([np.ones(2 * p), rewards, true, rewards**2, true**2,
                                            rewards * true]), self.gid, g)  # [6, G]
        k_neg = rank_kernel(rewards, self.gid, g, mask=~self.preferred)
        self.auc = group_sums(k_neg.T * self.preferred, self.gid, g)  # [h, g]
        self.k_all, self.k_true = rank_kernel(rewards, self.gid, g), true_rank_kernel
        self.order = np.argsort(rewards, kind="stable")
        true_sign = np.sign(true[:p] - true[p:])
        learned_sign = np.sign(rewards[:p] - rewards[p:])
        score = np.where(learned_sign == 0, 0.5, (learned_sign == true_sign) * 1.0)
        keep = true_sign != 0
        self.pairs = group_sums(np.stack([keep * score, keep * 1.0]), pair_gid, g)

    def __call__(self, c: np.ndarray) -> dict[str, np.ndarray]:
        total, pref = c @ self.n, c @ self.n_pref
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {"roc_auc": np.einsum("bg,hg,bh->b", c, self.auc, c) / (pref * (total - pref)),
                   "pearson": moments_pearson(c @ self.moments.T)}
            w = c[:, self.gid]
            out["spearman"] = weighted_pearson(w, c @ self.k_all.T, c @ self.k_true.T)
            for name, sums in (("", self.fixed[0]), ("_threshold_zero", self.fixed[1])):
                correct, tp, fp, fn = (c @ sums.T).T
                out["accuracy" + name] = correct / total
                out["f1" + name] = _f1_toxic(tp, fp, fn)
            # The match-rate threshold is the resample's own quantile: not a fixed cut.
            thr = weighted_quantile(self.r[self.order], w[:, self.order], 1.0 - pref / total)
            correct, tp, fp, fn = np.sum(w[:, None] * _counts(self.r > thr[:, None],
                                                              self.preferred), -1).T
            out["accuracy_match_rate"] = correct / total
            out["f1_match_rate"] = _f1_toxic(tp, fp, fn)
            hits, kept = (c @ self.pairs.T).T
            out["pairwise_accuracy"] = hits / kept
        return out


def reward_scorecard(train_rewards, train_true, test_rewards, test_true, prompts, *,
                     n_resamples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> dict:
    """Held-out metrics of S rewards (mean over seeds) with prompt-bootstrap intervals.

    Args:
      train_rewards: [S, M] rewards of the M training texts (expert and base texts;
        only used to fit each seed's threshold).
      train_true: [M] ground-truth rewards of the training texts (> 0 = not toxic).
      test_rewards: [S, 2P] rewards of P held-out pairs: expert texts, then base texts.
      test_true: [2P] their ground-truth rewards.
      prompts: [P] prompt (or any group label) of each held-out pair.
      n_resamples, confidence, seed: of the bootstrap over prompts.

    Returns:
      JSON-ready dict: ``metrics`` {name: Interval dict} for :data:`METRICS` (the
      unsuffixed accuracy/F1 use the fitted threshold), ``per_seed`` {name: [S]},
      ``thresholds`` (fitted, per seed), ``num_seeds``, ``num_prompts``, ``num_texts``.
    """
    train_rewards = as_finite_rewards("train rewards", np.atleast_2d(train_rewards), ndim=2)
    test_rewards = as_finite_rewards("test rewards", np.atleast_2d(test_rewards), ndim=2)
    train_true = as_finite_rewards("train true rewards", train_true)
    test_true = as_finite_rewards("test true rewards", test_true)
    prompts = np.asarray(prompts)
    if train_rewards.shape != (len(test_rewards), len(train_true)):
        raise RewardError(f"train rewards have shape {train_rewards.shape}; expected "
                          f"({len(test_rewards)}, {len(train_true)})")
    if test_rewards.shape[1] != len(test_true) or len(test_true) != 2 * len(prompts):
        raise RewardError(f"test rewards {test_rewards.shape} and true rewards "
                          f"({len(test_true)},) must cover the 2 texts of each of the "
                          f"{len(prompts)} prompts' pairs")
    thresholds = np.asarray([fit_threshold(r, train_true) for r in train_rewards])
    pair_gid, g = group_ids(prompts)
    text_gid = np.concatenate([pair_gid, pair_gid])
    true_kernel = rank_kernel(test_true, text_gid, g)
    seeds = [_SeedMetrics(r, test_true, t, pair_gid, g, true_kernel)
             for r, t in zip(test_rewards, thresholds, strict=True)]

    def seed_mean(pair_weights):
        per_seed = [m(pair_weights) for m in seeds]
        return {k: np.mean([v[k] for v in per_seed], axis=0) for k in per_seed[0]}

    intervals = cluster_bootstrap(seed_mean, prompts, n_resamples=n_resamples,
                                  confidence=confidence, seed=seed)
    ones = np.ones((1, g))
    per_seed = [m(ones) for m in seeds]
    return {"metrics": {k: v.as_dict() for k, v in intervals.items()},
            "per_seed": {k: [float(v[k][0]) for v in per_seed] for k in intervals},
            "thresholds": thresholds.tolist(), "num_seeds": len(test_rewards),
            "num_prompts": g, "num_texts": len(test_true)}


def majority_rewards(num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
    """A constant reward ([1, M], [1, N] zeros): its fitted threshold predicts the training
    majority class for every text; ROC-AUC 0.5, correlations undefined."""
    return np.zeros((1, num_train)), np.zeros((1, num_test))


def random_rewards(num_train: int, num_test: int, num_seeds: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal rewards ([S, M], [S, N]) that know nothing about the texts."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((num_seeds, num_train)), rng.standard_normal((num_seeds, num_test))


__all__ = ["METRICS", "majority_rewards", "random_rewards", "reward_scorecard"]
