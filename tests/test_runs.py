"""jaxirl.runs: the run-folder policy, content fingerprints and saves that keep the old copy."""

import json
import os
import pathlib

import pytest

from jaxirl import runs
from jaxirl.errors import RunFolderError

OUTPUTS = ("result.json", "checkpoints")


def _manifest(lr=0.1, data="x"):
    return runs.Manifest.build("demo", {"train": {"lr": lr}, "steps": 3}, {"data": data})


def _finish(folder, manifest):
    run = runs.open_run(folder, manifest, OUTPUTS)
    (folder / "result.json").write_text("{}")
    (folder / "checkpoints").mkdir()
    run.finish()
    return run


def test_new_and_empty_folders_start_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "new" / "nested", tmp_path / "empty"):
        run = runs.open_run(folder, _manifest(), OUTPUTS)
        assert run.status == "new"
        marker = json.loads((folder / runs.MARKER).read_text())
        assert marker["kind"] == "demo" and marker["finished"] is False
        assert marker["settings"] == {"train": {"lr": 0.1}, "steps": 3}


def test_finished_run_of_the_same_manifest_is_reported_finished(tmp_path):
    _finish(tmp_path / "w", _manifest())
    before = (tmp_path / "w" / runs.MARKER).stat().st_mtime_ns
    assert runs.open_run(tmp_path / "w", _manifest(), OUTPUTS).finished
    assert (tmp_path / "w" / runs.MARKER).stat().st_mtime_ns == before


def test_other_settings_or_inputs_are_refused_with_the_differences(tmp_path):
    _finish(tmp_path / "w", _manifest())
    with pytest.raises(RunFolderError, match=r"train\.lr 0\.1 → 0\.2") as e:
        runs.open_run(tmp_path / "w", _manifest(lr=0.2), OUTPUTS)
    assert "refusing to overwrite" in str(e.value)
    with pytest.raises(RunFolderError, match=r"data content name:x → name:y.*cannot resume"):
        runs.open_run(tmp_path / "w", _manifest(data="y"), OUTPUTS, resume=True)
    assert (tmp_path / "w" / "result.json").read_text() == "{}"


def test_unfinished_run_needs_resume(tmp_path):
    runs.open_run(tmp_path / "w", _manifest(), OUTPUTS)
    with pytest.raises(RunFolderError, match="unfinished run of these settings; pass resume=True"):
        runs.open_run(tmp_path / "w", _manifest(), OUTPUTS)
    assert runs.open_run(tmp_path / "w", _manifest(), OUTPUTS, resume=True).status == "resumed"


def test_a_folder_jaxirl_did_not_write_is_never_touched(tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "result.json").write_text("user data")
    for kwargs in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunFolderError, match="was not written by jaxirl"):
            runs.open_run(folder, _manifest(), OUTPUTS, **kwargs)
    assert (folder / "result.json").read_text() == "user data"
    assert sorted(p.name for p in folder.iterdir()) == ["result.json", "sub"]


def test_overwrite_removes_only_the_runs_own_entries(tmp_path):
    folder = tmp_path / "w"
    _finish(folder, _manifest())
    (folder / "notes.txt").write_text("keep me")
    run = runs.open_run(folder, _manifest(lr=0.5), OUTPUTS, overwrite=True)
    assert run.status == "new"
    # The replaced entries wait aside until the new run finishes.
    assert sorted(p.name for p in folder.iterdir()) == [runs.REPLACED, runs.MARKER, "notes.txt"]
    assert sorted(p.name for p in run.replaced.iterdir()) == [
        "checkpoints", runs.MARKER, "result.json"]
    assert (folder / "notes.txt").read_text() == "keep me"
    run.finish()
    assert sorted(p.name for p in folder.iterdir()) == [runs.MARKER, "notes.txt"]


