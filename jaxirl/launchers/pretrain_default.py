"""Builds jaxirl's embedded default model: corpus, BPE tokenizer, causal-LM pretraining.

    python experiments/pretrain_default.py                 # cached build
    python experiments/pretrain_default.py --out /tmp/m    # explicit folder (kept if built)
    python experiments/pretrain_default.py --out /tmp/m --overwrite   # rebuild it
    python experiments/pretrain_default.py --evaluate      # + toxicity of sampled continuations

The result is a standard HF folder (config.json, model.safetensors, tokenizer.json,
prompts.jsonl) that transformers' GPTNeoXForCausalLM also loads. ``--out`` must be a new
or empty folder, or a build of the same recipe (kept as is); ``--overwrite`` replaces a
jaxirl build and nothing else. The build goes to a staging folder renamed into place.
"""

import dataclasses
import json
import pathlib

from absl import flags

from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.default.build import DefaultModelSpec, build_default_model, ensure_default_model
from jaxirl.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output folder; default: the user cache (reused when present).")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl build in --out (only its own files).")
flags.DEFINE_integer("steps", None, "Pretraining steps (default: the recipe's).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of initialisation and batch order.", lower_bound=0)
flags.DEFINE_bool("evaluate", True, "Sample continuations of held-out prompts and score them.")
flags.DEFINE_integer("eval_prompts", 200, "Held-out prompts to sample for the evaluation.",
                     lower_bound=1)
flags.DEFINE_integer("eval_new_tokens", 32, "New tokens per sampled continuation.",
                     lower_bound=1)
FLAG_NAMES = {"LM training field 'total_steps'": "--steps", "LM training field 'seed'": "--seed"}


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    from jaxirl.default.evaluate import evaluate_default_model

    start_launcher(argv)
    spec = DefaultModelSpec()
    train = spec.train
    if FLAGS.steps is not None:
        train = dataclasses.replace(train, total_steps=FLAGS.steps)
    spec = dataclasses.replace(spec, train=dataclasses.replace(train, seed=FLAGS.seed))
    if FLAGS.out:
        folder, built = build_default_model(spec, FLAGS.out, overwrite=FLAGS.overwrite)
        if not built:
            print(f"nothing to do: '{folder}' already holds this build (--overwrite rebuilds it)")
    else:
        if FLAGS.overwrite:
            raise ConfigError("--overwrite replaces an --out folder; pass --out too")
        folder = ensure_default_model(spec)
    summary = json.loads((pathlib.Path(folder) / "build_summary.json").read_text())
    print(f"default model: {folder}")
    print(json.dumps(summary, indent=2))
    if FLAGS.evaluate:
        report = evaluate_default_model(folder, num_prompts=FLAGS.eval_prompts,
                                        max_new_tokens=FLAGS.eval_new_tokens)
        print(json.dumps(report.as_dict(), indent=2))



def console_main() -> None:
    """The ``jaxirl-pretrain-default`` console script."""
    run(main)


if __name__ == "__main__":
    console_main()
