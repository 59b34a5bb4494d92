"""Builds jaxirl's embedded default model: corpus, BPE tokenizer, causal-LM pretraining.

    python experiments/pretrain_default.py                     # cached build
    python experiments/pretrain_default.py --workdir /tmp/m    # explicit folder (kept if built)
    python experiments/pretrain_default.py --workdir /tmp/m --overwrite   # rebuild it
    python experiments/pretrain_default.py --noevaluate        # skip the toxicity of sampled continuations
    python experiments/pretrain_default.py --workdir /tmp/m --config.default_model.hidden_size=64

The result is a standard HF folder (config.json, model.safetensors, tokenizer.json,
prompts.jsonl) that transformers' GPTNeoXForCausalLM also loads, with the resolved
:class:`PretrainRunConfig` in ``run_config.json``. ``--workdir`` (formerly ``--out``) must
be a new or empty folder, or a build of the same recipe (kept as is); ``--overwrite``
replaces a jaxirl build and nothing else. The build goes to a staging folder renamed into
place.
"""

import dataclasses
import json
import pathlib

from absl import flags

from jaxirl import runs
from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.default.build import DefaultModelSpec, build_default_model, ensure_default_model
from jaxirl.errors import ConfigError
from jaxirl.launchers import config_flags
from jaxirl.launchers.config_flags import Alias


@dataclasses.dataclass(frozen=True)
class PretrainRunConfig:
    """The recipe of the default model, and the evaluation after the build.

    Attributes:
      default_model: architecture and pretraining recipe (as ``StudyConfig.default_model``).
      evaluate: sample continuations of held-out prompts and score them.
      eval_prompts: held-out prompts sampled for the evaluation.
      eval_new_tokens: new tokens per sampled continuation.
    """

    default_model: DefaultModelSpec = DefaultModelSpec()
    evaluate: bool = True
    eval_prompts: int = 200
    eval_new_tokens: int = 32

    def __post_init__(self):
        for name in ("eval_prompts", "eval_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PretrainRunConfig.{name} must be >= 1, got "
                                  f"{getattr(self, name)}")


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Output folder; default: the user cache (reused when "
                    "present).")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl build in --workdir (only its own "
                  "files).")
# Short flags of PretrainRunConfig fields; unset: the recipe's value.
flags.DEFINE_integer("steps", None, "Pretraining steps (config.default_model.train.total_steps).",
                     lower_bound=1)
flags.DEFINE_integer("seed", None, "Seed of initialisation and batch order.", lower_bound=0)
flags.DEFINE_bool("evaluate", None, "Sample continuations of held-out prompts and score them.")
flags.DEFINE_integer("eval_prompts", None, "Held-out prompts to sample for the evaluation.",
                     lower_bound=1)
flags.DEFINE_integer("eval_new_tokens", None, "New tokens per sampled continuation.",
                     lower_bound=1)
config_flags.define_deprecated("out", "workdir")
CONFIG = config_flags.ConfigSpec(PretrainRunConfig, PretrainRunConfig(), aliases=(
    Alias("steps", ("default_model.train.total_steps",)),
    Alias("seed", ("default_model.train.seed",)),
    *(Alias(name, (name,)) for name in ("evaluate", "eval_prompts", "eval_new_tokens"))))
config_flags.define(CONFIG)
FLAG_NAMES = {"LM training field 'total_steps'": "--steps", "LM training field 'seed'": "--seed",
              "PretrainRunConfig.eval_prompts": "--eval_prompts",
              "PretrainRunConfig.eval_new_tokens": "--eval_new_tokens"}


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    from jaxirl.default.evaluate import evaluate_default_model

    config = config_flags.resolve(CONFIG.example)
    if config_flags.printed(config):
        return
    start_launcher(argv)
    if FLAGS.workdir:
        folder, built = build_default_model(config.default_model, FLAGS.workdir,
                                            overwrite=FLAGS.overwrite)
        if not built:
            print(f"nothing to do: '{folder}' already holds this build (--overwrite rebuilds it)")
    else:
        if FLAGS.overwrite:
            raise ConfigError("--overwrite replaces a --workdir folder; pass --workdir too")
        folder = ensure_default_model(config.default_model)
    runs.save_run_config(config, folder)  # not content: the folder's fingerprint stays
    summary = json.loads((pathlib.Path(folder) / "build_summary.json").read_text())
    print(f"default model: {folder}")
    print(json.dumps(summary, indent=2))
    if config.evaluate:
        report = evaluate_default_model(folder, num_prompts=config.eval_prompts,
                                        max_new_tokens=config.eval_new_tokens)
        print(json.dumps(report.as_dict(), indent=2))


def console_main() -> None:
    """The ``jaxirl-pretrain-default`` console script."""
    run(main, config_flags.prepare)


if __name__ == "__main__":
    console_main()
