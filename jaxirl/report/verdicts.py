"""One-sentence readings of the study's numbers, with the rule that picks each.

The rules are deliberately simple and printed in the report next to the numbers, so a
reader can disagree with the wording without having to recompute anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _ok(x) -> bool:
    return x is not None and math.isfinite(float(x))


def identifiability(seed_vs_seed: Mapping[str, float], seed_vs_true: Mapping[str, float]) -> str:
    """What the seeds' agreement (Pearson r between seeds) says about non-identifiability."""
    r, t = seed_vs_seed.get("estimate"), seed_vs_true.get("estimate")
    if not (_ok(r) and _ok(t)):
        return "Not measurable (fewer than two seeds or a constant reward)."
    shared = f"{100 * r * r:.0f}%"
    if r >= 0.9:
        level = (f"High agreement: any two seeds share about {shared} of their variance (r²), so "
                 "the random seed changes the recovered reward little")
    elif r >= 0.7:
        level = (f"Moderate agreement: two seeds share about {shared} of their variance, so a "
                 "visible part of each reward depends on the seed")
    else:
        level = (f"Low agreement: two seeds share only about {shared} of their variance"
                 + ("" if t - r > 0.1 else
                    "; the demonstrations leave the reward poorly identified"))
    if r - t > 0.1:
        gap = (f" The seeds agree with each other (r = {r:.2f}) far more than with the true "
               f"reward (r = {t:.2f}): what IRL misses, every seed misses alike, so the gap "
               "comes from the demonstrations and the objective (what separates expert from "
               "base texts), not from the seed. Agreement between seeds is no evidence of "
               "having recovered the true reward.")
    elif t - r > 0.1:
        gap = (f" Each seed tracks the true reward (r = {t:.2f}) better than the seeds track "
               f"each other (r = {r:.2f}): they share the true reward's signal and differ by "
               "noise of their own, so the disagreement is seed noise and averaging seeds "
               "helps.")
    else:
        gap = (f" Seeds agree with each other about as well as with the true reward "
               f"(r = {r:.2f} vs {t:.2f}): their differences are mostly seed noise.")
    return level + "." + gap


def rerlhf(share: Mapping[str, Any]) -> str:
    """Whether re-RLHF with the learned reward works, from its share of the reduction."""
    est, lo, hi = (share.get(k) for k in ("share", "low", "high"))
    if not _ok(est):
        return "Not measurable (no toxicity reduction by the true reward, or no evaluation)."
    if not (_ok(lo) and _ok(hi)) or hi - lo > 1.0:
        return ("Inconclusive: the interval is wider than 100 points (the true reward's own "
                "reduction is too small or too noisy to compare against).")
    if lo <= 1.0 <= hi:
        return ("Works: the learned reward's reduction is indistinguishable from the true "
                "reward's (the interval contains 100%).")
    if lo > 1.0:
        return "Works, and reduces toxicity more than the true reward does."
    if lo >= 0.5:
        return "Works partly: most of the true reward's reduction, but measurably less."
    if hi < 0.0:
        return "Fails: the learned reward makes the policy more toxic."
    return "Does not clearly work: less than half of the true reward's reduction is assured."


def sae_vs_random(sae_fraction: float, random_fraction: float, low: float, high: float) -> str:
    """Verdict on SAE features vs random directions (difference of toxic-linked shares)."""
    if not all(_ok(x) for x in (sae_fraction, random_fraction)):
        return "Not measurable."
    if _ok(low) and low > 0:
        return ("SAE features are toxic-linked more often than random directions: the "
                "dictionary isolates reward-related directions beyond chance.")
    if _ok(high) and high < 0:
        return ("Random directions are toxic-linked MORE often than SAE features: the labelling "
                "test does not show that the SAE isolates reward-related features.")
    return ("SAE features and random directions are toxic-linked about equally often: the "
            "labelling test cannot tell the SAE's features from chance directions.")


def firing_vs_random(difference: Mapping[str, float] | None) -> str:
    """Verdict on held-out firing selectivity, toxic-linked SAE minus random directions."""
    if not difference or not all(_ok(difference.get(k)) for k in ("estimate", "low", "high")):
        return "Not measurable (no toxic-linked features in one of the sets)."
    if difference["low"] > 0:
        return ("On held-out texts, toxic-linked SAE features are more selective for toxic "
                "texts than toxic-linked random directions.")
    if difference["high"] < 0:
        return ("On held-out texts, toxic-linked SAE features are LESS selective for toxic "
                "texts than toxic-linked random directions.")
    return ("On held-out texts, toxic-linked SAE features are no more selective for toxic "
            "texts than toxic-linked random directions.")


__all__ = ["firing_vs_random", "identifiability", "rerlhf", "sae_vs_random"]
