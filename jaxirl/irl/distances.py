"""Reward distances on a finite coverage set of texts: EPIC and two STARC variants.

A learned reward is identified only up to what its training signal cannot
see, so it is compared with the true reward after removing exactly that:

* **EPIC** (Gleave et al. 2021, arXiv 2006.13900): the Pearson distance
  √((1 − ρ)/2) ∈ [0, 1] over the coverage set. In a one-step setting
  (state = prompt, action = completion, terminal next state, γ = 1) its
  canonical shaping reduces to centring, so it is invariant to a·r + b, a > 0.
* **STARC** (Skalse et al. 2024, arXiv 2309.15257): canonicalise, normalise,
  take a norm of the difference: d(R₁, R₂) = ‖s(R₁) − s(R₂)‖, s(R) = c(R)/n(c(R))
  (s(R) = c(R) = 0 when n(c(R)) = 0). ``halve`` multiplies by ½ as
  evaluating-rewards does, so that L2 distances lie in [0, 1].

  - **Variant A** (``canon="global"``): c(R) = R − mean_D R over the coverage
    set D, L2 norm. It equals 2·EPIC exactly (halved: EPIC), so it adds no
    information beyond Pearson; it is reported because the follow-up papers do.
  - **Variant B** (``canon="per_prompt"``): c(R)(p, o) = R(p, o) − mean over
    the texts of prompt p, the L2-minimal member of the shaping class. A
    per-prompt constant is exactly what Bradley–Terry on same-prompt pairs (and
    the log-ratio reward's log Z(p)) cannot see. With one (expert, base) pair
    per group the centred values are ±Δ/2, Δ = r(expert) − r(base), and
    STARC_B = √(2 − 2·cos(Δ̂, Δ★)) with the *uncentred* cosine of the margin
    vectors (:func:`margin_cosine_distance`).

The coverage set (which texts, their weights, their groups) is an explicit
argument, and :func:`coverage_record` describes it for logging. The formulas
for the one-step reduction are reconstructions [R] from the notes in
shared/research/beyond-paper.md §3.3 (BUILD_NOTES.md). Host-side NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxirl.errors import RewardError
from jaxirl.irl.evaluate import as_finite_rewards

CANONS = ("none", "global", "per_prompt")
NORMS = (1, 2, np.inf)


def _weights(weights, n: int) -> np.ndarray:
    """Coverage weights [n], ≥ 0, normalised to sum 1 (uniform when None)."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = as_finite_rewards("coverage weights", weights)
    if len(w) != n:
        raise RewardError(f"coverage weights have {len(w)} entries for {n} texts")
    if (w < 0).any() or w.sum() <= 0:
        raise RewardError("coverage weights must be ≥ 0 with a positive sum")
    return w / w.sum()


def _groups(groups, n: int) -> np.ndarray:
    """Group (prompt) index of each text as int [n], 0..G-1."""
    if groups is None:
        raise RewardError("canon='per_prompt' needs groups: the prompt (or pair) of every text")
    g = np.asarray(groups)
    if g.shape != (n,):
        raise RewardError(f"groups have shape {g.shape} for {n} texts")
    return np.unique(g, return_inverse=True)[1]


def canonicalize(rewards, *, canon: str = "global", weights=None, groups=None) -> np.ndarray:
    """c(R) over the coverage set: [n] → [n] float64.

    ``"none"`` keeps R; ``"global"`` subtracts the weighted mean over all texts;
    ``"per_prompt"`` subtracts the weighted mean over each group's texts.
    """
    r = as_finite_rewards("rewards", rewards)
    w = _weights(weights, len(r))
    if canon == "none":
        return r.copy()
    if canon == "global":
        return r - np.sum(w * r)
    if canon == "per_prompt":
        g = _groups(groups, len(r))
        total = np.bincount(g, weights=w)
        mean = np.bincount(g, weights=w * r) / np.where(total > 0, total, 1.0)
        return r - mean[g]
    raise RewardError(f"unknown canonicalisation {canon!r}; choose one of {', '.join(CANONS)}")


def weighted_norm(x: np.ndarray, weights: np.ndarray, norm: float = 2) -> float:
    """‖x‖ under the coverage weights: (Σ w|x|^p)^(1/p), or max |x| over w > 0 for p = ∞."""
    if norm == np.inf:
        return float(np.max(np.abs(x[weights > 0]), initial=0.0))
    if norm not in (1, 2):
        raise RewardError(f"unknown norm {norm!r}; choose 1, 2 or inf")
    return float(np.sum(weights * np.abs(x) ** norm) ** (1.0 / norm))


def standardized(rewards, *, canon: str = "global", norm: float = 2, weights=None,
                 groups=None) -> np.ndarray:
    """s(R) = c(R) / n(c(R)), and c(R) itself (all zeros) when its norm is 0."""
    r = as_finite_rewards("rewards", rewards)
    w = _weights(weights, len(r))
    c = canonicalize(r, canon=canon, weights=w, groups=groups)
    size = weighted_norm(c, w, norm)
    # Float-noise canonical forms (a constant reward) count as zero.
    return c / size if size > 1e-12 * max(1.0, np.abs(r).max()) else np.zeros_like(c)


