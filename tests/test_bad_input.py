"""Bad input, as a new user types it: every row of issue 19's table and more.

Each launcher case runs a real launcher (``jaxirl.launchers``) and checks the
exit code, the single ``error: ...`` line (and no traceback, no asyncio noise, neither in
the case's output nor in what its process printed at start-up and exit), and that
nothing changed outside the run's own folder; for the data-loss rows a sentinel file in
the target folder survives. Launcher cases run from one fixture, all cases of a launcher
in one process of it (``launchers.LauncherProcess``, ``launcher_cases_main.py``: each
case still gets fresh flags, its own argv, environment and captured output, and absl's
``app.run``), the launchers side by side; library cases (reward functions, pipeline
stages) run in process. ``ISSUE_ROWS`` maps every
row of the issue's table to the cases (or tests elsewhere) that cover it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable

import jax
import numpy as np
import pytest
from launchers import LauncherProcess, environment
from tiny_setup import tiny_policy, tiny_tokenizer, write_tiny_demos, write_tiny_model

from jaxirl import runs
from jaxirl.data.prompts import write_jsonl
from jaxirl.errors import JaxIRLError, RewardError
from jaxirl.models import GPTNeoXConfig, init_params, save_pretrained

ROOT = pathlib.Path(__file__).resolve().parents[1]
# All cases of a launcher run in one process of it, after the finished runs they start
# from (so the second finished rlhf run, and the cases that train, load the first's
# compiled programs instead of compiling them beside it). A failed Orbax restore leaves
# the process dropping "Event loop is closed" noise (``jaxirl.checkpoint``), so that case
# runs last: the noise of every other case is still seen, and its own at the exit.
LAST_IN_PROCESS = ("garbled_reward_checkpoint",)


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
      id: the case's name (and its folder under ``cases/``).
      script: the launcher in ``experiments/``.
      args: its arguments; ``{w}`` is the shared inputs' folder, ``{c}`` the case's own.
      error: a substring of the one ``error:`` line (exit 2); None: the run must succeed.
      stdout: a substring of stdout when the run succeeds.
      run_folder: the case's run folder (under ``{c}``), the only place allowed to change.
      sentinels: files under ``{c}`` the user wrote, which must survive unchanged.
      setup: prepares ``{c}`` (given the shared folder and the case folder).
      env: extra environment (formatted like ``args``).
    """

    id: str
    script: str
    args: tuple[str, ...]
    error: str | None
    stdout: str | None = None
    run_folder: str | None = None
    sentinels: tuple[str, ...] = ()
    setup: Callable[[pathlib.Path, pathlib.Path], None] | None = None
    env: tuple[tuple[str, str], ...] = ()


TINY = ("--preset", "tiny", "--eval_prompts", "2", "--save_every", "1")


def rlhf(*args: str) -> tuple[str, ...]:
    """rlhf.py arguments on the tiny model and prompts, then ``args``."""
    return ("--model", "{w}/model", "--dataset", "{w}/prompts.jsonl", *TINY, *args)


def bad_rlhf(case_id: str, error: str, *args: str) -> Case:
    """An rlhf.py case on the tiny inputs, run folder ``{c}/run``, with ``args``."""
    return Case(case_id, "rlhf.py", rlhf(*args, "--workdir", "{c}/run"), error, run_folder="run")


DONE_RLHF = rlhf("--num_iterations", "1", "--workdir", "{c}/run")
IRL = ("--demos", "{w}/demos", "--backbone", "{w}/model", "--seeds", "2", "--epochs", "1",
       "--batch_size", "4", "--max_length", "8", "--noprogress")
DONE_IRL = (*IRL, "--workdir", "{c}/run")


def copy_done(name: str) -> Callable[[pathlib.Path, pathlib.Path], None]:
    """Setup: a copy of a finished run (mtimes kept) as the case's ``run`` folder."""
    return lambda w, c: shutil.copytree(w / name, c / "run", copy_function=shutil.copy2)


def user_folder(w: pathlib.Path, c: pathlib.Path) -> None:
    (c / "dir" / "sub").mkdir(parents=True)
    (c / "dir" / "a.txt").write_text("keep")


def a_file(w: pathlib.Path, c: pathlib.Path) -> None:
    (c / "file.txt").write_text("keep")


