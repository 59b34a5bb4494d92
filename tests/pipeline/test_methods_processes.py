"""The methods stage gets the study's mesh down to every IRL training, and refuses a job of
several processes up front (its writes are not guarded to process 0)."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxirl.errors import ConfigError
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.pipeline import methods_stage
from jaxirl.pipeline.methods import MethodsConfig, MethodSpec
from jaxirl.pipeline.study import PRESETS, check_study_inputs

LOGISTIC = MethodSpec("logistic", IRLLossConfig("logistic"))
MESH = object()  # stands for the study's mesh


def _pairs(n: int) -> dict:
    return {"prompt": [f"p{i % 3}" for i in range(n)],
            "expert_response": [f" good {i}" for i in range(n)],
            "base_response": [f" bad {i}" for i in range(n)],
            "expert_true_reward": list(np.linspace(0.5, 2.0, n)),
            "base_true_reward": list(np.linspace(-2.0, -0.5, n))}


def test_run_draws_and_deployment_train_on_the_given_mesh(tmp_path, monkeypatch):
    got = []
    rng = np.random.default_rng(0)
    monkeypatch.setattr(methods_stage, "final_kl_coef", lambda folder: 0.1)

    def draw_demos(study, d, paths, folder, mesh=None):
        got.append(("demos", mesh))
        return d

    def rewards(*args, mesh=None, **kwargs):
        got.append(("irl_rewards", mesh))
        return {"train": rng.normal(size=(2, 12)), "test": rng.normal(size=(2, 8)),
                "seconds": 0.0}

    def models(*args, mesh=None, **kwargs):
        got.append(("irl_reward_models", mesh))
        return [tmp_path / "m0", tmp_path / "m1"]

    monkeypatch.setattr(methods_stage, "_draw_demos", draw_demos)
    monkeypatch.setattr(methods_stage, "load_demos", lambda d: {"train": _pairs(6),
                                                                "test": _pairs(4)})
    monkeypatch.setattr(methods_stage, "irl_rewards", rewards)
    monkeypatch.setattr(methods_stage, "irl_reward_models", models)
    monkeypatch.setattr(methods_stage, "log_ratio_for_draw", lambda *a: {
        "train": rng.normal(size=(1, 12)), "test": rng.normal(size=(1, 8))})
    monkeypatch.setattr(methods_stage, "bayes_for_draw", lambda *a: (
        {"train": rng.normal(size=(1, 12)), "test": rng.normal(size=(1, 8))}, {}))
    monkeypatch.setattr(methods_stage, "word_count_probes", lambda *a, **k: {})
    study = dataclasses.replace(PRESETS["methods"], methods=None)
    config = MethodsConfig(draws=(0, 1), methods=(LOGISTIC,))
    paths = {"rlhf_folder": "rlhf", "expert_model": "e", "base_model": "b"}
    methods_stage.run_draws(study, config, paths, tmp_path, mesh=MESH)
    assert got == [("demos", MESH), ("irl_rewards", MESH)] * 2
    got.clear()
    methods_stage.deployable_reward(study, config, paths, tmp_path, "logistic", mesh=MESH)
    assert got == [("demos", MESH), ("irl_reward_models", MESH)]


def test_several_processes_are_refused_before_anything_runs(tmp_path, monkeypatch):
    methods = PRESETS["methods"]
    check_study_inputs(methods)  # one process: fine
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    message = r"the methods stage .* runs on one process, but this job has 2 \(--num_processes\)"
    with pytest.raises(ConfigError, match=message):
        check_study_inputs(methods)
    with pytest.raises(ConfigError, match=message):
        check_study_inputs(methods, stages={"report"})  # the methods stage runs before it
    with pytest.raises(ConfigError, match=message):
        methods_stage.run_methods_stage(methods, methods.methods, {}, tmp_path)
    # Stages before it, a study without it, or one that stops before it run as before.
    check_study_inputs(methods, stages={"irl", "evaluate"})
    check_study_inputs(PRESETS["default"])
    check_study_inputs(methods, until="evaluate")
    assert not list(tmp_path.iterdir())
