"""``--preset size_sweep`` with fakes for the builds and the studies (no training).

The sweep must not run a model other than the sizes it labels, must write only into a
run folder of its own, and must report accuracy/F1 at the training-fit threshold of the
main report, labelled with its rule.
"""

import dataclasses
import json
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
from launchers import ROOT, environment

from jaxirl import runs
from jaxirl.errors import ConfigError, RunFolderError
from jaxirl.pipeline import size_sweep
from jaxirl.pipeline.size_sweep import SIZES, TRAIN_FIT, parameter_count, run_size_sweep
from jaxirl.pipeline.study import PRESETS
from jaxirl.report.methods import size_sweep_lines

BASE = PRESETS["default"]
SMALL = {"0.36M": SIZES["0.36M"], "5.0M": SIZES["5.0M"]}
OLD_RESULTS = ROOT / "experiments" / "results" / "size_sweep" / "size_sweep.json"


def fake_evaluation(scale: float) -> dict:
    """An evaluation.json whose last-epoch spread (threshold match_rate) and training-fit
    scorecard disagree, so that a row shows which one it read."""
    def interval(value):
        return {"estimate": value, "low": value - 0.01, "high": value + 0.01}

    spread = {k: {"mean": v * scale, "std": 0.0, "n": 2} for k, v in (
        ("accuracy", 0.5), ("f1", 0.25), ("roc_auc", 0.8), ("pearson_correlation", 0.6),
        ("spearman", 0.4))}
    metrics = {"accuracy": interval(0.9 * scale), "f1": interval(0.7 * scale),
               "accuracy_threshold_zero": interval(0.6), "f1_threshold_zero": interval(0.3),
               "accuracy_match_rate": interval(0.5 * scale), "f1_match_rate": interval(0.25 * scale)}
    return {"irl_threshold": "match_rate", "spread": spread,
            "scorecards": {"learned": {"metrics": metrics}},
            "seed_correlation": [[1.0, 0.8], [0.8, 1.0]],
            "distances": {"spread": {"starc_a": {"mean": 0.4}, "starc_b": {"mean": 0.3}}}}


@pytest.fixture
def fakes(monkeypatch):
    """Builds and studies that only record their calls; each study writes its evaluation."""
    import jaxirl.pipeline.study as study

    calls = {"built": [], "studies": []}

    def fake_study(config, workdir, progress=True, until=None, **kwargs):
        calls["studies"].append({"config": config, "workdir": pathlib.Path(workdir),
                                 "until": until, **kwargs})
        folder = pathlib.Path(workdir) / "evaluate-00000000"
        folder.mkdir(parents=True, exist_ok=True)
        scale = parameter_count(config.default_model) / parameter_count(SIZES["5.0M"])
        (folder / "evaluation.json").write_text(json.dumps(fake_evaluation(scale)))
        return {"evaluate": {"evaluation": str(folder / "evaluation.json")}}

    monkeypatch.setattr(size_sweep, "ensure_default_model",
                        lambda spec, progress=True: calls["built"].append(spec))
    monkeypatch.setattr(study, "run_study", fake_study)
    return calls


def test_rows_take_accuracy_and_f1_from_the_training_fit_scorecard(tmp_path, fakes):
    out = run_size_sweep(BASE, tmp_path / "sweep", sizes=SMALL, progress=False)
    rows = json.loads((tmp_path / "sweep" / "size_sweep.json").read_text())["rows"]
    assert rows == out["rows"] and [r["size"] for r in rows] == list(SMALL)
    for row, spec in zip(rows, SMALL.values(), strict=True):
        scale = parameter_count(spec) / parameter_count(SIZES["5.0M"])
        assert row["threshold_rule"] == TRAIN_FIT
        # The scorecard's fitted threshold, not the last epoch's match-rate spread (0.5, 0.25).
        assert row["accuracy"] == pytest.approx(0.9 * scale)
        assert row["f1"] == pytest.approx(0.7 * scale)
        assert row["accuracy_match_rate"] == pytest.approx(0.5 * scale)
        assert row["pearson_correlation"] == pytest.approx(0.6 * scale)
        assert row["seed_correlation"] == pytest.approx(0.8) and row["starc_a"] == 0.4
    # Each size runs its own recipe, the base config otherwise unchanged, up to evaluate.
    assert fakes["built"] == list(SMALL.values())
    assert [s["config"] for s in fakes["studies"]] == [
        dataclasses.replace(BASE, default_model=spec) for spec in SMALL.values()]
    assert {s["until"] for s in fakes["studies"]} == {"evaluate"}
    report = (tmp_path / "sweep" / "size_sweep.md").read_text()
    assert "| parameters | accuracy (threshold fit on training texts) | f1 (threshold fit on " \
           "training texts) |" in report
    assert "fitted on the training texts only" in report
    assert (tmp_path / "sweep" / "report_plots" / "size_sweep.png").is_file()
    marker = runs.read_marker(tmp_path / "sweep")
    assert marker["kind"] == "size_sweep" and marker["finished"]
    saved = json.loads((tmp_path / "sweep" / runs.RUN_CONFIG_FILE).read_text())
    assert saved == json.loads(json.dumps(dataclasses.asdict(BASE), default=str))


