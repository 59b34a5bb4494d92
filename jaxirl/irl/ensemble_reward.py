"""A seed ensemble of learned reward models, saved to a folder and used as one PPO reward.

The method comparison scores a ``<method>_ensemble`` as one run: each seed's reward
z-scored with its own TRAINING mean and std, then averaged. Deployed, it is an affine
map of that average (ranks, correlations and STARC/EPIC distances unchanged)::

    r(x) = scale * mean_s((r_s(x) - mean_s) / std_s) + offset

IRL does not identify a reward's scale, but PPO feels it: it does not rescale rewards
by default, so the scale sets how much the KL penalty weighs. By default ``scale`` is
the members' mean std and ``offset`` their mean mean (the units of the average
member: with identical members the ensemble equals each of them); a caller may give
the ensemble a target std on the training texts instead, e.g. another learned
reward's, so that two PPO runs differ only in the reward's shape.

A folder holds ``reward_ensemble.json``: the member folders (relative to it, and
absolute) and their statistics. As a PPO reward (``--reward ensemble:PATH``) it behaves as
``learned:PATH``: r(response) − r(reference) when references are given.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from jaxirl import runs
from jaxirl.errors import CheckpointError, ConfigError, DataError

CONFIG_FILE = "reward_ensemble.json"


def zscored_mean(member_scores: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Member rewards [S, N], each z-scored by its (training) mean and std [S], averaged: [N].

    The comparison's ``<method>_ensemble`` run, and what :class:`RewardEnsemble` rescales.
    """
    z = (np.asarray(member_scores, np.float64) - means[:, None]) / stds[:, None]
    return z.mean(axis=0)


