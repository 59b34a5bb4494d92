"""The methods stage's draws and deployment, with training, generation and PPO faked."""

import dataclasses
import types

import numpy as np
import pytest

from jaxirl.errors import ConfigError
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.pipeline import methods_stage
from jaxirl.pipeline.methods import MethodsConfig, MethodSpec
from jaxirl.pipeline.study import PRESETS

DISCRIMINATOR = MethodSpec("discriminator", IRLLossConfig("discriminator"))


def _pairs(n: int, shift: float) -> dict:
    return {"prompt": [f"p{i % 3}" for i in range(n)],
            "expert_response": [f" good {i}" for i in range(n)],
            "base_response": [f" bad {i}" for i in range(n)],
            "expert_true_reward": list(np.linspace(0.5, 2.0, n) + shift),
            "base_true_reward": list(np.linspace(-2.0, -0.5, n) + shift)}


def _fake_draws(monkeypatch) -> list[tuple[int, int]]:
    """Fakes every piece of a draw; returns the (draw, max_prompt_tokens) of each log ratio."""
    seen = []
    rng = np.random.default_rng(0)
    monkeypatch.setattr(methods_stage, "final_kl_coef", lambda folder: 0.1)
    monkeypatch.setattr(methods_stage, "_draw_demos", lambda study, d, paths, folder, mesh=None: d)
    monkeypatch.setattr(methods_stage, "load_demos",
                        lambda d: {"train": _pairs(6, d), "test": _pairs(4, d)})
    monkeypatch.setattr(methods_stage, "irl_rewards", lambda *a, **k: {
        "train": rng.normal(size=(2, 12)), "test": rng.normal(size=(2, 8)), "seconds": 0.0})

    def log_ratio(policy, base, data, beta, folder, max_prompt_tokens):
        seen.append((int(folder.name.removeprefix("draw_")), max_prompt_tokens))
        return {"train": rng.normal(size=(1, 12)), "test": rng.normal(size=(1, 8))}

    monkeypatch.setattr(methods_stage, "log_ratio_for_draw", log_ratio)
    monkeypatch.setattr(methods_stage, "bayes_for_draw", lambda *a: (
        {"train": rng.normal(size=(1, 12)), "test": rng.normal(size=(1, 8))}, {}))
    monkeypatch.setattr(methods_stage, "word_count_probes", lambda *a, **k: {})
    return seen


def test_log_ratio_truncates_prompts_as_the_demonstrations_did(tmp_path, monkeypatch):
    """The paper presets give PPO 896 prompt tokens but the demonstrations 64: the log
    ratio of a demonstration reads its prompt as the generators did."""
    study = PRESETS["paper70m"]
    assert (study.max_prompt_tokens, study.demos.max_prompt_tokens) == (896, 64)
    seen = _fake_draws(monkeypatch)
    config = MethodsConfig(draws=(0, 1), methods=(DISCRIMINATOR,))
    draws, _ = methods_stage.run_draws(study, config, {"rlhf_folder": "rlhf", "expert_model": "e",
                                                       "base_model": "b"}, tmp_path)
    assert seen == [(0, 64), (1, 64)] and len(draws) == 2


def test_a_regenerated_draw_uses_the_study_demo_settings_with_its_seed(tmp_path, monkeypatch):
    import jaxirl.models.hf_io
    import jaxirl.pipeline.study

    study = dataclasses.replace(PRESETS["paper70m"], demos_per_prompt=2)
    prompts = types.SimpleNamespace(train=types.SimpleNamespace(prompts=["a", "b"]),
                                    test=types.SimpleNamespace(prompts=["c"]))
    monkeypatch.setattr(jaxirl.pipeline.study, "load_prompts", lambda cfg: prompts)
    monkeypatch.setattr(jaxirl.models.hf_io, "load_pretrained", lambda p: (p, None))
    monkeypatch.setattr(jaxirl.models.hf_io, "load_tokenizer", lambda p: None)
    built = []
    monkeypatch.setattr(methods_stage, "build_demos",
                        lambda p, e, b, cfg, **k: built.append((p, cfg, k["test_prompts"])))
    monkeypatch.setattr(methods_stage, "save_demos", lambda data, out: None)
    paths = {"dataset": "data", "expert_model": "e", "base_model": "b", "demos": "study_demos"}
    assert methods_stage._draw_demos(study, 0, paths, tmp_path / "draw_0") == "study_demos"
    methods_stage._draw_demos(study, 3, paths, tmp_path / "draw_3")
    # Greedy paper demonstrations: each prompt once; the draw holds out its own share.
    assert built == [(["a", "b", "c"],
                      dataclasses.replace(study.demos, scorer=study.ground_truth, seed=3), None)]
    assert built[0][1].max_prompt_tokens == \
        methods_stage._draw_demo_config(study, 3).max_prompt_tokens
    # With demos_split="ppo" every draw holds out PPO's held-out prompts.
    methods_stage._draw_demos(dataclasses.replace(study, demos_split="ppo"), 4, paths,
                              tmp_path / "draw_4")
    assert built[-1][2] == ["c"]


