"""The paper's model-size axis on the embedded default (``--preset size_sweep``, opt-in).

The paper relates model size to how recoverable the reward is (Pythia-70M against
410M). Here the embedded default is built at three sizes with the same recipe
(corpus, tokenizer, pretraining steps and tokens; only width and depth change),
the study runs up to the evaluation at each, and IRL accuracy, F1, Pearson,
STARC-A and seed correlation are plotted against the parameter count.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import numpy as np

from jaxirl.default.build import DefaultModelSpec, ensure_default_model

SIZES: dict[str, DefaultModelSpec] = {
    "0.36M": dataclasses.replace(DefaultModelSpec(), hidden_size=64, num_hidden_layers=2,
                                 intermediate_size=256),
    "1.3M": DefaultModelSpec(),
    "5.0M": dataclasses.replace(DefaultModelSpec(), hidden_size=256, num_hidden_layers=5,
                                num_attention_heads=8, intermediate_size=1024),
}


def parameter_count(spec: DefaultModelSpec) -> int:
    """Parameters of the GPT-NeoX the spec builds (untied embeddings, biases, layer norms)."""
    h, i, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + (2 * h * i + i + h) + 4 * h
    return 2 * v * h + spec.num_hidden_layers * per_layer + 2 * h


def run_size_sweep(base, workdir: str | pathlib.Path, sizes: dict[str, DefaultModelSpec] = SIZES,
                   progress: bool = True) -> dict[str, Any]:
    """Builds each size, runs the study up to ``evaluate`` in ``workdir/size_<name>``, plots.

    Returns {"rows": [...], "report": path}; ``size_sweep.json`` and ``size_sweep.md``
    (with ``report_plots/size_sweep.png``) are written into ``workdir``.
    """
    from jaxirl.pipeline.study import run_study
    from jaxirl.report.methods import size_sweep_lines, size_sweep_plot

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, spec in sizes.items():
        start = time.time()
        ensure_default_model(spec, progress=progress)
        built = time.time()
        config = dataclasses.replace(base, default_model=spec)
        outputs = run_study(config, workdir / f"size_{name}", progress=progress, until="evaluate")
        evaluation = json.loads(pathlib.Path(outputs["evaluate"]["evaluation"]).read_text())
        spread = evaluation["spread"]
        row = {"size": name, "parameters": parameter_count(spec),
               "build_seconds": built - start, "study_seconds": time.time() - built,
               **{k: spread[k]["mean"] for k in ("accuracy", "f1", "roc_auc",
                                                  "pearson_correlation", "spearman")}}
        row["seed_correlation"] = float(np.mean(
            [c for i, r in enumerate(evaluation.get("seed_correlation", [[np.nan]]))
             for j, c in enumerate(r) if i != j] or [np.nan]))
        if "distances" in evaluation:
            row["starc_a"] = evaluation["distances"]["spread"]["starc_a"]["mean"]
            row["starc_b"] = evaluation["distances"]["spread"]["starc_b"]["mean"]
        rows.append(row)
        (workdir / "size_sweep.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    plot = size_sweep_plot(rows, workdir / "report_plots" / "size_sweep.png")
    report = workdir / "size_sweep.md"
    report.write_text("\n".join(size_sweep_lines(rows, "report_plots/size_sweep.png")) + "\n")
    return {"rows": rows, "report": str(report), "plot": plot}


__all__ = ["SIZES", "parameter_count", "run_size_sweep"]
