"""RLHF a GPT-NeoX policy with PPO against a toxicity reward.

    python experiments/rlhf.py                                  # embedded default, profanity reward
    python experiments/rlhf.py --preset pythia70m --model EleutherAI/pythia-70m \
        --dataset jaredjoss/jigsaw-long-2000 --reward roberta:s-nlp/roberta_toxicity_classifier
    python experiments/rlhf.py --reward learned:runs/irl/seed0   # a learned reward model
    python experiments/rlhf.py --resume                          # continue the last checkpoint

Every PPO hyperparameter flag defaults to the preset's value.
"""

import dataclasses
import json

from absl import app, flags

from jaxirl.cli import one_line_errors, start_launcher
from jaxirl.data.prompts import PromptDataConfig
from jaxirl.ppo.config import PRESETS, PPOConfig, get_preset
from jaxirl.ppo.run import RLHFRunConfig, run_rlhf

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "", "HF folder or hub id of the base policy (default: the embedded default).")
flags.DEFINE_string("dataset", "", "Prompt data: hub id or local json/jsonl/csv/parquet "
                    "(default: the embedded default's prompts).")
flags.DEFINE_string("prompt_column", "prompt", "Column holding the prompts.")
flags.DEFINE_string("reference_column", "original_output",
                    "Column of reference outputs for the reward baseline; 'none' for no baseline.")
flags.DEFINE_float("test_fraction", 0.2, "Held-out share of the prompts.")
flags.DEFINE_integer("max_prompt_tokens", 64, "Prompt token budget (left-truncated).")
flags.DEFINE_string("reward", "profanity", "profanity | roberta[:PATH] | learned:PATH")
flags.DEFINE_string("preset", "default", f"PPO preset: one of {sorted(PRESETS)}.")
flags.DEFINE_integer("num_iterations", 40, "PPO iterations (rollout + update each).")
flags.DEFINE_integer("num_devices", 1, "Devices for the pmapped update.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (multi-host launch).")
flags.DEFINE_string("workdir", "runs/rlhf", "Checkpoints, metrics.jsonl, summary.json, policy/.")
flags.DEFINE_integer("save_every", 5, "Checkpoint every K iterations.")
flags.DEFINE_bool("resume", False, "Resume from the latest checkpoint in --workdir.")
flags.DEFINE_bool("export", True, "Export the trained policy to --workdir/policy as an HF folder.")
flags.DEFINE_integer("eval_prompts", 200, "Held-out prompts to sample before and after training.")
flags.DEFINE_integer("eval_samples_per_prompt", 1,
                     "Continuations sampled per held-out prompt (more: less noisy toxicity).")
flags.DEFINE_integer("seed", None, "PPO seed (default: the preset's).")
flags.DEFINE_string("dtype", "float32", "Matmul compute dtype: float32 | bfloat16 (parameters, "
                    "optimizer state, log-probs and losses stay float32).")
# Every PPOConfig field is a flag; None means "the preset's value".
_PPO_FIELDS = {f.name: f for f in dataclasses.fields(PPOConfig) if f.name != "seed"}
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


def default_model_and_prompts() -> tuple[str, str]:
    from jaxirl.default.build import PROMPTS_FILE, ensure_default_model

    folder = ensure_default_model()
    return str(folder), str(folder / PROMPTS_FILE)


@one_line_errors
def main(argv):
    start_launcher(argv, FLAGS.multihost)
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
                           num_iterations=FLAGS.num_iterations, workdir=FLAGS.workdir,
                           num_devices=FLAGS.num_devices, save_every=FLAGS.save_every,
                           resume=FLAGS.resume, eval_prompts=FLAGS.eval_prompts,
                           eval_samples_per_prompt=FLAGS.eval_samples_per_prompt,
                           export=FLAGS.export, dtype=FLAGS.dtype)
    summary = run_rlhf(config)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    app.run(main)
