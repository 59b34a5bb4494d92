"""``report.md``: findings first, then each stage's numbers with baselines, intervals and plots.

Every headline number carries a 95% interval from a bootstrap over held-out prompts
and sits beside its baselines; paths are relative to the work folder (or to
``$JAXIRL_CACHE``); the run's configuration, commit and package versions close the
findings block.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
from typing import Any

import numpy as np

from jaxirl.irl.rlhf_comparison import toxicity_reduction_share, toxicity_reduction_share_seeds
from jaxirl.pipeline.stages import usable_cpus
from jaxirl.report import plots, verdicts
from jaxirl.report.interp_section import interp_findings, interp_section
from jaxirl.report.irl_summary import summarize_irl
from jaxirl.report.markdown import fmt, fmt_ci, image, paper_comparison, table
from jaxirl.report.methods import methods_report
from jaxirl.report.provenance import git_commit, package_versions, readable_path

PLOTS_DIR = "report_plots"
CONFIG_FILE = "study_config.json"
# Rows of the baseline table, in order; a scorecard absent from a run is left out. A
# log-ratio reward (log π_expert/π_base) plugs in as scorecard "log_ratio" through
# summarize_irl(extra_rewards=...).
REWARD_COLUMNS = {"learned": "learned reward", "ensemble": "seed ensemble",
                  "log_ratio": "log-ratio reward", "random": "random reward",
                  "majority": "majority class"}
HEADLINE = (("roc_auc", "ROC-AUC (no threshold)"),
            ("accuracy", "accuracy, threshold fit on training texts"),
            ("f1", "F1 (toxic class), same threshold"),
            ("pearson", "Pearson r"), ("spearman", "Spearman ρ"),
            ("pairwise_accuracy", "pairwise accuracy (expert vs base; the truth's ties "
                                  "dropped)"))


def _jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------ re-RLHF


def _rlhf_runs(results: dict, first_seed: int) -> tuple[dict[int, pathlib.Path], dict[int, pathlib.Path]]:
    """PPO seed -> run folder, for the true-reward and the learned-reward runs."""
    true_runs, learned_runs = {first_seed: results["rlhf"].folder}, {first_seed: results["rlhf_learned"].folder}
    for name, runs in (("rlhf_seeds", true_runs), ("rlhf_learned_seeds", learned_runs)):
        if name in results:
            for seed in results[name].outputs["runs"]:
                runs[int(seed)] = results[name].folder / f"seed_{seed}"
    return true_runs, dict(sorted(learned_runs.items()))


def _share_dict(base, true, learned) -> dict[str, float]:
    share = toxicity_reduction_share(base, true, learned)
    return {"share": share.share, "low": share.low, "high": share.high,
            "num_prompts": share.num_prompts}


def rerlhf_comparison(results: dict, first_seed: int) -> dict[str, Any]:
    """Per PPO seed and pooled: toxicity of base / true-reward / learned-reward policies and
    the learned reward's share of the reduction (paired bootstrap over prompts)."""
    true_runs, learned_runs = _rlhf_runs(results, first_seed)
    seeds = [s for s in learned_runs if s in true_runs]
    rows, per_prompt = [], {"base": [], "true": [], "learned": []}
    per_prompt_fraction = {k: [] for k in per_prompt}
    for seed in seeds:
        evals = {"base": _json(true_runs[seed] / "eval_before.json"),
                 "true": _json(true_runs[seed] / "eval_after.json"),
                 "learned": _json(learned_runs[seed] / "eval_after.json")}
        if not all(e and "prompt_toxicity" in e for e in evals.values()):
            continue  # run with eval_prompts=0
        for k, e in evals.items():
            per_prompt[k].append(np.asarray(e["prompt_toxicity"]))
            per_prompt_fraction[k].append(_prompt_toxic_fraction(e))
        rows.append({"seed": seed, **{k: {"mean": e["mean_toxicity"], "se": e["toxicity_se"],
                                          "fraction": e["toxic_fraction"],
                                          "fraction_se": _fraction_se(e)}
                                      for k, e in evals.items()},
                     "share": _share_dict(*(per_prompt[k][-1] for k in ("base", "true", "learned"))),
                     "kl_true": _json(true_runs[seed] / "summary.json").get("final_kl"),
                     "kl_learned": _json(learned_runs[seed] / "summary.json").get("final_kl"),
                     "controller_kl_true": _final_controller_kl(true_runs[seed]),
                     "controller_kl_learned": _final_controller_kl(learned_runs[seed])})
    out = {"seeds": [r["seed"] for r in rows], "per_seed": rows,
           "metrics": {"true reward": [_jsonl(true_runs[s] / "metrics.jsonl") for s in seeds],
                       "learned reward": [_jsonl(learned_runs[s] / "metrics.jsonl") for s in seeds]}}
    if rows:
        # Over the seeds' per-prompt means; the interval resamples the PPO seeds as well as
        # the prompts, so PPO's own seed-to-seed spread is inside it (prompts alone gave
        # intervals that a reader of the per-seed spread could not trust).
        share = toxicity_reduction_share_seeds(*(np.stack(per_prompt[k]) for k in
                                                 ("base", "true", "learned")))
        out["pooled"] = {"share": share.share, "low": share.low, "high": share.high,
                         "num_prompts": share.num_prompts, "num_seeds": len(rows)}
        out["pooled_toxicity"] = {k: _seed_mean_toxicity(np.stack(v),
                                                         np.stack(per_prompt_fraction[k]))
                                  for k, v in per_prompt.items()}
        first = _json(true_runs[seeds[0]] / "eval_after.json")
        out["num_prompts"], out["samples_per_prompt"] = first["num_prompts"], first.get(
            "samples_per_prompt", 1)
        out["eval_prompts"] = sorted(set(first.get("prompts", [])))
    return out


