"""The RLHF stage: load model and prompts, evaluate, train with PPO, evaluate, export.

``experiments/rlhf.py`` turns flags into an :class:`RLHFRunConfig`; the study
builds one directly; both call :func:`run_rlhf`. The reward spec (``profanity``,
``roberta[:PATH]``, ``learned:PATH``, ``ensemble:PATH``, ``linear:PATH``) is resolved here
(:mod:`jaxirl.pipeline.reward_specs`) and handed to :mod:`jaxirl.ppo` as a plain
callable. Outputs under ``workdir``: ``checkpoints/`` (Orbax),
``metrics.jsonl`` (one line per PPO iteration, streamed), ``summary.json`` (toxicity
before/after, KL, timings) and ``policy/`` (an HF folder of the trained policy with
``generation_config.json`` and a model card).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxirl import parallel, runs
from jaxirl.data.prompts import PromptDataConfig, load_prompts
from jaxirl.data.tokenization import tokenize_prompts
from jaxirl.errors import ConfigError
from jaxirl.generation.text import evaluate_toxicity
from jaxirl.models.gpt_neox import ATTENTION_IMPLS
from jaxirl.models.hf_io import load_pretrained, load_tokenizer
from jaxirl.models.mixed_precision import parse_dtype
from jaxirl.parallel import MeshConfig
from jaxirl.pipeline.reward_specs import built_for, check_spec_path, make_ppo_reward, make_scorer
from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.export import export_policy
from jaxirl.ppo.trainer import PPOTrainer, train

log = logging.getLogger(__name__)

# Top-level entries an RLHF run writes into its workdir (what overwrite may remove).
OUTPUTS = ("checkpoints", "metrics.jsonl", "eval_before.json", "eval_after.json", "summary.json",
           "policy", "tensorboard")
# Fields that do not change a run's results: a resumed run may differ in these.
# The mesh and remat change where and how a step runs, not what it computes (to float
# rounding), so a run may resume on another mesh.
_NOT_SETTINGS = ("mesh", "remat", "save_every")


@dataclasses.dataclass(frozen=True)
class RLHFRunConfig:
    """Everything one RLHF run needs besides the PPO hyperparameters.

    Attributes:
      model: HF folder or hub id of the base policy.
      prompts: prompt data (path, columns, split).
      reward: ``profanity`` | ``roberta[:PATH]`` | ``learned:PATH`` | ``ensemble:PATH`` |
        ``linear:PATH``.
      ppo: PPO hyperparameters.
      num_iterations: PPO iterations (rollout + update each).
      mesh: the device mesh (``data × fsdp``); the default is one device.
      remat: recompute each block's activations in the backward pass (long sequences).
      attention: attention kernel, ``auto`` (by backend) | ``rows`` | ``xla`` | ``cudnn``.
      save_every: checkpoint period in iterations.
      eval_prompts: held-out prompts sampled before and after training (0: skip).
      eval_samples_per_prompt: continuations sampled per evaluation prompt. One is the
        paper's; more shrink the sampling noise of the toxicity estimate when there
        are few held-out prompts.
      eval_new_tokens: new tokens per evaluation sample (None: ``ppo.max_new_tokens``).
      toxicity_scorer: the ground-truth scorer used for evaluation.
      export: write the trained policy as an HF folder ``workdir/policy``.
      dtype: compute dtype of the policy's matmuls, ``float32`` or ``bfloat16`` (parameters,
        optimizer state, log-probs and losses stay float32).
    """

    model: str
    prompts: PromptDataConfig
    reward: str = "profanity"
    ppo: PPOConfig = PPOConfig()
    num_iterations: int = 20
    mesh: MeshConfig = MeshConfig()
    remat: bool = False
    attention: str = "auto"
    save_every: int = 5
    eval_prompts: int = 200
    eval_samples_per_prompt: int = 1
    eval_new_tokens: int | None = None
    toxicity_scorer: str = "profanity"
    export: bool = True
    dtype: str = "float32"

    def __post_init__(self):
        for name, low in (("num_iterations", 1), ("save_every", 1), ("eval_prompts", 0),
                          ("eval_samples_per_prompt", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"RLHFRunConfig.{name} must be >= {low}, got "
                                  f"{getattr(self, name)}")
        if self.eval_new_tokens is not None and self.eval_new_tokens < 1:
            raise ConfigError(f"RLHFRunConfig.eval_new_tokens must be >= 1 or None, got "
                              f"{self.eval_new_tokens}")
        if self.attention not in ATTENTION_IMPLS:
            raise ConfigError(f"RLHFRunConfig.attention must be one of {', '.join(ATTENTION_IMPLS)}, "
                              f"got {self.attention!r}")
        parse_dtype(self.dtype)


def run_manifest(config: RLHFRunConfig) -> runs.Manifest:
    """What identifies an RLHF run: every result-changing setting and its inputs' content."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_SETTINGS}
    inputs = {"model": config.model, "dataset": config.prompts.path, "reward": config.reward,
              "toxicity_scorer": config.toxicity_scorer}
    return runs.Manifest.build("rlhf", settings, inputs)


