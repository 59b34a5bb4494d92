"""Each stage records the jaxirl commit it ran at, and the report names the stages that ran
at another commit than its own (a rerun skips finished stages: their numbers may come from
older code). Fake stages, no models."""

import json

from jaxirl.pipeline.report import keep_report, restore_report, stage_commits, stage_cpus
from jaxirl.pipeline.stages import DONE, StageRunner, usable_cpus
from jaxirl.report.provenance import git_commit


def test_a_stage_keeps_the_commit_it_ran_at_and_a_rerun_reads_it_back(tmp_path):
    workdir = tmp_path / "w"
    first = StageRunner(workdir).run("a", {"k": 1}, lambda folder: {"x": 1})
    assert first.commit == git_commit() and not first.skipped
    assert json.loads((first.folder / DONE).read_text())["commit"] == first.commit
    record = json.loads((first.folder / DONE).read_text())
    record["commit"] = "0123456789"  # as if it had run at an older commit
    (first.folder / DONE).write_text(json.dumps(record))
    again = StageRunner(workdir).run("a", {"k": 1}, lambda folder: {"x": 2})
    assert again.skipped and again.commit == "0123456789" and again.outputs == {"x": 1}


def test_stage_commits_names_the_stages_of_other_commits():
    class Result:
        def __init__(self, commit):
            self.commit = commit

    same = {"rlhf": Result("abc"), "irl": Result("abc")}
    assert stage_commits(same, "abc") == ""
    mixed = {"rlhf": Result("old"), "demos": Result("old"), "irl": Result("abc"),
             "interp": Result(None)}
    assert stage_commits(mixed, "abc") == (
        " (this report's; rlhf, demos ran at `old`; interp ran at a commit that was not "
        "recorded)")


def test_a_stage_keeps_its_cpu_count_and_the_report_names_other_counts(tmp_path):
    """XLA:CPU's thread pool, and some float sums, follow the usable cores: the numbers of
    a stage resumed with another count may differ in the last bits."""
    import os

    first = StageRunner(tmp_path / "w").run("a", {"k": 1}, lambda folder: {"x": 1})
    assert first.cpus == usable_cpus() == len(os.sched_getaffinity(0))
    assert json.loads((first.folder / DONE).read_text())["cpus"] == first.cpus

    class Result:
        def __init__(self, cpus):
            self.cpus = cpus

    assert stage_cpus({"rlhf": Result(2), "irl": Result(2)}, 2) == "2 cores usable"
    assert stage_cpus({"rlhf": Result(1), "demos": Result(1), "irl": Result(2),
                       "interp": Result(None)}, 2) == (
        "2 cores usable (rlhf, demos ran with 1 core; interp ran with an unrecorded "
        "number of cores)")


def test_a_skipped_report_stage_puts_its_own_report_back(tmp_path):
    workdir, folder = tmp_path / "w", tmp_path / "w" / "report-00000000"
    folder.mkdir(parents=True)
    (workdir / "report_plots").mkdir()
    (workdir / "report.md").write_text("A\n")
    (workdir / "study_config.json").write_text('{"preset": "a"}\n')
    (workdir / "report_plots" / "p.png").write_bytes(b"a")
    keep_report(workdir, folder)
    # Configuration B writes its report into the same workdir.
    (workdir / "report.md").write_text("B\n")
    (workdir / "study_config.json").write_text('{"preset": "b"}\n')
    (workdir / "report_plots" / "p.png").write_bytes(b"b")
    (workdir / "report_plots" / "only_b.png").write_bytes(b"b")
    assert restore_report(folder, workdir)
    assert (workdir / "report.md").read_text() == "A\n"
    assert json.loads((workdir / "study_config.json").read_text())["preset"] == "a"
    assert sorted(p.name for p in (workdir / "report_plots").iterdir()) == ["p.png"]
    assert (workdir / "report_plots" / "p.png").read_bytes() == b"a"
    assert not restore_report(tmp_path / "empty", workdir)  # a folder without a copy


def test_the_irl_epoch_plot_starts_where_the_per_epoch_metrics_start(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from jaxirl.report import plots

    seeds = [[{"roc_auc": 0.6 + 0.1 * e, "accuracy": 0.8, "pearson_correlation": 0.5}
              for e in range(3)] for _ in range(2)]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or str(path))
    for first in (0, 1):
        plots.irl_epochs(seeds, tmp_path / "p.png", first_epoch=first)
        (ax, *_) = figures[-1].axes
        assert list(ax.lines[0].get_xdata()) == [first, first + 1, first + 2]
        assert ("untrained" in ax.get_xlabel()) == (first == 0)
        plt.close(figures[-1])


def test_overwrite_removes_stage_folders_but_not_a_users_folder_named_like_one(tmp_path):
    workdir = tmp_path / "w"
    stage = StageRunner(workdir).run("a", {"k": 1}, lambda folder: {"x": 1}).folder
    killed = workdir / "b-0123abcd"  # a stage killed before it wrote its config.json
    killed.mkdir()
    users = workdir / "notes-deadbeef"
    users.mkdir()
    (users / "draft.txt").write_text("keep")
    StageRunner(workdir, overwrite=True)
    assert not stage.exists() and not killed.exists()
    assert (users / "draft.txt").read_text() == "keep"
