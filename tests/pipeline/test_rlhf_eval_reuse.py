"""A learned-reward run copies the evaluation before training of the true-reward run of
its PPO seed, and only when every evaluation setting is equal."""

import dataclasses
import json

import pytest
from tiny_setup import tiny_ppo_config, write_tiny_run_inputs

import jaxirl.pipeline.rlhf_stage as rlhf_stage
from jaxirl.data.prompts import PromptDataConfig


@pytest.fixture(scope="module")
def true_run(tmp_path_factory):
    root = write_tiny_run_inputs(tmp_path_factory.mktemp("reuse"))
    config = rlhf_stage.RLHFRunConfig(
        model=str(root / "model"), prompts=PromptDataConfig(path=str(root / "prompts.jsonl")),
        reward="profanity", ppo=tiny_ppo_config(), num_iterations=1, eval_prompts=4,
        eval_samples_per_prompt=2, export=False)
    rlhf_stage.run_rlhf(config, root / "true", progress=False)
    return root, config


def _count_evaluations(monkeypatch):
    calls = []
    real = rlhf_stage.evaluate_toxicity

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(rlhf_stage, "evaluate_toxicity", counted)
    return calls


def test_equal_settings_copy_the_evaluation(true_run, tmp_path, monkeypatch):
    root, config = true_run
    calls = _count_evaluations(monkeypatch)
    # The reward is not among the settings (the study's second run trains on a learned
    # one): the policy before training is the same base model.
    assert "reward" not in rlhf_stage.eval_settings(config, 64)
    summary = rlhf_stage.run_rlhf(config, tmp_path / "learned", progress=False,
                                  eval_before_from=root / "true")
    assert len(calls) == 1  # only the evaluation after training ran
    copied = json.loads((tmp_path / "learned" / "eval_before.json").read_text())
    original = json.loads((root / "true" / "eval_before.json").read_text())
    assert copied.pop("copied_from") == str(root / "true")
    assert copied == original and copied["settings"]["seed"] == config.ppo.seed
    assert summary["toxicity_before"] == original["mean_toxicity"]


def test_other_settings_evaluate_again_and_a_copy_equals_a_recomputation(
        true_run, tmp_path, monkeypatch):
    root, config = true_run
    calls = _count_evaluations(monkeypatch)
    other_seed = dataclasses.replace(config, ppo=dataclasses.replace(config.ppo, seed=7))
    rlhf_stage.run_rlhf(other_seed, tmp_path / "seed7", progress=False,
                        eval_before_from=root / "true")
    assert len(calls) == 2  # before and after: the seed changes the sampled continuations
    # Recomputed with the true run's settings and no folder to copy from, the evaluation
    # equals the copied one: copying saves the time and changes no number.
    calls.clear()
    rlhf_stage.run_rlhf(config, tmp_path / "again", progress=False)
    assert len(calls) == 2
    again = json.loads((tmp_path / "again" / "eval_before.json").read_text())
    assert again == json.loads((root / "true" / "eval_before.json").read_text())