def eval_settings(config: RLHFRunConfig, prompt_budget: int) -> dict[str, Any]:
    """Everything the evaluation before training depends on, as JSON values.

    The policy before training is the base model whatever the reward, so two runs with
    equal settings sample and score the same continuations (the value head, seeded
    apart, is not used).
    """
    settings = {"model": config.model, "prompts": dataclasses.asdict(config.prompts),
                "prompt_budget": prompt_budget, "seed": config.ppo.seed,
                "top_k": config.ppo.top_k,
                "new_tokens": config.eval_new_tokens or config.ppo.max_new_tokens,
                "eval_prompts": config.eval_prompts,
                "samples_per_prompt": config.eval_samples_per_prompt,
                "scorer": config.toxicity_scorer, "dtype": config.dtype,
                "attention": config.attention, "mesh": dataclasses.asdict(config.mesh)}
    return json.loads(json.dumps(settings))


def reusable_eval(folder: str | pathlib.Path | None, settings: dict[str, Any]) -> dict | None:
    """``folder/eval_before.json`` if it was computed with exactly ``settings``, else None.

    The copy names its source (``copied_from``).
    """
    if folder is None:
        return None
    before = _read_json(pathlib.Path(folder) / "eval_before.json")
    if before is None or before.get("settings") != settings:
        return None
    return {**before, "copied_from": str(folder)}


def check_spec_paths(config: RLHFRunConfig) -> None:
    """ConfigError (one line, naming the setting) for a reward or scorer whose folder is
    missing; nothing is loaded."""
    check_spec_path(config.reward, "RLHFRunConfig.reward")
    check_spec_path(config.toxicity_scorer, "RLHFRunConfig.toxicity_scorer")


