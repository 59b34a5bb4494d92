"""The study's handling of its inputs, selections and ``overwrite``, with fake stages (no
models, no training): every stage records its call and writes a token output."""

import collections
import dataclasses
import json
import os
import pathlib
import shutil
import types

import numpy as np
import pytest
from launchers import launch_many
from tiny_setup import write_tiny_run_inputs

from jaxirl.default.build import default_model_dir
from jaxirl.default.corpus import OFFENSIVE_WORDS
from jaxirl.errors import ConfigError
from jaxirl.pipeline.stages import StageError
from jaxirl.pipeline.study import PRESETS, STAGES, run_study

SMOKE = PRESETS["smoke"]  # rlhf_seeds 1, no methods


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Fakes for the default-model build and every stage; returns their calls by name."""
    import jaxirl.pipeline.interp_stage as interp_stage
    import jaxirl.pipeline.report as report
    import jaxirl.pipeline.study as study

    monkeypatch.setenv("JAXIRL_CACHE", str(tmp_path / "cache"))
    made = collections.defaultdict(list)

    def ensure(spec, progress=True):
        folder = default_model_dir(spec)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
        (folder / "build_summary.json").write_text("{}")
        made["build"].append(str(folder))
        return folder

    def rlhf(config, model, dataset, reward, folder, progress, ppo_seed=None, export=True,
             eval_before_from=None):
        assert os.path.isdir(model), model
        assert os.path.isfile(dataset), dataset
        made["rlhf"].append({"model": model, "dataset": dataset, "reward": reward})
        (folder / "policy").mkdir(parents=True, exist_ok=True)
        (folder / "policy" / "config.json").write_text("{}")
        return {"policy": str(folder / "policy")}

    def demos(config, prompts, out, progress=True, mesh=None, test_prompts=None):
        made["demos"].append(out)
        made["demo_split"].append((list(prompts), test_prompts))
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        return {"train": [0] * 4, "test": [0] * 2}

    def irl(config, data, folder, resume=True, progress=True, mesh=None):
        made["irl"].append(folder)
        np.save(folder / "test_rewards.npy", np.arange(4.0).reshape(2, 2))
        np.save(folder / "train_rewards.npy", np.arange(4.0).reshape(2, 2))
        return types.SimpleNamespace(outputs={
            "reward_models": str(folder / "reward_models"),
            "test_rewards": str(folder / "test_rewards.npy"),
            "train_rewards": str(folder / "train_rewards.npy")})

    def evaluate(*args):
        made["evaluate"].append(args[-1])
        return {"evaluation": str(args[-1] / "evaluation.json")}

    def interp(config, folder, base, expert, train, test, scorer, irl_test_rewards, extra_words,
               test_groups, mesh, progress):
        made["interp"].append(tuple(extra_words))
        # The study may start the stage before IRL ends and hand a function that waits.
        made["interp_irl"].append(irl_test_rewards() if callable(irl_test_rewards)
                                  else irl_test_rewards)
        return {"layers": [0]}

    def write_report(config, workdir, results, preset=None):
        made["report"].append(workdir)
        (workdir / "report.md").write_text("report\n")
        return workdir / "report.md"

    texts = {"expert_text": ["a"], "base_text": ["b"], "prompt": ["p"]}
    monkeypatch.setattr(study, "ensure_default_model", ensure)
    monkeypatch.setattr(study, "_rlhf", rlhf)
    monkeypatch.setattr(study, "load_prompts", lambda cfg: types.SimpleNamespace(
        train=types.SimpleNamespace(prompts=["x", "y"]), test=types.SimpleNamespace(prompts=["z"])))
    monkeypatch.setattr(study, "run_demos", demos)
    monkeypatch.setattr(study, "load_demos", lambda path: {"train": texts, "test": texts})
    monkeypatch.setattr(study, "run_irl", irl)
    monkeypatch.setattr(study, "run_evaluate", evaluate)
    monkeypatch.setattr(study, "make_scorer", lambda spec: None)
    monkeypatch.setattr(interp_stage, "run_interp", interp)
    monkeypatch.setattr(report, "run_report", write_report)
    monkeypatch.setattr(report, "keep_report", lambda workdir, folder: None)
    monkeypatch.setattr(report, "restore_report", lambda folder, workdir: True)
    return made


def _folders(workdir):
    return sorted(p.name for p in workdir.iterdir() if p.is_dir())


def test_overwrite_keeps_a_model_that_lives_in_the_workdir(tmp_path, calls):
    """Finding 1: the policy of a finished study, named as the next study's model, survives
    ``overwrite`` (the stage folder holding it is kept) and that study runs from it."""
    workdir = tmp_path / "w"
    first = run_study(SMOKE, workdir, progress=False)
    policy = first["rlhf"]["policy"]
    dataset = first["prepare"]["dataset"]
    config = dataclasses.replace(SMOKE, model=policy, dataset=dataset)
    run_study(config, workdir, progress=False, overwrite=True)
    assert os.path.isfile(os.path.join(policy, "config.json"))
    assert calls["rlhf"][-1]["model"] == policy
    # Everything else of the first study was removed.
    assert not any(pathlib.Path(f).exists() for f in calls["demos"][:1])


def test_overwrite_with_stages_replaces_only_the_selected_stages(tmp_path, calls):
    """Finding 2: ``stages`` + ``overwrite`` reruns the selected stages of this
    configuration (their old folders removed) and keeps every other folder."""
    workdir = tmp_path / "w"
    run_study(SMOKE, workdir, progress=False)
    other = workdir / "rlhf-0123abcd"  # another configuration's stage
    other.mkdir()
    (other / "config.json").write_text("{}")
    before = _folders(workdir)
    for name in before:
        (workdir / name / "sentinel").write_text("old")
    (irl_folder,) = workdir.glob("irl-*")
    out = run_study(SMOKE, workdir, stages={"irl"}, overwrite=True, progress=False)
    assert len(calls["irl"]) == 2 and len(calls["rlhf"]) == 2 and len(calls["evaluate"]) == 1
    assert set(out) == {"prepare", "rlhf", "demos", "irl"}  # stops after the selection
    assert _folders(workdir) == before
    assert not (irl_folder / "sentinel").exists()  # replaced
    assert (irl_folder / "DONE.json").is_file()
    for name in before:
        if name != irl_folder.name:
            assert (workdir / name / "sentinel").read_text() == "old", name
    assert (workdir / "report.md").is_file()


def test_overwrite_with_stages_deletes_nothing_when_an_earlier_stage_is_missing(tmp_path, calls):
    workdir = tmp_path / "w"
    run_study(SMOKE, workdir, progress=False)
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    other = dataclasses.replace(SMOKE, rlhf_iterations=3)  # its rlhf has not run
    with pytest.raises(StageError, match="stage 'rlhf' has not run with this configuration"):
        run_study(other, workdir, stages={"irl"}, overwrite=True, progress=False)
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before


def test_prepare_reruns_when_the_default_model_is_gone_or_the_cache_moved(
        tmp_path, calls, monkeypatch):
    """Finding 3: a finished prepare stage whose default model was removed from the cache,
    or whose cache is no longer $JAXIRL_CACHE, builds (or finds) the model again."""
    workdir = tmp_path / "w"
    first = run_study(SMOKE, workdir, stages={"prepare"}, progress=False)["prepare"]["model"]
    assert first.startswith(str(tmp_path / "cache"))
    shutil.rmtree(tmp_path / "cache")
    out = run_study(SMOKE, workdir, stages={"prepare", "rlhf"}, progress=False)
    assert len(calls["build"]) == 2 and os.path.isdir(out["prepare"]["model"])
    assert calls["rlhf"][-1]["model"] == first
    # Unselected, it is named with the reason instead of handing on a missing folder.
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(StageError, match=r"stage 'prepare' must run again \(the default model "
                                         r".* is gone\) and is not selected"):
        run_study(SMOKE, workdir, stages={"demos"}, progress=False)
    # Another cache: the model there, not the old cache's.
    monkeypatch.setenv("JAXIRL_CACHE", str(tmp_path / "other_cache"))
    out = run_study(SMOKE, workdir, stages={"prepare"}, progress=False)
    assert out["prepare"]["model"] == str(tmp_path / "other_cache" / pathlib.Path(first).name)
    assert out["prepare"]["dataset"].startswith(str(tmp_path / "other_cache"))
    assert len(list(workdir.glob("prepare-*"))) == 1  # the same stage, run again


@pytest.mark.parametrize("stage, config", [
    ("methods", SMOKE),
    ("rlhf_seeds", SMOKE),
    ("rlhf_learned_seeds", dataclasses.replace(SMOKE, rlhf_seeds=1))])
def test_stages_the_configuration_never_runs_are_refused_before_anything_is_written(
        tmp_path, calls, stage, config):
    """Finding 7 (and 2: nothing removed before the check)."""
    workdir = tmp_path / "w"
    run_study(config, workdir, stages={"prepare"}, progress=False)
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    with pytest.raises(ConfigError, match=f"'{stage}' is among the selected stages, but this "
                                          "configuration never runs it"):
        run_study(config, workdir, stages={"prepare", stage}, overwrite=True, progress=False)
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before


@pytest.mark.parametrize("model", ["EleutherAI/pythia-70m", "folder"])
def test_a_model_without_prompts_needs_a_dataset_up_front(tmp_path, calls, model):
    """Finding 8: no dataset and no prompts.jsonl in the model: one ConfigError naming the
    dataset, before the workdir is created."""
    if model == "folder":
        model = str(tmp_path / "model")
        os.makedirs(model)
    workdir = tmp_path / "w"
    with pytest.raises(ConfigError, match=r"holds no prompts.jsonl .*StudyConfig.dataset"):
        run_study(dataclasses.replace(SMOKE, model=model), workdir, progress=False)
    assert not workdir.exists() and not calls["rlhf"]


def test_the_interp_stage_is_keyed_by_its_extra_words(tmp_path, calls):
    """Finding 9: an explicit model that is the cached default shares every stage with the
    default study but interp, whose label vocabulary differs; the default study's interp
    key is the one it always had (no extra_words field)."""
    workdir = tmp_path / "w"
    run_study(SMOKE, workdir, progress=False)
    (default_interp,) = workdir.glob("interp-*")
    key = json.loads((default_interp / "config.json").read_text())
    assert sorted(key) == ["demos", "interp", "irl", "rlhf", "train_pairs", "version"]
    explicit = dataclasses.replace(SMOKE, model=str(default_model_dir(SMOKE.default_model)))
    run_study(explicit, workdir, progress=False)
    assert calls["interp"] == [tuple(OFFENSIVE_WORDS), ()]
    assert len(calls["rlhf"]) == 2 and len(calls["irl"]) == 1  # rlhf and rlhf_learned once
    assert len(list(workdir.glob("interp-*"))) == 2


def test_the_launcher_names_the_flags(tmp_path):
    """Findings 7 and 8 as the pipeline launcher prints them."""
    inputs = write_tiny_run_inputs(tmp_path / "inputs")
    results = launch_many("pipeline.py", {
        "methods": ["--preset", "smoke", "--stages", "methods", "--workdir", str(tmp_path / "a")],
        "seeds": ["--preset", "smoke", "--stages", "rlhf,rlhf_seeds", "--workdir",
                  str(tmp_path / "b")],
        "dataset": ["--preset", "smoke", "--model", "EleutherAI/pythia-70m", "--workdir",
                    str(tmp_path / "c")],
        # --stages= is no selection, not "every stage" (it ran them all).
        "empty": ["--preset", "smoke", "--stages=", "--workdir", str(tmp_path / "d")],
        # Found by the rlhf stage: the prompt data's column has no short flag.
        "column": ["--preset", "smoke", "--model", str(inputs / "model"), "--dataset",
                   str(inputs / "prompts.jsonl"), "--config.prompt_column=txt",
                   "--config.reward_model.max_length=64", "--workdir", str(tmp_path / "e")],
        # The smoke reward model's 100 tokens do not fit the tiny model's context.
        "context": ["--preset", "smoke", "--model", str(inputs / "model"), "--dataset",
                    str(inputs / "prompts.jsonl"), "--workdir", str(tmp_path / "f")]},
        env={"JAXIRL_CACHE": str(tmp_path / "cache")})
    for case, expected in (
            ("methods", "'methods' is among --stages, but this configuration never runs it "
                        "(no method comparison: StudyConfig.methods is None; --preset methods "
                        "sets it); drop it"),
            ("seeds", "'rlhf_seeds' is among --stages, but this configuration never runs it "
                      "(--rlhf_seeds is 1: no extra PPO seeds); drop it"),
            ("dataset", "--model 'EleutherAI/pythia-70m' holds no prompts.jsonl to prompt "
                        "with; give the prompt data with --dataset"),
            ("empty", "flag --stages=[]: --stages is empty; name the stages to run (of: "
                      f"{','.join(STAGES)}), or drop --stages to run them all"),
            ("column", f"stage 'rlhf' failed: prompt file {inputs / 'prompts.jsonl'} has no "
                       "prompt column 'txt' (columns: prompt, original_output); set "
                       "--config.prompt_column"),
            ("context", f"--config.reward_model.max_length is 100 but '{inputs / 'model'}' has "
                        "a 64-token context (max_position_embeddings): use at most 64")):
        result = results[case]
        assert result.returncode == 2, (case, result.stderr[-2000:])
        assert result.stderr.strip().splitlines()[-1] == f"error: {expected}", case
    assert not any((tmp_path / name).exists() for name in "abcdf")


def test_a_refused_or_failed_rerun_keeps_the_saved_config(tmp_path, calls, monkeypatch):
    """run_config.json (what --config_file reruns) is the last study that ran: a rerun
    refused for its selection, or whose stage fails, leaves it as it was."""
    import jaxirl.pipeline.study as study

    workdir = tmp_path / "w"
    run_study(SMOKE, workdir, progress=False)
    saved = (workdir / "run_config.json").read_text()
    assert json.loads(saved)["rlhf_iterations"] == SMOKE.rlhf_iterations
    other = dataclasses.replace(SMOKE, rlhf_iterations=SMOKE.rlhf_iterations + 1)
    with pytest.raises(StageError, match="stage 'rlhf' has not run with this configuration"):
        run_study(other, workdir, stages={"irl"}, progress=False)
    assert (workdir / "run_config.json").read_text() == saved

    def failing(*args, **kwargs):
        raise ValueError("boom")

    fake = study._rlhf
    monkeypatch.setattr(study, "_rlhf", failing)
    with pytest.raises(StageError, match="stage 'rlhf' failed"):
        run_study(other, workdir, progress=False)
    assert (workdir / "run_config.json").read_text() == saved
    # A selection that ran saves its config.
    monkeypatch.setattr(study, "_rlhf", fake)
    run_study(other, workdir, stages={"prepare", "rlhf"}, progress=False)
    assert json.loads((workdir / "run_config.json").read_text())["rlhf_iterations"] == \
        other.rlhf_iterations


@pytest.mark.parametrize("second_lane", [True, False])
def test_the_methods_stage_is_handed_the_study_extra_ppo_seeds(tmp_path, calls, monkeypatch,
                                                                second_lane):
    """The re-RLHF of the methods stage reuses the study's extra PPO seeds of the true and of
    the learned reward (keyed by reward spec and seed), whether they ran in the second lane
    or in the main chain."""
    import jaxirl.pipeline.methods_stage as methods_stage
    import jaxirl.pipeline.study as study
    from jaxirl.pipeline.methods import MethodsConfig

    handed = {}

    def methods(config, methods_config, paths, folder, progress, mesh):
        handed.update(paths["seed_runs"])
        return {"best_black_box": "max_margin"}

    monkeypatch.setattr(methods_stage, "run_methods_stage", methods)
    monkeypatch.setattr(study, "background_lane_applies", lambda *args: second_lane)
    config = dataclasses.replace(SMOKE, rlhf_seeds=3, methods=MethodsConfig())
    out = run_study(config, tmp_path / "w", progress=False)
    seed = config.ppo_config().seed
    (irl,) = (tmp_path / "w").glob("irl-*")
    learned = f"learned:{irl / 'reward_models' / f'seed_{config.irl.seed}'}"
    assert handed == {config.ground_truth: out["rlhf_seeds"]["runs"],
                      learned: out["rlhf_learned_seeds"]["runs"]}
    assert sorted(handed[learned]) == [str(seed + 1), str(seed + 2)]
    rewards = [call["reward"] for call in calls["rlhf"]]
    assert rewards.count(config.ground_truth) == 3 and rewards.count(learned) == 3


def _tree(workdir):
    return {str(p.relative_to(workdir)): p.read_bytes() if p.is_file() else None
            for p in sorted(workdir.rglob("*"))}


@pytest.mark.parametrize("second_lane", [True, False])
def test_a_failed_overwrite_puts_the_replaced_study_back(tmp_path, calls, monkeypatch,
                                                         second_lane):
    """An overwrite that fails with an error leaves the workdir as it was, byte for byte,
    also while the second lane is running a stage when the main chain fails."""
    import time

    import jaxirl.pipeline.study as study

    config = dataclasses.replace(SMOKE, rlhf_seeds=2)
    workdir = tmp_path / "w"
    run_study(config, workdir, progress=False)
    before = _tree(workdir)
    fake_rlhf, lane_ran = study._rlhf, []

    def slow_rlhf(config, model, dataset, reward, folder, progress, *args, **kwargs):
        if args:  # the lane's extra seed: still running when IRL fails
            time.sleep(1.0)
            lane_ran.append(folder)
        return fake_rlhf(config, model, dataset, reward, folder, progress, *args, **kwargs)

    def failing_irl(*args, **kwargs):
        raise ValueError("column 'txt' not found")

    monkeypatch.setattr(study, "_rlhf", slow_rlhf)
    monkeypatch.setattr(study, "run_irl", failing_irl)
    monkeypatch.setattr(study, "background_lane_applies", lambda *args: second_lane)
    with pytest.raises(StageError, match="stage 'irl' failed: ValueError: column 'txt'"):
        run_study(config, workdir, progress=False, overwrite=True)
    # The lane's stage ran to its end before the study was put back.
    assert len(lane_ran) == second_lane
    assert _tree(workdir) == before


def test_a_failed_selected_overwrite_puts_the_stage_back_and_a_finished_one_drops_it(
        tmp_path, calls, monkeypatch):
    import jaxirl.pipeline.study as study

    workdir = tmp_path / "w"
    run_study(SMOKE, workdir, progress=False)
    (irl_folder,) = workdir.glob("irl-*")
    (irl_folder / "sentinel").write_text("old")
    before = _tree(workdir)
    fake_irl = study.run_irl

    def failing_irl(config, data, folder, **kwargs):
        (folder / "partial").write_text("new")
        raise ValueError("boom")

    monkeypatch.setattr(study, "run_irl", failing_irl)
    with pytest.raises(StageError, match="stage 'irl' failed"):
        run_study(SMOKE, workdir, stages={"irl"}, overwrite=True, progress=False)
    after = _tree(workdir)
    assert {k for k in set(after) | set(before) if after.get(k) != before.get(k)} == set()

    def interrupted_irl(config, data, folder, **kwargs):
        (folder / "partial").write_text("new")
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "run_irl", interrupted_irl)
    with pytest.raises(KeyboardInterrupt):
        run_study(SMOKE, workdir, stages={"irl"}, overwrite=True, progress=False)
    # Interrupted: both copies are kept, the finished one aside.
    assert (workdir / ".jaxirl-replaced" / irl_folder.name / "sentinel").read_text() == "old"
    assert (irl_folder / "partial").is_file()
    monkeypatch.setattr(study, "run_irl", fake_irl)
    run_study(SMOKE, workdir, stages={"irl"}, overwrite=True, progress=False)
    assert not (workdir / ".jaxirl-replaced").exists()
    assert not (irl_folder / "sentinel").exists() and (irl_folder / "DONE.json").is_file()


def test_a_reward_model_longer_than_the_context_is_refused_before_any_stage(tmp_path, calls):
    """Found at the IRL stage before, after the RLHF and demonstration stages had run."""
    context = SMOKE.default_model.max_position_embeddings
    too_long = dataclasses.replace(SMOKE, reward_model=dataclasses.replace(
        SMOKE.reward_model, max_length=context + 1))
    with pytest.raises(ConfigError, match=rf"reward model field 'max_length' is {context + 1} but "
                                          rf"the embedded default has a {context}-token context"):
        run_study(too_long, tmp_path / "w", progress=False)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"max_position_embeddings": 48}))
    (model / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    local = dataclasses.replace(too_long, model=str(model))
    with pytest.raises(ConfigError, match=f"but '{model}' has a 48-token context"):
        run_study(local, tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists() and not calls
    fits = dataclasses.replace(local, reward_model=dataclasses.replace(SMOKE.reward_model,
                                                                       max_length=48))
    run_study(fits, tmp_path / "w", stages={"prepare"}, progress=False)


def test_a_tokenizer_from_elsewhere_is_put_beside_the_model_once(tmp_path, calls):
    """StudyConfig.tokenizer (the reference's SFT starts): the prepare stage builds one folder
    of links to the model's files and the tokenizer's files, every stage reads it, and it is
    built again when a file it links to is gone."""
    from hf_helpers import make_hf_gpt_neox
    from tiny_setup import WORDS, tiny_tokenizer

    from jaxirl.models import load_tokenizer

    make_hf_gpt_neox(tmp_path / "sft", vocab_size=len(WORDS))
    tiny_tokenizer().save_pretrained(str(tmp_path / "tok"))
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "the cat"}\n')
    config = dataclasses.replace(SMOKE, model=str(tmp_path / "sft"), tokenizer=str(tmp_path / "tok"),
                                 dataset=str(tmp_path / "prompts.jsonl"))
    workdir = tmp_path / "w"
    out = run_study(config, workdir, stages={"prepare", "rlhf"}, progress=False)
    model = pathlib.Path(out["prepare"]["model"])
    assert model.parent.parent == workdir and model.parent.name.startswith("prepare-")
    assert calls["rlhf"][-1]["model"] == str(model)
    assert load_tokenizer(model)("the cat")["input_ids"] == [1, 2]
    # Without the tokenizer, another prepare stage (the model's own folder is handed on).
    plain = run_study(dataclasses.replace(config, tokenizer=""), tmp_path / "w2",
                      stages={"prepare"}, progress=False)
    assert plain["prepare"]["model"] == str(tmp_path / "sft")
    assert {p.name for p in (tmp_path / "w2").glob("prepare-*")}.isdisjoint(
        p.name for p in workdir.glob("prepare-*"))
    # A link that leads nowhere (a hub model's cache cleared; a local model's changed files
    # make another stage anyway), or the folder gone: named when prepare is not selected,
    # rebuilt when it is.
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(tmp_path / "cleared" / "config.json")
    with pytest.raises(StageError, match=r"'prepare' must run again \(.*model' lost "
                                         r"config.json\)"):
        run_study(config, workdir, stages={"rlhf"}, progress=False)
    shutil.rmtree(model)
    with pytest.raises(StageError, match=r"'prepare' must run again \(.*model' lost the folder"):
        run_study(config, workdir, stages={"rlhf"}, progress=False)
    again = run_study(config, workdir, stages={"prepare", "rlhf"}, progress=False)
    assert again["prepare"]["model"] == str(model) and load_tokenizer(model)
    assert len(list(workdir.glob("prepare-*"))) == 1


@pytest.mark.parametrize(("model", "tokenizer", "message"), [
    ("", "EleutherAI/pythia-70m", "StudyConfig.tokenizer is set but StudyConfig.model is not"),
    ("EleutherAI/pythia-70m", "no/such/folder",
     "StudyConfig.tokenizer 'no/such/folder' is neither a folder nor a hub id"),
])
def test_a_tokenizer_that_cannot_be_used_is_refused_up_front(tmp_path, calls, model, tokenizer,
                                                             message):
    config = dataclasses.replace(SMOKE, model=model, tokenizer=tokenizer, dataset="x/y")
    with pytest.raises(ConfigError, match=message):
        run_study(config, tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_the_demonstrations_can_hold_out_the_prompts_ppo_held_out(tmp_path, calls):
    """demos_split="ppo": the demonstrations hold out exactly PPO's held-out prompts (so the
    re-RLHF evaluation's prompts gave no IRL training pair), in their own stage folders; the
    default draws its own split and keeps its folders."""
    run_study(SMOKE, tmp_path / "w", stages={"prepare", "rlhf", "demos"}, progress=False)
    prompts, held_out = calls["demo_split"][-1]
    assert held_out is None and prompts == ["x", "y", "z"] * SMOKE.demos_per_prompt
    ppo = dataclasses.replace(SMOKE, demos_split="ppo")
    run_study(ppo, tmp_path / "w", stages={"prepare", "rlhf", "demos"}, progress=False)
    assert calls["demo_split"][-1] == (prompts, ["z"])  # the fake PPO split's test prompts
    assert len(list((tmp_path / "w").glob("demos-*"))) == 2
    assert len(list((tmp_path / "w").glob("rlhf-*"))) == 1  # PPO itself is unchanged
    with pytest.raises(ConfigError, match="StudyConfig.demos_split must be one of"):
        dataclasses.replace(SMOKE, demos_split="PPO")


@pytest.mark.parametrize("second_lane", [True, False])
def test_the_interp_stage_runs_beside_irl_in_the_second_lane(tmp_path, calls, monkeypatch,
                                                              second_lane):
    """With the second lane the interpretability stage starts before IRL ends (it needs IRL's
    rewards only for its last comparison, and waits for them there); either way it gets the
    seeds' ensemble of IRL's held-out rewards, and the same folder."""
    import threading

    import jaxirl.pipeline.study as study
    from jaxirl.irl.ensemble import ensemble

    fake_irl, fake_interp = study.run_irl, None
    started = threading.Event()
    seen = []

    def irl(*args, **kwargs):
        # Waits (bounded) for the interp stage: it starts beside IRL only in the lane.
        seen.append(started.wait(timeout=5 if second_lane else 0.2))
        return fake_irl(*args, **kwargs)

    import jaxirl.pipeline.interp_stage as interp_stage

    fake_interp = interp_stage.run_interp

    def interp(*args, **kwargs):
        started.set()
        return fake_interp(*args, **kwargs)

    monkeypatch.setattr(study, "run_irl", irl)
    monkeypatch.setattr(interp_stage, "run_interp", interp)
    monkeypatch.setattr(study, "background_lane_applies", lambda *args: second_lane)
    config = dataclasses.replace(SMOKE, rlhf_seeds=2)
    out = run_study(config, tmp_path / "w", progress=False)
    assert seen == [second_lane]
    (irl_folder,) = (tmp_path / "w").glob("irl-*")
    (handed,) = calls["interp_irl"]
    np.testing.assert_array_equal(handed, ensemble(np.load(irl_folder / "test_rewards.npy"))[0])
    assert pathlib.Path(out["interp"]["results"]).parent.name.startswith("interp-")
    folders = _folders(tmp_path / "w")
    # The same stage key either way: a study resumed without the lane reuses the folder.
    monkeypatch.setattr(study, "background_lane_applies", lambda *args: not second_lane)
    run_study(config, tmp_path / "w", progress=False)
    assert _folders(tmp_path / "w") == folders and len(calls["interp"]) == 1


def test_a_failed_irl_ends_the_interp_stage_that_waits_for_it(tmp_path, calls, monkeypatch):
    """IRL fails while the lane's interpretability stage waits for its rewards: the study
    raises IRL's error, and the waiting stage fails at once instead of hanging."""
    import threading

    import jaxirl.pipeline.interp_stage as interp_stage
    import jaxirl.pipeline.study as study

    waiting, ended = threading.Event(), []
    fake_interp = interp_stage.run_interp

    def interp(*args, **kwargs):
        waiting.set()
        try:
            return fake_interp(*args, **kwargs)
        except StageError as e:
            ended.append(str(e))
            raise

    def failing_irl(*args, **kwargs):
        waiting.wait(timeout=5)
        raise ValueError("column 'txt' not found")

    monkeypatch.setattr(interp_stage, "run_interp", interp)
    monkeypatch.setattr(study, "run_irl", failing_irl)
    monkeypatch.setattr(study, "background_lane_applies", lambda *args: True)
    with pytest.raises(StageError, match="stage 'irl' failed"):
        run_study(dataclasses.replace(SMOKE, rlhf_seeds=2), tmp_path / "w", progress=False)
    for thread in threading.enumerate():
        if thread.name == "jaxirl-interp":
            thread.join(timeout=5)
            assert not thread.is_alive()
    assert ended == ["the study failed before 'irl' finished"]
    assert not list((tmp_path / "w").glob("interp-*/DONE.json"))


@pytest.mark.parametrize("second_lane", [True, False])
def test_the_lanes_run_the_host_blas_on_one_thread(tmp_path, calls, monkeypatch, second_lane):
    """Where XLA fills the cores from several threads, NumPy's and SciPy's BLAS run on one
    thread during the study (and as before after it); a thread count the user set stands."""
    import scipy.linalg  # noqa: F401 - its BLAS too
    from threadpoolctl import threadpool_info

    import jaxirl.pipeline.interp_stage as interp_stage
    import jaxirl.pipeline.study as study

    def blas_threads():
        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    before, seen = blas_threads(), []
    fake_interp = interp_stage.run_interp

    def interp(*args, **kwargs):
        seen.append(blas_threads())
        return fake_interp(*args, **kwargs)

    monkeypatch.setattr(interp_stage, "run_interp", interp)
    monkeypatch.setattr(study, "background_lane_applies", lambda *args: second_lane)
    for name in study.BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = dataclasses.replace(SMOKE, rlhf_seeds=2)
    run_study(config, tmp_path / "w", progress=False)
    assert seen == [[1] if second_lane else before] and blas_threads() == before
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with study.one_blas_thread():
        assert blas_threads() == before
