"""The study's ``evaluate`` stage: IRL rewards scored leak-free, with baselines and intervals.

Reads the IRL stage's outputs (per-epoch metrics, learned rewards of the training and
held-out texts, the untrained models' metrics) and the demonstrations, and returns the
JSON-ready summary behind ``report.md``'s IRL section and findings.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxirl.irl.demos import load_demos
from jaxirl.irl.ensemble import (
    disagreement_predicts_error,
    ensemble,
    pairwise_seed_correlation,
    seed_agreement,
)
from jaxirl.irl.evaluate import evaluate_rewards
from jaxirl.irl.scorecard import majority_rewards, random_rewards, reward_scorecard

# Seeds of the random-reward baseline: fixed, so reports are comparable across runs.
RANDOM_REWARD_SEED = 12345


def _true_rewards(split) -> np.ndarray:
    return np.concatenate([np.asarray(split["expert_true_reward"], np.float64),
                           np.asarray(split["base_true_reward"], np.float64)])


def summarize_irl(metrics_path: str, demos_path: str, test_rewards_path: str,
                  train_rewards_path: str, epoch0_path: str | None = None, *,
                  extra_rewards: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                  n_resamples: int = 1000) -> dict[str, Any]:
    """Final IRL metrics per seed, scorecards of the learned reward and its baselines.

    Args:
      metrics_path: the IRL stage's ``irl_metrics.json``.
      demos_path: the demonstrations (``train``/``test`` splits with prompts).
      test_rewards_path, train_rewards_path: ``.npy`` [S, 2P] learned rewards of the
        held-out and of the training pairs (expert texts, then base texts).
      epoch0_path: metrics of the untrained reward models (the curves' epoch 0).
      extra_rewards: more rewards to score the same way, name -> (train [S', 2M],
        test [S', 2P]); e.g. a log-ratio reward log π_expert/π_base.
      n_resamples: bootstrap resamples over prompts.

    Returns:
      A dict with ``scorecards`` ({"learned", "ensemble", "random", "majority", ...}:
      see :func:`~jaxirl.irl.scorecard.reward_scorecard`), ``seed_agreement``, the
      per-epoch curves (``per_epoch``, epoch 0 first when known), the ensemble's
      rewards and disagreement, and the IRL run's own per-seed metrics.
    """
    blob = json.loads(pathlib.Path(metrics_path).read_text())
    history = blob["history"]
    rewards = np.load(test_rewards_path)  # [S, 2P]
    train_rewards = np.load(train_rewards_path)  # [S, 2M]
    demos = load_demos(demos_path)
    true, train_true = _true_rewards(demos["test"]), _true_rewards(demos["train"])
    prompts = np.asarray(demos["test"]["prompt"])
    s, p = rewards.shape[0], len(prompts)
    pairs = np.stack([np.arange(p), np.arange(p) + p], axis=1)
    per_epoch = [[rec["per_seed"][i] for rec in history] for i in range(s)]
    has_epoch0 = epoch0_path is not None and pathlib.Path(epoch0_path).is_file()
    if has_epoch0:
        start = json.loads(pathlib.Path(epoch0_path).read_text())["per_seed"]
        per_epoch = [[start[i], *curve] for i, curve in enumerate(per_epoch)]
    summary: dict[str, Any] = {
        "num_seeds": s, "num_test_pairs": p, "num_test_prompts": len(set(prompts.tolist())),
        "num_train_texts": len(train_true), "epochs": len(history),
        "loss": blob["train_config"]["loss"], "irl_threshold": blob["train_config"].get("threshold"),
        "per_seed_final": history[-1]["per_seed"], "spread": history[-1]["spread"],
        "per_epoch": per_epoch, "per_epoch_starts_at": 0 if has_epoch0 else 1,
        "seconds_per_epoch": float(np.mean([r.get("time_train_s", 0.0) for r in history])),
        "toxic_share_train": float(np.mean(train_true <= 0)),
        "toxic_share_test": float(np.mean(true <= 0)),
        "true_rewards": true.tolist(),
    }
    scorecards = {"learned": reward_scorecard(train_rewards, train_true, rewards, true, prompts,
                                              n_resamples=n_resamples)}
    if s > 1:
        # Standardised with the TRAINING texts' statistics: the held-out texts stay unseen.
        ens_train, _ = ensemble(train_rewards, reference=train_rewards)
        mean, std = ensemble(rewards, reference=train_rewards)
        scorecards["ensemble"] = reward_scorecard(ens_train[None], train_true, mean[None], true,
                                                  prompts, n_resamples=n_resamples)
        threshold = scorecards["ensemble"]["thresholds"][0]
        summary["seed_correlation"] = pairwise_seed_correlation(rewards).tolist()
        summary["seed_agreement"] = seed_agreement(rewards, true, np.concatenate([prompts, prompts]),
                                                   n_resamples=n_resamples)
        summary["ensemble"] = evaluate_rewards(mean, true, pairs=pairs,
                                               threshold=threshold).as_dict()
        summary["disagreement"] = disagreement_predicts_error(
            rewards, true, threshold=threshold, reference=train_rewards).as_dict()
        summary["ensemble_mean"], summary["ensemble_std"] = mean.tolist(), std.tolist()
    baselines = {**(extra_rewards or {}),
                 "random": random_rewards(len(train_true), len(true), s, RANDOM_REWARD_SEED),
                 "majority": majority_rewards(len(train_true), len(true))}
    for name, (tr, te) in baselines.items():
        scorecards[name] = reward_scorecard(tr, train_true, te, true, prompts,
                                            n_resamples=n_resamples)
    summary["scorecards"] = scorecards
    summary["bootstrap_resamples"] = n_resamples
    return summary
