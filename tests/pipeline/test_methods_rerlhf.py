"""The methods stage's re-RLHF step, with PPO replaced by canned evaluations."""

import json
import pathlib

import numpy as np
import pytest

from jaxirl.pipeline import methods_stage
from jaxirl.pipeline.methods import MethodsConfig
from jaxirl.pipeline.study import PRESETS


def _write_eval(run: pathlib.Path, before: list[float], after: list[float]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    for which, tox in (("before", before), ("after", after)):
        (run / f"eval_{which}.json").write_text(json.dumps({"prompt_toxicity": tox}))
    (run / "summary.json").write_text("{}")


def test_rerlhf_reuses_the_study_runs_given_as_strings_and_trains_the_other_seeds(
        tmp_path, monkeypatch):
    """The study's seed-0 runs arrive as str paths (as study.py passes them); the other seeds
    train in the stage folder; the share is (before - learned) / (before - true)."""
    import jaxirl.pipeline.study as study_module

    before = [0.5, 0.4, 0.3, 0.2]
    drop = {"true": 0.2, "best": 0.1, "bayes": 0.05}
    trained = []

    def fake_rlhf(study, base_model, dataset, reward, run, progress, ppo_seed, **kwargs):
        name = pathlib.Path(run).parent.name
        trained.append((name, ppo_seed))
        _write_eval(pathlib.Path(run), before, [b - drop[name] for b in before])

    monkeypatch.setattr(study_module, "_rlhf", fake_rlhf)
    _write_eval(tmp_path / "study_rlhf", before, [b - drop["true"] for b in before])
    _write_eval(tmp_path / "study_rlhf_learned", before, [b - drop["best"] for b in before])
    paths = {"base_model": "base", "dataset": "data",
             "first_true": str(tmp_path / "study_rlhf"),
             "first_best": str(tmp_path / "study_rlhf_learned")}
    study = PRESETS["default"]
    out = methods_stage.rerlhf(study, MethodsConfig(rlhf_seeds=3), paths,
                               {"best": "learned:x", "bayes": "linear:y"},
                               tmp_path / "rerlhf", progress=False)
    seed = study.ppo_config().seed
    assert sorted(trained) == sorted([("true", seed + 1), ("true", seed + 2),
                                      ("best", seed + 1), ("best", seed + 2), ("bayes", seed)])
    assert out["runs"]["true"][0] == str(tmp_path / "study_rlhf")
    assert out["best"]["share"] == pytest.approx(0.5)
    assert out["bayes"]["share"] == pytest.approx(0.25)
    assert out["toxicity_before"] == [pytest.approx(np.mean(before))] * 3


def test_rerlhf_reuses_the_study_extra_seeds_and_copies_evaluations_before(tmp_path,
                                                                          monkeypatch):
    """The study's extra PPO seeds (``seed_runs``, by reward spec and seed) are not trained
    again; every new run of a learned reward copies the evaluation before training of the
    true reward's run of its seed, and exports no policy."""
    import jaxirl.pipeline.study as study_module

    before = [0.5, 0.4]
    study = PRESETS["default"]
    seed = study.ppo_config().seed
    trained = {}

    def fake_rlhf(study, base_model, dataset, reward, run, progress, ppo_seed, export=True,
                  eval_before_from=None):
        trained[(pathlib.Path(run).parent.name, ppo_seed)] = (reward, export, eval_before_from)
        _write_eval(pathlib.Path(run), before, [b - 0.1 for b in before])

    monkeypatch.setattr(study_module, "_rlhf", fake_rlhf)
    for name in ("study_rlhf", "lane_true_1", "lane_true_2", "lane_learned_1"):
        _write_eval(tmp_path / name, before, [b - 0.2 for b in before])
    paths = {"base_model": "base", "dataset": "data", "first_true": str(tmp_path / "study_rlhf"),
             "seed_runs": {study.ground_truth: {str(seed + 1): str(tmp_path / "lane_true_1"),
                                                str(seed + 2): str(tmp_path / "lane_true_2")},
                           "learned:x": {str(seed + 1): str(tmp_path / "lane_learned_1")}}}
    out = methods_stage.rerlhf(study, MethodsConfig(rlhf_seeds=3), paths,
                               {"best": "learned:x", "other": "learned:y", "bayes": "linear:z"},
                               tmp_path / "rerlhf", progress=False)
    assert out["runs"]["true"] == [str(tmp_path / n) for n in
                                   ("study_rlhf", "lane_true_1", "lane_true_2")]
    assert out["runs"]["best"][1] == str(tmp_path / "lane_learned_1")
    true_run = {seed: tmp_path / "study_rlhf", seed + 1: tmp_path / "lane_true_1",
                seed + 2: tmp_path / "lane_true_2"}
    assert trained == {
        ("best", seed): ("learned:x", False, true_run[seed]),
        ("best", seed + 2): ("learned:x", False, true_run[seed + 2]),
        **{("other", seed + i): ("learned:y", False, true_run[seed + i]) for i in range(3)},
        ("bayes", seed): ("linear:z", False, true_run[seed])}
    assert out["other"]["share"] == pytest.approx(0.5)


def test_the_best_method_deploys_as_its_seed_ensemble_or_the_study_reward(tmp_path,
                                                                           monkeypatch):
    """``<method>_ensemble`` becomes ``ensemble:PATH`` over that method's saved seeds on the
    first draw, z-scored by their training rewards; the study's own loss reuses its reward
    and PPO run; a single other method deploys its seed 0."""
    study = PRESETS["methods"]
    config = MethodsConfig(draws=(0,))
    members = [tmp_path / "draw_0" / "max_margin" / "reward_models" / f"seed_{s}"
               for s in range(5)]
    train = np.arange(20, dtype=float).reshape(5, 4) ** 1.5
    monkeypatch.setattr(methods_stage, "_draw_demos", lambda *a: "demos")
    monkeypatch.setattr(methods_stage, "load_demos", lambda p: {"train": None, "test": None})
    monkeypatch.setattr(methods_stage, "irl_reward_models", lambda spec, *a, **k: members)
    monkeypatch.setattr(methods_stage, "irl_rewards", lambda spec, *a, **k: {"train": train})
    study_train = np.random.default_rng(0).normal(size=(5, 4)) * [[1.0], [2.0], [3.0], [4.0], [5.0]]
    np.save(tmp_path / "train_rewards.npy", study_train)
    paths = {"base_model": "base", "learned_reward": "/study/rm/seed_0",
             "rlhf_learned_folder": "/study/rlhf_learned",
             "learned_train_rewards": str(tmp_path / "train_rewards.npy")}

    spec, first = methods_stage.deployable_reward(study, config, paths, tmp_path,
                                                  "max_margin_ensemble")
    kind, _, folder = spec.partition(":")
    assert kind == "ensemble" and first is None
    blob = json.loads((pathlib.Path(folder) / "reward_ensemble.json").read_text())
    assert blob["members_absolute"] == [str(m.resolve()) for m in members]
    np.testing.assert_allclose(blob["means"], train.mean(1))
    np.testing.assert_allclose(blob["stds"], train.std(1))
    assert blob["method"] == "max_margin" and blob["draw"] == 0
    # On the training texts the ensemble has the std of the study's learned reward (seed 0).
    from jaxirl.irl.ensemble_reward import RewardEnsemble

    ens = RewardEnsemble(members, blob["means"], blob["stds"], blob["scale"], blob["offset"])
    assert np.std(ens.combine(train)) == pytest.approx(np.std(study_train[0]))

    assert methods_stage.deployable_reward(study, config, paths, tmp_path, "discriminator") == (
        "learned:/study/rm/seed_0", "/study/rlhf_learned")
    assert methods_stage.deployable_reward(study, config, paths, tmp_path, "logistic") == (
        f"learned:{members[0]}", None)
