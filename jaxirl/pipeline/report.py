"""``report.md``: the study's numbers, tables and plots, written from the stage outputs."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from jaxirl.irl.demos import load_demos
from jaxirl.irl.ensemble import disagreement_predicts_error, ensemble, pairwise_seed_correlation
from jaxirl.irl.evaluate import evaluate_rewards
from jaxirl.irl.rlhf_comparison import ReductionShare, toxicity_reduction_share
from jaxirl.report import plots
from jaxirl.report.markdown import fmt, fmt_pvalue, image, mean_std, paper_comparison, table
from jaxirl.report.methods import methods_report

PLOTS_DIR = "report_plots"
_HEADLINE = ("accuracy", "f1", "roc_auc", "pearson_correlation", "spearman", "kendall_tau",
             "pairwise_accuracy")


def _jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def summarize_irl(metrics_path: str, demos_path: str, test_rewards_path: str) -> dict[str, Any]:
    """Final-epoch IRL metrics per seed, their spread, the ensemble and seed correlations."""
    blob = json.loads(pathlib.Path(metrics_path).read_text())
    history = blob["history"]
    final = history[-1]
    rewards = np.load(test_rewards_path)  # [S, 2P]: expert then base
    test = load_demos(demos_path)["test"]
    true = np.concatenate([np.asarray(test["expert_true_reward"]),
                           np.asarray(test["base_true_reward"])])
    p = len(test)
    pairs = np.stack([np.arange(p), np.arange(p) + p], axis=1)
    summary: dict[str, Any] = {
        "num_seeds": int(rewards.shape[0]), "num_test_pairs": p, "epochs": len(history),
        "loss": blob["train_config"]["loss"], "per_seed_final": final["per_seed"],
        "spread": final["spread"],
        "per_epoch": [[rec["per_seed"][s] for rec in history] for s in range(rewards.shape[0])],
        "seconds_per_epoch": float(np.mean([r.get("time_train_s", 0.0) for r in history])),
    }
    if rewards.shape[0] > 1:
        mean, std = ensemble(rewards)
        ens_threshold = blob["train_config"].get("threshold", 0.0)
        ens_threshold = ens_threshold if ens_threshold in ("median", "match_rate") else 0.0
        summary["seed_correlation"] = pairwise_seed_correlation(rewards).tolist()
        summary["ensemble"] = evaluate_rewards(mean, true, pairs=pairs,
                                               threshold=ens_threshold).as_dict()
        summary["disagreement"] = disagreement_predicts_error(rewards, true,
                                                              threshold=ens_threshold).as_dict()
        summary["ensemble_mean"] = mean.tolist()
        summary["ensemble_std"] = std.tolist()
    # The reference thresholds the learned reward at 0, although its offset is arbitrary.
    at_zero = [evaluate_rewards(r, true, pairs=pairs, threshold=0.0).as_dict() for r in rewards]
    summary["threshold_zero"] = {k: {"mean": float(np.mean([m[k] for m in at_zero])),
                                     "std": float(np.std([m[k] for m in at_zero], ddof=1))
                                     if len(at_zero) > 1 else 0.0}
                                 for k in ("accuracy", "f1")}
    summary["threshold"] = blob["train_config"].get("threshold", 0.0)
    summary["true_rewards"] = true.tolist()
    return summary


def _rlhf_section(results, out: pathlib.Path) -> list[str]:
    gt, learned = results["rlhf"].folder, results["rlhf_learned"].folder
    runs = {"ground-truth reward": _jsonl(gt / "metrics.jsonl"),
            "learned reward": _jsonl(learned / "metrics.jsonl")}
    plots.rlhf_curves(runs, out / PLOTS_DIR / "rlhf_curves.png")
    s_gt = json.loads((gt / "summary.json").read_text())
    s_l = json.loads((learned / "summary.json").read_text())
    tox = {"base model": (s_gt["toxicity_before"], s_gt["toxic_fraction_before"]),
           "RLHF, true reward": (s_gt["toxicity_after"], s_gt["toxic_fraction_after"]),
           "RLHF, learned reward": (s_l["toxicity_after"], s_l["toxic_fraction_after"])}
    plots.toxicity_bars(tox, out / PLOTS_DIR / "toxicity.png")
    share = _reduction_share(gt, learned)
    rows = [[name, m, f] for name, (m, f) in tox.items()]
    lines = [
        "## RLHF", "",
        image("RLHF curves", f"{PLOTS_DIR}/rlhf_curves.png"), "",
        "Held-out toxicity of sampled continuations (top-k, as the paper):", "",
        table(["model", "mean P(toxic)", "share P(toxic) > 0.5"], rows), "",
        image("Toxicity before and after", f"{PLOTS_DIR}/toxicity.png"), "",
        f"- True-reward RLHF: toxicity {fmt(s_gt['toxicity_before'])} → "
        f"{fmt(s_gt['toxicity_after'])} ({fmt(100 * s_gt.get('relative_toxicity_reduction', float('nan')), 1)}% "
        f"lower); final KL {fmt(s_gt['final_kl'], 2)} nats/sequence (target {fmt(s_gt['kl_target'], 2)}, "
        f"max {fmt(s_gt['max_kl'], 2)}); {fmt(s_gt['train_seconds'], 0)} s.",
        f"- Learned-reward RLHF: toxicity {fmt(s_l['toxicity_before'])} → "
        f"{fmt(s_l['toxicity_after'])}; final KL {fmt(s_l['final_kl'], 2)}; "
        f"{fmt(s_l['train_seconds'], 0)} s.",
        f"- The learned reward achieves {fmt(100 * share.share, 0)}% of the toxicity reduction "
        f"of the true reward ({fmt(100 * share.confidence, 0)}% paired-bootstrap interval over "
        f"{share.num_prompts} held-out prompts: {fmt(100 * share.low, 0)}–{fmt(100 * share.high, 0)}%; "
        f"{s_gt.get('eval_samples') or share.num_prompts} sampled continuations per model).", ""]
    return lines


def _reduction_share(gt: pathlib.Path, learned: pathlib.Path) -> ReductionShare:
    evals = [json.loads(p.read_text()) for p in
             (gt / "eval_before.json", gt / "eval_after.json", learned / "eval_after.json")]
    if not all(e and "prompt_toxicity" in e for e in evals):  # run with eval_prompts=0
        return ReductionShare(float("nan"), float("nan"), float("nan"), 0.95, 0)
    return toxicity_reduction_share(*(e["prompt_toxicity"] for e in evals))


def _irl_section(evaluation: dict, out: pathlib.Path) -> list[str]:
    plots.irl_epochs(evaluation["per_epoch"], out / PLOTS_DIR / "irl_epochs.png")
    lines = ["## Inverse RL", "",
             f"{evaluation['num_seeds']} seeds, {evaluation['epochs']} epochs, loss "
             f"`{evaluation['loss']['name']}`, {evaluation['num_test_pairs']} held-out "
             f"(expert, base) pairs; {fmt(evaluation['seconds_per_epoch'], 2)} s per epoch "
             "for all seeds together.", "",
             image("IRL accuracy and F1 per epoch", f"{PLOTS_DIR}/irl_epochs.png"), "",
             f"Final held-out metrics (mean ± std over seeds). Accuracy and F1 (toxic class, as "
             f"the reference) threshold the learned reward at `{evaluation.get('threshold')}`; "
             "ROC-AUC, correlations and pairwise accuracy need no threshold.", "",
             table(["metric", "mean ± std"],
                   [[k, mean_std(evaluation["spread"], k)] for k in _HEADLINE]
                   + [[f"{k} at the reference's threshold 0",
                       mean_std(evaluation.get("threshold_zero"), k)] for k in ("accuracy", "f1")]),
             "",
             "Against the paper's headline numbers:", "",
             paper_comparison(evaluation["spread"], "embedded default"), ""]
    if "ensemble" in evaluation:
        true = np.asarray(evaluation["true_rewards"])
        mean, std = np.asarray(evaluation["ensemble_mean"]), np.asarray(evaluation["ensemble_std"])
        p = len(true) // 2
        is_expert = np.arange(len(true)) < p
        plots.reward_scatter(mean, true, is_expert, out / PLOTS_DIR / "reward_scatter.png")
        corr = np.asarray(evaluation["seed_correlation"])
        plots.seed_heatmap(corr, out / PLOTS_DIR / "seed_correlation.png")
        ens, dis = evaluation["ensemble"], evaluation["disagreement"]
        thr = np.median(mean) if ens.get("threshold") is None else ens["threshold"]
        correct = (mean > float(thr)) == (true > 0)
        plots.ensemble_uncertainty(std, correct, out / PLOTS_DIR / "ensemble_uncertainty.png")
        off = corr[~np.eye(len(corr), dtype=bool)]
        lines += [image("Learned vs true reward", f"{PLOTS_DIR}/reward_scatter.png"), "",
                  "### Non-identifiability", "",
                  f"Pairwise Pearson correlation of the seeds' learned rewards on the same "
                  f"held-out texts: {fmt(off.mean())} on average (min {fmt(off.min())}, max "
                  f"{fmt(off.max())}); 1 would mean the seeds recovered the same reward up to "
                  "scale and offset.", "",
                  image("Seed correlation", f"{PLOTS_DIR}/seed_correlation.png"), "",
                  "### Ensemble", "",
                  table(["ensemble metric", "value"],
                        [[k, ens.get(k)] for k in _HEADLINE]), "",
                  f"Does disagreement predict errors? ROC-AUC of the ensemble std for "
                  f"misclassified texts: {fmt(dis.get('roc_auc'))}; error rate in the more uncertain "
                  f"half {fmt(dis.get('error_rate_uncertain'))} vs "
                  f"{fmt(dis.get('error_rate_confident'))} in the less uncertain half.", "",
                  image("Ensemble uncertainty", f"{PLOTS_DIR}/ensemble_uncertainty.png"), ""]
    return lines


def _interp_section(folder: pathlib.Path, out: pathlib.Path) -> list[str]:
    res = json.loads((folder / "interp_results.json").read_text())
    rel = folder.relative_to(out)
    sae_rows = [[r["layer"], f"{r['dict_multiple']}×", r.get("fve"), r.get("mse"), r.get("l0"),
                 r.get("dead_fraction")] for r in res["sae"]]
    irm, raw = res["irm"]["sae"], res["irm"]["raw"]
    keys = ("ridge_spearman", "ridge_kendall", "logistic_accuracy")
    lab, fire = res["feature_labels"], res["firing_rate_test"]
    lines = ["## Interpretability (SAEs, LFP probes, implicit reward model)", "",
             f"Layers that RLHF moved most (summed Frobenius norm of the change): "
             f"{res['layers']}.", "",
             table(["layer", "dictionary", "held-out FVE", "MSE", "L0", "dead share"], sae_rows),
             "", image("SAE metrics", f"{rel}/sae_metrics.png"), "",
             "Implicit reward model (a linear probe on pooled SAE codes) against the same probe "
             "on raw activations (the paper's baseline), held-out texts:", "",
             table(["probe input", *keys], [["SAE codes", *[irm.get(k) for k in keys]],
                                            ["raw activations", *[raw.get(k) for k in keys]]]), "",
             image("IRM vs true reward", f"{rel}/irm_scatter.png"), "",
             f"Offline feature labels: {lab.get('num_toxic_linked')} toxic-linked and "
             f"{lab.get('num_clean_linked')} clean-linked features of {lab.get('num_features')}; "
             f"mean flagged share of top contexts {fmt(lab.get('mean_flagged_share_sae'))} for SAE "
             f"features vs {fmt(lab.get('mean_flagged_share_random'))} for random directions.", "",
             "Firing-rate test on held-out texts (rate on toxic vs clean texts):", "",
             table(["feature set", "features", "rate on toxic", "rate on clean", "p-value"],
                   [[name, g.get("num_features"), g.get("rate_on_toxic"),
                     g.get("rate_on_clean"), fmt_pvalue(g.get("p_value"))] for name, g in fire.items()]), "",
             image("Firing rates", f"{rel}/firing_rates.png"), ""]
    if "irm_vs_irl" in res:
        c = res["irm_vs_irl"]
        lines += [f"IRM vs IRL reward on the same held-out texts: Pearson {fmt(c.get('pearson'))}, "
                  f"Spearman {fmt(c.get('spearman'))}, agreement on which texts are toxic "
                  f"{fmt(c.get('agreement'))}.", ""]
    return lines


def write_report(workdir: pathlib.Path, config: Any, results: dict) -> pathlib.Path:
    """Writes ``workdir/report.md`` (and its plots) from the finished stages."""
    (workdir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    evaluation = json.loads(pathlib.Path(results["evaluate"].outputs["evaluation"]).read_text())
    timing = [[name, "skipped (done earlier)" if r.skipped else "ran", r.seconds]
              for name, r in results.items()]
    lines = ["# jaxirl study report", "",
             f"Base model `{results['prepare'].outputs['model']}`, prompts "
             f"`{results['prepare'].outputs['dataset']}`, ground truth `{config.ground_truth}`.",
             "", table(["stage", "status", "seconds"], timing), ""]
    lines += _rlhf_section(results, workdir)
    lines += _irl_section(evaluation, workdir)
    lines += methods_report(results, workdir)  # distances, log-ratio, method comparison
    lines += _interp_section(results["interp"].folder, workdir)
    path = workdir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
