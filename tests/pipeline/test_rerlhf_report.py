"""The re-RLHF comparison over PPO seeds, from run folders written by hand."""

import dataclasses
import json

import matplotlib.axes
import numpy as np
import pytest

from jaxirl.pipeline.report import PLOTS_DIR, _rlhf_section, rerlhf_comparison
from jaxirl.pipeline.stages import StageResult
from jaxirl.pipeline.study import PRESETS, extra_ppo_seeds

PROMPTS = 6


def _evaluation(per_prompt):
    tox = np.repeat(per_prompt, 2)  # 2 samples per prompt
    return {"mean_toxicity": float(tox.mean()), "toxic_fraction": float(np.mean(tox > 0.5)),
            "toxicity_se": 0.01, "num_prompts": PROMPTS, "samples_per_prompt": 2,
            "prompt_toxicity": list(per_prompt), "toxicity": tox.tolist()}


def _run(folder, before, after, seed):
    folder.mkdir(parents=True)
    if before is not None:
        (folder / "eval_before.json").write_text(json.dumps(_evaluation(before)))
    (folder / "eval_after.json").write_text(json.dumps(_evaluation(after)))
    (folder / "summary.json").write_text(json.dumps({"final_kl": 3.0 + seed % 10}))
    rows = [{"step": i + 1, "score": 0.1 * i, "toxicity": 0.5 - 0.05 * i, "kl": 0.5 * i,
             "kl_controller_input": 2.0 * i + seed % 10, "kl_coef": 0.05} for i in range(4)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_shares_per_seed_and_pooled(tmp_path):
    rng = np.random.default_rng(0)
    seeds = [1000, 1001, 1002]
    base = {s: rng.uniform(0.4, 0.6, PROMPTS) for s in seeds}
    true = {s: base[s] - rng.uniform(0.2, 0.3, PROMPTS) for s in seeds}
    learned = {s: base[s] - rng.uniform(0.1, 0.3, PROMPTS) for s in seeds}
    _run(tmp_path / "rlhf", base[1000], true[1000], 1000)
    _run(tmp_path / "rlhf_learned", base[1000], learned[1000], 1000)
    for s in seeds[1:]:
        _run(tmp_path / "rlhf_seeds" / f"seed_{s}", base[s], true[s], s)
        _run(tmp_path / "rlhf_learned_seeds" / f"seed_{s}", base[s], learned[s], s)
    runs = {"runs": {str(s): "elsewhere" for s in seeds[1:]}}
    results = {name: StageResult(name, tmp_path / name, runs if "seeds" in name else {}, 1.0, False)
               for name in ("rlhf", "rlhf_learned", "rlhf_seeds", "rlhf_learned_seeds")}
    comp = rerlhf_comparison(results, 1000)
    assert comp["seeds"] == seeds and comp["num_prompts"] == PROMPTS
    for row in comp["per_seed"]:
        s = row["seed"]
        expected = (base[s].mean() - learned[s].mean()) / (base[s].mean() - true[s].mean())
        assert row["share"]["share"] == pytest.approx(expected)
        assert row["share"]["low"] <= row["share"]["share"] <= row["share"]["high"]
        assert row["kl_true"] == 3.0 + s % 10
    pooled = [np.mean([d[s] for s in seeds], axis=0) for d in (base, true, learned)]
    assert comp["pooled"]["share"] == pytest.approx(
        (pooled[0].mean() - pooled[2].mean()) / (pooled[0].mean() - pooled[1].mean()))
    # The pooled interval resamples the PPO seeds as well as the prompts.
    from jaxirl.irl.rlhf_comparison import toxicity_reduction_share_seeds

    both = toxicity_reduction_share_seeds(*(np.stack([d[s] for s in seeds])
                                            for d in (base, true, learned)))
    assert (comp["pooled"]["low"], comp["pooled"]["high"]) == (both.low, both.high)
    # The pooled toxicity's standard error is over prompts of the seeds' mean (the seeds
    # share the prompts), not the seeds' errors pooled as if independent.
    assert comp["pooled_toxicity"]["base"]["se"] == pytest.approx(
        pooled[0].std(ddof=1) / np.sqrt(PROMPTS))
    # So is the toxic share's (2 equal samples per prompt: each prompt is 0 or 1 per seed).
    fraction = np.mean([base[s] > 0.5 for s in seeds], axis=0)
    assert comp["pooled_toxicity"]["base"]["fraction"] == pytest.approx(fraction.mean())
    assert comp["pooled_toxicity"]["base"]["fraction_se"] == pytest.approx(
        fraction.std(ddof=1) / np.sqrt(PROMPTS))
    # The controller's k3 estimate: the last 3 iterations' mean (2·(1+2+3)/3 + seed % 10).
    assert [r["controller_kl_true"] for r in comp["per_seed"]] == [4.0, 5.0, 6.0]
    assert len(comp["metrics"]["learned reward"]) == 3
    (tmp_path / PLOTS_DIR).mkdir()
    config = dataclasses.replace(PRESETS["default"])
    drawn = {}
    real_errorbar = matplotlib.axes.Axes.errorbar

    def errorbar(self, x, y, yerr=None, **kw):
        drawn.setdefault("yerr", []).append(np.asarray(yerr))
        return real_errorbar(self, x, y, yerr=yerr, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.axes.Axes, "errorbar", errorbar)
        lines = "\n".join(_rlhf_section(comp, config, tmp_path))
    # The plot's bars are the pooled 95% intervals over prompts, for the share too.
    mean_bars, fraction_bars = drawn["yerr"]
    for i, k in enumerate(("base", "true", "learned")):
        assert mean_bars[i] == pytest.approx(1.96 * comp["pooled_toxicity"][k]["se"])
        assert fraction_bars[i] == pytest.approx(1.96 * comp["pooled_toxicity"][k]["fraction_se"])
    assert "| pooled |" in lines and "PPO seeds 1000, 1001, 1002" in lines
    assert "controller's KL (k3) true / learned" in lines and "| 4.0 / 4.0 |" in lines
    assert (tmp_path / PLOTS_DIR / "rlhf_curves.png").stat().st_size > 5000


def test_extra_ppo_seeds_follow_the_preset_seed():
    assert extra_ppo_seeds(PRESETS["default"]) == [1001, 1002]
    assert extra_ppo_seeds(PRESETS["smoke"]) == []


def test_rlhf_seeds_must_be_positive():
    from jaxirl.errors import ConfigError
    from jaxirl.pipeline.study import StudyConfig

    with pytest.raises(ConfigError, match="StudyConfig.rlhf_seeds must be a positive integer, got 0"):
        StudyConfig(rlhf_seeds=0)



def test_study_config_checks_the_learned_reward_seed_and_the_draws_up_front():
    import dataclasses

    from jaxirl.errors import ConfigError
    from jaxirl.irl.demos import DemoConfig
    from jaxirl.pipeline.methods import MethodsConfig
    from jaxirl.pipeline.study import StudyConfig

    with pytest.raises(ConfigError, match=r"learned_reward_seed must lie in \[0, 5\).*got 5"):
        StudyConfig(learned_reward_seed=5)
    # Draw 3 would regenerate the study's own demonstrations (demos.seed = 3).
    with pytest.raises(ConfigError, match="MethodsConfig.draws holds both 0"):
        StudyConfig(demos=DemoConfig(seed=3), methods=MethodsConfig(draws=(0, 3)))
    StudyConfig(demos=DemoConfig(seed=3), methods=MethodsConfig(draws=(0, 1)))
    assert dataclasses.replace(StudyConfig(), learned_reward_seed=4).learned_reward_seed == 4


def test_one_prompt_gives_no_interval_and_an_inconclusive_verdict():
    from jaxirl.irl.rlhf_comparison import toxicity_reduction_share_seeds
    from jaxirl.pipeline.report import _prompt_se
    from jaxirl.report import verdicts

    share = toxicity_reduction_share_seeds([[0.5]], [[0.1]], [[0.2]])
    assert share.share == pytest.approx(0.75)
    assert np.isnan(share.low) and np.isnan(share.high)
    assert verdicts.rerlhf({"share": share.share, "low": share.low, "high": share.high}
                           ).startswith("Inconclusive")
    assert np.isnan(_prompt_se(np.array([0.3])))
    assert _prompt_se(np.array([0.1, 0.3])) == pytest.approx(0.1)


def test_per_seed_toxicity_cells_show_the_95_percent_half_width(tmp_path, monkeypatch):
    from jaxirl.pipeline import report

    base = np.array([0.4, 0.6] * (PROMPTS // 2))  # mean 0.5
    _run(tmp_path / "rlhf", base, base - 0.3, 1000)
    _run(tmp_path / "rlhf_learned", base, base - 0.2, 1000)
    results = {name: StageResult(name, tmp_path / name, {}, 1.0, False)
               for name in ("rlhf", "rlhf_learned")}
    comp = rerlhf_comparison(results, 1000)
    row = comp["per_seed"][0]
    row["base"]["se"], row["true"]["se"], row["learned"]["se"] = 0.05, 0.02, 0.1
    monkeypatch.setattr(report.plots, "rlhf_curves", lambda *a, **k: None)
    monkeypatch.setattr(report.plots, "toxicity_bars", lambda *a, **k: None)
    lines = "\n".join(_rlhf_section(comp, dataclasses.replace(PRESETS["default"]), tmp_path))
    seed_row = next(x for x in lines.splitlines() if x.startswith("| 1000 |"))
    # ± 1.96 · se: 0.098, 0.0392 and 0.196.
    for cell in ("0.500 ± 0.098", "0.200 ± 0.039", "0.300 ± 0.196"):
        assert cell in seed_row


def test_a_sample_at_exactly_half_is_not_toxic():
    from jaxirl.pipeline.report import _prompt_toxic_fraction

    evaluation = {"num_prompts": 2, "toxicity": [0.5, 0.7, 0.2, 0.5]}
    np.testing.assert_array_equal(_prompt_toxic_fraction(evaluation), [0.5, 0.0])


def test_the_report_counts_the_evaluation_prompts_that_gave_irl_training_texts(
        tmp_path, monkeypatch):
    """The demonstrations split the prompts apart from PPO: the report says how many of the
    prompts held out from PPO were IRL training prompts (found by the twenty-second
    session's report audit: 52 of 61 on the default study, unstated)."""
    from jaxirl.irl import demos as irl_demos
    from jaxirl.pipeline import report

    prompts = [f"prompt {i}" for i in range(PROMPTS)]
    base = np.full(PROMPTS, 0.5)
    for name, after in (("rlhf", base - 0.3), ("rlhf_learned", base - 0.2)):
        _run(tmp_path / name, base, after, 1000)
        evaluation = json.loads((tmp_path / name / "eval_after.json").read_text())
        evaluation["prompts"] = [p for p in prompts for _ in range(2)]  # one per sample
        (tmp_path / name / "eval_after.json").write_text(json.dumps(evaluation))
    demos = {"train": {"prompt": ["prompt 0", "prompt 3", "prompt 3", "other"]},
             "test": {"prompt": ["prompt 1"]}}
    monkeypatch.setattr(irl_demos, "load_demos",
                        lambda path: demos if path == tmp_path / "demos" else None)
    results = {name: StageResult(name, tmp_path / name, {}, 1.0, False)
               for name in ("rlhf", "rlhf_learned")}
    comp = rerlhf_comparison(results, 1000)
    assert comp["eval_prompts"] == sorted(prompts)
    assert report.irl_training_overlap(comp["eval_prompts"], tmp_path / "demos") == 2
    comp["irl_overlap"] = 2
    monkeypatch.setattr(report.plots, "rlhf_curves", lambda *a, **k: None)
    monkeypatch.setattr(report.plots, "toxicity_bars", lambda *a, **k: None)
    text = " ".join(_rlhf_section(comp, PRESETS["default"], tmp_path))
    assert f"each of {PROMPTS} prompts held out from PPO" in text
    assert "; 2 of them also gave IRL training demonstrations" in text
    del comp["irl_overlap"]
    assert "IRL training demonstrations" not in " ".join(
        _rlhf_section(comp, PRESETS["default"], tmp_path))
