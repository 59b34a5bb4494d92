"""Demonstration pairs as frozen trunk features, and scoring them with S seeds at once.

The reward model's frozen trunk runs ONCE per text here; IRL training and
evaluation then only apply the trainable top to these features.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jaxirl import parallel
from jaxirl.irl.length_buckets import length_batches
from jaxirl.irl.reward_model import RewardModel


@dataclasses.dataclass(frozen=True, eq=False)
class PairData:
    """Frozen features of P (expert, base) pairs, all rows padded to one width T.

    Attributes:
      features: {"expert", "base"}: [P, ...] trunk features; {"expert_mask",
        "base_mask"}: [P, T] int32.
      true_expert, true_base: [P] float64 ground-truth rewards.
    """

    features: dict[str, np.ndarray]
    true_expert: np.ndarray
    true_base: np.ndarray

    def __len__(self) -> int:
        return len(self.true_expert)


def pair_data(model: RewardModel, expert_texts, base_texts, true_expert, true_base,
              batch_size: int = 64, mesh: Mesh | None = None) -> PairData:
    """Tokenizes both sides to one width and runs the frozen trunk once per text (split over ``mesh``)."""
    n = len(expert_texts)
    ids, mask = model.tokenize(list(expert_texts) + list(base_texts))
    feats = model.features(ids, mask, batch_size, mesh)
    features = {"expert": feats[:n], "base": feats[n:],
                "expert_mask": mask[:n], "base_mask": mask[n:]}
    return PairData(features, np.asarray(true_expert, np.float64),
                    np.asarray(true_base, np.float64))


def demo_pairs(model: RewardModel, split, batch_size: int = 64,
               mesh: Mesh | None = None) -> PairData:
    """:func:`pair_data` of a demos split (see :mod:`jaxirl.irl.demos`)."""
    return pair_data(model, split["expert_text"], split["base_text"],
                     split["expert_true_reward"], split["base_true_reward"], batch_size, mesh)


def score_features(model: RewardModel, params: Any, features: np.ndarray, mask: np.ndarray,
                   batch_size: int = 256, mesh: Mesh | None = None) -> np.ndarray:
    """Rewards of every seed, float64 [S, N], of trunk features [N, ...] with mask [N, W].

    Rows run in length buckets (:mod:`jaxirl.irl.length_buckets`) when the features
    are per token ([N, W, ...]: residuals or ids), so padding costs little. With
    ``mesh``, ``params`` live on it and each batch's rows are split over it.
    """
    n, width = mask.shape
    per_token = model.trunk.trains_embedding or (
        model.trunk.first_block < model.lm_config.num_hidden_layers)
    out = None
    for rows, keep, w in length_batches(mask, batch_size,
                                        multiple=parallel.rows_multiple(1, mesh)):
        cols = slice(width - w if per_token else 0, None)
        feats = features[rows][:, cols] if per_token else features[rows]
        r = parallel.apply_rows(lambda f, m: _vmapped_rewards(model.top, params, f, m),
                                (feats, mask[rows][:, width - w:]), mesh)
        if out is None:
            out = np.zeros((r.shape[0], n), np.float64)
        out[:, rows[:keep]] = r[:, :keep]
    return out


@functools.partial(jax.jit, static_argnums=0)
def _vmapped_rewards(top, params, features, mask):
    return jax.vmap(lambda p: top.apply({"params": p}, features, mask))(params)
