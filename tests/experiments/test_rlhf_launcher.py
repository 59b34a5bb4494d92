"""experiments/rlhf.py: bad flags give one-line errors; a tiny run writes its outputs."""

import json

import pytest
import transformers
from launchers import launch, launch_many
from tiny_setup import write_tiny_run_inputs


def _launch(*args, timeout=600):
    return launch("rlhf.py", *args, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    return write_tiny_run_inputs(tmp_path_factory.mktemp("launcher"))


BAD_FLAGS = [
    (["--preset", "nope"], "--preset=nope: value should be one of"),
    (["--model", "/no/such/folder"], "model folder '/no/such/folder' does not exist"),
    (["--batch_size", "3"], "--num_rollouts 8 is not divisible by --batch_size 3"),
    (["--num_devices", "3"], "--mesh data=3,fsdp=1 needs 3 devices but JAX sees 1"),
    (["--mesh", "data=1,fsdp=2", "--num_devices", "2"], "either --mesh or --num_devices"),
    (["--prompt_column", "text"], "text"),
    (["--eval_samples_per_prompt", "0"], "--eval_samples_per_prompt=0: 0 is not a positive"),
    # --config.<field> overrides: unknown field, wrong type, failed validation, a short flag
    # of the same field, a bad enumeration value, a saved config beside a preset.
    (["--config.ppo.learning_rate=1e-3"], "--config.ppo.learning_rate: ppo (PPOConfig) has no "
     "setting 'learning_rate'; its settings: lr, "),
    (["--config.ppo.batch_size=four"], "--config.ppo.batch_size=four: invalid literal for int()"),
    (["--config.ppo.gamma=1.5"], "--config.ppo.gamma=1.5: PPOConfig"),
    (["--config.eval_prompts=-1"], "--config.eval_prompts=-1: RLHFRunConfig.eval_prompts must be "
     ">= 0, got -1"),
    (["--lr", "1e-3", "--config.ppo.lr=1e-4"], "--lr and --config.ppo.lr both set 'ppo.lr'; pass "
     "one of them"),
    (["--config.attention=flash"], "--config.attention=flash: value should be one of "
     "<auto|rows|xla|cudnn>"),
    (["--config_file", "{root}/prompts.jsonl"], "pass --preset or --config_file, not both"),
    (["--resume", "--overwrite"], "--resume and --overwrite cannot be combined: --resume "
     "continues the unfinished run in --workdir, --overwrite replaces it; pass one"),]
# Refused once the run has started (the model, the prompts or the policy read).
STARTED = [
    (["--num_layers_unfrozen", "99"], "--num_layers_unfrozen is 99 but the policy has 3 "
     "layers: use 0..3, or -1 for all"),
    (["--test_fraction", "nan"], "--test_fraction must lie in [0, 1), got nan"),
    (["--reference_column", "ref"], "has no reference column 'ref' (columns: prompt, "
     "original_output); set --reference_column, or 'none' for no references"),]
# The cases whose error comes before any output folder may be created.
BEFORE_ANY_OUTPUT = range(BAD_FLAGS.index(next(c for c in BAD_FLAGS if "learning_rate" in
                                                 c[0][0])), len(BAD_FLAGS))
BAD_FLAGS += STARTED


@pytest.fixture(scope="module")
def bad_flag_runs(tiny_run_inputs):
    """Every BAD_FLAGS command line, run in one launcher process."""
    root = tiny_run_inputs
    base = ["--model", str(root / "model"), "--dataset", str(root / "prompts.jsonl"),
            "--preset", "tiny"]
    return launch_many("rlhf.py", {
        str(i): [*base, *(a.format(root=root) for a in args), "--workdir", str(root / f"bad{i}")]
        for i, (args, _) in enumerate(BAD_FLAGS)})


@pytest.mark.parametrize("case", range(len(BAD_FLAGS)), ids=[m for _, m in BAD_FLAGS])
def test_bad_flags_are_one_line_errors(tiny_run_inputs, bad_flag_runs, case):
    out, message = bad_flag_runs[str(case)], BAD_FLAGS[case][1].format(root=tiny_run_inputs)
    assert out.returncode == 2, out.stderr[-1500:]
    error_lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], out.stderr[-1500:]
    assert "Traceback" not in out.stderr
    if case in BEFORE_ANY_OUTPUT:
        assert not (tiny_run_inputs / f"bad{case}").exists()


TIMINGS = ("time", "elapsed_s", "time_rollout", "time_update")


