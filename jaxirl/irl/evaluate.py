"""Agreement between a learned reward and the ground-truth reward on held-out texts.

Host-side NumPy / SciPy / scikit-learn (not jitted). Inputs are float [N]
rewards of the same N texts (expert and base outputs together, as the
reference evaluates them), optionally with P (expert, base) index pairs.

Labels follow the reference (``calculate_accuracy_f1`` in ai4ai-lab/irl_for_llms
``src/irl_utilities.py``): a text is "preferred" (not toxic) when its reward is
> threshold and "dispreferred" (toxic, label 1, the positive class of its F1)
otherwise. The ground-truth threshold defaults to 0, the decision boundary of
the scorer's log-odds of "not toxic". A learned reward's offset and scale are
arbitrary (only differences are trained), so its threshold 0 is just the
reference's convention; ``threshold`` can instead be ``"median"``,
``"match_rate"`` (the quantile that gives the ground truth's share of
preferred texts) or a number, e.g. one fitted on the training split with
:func:`fit_threshold`. ROC-AUC, correlations and pairwise accuracy need no
threshold.

Every non-finite input raises a one-line :class:`~jaxirl.errors.RewardError`
naming the array and index. Degenerate inputs (a constant reward, one class
only, no untied pairs) give NaN for the metrics they make undefined.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

import numpy as np

from jaxirl.errors import RewardError

Threshold = float | Literal["median", "match_rate"]


def as_finite_rewards(name: str, x, ndim: int = 1) -> np.ndarray:
    """``x`` as float64 of rank ``ndim``; RewardError naming ``name`` and the index of a NaN/inf."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise RewardError(f"{name} must have rank {ndim}, got shape {arr.shape}")
    if arr.size == 0:
        raise RewardError(f"{name} is empty")
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        where = index[0] if ndim == 1 else index
        raise RewardError(
            f"{name} has a non-finite value ({arr[index]}) at index {where} "
            f"({len(bad)} non-finite in all)"
        )
    return arr