def run_with_user_file(w: pathlib.Path, c: pathlib.Path) -> None:
    copy_done("rlhf_done")(w, c)
    (c / "run" / "notes.txt").write_text("keep")


def change_model_c(w: pathlib.Path, c: pathlib.Path) -> None:
    """A finished run on model_c, then model_c retrained in place (one weight changed)."""
    shutil.copytree(w / "rlhf_done_c", c / "run", copy_function=shutil.copy2)
    from safetensors.numpy import load_file, save_file

    state = load_file(str(w / "model_c" / "model.safetensors"))
    state["gpt_neox.final_layer_norm.bias"][0] += 0.5
    save_file(state, str(w / "model_c" / "model.safetensors"), metadata={"format": "pt"})


def corrupt_marker(w: pathlib.Path, c: pathlib.Path) -> None:
    copy_done("rlhf_done")(w, c)
    (c / "run" / runs.MARKER).write_text("{garbled")


CASES = [
    # --- the issue's table, row by row
    Case("out_existing_folder", "pretrain_default.py",
         ("--out", "{c}/dir", "--steps", "1", "--noevaluate"), "was not written by jaxirl",
         setup=user_folder, sentinels=("dir/a.txt",)),
    Case("out_existing_folder_overwrite", "pretrain_default.py",
         ("--out", "{c}/dir", "--steps", "1", "--noevaluate", "--overwrite"),
         "was not written by jaxirl", setup=user_folder, sentinels=("dir/a.txt",)),
    bad_rlhf("ppo_diverges", "PPO iteration 1 diverged: non-finite", "--lr", "1e4",
             "--num_iterations", "2"),
    bad_rlhf("nan_weight", "holds 1 NaN or inf value(s)", "--model", "{w}/nan_model"),
    bad_rlhf("tokenizer_bigger_than_embedding", "has 13 tokens but the model's embedding has 8 "
             "rows", "--model", "{w}/small_vocab_model"),
    Case("same_run_twice", "rlhf.py", DONE_RLHF, None, stdout="nothing to do",
         setup=copy_done("rlhf_done")),
    Case("other_settings_without_resume", "rlhf.py",
         rlhf("--num_iterations", "2", "--workdir", "{c}/run"),
         "(num_iterations 1 → 2); refusing to overwrite it", setup=copy_done("rlhf_done")),
    Case("resume_with_another_model", "rlhf.py",
         rlhf("--num_iterations", "1", "--workdir", "{c}/run", "--resume", "--model",
              "{w}/model_b"), "model content sha256:", setup=copy_done("rlhf_done")),
    Case("irl_resume_with_another_loss", "irl.py", (*DONE_IRL, "--resume", "--loss", "logistic"),
         "train.loss.name max_margin → logistic", setup=copy_done("irl_done")),
    Case("model_changed_in_place_resume", "rlhf.py",
         rlhf("--model", "{w}/model_c", "--num_iterations", "1", "--workdir", "{c}/run",
              "--resume"), "model content sha256:", setup=change_model_c),
    Case("workdir_on_read_only_fs", "rlhf.py", rlhf("--workdir", "/proc/jaxirl-test/run"),
         "cannot create output folder '/proc/jaxirl-test/run'"),
    Case("workdir_is_a_file", "rlhf.py", rlhf("--workdir", "{c}/file.txt"), "is a file",
         setup=a_file, sentinels=("file.txt",)),
    Case("workdir_under_a_file", "irl.py", (*IRL, "--workdir", "{c}/file.txt/run"), "is a file",
         setup=a_file, sentinels=("file.txt",)),
    Case("unwritable_cache", "rlhf.py", ("--preset", "tiny", "--workdir", "{c}/run"),
         "set JAXIRL_CACHE to a writable folder", setup=a_file, sentinels=("file.txt",),
         env=(("JAXIRL_CACHE", "{c}/file.txt/cache"),)),
    Case("unwritable_cache_pretrain", "pretrain_default.py", ("--noevaluate",),
         "cannot write the default model into the cache", env=(("JAXIRL_CACHE", "/proc/jx"),)),
    bad_rlhf("non_utf8_prompts_rlhf", "is not UTF-8 text: byte 0xe9", "--dataset",
             "{w}/latin1.jsonl"),
    Case("non_utf8_prompts_irl", "irl.py",
         ("--policy_model", "{w}/model", "--base_model", "{w}/model", "--prompts",
          "{w}/latin1.jsonl", "--workdir", "{c}/run"), "is not UTF-8 text", run_folder="run"),
    Case("non_utf8_texts_interp", "interp.py",
         ("--base_model", "{w}/model", "--tuned_model", "{w}/model", "--texts",
          "{w}/latin1.jsonl", "--out_dir", "{c}/run"), "is not UTF-8 text", run_folder="run"),
    bad_rlhf("garbled_reward_checkpoint", "is corrupt or does not match", "--reward",
             "learned:{w}/garbled_reward", "--num_iterations", "1"),
    # eval_prompts 2 with no held-out prompts used to skip the evaluation silently.
    bad_rlhf("eval_prompts_without_held_out_prompts", "eval_prompts is 2 but the prompt data "
             "has no held-out prompts", "--test_fraction", "0"),
    Case("negative_eval_prompts_rlhf", "rlhf.py", rlhf("--eval_prompts", "-1", "--workdir",
                                                       "{c}/run"),
         "--eval_prompts=-1: -1 is not a non-negative integer"),
    Case("negative_eval_prompts_pipeline", "pipeline.py",
         ("--eval_prompts", "-3", "--workdir", "{c}/run"), "--eval_prompts=-3"),
    Case("interp_max_tokens_past_context", "interp.py",
         ("--base_model", "{w}/model", "--tuned_model", "{w}/model", "--texts",
          "{w}/prompts.jsonl", "--text_column", "prompt", "--max_tokens", "1000", "--out_dir",
          "{c}/run"), "--max_tokens 1000 exceeds the 64-token context"),
    Case("irl_num_layers_unfrozen_99", "irl.py",
         (*IRL, "--num_layers_unfrozen", "99", "--workdir", "{c}/run"),
         "--num_layers_unfrozen is 99 but", run_folder="run"),
    bad_rlhf("model_without_tokenizer", "has no tokenizer files", "--model",
             "{w}/no_tokenizer_model"),
    Case("pipeline_names_its_own_flag", "pipeline.py", ("--irl_seeds", "0", "--workdir", "{c}/r"),
         "--irl_seeds=0: 0 is not a positive integer"),
    Case("irl_seed_zero_allowed_negative_not", "irl.py", (*IRL, "--seed", "-5", "--workdir",
                                                          "{c}/run"),
         "--seed must be >= 0, got -5"),
    # --- beyond the table: what else a new user tries
    bad_rlhf("empty_dataset", "is empty", "--dataset", "{w}/empty.jsonl"),
    bad_rlhf("wrong_prompt_column", "has no prompt column 'text' (columns: prompt, "
             "original_output); set --prompt_column", "--prompt_column", "text"),
    bad_rlhf("generation_longer_than_context", "--max_new_tokens 100 leaves no room for a "
             "prompt", "--max_new_tokens", "100"),
    bad_rlhf("missing_reward_checkpoint", "is not a reward model folder (no reward_model.json, and "
             "its GPT-NeoX model has no score head",
             "--reward", "learned:{w}/model"),
    bad_rlhf("missing_reward_ensemble", "is not a reward ensemble folder (no "
             "reward_ensemble.json)", "--reward", "ensemble:{w}/model"),
    bad_rlhf("config_weights_mismatch", "config.json implies", "--model", "{w}/mismatch_model"),
    bad_rlhf("truncated_weights", "cannot read weights file", "--model", "{w}/truncated_model"),
    Case("workdir_is_a_model_folder", "rlhf.py", rlhf("--workdir", "{c}/m"),
         "was not written by jaxirl", sentinels=("m/model.safetensors", "m/config.json"),
         setup=lambda w, c: shutil.copytree(w / "model", c / "m")),
    Case("overwrite_keeps_the_users_files", "rlhf.py", (*DONE_RLHF, "--overwrite"), None,
         stdout='"iterations": 1', run_folder="run", sentinels=("run/notes.txt",),
         setup=run_with_user_file),
    Case("corrupt_run_marker", "rlhf.py", DONE_RLHF, "unreadable jaxirl_run.json",
         setup=corrupt_marker),
    # --overwrite with an input that fails to load once the folder is open: the finished
    # run is put back as it was (no run_folder: nothing under the case may change).
    Case("overwrite_with_a_bad_input_keeps_the_finished_run", "rlhf.py",
         (*DONE_RLHF, "--overwrite", "--prompt_column", "txt"), "has no prompt column 'txt'",
         setup=copy_done("rlhf_done"), sentinels=("run/summary.json",)),
    Case("unknown_flag", "rlhf.py", ("--learning_rate", "1e-3"),
         "Unknown command line flag 'learning_rate'"),
    Case("stray_argument", "irl.py", (*IRL, "--workdir", "{c}/run", "extra"),
         "unexpected arguments: extra"),
    Case("interp_demos_is_a_model", "interp.py",
         ("--base_model", "{w}/model", "--tuned_model", "{w}/model", "--demos", "{w}/model",
          "--out_dir", "{c}/run"), "--demos: demos folder", run_folder="run"),
    Case("unknown_reward_kind", "rlhf.py", rlhf("--reward", "toxicity", "--workdir", "{c}/run"),
         "--reward=toxicity: value should be one of <profanity[:ARG]|roberta[:ARG]|learned:PATH|"
         "ensemble:PATH|linear:PATH>"),
    Case("zero_learning_rate", "rlhf.py", rlhf("--lr", "0", "--workdir", "{c}/run"),
         "--lr must be > 0, got 0.0"),
    # A reward or ground truth whose folder is missing, or whose hub id cannot be fetched:
    # one line naming the flag, before any model, data or run folder.
    Case("ground_truth_folder_missing", "pipeline.py",
         ("--preset", "smoke", "--ground_truth", "roberta:nope_folder", "--workdir", "{c}/run"),
         "--ground_truth 'roberta:nope_folder': 'nope_folder' does not exist"),
    Case("reward_folder_missing", "rlhf.py",
         rlhf("--reward", "roberta:nope_folder", "--workdir", "{c}/run"),
         "--reward 'roberta:nope_folder': 'nope_folder' does not exist"),
    Case("toxicity_scorer_not_fetchable", "rlhf.py",
         rlhf("--toxicity_scorer", "roberta:nobody/absent", "--workdir", "{c}/run"),
         "--toxicity_scorer 'roberta:nobody/absent': cannot fetch 'nobody/absent'"),
    Case("pipeline_workdir_not_its_own", "pipeline.py", ("--workdir", "{c}/dir", "--overwrite"),
         "was not written by jaxirl", setup=user_folder, sentinels=("dir/a.txt",)),
]

