"""The interpretability part of ``report.md`` (and the tables of ``interp_tables.md``).

Reads the interpretability stage's ``interp_results.json``: SAE quality, the implicit
reward model against the raw-activation probe, offline feature labels with their
random-direction control (Benjamini-Hochberg within each set), and the firing-rate
test on held-out texts with intervals over prompts.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

from jaxirl.report import verdicts
from jaxirl.report.markdown import bootstrap_p_text, fmt, fmt_ci, fmt_sig, image, table

SET_NAMES = {"toxic_linked": "SAE toxic-linked", "clean_linked": "SAE clean-linked",
             "others": "SAE other (alive)", "random_toxic_linked": "random toxic-linked",
             "random_others": "random other"}


def sae_table(res: dict) -> str:
    rows = [[r["layer"], f"{r['dict_multiple']}×", r.get("num_features"), fmt(r.get("fve")),
             fmt_sig(r.get("mse")), fmt(r.get("l0"), 1), fmt(r.get("dead_fraction"))]
            for r in res["sae"]]
    return table(["layer", "dictionary", "features", "held-out FVE", "MSE", "L0", "dead share"],
                 rows)


def _dictionaries(lab: dict) -> str:
    """Which SAEs the labels read (the largest dictionary of each layer)."""
    m = lab.get("dict_multiple")
    return f"{m}× dictionaries" if m is not None else "largest dictionaries"


def labels_table(lab: dict) -> str:
    k = lab.get("top_k")
    rows = [[f"SAE features (alive, {_dictionaries(lab)})", lab.get("num_alive"), lab.get("num_toxic_linked"),
             fmt(lab.get("toxic_linked_fraction_sae")),
             f"{lab.get('num_toxic_linked_uncorrected')} (~{fmt(lab.get('expected_false_positives_uncorrected'), 0)} by chance)",
             fmt(lab.get("mean_flagged_share_sae")), fmt(lab.get("mean_contexts_sae"), 1),
             fmt(lab.get("context_norm_ratio_sae"), 2)]]
    if "num_random_features" in lab:
        rows.append(["random directions", lab.get("num_random_features"),
                     round(lab["toxic_linked_fraction_random"] * lab["num_random_features"]),
                     fmt(lab.get("toxic_linked_fraction_random")), "",
                     fmt(lab.get("mean_flagged_share_random")),
                     fmt(lab.get("mean_contexts_random"), 1),
                     fmt(lab.get("context_norm_ratio_random"), 2)])
    return table(["feature set", "features", f"toxic-linked (BH, FDR {fmt(lab.get('fdr'), 2)})",
                  "share", "p < 0.01 uncorrected", f"mean flagged share of top-{k} contexts",
                  "mean contexts", "top-context norm / mean norm"], rows)


def _clean_linked_note(lab: dict) -> str:
    """Whether the depletion test can flag clean-linked features at all, from its floor."""
    floor, fdr = lab.get("min_depletion_p"), lab.get("fdr")
    setting = (f"with p0 = {fmt(lab.get('base_rate'))} and {lab.get('top_k')} contexts, a "
               f"feature with no flagged context has p = (1 − p0)^k = {fmt(floor)}")
    if floor is not None and fdr is not None and floor >= fdr:
        return (f"Clean-linked features cannot be detected with these settings: {setting}, so "
                "the depletion test never reaches significance; the clean-linked set is left "
                "out below.")
    return (f"Clean-linked features (depleted of flagged contexts, BH at FDR {fmt(fdr, 2)}): "
            f"{lab.get('num_clean_linked', 'n/a')} SAE features; {setting}.")


def firing_table(fire: dict) -> str:
    if "not_computed" in fire:
        return f"Not computed: {fire['not_computed']}."
    rows = []
    for name, label in SET_NAMES.items():
        g = fire.get(name)
        if not g or not g.get("num_features"):
            continue
        rows.append([label, g["num_features"], fmt_sig(g.get("rate_on_toxic")),
                     fmt_sig(g.get("rate_on_clean")), fmt_ci(g.get("difference"), 4),
                     fmt_ci(g.get("selectivity")), bootstrap_p_text(g.get("p_value"), g.get("p_floor"))])
    return table(["feature set", "features", "rate on toxic", "rate on clean",
                  "difference [95% CI]", "mean per-feature selectivity (t−c)/(t+c) [95% CI]",
                  "bootstrap p"], rows)


def _difference(lab: dict) -> dict:
    return {"estimate": lab.get("toxic_linked_fraction_difference", math.nan),
            "low": lab.get("toxic_linked_fraction_difference_low", math.nan),
            "high": lab.get("toxic_linked_fraction_difference_high", math.nan)}


def _labels_verdict(lab: dict) -> str:
    d = _difference(lab)
    return verdicts.sae_vs_random(lab.get("toxic_linked_fraction_sae"),
                                  lab.get("toxic_linked_fraction_random"), d["low"], d["high"])


def interp_findings(res: dict) -> str:
    """The findings block's line on interpretability."""
    lab, fire = res["feature_labels"], res["firing_rate_test"]
    irm = res.get("irm_spearman", {})
    text = (f"{lab.get('num_toxic_linked')} of {lab.get('num_alive')} alive SAE features "
            f"(the {_dictionaries(lab)}) are "
            f"toxic-linked after Benjamini–Hochberg (FDR {fmt(lab.get('fdr'), 2)}; share "
            f"{fmt(lab.get('toxic_linked_fraction_sae'))}) against "
            f"{fmt(lab.get('toxic_linked_fraction_random'))} of random directions (difference "
            f"{fmt_ci(_difference(lab))}): {_labels_verdict(lab)} (Top contexts sit at "
            f"{fmt(lab.get('context_norm_ratio_random'), 2)}× the layer's mean activation norm "
            f"for random directions, {fmt(lab.get('context_norm_ratio_sae'), 2)}× for SAE "
            "features: top-k selection favours high-norm tokens.)")
    if "sae_minus_random_selectivity" in fire:
        diff = fire["sae_minus_random_selectivity"]
        text += (f" {verdicts.firing_vs_random(diff).rstrip('.')} (selectivity difference "
                 f"{fmt_ci(diff)}).")
    if irm:
        text += (f" The implicit reward model (probe on SAE codes) reaches Spearman "
                 f"{fmt_ci(irm.get('sae'))} vs {fmt_ci(irm.get('raw'))} for raw activations "
                 f"(gap {fmt_ci(irm.get('difference'))}).")
    return text


