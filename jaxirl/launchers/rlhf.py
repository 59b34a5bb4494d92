"""RLHF a GPT-NeoX policy with PPO against a toxicity reward.

    python experiments/rlhf.py                                  # embedded default, profanity reward
    python experiments/rlhf.py --preset pythia70m --model EleutherAI/pythia-70m \
        --dataset jaredjoss/jigsaw-long-2000 --reward roberta:s-nlp/roberta_toxicity_classifier
    python experiments/rlhf.py --reward learned:runs/irl/seed0   # a learned reward model
    python experiments/rlhf.py --resume                          # continue the last checkpoint

Every PPO hyperparameter flag defaults to the preset's value. ``--workdir`` must be new or
empty, or hold a run of the same settings and inputs: finished (a rerun does nothing) or
unfinished (continued with ``--resume``). ``--overwrite`` replaces a jaxirl run there.
"""

import dataclasses
import json

from absl import flags

from jaxirl import runs
from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.data.prompts import PromptDataConfig
from jaxirl.launchers import parallel_flags
from jaxirl.models.gpt_neox import ATTENTION_IMPLS
from jaxirl.pipeline.rlhf_stage import OUTPUTS, RLHFRunConfig, run_manifest, run_rlhf
from jaxirl.ppo.config import PRESETS, PPOConfig, get_preset

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "", "HF folder or hub id of the base policy (default: the embedded default).")
flags.DEFINE_string("dataset", "", "Prompt data: hub id or local json/jsonl/csv/parquet "
                    "(default: the embedded default's prompts).")
flags.DEFINE_string("prompt_column", "prompt", "Column holding the prompts.")
flags.DEFINE_string("reference_column", "original_output",
                    "Column of reference outputs for the reward baseline; 'none' for no baseline.")
flags.DEFINE_float("test_fraction", 0.2, "Held-out share of the prompts, in [0, 1).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("max_prompt_tokens", 64, "Prompt token budget (left-truncated).",
                     lower_bound=1)
flags.DEFINE_string("reward", "profanity", "profanity | roberta[:PATH] | learned:PATH")
flags.register_validator("reward", lambda v: v.partition(":")[0] in REWARD_KINDS and
                         (v.partition(":")[0] != "learned" or bool(v.partition(":")[2])),
                         "must be profanity, roberta[:PATH] or learned:PATH")
flags.DEFINE_enum("preset", "default", sorted(PRESETS), "PPO preset.")
flags.DEFINE_integer("num_iterations", 40, "PPO iterations (rollout + update each).",
                     lower_bound=1)
flags.DEFINE_bool("remat", False, "Recompute each block's activations in the backward pass "
                  "(less memory on long sequences).")
flags.DEFINE_enum("attention", "auto", list(ATTENTION_IMPLS), "Attention kernel: auto (row-by-row "
                  "on CPU, jax.nn.dot_product_attention elsewhere), rows, xla or cudnn.")
flags.DEFINE_string("toxicity_scorer", None, "Ground-truth scorer of the evaluation: profanity | "
                    "roberta[:PATH] (default: the reward when it is one of these, else profanity).")
flags.DEFINE_string("workdir", "runs/rlhf", "Checkpoints, metrics.jsonl, summary.json, policy/.")
flags.DEFINE_integer("save_every", 5, "Checkpoint every K iterations.", lower_bound=1)
flags.DEFINE_bool("resume", False, "Continue the unfinished run in --workdir (same settings).")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl run in --workdir (only its own files).")
flags.DEFINE_bool("export", True, "Export the trained policy to --workdir/policy as an HF folder.")
flags.DEFINE_integer("eval_prompts", 200, "Held-out prompts to sample before and after training "
                     "(0: no evaluation).", lower_bound=0)
flags.DEFINE_integer("eval_samples_per_prompt", 1,
                     "Continuations sampled per held-out prompt (more: less noisy toxicity).",
                     lower_bound=1)
flags.DEFINE_integer("seed", None, "PPO seed (default: the preset's).", lower_bound=0)
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Matmul compute dtype "
                  "(parameters, optimizer state, log-probs and losses stay float32).")