def run_rlhf(config: RLHFRunConfig, workdir: str | pathlib.Path, resume: bool = False,
             progress: bool = True,
             on_step: Callable[[int, dict], None] | None = None,
             eval_before_from: str | pathlib.Path | None = None) -> dict[str, Any]:
    """Runs one RLHF run in ``workdir``; returns the summary also written to ``summary.json``.

    ``resume`` continues from the latest checkpoint in ``workdir``. With several
    processes, all of them run it (each feeds its share of every batch and checkpoints
    its shards); only process 0 writes the JSON files and the export.
    ``eval_before_from`` names another run's folder whose evaluation before training is
    copied instead of recomputed when its :func:`eval_settings` equal this run's (the
    study's learned-reward runs reuse the true-reward run of their PPO seed).
    """
    check_spec_paths(config)
    workdir = pathlib.Path(workdir)
    main = parallel.is_main_process()
    if main:
        workdir.mkdir(parents=True, exist_ok=True)
    parallel.sync("rlhf workdir")
    ppo = config.ppo
    mesh = parallel.make_mesh(config.mesh)
    # Before the model and data load: a missing or unfetchable reward fails at once.
    reward_fn = built_for("RLHFRunConfig.reward", config.reward, make_ppo_reward)
    scorer = built_for("RLHFRunConfig.toxicity_scorer", config.toxicity_scorer, make_scorer)
    lm, params = load_pretrained(config.model, dtype=parse_dtype(config.dtype), with_value_head=True,
                                 value_head_seed=ppo.seed)
    model = lm.clone(remat=config.remat, attention=config.attention)
    tokenizer = load_tokenizer(config.model)
    splits = load_prompts(config.prompts)
    budget = config.prompts.max_prompt_tokens
    if budget + ppo.max_new_tokens > model.config.max_position_embeddings:
        budget = model.config.max_position_embeddings - ppo.max_new_tokens
        log.warning("prompt budget lowered to %d tokens to fit the context", budget)
    if budget <= 0:
        raise ConfigError(f"PPOConfig.max_new_tokens {ppo.max_new_tokens} leaves no room for a "
                          f"prompt in the context of {model.config.max_position_embeddings} tokens")
    train_prompts = tokenize_prompts(splits.train, tokenizer, budget,
                                     pad_to_multiple_of=config.prompts.pad_to_multiple_of)
    if config.eval_prompts and not splits.test.prompts:
        raise ConfigError(f"eval_prompts is {config.eval_prompts} but the prompt data has no "
                          f"held-out prompts (test_fraction {config.prompts.test_fraction}); "
                          "set eval_prompts to 0 or test_fraction above 0")
    trainer = PPOTrainer(model, tokenizer, reward_fn, train_prompts, ppo, mesh,
                         toxicity_scorer=scorer)
    state = trainer.init_state(params)
    eval_new = config.eval_new_tokens or ppo.max_new_tokens
    eval_set = splits.test.prompts[: config.eval_prompts]
    lm_only = model.clone(with_value_head=False)

    def evaluate(p):
        if not eval_set:
            return None
        lm_params = parallel.place_params(mesh, {k: v for k, v in p.items() if k != "value_head"})
        return evaluate_toxicity(lm_only, lm_params, tokenizer, eval_set, scorer, eval_new,
                                 ppo.top_k, budget, seed=ppo.seed,
                                 samples_per_prompt=config.eval_samples_per_prompt,
                                 progress=progress and main and "eval sampling", mesh=mesh)

    before_path = workdir / "eval_before.json"
    before = _read_json(before_path) if resume else None
    # A resumed run re-evaluates when the evaluation settings changed since.
    if before is None or (before.get("samples_per_prompt", 1) != config.eval_samples_per_prompt
                          or before.get("num_prompts") != len(eval_set)):
        settings = eval_settings(config, budget)
        before = reusable_eval(eval_before_from, settings)
        if before is None:
            before = evaluate(params)
            if before is not None:
                before["settings"] = settings
        else:
            log.info("evaluation before training copied from %s", eval_before_from)
        if main:
            runs.write_text_atomic(before_path, json.dumps(before) + "\n")
    start = time.time()
    state = train(trainer, state, config.num_iterations, checkpoint_dir=workdir / "checkpoints",
                  save_every=config.save_every, resume=resume,
                  log_path=workdir / "metrics.jsonl", progress=progress, on_step=on_step)
    train_seconds = time.time() - start
    after = evaluate(state.params)
    export_params = parallel.to_host(state.params)
    iterations = int(parallel.to_host(state.step))
    if not main:
        # Process 0 writes the summary; with a shared workdir the others read it back.
        parallel.sync("rlhf summary")
        return _read_json(workdir / "summary.json") or {}
    runs.write_text_atomic(workdir / "eval_after.json", json.dumps(after) + "\n")
    metrics = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines() if x]
    summary = {
        "model": config.model,
        "reward": config.reward,
        "iterations": iterations,
        "train_seconds": train_seconds,
        "toxicity_before": before and before["mean_toxicity"],
        "toxicity_after": after and after["mean_toxicity"],
        "toxic_fraction_before": before and before["toxic_fraction"],
        "toxic_fraction_after": after and after["toxic_fraction"],
        "toxicity_se_before": before and before.get("toxicity_se"),
        "toxicity_se_after": after and after.get("toxicity_se"),
        "eval_samples": after and after["num_prompts"] * after.get("samples_per_prompt", 1),
        "final_kl": float(np.mean([m["kl"] for m in metrics[-3:]])) if metrics else None,
        "max_kl": float(max(m["kl"] for m in metrics)) if metrics else None,
        "kl_target": ppo.target,
        "final_score": float(np.mean([m["score"] for m in metrics[-3:]])) if metrics else None,
    }
    if before and after and before["mean_toxicity"] > 0:
        summary["relative_toxicity_reduction"] = 1.0 - after["mean_toxicity"] / before["mean_toxicity"]
    if config.export:
        lm_params = {k: v for k, v in export_params.items() if k != "value_head"}
        staged = runs.staging_dir(workdir / "policy")
        export_policy(staged, model.config, lm_params, tokenizer, config.model,
                      config.reward, ppo, iterations, summary)
        runs.swap_in(staged, workdir / "policy")
        summary["policy"] = str(workdir / "policy")
        log.info("exported the policy to %s", workdir / "policy")
    runs.write_text_atomic(workdir / "summary.json", json.dumps(summary, indent=2) + "\n")
    parallel.sync("rlhf summary")
    return summary


def _read_json(path: pathlib.Path) -> dict | None:
    """A JSON file written by this module, or None when absent or unreadable (recomputed)."""
    try:
        blob = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return blob if isinstance(blob, dict) else None
