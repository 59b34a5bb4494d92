"""The paper's firing-rate test for feedback-linked features, with a random control.

Marks et al. check that features labelled as related to negative feedback fire
more on inputs the reward penalises, and positively-labelled ones on inputs it
favours. Here the labels come from :func:`jaxirl.interp.features.label_features`
and the inputs are split by the ground-truth scorer into toxic (low reward) and
clean (high reward) texts. Use texts other than those the labels were computed
on, or the test partly restates how the labels were chosen.

A feature *fires* on a token when its code exceeds ``relative_threshold`` times
its largest code over the evaluated tokens (0 = any positive code). The default
of 0.5 keeps a feature's weak, dense background activity (small codes that shave
reconstruction error) from dominating its firing rate; on short texts with one
insult each that background would otherwise swamp the signal. A feature's firing
rate on a group is the share of the group's real tokens (``unit="token"``) or of
its texts (``unit="text"``: fires anywhere in the text) on which it fires.

Each feature set (toxic-linked, clean-linked, all other SAE features, and the same
for the random directions of the labels' control) is summarised by its mean rates,
the mean difference rate(toxic) - rate(clean) and the mean *selectivity*
(t - c) / (t + c), which does not depend on how often a feature fires at all.
Intervals and p-values come from a bootstrap over held-out prompts (the texts of a
prompt are correlated; features are not independent samples either, so a test that
treats thousands of features as independent gives absurdly small p-values for
differences of a few thousandths).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from jaxirl.errors import ConfigError, DataError
from jaxirl.interp.activations import CapturedActivations, pool_by_text
from jaxirl.interp.features import FeatureLabels
from jaxirl.interp.irm import encode_tokens
from jaxirl.interp.sae import TrainedSAE
from jaxirl.irl.bootstrap import bootstrap_draws, group_ids, group_sums, percentile_interval

SETS = ("toxic_linked", "clean_linked", "others", "random_toxic_linked", "random_others")


@dataclasses.dataclass(frozen=True)
class GroupRates:
    """Firing rates of one feature set on toxic vs clean texts.

    Attributes:
      num_features: features in the set.
      rate_on_toxic / rate_on_clean: mean over the set of per-feature firing rates.
      fraction_higher_on_toxic: share of the set firing more often on toxic texts.
      p_value: bootstrap p-value over prompts of the mean difference, one-sided for
        ``alternative`` "greater"/"less" (NaN for an empty set; at least 1/(B + 1)).
      alternative: the direction tested ("greater" = fires more on toxic).
      p_floor: the smallest p-value the B finite resamples can give: 1/(B + 1), or
        2/(B + 1) two-sided; a p-value equal to it means "at most this".
      difference: {"estimate", "low", "high"}: mean rate(toxic) - rate(clean), 95% interval.
      selectivity: the same for the mean selectivity (t - c) / (t + c).
    """

    num_features: int
    rate_on_toxic: float
    rate_on_clean: float
    fraction_higher_on_toxic: float
    p_value: float
    alternative: str
    difference: dict | None = None
    selectivity: dict | None = None
    p_floor: float = float("nan")


@dataclasses.dataclass(frozen=True, eq=False)
class FiringRateTest:
    """Per-feature rates ([num_total_features], order of the labels), the random
    directions' rates ([R]) and per-set summaries."""

    rate_on_toxic: np.ndarray
    rate_on_clean: np.ndarray
    toxic_linked: GroupRates
    clean_linked: GroupRates
    others: GroupRates
    num_toxic_texts: int
    num_clean_texts: int
    relative_threshold: float
    unit: str
    random_rate_on_toxic: np.ndarray | None = None
    random_rate_on_clean: np.ndarray | None = None
    random_toxic_linked: GroupRates | None = None
    random_others: GroupRates | None = None
    sae_minus_random: dict | None = None
    num_groups: int = 0

    def summary(self) -> dict[str, dict[str, float]]:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in SETS
               if getattr(self, name) is not None}
        if self.sae_minus_random is not None:
            out["sae_minus_random_selectivity"] = self.sae_minus_random
        return out