def test_overwrite_never_removes_an_input_of_the_new_run(tmp_path):
    # The old run wrote demos/ and checkpoints/; the new one reads demos/ and a model
    # inside checkpoints/ (named by a kind:path spec), and writes result.json again.
    folder = tmp_path / "w"
    run = runs.open_run(folder, _manifest(), (*OUTPUTS, "demos", "link"))
    (folder / "demos").mkdir()
    (folder / "demos" / "data.arrow").write_text("pairs")
    (folder / "checkpoints" / "7").mkdir(parents=True)
    (folder / "result.json").write_text("{}")
    (folder / "link").symlink_to(folder / "demos")
    run.finish()
    run = runs.open_run(folder, _manifest(lr=0.5), OUTPUTS, overwrite=True,
                        keep=[folder / "demos", f"learned:{folder}/checkpoints/7", None, "hub/id"])
    assert run.status == "new"
    # A link to an input stays too (the input may be named through it).
    assert sorted(p.name for p in folder.iterdir()) == [runs.REPLACED, "checkpoints", "demos",
                                                       runs.MARKER, "link"]
    assert (folder / "demos" / "data.arrow").read_text() == "pairs"
    assert (folder / "checkpoints" / "7").is_dir()
    runs.open_run(folder, _manifest(), ("demos",), overwrite=True, keep=[folder / "link"])
    assert (folder / "link" / "data.arrow").is_file()
    # Without inputs, the entries the runs wrote go.
    runs.open_run(folder, _manifest(lr=0.2), (*OUTPUTS, "demos"), overwrite=True)
    assert not (folder / "demos").exists() and not (folder / "checkpoints").exists()


def test_a_failed_overwrite_puts_the_replaced_run_back(tmp_path):
    # A bad input found after the folder was opened (a typo'd column, say) loses nothing.
    folder = tmp_path / "w"
    _finish(folder, _manifest())
    (folder / "result.json").write_text('{"old": 1}')
    (folder / runs.RUN_CONFIG_FILE).write_text('{"lr": 0.1}')
    (folder / "input.txt").write_text("read by the new run")
    run = runs.open_run(folder, _manifest(lr=0.5), (*OUTPUTS, "input.txt"), overwrite=True,
                        keep=[folder / "input.txt"])
    with pytest.raises(ValueError, match="bad column"), run.cleanup_on_error():
        runs.save_run_config(_manifest(lr=0.5), folder)
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "1").write_text("new")
        raise ValueError("bad column")
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        "checkpoints", "input.txt", runs.MARKER, runs.RUN_CONFIG_FILE, "result.json"])
    assert (folder / "result.json").read_text() == '{"old": 1}'
    assert (folder / runs.RUN_CONFIG_FILE).read_text() == '{"lr": 0.1}'
    assert (folder / "input.txt").read_text() == "read by the new run"
    assert list((folder / "checkpoints").iterdir()) == []  # the old run's (empty) folder
    assert runs.open_run(folder, _manifest(), OUTPUTS).finished


def test_an_interrupted_overwrite_keeps_both_and_resumes(tmp_path, capsys):
    folder = tmp_path / "w"
    _finish(folder, _manifest())
    run = runs.open_run(folder, _manifest(lr=0.5), OUTPUTS, overwrite=True)
    with pytest.raises(KeyboardInterrupt), run.cleanup_on_error():
        (folder / "checkpoints").mkdir()
        raise KeyboardInterrupt
    assert "is kept in" in capsys.readouterr().err
    assert (folder / runs.REPLACED / "result.json").is_file()
    # A second overwrite of the unfinished run keeps the last finished one aside.
    again = runs.open_run(folder, _manifest(lr=0.7), OUTPUTS, overwrite=True)
    assert not (folder / "checkpoints").exists()
    assert (again.replaced / "result.json").is_file()
    assert json.loads((again.replaced / runs.MARKER).read_text())["settings"]["train"] == {
        "lr": 0.1}
    resumed = runs.open_run(folder, _manifest(lr=0.7), OUTPUTS, resume=True)
    assert resumed.status == "resumed"
    resumed.finish()  # a resumed run that finishes has replaced the old one for good
    assert not (folder / runs.REPLACED).exists()


def test_overwrite_refuses_a_run_of_another_kind(tmp_path):
    _finish(tmp_path / "w", _manifest())
    other = runs.Manifest.build("other", {}, {})
    with pytest.raises(RunFolderError, match="holds a jaxirl 'demo' run, not 'other'"):
        runs.open_run(tmp_path / "w", other, OUTPUTS, overwrite=True)
    assert (tmp_path / "w" / "result.json").is_file()