class RewardEnsemble:
    """S saved reward models combined as in the module docstring.

    Attributes:
      members: the loaded :class:`~jaxirl.irl.reward_model.RewardModel` s.
      means, stds: float64 [S], each member's reward mean and std on the training texts.
      scale, offset: the affine map of the z-scored mean (defaults: mean std, mean mean).
    """

    def __init__(self, members: Sequence, means: Sequence[float], stds: Sequence[float],
                 scale: float | None = None, offset: float | None = None):
        self.members = list(members)
        self.means = np.asarray(means, np.float64)
        self.stds = np.asarray(stds, np.float64)
        s = len(self.members)
        if s == 0:
            raise ConfigError("a reward ensemble needs at least one member")
        if self.means.shape != (s,) or self.stds.shape != (s,):
            raise ConfigError(f"a reward ensemble of {s} members needs {s} means and stds, got "
                              f"{self.means.shape} and {self.stds.shape}")
        if not (np.all(np.isfinite(self.means)) and np.all(np.isfinite(self.stds))
                and np.all(self.stds > 0)):
            raise DataError(f"reward ensemble statistics must be finite with std > 0, got "
                            f"means {self.means.tolist()} and stds {self.stds.tolist()}")
        self.scale = float(self.stds.mean() if scale is None else scale)
        self.offset = float(self.means.mean() if offset is None else offset)
        if not (np.isfinite(self.scale) and self.scale > 0 and np.isfinite(self.offset)):
            raise DataError(f"reward ensemble scale must be finite and > 0 and its offset "
                            f"finite, got {self.scale} and {self.offset}")

    def combine(self, member_scores: np.ndarray) -> np.ndarray:
        """Member rewards [S, N] -> ensemble rewards float64 [N]."""
        return self.scale * zscored_mean(member_scores, self.means, self.stds) + self.offset

    def score(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Ensemble rewards of ``texts``, float32 [N]; higher = more expert-like."""
        if len(texts) == 0:
            return np.zeros((0,), np.float32)
        scores = np.stack([m.score(texts, batch_size) for m in self.members])
        return self.combine(scores).astype(np.float32)


def member_statistics(train_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) float64 [S] of member rewards [S, N] on the training texts."""
    x = np.asarray(train_scores, np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise DataError(f"ensemble statistics need member rewards [S, N >= 2], got {x.shape}")
    return x.mean(axis=1), x.std(axis=1)


def save_reward_ensemble(path: str | os.PathLike, members: Sequence[str | os.PathLike],
                         train_scores: np.ndarray, target_std: float | None = None,
                         extra: dict | None = None) -> pathlib.Path:
    """Writes ``reward_ensemble.json`` into ``path`` for saved reward-model folders.

    Args:
      path: the ensemble's folder (created).
      members: S folders written by :func:`~jaxirl.irl.reward_model.save_reward_model`.
      train_scores: float [S, N], each member's rewards of the same N training texts
        (the statistics that z-score it).
      target_std: the ensemble's std on those training texts (default: none, the
        units of the average member; see the module docstring).
      extra: more JSON fields to record (e.g. the method and the draw).
    """
    path = pathlib.Path(path)
    members = [pathlib.Path(m) for m in members]
    if len(members) != len(np.asarray(train_scores)):
        raise ConfigError(f"{len(members)} ensemble members but train_scores has "
                          f"{len(np.asarray(train_scores))} rows")
    means, stds = member_statistics(train_scores)
    ensemble = RewardEnsemble(members, means, stds)  # checks before any write
    if target_std is not None:
        spread = zscored_mean(train_scores, means, stds).std()
        with np.errstate(divide="ignore"):
            ensemble = RewardEnsemble(members, means, stds, float(target_std) / spread)

    # Relative to the folder, so that a workdir holding both can move; the absolute
    # path too, for an ensemble folder copied elsewhere on its own.
    blob = {"members": [os.path.relpath(m.resolve(), path.resolve()) for m in members],
            "members_absolute": [str(m.resolve()) for m in members],
            "means": means.tolist(), "stds": stds.tolist(), "scale": ensemble.scale,
            "offset": ensemble.offset, **(extra or {})}
    path.mkdir(parents=True, exist_ok=True)
    runs.write_text_atomic(path / CONFIG_FILE, json.dumps(blob, indent=2) + "\n")
    return path


def load_reward_ensemble(path: str | os.PathLike) -> RewardEnsemble:
    """Reads a folder written by :func:`save_reward_ensemble`; CheckpointError naming it if bad."""
    from jaxirl.irl.reward_model import load_reward_model

    path = pathlib.Path(path)
    file = path / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"'{path}' is not a reward ensemble folder (no {CONFIG_FILE})")
    try:
        blob = json.loads(file.read_text())
        members, means, stds = blob["members"], blob["means"], blob["stds"]
        absolute = blob.get("members_absolute", [None] * len(members))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{file} is malformed: {type(e).__name__}: {e}") from None
    folders = []
    for rel, ab in zip(members, absolute, strict=True):
        found = [c for c in (path / rel, ab) if c is not None and pathlib.Path(c).is_dir()]
        if not found:
            raise CheckpointError(f"{file}: member '{rel}' is neither beside it nor at '{ab}'")
        folders.append(found[0])
    return RewardEnsemble([load_reward_model(f) for f in folders], means, stds,
                          blob.get("scale"), blob.get("offset"))


def make_ensemble_reward_fn(arg: str, use_references: bool = True, batch_size: int = 64):
    """PPO reward of ``--reward ensemble:PATH`` (see :class:`~jaxirl.irl.reward_model.LearnedReward`)."""
    from jaxirl.irl.reward_model import LearnedReward

    if not arg:
        raise ConfigError("reward 'ensemble:PATH' needs the folder of a saved reward ensemble")
    return LearnedReward(load_reward_ensemble(arg), use_references, batch_size)


def make_ensemble_scorer(arg: str):
    """The scorer of ``ensemble:PATH``: the ensemble reward read as log-odds of "not toxic"."""
    from jaxirl.irl.reward_model import LearnedRewardScorer

    if not arg:
        raise ConfigError("the 'ensemble' scorer needs a reward ensemble folder: "
                          "'ensemble:/path/to/ensemble'")
    return LearnedRewardScorer(load_reward_ensemble(arg), name="ensemble")


__all__ = ["RewardEnsemble", "load_reward_ensemble", "make_ensemble_reward_fn",
           "make_ensemble_scorer", "member_statistics", "save_reward_ensemble",
           "zscored_mean"]
