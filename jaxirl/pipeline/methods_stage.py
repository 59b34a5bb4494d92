"""The ``methods`` stage: the paired comparison over draws, then re-RLHF over PPO seeds.

Glue only: :mod:`jaxirl.pipeline.methods` computes every method's rewards, and
this module loops over the draws, compares, picks the best black-box reward and
runs PPO with several seeds for it, the true reward and the Bayesian posterior
mean. Outputs ``methods.json`` (and every cached piece) in the stage folder.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import numpy as np

from jaxirl.irl.demos import DemoConfig, Generator, build_demos, load_demos, save_demos
from jaxirl.irl.rlhf_comparison import toxicity_reduction_share_seeds
from jaxirl.irl.word_probes import word_count_probes
from jaxirl.models.mixed_precision import is_low_precision, parse_dtype
from jaxirl.pipeline.methods import (
    WHITE_BOX,
    MethodsConfig,
    MethodSpec,
    bayes_for_draw,
    ceiling_pearson,
    check_draws,
    check_one_process,
    compare,
    final_kl_coef,
    irl_reward_models,
    irl_rewards,
    log_ratio_for_draw,
    thresholds_from_training,
    write_json,
)

TARGETS = {"f1": 0.85, "pearson": 0.75, "starc_a": 0.35, "seed_correlation": 0.9}


def _draw_demo_config(study, draw: int) -> DemoConfig:
    """The settings that generate draw ``draw``'s demonstrations (draw 0: the study's own)."""
    config = dataclasses.replace(study.demos, scorer=study.ground_truth)
    return config if draw == 0 else dataclasses.replace(config, seed=draw)


def _draw_demos(study, draw: int, paths: dict, folder: pathlib.Path, mesh=None) -> str:
    """Demonstrations of one draw: the study's for draw 0, else regenerated with seed ``draw``
    (generation split over ``mesh``; None: one device)."""
    if draw == 0:
        return paths["demos"]
    out = folder / "demos"
    if (out / "dataset_dict.json").is_file():
        return str(out)
    from jaxirl.models.hf_io import load_pretrained, load_tokenizer
    from jaxirl.pipeline.study import demo_prompts

    prompts, held_out = demo_prompts(study, paths["dataset"])
    gens = [Generator(*load_pretrained(p), load_tokenizer(p))
            for p in (paths["expert_model"], paths["base_model"])]
    save_demos(build_demos(prompts, *gens, _draw_demo_config(study, draw), mesh=mesh,
                           test_prompts=held_out), out)
    return str(out)


def _seed_ensemble(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One run from S seeds: each z-scored with its TRAINING mean and std, then averaged
    (the formula the deployed ``ensemble:PATH`` reward rescales)."""
    from jaxirl.irl.ensemble_reward import member_statistics, zscored_mean

    means, stds = member_statistics(train)
    return zscored_mean(train, means, stds)[None], zscored_mean(test, means, stds)[None]


def run_draws(study, config: MethodsConfig, paths: dict, folder: pathlib.Path,
              progress: bool = False, mesh=None) -> tuple[list[dict], dict]:
    """Every method's held-out rewards and training thresholds for each draw (IRL and
    demonstrations on ``mesh``, the study's; None: one device)."""
    check_draws(study, config)
    beta = final_kl_coef(pathlib.Path(paths["rlhf_folder"]))
    reward_model = dataclasses.replace(study.reward_model, base_model=paths["base_model"])
    draws, records = [], {"beta": beta, "draws": {}}
    for d in config.draws:
        dfolder = folder / f"draw_{d}"
        start = time.time()
        data = load_demos(_draw_demos(study, d, paths, dfolder, mesh))
        tr, te = data["train"], data["test"]
        true_tr = np.concatenate([np.asarray(tr["expert_true_reward"]),
                                  np.asarray(tr["base_true_reward"])])
        true_te = np.concatenate([np.asarray(te["expert_true_reward"]),
                                  np.asarray(te["base_true_reward"])])
        runs, timings = {}, {}
        for spec in config.methods:
            out = irl_rewards(spec, reward_model, study.irl, data, dfolder / spec.name, progress,
                              mesh=mesh)
            runs[spec.name] = (out["train"], out["test"])
            timings[spec.name] = float(out["seconds"])
            runs[f"{spec.name}_ensemble"] = _seed_ensemble(out["train"], out["test"])
        # The prompts as the demonstrations' generators saw them (left-truncated to the
        # demos' budget, not the PPO prompts' one).
        lr = log_ratio_for_draw(paths["expert_model"], paths["base_model"], data, beta,
                                dfolder, _draw_demo_config(study, d).max_prompt_tokens)
        runs["log_ratio"] = (lr["train"], lr["test"])
        t0 = time.time()
        bayes, bayes_record = bayes_for_draw(paths["base_model"], data, config,
                                             dfolder / "bayes", d)
        timings["bayes"] = time.time() - t0
        runs["bayes"] = (bayes["train"], bayes["test"])
        draws.append({"rewards": {k: v[1] for k, v in runs.items()}, "true": true_te,
                      "thresholds": {k: thresholds_from_training(v[0], true_tr)
                                     for k, v in runs.items()},
                      "pair_prompts": np.unique(np.asarray(te["prompt"]), return_inverse=True)[1]})
        # Responses only, as the PPO reward saw them.
        probes = word_count_probes(list(tr["expert_response"]), list(tr["base_response"]),
                                   true_tr, list(te["expert_response"]) + list(te["base_response"]),
                                   true_te, seed=d)
        records["draws"][str(d)] = {"bayes": bayes_record, "seconds": timings,
                                    "word_probes": probes,
                                    "train_pairs": len(tr), "test_pairs": len(te),
                                    "total_seconds": time.time() - start}
    return draws, records


