"""Paired method comparison: vectorised metrics agree with the reference ones; the bootstrap."""

import numpy as np
import pytest

from jaxirl.irl.distances import pair_distances
from jaxirl.irl.evaluate import evaluate_rewards
from jaxirl.irl.method_comparison import (
    draw_summary,
    paired_differences,
    run_metrics,
    seed_correlation,
)


def _draw(seed, p=60, prompts=12, noise=(0.5, 0.5, 2.0)):
    rng = np.random.default_rng(seed)
    true = np.concatenate([rng.normal(1.0, 1.5, p), rng.normal(-0.5, 1.5, p)])
    rewards = {name: true + rng.normal(scale=s, size=(3, 2 * p))
               for name, s in zip(("a", "same", "noisy"), noise, strict=True)}
    rewards["same"] = rewards["a"].copy()
    return {"rewards": rewards, "true": true, "thresholds": {k: np.zeros(3) for k in rewards},
            "pair_prompts": np.repeat(np.arange(prompts), p // prompts)}


def test_run_metrics_agree_with_evaluate_and_distances():
    draw = _draw(0)
    r, true = draw["rewards"]["noisy"], draw["true"]
    got = run_metrics(r, true, np.array([0.0, 0.3, -0.2]))
    p = len(true) // 2
    pairs = np.stack([np.arange(p), np.arange(p) + p], 1)
    for s, thr in enumerate((0.0, 0.3, -0.2)):
        want = evaluate_rewards(r[s], true, pairs=pairs, threshold=thr)
        dist = pair_distances(r[s, :p], r[s, p:], true[:p], true[p:])
        assert got["accuracy"][s] == pytest.approx(want.accuracy)
        assert got["f1"][s] == pytest.approx(want.f1)
        assert got["roc_auc"][s] == pytest.approx(want.roc_auc)
        assert got["pearson"][s] == pytest.approx(want.pearson_correlation)
        assert got["spearman"][s] == pytest.approx(want.spearman)
        assert got["starc_a"][s] == pytest.approx(dist["starc_a"])
        assert got["starc_b"][s] == pytest.approx(dist["starc_b"])
    corr = np.corrcoef(r)
    assert seed_correlation(r) == pytest.approx((corr.sum() - 3) / 6)


def test_a_collapsed_seed_counts_in_every_seed_mean():
    # One good seed and one constant one: the correlations and distances used to average
    # the good seed alone (NaN dropped) beside an AUC that averaged both.
    draw = _draw(3)
    good = draw["rewards"]["a"][0]
    p = len(good) // 2
    draw["rewards"]["collapsed"] = np.stack([good, np.zeros_like(good)])
    draw["thresholds"]["collapsed"] = np.zeros(2)
    per_seed = run_metrics(draw["rewards"]["collapsed"], draw["true"], np.zeros(2))
    dist = pair_distances(np.zeros(p), np.zeros(p), draw["true"][:p], draw["true"][p:])
    assert per_seed["pearson"][1] == per_seed["spearman"][1] == 0.0
    assert per_seed["starc_a"][1] == 0.5
    assert dist["starc_a"] == pytest.approx(0.5) and dist["epic"] == pytest.approx(0.5)
    assert per_seed["starc_b"][1] == 0.5 and dist["starc_b"] == pytest.approx(0.5)
    assert seed_correlation(draw["rewards"]["collapsed"]) == 0.0
    three = np.stack([good, 2 * good + 1, np.zeros_like(good)])
    assert seed_correlation(three) == pytest.approx(1 / 3)  # pairs: 1, 0, 0
    summary = draw_summary(draw, ["collapsed"])["collapsed"]
    for k in ("pearson", "starc_a", "roc_auc"):
        assert summary[k] == pytest.approx(np.mean(per_seed[k])), k


def test_paired_differences_are_zero_for_a_copy_and_detect_a_worse_method():
    draws = [_draw(1), _draw(2)]
    out = paired_differences(draws, ["a", "same", "noisy"], ["a", "noisy"], n_resamples=200)
    assert out["noisy"]["a"]["pearson"]["diff"] == -out["a"]["noisy"]["pearson"]["diff"]
    out = out["a"]
    for k, v in out["same"].items():
        assert v["diff"] == 0.0 and v["low"] == 0.0 and v["high"] == 0.0, k
    worse = out["noisy"]
    assert worse["pearson"]["high"] < 0 and worse["roc_auc"]["high"] < 0
    assert worse["starc_a"]["low"] > 0  # a distance: higher is worse
    assert worse["pearson"]["low"] <= worse["pearson"]["diff"] <= worse["pearson"]["high"]
    summary = [draw_summary(d, ["a", "noisy"]) for d in draws]
    mean_diff = np.mean([s["noisy"]["pearson"] - s["a"]["pearson"] for s in summary])
    assert worse["pearson"]["diff"] == pytest.approx(mean_diff)
    # Deterministic for a seed.
    again = paired_differences(draws, ["a", "same", "noisy"], ["a"], n_resamples=200)
    assert again["a"] == out
