"""The method comparison's intervals, splits and choice of the best method, by hand."""
import itertools

import numpy as np
import pytest
from tiny_setup import write_tiny_model


def _draw(seed, p=60, prompts=12, noise=(0.5, 2.0)):
    rng = np.random.default_rng(seed)
    true = np.concatenate([rng.normal(1.0, 1.5, p), rng.normal(-0.5, 1.5, p)])
    rewards = {n: true + rng.normal(scale=s, size=(3, 2 * p)) for n, s in zip(("a", "noisy"), noise, strict=True)}
    return {"rewards": rewards, "true": true, "thresholds": {k: np.zeros(3) for k in rewards},
            "pair_prompts": np.repeat(np.arange(prompts), p // prompts)}


def test_interval_is_the_bootstrap_percentile_interval():
    from jaxirl.irl.method_comparison import _resampled_texts, _summary, paired_differences
    draws, methods = [_draw(1), _draw(2)], ["a", "noisy"]
    out = paired_differences(draws, methods, ["a"], n_resamples=100, seed=0)["a"]["noisy"]
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(100):
        index = [_resampled_texts(np.asarray(d["pair_prompts"]), rng) for d in draws]
        s = _summary(draws, methods, index)
        vals.append(s["pearson"][1] - s["pearson"][0])
    lo, hi = np.quantile(vals, [0.025, 0.975])
    assert out["pearson"]["low"] == pytest.approx(lo) and out["pearson"]["high"] == pytest.approx(hi)
    assert out["pearson"]["low"] < out["pearson"]["diff"] < out["pearson"]["high"]


def test_calibration_share_rounds_to_nearest():
    from jaxirl.pipeline.methods import _prompt_split
    held = _prompt_split([f"p{i % 10}" for i in range(30)], 0.18, seed=0)
    assert held.sum() == 6  # round(1.8) = 2 prompts of 3 pairs


def test_best_black_box_averages_the_draws():
    from jaxirl.pipeline.methods_stage import best_black_box
    comparison = {"per_draw": [{"a": {"pearson": 0.6}, "b": {"pearson": 0.5}},
                               {"a": {"pearson": 0.1}, "b": {"pearson": 0.5}}]}
    assert best_black_box(comparison, ["a", "b"]) == "b"


def test_bayes_reward_points_to_the_expert_and_zscores_on_the_pool(tmp_path):
    from jaxirl.irl.demos import demos_from_texts, load_demos, save_demos
    from jaxirl.irl.linear_reward import load_linear_reward
    from jaxirl.pipeline.methods import MethodsConfig, _prompt_split, bayes_for_draw
    words = ("the cat", "a dog", "the dog", "a cat", "the mat", "a mat")
    prompts = [f"{a} {b} {c}" for a, b, c in itertools.product(words, ("sat", "ran"),
                                                                ("here", "there", "now"))]
    expert = [p + " good nice" for p in prompts]
    base = [p + (" bad awful" if i % 3 else " good bad") for i, p in enumerate(prompts)]
    data = load_demos(save_demos(demos_from_texts(prompts, expert, base, scorer="profanity"),
                                 tmp_path / "demos"))
    config = MethodsConfig()
    rewards, _ = bayes_for_draw(str(write_tiny_model(tmp_path / "base")), data, config,
                                tmp_path / "bayes", draw=0)
    pt = len(data["train"])
    r = rewards["train"][0]
    assert np.mean(r[:pt] > r[pt:]) > 0.5
    phi = np.load(tmp_path / "bayes" / "features.npz")["train"]
    cal = _prompt_split(list(data["train"]["prompt"]), config.calibration_fraction, 0)
    lin = load_linear_reward(tmp_path / "bayes" / "posterior_mean")
    np.testing.assert_allclose(lin.feature_mean, phi[np.concatenate([~cal, ~cal])].mean(0),
                               rtol=1e-6, atol=1e-9)