def best_black_box(comparison: dict, methods: list[str]) -> str:
    """The black-box method with the highest Pearson averaged over draws."""
    candidates = [m for m in methods if m not in WHITE_BOX]
    return max(candidates, key=lambda m: np.mean([d[m]["pearson"]
                                                  for d in comparison["per_draw"]]))


def deployable_reward(study, config: MethodsConfig, paths: dict, folder: pathlib.Path,
                      best: str, progress: bool = False, mesh=None) -> tuple[str, str | None]:
    """(PPO reward spec, existing seed-0 PPO run or None) of the comparison's best IRL method.

    ``<method>_ensemble`` deploys as ``ensemble:PATH`` over the method's seeds on the
    first draw, each z-scored by its training rewards as in the comparison, with the
    std of the study's learned reward on its training texts; a single
    method as its seed 0; when that method's training is the study's own IRL run (see
    :func:`trains_like_the_study`), the study's learned reward is reused with its PPO run.
    """
    from jaxirl.irl.ensemble_reward import save_reward_ensemble

    name = best.removesuffix("_ensemble")
    spec = next(m for m in config.methods if m.name == name)
    if name == best and paths.get("learned_reward") and trains_like_the_study(study, config,
                                                                               spec):
        return f"learned:{paths['learned_reward']}", paths.get("rlhf_learned_folder")
    draw = config.draws[0]
    method_folder = folder / f"draw_{draw}" / name
    reward_model = dataclasses.replace(study.reward_model, base_model=paths["base_model"])
    data = load_demos(_draw_demos(study, draw, paths, folder / f"draw_{draw}", mesh))
    members = irl_reward_models(spec, reward_model, study.irl, data, method_folder, progress,
                                mesh=mesh)
    if name == best:
        return f"learned:{members[0]}", None
    train = irl_rewards(spec, reward_model, study.irl, data, method_folder, mesh=mesh)["train"]
    # IRL leaves the scale free (max-margin's seeds have stds near 30 on the default, the
    # discriminator's near 2), and PPO's KL penalty weighs against it: the ensemble gets
    # the study's learned reward's std, so that the two re-RLHF runs differ in shape only.
    target = None
    if paths.get("learned_train_rewards"):
        target = float(np.std(np.load(paths["learned_train_rewards"])[study.learned_reward_seed]))
    out = save_reward_ensemble(folder / "deployed" / best, members, train, target_std=target,
                               extra={"method": name, "draw": draw})
    return f"ensemble:{out}", None


def trains_like_the_study(study, config: MethodsConfig, spec: MethodSpec) -> bool:
    """Whether ``spec`` on the first draw repeats the study's own IRL run.

    True when the first draw is the study's (draw 0) and the method's training settings
    (the study's IRL settings with the spec's loss, learning rate and epochs, in float32
    as :mod:`jaxirl.pipeline.methods` trains) are the study's IRL settings and precision:
    then the study's reward models are the method's seeds.
    """
    trained = dataclasses.replace(study.irl, loss=spec.loss, learning_rate=spec.learning_rate,
                                  epochs=spec.epochs)
    return (config.draws[0] == 0 and trained == study.irl
            and not is_low_precision(parse_dtype(study.dtype)))