def _same_length(names: tuple[str, str], a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise RewardError(
            f"{names[0]} has {a.shape[-1]} texts but {names[1]} has {b.shape[-1]}"
        )


def resolve_threshold(
    learned, threshold: Threshold = 0.0, true=None, true_threshold: float = 0.0
) -> float:
    """The numeric threshold on learned rewards [N].

    ``"median"``: half the texts are preferred. ``"match_rate"``: the
    (1 − p) quantile of ``learned``, p = share of ``true`` > true_threshold,
    so the learned labels have (up to ties) the ground truth's class balance;
    it uses the label prior of the evaluated texts, not their labels.
    """
    learned = np.asarray(learned, dtype=np.float64)
    if isinstance(threshold, str):
        if threshold == "median":
            return float(np.median(learned))
        if threshold == "match_rate":
            if true is None:
                raise RewardError("threshold='match_rate' needs the ground-truth rewards")
            rate = float(np.mean(np.asarray(true) > true_threshold))
            return float(np.quantile(learned, 1.0 - rate))
        raise RewardError(
            f"unknown threshold {threshold!r}; use a number, 'median' or 'match_rate'"
        )
    return float(threshold)


def fit_threshold(learned, true, *, true_threshold: float = 0.0) -> float:
    """Threshold on ``learned`` [N] with the best accuracy against ``true`` [N] > true_threshold.

    Meant for the training split, to be applied to held-out texts. Candidates
    are midpoints between consecutive distinct learned rewards (and one value
    below the minimum: all preferred); ties go to the lowest candidate.
    """
    learned = as_finite_rewards("learned rewards", learned)
    true = as_finite_rewards("true rewards", true)
    _same_length(("learned rewards", "true rewards"), learned, true)
    order = np.argsort(learned, kind="stable")
    values, pos = learned[order], (true > true_threshold)[order]
    # Cutting after the first k sorted texts labels them dispreferred, the rest preferred.
    neg_below = np.concatenate([[0], np.cumsum(~pos)])
    pos_above = np.concatenate([[0], np.cumsum(pos[::-1])])[::-1]
    correct = neg_below + pos_above
    # A cut inside a run of equal values is not realisable by any threshold.
    valid = np.concatenate([[True], values[1:] > values[:-1], [True]])
    k = int(np.argmax(np.where(valid, correct, -1)))
    if k == 0:
        return float(values[0] - max(1.0, abs(values[0])))
    if k == len(values):
        return float(values[-1])
    return float(0.5 * (values[k - 1] + values[k]))


def midpoint_threshold(expert_rewards, base_rewards) -> np.ndarray:
    """The ``"train_midpoint"`` threshold: the midpoint of the mean expert reward and the
    mean base reward of the training pairs, over the last axis ([..., P] -> [...])."""
    return 0.5 * (np.mean(expert_rewards, axis=-1) + np.mean(base_rewards, axis=-1))


def pairwise_accuracy(learned, true, pairs) -> tuple[float, int]:
    """Share of (expert, base) pairs the learned reward orders like the ground truth.

    Args:
      learned: [N] learned rewards; true: [N] ground-truth rewards.
      pairs: int [P, 2] rows (expert index, base index) into the N texts.

    Returns:
      (accuracy, n_pairs): pairs tied in the ground truth have no order and are
      left out (n_pairs counts the rest); a learned tie counts one half, as in
      ROC-AUC. NaN when no pair is left.
    """
    learned, true, pairs = np.asarray(learned), np.asarray(true), np.asarray(pairs)
    true_sign = np.sign(true[pairs[:, 0]] - true[pairs[:, 1]])
    learned_sign = np.sign(learned[pairs[:, 0]] - learned[pairs[:, 1]])
    keep = true_sign != 0
    if not keep.any():
        return float("nan"), 0
    score = np.where(learned_sign == 0, 0.5, (learned_sign == true_sign).astype(np.float64))
    return float(score[keep].mean()), int(keep.sum())


def _check_pairs(pairs, n: int) -> np.ndarray:
    arr = np.asarray(pairs)
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise RewardError(
            f"pairs must be int [P, 2] (expert, base) indices, got {arr.dtype} {arr.shape}"
        )
    bad = np.argwhere((arr < 0) | (arr >= n))
    if len(bad):
        row = int(bad[0][0])
        raise RewardError(f"pairs[{row}] = {arr[row].tolist()} is out of range for {n} texts")
    return arr


def _quiet(fn, *args) -> float:
    # SciPy/NumPy warn on constant input and return NaN; NaN is the documented result.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(fn(*args))


@dataclasses.dataclass(frozen=True)
class RewardMetrics:
    """Learned-vs-true reward agreement over N texts (names as the reference's JSON).

    Attributes:
      accuracy: share of texts whose learned label (learned > threshold) equals
        the true label (true > true_threshold).
      f1: F1 of the dispreferred ("toxic", reward ≤ threshold) class, the
        reference's positive class.
      f1_preferred: F1 of the preferred (reward > threshold) class.
      roc_auc: ROC-AUC of the learned reward as a score for the true label.
      pearson_correlation, spearman, kendall_tau (tau-b): learned vs true rewards.
      cosine_similarity: cos of the angle between the two reward vectors.
      euclidean_distance: ‖learned − true‖₂ (scale-dependent, as the reference).
      pairwise_accuracy: see :func:`pairwise_accuracy` (NaN without pairs).
      expert_preferred_rate: share of pairs with learned(expert) > learned(base).
      threshold: the learned-reward threshold used.
      num_texts, num_pairs: N and the number of pairs not tied in the ground truth.
    """

    accuracy: float
    f1: float
    f1_preferred: float
    roc_auc: float
    pearson_correlation: float
    spearman: float
    kendall_tau: float
    cosine_similarity: float
    euclidean_distance: float
    pairwise_accuracy: float
    expert_preferred_rate: float
    threshold: float
    num_texts: int
    num_pairs: int

    def as_dict(self) -> dict[str, float]:
        """All fields as plain floats (JSON-ready)."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


def evaluate_rewards(
    learned,
    true,
    *,
    pairs=None,
    threshold: Threshold = 0.0,
    true_threshold: float = 0.0,
) -> RewardMetrics:
    """Compare learned with ground-truth rewards of the same N held-out texts.

    Args:
      learned: [N] learned rewards.
      true: [N] ground-truth rewards (scorer log-odds of "not toxic").
      pairs: optional int [P, 2] (expert index, base index) rows.
      threshold: learned-reward threshold: a number (reference: 0.0),
        ``"median"`` or ``"match_rate"`` (see :func:`resolve_threshold`).
      true_threshold: ground-truth threshold (0 = the scorer's boundary).

    Returns:
      :class:`RewardMetrics`.
    """
    # Imported here: every launcher imports this module at start-up (IRLTrainConfig), and
    # SciPy with scikit-learn add about 2 s to a run that may stop at a bad flag.
    import scipy.stats
    from sklearn.metrics import f1_score, roc_auc_score

    learned = as_finite_rewards("learned rewards", learned)
    true = as_finite_rewards("true rewards", true)
    _same_length(("learned rewards", "true rewards"), learned, true)
    thr = resolve_threshold(learned, threshold, true, true_threshold)
    learned_pref, true_pref = learned > thr, true > true_threshold

    two_classes = 0 < true_pref.sum() < len(true_pref)
    roc_auc = float(roc_auc_score(true_pref, learned)) if two_classes else float("nan")
    norm = np.linalg.norm(learned) * np.linalg.norm(true)
    cosine = float(learned @ true / norm) if norm > 0 else float("nan")

    pair_acc, num_pairs, preferred_rate = float("nan"), 0, float("nan")
    if pairs is not None:
        pairs = _check_pairs(pairs, len(learned))
        if len(pairs):
            pair_acc, num_pairs = pairwise_accuracy(learned, true, pairs)
            preferred_rate = float(np.mean(learned[pairs[:, 0]] > learned[pairs[:, 1]]))

    return RewardMetrics(
        accuracy=float(np.mean(learned_pref == true_pref)),
        f1=float(f1_score(~true_pref, ~learned_pref, zero_division=0.0)),
        f1_preferred=float(f1_score(true_pref, learned_pref, zero_division=0.0)),
        roc_auc=roc_auc,
        pearson_correlation=_quiet(lambda: np.corrcoef(true, learned)[0, 1]),
        spearman=_quiet(lambda: scipy.stats.spearmanr(true, learned)[0]),
        kendall_tau=_quiet(lambda: scipy.stats.kendalltau(true, learned)[0]),
        cosine_similarity=cosine,
        euclidean_distance=float(np.linalg.norm(learned - true)),
        pairwise_accuracy=pair_acc,
        expert_preferred_rate=preferred_rate,
        threshold=thr,
        num_texts=len(learned),
        num_pairs=num_pairs,
    )


def evaluate_pairs(
    learned_expert,
    learned_base,
    true_expert,
    true_base,
    *,
    threshold: Threshold = 0.0,
    true_threshold: float = 0.0,
) -> RewardMetrics:
    """:func:`evaluate_rewards` on P paired texts, all four arrays [P].

    The N = 2P texts are the experts followed by the bases (the order does
    not change any metric), and pair i is (expert i, base i).
    """
    arrays = {
        "learned expert rewards": learned_expert,
        "learned base rewards": learned_base,
        "true expert rewards": true_expert,
        "true base rewards": true_base,
    }
    arrays = {name: as_finite_rewards(name, x) for name, x in arrays.items()}
    p = len(arrays["learned expert rewards"])
    for name, x in arrays.items():
        if len(x) != p:
            raise RewardError(f"{name} has {len(x)} entries but learned expert rewards has {p}")
    values = list(arrays.values())
    index = np.arange(p)
    return evaluate_rewards(
        np.concatenate(values[:2]),
        np.concatenate(values[2:]),
        pairs=np.stack([index, index + p], axis=1),
        threshold=threshold,
        true_threshold=true_threshold,
    )