def interp_section(res: dict, rel: pathlib.Path | str) -> list[str]:
    """The report's interpretability section; ``rel`` is the stage folder relative to the
    report (its PNGs live there)."""
    lab, fire = res["feature_labels"], res["firing_rate_test"]
    irm, raw = res["irm"]["sae"], res["irm"]["raw"]
    ci = res.get("irm_spearman", {})
    probe_rows = [["SAE codes (the IRM)", fmt_ci(ci.get("sae")), irm.get("ridge_kendall"),
                   irm.get("logistic_accuracy")],
                  ["raw activations (baseline)", fmt_ci(ci.get("raw")), raw.get("ridge_kendall"),
                   raw.get("logistic_accuracy")]]
    lines = [
        "## Interpretability: is the reward visible inside the policy?", "",
        f"Layers that RLHF moved most (summed Frobenius norm of the change): {res['layers']}; "
        f"{res['num_train_texts']} training and {res['num_test_texts']} held-out texts"
        f" ({res.get('num_test_groups', 'n/a')} held-out prompts, the bootstrap's unit).", "",
        sae_table(res), "", image("SAE metrics", f"{rel}/sae_metrics.png"), "",
        "### Implicit reward model", "",
        "A ridge probe on pooled SAE codes (the IRM) against the same probe on raw "
        "activations, both fit to the ground truth's reward on the training texts (a "
        "supervised probe, unlike the IRL reward, which never sees the ground truth), "
        "held-out texts:", "",
        table(["probe input", "Spearman [95% CI]", "Kendall", "logistic accuracy"], probe_rows),
        "", f"Spearman gap (IRM − raw): {fmt_ci(ci.get('difference'))}.", "",
        image("IRM vs true reward", f"{rel}/irm_scatter.png"), "",
        "### Feature labels: SAE features against random directions", "",
        f"Labels and the firing-rate test read the {_dictionaries(lab)} of each layer. "
        f"Each feature's top-{lab.get('top_k')} contexts (on the training texts, one per text) "
        f"are flagged by the ground-truth scorer or an offensive-word list; a one-sided binomial "
        f"test against the flag rate of contexts around a random token of a random text "
        f"(p0 = {fmt(lab.get('base_rate'))}) gives a "
        "p-value per feature, corrected with Benjamini–Hochberg within each set. Random unit "
        "directions in the centred activation space go through the same procedure.", "",
        labels_table(lab), "",
        f"**Verdict:** {_labels_verdict(lab)} Difference in toxic-linked share (SAE − random): "
        f"{fmt_ci(_difference(lab))} (bootstrap over features).", "",
        *_why_random_wins(lab), "",
        _clean_linked_note(lab), "",
        "### Firing-rate test (held-out texts)", "",
        "Rates are shares of tokens on which a feature's code exceeds half its maximum. "
        "Intervals and p-values come from a bootstrap over held-out prompts (not over "
        "features, which are not independent).", "",
        firing_table(fire), ""]
    if "sae_minus_random_selectivity" in fire:
        diff = fire["sae_minus_random_selectivity"]
        lines += [f"**Verdict:** {verdicts.firing_vs_random(diff)} Selectivity of toxic-linked "
                  f"SAE features minus toxic-linked random directions: {fmt_ci(diff)}.", ""]
    if "not_computed" not in fire:
        lines += [image("Firing rates", f"{rel}/firing_rates.png"), ""]
    if "irm_vs_irl" in res:
        c = res["irm_vs_irl"]
        lines += [f"IRM vs IRL reward on the same held-out texts: Pearson {fmt(c.get('pearson'))}, "
                  f"Spearman {fmt(c.get('spearman'))}, agreement on which texts are toxic "
                  f"{fmt(c.get('agreement'))}.", ""]
    return lines


