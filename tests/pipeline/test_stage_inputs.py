"""A file that a stage's configuration names inside the workdir, but outside every stage
folder, is an input like one outside: its content enters the stage's hash."""

import shutil

from jaxirl.pipeline.stages import StageRunner, config_hash, input_paths


def test_an_input_file_inside_the_workdir_is_fingerprinted(tmp_path):
    workdir = tmp_path / "w"
    StageRunner(workdir)  # a pipeline workdir, into which the user then puts a data file
    (workdir / "data").mkdir()
    prompts = workdir / "data" / "prompts.jsonl"
    prompts.write_text('{"prompt": "a"}\n')
    ran = []

    def stage(folder):
        ran.append(prompts.read_text())
        (folder / "out.txt").write_text("x")
        return {"out": str(folder / "out.txt")}

    first = StageRunner(workdir).run("rlhf", {"dataset": str(prompts)}, stage)
    assert input_paths({"dataset": str(prompts)}, workdir) == [str(prompts)]
    assert StageRunner(workdir).run("rlhf", {"dataset": str(prompts)}, stage).skipped
    prompts.write_text('{"prompt": "b"}\n')  # changed in place: the stage reruns
    second = StageRunner(workdir).run("rlhf", {"dataset": str(prompts)}, stage)
    assert not second.skipped and second.folder != first.folder
    assert ran == ['{"prompt": "a"}\n', '{"prompt": "b"}\n']

    # Stage outputs (and the workdir itself) stay keyed by their folder names only.
    out = first.outputs["out"]
    assert input_paths({"reward": f"learned:{out}", "w": str(workdir)}, workdir) == []
    before = config_hash({"reward": f"learned:{out}"}, workdir)
    (first.folder / "out.txt").write_text("changed")
    assert config_hash({"reward": f"learned:{out}"}, workdir) == before

    # A moved workdir keeps the folder name: the file is keyed by its place in it.
    key = config_hash({"dataset": str(prompts)}, workdir)
    shutil.move(workdir, tmp_path / "moved")
    assert config_hash({"dataset": str(tmp_path / "moved" / "data" / "prompts.jsonl")},
                       tmp_path / "moved") == key