def test_an_evaluation_without_scorecards_is_labelled_with_the_irl_rule():
    evaluation = fake_evaluation(1.0)
    del evaluation["scorecards"]
    row = size_sweep.sweep_row("5.0M", SIZES["5.0M"], evaluation, 1.0, 2.0)
    assert row["threshold_rule"] == "match_rate" and row["accuracy"] == 0.5
    text = "\n".join(size_sweep_lines([row], "p.png"))
    assert "accuracy (threshold match_rate)" in text and "reads the held-out class prior" in text


@pytest.mark.parametrize("change, named", [
    ({"model": "EleutherAI/pythia-70m"}, "StudyConfig.model must be ''"),
    ({"default_model": dataclasses.replace(SIZES["1.3M"], hidden_size=32)},
     "StudyConfig.default_model must be the default recipe for the size sweep, which sets "
     "it per size; it changes hidden_size"),
    ({"default_model": dataclasses.replace(
        SIZES["1.3M"], train=dataclasses.replace(SIZES["1.3M"].train, total_steps=10))},
     "it changes train.total_steps")])
def test_a_model_the_sweep_would_ignore_is_refused_before_anything_is_written(
        tmp_path, fakes, change, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        run_size_sweep(dataclasses.replace(BASE, **change), tmp_path / "sweep", sizes=SMALL)
    assert not (tmp_path / "sweep").exists()
    assert fakes == {"built": [], "studies": []}


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_pipeline_workdir_is_refused_and_keeps_its_files(tmp_path, fakes, overwrite):
    from jaxirl.pipeline.stages import StageRunner

    study = tmp_path / "pipeline"
    StageRunner(study).run("prepare", {"k": 1}, lambda folder: {"model": "m"})
    runs.write_text_atomic(study / runs.RUN_CONFIG_FILE, "the main study's config\n")
    before = sorted(p.relative_to(study) for p in study.rglob("*"))
    with pytest.raises(RunFolderError, match="pipeline"):
        run_size_sweep(BASE, study, sizes=SMALL, **({"overwrite": True} if overwrite else {}))
    assert sorted(p.relative_to(study) for p in study.rglob("*")) == before
    assert (study / runs.RUN_CONFIG_FILE).read_text() == "the main study's config\n"
    assert fakes["studies"] == []


def test_a_folder_jaxirl_did_not_write_is_refused(tmp_path, fakes):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(RunFolderError, match="not written by jaxirl"):
        run_size_sweep(BASE, tmp_path / "mine", sizes=SMALL, overwrite=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_a_rerun_resumes_and_overwrite_removes_only_the_sweeps_entries(tmp_path, fakes):
    sweep = tmp_path / "sweep"
    run_size_sweep(BASE, sweep, sizes=SMALL, progress=False)
    (sweep / "size_0.36M" / "kept_by_a_rerun").write_text("x")
    (sweep / "notes.txt").write_text("not the sweep's")
    run_size_sweep(BASE, sweep, sizes=SMALL, progress=False)
    assert (sweep / "size_0.36M" / "kept_by_a_rerun").is_file()
    assert runs.read_marker(sweep)["finished"]
    run_size_sweep(BASE, sweep, sizes=SMALL, progress=False, overwrite=True)
    assert not (sweep / "size_0.36M" / "kept_by_a_rerun").exists()
    assert (sweep / "notes.txt").read_text() == "not the sweep's"
    assert (sweep / "size_sweep.json").is_file() and runs.read_marker(sweep)["finished"]


def test_a_sweep_folder_from_before_run_markers_is_adopted(tmp_path, fakes):
    sweep = tmp_path / "sweep"
    (sweep / "size_0.36M").mkdir(parents=True)
    (sweep / "report_plots").mkdir()
    for name in ("size_sweep.json", "size_sweep.md", runs.RUN_CONFIG_FILE):
        (sweep / name).write_text("{}")
    run_size_sweep(BASE, sweep, sizes=SMALL, progress=False)
    assert runs.read_marker(sweep)["kind"] == "size_sweep"
    assert len(json.loads((sweep / "size_sweep.json").read_text())["rows"]) == 2


def test_the_table_of_an_old_results_file_says_its_threshold_was_not_recorded():
    rows = json.loads(OLD_RESULTS.read_text())["rows"]
    assert all("threshold_rule" not in r for r in rows)  # written before the rule was
    text = "\n".join(size_sweep_lines(rows, "p.png"))
    assert "accuracy (IRL run's threshold, unrecorded)" in text
    assert "the default study's is match_rate, which reads the held-out class prior" in text
    assert "| 362240 | 0.931 | 0.800 | 0.694 |" in text
    # New and old rows together: one threshold column labels each row.
    mixed = "\n".join(size_sweep_lines([{**rows[0], "threshold_rule": TRAIN_FIT}, rows[1]], "p"))
    assert "| parameters | accuracy | f1 | threshold |" in mixed
    assert "| threshold fit on training texts |" in mixed and "| IRL run's threshold, unrecorded |" in mixed


# The launcher, in a subprocess (its absl flags are global), with the sweep and the study
# replaced by fakes that record their arguments.
LAUNCHER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from launcher_cases_main import run_case
    import jaxirl.launchers.pipeline as launcher
    import jaxirl.pipeline.size_sweep as size_sweep

    calls = []
    def sweep(config, workdir, overwrite=False, **kw):
        calls.append({"sweep": str(workdir), "overwrite": overwrite, "model": config.model})
        return {"report": "r"}
    def study(config, workdir, stages=None, overwrite=False, **kw):
        calls.append({"study": str(workdir)})
        return {}
    size_sweep.run_size_sweep, launcher.run_study = sweep, study
    out = {}
    for name, argv in json.loads(sys.argv[2]).items():
        calls.clear()
        out[name] = {**run_case(launcher, {"argv0": "pipeline.py", "argv": argv, "env": {}}),
                     "calls": list(calls)}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    root = tmp_path_factory.mktemp("size_sweep_launcher")
    sweep = ["--preset", "size_sweep"]
    cases = {
        "default_workdir": sweep,
        "overwrite": [*sweep, "--workdir", "w", "--overwrite"],
        "study_default_workdir": ["--preset", "smoke"],
        "model": [*sweep, "--model", "EleutherAI/pythia-70m"],
        "config_model": [*sweep, "--config.model=EleutherAI/pythia-70m"],
        "default_model": [*sweep, "--config.default_model.hidden_size=32"],
        "stages": [*sweep, "--stages", "prepare,rlhf"],
    }
    done = subprocess.run([sys.executable, "-c", LAUNCHER, str(ROOT / "tests"), json.dumps(cases)],
                          capture_output=True, text=True, env=environment(), cwd=root, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_sweep_has_its_own_default_workdir_and_honours_overwrite(launched):
    _, out = launched
    for name in ("default_workdir", "overwrite", "study_default_workdir"):
        assert out[name]["returncode"] == 0, out[name]["stderr"][-2000:]
    assert out["default_workdir"]["calls"] == [
        {"sweep": "runs/size_sweep", "overwrite": False, "model": ""}]
    assert out["overwrite"]["calls"] == [{"sweep": "w", "overwrite": True, "model": ""}]
    assert out["study_default_workdir"]["calls"] == [{"study": "runs/pipeline"}]


@pytest.mark.parametrize("case, error", [
    ("model", "error: --model cannot be combined with --preset size_sweep"),
    ("config_model", "error: --config.model cannot be combined with --preset size_sweep"),
    ("default_model", "error: --config.default_model.hidden_size cannot be combined with "
                      "--preset size_sweep"),
    ("stages", "error: --stages cannot be combined with --preset size_sweep"),
])
def test_flags_the_sweep_would_ignore_are_one_line_errors(launched, case, error):
    _, out = launched
    result = out[case]
    assert result["returncode"] == 2 and result["calls"] == []
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(error), result["stderr"]