# Every row of the issue's table -> the cases here, or the tests elsewhere, that cover it.
ISSUE_ROWS = {
    "--out of an existing folder": ["out_existing_folder", "out_existing_folder_overwrite"],
    "diverged PPO": ["ppo_diverges",
                     "test_divergence.py::test_ppo_divergence_stops_before_its_checkpoint_and_"
                     "keeps_the_last_good_one"],
    "NaN in one weight": ["nan_weight"],
    "tokenizer vocab > model vocab": ["tokenizer_bigger_than_embedding"],
    "same launcher twice in one workdir": ["same_run_twice"],
    "second run with other settings, no --resume": ["other_settings_without_resume"],
    "--resume with another --model": ["resume_with_another_model"],
    "irl.py --resume --loss logistic on a max-margin run": ["irl_resume_with_another_loss"],
    "model folder changed in place": ["model_changed_in_place_resume",
                                      "test_a_model_changed_in_place_reruns_its_stages"],
    "kill -9 while irl --resume re-saves reward models": [
        "pipeline/test_kill_during_irl_save.py::test_kill_during_resumed_save_loses_no_finished_"
        "model"],
    "output path not creatable": ["workdir_on_read_only_fs", "workdir_is_a_file",
                                  "workdir_under_a_file", "unwritable_cache",
                                  "unwritable_cache_pretrain"],
    "non-UTF-8 JSONL": ["non_utf8_prompts_rlhf", "non_utf8_prompts_irl", "non_utf8_texts_interp"],
    "corrupt DONE.json": ["test_a_corrupt_done_file_means_unfinished"],
    "pretrain_default.py --steps 1": ["test_one_step_lm_schedule",
                                      "test_pretrain_default_one_step"],
    "garbled Orbax reward checkpoint": ["garbled_reward_checkpoint"],
    "negative --eval_prompts": ["negative_eval_prompts_rlhf", "negative_eval_prompts_pipeline"],
    "--eval_prompts with --test_fraction 0": ["eval_prompts_without_held_out_prompts"],
    "interp.py --max_tokens 1000 on a 256-token model": ["interp_max_tokens_past_context"],
    "irl.py --num_layers_unfrozen 99": ["irl_num_layers_unfrozen_99"],
    "pipeline --stages prepare,rlhf": [
        "pipeline/test_pipeline_smoke.py::test_stages_prepare_rlhf_runs_only_those_stages"],
    "no tokenizer files in the model folder": ["model_without_tokenizer"],
    "reward fn returning the wrong shape, strings, a scalar, or raising": [
        "test_bad_reward_functions_are_reward_errors"],
    "error messages": ["pipeline_names_its_own_flag", "irl_seed_zero_allowed_negative_not"],
}