def irl_training_overlap(eval_prompts: list[str], demos_folder: str | pathlib.Path) -> int:
    """How many of the re-RLHF evaluation's prompts (held out from PPO) gave IRL training
    demonstrations: the demonstrations split their prompts apart from PPO's split."""
    from jaxirl.irl.demos import load_demos

    train = set(load_demos(demos_folder)["train"]["prompt"])
    return sum(p in train for p in eval_prompts)


def _final_controller_kl(run: pathlib.Path) -> float | None:
    """The adaptive controller's input (trlx's k3 estimate) over the last 3 iterations."""
    values = [m["kl_controller_input"] for m in _jsonl(run / "metrics.jsonl")
              if "kl_controller_input" in m][-3:]
    return float(np.mean(values)) if values else None


def _seed_mean_toxicity(per_prompt: np.ndarray, per_prompt_fraction: np.ndarray
                        ) -> dict[str, float]:
    """Mean toxicity of [S, P] per-prompt means (S PPO seeds, the same P prompts), the
    share of toxic samples from [S, P] per-prompt shares, and their standard errors over
    prompts: the seeds share the prompts, so their errors correlate and must not be pooled
    as independent."""
    by_prompt, fraction = per_prompt.mean(0), per_prompt_fraction.mean(0)
    return {"mean": float(by_prompt.mean()), "se": _prompt_se(by_prompt),
            "fraction": float(fraction.mean()), "fraction_se": _prompt_se(fraction)}


def _prompt_se(per_prompt: np.ndarray) -> float:
    """Standard error of the mean over prompts [P]; NaN for one prompt (not measurable, as
    the evaluation itself records it)."""
    if len(per_prompt) < 2:
        return float("nan")
    return float(per_prompt.std(ddof=1) / np.sqrt(len(per_prompt)))


def _prompt_toxic_fraction(evaluation: dict) -> np.ndarray:
    """[P] share of each prompt's samples with P(toxic) > 0.5."""
    tox = np.asarray(evaluation["toxicity"]) > 0.5
    return tox.reshape(evaluation["num_prompts"], -1).mean(1)


def _fraction_se(evaluation: dict) -> float:
    return _prompt_se(_prompt_toxic_fraction(evaluation))


def _pct(share: dict) -> str:
    return fmt_ci({"estimate": share["share"], "low": share["low"], "high": share["high"]}, 0,
                  100, "%")


