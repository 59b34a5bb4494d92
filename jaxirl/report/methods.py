"""Report sections for the reward distances, the log-ratio reward and the method comparison.

``methods_report(results, workdir)`` returns markdown lines for ``report.md``
(called from :func:`jaxirl.pipeline.report.run_report`); plots go to
``report_plots/``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from jaxirl.report.markdown import fmt, image, table
from jaxirl.report.provenance import readable_path

PLOTS_DIR = "report_plots"
_COLUMNS = ("accuracy", "f1", "roc_auc", "pearson", "starc_a", "starc_b", "seed_correlation")


def distance_lines(evaluation: dict[str, Any]) -> list[str]:
    """EPIC/STARC of the IRL seeds and ensemble, and the log-ratio reward beside them."""
    if "distances" not in evaluation:
        return []
    dist, cov = evaluation["distances"], evaluation["coverage"]
    spread = dist["spread"]
    rows = [[k, f"{fmt(spread[k]['mean'])} ± {fmt(spread[k]['std'])}",
             fmt(dist.get("ensemble", {}).get(k)),
             fmt(evaluation.get("log_ratio", {}).get("distances", {}).get(k))]
            for k in ("epic", "starc_a", "starc_b")]
    lines = ["### Reward distances (EPIC, STARC)", "",
             f"Coverage set: {cov['texts']} ({cov['num_texts']} texts), {cov['weights']} weights; "
             f"STARC-B centres each {cov['starc_b_groups']}; L2, halved (0 = same reward up to "
             "the invariances, 1 = opposite). STARC-A equals EPIC exactly on texts (largest "
             f"difference over the seeds: {dist['epic_minus_starc_a_max']:.1e}).", "",
             table(["distance", "IRL seeds (mean ± std)", "IRL ensemble", "log-ratio (white box)"],
                   rows), ""]
    if "log_ratio" in evaluation:
        lr, sp = evaluation["log_ratio"], evaluation["spread"]
        keys = ("accuracy", "f1", "roc_auc", "pearson_correlation", "spearman")
        lines += ["### White-box log-ratio reward", "",
                  f"r̂(p, o) = β·[log π_RLHF(o|p) − log π_base(o|p)] with the final β = "
                  f"{fmt(lr['beta'], 4)}: no training, both models needed. Same held-out "
                  "texts as the IRL seeds, and accuracy and F1 of both at the IRL run's own "
                  f"threshold rule (`{lr.get('threshold_rule', 0.0)}`; the headline's "
                  "training-fit threshold is in the IRL section); gap = IRL seed mean − "
                  "log-ratio.", "",
                  table(["metric", "IRL seed mean", "log-ratio", "gap"],
                        [[k, sp[k]["mean"], lr["metrics"][k], sp[k]["mean"] - lr["metrics"][k]]
                         for k in keys]), ""]
    return lines


def _per_draw_table(blob: dict) -> str:
    rows = []
    for name in blob["methods"]:
        for d, draw in zip(blob["config"]["draws"], blob["per_draw"], strict=True):
            rows.append([name, d, *[draw[name].get(k) for k in _COLUMNS]])
    return table(["method", "draw", *_COLUMNS], rows)


def _paired_table(blob: dict, reference: str) -> str:
    diffs = blob["paired"][reference]
    rows = []
    for name in blob["methods"]:
        if name == reference:
            continue
        cells = [f"{fmt(v['diff'])} [{fmt(v['low'])}, {fmt(v['high'])}]"
                 for v in (diffs[name][k] for k in _COLUMNS)]
        rows.append([name, *cells])
    return table(["method", *[f"Δ {k}" for k in _COLUMNS]], rows)


def _bayes_lines(blob: dict, out: pathlib.Path) -> list[str]:
    lines = ["### Bayesian reward posterior", ""]
    rows, cal_rows, ood_rows = [], [], []
    for d, rec in blob["draws"].items():
        b = rec.get("bayes")
        if not b:
            continue
        for method in ("laplace", "vi"):
            r = b[method]["rounds"]
            rows.append([d, method, " → ".join(fmt(x["trace"], 1) for x in r),
                         " → ".join(fmt(x["logdet"], 0) for x in r),
                         " → ".join(fmt(x["entropy"], 0) for x in r), fmt(b[method]["seconds"], 1)])
        c = b["calibration"]
        cal_rows.append([d, c["pairwise"]["ece_raw"], c["pairwise"]["ece"],
                         c["pairwise"].get("ece_platt_floor", "n/a"),  # absent in older runs
                         c["pairwise"]["brier"], c["per_text"]["ece"], c["per_text"]["brier"],
                         c["calibration_pairs"]])
        marker, other = b["ood"]["marker"], b["ood"]["other_source"]
        ood_rows.append([d, marker["auroc"], other["auroc"],  # runs before the reference: n/a
                         marker.get("mahalanobis_auroc", "n/a"),
                         other.get("mahalanobis_auroc", "n/a"), other["num_texts"]])
    if not rows:
        return []
    first = next(r["bayes"] for r in blob["draws"].values() if r.get("bayes"))["calibration"]
    reliability_plot(first, out / PLOTS_DIR / "bayes_reliability.png")
    config = blob.get("config") or {}
    rounds = (config.get("bayes") or {}).get("rounds", len(r))
    marker = config.get("marker", "[MARKER]")
    marked = f"{100 * config['marker_fraction']:.0f}%" if "marker_fraction" in config else "some"
    lines += [f"Sequential rounds ({rounds} disjoint folds of training prompts, each prior the "
              "last posterior): tr Σ, log det Σ and entropy (nats) per round.", "",
              table(["draw", "inference", "tr Σ", "log det Σ", "entropy", "seconds"], rows), "",
              "Calibration (Platt on a held-out calibration split of training prompts; test "
              "pairs; 15 equal-count bins). Pairwise: P(expert ≻ base) against "
              "σ(r★(expert) − r★(base)); per text: P(not toxic) against r★ > 0. The Platt "
              "floor (a diagnostic, fitted on the test pairs themselves) is the least pairwise "
              "ECE a grid and local search find for any Platt map on these probabilities: "
              "where it misses a target, the calibration split is not the cause.", "",
              table(["draw", "pairwise ECE raw", "pairwise ECE", "Platt floor", "pairwise Brier",
                     "per-text ECE", "per-text Brier", "calibration pairs"], cal_rows), "",
              image("Reliability", f"{PLOTS_DIR}/bayes_reliability.png"), "",
              "OOD flags: AUROC of Var[R(x)] = φᵀΣφ for OOD texts against the held-out "
              f"completions (marker: `{marker}` before and after {marked} of them; other source: "
              "chatterbot's coding dialogs, which the default corpus leaves out). Beside them, "
              "the same AUROCs of the features' Mahalanobis distance from the training pool, "
              "which uses no reward: where it is near 0.5 too, the features, not the posterior, "
              "miss the OOD texts.", "",
              table(["draw", "marker AUROC", "other-source AUROC", "marker AUROC, Mahalanobis",
                     "other-source AUROC, Mahalanobis", "other-source texts"], ood_rows),
              ""]
    return lines


def _rerlhf_lines(blob: dict, out: pathlib.Path) -> list[str]:
    if "rerlhf" not in blob:
        return []
    r = blob["rerlhf"]
    rows = []
    for name, spec in r["rewards"].items():
        s = r[name]
        kind, colon, path = spec.partition(":")  # learned:PATH | linear:PATH, in the workdir
        spec = f"{kind}:{readable_path(path, out)}" if colon else spec
        rows.append([name, f"`{spec}`", len(r["runs"][name]),
                     f"{fmt(100 * s['share'], 0)}% [{fmt(100 * s['low'], 0)}%, "
                     f"{fmt(100 * s['high'], 0)}%]",
                     " / ".join(fmt(x) for x in r["toxicity_after"][name])])
    return ["### Re-RLHF over PPO seeds", "",
            f"True reward: {len(r['runs']['true'])} PPO seeds, toxicity after "
            f"{' / '.join(fmt(x) for x in r['toxicity_after']['true'])} (before "
            f"{' / '.join(fmt(x) for x in r['toxicity_before'])}). Share of the true reward's "
            "toxicity drop with a bootstrap over PPO seeds and prompts:", "",
            table(["reward", "spec", "PPO seeds", "share [95% interval]", "toxicity after"], rows),
            ""]


def comparison_lines(methods_json: pathlib.Path, out: pathlib.Path) -> list[str]:
    """The paired comparison's tables from ``methods.json``."""
    blob = json.loads(pathlib.Path(methods_json).read_text())
    best = blob["best_black_box"]
    targets = blob["targets"]
    # An ensemble is one run: its seed correlation is that of the seeds it averages.
    members = best.removesuffix("_ensemble")
    checks = []
    for d, draw in zip(blob["config"]["draws"], blob["per_draw"], strict=True):
        m = draw[best]
        checks.append([d, m["f1"], m["pearson"], m["starc_a"],
                       draw.get(members, m)["seed_correlation"]])
    seed_header = ("seed correlation" if members == best
                   else f"seed correlation (of `{members}`'s seeds)")
    lines = ["## Method comparison (paired over seeds and demonstration draws)", "",
             f"Methods: {', '.join(blob['methods'])}; draws {blob['config']['draws']}. Accuracy "
             "and F1 threshold each run at the value that classifies its TRAINING texts best; "
             "distances are halved; `_ensemble` is the z-scored mean of a method's seeds "
             "(one run). Seed means per draw:", "",
             _per_draw_table(blob), ""]
    for ref in blob["paired"]:
        lines += [f"Paired differences against `{ref}` (mean over seeds and draws; 95% "
                  f"bootstrap interval over held-out prompts, {blob['config']['bootstrap']} "
                  "resamples):", "", _paired_table(blob, ref), ""]
    lines += [f"Best black-box method by mean Pearson: `{best}`. Targets: F1 ≥ "
              f"{targets['f1']}, Pearson ≥ {targets['pearson']}, STARC-A ≤ {targets['starc_a']}, "
              f"seed correlation ≥ {targets['seed_correlation']} (per draw):", "",
              table(["draw", "F1", "Pearson", "STARC-A", seed_header], checks), "",
              "Pearson of −P(toxic) (the scale PPO optimised) with the log-odds ground truth on "
              f"the same texts: {', '.join(fmt(x) for x in blob['ceiling_pearson'])} per draw: "
              "a perfect recovery of the RLHF reward scores this, not 1.", ""]
    lines += _word_probe_lines(blob)
    lines += _bayes_lines(blob, out)
    lines += _rerlhf_lines(blob, out)
    return lines


