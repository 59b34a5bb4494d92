"""The paper's model-size axis on the embedded default (``--preset size_sweep``, opt-in).

The paper relates model size to how recoverable the reward is (Pythia-70M against
410M). Here the embedded default is built at three sizes with the same recipe
(corpus, tokenizer, pretraining steps and tokens; only width and depth change),
the study runs up to the evaluation at each, and IRL accuracy, F1, Pearson,
STARC-A and seed correlation are plotted against the parameter count.

Accuracy and F1 are the evaluation's headline scorecard (``scorecards.learned``): each
seed's reward thresholded at the value fitted on the TRAINING texts only, as in the
main report. (Until the seventh session they were the IRL run's last epoch at
``IRLTrainConfig.threshold``, ``match_rate`` by default, which reads the held-out
toxic share; rows of that time carry no ``threshold_rule`` key.)

The sweep's workdir is a run folder of kind ``size_sweep`` (:mod:`jaxirl.runs`): new,
empty, or a size sweep's; each size's study is a pipeline workdir inside it
(``size_<name>``). Like the pipeline's workdir it holds no settings, so a rerun with
other settings resumes what it can (each study's stages are keyed by their settings).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from typing import Any

import numpy as np

from jaxirl import parallel, runs
from jaxirl.default.build import DefaultModelSpec, ensure_default_model
from jaxirl.errors import ConfigError

SIZES: dict[str, DefaultModelSpec] = {
    "0.36M": dataclasses.replace(DefaultModelSpec(), hidden_size=64, num_hidden_layers=2,
                                 intermediate_size=256),
    "1.3M": DefaultModelSpec(),
    "5.0M": dataclasses.replace(DefaultModelSpec(), hidden_size=256, num_hidden_layers=5,
                                num_attention_heads=8, intermediate_size=1024),
}
KIND = "size_sweep"
RESULTS_FILE = "size_sweep.json"
REPORT_FILE = "size_sweep.md"
PLOTS_DIR = "report_plots"
# The accuracy/F1 threshold rule of the rows this module writes (see the module docstring).
TRAIN_FIT = "train_fit"


def parameter_count(spec: DefaultModelSpec) -> int:
    """Parameters of the GPT-NeoX the spec builds (untied embeddings, biases, layer norms)."""
    h, i, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + (2 * h * i + i + h) + 4 * h
    return 2 * v * h + spec.num_hidden_layers * per_layer + 2 * h


def changed_default_model_fields(spec: DefaultModelSpec) -> list[str]:
    """Dotted names of the ``spec`` fields that differ from ``DefaultModelSpec()``."""
    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {k: v for key, sub in value.items()
                    for k, v in flat(sub, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    mine, default = (flat(dataclasses.asdict(s)) for s in (spec, DefaultModelSpec()))
    return [k for k in mine if mine[k] != default.get(k)]


def check_base(base) -> None:
    """Refuses a base config whose model settings the sweep would silently replace.

    Raises:
      ConfigError: ``base.model`` is set (every size would run that model, while the
        table labels it with each size's parameter count), or ``base.default_model``
        differs from the default recipe (the sweep sets the recipe of each size).
    """
    if base.model:
        raise ConfigError(f"StudyConfig.model must be '' for the size sweep, which builds the "
                          f"embedded default at each size; got {base.model!r}")
    changed = changed_default_model_fields(base.default_model)
    if changed:
        raise ConfigError(f"StudyConfig.default_model must be the default recipe for the size "
                          f"sweep, which sets it per size; it changes {', '.join(changed)}")


def outputs(sizes: dict[str, DefaultModelSpec] = SIZES) -> tuple[str, ...]:
    """The entries a sweep writes into its workdir (what ``overwrite`` removes)."""
    return (RESULTS_FILE, REPORT_FILE, PLOTS_DIR, runs.RUN_CONFIG_FILE,
            *(f"size_{name}" for name in sizes))


def _adopt_legacy_workdir(workdir: pathlib.Path, sizes: dict[str, DefaultModelSpec]) -> None:
    """Marks a sweep workdir written before it had a run marker as a sweep's own: every
    entry is one the sweep writes, and its results or a size's study are there."""
    if not workdir.is_dir() or (workdir / runs.MARKER).exists():
        return
    names = {p.name for p in workdir.iterdir()}
    studies = {f"size_{name}" for name in sizes}
    if names and names <= set(outputs(sizes)) and (RESULTS_FILE in names or names & studies):
        runs.RunFolder(workdir, runs.Manifest(KIND, {}, {}), (), "resumed").record()


def _mean_off_diagonal(matrix) -> float:
    values = [c for i, r in enumerate(matrix) for j, c in enumerate(r) if i != j]
    return float(np.mean(values)) if values else math.nan


def sweep_row(name: str, spec: DefaultModelSpec, evaluation: dict, build_seconds: float,
              study_seconds: float) -> dict[str, Any]:
    """One size's row from its study's ``evaluation.json``.

    Accuracy and F1 are the learned reward's scorecard (threshold fitted on the
    training texts, ``threshold_rule`` ``train_fit``), with the threshold-0 and
    match-rate values beside them; an evaluation without scorecards falls back to the
    IRL run's last epoch, labelled with its rule (``irl_threshold``).
    """
    spread = evaluation["spread"]
    row: dict[str, Any] = {"size": name, "parameters": parameter_count(spec),
                           "build_seconds": build_seconds, "study_seconds": study_seconds}
    learned = (evaluation.get("scorecards") or {}).get("learned")
    if learned is not None:
        metrics = learned["metrics"]
        row["threshold_rule"] = TRAIN_FIT
        for key in ("accuracy", "f1", "accuracy_threshold_zero", "f1_threshold_zero",
                    "accuracy_match_rate", "f1_match_rate"):
            if key in metrics:
                row[key] = metrics[key]["estimate"]
    else:
        row["threshold_rule"] = str(evaluation.get("irl_threshold"))
        row.update({k: spread[k]["mean"] for k in ("accuracy", "f1")})
    row.update({k: spread[k]["mean"] for k in ("roc_auc", "pearson_correlation", "spearman")})
    row["seed_correlation"] = _mean_off_diagonal(evaluation.get("seed_correlation", [[math.nan]]))
    if "distances" in evaluation:
        row["starc_a"] = evaluation["distances"]["spread"]["starc_a"]["mean"]
        row["starc_b"] = evaluation["distances"]["spread"]["starc_b"]["mean"]
    return row


def run_size_sweep(base, workdir: str | pathlib.Path, sizes: dict[str, DefaultModelSpec] = SIZES,
                   progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Builds each size, runs the study up to ``evaluate`` in ``workdir/size_<name>``, plots.

    ``workdir`` must be new, empty or a size sweep's (:mod:`jaxirl.runs`); ``overwrite``
    first removes what a sweep wrote there (its studies, results and report), nothing
    else. The config is saved as ``workdir/run_config.json`` before any work.

    Returns {"rows": [...], "report": path, "plot": path}; ``size_sweep.json`` and
    ``size_sweep.md`` (with ``report_plots/size_sweep.png``) are written into ``workdir``.

    Raises:
      ConfigError: see :func:`check_base`.
      RunFolderError: ``workdir`` is not a size sweep's (e.g. a pipeline workdir).
    """
    from jaxirl.pipeline.study import run_study
    from jaxirl.report.methods import size_sweep_lines, size_sweep_plot

    check_base(base)
    workdir = pathlib.Path(workdir)
    _adopt_legacy_workdir(workdir, sizes)
    run = runs.open_run(workdir, runs.Manifest(KIND, {}, {}), outputs(sizes), resume=True,
                        overwrite=overwrite)
    if run.finished:  # a rerun refreshes the results (finished stages are skipped)
        run.record(finished=False)
    with run.cleanup_on_error():
        if run.writes:
            runs.save_run_config(base, workdir)  # what --config_file reruns
        rows = []
        for name, spec in sizes.items():
            start = time.time()
            ensure_default_model(spec, progress=progress)
            built = time.time()
            config = dataclasses.replace(base, default_model=spec)
            studied = run_study(config, workdir / f"size_{name}", progress=progress,
                                until="evaluate")
            evaluation = json.loads(pathlib.Path(studied["evaluate"]["evaluation"]).read_text())
            rows.append(sweep_row(name, spec, evaluation, built - start, time.time() - built))
            if run.writes:
                runs.write_text_atomic(workdir / RESULTS_FILE,
                                       json.dumps({"rows": rows}, indent=1) + "\n")
        report = workdir / REPORT_FILE
        plot = None
        if run.writes:
            plot = size_sweep_plot(rows, workdir / PLOTS_DIR / "size_sweep.png")
            runs.write_text_atomic(report, "\n".join(
                size_sweep_lines(rows, f"{PLOTS_DIR}/size_sweep.png")) + "\n")
        parallel.sync("size sweep report written")
        run.finish()
    return {"rows": rows, "report": str(report), "plot": plot}


__all__ = ["SIZES", "TRAIN_FIT", "changed_default_model_fields", "check_base", "outputs",
           "parameter_count", "run_size_sweep", "sweep_row"]
