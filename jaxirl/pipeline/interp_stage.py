"""The interpretability stage on one (base, RLHF) model pair and a text set.

Layer selection → MLP-output capture on the RLHF policy → one SAE per layer and
dictionary size → the Implicit Reward Model (probe on SAE codes) against the raw
activation baseline → offline feature labels → the firing-rate test → IRM vs
IRL agreement. Writes ``interp_results.json``, ``interp_tables.md``, three PNGs,
and one sae-lens folder per SAE (``sae_layer<L>_x<M>/``, see
:mod:`jaxirl.interp.sae_lens_format`, with its per-epoch ``train_metrics.jsonl``) into
``out_dir``, and keeps each SAE's training state there (Orbax, ``sae_checkpoints/``): a
call after a kill continues every SAE from it, with the results of an uninterrupted call.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jax.sharding import Mesh

from jaxirl import parallel
from jaxirl.checkpoint import Checkpointer
from jaxirl.errors import ConfigError
from jaxirl.generation.text import decode_threads
from jaxirl.interp import plots
from jaxirl.interp.activations import capture_mlp_activations, tokenize_texts
from jaxirl.interp.compare import RewardComparison, compare_rewards, share_threshold
from jaxirl.interp.config import InterpConfig
from jaxirl.interp.features import label_features, offensive_words
from jaxirl.interp.firing import firing_rate_test
from jaxirl.interp.irm import fit_implicit_reward_model
from jaxirl.interp.layers import layer_divergences, select_divergent_layers
from jaxirl.interp.sae import train_sae
from jaxirl.interp.sae_lens_format import mlp_out_hook_name, save_sae
from jaxirl.irl.bootstrap import spearman_intervals
from jaxirl.metrics_log import MetricsLog
from jaxirl.models.hf_io import load_pretrained, load_tokenizer
from jaxirl.report.interp_section import results_tables, sae_table
from jaxirl.report.markdown import image, table

# Where each SAE's training state is kept (one folder per SAE, named as its sae-lens one).
SAE_CHECKPOINTS = "sae_checkpoints"


def _to_builtin(x: Any) -> Any:
    if dataclasses.is_dataclass(x):
        return _to_builtin(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): _to_builtin(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_builtin(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size <= 64 else f"<array {x.shape}>"
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


def run_interp(config: InterpConfig, out_dir: str | pathlib.Path, base_dir: str, tuned_dir: str,
               train_texts: Sequence[str], test_texts: Sequence[str], scorer: Any,
               irl_test_rewards: np.ndarray | Callable[[], np.ndarray] | None = None,
               extra_words: Sequence[str] = (),
               test_groups: Sequence | None = None, progress: bool = True,
               mesh: Mesh | None = None
               ) -> dict[str, Any]:
    """Runs the stage; returns the results also written to ``interp_results.json``.

    ``experiments/interp.py`` and the study both call it.

    Args:
      config: the stage's settings.
      out_dir: where results and plots go.
      base_dir, tuned_dir: HF folders of the base model and its RLHF policy.
      train_texts, test_texts: texts to fit on and to evaluate on.
      scorer: the ground-truth scorer (P(toxic) and ``log_odds``).
      irl_test_rewards: the IRL reward of ``test_texts`` (for IRM vs IRL), optional; or
        a function that returns it, called only for that last comparison (the study
        starts this stage while IRL still runs).
      extra_words: offensive words to add to better-profanity's list.
      test_groups: prompt of each test text: intervals resample prompts (None: texts).
      progress: progress bars for activation capture and SAE training.
      mesh: the device mesh that activation capture and SAE training split their
        batches over (default: one device).
    """
    out = pathlib.Path(out_dir)
    main = parallel.is_main_process()
    if main:
        out.mkdir(parents=True, exist_ok=True)
    _, base_params = load_pretrained(base_dir)
    model, params = load_pretrained(tuned_dir)
    if config.max_tokens > model.config.max_position_embeddings:
        raise ConfigError(f"InterpConfig.max_tokens {config.max_tokens} exceeds the "
                          f"{model.config.max_position_embeddings}-token context of '{tuned_dir}'")
    tokenizer = load_tokenizer(tuned_dir)
    divergences = layer_divergences(base_params, params)
    layers = select_divergent_layers(base_params, params, config.num_layers)

    r_train, r_test = scorer.log_odds(list(train_texts)), scorer.log_odds(list(test_texts))
    # Clean unless below the boundary: the comparisons call ``r < 0`` toxic too.
    y_train, y_test = r_train >= 0, r_test >= 0
    ids, mask = tokenize_texts(list(train_texts), tokenizer, config.max_tokens)
    # Bars and metrics files on process 0 only; every process computes.
    progress = progress and main
    cap = capture_mlp_activations(model, params, ids, mask, layers, mesh=mesh,
                                  progress=progress and "activations: train")
    ids_t, mask_t = tokenize_texts(list(test_texts), tokenizer, config.max_tokens)
    cap_t = capture_mlp_activations(model, params, ids_t, mask_t, layers, mesh=mesh,
                                    progress=progress and "activations: test")

    def train_one(job: tuple[int, int], bar: bool) -> tuple[Any, dict]:
        multiple, layer = job
        name = f"sae_layer{layer}_x{multiple}"
        sae_cfg = dataclasses.replace(config.sae, dict_multiple=multiple)
        # A call after a kill continues each SAE from its checkpoint (a finished one is
        # read back), and its metrics stream keeps the epochs that checkpoint had seen.
        # One TensorBoard run per SAE: a resumed writer hides every later event of its
        # run, so SAEs sharing one would hide each other's epochs.
        ckpt = Checkpointer(out / SAE_CHECKPOINTS / name, max_to_keep=1)
        log_file = (MetricsLog(out / name / "train_metrics.jsonl", tag_prefix=f"{name}/",
                               tensorboard_dir=out / "tensorboard" / name,
                               resume_step=ckpt.latest_step() or 0) if main
                    else contextlib.nullcontext())
        try:
            with log_file as metrics_log:
                sae, history = train_sae(cap.activations[layer], sae_cfg,
                                         cap_t.activations[layer], mesh=mesh,
                                         metrics_log=metrics_log, progress=bar and name,
                                         checkpointer=ckpt)
        finally:
            ckpt.close()
        if main:
            save_sae(out / name, sae, hook_name=mlp_out_hook_name(layer),
                     model_name=str(tuned_dir), context_size=config.max_tokens,
                     extra_metadata={"jaxirl_eval": _to_builtin(history["eval"])})
        return sae, history["eval"]

    jobs = [(multiple, layer) for multiple in config.dict_multiples for layer in layers]
    trained = _train_in_threads(jobs, train_one, decode_threads(mesh), progress)
    sae_metrics = {(layer, m): trained[m, layer][1] for m, layer in jobs}
    saes_by_size = {m: {layer: trained[m, layer][0] for layer in layers}
                    for m in config.dict_multiples}
    saes = saes_by_size[max(config.dict_multiples)]

    words = frozenset(offensive_words() | {w.lower() for w in extra_words})
    # Labelled on the training texts, tested on held-out ones.
    groups = np.arange(len(test_texts)) if test_groups is None else np.asarray(test_groups)

    toxic_test = ~np.asarray(y_test, bool)
    # Too few held-out texts can all fall on one side: the test is then reported as not
    # computable, and the rest of the stage (and the study) goes on.
    no_firing = None if toxic_test.any() and not toxic_test.all() else (
        f"the held-out texts are all {'toxic' if toxic_test.all() else 'clean'} "
        f"({int(toxic_test.sum())} toxic of {toxic_test.size}); the test compares the two")

    def labels_and_firing():
        labels = label_features(cap, saes, tokenizer, scorer, top_k=config.top_k_contexts,
                                words=words)
        if no_firing is not None:
            return labels, None
        return labels, firing_rate_test(cap_t, saes, labels, toxic_test, groups=groups)

    # The feature labels do not depend on the IRM fit: on a one-device CPU run they run
    # beside it, on the other core (mostly numpy and XLA, outside the GIL; the same
    # numbers either way).
    pool = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxirl-labels")
            if decode_threads(mesh) > 1 else None)
    labelled = pool.submit(labels_and_firing) if pool is not None else None
    try:
        # The logistic (preferred vs rejected) probe needs both classes in both splits.
        both = len(set(y_train.tolist())) == 2 and len(set(y_test.tolist())) == 2
        fit = fit_implicit_reward_model(model, params, tokenizer, layers, saes, list(train_texts),
                                        r_train, list(test_texts), r_test,
                                        y_train if both else None, y_test if both else None,
                                        max_tokens=config.max_tokens, pooling=config.pooling,
                                        target_transform=config.target_transform,
                                        train_activations=cap, test_activations=cap_t)
        # The stage's own capture is the IRM's (same tokenization, layers and forward): no
        # second pass over the texts.
        irm_test, raw_test = fit.irm.predict(cap_t), fit.baseline.predict(cap_t)
        labels, firing = labelled.result() if labelled is not None else labels_and_firing()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    # A text is toxic below true log-odds 0; in a probe's (transformed) units that boundary
    # sits at the transform's image of 0, which keeps the agreement numbers comparable.
    irm_zero, raw_zero = (float(m.target(np.zeros(1))[0]) for m in (fit.irm, fit.baseline))
    irm_gap = spearman_intervals({"sae": irm_test, "raw": raw_test}, r_test, groups)
    if callable(irl_test_rewards):
        irl_test_rewards = irl_test_rewards()
    comparisons = {k: _to_builtin(v) for k, v in reward_comparisons(
        irm_test, raw_test, r_test, irm_zero, raw_zero, irl_test_rewards).items()}

    results: dict[str, Any] = {
        "layers": layers,
        "layer_divergence": {str(k): float(v) for k, v in divergences.items()},
        "sae": [{"layer": layer, "dict_multiple": m, **_to_builtin(metrics)}
                for (layer, m), metrics in sae_metrics.items()],
        "irm": _to_builtin(fit.summary()),
        "irm_vs_true": comparisons["irm_vs_true"],
        "raw_vs_true": comparisons["raw_vs_true"],
        # Labels and the firing test read the largest dictionaries only.
        "feature_labels": {**_to_builtin(labels.summary()),
                           "dict_multiple": max(config.dict_multiples)},
        "firing_rate_test": ({"not_computed": no_firing} if firing is None else
                             _to_builtin(firing.summary())),
        "irm_spearman": {k: v.as_dict() for k, v in irm_gap.items()},
        "num_test_groups": int(len(set(groups.tolist()))),
        "target_transform": config.target_transform,
        "num_train_texts": len(train_texts),
        "num_test_texts": len(test_texts),
    }
    if irl_test_rewards is not None:
        results["irm_vs_irl"] = comparisons["irm_vs_irl"]
        results["irl_vs_true"] = comparisons["irl_vs_true"]
    if not main:  # process 0 writes the files
        return results
    plots.plot_sae_metrics(sae_metrics, out / "sae_metrics.png")
    # Both probes predict in the target transform's units (one transform, fit on r_train):
    # plot the truth in those units too, so that y = x means a perfect probe.
    units = "" if config.target_transform == "none" else f" ({config.target_transform} units)"
    plots.plot_irm_scatter(irm_test, fit.irm.target(r_test), out / "irm_scatter.png",
                           xlabel=f"ground-truth reward{units}",
                           ylabel=f"IRM predicted reward{units}", baseline=raw_test,
                           spearman=results["irm_spearman"])
    if firing is not None:
        plots.plot_firing_rates(firing, out / "firing_rates.png", labels=labels)
    (out / "interp_results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "interp_tables.md").write_text(results_markdown(results))
    return results


def reward_comparisons(irm_test: np.ndarray, raw_test: np.ndarray, true_test: np.ndarray,
                       irm_zero: float, raw_zero: float,
                       irl_test: np.ndarray | None = None) -> dict[str, RewardComparison]:
    """The stage's reward comparisons on N held-out texts, each cut at a stated threshold.

    The truth (log-odds of clean) is always cut at its own decision boundary, 0: it calls
    the texts with ``true_test < 0`` toxic (the labels the probes and the firing-rate test
    use), so each agreement with the truth is an accuracy on the true labels, never a
    threshold refitted on the held-out truth to the other reward's toxic share.

    Args:
      irm_test, raw_test: float [N], the IRM's and the raw-activation probe's predictions,
        in the target transform's units.
      true_test: float [N], the ground truth's log-odds.
      irm_zero, raw_zero: each probe's image of true log-odds 0 (its boundary).
      irl_test: float [N], the IRL reward, optional.

    Returns:
      ``irm_vs_true`` and ``raw_vs_true`` (probe at its zero, truth at 0); with ``irl_test``
      also ``irl_vs_true`` (the IRL reward, whose offset means nothing, cut where it calls
      as many texts toxic as the truth does at 0) and ``irm_vs_irl`` (the IRL reward cut
      where it calls as many toxic as the IRM does at its zero).
    """
    true_test = np.asarray(true_test, np.float64)
    out = {"irm_vs_true": compare_rewards(irm_test, true_test, irm_zero, threshold_b=0.0),
           "raw_vs_true": compare_rewards(raw_test, true_test, raw_zero, threshold_b=0.0)}
    if irl_test is not None:
        irl_test = np.asarray(irl_test, np.float64)
        out["irm_vs_irl"] = compare_rewards(irm_test, irl_test, irm_zero)
        irl_zero = share_threshold(irl_test, int((true_test < 0).sum()))
        out["irl_vs_true"] = compare_rewards(irl_test, true_test, irl_zero, threshold_b=0.0)
    return out


def _train_in_threads(jobs: list[tuple[int, int]], train_one, threads: int,
                      progress: bool) -> dict[tuple[int, int], Any]:
    """``{job: train_one(job, bar)}`` for (dict multiple, layer) jobs, on ``threads`` threads.

    A small SAE's step is a few small ops that XLA:CPU runs on one core, so two SAEs in
    two threads train about twice as fast (x1, 30k tokens: 2.3 s one after the other,
    1.0 s side by side; x8: 8.1 s against 6.9 s), each with the same result: an SAE
    depends only on its activations and its config's seed. The largest dictionaries
    start first, so that the threads finish together; one bar per SAE only when one
    thread runs them.
    """
    if threads <= 1:
        return {job: train_one(job, progress) for job in jobs}
    order = sorted(jobs, key=lambda job: -job[0])
    pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="jaxirl-sae")
    try:
        trained = dict(zip(order, pool.map(lambda job: train_one(job, False), order), strict=True))
    except BaseException:
        # Ctrl-C or an error: no queued SAE starts, and the caller does not wait for the
        # running ones (the launcher exits at once, see jaxirl.cli.exit_process).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return trained


def results_markdown(results: dict[str, Any]) -> str:
    """The stage's results (as returned by :func:`run_interp`) as markdown tables."""

    def corr_row(name, c):
        return [name, c["spearman"], c["pearson"], c["kendall"], c["agreement"]]

    irm, raw = results["irm"]["sae"], results["irm"]["raw"]
    rows = [corr_row("IRM (SAE codes) vs true", results["irm_vs_true"]),
            corr_row("baseline (raw activations) vs true", results["raw_vs_true"])]
    for key, name in (("irl_vs_true", "IRL reward vs true"), ("irm_vs_irl", "IRM vs IRL reward")):
        if key in results:
            rows.append(corr_row(name, results[key]))
    keys = ("logistic_accuracy", "logistic_roc_auc", "num_features")
    lines = [
        "# Interpretability results", "",
        f"Layers studied (most moved by RLHF first): {results['layers']}; "
        f"{results['num_train_texts']} train / {results['num_test_texts']} held-out texts; "
        f"ridge probes fit to the true reward with target transform "
        f"'{results.get('target_transform', 'none')}'.", "",
        "## Implicit Reward Model (held-out texts)", "",
        "Pearson is against the true reward's log-odds; the rank statistics do not depend "
        "on the target transform. Toxic/clean agreement cuts the truth at its decision "
        "boundary, log-odds 0, and each probe at its image of 0; the IRL reward, whose offset "
        "means nothing, is cut where it calls as many texts toxic as the truth (vs true) or "
        "the IRM (vs IRM) does.", "",
        table(["rewards compared", "Spearman", "Pearson", "Kendall", "toxic/clean agreement"],
              rows), "",
        table(["probe input", *keys], [["SAE codes", *[irm.get(k) for k in keys]],
                                       ["raw activations", *[raw.get(k) for k in keys]]]), "",
        image("IRM vs true reward", "irm_scatter.png"), "",
        "## Sparse autoencoders (held-out tokens)", "",
        sae_table(results), "", image("SAE metrics", "sae_metrics.png"), "",
        "## Feature labels and the firing-rate test", "",
        *results_tables(results), "", image("Firing rates", "firing_rates.png"), "",
        table(["statistic", "value"], list(results["feature_labels"].items())), ""]
    return "\n".join(lines)