def _word_probe_lines(blob: dict) -> list[str]:
    """What the demonstrations identify (:mod:`jaxirl.irl.word_probes`), per draw."""
    draws = [(d, blob["draws"][str(d)].get("word_probes")) for d in blob["config"]["draws"]]
    draws = [(d, w) for d, w in draws if w]
    if not draws:
        return []
    sizes = [c["pairs"] for c in draws[0][1]["learning_curve"]]
    rows = [[d, *[c["pearson"] for c in w["learning_curve"]], w["oracle_pearson"],
             w["oracle_strong_weights_pearson"], w["strong_words"], w["strong_weight_slope"]]
            for d, w in draws]
    return ["Word-count probes of the demonstrations (responses only; held-out Pearson with "
            "the ground truth): a logistic discriminator on word counts trained on growing "
            "shares of the training pairs, a ridge oracle fitted to the ground truth on the "
            "same counts, and the discriminator with the oracle's weights on the words the "
            "oracle calls strongly negative (the slope of the discriminator's weights on the "
            "oracle's over those words: near 0 when the expert avoids them all alike).", "",
            table(["draw", *[f"discriminator, {n} pairs" for n in sizes], "oracle",
                   "discriminator + oracle's strong weights", "strong words", "slope"], rows),
            ""]


def methods_report(results: dict, workdir: pathlib.Path) -> list[str]:
    """All of this module's report sections that the finished stages allow."""
    lines = []
    evaluation = json.loads(pathlib.Path(results["evaluate"].outputs["evaluation"]).read_text())
    lines += distance_lines(evaluation)
    if "methods" in results:
        lines += comparison_lines(pathlib.Path(results["methods"].outputs["methods"]), workdir)
    return lines