def _rlhf_section(comp: dict, config: Any, out: pathlib.Path) -> list[str]:
    if not comp["per_seed"]:
        return ["## Re-RLHF", "", "No held-out evaluation in this run (eval_prompts = 0).", ""]
    ppo = config.ppo_config()
    plots.rlhf_curves(comp["metrics"], out / PLOTS_DIR / "rlhf_curves.png", kl_target=ppo.target)
    names = {"base": "base model", "true": "RLHF, true reward", "learned": "RLHF, learned reward"}
    pooled_tox = comp.get("pooled_toxicity", {})
    plots.toxicity_bars({names[k]: {**{f: [r[k][f] for r in comp["per_seed"]]
                                       for f in ("mean", "se", "fraction", "fraction_se")},
                                    "pooled_se": pooled_tox.get(k, {}).get("se"),
                                    "pooled_fraction_se": pooled_tox.get(k, {}).get("fraction_se")}
                         for k in names}, out / PLOTS_DIR / "toxicity.png")
    rows = [[r["seed"], *[f"{fmt(r[k]['mean'])} ± {fmt(1.96 * r[k]['se'])}" for k in names],
             _pct(r["share"]), f"{fmt(r['kl_true'], 2)} / {fmt(r['kl_learned'], 2)}",
             f"{fmt(r.get('controller_kl_true'), 1)} / {fmt(r.get('controller_kl_learned'), 1)}"]
            for r in comp["per_seed"]]
    pooled = comp["pooled"]
    shares = [r["share"]["share"] for r in comp["per_seed"]]
    rows.append(["pooled", *[f"{fmt(pooled_tox[k]['mean'])} ± {fmt(1.96 * pooled_tox[k]['se'])}"
                             if k in pooled_tox else "" for k in names], _pct(pooled), "", ""])
    return [
        "## Re-RLHF: does the learned reward train a less toxic policy?", "",
        f"The reward model of IRL seed {config.learned_reward_seed} RLHF-trains a fresh copy of "
        f"the base model with PPO seeds {', '.join(map(str, comp['seeds']))}; the true reward "
        f"trains another copy with the same seeds. Toxicity is the ground truth's mean P(toxic) of "
        f"{comp['samples_per_prompt']} sampled continuations of each of {comp['num_prompts']} "
        f"prompts held out from PPO (± 95% interval over prompts)"
        + (f"; {comp['irl_overlap']} of them also gave IRL training demonstrations (the "
           "demonstrations draw their own split of the prompts), so the learned reward was "
           "fit on texts of those prompts, though not on these continuations"
           if comp.get("irl_overlap") else "")
        + ". The share is (base − learned) / "
        f"(base − true) with a paired bootstrap over prompts in each seed's row; the spread of "
        f"the per-seed shares ({fmt(100 * min(shares), 0)}–{fmt(100 * max(shares), 0)}%) is "
        "PPO's own seed noise, which those intervals do not contain. The pooled row averages "
        "the seeds per prompt, and its interval resamples the PPO seeds as well as the "
        "prompts, so it does contain that noise; the verdict reads it. The KL columns give "
        "the last 3 iterations' mean of the k1 estimate (the KL penalty's, Σ log π/π_ref "
        "over the response) and of the k3 estimate (Σ exp(d) − 1 − d, trlx's), which is "
        "what the adaptive controller steers toward its target"
        + (f" of {fmt(ppo.target, 1)} nats (above it, β rises only as fast as the "
           f"controller's horizon of {ppo.horizon} samples allows, so the column shows how far the "
           "runs ended from the target)" if ppo.target is not None else "") + ".", "",
        table(["PPO seed", *names.values(), "learned / true share of the reduction",
               "final KL (k1) true / learned", "controller's KL (k3) true / learned"],
              rows), "",
        f"**Verdict:** {verdicts.rerlhf(pooled)}", "",
        image("RLHF curves", f"{PLOTS_DIR}/rlhf_curves.png"), "",
        image("Toxicity before and after", f"{PLOTS_DIR}/toxicity.png"), ""]


# ------------------------------------------------------------------------------ IRL


def _ci(card: dict | None, key: str) -> str:
    return fmt_ci(card["metrics"].get(key)) if card else "n/a"


