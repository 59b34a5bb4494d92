"""The IRL half of the study as stages: demonstrations, IRL over seeds, evaluation.

``experiments/irl.py`` and :func:`~jaxirl.pipeline.study.run_study` both call
:func:`run_demos` and :func:`run_irl`; the study also runs :func:`run_evaluate`.
Each takes its settings and an output folder; with several processes all of them
call it (each feeds its share of every batch) and only process 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
from jax.sharding import Mesh

from jaxirl import parallel
from jaxirl.irl.demos import DemoConfig, Generator, build_demos, save_demos
from jaxirl.irl.pairs import demo_pairs
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
from jaxirl.irl.train import (
    IRLResult,
    IRLTrainConfig,
    evaluate_epoch,
    init_state,
    pair_rewards,
    train_irl,
)
from jaxirl.models.hf_io import load_pretrained, load_tokenizer
from jaxirl.models.mixed_precision import parse_dtype

# Files run_irl writes into its folder besides train_irl's own (checkpoints, metrics, models).
IRL_REWARD_FILES = ("test_rewards.npy", "train_rewards.npy", "epoch0.json")


@dataclasses.dataclass(frozen=True)
class DemosStageConfig:
    """What the demonstrations are generated from.

    Attributes:
      expert_model: HF folder of the RLHF policy (the expert).
      base_model: HF folder of its base model.
      demos: generation, scoring and split settings.
      dtype: compute dtype of both generators' matmuls.
    """

    expert_model: str
    base_model: str
    demos: DemoConfig = DemoConfig()
    dtype: str = "float32"


def run_demos(config: DemosStageConfig, prompts: Sequence[str], out_dir: str | pathlib.Path,
              progress: bool = True, mesh: Mesh | None = None,
              test_prompts: Sequence[str] | None = None) -> datasets.DatasetDict:
    """Expert and base continuations of ``prompts``, scored and split (``test_prompts`` held
    out; None: a seeded share); saved to ``out_dir``."""
    dtype = parse_dtype(config.dtype)

    def generator(folder: str) -> Generator:
        return Generator(*load_pretrained(folder, dtype), load_tokenizer(folder))

    # The expert loads first, then the base (the order the study has always used).
    expert = generator(config.expert_model)
    data = build_demos(prompts, expert, generator(config.base_model), config.demos,
                       progress=progress, mesh=mesh, test_prompts=test_prompts)
    if parallel.is_main_process():
        save_demos(data, out_dir)
    parallel.sync("demos saved")
    return data


@dataclasses.dataclass(frozen=True)
class IRLStageConfig:
    """The learned reward's architecture and its training.

    Attributes:
      reward_model: the reward model (its ``base_model`` is the backbone folder).
      train: loss, optimizer, epochs and seeds; ``train.seed`` also seeds the heads.
      dtype: compute dtype of the reward model's matmuls.
      remat: recompute each trained block's activations in the backward pass.
    """

    reward_model: RewardModelConfig
    train: IRLTrainConfig
    dtype: str = "float32"
    remat: bool = False


@dataclasses.dataclass(frozen=True)
class IRLStageResult:
    """What :func:`run_irl` returns: the output files, the training result, the pair counts."""

    outputs: dict[str, str]
    result: IRLResult
    train_pairs: int
    test_pairs: int


def run_irl(config: IRLStageConfig, demos: datasets.DatasetDict, workdir: str | pathlib.Path,
            resume: bool = False, progress: bool = True,
            mesh: Mesh | None = None) -> IRLStageResult:
    """Trains the reward models on ``demos`` in ``workdir``; resumes from its checkpoint.

    Besides :func:`~jaxirl.irl.train.train_irl`'s files it writes the held-out and the
    training texts' rewards of every seed (``test_rewards.npy`` [S, 2P], ``train_rewards.npy``;
    the evaluation fits its thresholds on the latter only) and the untrained models'
    held-out metrics (``epoch0.json``, the learning curves' epoch 0).
    """
    workdir = pathlib.Path(workdir)
    model = init_reward_model(config.reward_model, seed=config.train.seed,
                              dtype=parse_dtype(config.dtype), remat=config.remat)
    train_pairs = demo_pairs(model, demos["train"], mesh=mesh)
    test_pairs = demo_pairs(model, demos["test"], mesh=mesh)
    epoch0, _ = evaluate_epoch(model, init_state(model, config.train).params, test_pairs,
                               config.train, train_pairs)
    result = train_irl(model, train_pairs, test_pairs, config.train, workdir=workdir,
                       resume=resume, progress=progress, mesh=mesh)
    train_rewards = pair_rewards(model, result.state.params, train_pairs,
                                 config.train.eval_batch_size, mesh)
    if parallel.is_main_process():
        np.save(workdir / "test_rewards.npy", result.test_rewards)
        np.save(workdir / "train_rewards.npy", train_rewards)
        (workdir / "epoch0.json").write_text(json.dumps(epoch0) + "\n")
    parallel.sync("irl rewards saved")
    outputs = {"metrics": str(workdir / "irl_metrics.json"),
               "test_rewards": str(workdir / "test_rewards.npy"),
               "train_rewards": str(workdir / "train_rewards.npy"),
               "epoch0": str(workdir / "epoch0.json"),
               "reward_models": str(workdir / "reward_models")}
    return IRLStageResult(outputs, result, len(train_pairs), len(test_pairs))


def run_evaluate(irl_outputs: dict[str, str], demos_path: str, expert_model: str,
                 base_model: str, rlhf_folder: pathlib.Path, max_prompt_tokens: int,
                 workdir: str | pathlib.Path) -> dict[str, Any]:
    """Scorecards, seed agreement, distances and the white-box reward: ``evaluation.json``."""
    from jaxirl.pipeline.methods import evaluation_extras
    from jaxirl.pipeline.report import summarize_irl

    workdir = pathlib.Path(workdir)
    summary = summarize_irl(irl_outputs["metrics"], demos_path, irl_outputs["test_rewards"],
                            irl_outputs["train_rewards"], irl_outputs["epoch0"])
    summary.update(evaluation_extras(summary, np.load(irl_outputs["test_rewards"]), demos_path,
                                     expert_model, base_model, rlhf_folder, max_prompt_tokens))
    if parallel.is_main_process():
        (workdir / "evaluation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"evaluation": str(workdir / "evaluation.json")}


__all__ = ["IRL_REWARD_FILES", "DemosStageConfig", "IRLStageConfig", "IRLStageResult",
           "run_demos", "run_evaluate", "run_irl"]
