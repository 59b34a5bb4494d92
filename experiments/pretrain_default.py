"""Builds jaxirl's embedded default model: corpus, BPE tokenizer, causal-LM pretraining.

    python experiments/pretrain_default.py                 # cached build
    python experiments/pretrain_default.py --out /tmp/m    # explicit folder, always rebuilds
    python experiments/pretrain_default.py --evaluate      # + toxicity of sampled continuations

The result is a standard HF folder (config.json, model.safetensors, tokenizer.json,
prompts.jsonl) that transformers' GPTNeoXForCausalLM also loads.
"""

import dataclasses
import json
import pathlib
import shutil

from absl import app, flags

from jaxirl.cli import one_line_errors, start_launcher
from jaxirl.default.build import DefaultModelSpec, ensure_default_model, pretrain
from jaxirl.default.evaluate import evaluate_default_model
from jaxirl.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder; default: the user cache (reused when present).")
flags.DEFINE_integer("steps", None, "Pretraining steps (default: the recipe's).")
flags.DEFINE_integer("seed", 0, "Seed of initialisation and batch order.")
flags.DEFINE_bool("evaluate", True, "Sample continuations of held-out prompts and score them.")
flags.DEFINE_integer("eval_prompts", 200, "Held-out prompts to sample for the evaluation.")
flags.DEFINE_integer("eval_new_tokens", 32, "New tokens per sampled continuation.")


@one_line_errors
def main(argv):
    start_launcher(argv)
    spec = DefaultModelSpec()
    train = spec.train
    if FLAGS.steps is not None:
        if FLAGS.steps <= 0:
            raise ConfigError(f"--steps must be positive, got {FLAGS.steps}")
        train = dataclasses.replace(train, total_steps=FLAGS.steps)
    spec = dataclasses.replace(spec, train=dataclasses.replace(train, seed=FLAGS.seed))
    if FLAGS.out:
        shutil.rmtree(FLAGS.out, ignore_errors=True)
        pretrain(spec, FLAGS.out)
        folder = FLAGS.out
    else:
        folder = ensure_default_model(spec)
    summary = json.loads((pathlib.Path(folder) / "build_summary.json").read_text())
    print(f"default model: {folder}")
    print(json.dumps(summary, indent=2))
    if FLAGS.evaluate:
        report = evaluate_default_model(folder, num_prompts=FLAGS.eval_prompts,
                                        max_new_tokens=FLAGS.eval_new_tokens)
        print(json.dumps(report.as_dict(), indent=2))


if __name__ == "__main__":
    app.run(main)