def starc_distance(r_hat, r_true, *, canon: str = "global", norm: float = 2, weights=None,
                   groups=None, halve: bool = True) -> float:
    """STARC distance ‖s(r_hat) − s(r_true)‖ over the coverage set (× ½ with ``halve``).

    Args:
      r_hat, r_true: [n] rewards of the same n texts.
      canon: ``"global"`` (variant A), ``"per_prompt"`` (variant B) or ``"none"``.
      norm: 1, 2 or ``np.inf``, weighted by the coverage weights (the same norm
        normalises and measures).
      weights: [n] coverage weights (None: uniform).
      groups: [n] group (prompt) labels, for ``"per_prompt"``.
      halve: multiply by ½ (evaluating-rewards' convention; L2 values in [0, 1]).
    """
    a = as_finite_rewards("learned rewards", r_hat)
    b = as_finite_rewards("true rewards", r_true)
    if a.shape != b.shape:
        raise RewardError(f"learned rewards have {len(a)} texts but true rewards have {len(b)}")
    w = _weights(weights, len(a))
    diff = standardized(a, canon=canon, norm=norm, weights=w, groups=groups) - \
        standardized(b, canon=canon, norm=norm, weights=w, groups=groups)
    return (0.5 if halve else 1.0) * weighted_norm(diff, w, norm)


def epic_distance(r_hat, r_true, *, weights=None) -> float:
    """Pearson distance √((1 − ρ)/2) ∈ [0, 1], ρ the coverage-weighted correlation.

    A constant reward has no correlation: like :func:`starc_distance` (of which this is
    the halved global-L2 case), its standardised form is 0, at distance ½ from any
    other reward's (0 from another constant one).
    """
    a = as_finite_rewards("learned rewards", r_hat)
    b = as_finite_rewards("true rewards", r_true)
    if a.shape != b.shape:
        raise RewardError(f"learned rewards have {len(a)} texts but true rewards have {len(b)}")
    w = _weights(weights, len(a))
    sa, sb = standardized(a, weights=w), standardized(b, weights=w)
    if not (sa.any() and sb.any()):
        return 0.5 * weighted_norm(sa - sb, w, 2)
    rho = float(np.clip(np.sum(w * sa * sb), -1.0, 1.0))  # both have unit weighted norm
    return float(np.sqrt(0.5 * (1.0 - rho)))


def margin_cosine_distance(margin_hat, margin_true, *, halve: bool = True) -> float:
    """√(2 − 2·cos(Δ̂, Δ★)) of margin vectors [P] (uncentred cosine); × ½ with ``halve``.

    Equals :func:`starc_distance` with ``canon="per_prompt"`` when each group is
    one (expert, base) pair.
    """
    a = as_finite_rewards("learned margins", margin_hat)
    b = as_finite_rewards("true margins", margin_true)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    ua = a / na if na > 0 else np.zeros_like(a)
    ub = b / nb if nb > 0 else np.zeros_like(b)
    return (0.5 if halve else 1.0) * float(np.linalg.norm(ua - ub))


def pair_distances(learned_expert, learned_base, true_expert, true_base) -> dict[str, float]:
    """EPIC, STARC-A and STARC-B (all halved, L2, uniform weights) of P held-out pairs.

    The coverage set is the 2P texts (experts then bases) with uniform weights;
    STARC-B groups each (expert, base) pair. See :func:`coverage_record`.
    """
    sizes = [np.size(x) for x in (learned_expert, learned_base, true_expert, true_base)]
    if len(set(sizes)) != 1:
        raise RewardError(f"learned expert/base and true expert/base rewards need one value per "
                          f"pair each, got {sizes}")
    learned = np.concatenate([np.asarray(learned_expert, float), np.asarray(learned_base, float)])
    true = np.concatenate([np.asarray(true_expert, float), np.asarray(true_base, float)])
    p = len(learned) // 2
    pair = np.concatenate([np.arange(p), np.arange(p)])
    return {"epic": epic_distance(learned, true),
            "starc_a": starc_distance(learned, true, canon="global"),
            "starc_b": starc_distance(learned, true, canon="per_prompt", groups=pair)}


def coverage_record(num_pairs: int, description: str = "held-out expert ∪ base texts"
                    ) -> dict[str, Any]:
    """The coverage set of :func:`pair_distances`, as logged beside the distances."""
    return {"texts": description, "num_texts": 2 * num_pairs, "weights": "uniform",
            "starc_b_groups": "(expert, base) pair", "norm": "L2", "halved": True}


__all__ = ["CANONS", "canonicalize", "coverage_record", "epic_distance",
           "margin_cosine_distance", "pair_distances", "standardized", "starc_distance",
           "weighted_norm"]
