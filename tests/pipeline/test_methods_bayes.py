"""The methods preset's Bayesian posterior of one draw, end to end on a tiny model."""

import itertools

import numpy as np
from tiny_setup import write_tiny_model

from jaxirl.irl.demos import demos_from_texts, load_demos, save_demos
from jaxirl.pipeline.methods import MethodsConfig, bayes_for_draw
from jaxirl.report.methods import _bayes_lines


def test_bayes_for_draw_records_rounds_calibration_and_both_ood_scores(tmp_path):
    words = ("the cat", "a dog", "the dog", "a cat", "the mat", "a mat")
    prompts = [f"{a} {b} {c}" for a, b, c in itertools.product(words, ("sat", "ran"),
                                                                ("here", "there", "now"))]
    expert = [p + " good nice" for p in prompts]
    base = [p + (" bad awful" if i % 3 else " good bad") for i, p in enumerate(prompts)]
    folder = save_demos(demos_from_texts(prompts, expert, base, scorer="profanity"),
                        tmp_path / "demos")
    data = load_demos(folder)
    config = MethodsConfig()
    rewards, record = bayes_for_draw(str(write_tiny_model(tmp_path / "base")), data, config,
                                     tmp_path / "bayes", draw=0)

    assert rewards["test"].shape == (1, 2 * len(data["test"]))
    assert [len(record[m]["rounds"]) for m in ("laplace", "vi")] == [5, 5]
    traces = [r["trace"] for r in record["laplace"]["rounds"]]
    assert np.all(np.diff(traces) < 0)  # each round's data shrinks Σ
    pairwise = record["calibration"]["pairwise"]
    assert 0.0 <= pairwise["ece_platt_floor"] <= pairwise["ece"]
    for name in ("marker", "other_source"):
        ood = record["ood"][name]
        assert 0.0 <= ood["auroc"] <= 1.0 and 0.0 <= ood["mahalanobis_auroc"] <= 1.0
        assert ood["num_texts"] > 0
    lines = "\n".join(_bayes_lines({"draws": {"0": {"bayes": record}}}, tmp_path)).splitlines()
    header = next(i for i, line in enumerate(lines) if "marker AUROC, Mahalanobis" in line)
    cells = [float(c) for c in lines[header + 2].split("|")[2:6]]
    expected = [record["ood"][k][f] for f in ("auroc", "mahalanobis_auroc")
                for k in ("marker", "other_source")]
    np.testing.assert_allclose(cells, expected, atol=5e-4)
    # The text states this run's settings, not the defaults'.
    blob = {"config": {"bayes": {"rounds": 3}, "marker": "<M>", "marker_fraction": 0.4},
            "draws": {"0": {"bayes": record}}}
    text = "\n".join(_bayes_lines(blob, tmp_path))
    assert "(3 disjoint folds" in text and "`<M>` before and after 40% of them" in text