def test_a_corrupt_marker_is_an_error_until_overwrite(tmp_path):
    folder = tmp_path / "w"
    _finish(folder, _manifest())
    (folder / runs.MARKER).write_text("{not json")
    with pytest.raises(RunFolderError, match="unreadable jaxirl_run.json"):
        runs.open_run(folder, _manifest(), OUTPUTS)
    assert runs.open_run(folder, _manifest(), OUTPUTS, overwrite=True).status == "new"
    assert not (folder / "result.json").exists()


def test_files_and_uncreatable_paths_are_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        runs.open_run(tmp_path / "file", _manifest(), OUTPUTS)
    with pytest.raises(RunFolderError, match="is a file"):
        runs.open_run(tmp_path / "file" / "sub", _manifest(), OUTPUTS)
    with pytest.raises(RunFolderError, match="cannot create output folder"):
        runs.open_run("/proc/jaxirl-test/run", _manifest(), OUTPUTS)
    assert (tmp_path / "file").read_text() == "x"


def test_cleanup_on_error_leaves_no_trace_of_a_run_that_wrote_nothing(tmp_path):
    run = runs.open_run(tmp_path / "w", _manifest(), OUTPUTS)
    with pytest.raises(ValueError), run.cleanup_on_error():
        raise ValueError("bad input")
    assert not (tmp_path / "w").exists()
    run = runs.open_run(tmp_path / "w", _manifest(), OUTPUTS)
    with pytest.raises(ValueError), run.cleanup_on_error():
        (tmp_path / "w" / "result.json").write_text("{}")
        raise ValueError("late failure")
    assert (tmp_path / "w" / runs.MARKER).is_file()  # outputs exist: resume or overwrite


def test_fingerprint_follows_content_and_caches_by_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXIRL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    weights = folder / "weights.bin"
    weights.write_bytes(b"a" * 1000)
    first = runs.fingerprint(folder)
    assert first.startswith("sha256:") and runs.fingerprint(folder) == first
    assert (tmp_path / "cache" / "content_hashes.json").is_file()
    # Same size and mtime: the cached hash is used (the content is not read again).
    stat = weights.stat()
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    runs._CACHE._entries = None  # reload from the cache file, as a new process would
    assert runs.fingerprint(folder) == first
    # A new mtime: re-hashed, and the new content gives a new fingerprint.
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert runs.fingerprint(folder) != first
    # Names count; hidden entries, the marker and Orbax's commit-time file do not.
    changed = runs.fingerprint(folder)
    (folder / ".tmp-copy").write_text("x")
    (folder / runs.MARKER).write_text("{}")
    (folder / "_CHECKPOINT_METADATA").write_text("time")
    assert runs.fingerprint(folder) == changed
    (folder / "extra.txt").write_text("")
    assert runs.fingerprint(folder) != changed


def test_folder_fingerprint_changes_when_a_file_is_renamed(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXIRL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"same bytes")
    before = runs.fingerprint(folder)
    (folder / "a.bin").rename(folder / "b.bin")  # the same content under another name
    assert runs.fingerprint(folder) != before


def test_fingerprint_works_with_an_unwritable_cache(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("JAXIRL_CACHE", str(tmp_path / "file" / "cache"))
    monkeypatch.setattr(runs, "_CACHE", runs._HashCache())
    assert runs.fingerprint(tmp_path / "file").startswith("sha256:")


def test_input_fingerprint_hashes_paths_and_spec_paths_and_names_the_rest(tmp_path):
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "reward_model.json").write_text("{}")
    assert runs.input_fingerprint(str(tmp_path / "rm")) == runs.fingerprint(tmp_path / "rm")
    assert runs.input_fingerprint(f"learned:{tmp_path / 'rm'}") == runs.fingerprint(tmp_path / "rm")
    assert runs.input_fingerprint("profanity") == "name:profanity"
    assert runs.input_fingerprint(None) is None


def test_swap_in_replaces_a_folder_only_once_the_new_copy_is_complete(tmp_path):
    final = tmp_path / "seed_0"
    final.mkdir()
    (final / "params").write_text("old")
    new = runs.staging_dir(final)
    new.mkdir()
    (new / "params").write_text("new")
    runs.swap_in(new, final)
    assert (final / "params").read_text() == "new" and not new.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["seed_0"]