def _irl_section(ev: dict, out: pathlib.Path, model_label: str) -> list[str]:
    cards = ev["scorecards"]
    learned, majority = cards["learned"], cards["majority"]
    columns = [k for k in REWARD_COLUMNS if k in cards]
    rule = ev.get("irl_threshold")
    acc_title = (f"accuracy at threshold {rule}" + (" (reads the held-out\ntoxic share)"
                                                      if rule == "match_rate" else ""))
    plots.irl_epochs(ev["per_epoch"], out / PLOTS_DIR / "irl_epochs.png",
                     majority_accuracy=majority["metrics"]["accuracy"]["estimate"],
                     accuracy_title=acc_title, first_epoch=ev.get("per_epoch_starts_at", 0))
    per_seed = learned["per_seed"]
    spread = "; ".join(f"{name.split(',')[0]} {fmt(np.std(per_seed[k], ddof=1) if len(per_seed[k]) > 1 else 0.0)}"
                       for k, name in HEADLINE)
    thresholds = [
        ["fit on the training texts (headline)", "training labels only",
         _ci(learned, "accuracy"), _ci(learned, "f1")],
        ["0 (the reference's)", "nothing", _ci(learned, "accuracy_threshold_zero"),
         _ci(learned, "f1_threshold_zero")],
        ["match rate", "the held-out set's toxic share: leaks its class prior",
         _ci(learned, "accuracy_match_rate"), _ci(learned, "f1_match_rate")]]
    lines = [
        "## Inverse RL: how well is the reward recovered?", "",
        f"{ev['num_seeds']} reward seeds, {ev['epochs']} epochs, loss `{ev['loss']['name']}`; "
        f"{ev['num_test_pairs']} held-out (expert, base) pairs from {ev['num_test_prompts']} "
        f"prompts ({fmt(100 * ev['toxic_share_test'], 1)}% of held-out texts are toxic). Each "
        "learned-reward cell is the mean over seeds (the other columns are one reward each) "
        "with a 95% interval from "
        f"{ev.get('bootstrap_resamples', 1000)} bootstrap resamples of the held-out prompts (a "
        "prompt's texts are correlated, so prompts, not texts, are resampled). Accuracy and "
        "F1 threshold each seed's reward at the value that classifies its TRAINING texts best; "
        "the held-out texts never set it. Baselines go through the same code: a random "
        "reward (Gaussian noise) and the majority class (a constant reward).", "",
        table(["metric", *[REWARD_COLUMNS[k] for k in columns]],
              [[name, *[_ci(cards[k], key) for k in columns]] for key, name in HEADLINE]), "",
        f"Spread over the {ev['num_seeds']} seeds (std): {spread}.", "",
        "The learned reward's offset is arbitrary, so its accuracy depends on the threshold:", "",
        table(["threshold", "what it reads", "accuracy", "F1 (toxic class)"], thresholds), "",
        "Against the paper's headline numbers (the paper thresholds at 0):", "",
        paper_comparison([
            (f"this run ({model_label}), threshold 0", _ci(learned, "accuracy_threshold_zero"),
             _ci(learned, "f1_threshold_zero")),
            (f"this run ({model_label}), threshold fit on training texts",
             _ci(learned, "accuracy"), _ci(learned, "f1")),
            ("majority class (no reward)", _ci(majority, "accuracy"), _ci(majority, "f1"))]), "",
        image("IRL metrics per epoch", f"{PLOTS_DIR}/irl_epochs.png"), ""]
    if "seed_agreement" in ev:
        lines += _identifiability_lines(ev, out)
    return lines


def _identifiability_lines(ev: dict, out: pathlib.Path) -> list[str]:
    agree, ens = ev["seed_agreement"], ev["scorecards"]["ensemble"]
    s = ev["num_seeds"]
    plots.seed_heatmap(np.asarray(agree["matrix"]), out / PLOTS_DIR / "seed_correlation.png",
                       labels=[f"seed {i}" for i in range(s)] + ["true reward"])
    true, mean = np.asarray(ev["true_rewards"]), np.asarray(ev["ensemble_mean"])
    std = np.asarray(ev["ensemble_std"])
    thr = ens["thresholds"][0]
    plots.reward_scatter(mean, true, np.arange(len(true)) < len(true) // 2,
                         out / PLOTS_DIR / "reward_scatter.png", threshold=thr,
                         pearson=ens["metrics"]["pearson"]["estimate"],
                         spearman=ens["metrics"]["spearman"]["estimate"])
    plots.ensemble_uncertainty(std, (mean > thr) == (true > 0),
                               out / PLOTS_DIR / "ensemble_uncertainty.png")
    dis = ev["disagreement"]
    return [
        "### Identifiability across seeds", "",
        f"Mean Pearson r between two seeds' rewards on the held-out texts: "
        f"{fmt_ci(agree['seed_vs_seed'])}; between a seed and the true reward: "
        f"{fmt_ci(agree['seed_vs_true'])} (95% intervals over prompts).", "",
        f"**Verdict:** {verdicts.identifiability(agree['seed_vs_seed'], agree['seed_vs_true'])}", "",
        image("Seed correlation", f"{PLOTS_DIR}/seed_correlation.png"), "",
        image("Learned vs true reward", f"{PLOTS_DIR}/reward_scatter.png"), "",
        "### Seed ensemble", "",
        "The ensemble averages the seeds' rewards after standardising each with its training "
        "texts' mean and std (its metrics are the baseline table's second column). Does seed "
        f"disagreement flag its errors? ROC-AUC of the ensemble std for misclassified texts "
        f"{fmt(dis.get('roc_auc'))} (0.5 = no signal); error rate {fmt(dis.get('error_rate_uncertain'))} "
        f"in the more uncertain half vs {fmt(dis.get('error_rate_confident'))} in the other.", "",
        image("Ensemble uncertainty", f"{PLOTS_DIR}/ensemble_uncertainty.png"), ""]


