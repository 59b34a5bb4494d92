"""experiments/irl.py: one-line errors for bad flags, and an end-to-end tiny run."""

import json

import pytest
from launchers import launch, launch_many
from tiny_setup import tiny_policy, tiny_tokenizer, write_tiny_run_inputs

from jaxirl.data.prompts import write_jsonl
from jaxirl.models import save_pretrained


def _launch(*args, timeout=300):
    return launch("irl.py", *args, timeout=timeout)


BAD_FLAGS = [
    (["--lr", "-1"], "error: --lr must be > 0, got -1.0"),
    (["--seed", "-5"], "error: --seed must be >= 0, got -5"),
    (["--seeds", "0"], "error: --seeds must be >= 1, got 0"),
    (["--batch_size", "3", "--num_devices", "2"],
     "error: --mesh data=2,fsdp=1 needs 2 devices but JAX sees 1"),
    (["--mesh", "data=2,tensor=2"], "error: --mesh 'data=2,tensor=2': expected data=D,fsdp=F"),
    (["--loss", "cubic"], "error: flag --loss=cubic: value should be one of <discriminator|"),
    (["--model", "/nonexistent"], "error: no demonstrations at"),
    (["--base_model", "/nonexistent"], "error: no demonstrations at"),  # the deprecated name
    (["--base_model", "/a", "--model", "/b"], "error: --base_model and --model are one flag"),
    (["--config.train.lr=1"], "error: --config.train.lr: train (IRLTrainConfig) has no setting "
     "'lr'"),
    (["--seeds", "2", "--config.train.num_seeds=3"],
     "error: --seeds and --config.train.num_seeds both set 'train.num_seeds'"),
    (["--config.reward_model.pooling=median"], "error: flag --config.reward_model.pooling=median: "
     "value should be one of <last|mean|max>"),
    (["--config.train.loss.temperature=0"], "error: --config.train.loss.temperature=0.0: "
     "IRLLossConfig.temperature must be > 0"),
    (["--resume", "--overwrite"], "error: --resume and --overwrite cannot be combined"),
    # Building demonstrations ({root}: a 3-block model and 30 prompts, 6 of them held out).
    (["--policy_model", "{root}/model", "--model", "{root}/model", "--dataset",
      "{root}/wrongcol.jsonl"], "error: prompt file {root}/wrongcol.jsonl has no prompt column "
     "'prompt' (columns: text); set --prompt_column"),
    (["--policy_model", "{root}/model", "--model", "{root}/model", "--dataset",
      "{root}/prompts.jsonl", "--num_samples", "7"],  # it was capped at the 6 prompts
     "error: --num_samples is 7 but there are only 6 prompts to draw from"),]
FIRST_OVERRIDE = 9  # from here on they fail before any output folder may be created
assert BAD_FLAGS[FIRST_OVERRIDE][0] == ["--config.train.lr=1"]


@pytest.fixture(scope="module")
def bad_flag_runs(tmp_path_factory):
    """Every BAD_FLAGS command line (each with its own workdir), in one launcher process."""
    root = tmp_path_factory.mktemp("bad_irl_flags")
    write_tiny_run_inputs(root)
    write_jsonl([{"text": f"the cat {i}"} for i in range(10)], root / "wrongcol.jsonl")
    return root, launch_many("irl.py", {
        str(i): ["--workdir", str(root / str(i)), *(f.format(root=root) for f in flags)]
        for i, (flags, _) in enumerate(BAD_FLAGS)})