def test_staging_removes_what_killed_builds_left_behind(tmp_path):
    final = tmp_path / "seed_0"
    mine = runs.staging_dir(final)
    dead = mine.with_name(mine.name.rsplit("-", 1)[0] + "-999999999")
    other_host = tmp_path / ".seed_0.building-otherhost-1"
    for folder in (dead, other_host):
        folder.mkdir()
    assert runs.staging_dir(final) == mine
    assert not dead.exists() and other_host.exists()


def test_recover_puts_back_the_old_copy_of_an_interrupted_swap(tmp_path):
    final = tmp_path / "seed_1"
    old = tmp_path / f".seed_1.old-{os.getpid() + 1}"
    old.mkdir()
    (old / "params").write_text("finished model")
    runs.recover(final)  # killed after moving the old copy aside, before the new one moved in
    assert (final / "params").read_text() == "finished model" and not old.exists()


def test_write_text_atomic_leaves_no_temporary_file(tmp_path):
    path = runs.write_text_atomic(tmp_path / "summary.json", "{}")
    runs.write_text_atomic(path, '{"a": 1}')
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_publish_swaps_outputs_into_an_overwritten_run_and_keeps_user_files(tmp_path):
    final = tmp_path / "out"
    _finish(final, _manifest())
    (final / "notes.txt").write_text("keep")
    run = runs.open_run(final, _manifest(lr=0.3), OUTPUTS, overwrite=True, create=False)
    assert (final / "result.json").is_file()  # a staged build keeps the old copy meanwhile
    staged = runs.staging_dir(final)
    staged.mkdir()
    (staged / "result.json").write_text('{"new": true}')
    runs.publish(staged, run)
    assert json.loads((final / "result.json").read_text()) == {"new": True}
    assert (final / "notes.txt").read_text() == "keep"
    marker = json.loads((final / runs.MARKER).read_text())
    assert marker["finished"] and marker["settings"]["train"]["lr"] == 0.3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_publish_killed_between_swaps_leaves_an_unfinished_marker(tmp_path, monkeypatch):
    final = tmp_path / "out"
    _finish(final, _manifest())
    (final / "a.json").write_text("old a")
    (final / "b.json").write_text("old b")
    run = runs.open_run(final, _manifest(lr=0.3), ("a.json", "b.json"), overwrite=True,
                        create=False)
    staged = runs.staging_dir(final)
    staged.mkdir()
    (staged / "a.json").write_text("new a")
    (staged / "b.json").write_text("new b")
    swap_in, calls = runs.swap_in, []

    def killed_after_the_first(src, dst):
        if calls:
            raise KeyboardInterrupt
        calls.append(dst)
        return swap_in(src, dst)

    monkeypatch.setattr(runs, "swap_in", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        runs.publish(staged, run)
    assert (final / "a.json").read_text() == "new a" and (final / "b.json").read_text() == "old b"
    # Neither the old settings (finished) nor the new ones may call this mix finished.
    for manifest in (_manifest(), _manifest(lr=0.3)):
        with pytest.raises(runs.RunFolderError):
            runs.open_run(final, manifest, ("a.json", "b.json"), create=False)


def test_nested_dataclass_settings_compare_field_by_field():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Loss:
        name: str = "max_margin"
        margin: float | None = None

    a = runs.Manifest.build("irl", {"train": {"loss": Loss(), "lr": 1e-4}, "seeds": (0, 1)})
    b = runs.Manifest.build("irl", {"train": {"loss": Loss("logistic"), "lr": 1e-4},
                                    "seeds": (0, 1)})
    assert a.settings["seeds"] == [0, 1]
    assert a.differences(b) == ["train.loss.name max_margin → logistic"]


def test_a_setting_present_on_one_side_only_is_a_difference():
    a = runs.Manifest.build("demo", {"lr": 0.1})
    b = runs.Manifest.build("demo", {"lr": 0.1, "warmup": 5})
    assert a.differences(b) == ["warmup <unset> → 5"]
    assert b.differences(a) == ["warmup 5 → <unset>"]


def test_describe_lists_a_few_differences_on_one_line():
    diffs = [f"field{i} 0 → 1" for i in range(9)]
    text = runs.describe(diffs)
    assert "\n" not in text and text.endswith("and 3 more")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXIRL_CACHE", str(tmp_path))
    assert runs.cache_root() == pathlib.Path(tmp_path)