@pytest.fixture(scope="module")
def tiny_runs(tiny_run_inputs):
    """A tiny run, then (same process) a rerun from its saved config into a fresh workdir."""
    root = tiny_run_inputs
    return root, launch_many("rlhf.py", {
        "run": ["--model", str(root / "model"), "--dataset", str(root / "prompts.jsonl"),
                "--preset", "tiny", "--num_iterations", "2", "--save_every", "1",
                "--eval_prompts", "4", "--eval_samples_per_prompt", "2", "--workdir",
                str(root / "run"), "--verbosity", "0"],
        "rerun": ["--config_file", str(root / "run" / "run_config.json"), "--workdir",
                  str(root / "rerun")]})


def test_tiny_run_writes_metrics_summary_and_policy(tiny_runs):
    root, outs = tiny_runs
    workdir, out = root / "run", outs["run"]
    assert out.returncode == 0, out.stderr[-3000:]
    # --verbosity 0 shows jaxirl's INFO lines (hidden by default; see test_cli.py).
    assert "exported the policy to" in out.stderr and "metrics stream to" in out.stderr
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["iterations"] == 2
    assert summary["eval_samples"] == 8 and summary["toxicity_se_after"] >= 0
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"score", "kl", "kl_coef", "entropy", "clipfrac", "value_loss", "toxicity",
            "time_rollout", "time_update", "time", "elapsed_s"} <= set(rows[0])
    policy = workdir / "policy"
    assert (policy / "model.safetensors").is_file()
    gen = transformers.GenerationConfig.from_pretrained(str(policy))
    assert (gen.do_sample, gen.max_new_tokens, gen.eos_token_id) == (True, 8, 0)
    card = (policy / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card
    assert "for 2 iterations against the reward `profanity`" in card and "| `lr` |" in card
    assert json.loads((policy / "config.json").read_text())["transformers_version"]


def _numbers(workdir):
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((workdir / "summary.json").read_text())
    return ([{k: v for k, v in r.items() if k not in TIMINGS} for r in rows],
            {k: v for k, v in summary.items()  # timings, and where the policy went
             if k != "policy" and not ("time" in k or "seconds" in k)},
            json.loads((workdir / "eval_after.json").read_text()))


def test_a_saved_config_reruns_to_the_same_numbers(tiny_runs):
    root, outs = tiny_runs
    assert outs["rerun"].returncode == 0, outs["rerun"].stderr[-3000:]
    saved = json.loads((root / "run" / "run_config.json").read_text())
    # Everything the flags set, the embedded defaults resolved (no placeholders left).
    assert saved["model"] == str(root / "model") and saved["num_iterations"] == 2
    assert (saved["prompts"]["path"], saved["ppo"]["batch_size"]) == (
        str(root / "prompts.jsonl"), 4)
    assert json.loads((root / "rerun" / "run_config.json").read_text()) == saved
    assert _numbers(root / "rerun") == _numbers(root / "run")


def test_the_evaluation_scorer_is_the_presets_unless_a_flag_or_file_sets_it(tmp_path):
    # pythia70m evaluates with RoBERTa, as the paper, whatever the PPO reward; the embedded
    # default presets set no scorer and take the reward when it is one, else profanity.
    roberta = "roberta:s-nlp/roberta_toxicity_classifier"
    saved = tmp_path / "run_config.json"
    saved.write_text(json.dumps({"toxicity_scorer": "roberta:/scorer", "reward": "profanity"}))
    outs = launch_many("rlhf.py", {name: ["--print_config", *argv] for name, argv in {
        "paper_learned": ["--preset", "pythia70m", "--reward", "learned:/rm"],
        "paper_profanity": ["--preset", "pythia410m", "--reward", "profanity"],
        "paper_flag": ["--preset", "pythia70m", "--reward", "learned:/rm",
                       "--toxicity_scorer", "profanity"],
        "default_roberta": ["--reward", "roberta"],
        "default_learned": ["--reward", "learned:/rm"],
        "file_learned": ["--config_file", str(saved), "--reward", "learned:/rm"]}.items()})
    scorers = {}
    for name, out in outs.items():
        assert out.returncode == 0, out.stderr[-1500:]
        scorers[name] = json.loads(out.stdout)["toxicity_scorer"]
    assert scorers == {"paper_learned": roberta, "paper_profanity": roberta,
                       "paper_flag": "profanity", "default_roberta": "roberta",
                       "default_learned": "profanity", "file_learned": "roberta:/scorer"}