def _fired_per_text(codes: np.ndarray, captured: CapturedActivations, relative_threshold: float,
                    unit: str) -> np.ndarray:
    """[num_texts, F] firing tokens (unit token) or 0/1 fired-anywhere (unit text)."""
    active = (codes > relative_threshold * codes.max(axis=0, keepdims=True)).astype(np.float32)
    reduce = "max" if unit == "text" else "sum"
    return pool_by_text(active, captured.text_index, captured.num_texts, reduce)


def _rates(fired_t, fired_c, units_t, units_c):
    with np.errstate(invalid="ignore", divide="ignore"):
        return fired_t / units_t[..., None], fired_c / units_c[..., None]


def firing_rate_test(captured: CapturedActivations, saes: dict[int, TrainedSAE],
                     labels: FeatureLabels, toxic_texts: np.ndarray,
                     relative_threshold: float = 0.5, unit: str = "token",
                     groups: Sequence | None = None, n_resamples: int = 1000,
                     seed: int = 0) -> FiringRateTest:
    """Firing rates of labelled features (and of the random control) on toxic vs clean texts.

    Args:
      captured: activations of the fine-tuned policy on N (preferably held-out) texts.
      saes: the SAEs that ``labels`` was computed for.
      labels: output of ``label_features``.
      toxic_texts: bool [N], True for texts the scorer calls toxic (low reward).
      relative_threshold: in [0, 1); see the module docstring.
      unit: ``"token"`` or ``"text"``; see the module docstring.
      groups: [N] prompt of each text, the bootstrap's resampling unit (None: the texts).
      n_resamples, seed: of the bootstrap.
    """
    if not 0.0 <= relative_threshold < 1.0:
        raise ConfigError(f"relative_threshold must lie in [0, 1), got {relative_threshold}")
    if unit not in ("token", "text"):
        raise ConfigError(f"firing-rate unit '{unit}' is not 'token' or 'text'")
    toxic_texts = np.asarray(toxic_texts, bool)
    if toxic_texts.shape != (captured.num_texts,):
        raise DataError(f"toxic_texts has shape {toxic_texts.shape}; expected "
                        f"({captured.num_texts},) for the captured texts")
    if toxic_texts.all() or not toxic_texts.any():
        raise DataError("the firing-rate test needs both toxic and clean texts; "
                        f"got {int(toxic_texts.sum())} toxic of {toxic_texts.size}")
    fired = []
    for layer in sorted(saes):
        codes = encode_tokens(saes[layer], captured.activations[layer])
        fired.append(_fired_per_text(codes, captured, relative_threshold, unit))
    num_sae = sum(f.shape[1] for f in fired)
    if num_sae != labels.layer.shape[0]:
        raise DataError(f"labels cover {labels.layer.shape[0]} features but the SAEs have "
                        f"{num_sae}")
    rand = labels.random
    if rand is not None:
        for layer in sorted(rand.directions):
            codes = rand.codes(layer, captured.activations[layer])
            fired.append(_fired_per_text(codes, captured, relative_threshold, unit))
    fired = np.concatenate(fired, axis=1).astype(np.float64)  # [N, F + R]
    units = (np.bincount(captured.text_index, minlength=captured.num_texts).astype(np.float64)
             if unit == "token" else np.ones(captured.num_texts))
    gid, g = group_ids(np.arange(captured.num_texts) if groups is None else groups)
    if len(gid) != captured.num_texts:
        raise DataError(f"groups has {len(gid)} entries for {captured.num_texts} texts")
    # Per prompt: firing counts and units of its toxic and of its clean texts.
    sums = {k: group_sums((fired * m[:, None]).T, gid, g).T for k, m in
            (("t", toxic_texts), ("c", ~toxic_texts))}  # [G, F + R]
    units_g = {k: group_sums(units * m, gid, g) for k, m in (("t", toxic_texts), ("c", ~toxic_texts))}
    others = ~(labels.toxic_linked | labels.clean_linked) & (labels.num_contexts > 0)
    sets = {"toxic_linked": labels.toxic_linked, "clean_linked": labels.clean_linked,
            "others": others}
    if rand is not None:
        pad = np.zeros(num_sae, bool)
        sets = {k: np.concatenate([v, np.zeros(len(rand.layer), bool)]) for k, v in sets.items()}
        sets["random_toxic_linked"] = np.concatenate([pad, rand.toxic_linked])
        sets["random_others"] = np.concatenate([pad, ~rand.toxic_linked & (rand.num_contexts > 0)])
    alternatives = {"toxic_linked": "greater", "clean_linked": "less", "others": "two-sided",
                    "random_toxic_linked": "greater", "random_others": "two-sided"}

    def stat(c):
        rt, rc = _rates(c @ sums["t"], c @ sums["c"], c @ units_g["t"], c @ units_g["c"])
        diff = rt - rc
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a set that never fires: NaN selectivity
            sel = np.where(rt + rc > 0, diff / (rt + rc), np.nan)
            out = {}
            for name, mask in sets.items():
                if mask.any():
                    out[f"{name}/difference"] = diff[:, mask].mean(1)
                    out[f"{name}/selectivity"] = np.nanmean(sel[:, mask], 1)
        if "random_toxic_linked" in sets and sets["toxic_linked"].any() and \
                sets["random_toxic_linked"].any():
            out["sae_minus_random"] = (out["toxic_linked/selectivity"]
                                       - out["random_toxic_linked/selectivity"])
        return out

    estimate, draws = bootstrap_draws(stat, g, n_resamples=n_resamples, seed=seed)
    intervals = {k: percentile_interval(v, draws[k], num_groups=g) for k, v in estimate.items()}
    ones = np.ones((1, g))
    rt, rc = (x[0] for x in _rates(ones @ sums["t"], ones @ sums["c"], ones @ units_g["t"],
                                   ones @ units_g["c"]))
    summaries = {}
    for name, mask in sets.items():
        summaries[name] = _group(rt[mask], rc[mask], alternatives[name], intervals, draws, name)
    return FiringRateTest(
        rate_on_toxic=rt[:num_sae], rate_on_clean=rc[:num_sae],
        toxic_linked=summaries["toxic_linked"], clean_linked=summaries["clean_linked"],
        others=summaries["others"], num_toxic_texts=int(toxic_texts.sum()),
        num_clean_texts=int((~toxic_texts).sum()), relative_threshold=float(relative_threshold),
        unit=unit, random_rate_on_toxic=rt[num_sae:] if rand is not None else None,
        random_rate_on_clean=rc[num_sae:] if rand is not None else None,
        random_toxic_linked=summaries.get("random_toxic_linked"),
        random_others=summaries.get("random_others"),
        sae_minus_random=intervals["sae_minus_random"].as_dict()
        if "sae_minus_random" in intervals else None, num_groups=g)


def _group(rt: np.ndarray, rc: np.ndarray, alternative: str, intervals: dict, draws: dict,
           name: str) -> GroupRates:
    n = int(rt.shape[0])
    nan = float("nan")
    if n == 0:
        return GroupRates(0, nan, nan, nan, nan, alternative)
    d = draws.get(f"{name}/difference", np.zeros(0))
    d = d[np.isfinite(d)]  # a resample without toxic or clean texts says nothing
    p = p_floor = nan
    if d.size:
        below, above = (np.sum(d <= 0) + 1) / (d.size + 1), (np.sum(d >= 0) + 1) / (d.size + 1)
        p = {"greater": below, "less": above}.get(alternative, min(1.0, 2 * min(below, above)))
        p_floor = (1 if alternative in ("greater", "less") else 2) / (d.size + 1)
    diff = rt - rc
    return GroupRates(n, float(np.nanmean(rt)), float(np.nanmean(rc)), float(np.mean(diff > 0)),
                      float(p), alternative,
                      intervals[f"{name}/difference"].as_dict()
                      if f"{name}/difference" in intervals else None,
                      intervals[f"{name}/selectivity"].as_dict()
                      if f"{name}/selectivity" in intervals else None, float(p_floor))