def size_sweep_lines(rows: list[dict], plot: str) -> list[str]:
    """The model-size axis: IRL metrics against parameter count.

    Accuracy and F1 are labelled with each row's ``threshold_rule``: ``train_fit`` (the
    main report's headline: fitted on the training texts only), else the IRL run's
    rule; rows written before the rule was recorded (older ``size_sweep.json``) used
    the IRL run's rule, ``match_rate`` in the default study.
    """
    def rule(row: dict) -> tuple[str, str]:  # (short label, what it reads)
        name = row.get("threshold_rule")
        if name == "train_fit":
            return ("threshold fit on training texts",
                    "each seed's threshold is fitted on the training texts only, as in the "
                    "main report's headline; the held-out texts never set it")
        if name is None:
            return ("IRL run's threshold, unrecorded",
                    "the IRL run's last epoch at its threshold rule, which this file does not "
                    "record (the default study's is match_rate, which reads the held-out "
                    "class prior)")
        reads = " (reads the held-out class prior)" if name == "match_rate" else ""
        return (f"threshold {name}", f"the IRL run's last epoch at threshold {name}{reads}")

    labels = [rule(r) for r in rows]
    shown = list(dict.fromkeys(labels))
    keys = ("pearson_correlation", "starc_a", "seed_correlation")
    if len(shown) == 1:
        header = [f"accuracy ({shown[0][0]})", f"f1 ({shown[0][0]})"]
        cells = [[] for _ in rows]
    else:
        header = ["accuracy", "f1", "threshold"]
        cells = [[label[0]] for label in labels]
    notes = [f"- Accuracy and F1 (toxic class), {short}: {reads}." for short, reads in shown]
    return ["# Model-size sweep", "",
            table(["parameters", *header, *keys, "build s", "study s"],
                  [[r["parameters"], r.get("accuracy"), r.get("f1"), *extra,
                    *[r.get(k) for k in keys], r["build_seconds"], r["study_seconds"]]
                   for r, extra in zip(rows, cells, strict=True)]), "",
            *notes, "",
            image("IRL metrics against model size", plot), ""]


