"""A pipeline workdir moved or copied elsewhere resumes there: same stage folders, and every
recorded path read back under the new workdir (fake stages, no models)."""

import dataclasses
import hashlib
import json
import os
import shutil

import pytest

from jaxirl import runs
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.irl.train import IRLTrainConfig
from jaxirl.pipeline.stages import DONE, StageRunner, config_hash
from jaxirl.report.methods import _rerlhf_lines


def _chain(workdir, ran: list[str]) -> dict:
    """Three stages: A writes a file; B's config names it as ``learned:PATH``; C names B's."""
    runner = StageRunner(workdir)

    def stage_a(folder):
        ran.append("a")
        (folder / "model.txt").write_text("weights")
        return {"model": str(folder / "model.txt"), "runs": {"1": str(folder / "seed_1")},
                "pairs": 3}

    a = runner.run("a", {"k": 1}, stage_a)
    learned = f"learned:{a.outputs['model']}"

    def stage_b(folder):
        ran.append("b")
        (folder / "out.txt").write_text(learned)
        return {"out": str(folder / "out.txt"), "reward": learned}

    b = runner.run("b", {"reward": learned, "a": a.folder.name}, stage_b)

    def stage_c(folder):
        ran.append("c")
        return {"report": str(runner.workdir / "report.md"), "all": [b.outputs["out"]]}

    c = runner.run("c", {"inputs": [b.outputs["out"]], "version": 1}, stage_c)
    return {r.name: r for r in (a, b, c)}


def _replace(value, old: str, new: str):
    return json.loads(json.dumps(value).replace(old, new))


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_a_moved_workdir_skips_every_stage_and_reads_its_outputs_in_place(
        tmp_path, monkeypatch, relative):
    monkeypatch.chdir(tmp_path)
    old, new = ("old", "new") if relative else (str(tmp_path / "old"), str(tmp_path / "new"))
    ran = []
    first = _chain(old, ran)
    assert ran == ["a", "b", "c"]
    assert first["b"].outputs["reward"].startswith(f"learned:{old}{os.sep}a-")
    for result in first.values():
        assert old not in (result.folder / DONE).read_text()  # kept as <workdir>/...
    shutil.move(old, new)
    assert not (tmp_path / "old").exists()

    ran = []
    second = _chain(new, ran)
    assert ran == []
    for name, result in second.items():
        assert result.skipped
        assert result.folder.name == first[name].folder.name
        assert result.outputs == _replace(first[name].outputs, old, new)
    assert second["b"].outputs["reward"] == f"learned:{second['a'].outputs['model']}"
    assert (tmp_path / second["a"].outputs["model"]).read_text() == "weights"
    assert second["a"].outputs["pairs"] == 3


def _old_hash(config, contents=None) -> str:
    """The hash before workdir paths became ``<workdir>/...`` (the formula of every
    existing workdir's folder names)."""
    blob = json.dumps({"config": config, "contents": contents} if contents else config,
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def test_configs_without_workdir_paths_keep_their_hash(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\0\1")
    plain = {"model": "EleutherAI/pythia-70m", "dataset": "a/b.jsonl", "preset": "default",
             "iterations": 30, "reward": "profanity", "reference_column": None,
             "ground_truth": "roberta:s-nlp/roberta_toxicity_classifier"}
    nested = {"irl": IRLTrainConfig(loss=IRLLossConfig("discriminator")), "dims": (1, 2, 8),
              "demos": "demos-0123abcd", "outputs": 2}
    workdir = tmp_path / "study"
    for config in (plain, nested):
        assert config_hash(config, workdir) == _old_hash(config)
    # Computed by the version before this change, for this config.
    assert config_hash(plain, workdir) == "f46b69b8"
    outside = {"model": str(model), "reward": f"learned:{model}"}
    assert config_hash(outside, workdir) == _old_hash(
        outside, {str(model): runs.fingerprint(model)})
    assert config_hash(IRLTrainConfig(), workdir) == _old_hash(dataclasses.asdict(IRLTrainConfig()))


def test_a_workdir_path_hashes_by_its_place_in_the_workdir(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        (root / "irl-0123abcd").mkdir(parents=True)
    config = {"reward": f"learned:{one}/irl-0123abcd/seed_0", "irl": "irl-0123abcd"}
    moved = _replace(config, str(one), str(two))
    assert config_hash(config, one) == config_hash(moved, two)
    assert config_hash(config, one) != _old_hash(config)
    assert config_hash(config, one) != config_hash({**config, "reward": "learned:x/seed_0"}, one)
    other = _replace(config, "irl-0123abcd/seed_0", "irl-0123abcd/seed_1")
    assert config_hash(other, one) != config_hash(config, one)


@pytest.mark.parametrize("how", ["move", "copy"])
def test_a_done_json_of_an_older_version_reads_its_paths_under_the_new_workdir(tmp_path, how):
    """Older versions recorded absolute paths: one outside the new workdir whose stage
    folder and path below it exist there is read there (also when the old copy remains)."""
    old, new = tmp_path / "old", tmp_path / "new"
    a = _chain(old, [])["a"]
    model = a.outputs["model"]
    elsewhere = tmp_path / "cache" / "rlhf-89abcdef" / "policy"  # outside, not in the workdir
    legacy = {"model": model, "spec": f"learned:{model}", "runs": {"1": a.outputs["runs"]["1"]},
              "cache": str(elsewhere), "missing": str(old / a.folder.name / "gone.txt"),
              "name": "profanity", "pairs": 3}
    (a.folder / DONE).write_text(json.dumps({"outputs": legacy, "seconds": 1.0}))
    if how == "move":
        shutil.move(old, new)
    else:
        shutil.copytree(old, new)
    ran = []
    result = StageRunner(new).run("a", {"k": 1}, lambda f: ran.append("a") or {})
    assert ran == [] and result.skipped and result.folder == new / a.folder.name
    moved = str(new / a.folder.name / "model.txt")
    assert result.outputs == {
        "model": moved, "spec": f"learned:{moved}",
        # seed_1 was never written: only paths that exist under the new workdir move.
        "runs": {"1": a.outputs["runs"]["1"]}, "cache": str(elsewhere),
        "missing": str(old / a.folder.name / "gone.txt"), "name": "profanity", "pairs": 3}


def test_the_report_names_rerlhf_rewards_relative_to_the_workdir(tmp_path):
    share = {"share": 0.5, "low": 0.4, "high": 0.6}
    blob = {"rerlhf": {
        "rewards": {"best": f"learned:{tmp_path}/irl-0123abcd/reward_models/seed_0",
                    "bayes": f"linear:{tmp_path}/methods-0123abcd/draw_0/bayes/posterior_mean"},
        "runs": {"true": ["a", "b"], "best": ["a", "b"], "bayes": ["a"]},
        "toxicity_after": {"true": [0.1, 0.2], "best": [0.2, 0.3], "bayes": [0.3]},
        "toxicity_before": [0.5, 0.5], "best": share, "bayes": share}}
    text = "\n".join(_rerlhf_lines(blob, tmp_path))
    assert str(tmp_path) not in text
    assert "`learned:irl-0123abcd/reward_models/seed_0`" in text
    assert "`linear:methods-0123abcd/draw_0/bayes/posterior_mean`" in text
