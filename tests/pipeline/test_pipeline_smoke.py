"""A minutes-scale run of the whole pipeline: every artefact exists and holds finite numbers;
killed in the middle of IRL, it resumes and ends with the same numbers."""

import json
import math
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).parent


def _run(script, workdir, cache, *extra, timeout=1500):
    # A guard against hangs, not a speed test: a few minutes on a quiet 2-core machine,
    # but 14 minutes were measured on a shared one at load 16. Two PPO seeds, so that the
    # extra seed's stages run in the study's second lane.
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAXIRL_CACHE=str(cache))
    return subprocess.run([sys.executable, str(script), "--preset", "smoke", "--rlhf_seeds", "2",
                           "--workdir", str(workdir), *extra], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, float):
        yield obj


def _evaluation(workdir):
    (path,) = workdir.glob("evaluate-*/evaluation.json")
    blob = json.loads(path.read_text())
    blob.pop("seconds_per_epoch")
    return blob


def _report_without_timings(workdir):
    text = (workdir / "report.md").read_text()
    text = re.sub(r"\| \w+ \| (ran|skipped \(done earlier\)) \| [\d.]+ \|", "", text)
    text = re.sub(r"[\d.]+ s per epoch", "", text)
    return re.sub(r"; \d+ s\.", "", text)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke study, run first with ``--stages prepare,rlhf`` and then whole (the
    second run continues from the first's finished stages)."""
    root = tmp_path_factory.mktemp("pipeline")
    first = _run(ROOT / "experiments" / "pipeline.py", root / "full", root / "cache",
                 "--stages", "prepare,rlhf")
    assert first.returncode == 0, first.stderr[-4000:]
    marker = json.loads((root / "full" / "jaxirl_run.json").read_text())
    (root / "stages_prepare_rlhf.json").write_text(json.dumps(
        {"stdout": first.stdout, "entries": sorted(p.name.split("-")[0]
                                                   for p in (root / "full").iterdir()),
         "finished": marker["finished"]}))
    out = _run(ROOT / "experiments" / "pipeline.py", root / "full", root / "cache")
    assert out.returncode == 0, out.stderr[-4000:]
    return root


def test_stages_prepare_rlhf_runs_only_those_stages(smoke):
    first = json.loads((smoke / "stages_prepare_rlhf.json").read_text())
    assert "stages prepare, rlhf in" in first["stdout"]
    assert first["entries"] == ["jaxirl_run.json", "prepare", "rlhf", "run_config.json"]
    # Two stages of ten: the workdir's marker says unfinished; the whole run then finished it.
    assert first["finished"] is False
    assert json.loads((smoke / "full" / "jaxirl_run.json").read_text())["finished"] is True
    # The whole study then reused both: one folder each.
    workdir = smoke / "full"
    assert len(list(workdir.glob("prepare-*"))) == 1 and len(list(workdir.glob("rlhf-*"))) == 1


def test_every_artefact_exists_with_finite_numbers(smoke):
    workdir = smoke / "full"
    report = (workdir / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 9
    for image in images:
        png = (workdir / image).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, image
    for name in ("rlhf", "rlhf_learned"):
        (folder,) = workdir.glob(f"{name}-*")
        summary = json.loads((folder / "summary.json").read_text())
        assert all(math.isfinite(x) for x in _finite_numbers(summary))
        assert (folder / "policy" / "model.safetensors").is_file()
    # The extra PPO seed's runs, with the true and the learned reward (the second lane).
    for name in ("rlhf_seeds", "rlhf_learned_seeds"):
        (folder,) = workdir.glob(f"{name}-*")
        (summary,) = folder.glob("seed_*/summary.json")
        assert all(math.isfinite(x) for x in _finite_numbers(json.loads(summary.read_text())))
    assert ("evaluate, rlhf_seeds, rlhf_learned_seeds and interp ran in background threads"
            in report)
    # The learned-reward runs copied the evaluation before training of the true-reward
    # run of their PPO seed (the same base model, prompts and sampling seed).
    for true, learned in (("rlhf-*", "rlhf_learned-*"),
                          ("rlhf_seeds-*/seed_*", "rlhf_learned_seeds-*/seed_*")):
        (true_run,), (learned_run,) = workdir.glob(true), workdir.glob(learned)
        copied = json.loads((learned_run / "eval_before.json").read_text())
        assert pathlib.Path(copied.pop("copied_from")).resolve() == true_run.resolve()
        assert copied == json.loads((true_run / "eval_before.json").read_text())
    evaluation = _evaluation(workdir)
    assert evaluation["num_seeds"] == 2
    assert all(math.isfinite(x) for x in _finite_numbers(evaluation["spread"]))
    # The white-box log-ratio reward is scored under the IRL seeds' own threshold rule (the
    # report's gap compares the two); recomputed here from the recorded rewards.
    from jaxirl.irl.evaluate import evaluate_pairs

    log_ratio, true = evaluation["log_ratio"], evaluation["true_rewards"]
    p = len(true) // 2
    assert evaluation["irl_threshold"] == "match_rate" == log_ratio["threshold_rule"]
    want = evaluate_pairs(log_ratio["rewards"][:p], log_ratio["rewards"][p:], true[:p], true[p:],
                          threshold="match_rate").as_dict()
    for key in ("accuracy", "f1", "threshold"):
        assert log_ratio["metrics"][key] == pytest.approx(want[key]), key
    (interp,) = workdir.glob("interp-*/interp_results.json")
    interp = json.loads(interp.read_text())
    assert all(math.isfinite(r["fve"]) for r in interp["sae"])
    assert "accuracy" in report and "Pythia-70M" in report


_INTERVAL = re.compile(r"(-?\d+\.?\d*)%? \[(-?\d+\.?\d*)%?, (-?\d+\.?\d*)%?\]")


def test_report_opens_with_findings_baselines_and_intervals(smoke):
    workdir = smoke / "full"
    report = (workdir / "report.md").read_text()
    sections = re.findall(r"^## (.+)$", report, flags=re.M)
    assert sections[0] == "Findings"
    findings = report.split("## Findings", 1)[1].split("\n## ", 1)[0]
    items = re.findall(r"^(\d)\. \*\*([^*]+)\*\*(.*)$", findings, flags=re.M)
    assert [(n, title) for n, title, _ in items] == [
        ("1", "Reward recovery."), ("2", "Identifiability."), ("3", "Re-RLHF."),
        ("4", "Interpretability."), ("5", "Run.")]
    recovery, identifiability, rerlhf, interp, run = (text for _, _, text in items)
    for text, at_least in ((recovery, 8), (identifiability, 2), (rerlhf, 1), (interp, 2)):
        found = _INTERVAL.findall(text)
        assert len(found) >= at_least, text
        for estimate, low, high in found:  # finite, and the estimate inside its interval
            assert float(low) <= float(estimate) <= float(high), (estimate, low, high)
    for baseline in ("random reward", "majority class", "threshold 0"):
        assert baseline in recovery
    assert "Verdict" in report and "PPO seeds 1000" in report and "IRL seed 0" in rerlhf
    assert "preset `smoke`" in run and "commit `" in run and "jax " in run
    assert (workdir / "study_config.json").is_file()
    # Relative paths only: nothing points into this machine's folders.
    assert str(smoke) not in report and "/root" not in report and "/home" not in report
    evaluation = _evaluation(workdir)
    for name in ("learned", "ensemble", "random", "majority"):
        metrics = evaluation["scorecards"][name]["metrics"]
        for key in ("roc_auc", "accuracy", "f1", "accuracy_threshold_zero"):
            assert all(math.isfinite(metrics[key][b]) for b in ("estimate", "low", "high")), \
                (name, key)
    # The baseline table lists every reward in the same rows.
    assert re.search(r"\| metric \| learned reward \| seed ensemble \| random reward \| "
                     r"majority class \|", report)


def test_rerun_skips_finished_stages_and_puts_its_report_back(smoke):
    workdir = smoke / "full"
    (report_stage,) = workdir.glob("report-*")
    kept = (report_stage / "report.md").read_text()
    assert kept == (workdir / "report.md").read_text()
    # Another configuration's report in the shared workdir (its stage folders are keyed
    # by their inputs, report.md is one file): the rerun must not leave it there.
    (workdir / "report.md").write_text("# another configuration's report\n")
    (workdir / "study_config.json").write_text("{}\n")
    out = _run(ROOT / "experiments" / "pipeline.py", workdir, smoke / "cache")
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(workdir.glob("report-*"))) == 1
    assert (workdir / "report.md").read_text() == kept
    assert json.loads((workdir / "study_config.json").read_text())["preset"] == "smoke"


@pytest.fixture(scope="module")
def smoke_methods(smoke, tmp_path_factory):
    """A copy of the smoke study continued with the method comparison on two draws (no
    re-RLHF): about 40 s on 2 cores."""
    workdir = tmp_path_factory.mktemp("methods") / "full"
    shutil.copytree(smoke / "full", workdir)
    out = _run(ROOT / "experiments" / "pipeline.py", workdir, smoke / "cache",
               "--config.methods.draws=0,1", "--config.methods.bootstrap=20",
               "--config.methods.rlhf_seeds=0")
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir


def test_method_comparison_runs_every_method_on_each_draw(smoke_methods):
    (path,) = smoke_methods.glob("methods-*/methods.json")
    blob = json.loads(path.read_text())
    losses = ("max_margin", "logistic", "discriminator", "fa_max_margin", "fa_maxent", "fa_focal")
    assert blob["methods"] == [m for loss in losses for m in (loss, f"{loss}_ensemble")] + \
        ["log_ratio", "bayes"]
    assert [len(d) for d in blob["per_draw"]] == [len(blob["methods"])] * 2
    assert set(blob["paired"]) == {"max_margin", "discriminator"}
    assert blob["best_black_box"] not in ("log_ratio",) and "rerlhf" not in blob
    # Single runs (ensembles, log-ratio, posterior) have no seed correlation; every other
    # number is finite.
    for draw in blob["per_draw"]:
        for name, metrics in draw.items():
            for key, value in metrics.items():
                if key != "seed_correlation" or name in losses:
                    assert math.isfinite(value), (name, key)
    # The targets table gives the best method's seed correlation; for an ensemble (one run)
    # that of the seeds it averages, so named.
    from jaxirl.report.markdown import fmt

    best = blob["best_black_box"]
    members = best.removesuffix("_ensemble")
    report = (smoke_methods / "report.md").read_text()
    targets = report.split("Best black-box method by mean Pearson", 1)[1]
    header = "seed correlation" if members == best else f"seed correlation (of `{members}`'s seeds)"
    assert f"| STARC-A | {header} |" in targets
    for d, draw in zip((0, 1), blob["per_draw"], strict=True):
        cells = re.search(rf"^\| {d} \|.*$", targets, flags=re.M).group(0).split("|")
        assert cells[-2].strip() == fmt(draw[members]["seed_correlation"]) != "n/a", cells
    for d in ("0", "1"):
        record = blob["draws"][d]
        assert record["train_pairs"] > 0 and record["bayes"]["laplace"]["rounds"]
        probes = record["word_probes"]
        assert [c["fraction"] for c in probes["learning_curve"]] == [0.25, 0.5, 1.0]
        assert probes["train_pairs"] == record["train_pairs"]
        assert all(-1 <= c["pearson"] <= 1 for c in probes["learning_curve"])
    # Draw 0 is the study's demonstrations; draw 1 regenerated them with its own seed.
    from jaxirl.irl.demos import load_demos

    assert not (path.parent / "draw_0" / "demos").exists()
    (study_demos,) = smoke_methods.glob("demos-*/demos")
    draws = [load_demos(p) for p in (study_demos, path.parent / "draw_1" / "demos")]
    assert set(draws[0]["train"]["base_text"]) != set(draws[1]["train"]["base_text"])
    report = (smoke_methods / "report.md").read_text()
    for section in ("## Method comparison", "Word-count probes", "Bayesian reward posterior"):
        assert section in report, section


@pytest.mark.slow  # minutes: a whole smoke study killed and rerun (the save-kill test stays)
def test_killed_during_irl_resumes_to_the_same_result(smoke):
    workdir = smoke / "killed"
    killed = _run(HERE / "kill_during_irl_main.py", workdir, smoke / "cache")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (irl,) = workdir.glob("irl-*")
    assert not (irl / "DONE.json").exists() and any((irl / "checkpoints").iterdir())
    resumed = _run(ROOT / "experiments" / "pipeline.py", workdir, smoke / "cache")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _evaluation(workdir) == _evaluation(smoke / "full")
    assert _report_without_timings(workdir) == _report_without_timings(smoke / "full")