# Every PPOConfig field is a flag; None means "the preset's value".
_PPO_FIELDS = {f.name: f for f in dataclasses.fields(PPOConfig) if f.name != "seed"}
REWARD_KINDS = ("profanity", "roberta", "learned")
# Library names of settings -> this launcher's flags, for error messages.
FLAG_NAMES = {name: f"--{f.name}" for f in dataclasses.fields(PPOConfig)
              for name in (f"PPOConfig field '{f.name}'", f"PPOConfig.{f.name}")}
FLAG_NAMES.update({f"RLHFRunConfig.{f.name}": f"--{f.name}"
                   for f in dataclasses.fields(RLHFRunConfig)})
FLAG_NAMES.update({"reward 'learned:PATH'": "--reward learned:PATH",
                   "prompt data field 'prompt_column'": "--prompt_column",
                   "'prompt_column'": "--prompt_column",
                   "'reference_column'": "--reference_column"})
for _name, _field in _PPO_FIELDS.items():
    if _field.type in ("float", "float | None"):
        flags.DEFINE_float(_name, None, f"PPO {_name} (preset value if unset).")
    elif _field.type in ("int", "int | None"):
        flags.DEFINE_integer(_name, None, f"PPO {_name} (preset value if unset).")
    elif _field.type in ("bool",):
        flags.DEFINE_bool(_name, None, f"PPO {_name} (preset value if unset).")
    elif _field.type in ("str", "str | None"):
        flags.DEFINE_string(_name, None, f"PPO {_name} (preset value if unset; 'none' = None).")


def ppo_config_from_flags() -> PPOConfig:
    config = get_preset(FLAGS.preset)
    overrides = {}
    for name in _PPO_FIELDS:
        value = getattr(FLAGS, name, None)
        if value is not None:
            overrides[name] = None if value == "none" else value
    if FLAGS.seed is not None:
        overrides["seed"] = FLAGS.seed
    return dataclasses.replace(config, **overrides)


def evaluation_scorer(reward: str, scorer: str | None) -> str:
    """The evaluation's scorer: the flag, else the ground-truth reward itself (profanity, roberta)."""
    if scorer:
        return scorer
    return reward if reward.split(":", 1)[0] in ("profanity", "roberta") else "profanity"


def default_model_and_prompts() -> tuple[str, str]:
    from jaxirl.default.build import PROMPTS_FILE, ensure_default_model

    folder = ensure_default_model()
    return str(folder), str(folder / PROMPTS_FILE)


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    start_launcher(argv, parallel_flags.distributed_config())
    ppo = ppo_config_from_flags()
    model, dataset = FLAGS.model, FLAGS.dataset
    if not model or not dataset:
        default_model, default_dataset = default_model_and_prompts()
        model, dataset = model or default_model, dataset or default_dataset
    reference = None if FLAGS.reference_column.lower() == "none" else FLAGS.reference_column
    prompts = PromptDataConfig(path=dataset, prompt_column=FLAGS.prompt_column,
                               reference_column=reference, test_fraction=FLAGS.test_fraction,
                               max_prompt_tokens=FLAGS.max_prompt_tokens)
    config = RLHFRunConfig(model=model, prompts=prompts, reward=FLAGS.reward, ppo=ppo,
                           num_iterations=FLAGS.num_iterations,
                           mesh=parallel_flags.mesh_config(), save_every=FLAGS.save_every,
                           eval_prompts=FLAGS.eval_prompts,
                           eval_samples_per_prompt=FLAGS.eval_samples_per_prompt,
                           toxicity_scorer=evaluation_scorer(FLAGS.reward, FLAGS.toxicity_scorer),
                           export=FLAGS.export, remat=FLAGS.remat, attention=FLAGS.attention,
                           dtype=FLAGS.dtype)
    folder = runs.open_run(FLAGS.workdir, run_manifest(config), OUTPUTS, resume=FLAGS.resume,
                           overwrite=FLAGS.overwrite)
    if folder.finished:
        print(f"nothing to do: '{folder.path}' already holds this finished run "
              "(summary.json; --overwrite reruns it)")
        return
    with folder.cleanup_on_error():
        summary = run_rlhf(config, FLAGS.workdir, resume=FLAGS.resume)
    folder.finish()
    print(json.dumps(summary, indent=2))



def console_main() -> None:
    """The ``jaxirl-rlhf`` console script."""
    run(main)


if __name__ == "__main__":
    console_main()
