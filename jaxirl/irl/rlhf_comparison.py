"""Re-RLHF: how much of the true reward's toxicity reduction the learned reward achieves.

The share is ``(base - learned) / (base - true)`` of the mean held-out toxicity of
three policies sampled on the same prompts: the base model, the policy RLHF-trained
on the true reward and the one trained on the learned reward. Its interval comes
from a paired bootstrap over prompts (scipy.stats.bootstrap), so it reflects how
few held-out prompts there are, not the run-to-run spread of PPO itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats

from jaxirl.irl.evaluate import as_finite_rewards


@dataclasses.dataclass(frozen=True)
class ReductionShare:
    """The learned reward's share of the true reward's toxicity reduction.

    Attributes:
      share: ``(base - learned) / (base - true)`` of the mean toxicities (1 = as good;
        NaN when the true reward reduced nothing).
      low, high: the paired-bootstrap confidence interval of ``share`` (NaN if undefined).
      confidence: the interval's level.
      num_prompts: held-out prompts, the bootstrap's resampling unit.
    """

    share: float
    low: float
    high: float
    confidence: float
    num_prompts: int


def _share(base, true, learned, axis=-1):
    drop_true = np.mean(base, axis) - np.mean(true, axis)
    drop_learned = np.mean(base, axis) - np.mean(learned, axis)
    # No reduction by the true reward leaves the share undefined.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(drop_true != 0, drop_learned / drop_true, np.nan)


def toxicity_reduction_share(base, after_true, after_learned, confidence: float = 0.95,
                             n_resamples: int = 2000, seed: int = 0) -> ReductionShare:
    """Share of the toxicity reduction, with a paired bootstrap interval over prompts.

    Args:
      base, after_true, after_learned: float [P] mean P(toxic) per held-out prompt of
        the base policy, the true-reward policy and the learned-reward policy, on the
        same P prompts in the same order.
      confidence: level of the percentile interval.
      n_resamples, seed: bootstrap resamples and their seed (deterministic).
    """
    names = ("base", "after_true", "after_learned")
    arrays = [as_finite_rewards(n, x) for n, x in zip(names, (base, after_true, after_learned),
                                                      strict=True)]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"base, after_true and after_learned need the same prompts, got lengths "
                         f"{[len(a) for a in arrays]}")
    share = float(_share(*arrays))
    low = high = float("nan")
    if len(arrays[0]) > 1 and np.isfinite(share):
        result = scipy.stats.bootstrap(arrays, _share, paired=True, vectorized=True,
                                       confidence_level=confidence, n_resamples=n_resamples,
                                       method="percentile", rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return ReductionShare(share, low, high, confidence, len(arrays[0]))


def toxicity_reduction_share_seeds(base, after_true, after_learned, confidence: float = 0.95,
                                   n_resamples: int = 2000, seed: int = 0) -> ReductionShare:
    """The share over several PPO seeds, with a bootstrap over seeds AND prompts.

    Args:
      base: [K, P] mean P(toxic) per prompt of the base policy as each of K
        evaluations sampled it (one per PPO seed), or [P].
      after_true: [S, P] per-prompt toxicity after RLHF with the true reward, one
        row per PPO seed; after_learned: [S', P] the same with the learned reward.

    The share is computed from the means over seeds and prompts. Each resample
    draws the seeds of each reward with replacement and the prompts with
    replacement (the same prompts for all three), so the interval covers PPO's
    seed-to-seed spread as well as the prompt and sampling noise (NaN bounds for fewer
    than two prompts). The seeds of the two rewards are drawn independently, not as
    pairs: runs with the same seed number share their first prompts and sampling keys,
    and any positive correlation that pairing would remove only narrows the interval, so
    unpaired is the conservative choice.
    """
    arrays = [np.atleast_2d(as_finite_rewards(n, x, ndim=np.ndim(x))) for n, x in
              (("base", base), ("after_true", after_true), ("after_learned", after_learned))]
    if len({a.shape[1] for a in arrays}) != 1:
        raise ValueError(f"base, after_true and after_learned need the same prompts, got "
                         f"{[a.shape[1] for a in arrays]}")
    means = [a.mean(0) for a in arrays]
    share = float(_share(*means))
    p = arrays[0].shape[1]
    if p < 2:
        # One prompt: its sampling noise cannot be resampled, so no interval (as
        # toxicity_reduction_share), rather than one narrowed to PPO's seed spread alone.
        return ReductionShare(share, float("nan"), float("nan"), confidence, p)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        prompts = rng.integers(p, size=p)
        rows = [a[rng.integers(len(a), size=len(a))][:, prompts].mean(0) for a in arrays]
        draws.append(float(_share(*rows)))
    draws = np.asarray(draws)
    draws = draws[np.isfinite(draws)]
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(draws, [alpha, 1 - alpha]) if len(draws) and np.isfinite(share)
                 else (float("nan"), float("nan")))
    return ReductionShare(share, float(low), float(high), confidence, p)


__all__ = ["ReductionShare", "toxicity_reduction_share", "toxicity_reduction_share_seeds"]