# ------------------------------------------------------------------ the shared inputs


def _environment(world: pathlib.Path, extra=()) -> dict[str, str]:
    return environment({"JAXIRL_CACHE": str(world / "cache"),
                        "HF_DATASETS_CACHE": str(world / "hf"), **dict(extra)})


def _launch(world: pathlib.Path, script: str, args, env=()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args],
                          capture_output=True, text=True, env=_environment(world, env),
                          timeout=900)


def _write_inputs(w: pathlib.Path) -> None:
    write_tiny_model(w / "model", layers=3)  # context 64
    write_tiny_model(w / "model_b", seed=5, layers=3)
    shutil.copytree(w / "model", w / "model_c")
    words = ["the cat", "a dog sat", "the mat", "a cat ran on", "the dog", "a mat"]
    write_jsonl([{"prompt": p, "original_output": " good cat"} for p in words * 5],
                w / "prompts.jsonl")
    (w / "latin1.jsonl").write_bytes('{"prompt": "café au lait", "original_output": "x"}\n'
                                     .encode("latin-1"))
    (w / "empty.jsonl").write_text("")
    write_tiny_demos(w / "demos")
    # One NaN weight.
    shutil.copytree(w / "model", w / "nan_model")
    from safetensors.numpy import load_file, save_file

    state = load_file(str(w / "model" / "model.safetensors"))
    state["gpt_neox.layers.1.mlp.dense_4h_to_h.bias"][3] = np.nan
    save_file(state, str(w / "nan_model" / "model.safetensors"), metadata={"format": "pt"})
    # A model whose embedding has 8 rows under the 13-word tokenizer.
    cfg = GPTNeoXConfig(vocab_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    # Jitted: its values do not matter, and op by op its new shapes cost seconds.
    params = jax.jit(init_params, static_argnums=0)(cfg, jax.random.PRNGKey(0))
    save_pretrained(w / "small_vocab_model", cfg, params, tokenizer=tiny_tokenizer())
    shutil.copytree(w / "model", w / "no_tokenizer_model")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (w / "no_tokenizer_model" / name).unlink()
    shutil.copytree(w / "model", w / "mismatch_model")
    config = json.loads((w / "model" / "config.json").read_text())
    (w / "mismatch_model" / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    shutil.copytree(w / "model", w / "truncated_model")
    weights = (w / "model" / "model.safetensors").read_bytes()
    (w / "truncated_model" / "model.safetensors").write_bytes(weights[: len(weights) // 2])


def _fill(args, w, c):
    return [str(a).format(w=w, c=c) for a in args]


def _snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file and folder under root, the caches excepted."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in ("cache", "hf"):
            continue
        st = path.lstat()
        out[rel] = (st.st_size if path.is_file() else -1, st.st_mtime_ns if path.is_file() else 0)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Runs every launcher case; returns the world folder, outputs, changes and the processes'
    own output (script -> exit code, and what it printed outside the cases)."""
    w = tmp_path_factory.mktemp("bad_input")
    _write_inputs(w)
    done = {"rlhf.py": {"rlhf_done": rlhf("--num_iterations", "1", "--workdir", "{w}/rlhf_done"),
                        "rlhf_done_c": rlhf("--model", "{w}/model_c", "--num_iterations", "1",
                                            "--workdir", "{w}/rlhf_done_c")},
            "irl.py": {"irl_done": (*IRL, "--workdir", "{w}/irl_done")}}
    scripts = sorted({case.script for case in CASES})
    with contextlib.ExitStack() as stack, concurrent.futures.ThreadPoolExecutor(len(scripts)) as pool:
        processes = {s: stack.enter_context(LauncherProcess(s, _environment(w))) for s in scripts}
        finished = [pool.submit(processes[s].run, {k: _fill(a, w, w) for k, a in lines.items()})
                    for s, lines in done.items()]
        for future in finished:
            for name, proc in future.result().items():
                assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        shutil.copytree(w / "irl_done" / "reward_models" / "seed_0", w / "garbled_reward")
        blobs = [p for p in (w / "garbled_reward" / "params").rglob("*") if p.parent.name == "d"]
        assert blobs
        for blob in blobs:  # the tensor data files of the OCDBT store
            blob.write_bytes(os.urandom(48))
        for case in CASES:
            (w / "cases" / case.id).mkdir(parents=True)
            if case.setup is not None:
                case.setup(w, w / "cases" / case.id)
        before = _snapshot(w)

        def run(script):
            cases = sorted((c for c in CASES if c.script == script),
                           key=lambda c: c.id in LAST_IN_PROCESS)
            folders = {case.id: w / "cases" / case.id for case in cases}
            return processes[script].run(
                {case.id: _fill(case.args, w, folders[case.id]) for case in cases},
                {case.id: {k: v.format(w=w, c=folders[case.id]) for k, v in case.env}
                 for case in cases})

        procs = {}
        for outputs in pool.map(run, scripts):
            procs.update(outputs)
        exits = {script: processes[script].close() for script in scripts}
    assert sorted(procs) == sorted(c.id for c in CASES)
    after = _snapshot(w)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    for name, proc in [*procs.items(), *exits.items()]:  # for a failure's post-mortem
        (w / "cases" / f"{name}.log").write_text(
            f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return w, procs, changed, before, exits


def _allowed(case: Case, path: str) -> bool:
    return case.run_folder is not None and (
        path == f"cases/{case.id}/{case.run_folder}" or
        path.startswith(f"cases/{case.id}/{case.run_folder}/"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(results, case):
    w, procs, changed, before, exits = results
    proc, process = procs[case.id], exits[case.script]
    assert process.returncode == 0, process.stderr[-3000:]
    for stderr in (proc.stderr, process.stderr):
        assert "Traceback" not in stderr, stderr[-3000:]
        assert "Event loop is closed" not in stderr, stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    if case.error is None:
        assert proc.returncode == 0 and not errors, proc.stderr[-3000:]
        assert case.stdout in proc.stdout, proc.stdout[-2000:]
    else:
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert len(errors) == 1 and case.error in errors[0], proc.stderr[-3000:]
    mine = sorted(p for p in changed if p.startswith(f"cases/{case.id}/"))
    assert [p for p in mine if not _allowed(case, p)] == [], "changed outside the run folder"
    for sentinel in case.sentinels:
        path = w / "cases" / case.id / sentinel
        assert path.is_file() and before[f"cases/{case.id}/{sentinel}"][0] == path.stat().st_size


def test_nothing_outside_the_cases_changed(results):
    _, _, changed, _, _ = results
    assert sorted(p for p in changed if not p.startswith("cases/")) == []


def test_a_diverged_run_writes_no_nan_checkpoint_summary_or_policy(results):
    w, _, _, _, _ = results
    run = w / "cases" / "ppo_diverges" / "run"
    assert not any((run / "checkpoints").iterdir())
    assert not (run / "summary.json").exists() and not (run / "policy").exists()
    assert not json.loads((run / runs.MARKER).read_text())["finished"]


def test_a_rejected_input_leaves_no_run_folder_behind(results):
    w, _, _, _, _ = results
    for case in ("nan_weight", "empty_dataset", "non_utf8_prompts_irl", "model_without_tokenizer"):
        assert not (w / "cases" / case / "run").exists(), case


def test_overwrite_replaced_the_run_and_only_the_run(results):
    w, _, _, _, _ = results
    run = w / "cases" / "overwrite_keeps_the_users_files" / "run"
    assert (run / "notes.txt").read_text() == "keep"
    assert json.loads((run / runs.MARKER).read_text())["finished"]
    assert (run / "policy" / "model.safetensors").is_file()


def test_every_issue_row_is_covered():
    names = {c.id for c in CASES} | {name for name in globals() if name.startswith("test_")}
    for row, covering in ISSUE_ROWS.items():
        assert covering, row
        for name in covering:
            if "::" in name:
                path, test = name.split("::")
                assert f"def {test}(" in (ROOT / "tests" / path).read_text(), name
            else:
                assert name in names, f"{row}: {name}"
    assert len(ISSUE_ROWS) == 23


# ------------------------------------------------------------------ library rows


def _bad_fns():
    def wrong_shape(samples, refs=None):
        return np.zeros(len(samples) + 1)

    def strings(samples, refs=None):
        return ["0.5"] * len(samples)

    def scalar(samples, refs=None):
        return 1.0

    def raising(samples, refs=None):
        return 1 / 0

    def nan(samples, refs=None):
        return np.full(len(samples), np.nan)

    return [(wrong_shape, r"returned shape \(4,\) for 3 samples; expected shape \(3,\)"),
            (strings, r"returned <U3 values"),
            (scalar, r"returned a scalar for 3 samples"),
            (raising, r"'raising' raised ZeroDivisionError on 3 samples: division by zero"),
            (nan, r"returned nan for sample 0 'the cat'")]


@pytest.mark.parametrize("fn,message", _bad_fns(), ids=lambda x: getattr(x, "__name__", "msg"))
def test_bad_reward_functions_are_reward_errors(fn, message):
    from jaxirl.ppo.trainer import response_rewards

    with pytest.raises(RewardError, match=message):
        response_rewards(fn, ["the cat", "a dog", "the mat"], None)


def test_one_step_lm_schedule():
    from jaxirl.training import lm

    _, params = tiny_policy()
    for steps in (1, 2):
        optimizer = lm.make_optimizer(lm.LMTrainConfig(total_steps=steps))
        # Jitted: one compile instead of hundreds of op-by-op dispatches.
        updates, _ = jax.jit(optimizer.update)(params, optimizer.init(params), params)
        assert all(np.isfinite(u).all() for u in jax.tree_util.tree_leaves(updates)), steps


@pytest.mark.slow
def test_pretrain_default_one_step(tmp_path):
    proc = _launch(tmp_path, "pretrain_default.py",
                   ["--out", str(tmp_path / "m"), "--steps", "1", "--noevaluate"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "m" / "build_summary.json").read_text())["steps"] == 1


def test_a_corrupt_done_file_means_unfinished(tmp_path):
    from jaxirl.pipeline.stages import DONE, StageRunner

    calls = []

    def stage(folder):
        calls.append(folder)
        return {"n": len(calls)}

    runner = StageRunner(tmp_path / "pipeline")
    first = runner.run("demos", {"k": 1}, stage)
    (first.folder / DONE).write_text('{"outputs": ')
    again = StageRunner(tmp_path / "pipeline").run("demos", {"k": 1}, stage)
    assert not again.skipped and again.outputs == {"n": 2} and again.folder == first.folder
    assert StageRunner(tmp_path / "pipeline").run("demos", {"k": 1}, stage).skipped


def test_a_model_changed_in_place_reruns_its_stages(tmp_path):
    from jaxirl.pipeline.stages import StageRunner

    model = write_tiny_model(tmp_path / "model")
    config = {"model": str(model), "iterations": 2}
    runner = StageRunner(tmp_path / "pipeline")
    first = runner.run("rlhf", config, lambda f: {})
    assert StageRunner(tmp_path / "pipeline").run("rlhf", config, lambda f: {}).skipped
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    again = StageRunner(tmp_path / "pipeline").run("rlhf", config, lambda f: {})
    assert not again.skipped and again.folder != first.folder
    # A stage's own outputs inside the workdir are keyed by folder name, not hashed.
    inner = {"reward": f"learned:{first.folder}"}
    name = runner.folder("x", inner)
    (first.folder / "more.txt").write_text("x")
    assert runner.folder("x", inner) == name


def test_library_errors_name_library_arguments():
    from jaxirl.irl.train import IRLTrainConfig

    with pytest.raises(JaxIRLError, match=r"^IRLTrainConfig\.num_seeds must be >= 1, got 0$"):
        IRLTrainConfig(num_seeds=0)