# ------------------------------------------------------------------------------ the report


def _model_label(config: Any, preset: str | None, model: str, workdir: pathlib.Path) -> str:
    name = "embedded default model" if not config.model else f"`{readable_path(model, workdir)}`"
    return f"preset `{preset}`, {name}" if preset else name


def _findings(ev: dict, comp: dict, interp: dict | None, provenance: str) -> list[str]:
    learned, majority, rand = (ev["scorecards"][k] for k in ("learned", "majority", "random"))
    lines = [
        f"1. **Reward recovery.** Held-out ROC-AUC {_ci(learned, 'roc_auc')} (random reward "
        f"{_ci(rand, 'roc_auc')}); accuracy {_ci(learned, 'accuracy')} and F1 "
        f"{_ci(learned, 'f1')} at a threshold fit on the training texts (majority class: "
        f"accuracy {_ci(majority, 'accuracy')}, F1 {fmt(majority['metrics']['f1']['estimate'])}; "
        f"the reference's threshold 0: accuracy {_ci(learned, 'accuracy_threshold_zero')}, F1 "
        f"{_ci(learned, 'f1_threshold_zero')}); "
        f"Pearson {_ci(learned, 'pearson')}, Spearman {_ci(learned, 'spearman')}. Mean of "
        f"{ev['num_seeds']} IRL seeds; 95% intervals over {ev['num_test_prompts']} held-out prompts."]
    if "seed_agreement" in ev:
        agree = ev["seed_agreement"]
        lines.append(f"2. **Identifiability.** Seeds correlate at r = {fmt_ci(agree['seed_vs_seed'])} "
                     f"with each other, r = {fmt_ci(agree['seed_vs_true'])} with the true reward. "
                     + verdicts.identifiability(agree["seed_vs_seed"], agree["seed_vs_true"]))
    else:
        lines.append("2. **Identifiability.** One IRL seed: not measured.")
    if comp.get("per_seed"):
        shares = [r["share"]["share"] for r in comp["per_seed"]]
        spread = (f"pooled over {len(shares)} PPO seeds (per seed {fmt(100 * min(shares), 0)}–"
                  f"{fmt(100 * max(shares), 0)}%)" if len(shares) > 1 else
                  "with one PPO seed (its seed spread is not measured)")
        lines.append(
            f"3. **Re-RLHF.** {verdicts.rerlhf(comp['pooled'])} The learned reward (IRL seed "
            f"{comp['reward_seed']}) achieves {_pct(comp['pooled'])} of the true reward's "
            f"toxicity reduction, {spread}.")
    else:
        lines.append("3. **Re-RLHF.** Not evaluated (eval_prompts = 0).")
    lines.append("4. **Interpretability.** " + (interp_findings(interp) if interp else "not run."))
    lines.append(f"5. **Run.** {provenance}")
    return lines


def stage_commits(results: dict, current: str) -> str:
    """A clause naming the stages that ran at another commit than ``current`` (a rerun
    skips finished stages, so their numbers may come from older code); "" when none."""
    other: dict[str, list[str]] = {}
    for name, result in results.items():
        commit = getattr(result, "commit", None) or "unrecorded"
        if commit != current:
            other.setdefault(commit, []).append(name)
    if not other:
        return ""
    return " (this report's; " + "; ".join(
        f"{', '.join(names)} ran at " + ("a commit that was not recorded" if commit ==
                                          "unrecorded" else f"`{commit}`")
        for commit, names in other.items()) + ")"


def stage_cpus(results: dict, current: int) -> str:
    """The CPU cores of this run, and the stages that ran with another count (XLA:CPU's
    thread pool follows it, and some float sums with it: bitwise-equal numbers need the
    same count)."""
    def cores(n):
        return "an unrecorded number of cores" if n is None else \
            f"{n} core{'' if n == 1 else 's'}"

    other: dict[int | None, list[str]] = {}
    for name, result in results.items():
        cpus = getattr(result, "cpus", None)
        if cpus != current:
            other.setdefault(cpus, []).append(name)
    text = f"{cores(current)} usable"
    if other:
        text += " (" + "; ".join(f"{', '.join(names)} ran with {cores(cpus)}"
                                 for cpus, names in other.items()) + ")"
    return text


