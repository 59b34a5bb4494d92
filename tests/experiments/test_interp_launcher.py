"""experiments/interp.py: a tiny run writes results, tables and plots; bad flags are one line."""

import json

import numpy as np
import pytest
from interp_texts import save_base_and_tuned, synthetic_texts
from launchers import launch, launch_many

from jaxirl.data.prompts import write_jsonl
from jaxirl.metrics_log import read_metrics

NUM_TEXTS, NUM_TEST = 120, 24  # ceil(0.2 * 120) held out


def _launch(*args, timeout=300):
    return launch("interp.py", *args, timeout=timeout)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("interp_launcher")
    save_base_and_tuned(root)  # only block 1 moves: the one layer the stage must pick
    write_jsonl([{"text": t} for t in synthetic_texts(NUM_TEXTS, 0)], root / "texts.jsonl")
    np.save(root / "irl.npy", np.random.default_rng(1).normal(size=(2, NUM_TEST)))
    np.save(root / "irl_too_long.npy", np.zeros(NUM_TEST + 1))
    return root


def _args(root, out, *extra):
    return ["--model", str(root / "base"), "--policy_model", str(root / "tuned"),
            "--dataset", str(root / "texts.jsonl"), "--workdir", str(out), *extra]


def test_tiny_run_writes_results_tables_and_plots(inputs):
    out = inputs / "run"
    proc = _launch(*_args(inputs, out, "--num_layers", "1", "--dict_multiples", "1,2",
                          "--sae_epochs", "3", "--sae_batch_size", "64", "--max_tokens", "16",
                          "--top_k_contexts", "5", "--irl_rewards", str(inputs / "irl.npy")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout[proc.stdout.index("{"):])
    res = json.loads((out / "interp_results.json").read_text())
    assert res["layers"] == [1] == printed["layers"]
    assert (res["num_train_texts"], res["num_test_texts"]) == (NUM_TEXTS - NUM_TEST, NUM_TEST)
    assert res["target_transform"] == "rank_gauss"
    assert sorted((r["layer"], r["dict_multiple"], r["num_features"]) for r in res["sae"]) == [
        (1, 1, 32), (1, 2, 64)]
    # Rude words carry the reward and every text is read: the IRM must rank well.
    assert res["irm_vs_true"]["spearman"] > 0.3
    assert printed["irm_vs_true"]["spearman"] == pytest.approx(res["irm_vs_true"]["spearman"],
                                                               abs=1e-3)
    assert res["irm_vs_irl"]["n"] == NUM_TEST
    for name in ("irm_scatter.png", "sae_metrics.png", "firing_rates.png",
                 "sae_layer1_x1/cfg.json", "sae_layer1_x2/sae_weights.safetensors"):
        assert (out / name).stat().st_size > 0, name
    sae_cfg = json.loads((out / "sae_layer1_x2" / "cfg.json").read_text())
    assert (sae_cfg["d_sae"], sae_cfg["metadata"]["hook_name"]) == (64, "blocks.1.hook_mlp_out")
    epochs = [r["step"] for r in read_metrics(out / "sae_layer1_x2" / "train_metrics.jsonl")]
    assert epochs == list(range(1, len(epochs) + 1)) and epochs
    tables = (out / "interp_tables.md").read_text()
    assert "| IRM (SAE codes) vs true | " in tables and "| IRM vs IRL reward | " in tables
    assert "| 1 | 2× | 64 |" in tables
    saved = json.loads((out / "run_config.json").read_text())  # what --config_file reruns
    assert saved["interp"]["dict_multiples"] == [1, 2] and saved["interp"]["max_tokens"] == 16
    assert saved["dataset"] == str(inputs / "texts.jsonl")


def test_held_out_texts_of_one_class_skip_only_the_firing_test(inputs):
    """With no toxic held-out text the firing-rate test cannot compare the two classes: it
    is reported as not computed, and the rest of the stage still runs and writes."""
    clean = synthetic_texts(2 * NUM_TEXTS, 3)[::2]  # the even texts carry no rude word
    write_jsonl([{"text": t} for t in clean], inputs / "clean.jsonl")
    out = inputs / "clean_run"
    proc = _launch("--model", str(inputs / "base"), "--policy_model", str(inputs / "tuned"),
                   "--dataset", str(inputs / "clean.jsonl"), "--workdir", str(out),
                   "--num_layers", "1", "--dict_multiples", "1", "--sae_epochs", "2",
                   "--sae_batch_size", "64", "--max_tokens", "16", "--top_k_contexts", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "interp_results.json").read_text())
    assert res["firing_rate_test"] == {"not_computed": f"the held-out texts are all clean (0 "
                                                       f"toxic of {NUM_TEST}); the test "
                                                       "compares the two"}
    assert res["feature_labels"]["num_alive"] > 0 and "sae" in res["irm_spearman"]
    assert not (out / "firing_rates.png").exists()
    assert "Not computed: the held-out texts are all clean" in (out / "interp_tables.md").read_text()


