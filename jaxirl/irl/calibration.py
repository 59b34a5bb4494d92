"""Calibration of reward-derived probabilities: Platt scaling, Brier score, ECE, reliability.

Host-side NumPy / SciPy. Targets may be hard (0/1) or soft (in [0, 1]): the
Alignment Auditor calibrates the pairwise probability P(expert ≻ base) against
the soft ground-truth target σ(r★(expert) − r★(base)) and per-text
probabilities against the hard label "not toxic". ECE is
Σ_b (n_b / N)·|mean_b p − mean_b y| over equal-count (``"quantile"``, the
Auditor's) or equal-width bins.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.special

from jaxirl.errors import RewardError
from jaxirl.irl.evaluate import as_finite_rewards


def _targets(y, n: int) -> np.ndarray:
    y = as_finite_rewards("calibration targets", y)
    if len(y) != n:
        raise RewardError(f"{len(y)} calibration targets for {n} scores")
    if (y < 0).any() or (y > 1).any():
        raise RewardError("calibration targets must lie in [0, 1]")
    return y


def platt_fit(scores, targets) -> tuple[float, float]:
    """(a ≥ 0, b) minimising the cross-entropy of σ(a·s + b) against targets [N].

    a ≥ 0 keeps the score's order (the Auditor's constraint).
    """
    s = as_finite_rewards("calibration scores", scores)
    y = _targets(targets, len(s))

    def nll(params):
        z = np.exp(params[0]) * s + params[1]
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    best = scipy.optimize.minimize(nll, x0=np.array([0.0, 0.0]), method="Nelder-Mead",
                                   options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    return float(np.exp(best.x[0])), float(best.x[1])


def platt_apply(scores, a: float, b: float) -> np.ndarray:
    """σ(a·s + b), float64 [N]."""
    return scipy.special.expit(a * np.asarray(scores, np.float64) + b)


def brier(probabilities, targets) -> float:
    """mean (p − y)²."""
    p = np.asarray(probabilities, np.float64)
    return float(np.mean((p - _targets(targets, len(p))) ** 2))


def reliability_bins(probabilities, targets, bins: int = 15, strategy: str = "quantile"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean p, mean y, count) of each non-empty bin, sorted by mean p."""
    p = np.asarray(probabilities, np.float64)
    y = _targets(targets, len(p))
    if strategy == "quantile":
        order = np.argsort(p, kind="stable")
        groups = np.array_split(order, bins)
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(bins)]
    else:
        raise RewardError(f"unknown bin strategy {strategy!r}; use quantile or uniform")
    groups = [g for g in groups if len(g)]
    return (np.array([p[g].mean() for g in groups]), np.array([y[g].mean() for g in groups]),
            np.array([len(g) for g in groups]))


def expected_calibration_error(probabilities, targets, bins: int = 15,
                               strategy: str = "quantile") -> float:
    """ECE = Σ_b (n_b / N)·|mean_b p − mean_b y|."""
    conf, acc, count = reliability_bins(probabilities, targets, bins, strategy)
    return float(np.sum(count * np.abs(conf - acc)) / np.sum(count))


def platt_ece_floor(scores, targets, bins: int = 15, strategy: str = "quantile",
                    starts: tuple[tuple[float, float], ...] = ()) -> tuple[float, float, float]:
    """(ECE, a, b): the Platt map σ(a·s + b), a ≥ 0, of least ECE on (scores, targets) themselves.

    A diagnostic, not a calibration (it is fitted on the data it scores): where even this
    ECE misses a target, no Platt map can meet it on these scores, whatever the
    calibration split. Nelder-Mead on (log a, b), started from the cross-entropy fit, the
    identity map, the best point of a coarse grid (a from e^-4 to e^3, b from -3 to 3) and
    each (a > 0, b) in ``starts``; the best minimum found is returned, so it is never
    above the ECE of a map in ``starts``. A search, not a proof: ECE is not convex in
    (a, b).
    """
    s = as_finite_rewards("calibration scores", scores)
    y = _targets(targets, len(s))

    def ece(params):
        return expected_calibration_error(platt_apply(s, np.exp(params[0]), params[1]), y,
                                          bins, strategy)

    a0, b0 = platt_fit(s, y)
    grid = min(([la, b] for la in np.linspace(-4.0, 3.0, 15) for b in np.linspace(-3.0, 3.0, 13)),
               key=ece)
    runs = [scipy.optimize.minimize(ece, x0=np.array(start), method="Nelder-Mead",
                                    options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 2000})
            for start in ([np.log(max(a0, 1e-12)), b0], [0.0, 0.0], grid,
                          *([np.log(max(a, 1e-12)), b] for a, b in starts))]
    best = min(runs, key=lambda r: r.fun)
    return float(best.fun), float(np.exp(best.x[0])), float(best.x[1])


__all__ = ["brier", "expected_calibration_error", "platt_apply", "platt_ece_floor", "platt_fit",
           "reliability_bins"]