@pytest.mark.parametrize("case", range(len(BAD_FLAGS)), ids=[m for _, m in BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(bad_flag_runs, case):
    root, outs = bad_flag_runs
    out, message = outs[str(case)], BAD_FLAGS[case][1].format(root=root)
    assert out.returncode == 2, out.stderr[-1500:]
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(message), lines[-1]
    assert "Traceback" not in out.stderr
    if case >= FIRST_OVERRIDE:
        assert not (root / str(case)).exists()


def test_end_to_end_builds_demos_trains_and_saves(tmp_path):
    folders = {}
    for name, seed in (("policy", 1), ("base", 2)):
        model, params = tiny_policy(seed=seed, layers=2)
        folders[name] = save_pretrained(tmp_path / name, model.config, params,
                                        tokenizer=tiny_tokenizer())
    prompts = ["the cat", "a dog sat", "the mat", "a cat ran on", "the dog", "a mat",
               "the cat sat", "a dog ran", "the dog sat on", "a cat"]
    write_jsonl([{"prompt": p} for p in prompts], tmp_path / "prompts.jsonl")
    workdir = tmp_path / "run"
    out = _launch("--policy_model", str(folders["policy"]), "--model", str(folders["base"]),
                  "--dataset", str(tmp_path / "prompts.jsonl"), "--prompt_split", "all",
                  "--max_length", "9", "--workdir", str(workdir), "--epochs", "2", "--seeds", "2",
                  "--num_layers_unfrozen", "1", "--loss", "logistic", "--lr", "1e-2",
                  "--noprogress")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["train_pairs"] == 8 and summary["test_pairs"] == 2
    metrics = json.loads((workdir / "irl_metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert len(metrics["history"][-1]["per_seed"]) == 2
    for seed in (0, 1):
        assert (workdir / "reward_models" / f"seed_{seed}" / "reward_model.json").is_file()
    assert (workdir / "demos" / "dataset_dict.json").is_file()
    saved = json.loads((workdir / "run_config.json").read_text())  # what --config_file reruns
    assert (saved["model"], saved["train"]["epochs"], saved["train"]["loss"]["name"]) == (
        str(folders["base"]), 2, "logistic")
    assert saved["reward_model"]["base_model"] == "<base>"  # the --model, as given


def test_demos_given_with_demos_are_an_input_never_removed_nor_rebuilt(tmp_path):
    from launchers import LauncherProcess
    from tiny_setup import write_tiny_demos, write_tiny_model

    from jaxirl import runs

    for name, seed in (("policy", 1), ("base", 2)):
        write_tiny_model(tmp_path / name, seed=seed, layers=2)
    prompts = ["the cat", "a dog sat", "the mat", "a cat ran on", "the dog", "a mat",
               "the cat sat", "a dog ran", "the dog sat on", "a cat"]
    write_jsonl([{"prompt": p} for p in prompts], tmp_path / "prompts.jsonl")
    # A finished IRL run in `old` that wrote old/demos, which the next command reads.
    old = tmp_path / "old"
    run = runs.open_run(old, runs.Manifest.build("irl", {"x": 1}), ("demos", "irl_metrics.json"))
    write_tiny_demos(old / "demos")
    run.finish()
    old_demos = runs.fingerprint(old / "demos")
    write_tiny_demos(tmp_path / "saved")
    train = ["--model", str(tmp_path / "base"), "--max_length", "9", "--epochs", "1",
             "--seeds", "1", "--noprogress"]
    build = [*train, "--policy_model", str(tmp_path / "policy"), "--dataset",
             str(tmp_path / "prompts.jsonl"), "--prompt_split", "all"]
    built = tmp_path / "built"  # demonstrations built by the run in `w`
    cases = {
        "overwrite_reading_own": [*train, "--demos", str(old / "demos"), "--workdir", str(old),
                                  "--overwrite"],
        "saved_with_build_flags": [*build, "--demos", str(tmp_path / "saved"), "--num_samples",
                                   "4", "--config.demos.top_k=3", "--workdir",
                                   str(tmp_path / "ignored")],
        "build": [*build, "--demos", str(built), "--workdir", str(tmp_path / "w")],
        "rerun": [*build, "--demos", str(built), "--workdir", str(tmp_path / "w")],
        "overwrite_same_demos": [*build, "--demos", str(built), "--workdir", str(tmp_path / "w"),
                                 "--overwrite", "--lr", "1e-3"],
        "elsewhere": [*build, "--demos", str(built), "--workdir", str(tmp_path / "w2")]}
    with LauncherProcess("irl.py") as process:
        outs = process.run(cases)
        built_demos = runs.fingerprint(built)
        write_tiny_demos(built, num_prompts=6)  # changed after the run in `w` built it
        outs.update(process.run({"changed": [*build, "--demos", str(built), "--workdir",
                                             str(tmp_path / "w"), "--resume"]}))
    for name in ("overwrite_reading_own", "build", "rerun", "overwrite_same_demos"):
        assert outs[name].returncode == 0, (name, outs[name].stderr[-3000:])
    # --overwrite replaced the old run but kept the demonstrations it was told to read.
    assert runs.fingerprint(old / "demos") == old_demos
    marker = runs.read_marker(old)
    assert marker["inputs"]["demos"] == old_demos and "demos" not in marker["outputs"]
    assert json.loads((old / "irl_metrics.json").read_text())["history"]
    # Demonstrations built into --demos are an input of the run (by content) once built:
    # a rerun does nothing, and --overwrite reads them again instead of removing them.
    assert runs.read_marker(tmp_path / "w")["inputs"]["demos"] == built_demos
    assert "nothing to do" in outs["rerun"].stdout
    assert "holds demonstrations" not in outs["overwrite_same_demos"].stderr

    def error(name):
        lines = [ln for ln in outs[name].stderr.splitlines() if ln.startswith("error: ")]
        assert outs[name].returncode == 2 and len(lines) == 1, outs[name].stderr[-3000:]
        return lines[0]

    # Flags that would build demonstrations into a folder that holds some are ignored: error.
    assert f"--demos '{tmp_path / 'saved'}' already holds demonstrations, which are read as " \
        "they are: --policy_model, --dataset, --prompt_split, --num_samples, " \
        "--config.demos.top_k would be ignored" in error("saved_with_build_flags")
    assert "--policy_model, --dataset, --prompt_split would be ignored" in error("elsewhere")
    assert not (tmp_path / "ignored").exists() and not (tmp_path / "w2").exists()
    assert f"--demos '{built}' changed since the run in '{tmp_path / 'w'}' built it (content " \
        f"{built_demos} → {runs.fingerprint(built)})" in error("changed")


@pytest.mark.parametrize("failure", ["exception", "killed_before_recording"])
def test_a_run_that_built_its_demos_and_then_failed_can_resume_with_the_same_command(
        tmp_path, failure):
    # It built --demos outside its workdir, then failed before its first checkpoint: its
    # marker must survive (an exception used to remove it as "a run that wrote nothing"),
    # so that the same command with --resume reads the demonstrations as its own instead
    # of refusing the build flags beside an existing --demos.
    from tiny_setup import write_tiny_demos, write_tiny_model

    from jaxirl import runs
    from jaxirl.launchers import irl as launcher

    write_tiny_model(tmp_path / "policy", seed=1)
    write_tiny_model(tmp_path / "base", seed=2)
    write_jsonl([{"prompt": "the cat"}], tmp_path / "prompts.jsonl")
    built, workdir = tmp_path / "built", tmp_path / "w"
    config = launcher.IRLRunConfig(model=str(tmp_path / "base"),
                                   policy_model=str(tmp_path / "policy"),
                                   dataset=str(tmp_path / "prompts.jsonl"), prompt_split="all",
                                   demos_folder=str(built))
    rm_config = launcher.dataclasses.replace(config.reward_model, base_model=config.model)
    folder = runs.open_run(workdir, launcher.irl_manifest(config, rm_config), ("irl",))
    runs.save_run_config(config, workdir)
    write_tiny_demos(built)  # load_or_build_demos built them
    if failure == "exception":
        with pytest.raises(KeyboardInterrupt), folder.cleanup_on_error():
            launcher.record_built_demos(config, folder)
            raise KeyboardInterrupt  # e.g. Ctrl-C during training
        assert runs.read_marker(workdir)["inputs"]["demos"] == runs.fingerprint(built)
    else:
        assert runs.read_marker(workdir)["inputs"]["demos"] is None
    manifest = launcher.check_given_demos(config, launcher.irl_manifest(config, rm_config),
                                          str(workdir))
    again = runs.open_run(workdir, manifest, ("irl",), resume=True)
    assert again.status == "resumed"
    launcher.record_built_demos(config, again)
    assert runs.read_marker(workdir)["inputs"]["demos"] == runs.fingerprint(built)