def test_one_core_run_gives_the_same_results(inputs):
    # On one core the SAEs train one after the other and the feature labels follow the
    # IRM fit; on two they run side by side (interp_stage): the results may not differ.
    import os
    import shutil
    import subprocess
    import sys

    from launchers import ROOT, environment

    if len(os.sched_getaffinity(0)) < 2 or not shutil.which("taskset"):
        pytest.skip("needs two cores for the threaded side, and taskset for the other")
    args = ["--num_layers", "1", "--dict_multiples", "1,2", "--sae_epochs", "3",
            "--sae_batch_size", "64", "--max_tokens", "16", "--top_k_contexts", "5"]
    outs = {}
    core = min(os.sched_getaffinity(0))
    for pin in (["taskset", "-c", str(core)], []):
        out = inputs / f"pinned{len(pin)}"
        proc = subprocess.run([*pin, sys.executable, str(ROOT / "experiments" / "interp.py"),
                               *_args(inputs, out, *args)], capture_output=True, text=True,
                              env=environment(), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[len(pin)] = json.loads((out / "interp_results.json").read_text())
    one, many = outs.values()
    assert one == many and one["feature_labels"] and one["firing_rate_test"]


BAD_FLAGS = [
    (["--policy_model", "/no/such/folder"], "--policy_model: "),
    (["--out_dir", "{root}/other"], "--out_dir and --workdir are one flag"),  # deprecated name
    (["--config.interp.target_transform=log"], "--config.interp.target_transform=log: value "
     "should be one of <none|rank_gauss>"),
    (["--sae_epochs", "2", "--config.interp.sae.num_epochs=3"],
     "--sae_epochs and --config.interp.sae.num_epochs both set"),
    (["--pooling", "median"], "--pooling=median: value should be one of <mean|max|sum>"),
    (["--sae_l1_coef", "-1"], "--sae_l1_coef=-1: -1.0 is not"),
    (["--irl_rewards", "{root}/irl_too_long.npy"],
     f"shape ({NUM_TEST + 1},); expected [{NUM_TEST}]"),
    # Found while training: the errors name the flags, not the library's settings.
    (["--num_layers", "5"], "--num_layers (blocks to study) must be in [1, 2] for this "
     "2-block model, got 5"),
    (["--num_layers", "1", "--dict_multiples", "1", "--max_tokens", "16", "--sae_batch_size",
      "100000"], "--sae_batch_size is 100000 but SAE training has only "),]
# The cases refused only once the run has started (its unfinished folder may stay).
STARTED = {len(BAD_FLAGS) - 1}


@pytest.fixture(scope="module")
def bad_flag_runs(inputs):
    """Every BAD_FLAGS command line, run in one launcher process."""
    return launch_many("interp.py", {
        str(i): _args(inputs, inputs / f"bad{i}", *[e.format(root=inputs) for e in extra])
        for i, (extra, _) in enumerate(BAD_FLAGS)})


@pytest.mark.parametrize("case", range(len(BAD_FLAGS)), ids=[m for _, m in BAD_FLAGS])
def test_bad_flags_are_one_line_errors(inputs, bad_flag_runs, case):
    proc, message = bad_flag_runs[str(case)], BAD_FLAGS[case][1]
    assert proc.returncode == 2, proc.stderr[-1500:]
    error_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    if case not in STARTED:
        assert not (inputs / f"bad{case}").exists()  # a rejected command line creates nothing


def test_demos_give_the_bootstrap_one_unit_per_prompt(inputs):
    # A prompt's expert and base texts (and its several pairs) are not independent: the
    # intervals resample prompts, as in the study (run_interp's test_groups).
    from jaxirl.irl.demos import demos_from_texts, load_demos, save_demos

    texts = synthetic_texts(120, 2)
    prompts = [f"prompt {i // 3}" for i in range(60)]  # 20 prompts, 3 pairs each
    save_demos(demos_from_texts(prompts, texts[0::2], texts[1::2], scorer="profanity"),
               inputs / "demos")
    test_prompts = load_demos(inputs / "demos")["test"]["prompt"]
    out = inputs / "from_demos"
    proc = _launch("--model", str(inputs / "base"), "--policy_model", str(inputs / "tuned"),
                   "--demos", str(inputs / "demos"), "--workdir", str(out), "--num_layers", "1",
                   "--dict_multiples", "1", "--sae_epochs", "1", "--sae_batch_size", "64",
                   "--max_tokens", "16", "--top_k_contexts", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "interp_results.json").read_text())
    assert res["num_test_texts"] == 2 * len(test_prompts) == 24
    assert res["num_test_groups"] == len(set(test_prompts)) == 4

