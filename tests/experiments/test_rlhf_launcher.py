"""experiments/rlhf.py: bad flags give one-line errors; a tiny run writes its outputs."""

import json

import pytest
import transformers
from launchers import launch, launch_many
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.data.prompts import write_jsonl
from jaxirl.models import save_pretrained


def _launch(*args, timeout=600):
    return launch("rlhf.py", *args, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("launcher")
    model, params = tiny_policy()
    lm_params = {k: v for k, v in params.items() if k != "value_head"}
    save_pretrained(root / "model", model.config, lm_params, tokenizer=tiny_tokenizer())
    words = ["the cat", "a dog sat", "the mat", "a cat ran on", "the dog", "a mat"]
    write_jsonl([{"prompt": w, "original_output": " good cat"} for w in words * 5],
                root / "prompts.jsonl")
    return root


BAD_FLAGS = [
    (["--preset", "nope"], "--preset=nope: value should be one of"),
    (["--model", "/no/such/folder"], "model folder '/no/such/folder' does not exist"),
    (["--batch_size", "3"], "--num_rollouts 8 is not divisible by --batch_size 3"),
    (["--num_devices", "3"], "--mesh data=3,fsdp=1 needs 3 devices but JAX sees 1"),
    (["--mesh", "data=1,fsdp=2", "--num_devices", "2"], "either --mesh or --num_devices"),
    (["--prompt_column", "text"], "text"),
    (["--eval_samples_per_prompt", "0"], "--eval_samples_per_prompt=0: 0 is not a positive"),]


@pytest.fixture(scope="module")
def bad_flag_runs(tiny_run_inputs):
    """Every BAD_FLAGS command line, run in one launcher process."""
    base = ["--model", str(tiny_run_inputs / "model"), "--dataset",
            str(tiny_run_inputs / "prompts.jsonl"), "--preset", "tiny",
            "--workdir", str(tiny_run_inputs / "bad")]
    return launch_many("rlhf.py", {str(i): [*base, *args] for i, (args, _) in enumerate(BAD_FLAGS)})


@pytest.mark.parametrize("case", range(len(BAD_FLAGS)), ids=[m for _, m in BAD_FLAGS])
def test_bad_flags_are_one_line_errors(bad_flag_runs, case):
    out, message = bad_flag_runs[str(case)], BAD_FLAGS[case][1]
    assert out.returncode == 2, out.stderr[-1500:]
    error_lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], out.stderr[-1500:]
    assert "Traceback" not in out.stderr


def test_tiny_run_writes_metrics_summary_and_policy(tiny_run_inputs):
    workdir = tiny_run_inputs / "run"
    out = _launch("--model", str(tiny_run_inputs / "model"), "--dataset",
                  str(tiny_run_inputs / "prompts.jsonl"), "--preset", "tiny",
                  "--num_iterations", "2", "--save_every", "1", "--eval_prompts", "4",
                  "--eval_samples_per_prompt", "2", "--workdir", str(workdir), "--verbosity", "0")
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