def reliability_plot(calibration: dict, path: pathlib.Path) -> str:
    """Reliability diagrams (pairwise and per text) of one draw's calibrated posterior."""
    from jaxirl.report.plots import _save, plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, key, title in zip(axes, ("pairwise", "per_text"),
                              ("P(expert ≻ base)", "P(not toxic)"), strict=True):
        conf, acc, _ = calibration[key]["reliability"]
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        ax.plot(conf, acc, marker="o", lw=1.5)
        ax.set_xlabel("predicted (after Platt)")
        ax.set_ylabel("observed (mean target)")
        ax.set_title(f"{title}: ECE {calibration[key]['ece']:.3f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


def size_sweep_plot(rows: list[dict], path: pathlib.Path) -> str:
    """IRL accuracy, F1, Pearson, STARC-A and seed correlation against parameter count."""
    from jaxirl.report.plots import _save, plt

    keys = ("accuracy", "f1", "pearson_correlation", "starc_a", "seed_correlation")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    params = np.array([r["parameters"] for r in rows], float)
    for key in keys:
        ax.plot(params, [r.get(key, np.nan) for r in rows], marker="o", label=key)
    ax.set_xscale("log")
    ax.set_xticks(params, [f"{n / 1e6:.2g}M" for n in params])  # one tick per size, no crowding
    ax.minorticks_off()
    ax.set_xlabel("parameters of the embedded default")
    ax.set_ylabel("held-out value (seed mean)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # clear of the lines
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)


__all__ = ["comparison_lines", "distance_lines", "methods_report", "reliability_plot",
           "size_sweep_lines", "size_sweep_plot"]