def run_report(config: Any, workdir: pathlib.Path, results: dict,
               preset: str | None = None) -> pathlib.Path:
    """The report stage: ``workdir/report.md`` (its plots and ``study_config.json``) from the
    stages' ``results`` (:class:`~jaxirl.pipeline.stages.StageResult` by name)."""
    workdir = pathlib.Path(workdir)
    (workdir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    (workdir / CONFIG_FILE).write_text(json.dumps(
        {"preset": preset, **dataclasses.asdict(config)}, indent=2, default=str) + "\n")
    evaluation = _json(pathlib.Path(results["evaluate"].outputs["evaluation"]))
    comp = rerlhf_comparison(results, config.ppo_config().seed)
    comp["reward_seed"] = config.learned_reward_seed
    if comp.get("eval_prompts") and "demos" in results:
        comp["irl_overlap"] = irl_training_overlap(comp["eval_prompts"],
                                                   results["demos"].outputs["demos"])
    interp_folder = results["interp"].folder if "interp" in results else None
    interp = _json(interp_folder / "interp_results.json") if interp_folder else None
    model = results["prepare"].outputs["model"]
    label = _model_label(config, preset, model, workdir)
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    provenance = (f"{label}; prompts `{readable_path(results['prepare'].outputs['dataset'], workdir)}`; "
                  f"ground truth `{config.ground_truth}`; full configuration in "
                  f"[`{CONFIG_FILE}`]({CONFIG_FILE}); jaxirl commit `{git_commit()}`"
                  f"{stage_commits(results, git_commit())}; {versions}; "
                  f"{stage_cpus(results, usable_cpus())}.")
    lines = ["# jaxirl study report", "", "## Findings", "",
             *_findings(evaluation, comp, interp, provenance), ""]
    lines += _irl_section(evaluation, workdir, label)
    lines += _rlhf_section(comp, config, workdir)
    lines += methods_report(results, workdir)  # distances, log-ratio, method comparison
    if interp is not None:
        lines += interp_section(interp, interp_folder.relative_to(workdir))
    timing = [[name, "skipped (done earlier)" if r.skipped else "ran", fmt(r.seconds, 0)]
              for name, r in results.items()]
    lines += ["## Stage times", "", table(["stage", "status", "seconds"], timing), ""]
    beside = [name for name, r in results.items() if r.background and not r.skipped]
    if beside:
        names = " and ".join([", ".join(beside[:-1]), beside[-1]] if len(beside) > 1 else beside)
        lines += [f"{names} ran in background threads beside the main chain of stages, so "
                  "the seconds overlap: their sum exceeds the study's wall time.", ""]
    path = workdir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# What the report stage writes into the workdir; the stage folder keeps a copy.
REPORT_FILES = ("report.md", CONFIG_FILE, PLOTS_DIR)


def keep_report(workdir: pathlib.Path, folder: pathlib.Path) -> None:
    """Copies the report just written into ``workdir`` into its stage folder."""
    _copy_report(pathlib.Path(workdir), pathlib.Path(folder))


def restore_report(folder: pathlib.Path, workdir: pathlib.Path) -> bool:
    """Puts a finished report stage's copy back into ``workdir``.

    Several configurations can share a workdir (each stage folder is keyed by its
    inputs), but ``report.md`` is one file: after running A, then B, then A again, the
    third run skips its finished report stage and the workdir would still show B's.
    Returns False when the folder keeps no copy (written before copies were kept).
    """
    folder, workdir = pathlib.Path(folder), pathlib.Path(workdir)
    if not (folder / "report.md").is_file():
        return False
    _copy_report(folder, workdir)
    return True


def _copy_report(src: pathlib.Path, dst: pathlib.Path) -> None:
    for name in REPORT_FILES:
        if (src / name).is_dir():
            shutil.rmtree(dst / name, ignore_errors=True)
            shutil.copytree(src / name, dst / name)
        elif (src / name).is_file():
            shutil.copy2(src / name, dst / name)


__all__ = ["PLOTS_DIR", "REPORT_FILES", "keep_report", "rerlhf_comparison", "restore_report",
           "run_report", "stage_commits", "summarize_irl"]