@pytest.mark.parametrize("seed, draws, message", [
    (2, (0, 1, 2), "MethodsConfig.draws holds both 0 .* and 2, which regenerates them with "
                   "the same seed \\(demos.seed = 2\\)"),
    (0, (0, 1, 1), "MethodsConfig.draws repeats draw 1"),
    (0, (), "MethodsConfig.draws is empty"),
    (0, (0, -1), "MethodsConfig.draws must hold seeds >= 0, got -1")])
def test_draws_that_repeat_a_draw_are_an_error(tmp_path, monkeypatch, seed, draws, message):
    # The study without its own methods settings (a StudyConfig refuses such draws too).
    study = dataclasses.replace(PRESETS["methods"], methods=None,
                                demos=dataclasses.replace(PRESETS["methods"].demos, seed=seed))
    _fake_draws(monkeypatch)
    with pytest.raises(ConfigError, match=message):
        methods_stage.run_draws(study, MethodsConfig(draws=draws, methods=(DISCRIMINATOR,)),
                                {"rlhf_folder": "rlhf", "expert_model": "e", "base_model": "b"},
                                tmp_path)


def test_a_nonzero_demos_seed_outside_the_draws_is_fine(tmp_path, monkeypatch):
    study = dataclasses.replace(PRESETS["methods"], methods=MethodsConfig(draws=(0, 1)),
                                demos=dataclasses.replace(PRESETS["methods"].demos, seed=2))
    _fake_draws(monkeypatch)
    draws, _ = methods_stage.run_draws(study, MethodsConfig(draws=(0, 1), methods=(DISCRIMINATOR,)),
                                       {"rlhf_folder": "r", "expert_model": "e", "base_model": "b"},
                                       tmp_path)
    assert len(draws) == 2


@pytest.fixture
def deploy(tmp_path, monkeypatch):
    """deployable_reward with the method's training faked: returns a call(study, config, best)."""
    members = [tmp_path / "draw" / "reward_models" / f"seed_{s}" for s in range(2)]
    monkeypatch.setattr(methods_stage, "_draw_demos", lambda *a: "demos")
    monkeypatch.setattr(methods_stage, "load_demos", lambda p: {"train": None, "test": None})
    monkeypatch.setattr(methods_stage, "irl_reward_models", lambda spec, *a, **k: members)
    paths = {"base_model": "base", "learned_reward": "/study/rm/seed_0",
             "rlhf_learned_folder": "/study/rlhf_learned"}

    def call(study, config, best):
        return methods_stage.deployable_reward(study, config, paths, tmp_path, best)

    call.study_reward = ("learned:/study/rm/seed_0", "/study/rlhf_learned")
    call.own_seed_0 = (f"learned:{members[0]}", None)
    return call


def test_the_study_reward_is_reused_only_for_the_study_training(deploy):
    study = PRESETS["methods"]
    same = MethodsConfig(draws=(0, 1), methods=(DISCRIMINATOR,))
    assert deploy(study, same, "discriminator") == deploy.study_reward
    # Another name for the very same training is the same reward.
    alias = MethodsConfig(draws=(0,), methods=(dataclasses.replace(DISCRIMINATOR, name="d2"),))
    assert deploy(study, alias, "d2") == deploy.study_reward
    # The loss's name matches but not its training: the method's own seed 0.
    for spec in (dataclasses.replace(DISCRIMINATOR, learning_rate=1e-4),
                 dataclasses.replace(DISCRIMINATOR, epochs=9),
                 dataclasses.replace(DISCRIMINATOR,
                                     loss=IRLLossConfig("discriminator", reward_l2=0.1))):
        assert deploy(study, MethodsConfig(draws=(0,), methods=(spec,)),
                      "discriminator") == deploy.own_seed_0, spec
    # The methods train on the study's batch size and seeds, so those do not matter; the
    # study's precision (the methods train in float32) and the first draw do.
    other_batch = dataclasses.replace(study, irl=dataclasses.replace(study.irl, batch_size=4))
    assert deploy(other_batch, same, "discriminator") == deploy.study_reward
    assert deploy(dataclasses.replace(study, dtype="bfloat16"), same,
                  "discriminator") == deploy.own_seed_0
    assert deploy(study, MethodsConfig(draws=(1, 0), methods=(DISCRIMINATOR,)),
                  "discriminator") == deploy.own_seed_0
    # A spec named after the study's loss that trains another loss is not the study's.
    impostor = MethodSpec("discriminator", IRLLossConfig("max_margin"))
    assert deploy(study, MethodsConfig(draws=(0,), methods=(impostor,)),
                  "discriminator") == deploy.own_seed_0