def _why_random_wins(lab: dict) -> list[str]:
    """What the labels' own diagnostics say about SAE features vs random directions."""
    sae_l, rnd_l = (lab.get(k, {}) for k in ("toxic_linked_fraction_sae_by_layer",
                                             "toxic_linked_fraction_random_by_layer"))
    rows = [[layer, fmt(sae_l.get(layer)), fmt(rnd_l.get(layer))] for layer in sae_l]
    return [
        "What drives the comparison: a feature's top contexts are the extreme tail of a "
        "linear projection (the SAE's ReLU and bias do not change the order), so the test "
        "asks whether a direction's tail lands in offensive text. A random direction's tail "
        "is made of the tokens with the largest centred activation norm: its top contexts "
        f"sit at {fmt(lab.get('context_norm_ratio_random'), 2)}× the layer's mean norm, SAE "
        f"features' at {fmt(lab.get('context_norm_ratio_sae'), 2)}×, and a direction's flagged "
        f"share rises with that norm (Spearman {fmt(lab.get('norm_flagged_spearman_random'), 2)} "
        f"over random directions, {fmt(lab.get('norm_flagged_spearman_sae'), 2)} over SAE "
        "features). In the layers where the policy's high-norm activations sit in offensive "
        "contexts, random directions pass more often (table below); SAE features spread over "
        "specific, mostly ordinary token patterns. Few activations do not explain it: "
        f"{fmt(100 * lab.get('share_full_contexts_sae', math.nan), 1)}% of SAE features have "
        f"all {lab.get('top_k')} contexts.", "",
        table(["layer", "SAE toxic-linked share", "random toxic-linked share"], rows)]


def results_tables(res: dict[str, Any]) -> list[str]:
    """Label and firing tables for ``interp_tables.md``."""
    return [labels_table(res["feature_labels"]), "", firing_table(res["firing_rate_test"])]


__all__ = ["interp_findings", "interp_section", "results_tables", "sae_table"]