def _ppo_runs(study, paths: dict, reward: str, seeds: int, folder: pathlib.Path,
              first: str | pathlib.Path | None, progress: bool,
              finished: dict[str, str] | None = None,
              eval_before: dict[int, str | pathlib.Path] | None = None) -> list[pathlib.Path]:
    """PPO folders for ``seeds`` seeds of one reward.

    ``first``: an existing seed-0 run; ``finished``: existing runs of this reward by PPO
    seed (the study's extra seeds: same settings, so the same numbers as a rerun);
    ``eval_before``: per PPO seed, a run whose evaluation before training a new run copies
    when its settings are equal (the true reward's run of that seed). New runs export no
    policy: only their evaluations are read.
    """
    from jaxirl.pipeline.study import _rlhf

    out = []
    for i in range(seeds):
        seed = study.ppo_config().seed + i
        if i == 0 and first is not None:
            out.append(pathlib.Path(first))  # the study's paths are strings
            continue
        if finished and str(seed) in finished:
            out.append(pathlib.Path(finished[str(seed)]))
            continue
        run = folder / f"seed_{i}"
        if not (run / "summary.json").is_file():
            _rlhf(study, paths["base_model"], paths["dataset"], reward, run, progress,
                  ppo_seed=seed, export=False,
                  eval_before_from=(eval_before or {}).get(seed))
        out.append(run)
    return out


def _prompt_toxicity(run: pathlib.Path, which: str) -> np.ndarray:
    return np.asarray(json.loads((run / f"eval_{which}.json").read_text())["prompt_toxicity"])


def rerlhf(study, config: MethodsConfig, paths: dict, rewards: dict[str, str],
           folder: pathlib.Path, progress: bool) -> dict[str, Any]:
    """Toxicity-drop shares of each learned reward against the true one, over PPO seeds.

    ``paths`` may hold ``first_<name>`` (a reward's existing seed-0 run, ``true`` for the
    true reward) and ``seed_runs`` ({reward spec: {PPO seed: run folder}}, the study's
    extra seeds), which are reused instead of trained again.
    """
    finished = paths.get("seed_runs", {})
    seed = study.ppo_config().seed
    runs = {"true": _ppo_runs(study, paths, study.ground_truth, config.rlhf_seeds,
                              folder / "true", paths.get("first_true"), progress,
                              finished.get(study.ground_truth))}
    # A learned reward's run starts from the policy the true reward's run of its seed
    # started from, so it copies that run's evaluation before training.
    before_from = {seed + i: run for i, run in enumerate(runs["true"])}
    for name, spec in rewards.items():
        runs[name] = _ppo_runs(study, paths, spec, config.rlhf_seeds if name != "bayes" else 1,
                               folder / name, paths.get(f"first_{name}"), progress,
                               finished.get(spec), before_from)
    base = np.stack([_prompt_toxicity(r, "before") for r in runs["true"]])
    true = np.stack([_prompt_toxicity(r, "after") for r in runs["true"]])
    out = {"runs": {k: [str(r) for r in v] for k, v in runs.items()},
           "rewards": rewards,
           "toxicity_after": {k: [float(_prompt_toxicity(r, "after").mean()) for r in v]
                              for k, v in runs.items()},
           "toxicity_before": [float(b.mean()) for b in base]}
    for name in rewards:
        learned = np.stack([_prompt_toxicity(r, "after") for r in runs[name]])
        out[name] = dataclasses.asdict(toxicity_reduction_share_seeds(base, true, learned))
    return out


def run_methods_stage(study, config: MethodsConfig, paths: dict, folder: pathlib.Path,
                      progress: bool = False, mesh=None) -> dict[str, Any]:
    """The whole comparison on ``mesh`` (the study's; None: one device); writes and returns
    ``methods.json``. One process only (:func:`~jaxirl.pipeline.methods.check_one_process`)."""
    check_one_process()
    start = time.time()
    draws, records = run_draws(study, config, paths, folder, progress, mesh)
    methods = list(draws[0]["rewards"])
    comparison = compare(draws, methods, ("max_margin", "discriminator"), config.bootstrap)
    best = best_black_box(comparison, methods)
    blob = {"config": dataclasses.asdict(config), **records, **comparison,
            "methods": methods, "best_black_box": best, "targets": TARGETS,
            "ceiling_pearson": ceiling_pearson(draws), "compare_seconds": time.time() - start}
    write_json(folder / "methods.json", blob)
    if config.rlhf_seeds > 0:
        linear = records["draws"][str(config.draws[0])]["bayes"]["linear_reward"]
        rewards = {"bayes": f"linear:{linear}"}
        if best != "bayes":
            rewards[best], first = deployable_reward(study, config, paths, folder, best,
                                                     progress, mesh)
            paths = {**paths, f"first_{best}": first}
        blob["rerlhf_reward"] = rewards[best]
        paths = {**paths, "first_true": paths.get("rlhf_folder")}
        blob["rerlhf"] = rerlhf(study, config, paths, rewards, folder / "rerlhf", progress)
    blob["total_seconds"] = time.time() - start
    write_json(folder / "methods.json", blob)
    return blob


__all__ = ["TARGETS", "best_black_box", "check_draws", "deployable_reward", "rerlhf",
           "run_draws", "run_methods_stage", "trains_like_the_study"]
