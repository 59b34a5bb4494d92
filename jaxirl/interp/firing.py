"""The paper's firing-rate test for feedback-linked features.

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
its texts (``unit="text"``: fires anywhere in the text) on which it fires. Over
the features of a set (toxic-linked,
clean-linked, all others), the paired differences rate(toxic) - rate(clean) are
tested with a one-sided Wilcoxon signed-rank test (toxic-linked: greater;
clean-linked: less; others: two-sided).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats

from jaxirl.errors import ConfigError, DataError
from jaxirl.interp.activations import CapturedActivations, pool_by_text
from jaxirl.interp.features import FeatureLabels
from jaxirl.interp.irm import encode_tokens
from jaxirl.interp.sae import TrainedSAE


@dataclasses.dataclass(frozen=True)
class GroupRates:
    """Firing rates of one feature set on toxic vs clean texts.

    Attributes:
      num_features: features in the set.
      rate_on_toxic / rate_on_clean: mean over the set of per-feature firing rates.
      fraction_higher_on_toxic: share of the set firing more often on toxic texts.
      p_value: Wilcoxon signed-rank p-value of the paired differences (NaN when
        fewer than 2 features or all differences are 0).
      alternative: the test's alternative ("greater" = fires more on toxic).
    """

    num_features: int
    rate_on_toxic: float
    rate_on_clean: float
    fraction_higher_on_toxic: float
    p_value: float
    alternative: str


@dataclasses.dataclass(frozen=True, eq=False)
class FiringRateTest:
    """Per-feature rates ([num_total_features], order of the labels) and per-set summaries."""

    rate_on_toxic: np.ndarray
    rate_on_clean: np.ndarray
    toxic_linked: GroupRates
    clean_linked: GroupRates
    others: GroupRates
    num_toxic_texts: int
    num_clean_texts: int
    relative_threshold: float
    unit: str

    def summary(self) -> dict[str, dict[str, float]]:
        return {name: dataclasses.asdict(getattr(self, name))
                for name in ("toxic_linked", "clean_linked", "others")}


def _group(rt: np.ndarray, rc: np.ndarray, alternative: str) -> GroupRates:
    n = int(rt.shape[0])
    if n == 0:
        nan = float("nan")
        return GroupRates(0, nan, nan, nan, nan, alternative)
    diff = rt - rc
    p = float("nan")
    if n >= 2 and np.any(diff != 0):
        p = float(scipy.stats.wilcoxon(diff, alternative=alternative, zero_method="zsplit").pvalue)
    return GroupRates(n, float(rt.mean()), float(rc.mean()), float(np.mean(diff > 0)), p,
                      alternative)


def firing_rate_test(captured: CapturedActivations, saes: dict[int, TrainedSAE],
                     labels: FeatureLabels, toxic_texts: np.ndarray,
                     relative_threshold: float = 0.5, unit: str = "token") -> FiringRateTest:
    """Firing rates of labelled features on toxic vs clean texts.

    Args:
      captured: activations of the fine-tuned policy on N (preferably held-out) texts.
      saes: the SAEs that ``labels`` was computed for.
      labels: output of ``label_features``.
      toxic_texts: bool [N], True for texts the scorer calls toxic (low reward).
      relative_threshold: in [0, 1); see the module docstring.
      unit: ``"token"`` or ``"text"``; see the module docstring.
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
    on_toxic = toxic_texts[captured.text_index]
    rates_t, rates_c = [], []
    for layer in sorted(saes):
        codes = encode_tokens(saes[layer], captured.activations[layer])
        active = codes > relative_threshold * codes.max(axis=0, keepdims=True)
        if unit == "text":
            fired = pool_by_text(active.astype(np.float32), captured.text_index,
                                 captured.num_texts, "max") > 0
            rates_t.append(fired[toxic_texts].mean(axis=0))
            rates_c.append(fired[~toxic_texts].mean(axis=0))
        else:
            rates_t.append(active[on_toxic].mean(axis=0))
            rates_c.append(active[~on_toxic].mean(axis=0))
    rt, rc = np.concatenate(rates_t), np.concatenate(rates_c)
    if rt.shape != labels.layer.shape:
        raise DataError(f"labels cover {labels.layer.shape[0]} features but the SAEs have "
                        f"{rt.shape[0]}")
    tox, clean = labels.toxic_linked, labels.clean_linked
    others = ~(tox | clean) & (labels.num_contexts > 0)
    return FiringRateTest(
        rate_on_toxic=rt, rate_on_clean=rc,
        toxic_linked=_group(rt[tox], rc[tox], "greater"),
        clean_linked=_group(rt[clean], rc[clean], "less"),
        others=_group(rt[others], rc[others], "two-sided"),
        num_toxic_texts=int(toxic_texts.sum()), num_clean_texts=int((~toxic_texts).sum()),
        relative_threshold=float(relative_threshold), unit=unit)
