"""The whole study in one command: RLHF, demonstrations, IRL over seeds, evaluation,
RLHF with the learned reward, interpretability, and report.md with plots.

    python experiments/pipeline.py                       # embedded default, runs/pipeline
    python experiments/pipeline.py --preset paper70m     # Pythia-70M + Jigsaw + RoBERTa
    python experiments/pipeline.py --stages irl,evaluate,report   # rerun some stages
    python experiments/pipeline.py --config.irl.learning_rate=3e-5 --config.interp.sae.num_epochs=5
    python experiments/pipeline.py --config_file runs/pipeline/run_config.json --workdir runs/again
    python experiments/pipeline.py --preset size_sweep   # three model sizes, runs/size_sweep

Every ``StudyConfig`` field is a flag ``--config.<field>`` (``--config.ppo.lr`` starts
from the PPO preset's values); the short flags below set the same fields. The resolved
config is saved as ``--workdir/run_config.json`` once its stages finished (a failed run
keeps the previous one). A rerun skips finished stages; a killed
run resumes from its last checkpoint. The workdir must be new, empty or a pipeline
workdir; ``--overwrite`` removes its stage folders and report (nothing else, and never
a folder holding ``--model``, ``--dataset`` or ``--ground_truth``) first; with
``--stages``, only the selected stages of this configuration, each just before it reruns.
``--stages`` may name only stages the configuration runs (``methods`` needs ``--preset
methods``; ``rlhf_seeds`` and ``rlhf_learned_seeds`` need ``--rlhf_seeds`` of 2 or more).
``--model`` without ``--dataset`` prompts with the model folder's ``prompts.jsonl``.

``--preset size_sweep`` writes into its own run folder (default ``runs/size_sweep``: new,
empty or a size sweep's; ``--overwrite`` removes what a sweep wrote there). It builds the
model at each size itself, so it refuses ``--model``, ``--config.default_model.*`` and
``--stages`` (a ``--config_file`` cannot be combined with any ``--preset``).
"""

import dataclasses
import os
import time

from absl import flags

from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.errors import ConfigError
from jaxirl.launchers import config_flags, parallel_flags
from jaxirl.launchers.choices import DTYPE_NAMES, LOSS_NAMES, SCORER_KINDS, define_spec
from jaxirl.launchers.config_flags import Alias
from jaxirl.pipeline.study import PRESETS, STAGES, StudyConfig, run_study
from jaxirl.ppo.config import get_preset

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "default", sorted(PRESETS) + ["size_sweep"],
                  "Study preset; size_sweep runs the study at three sizes of the embedded default.")
WORKDIRS = {"size_sweep": "runs/size_sweep"}  # the sweep's own default (not the study's)
flags.DEFINE_string("workdir", None, "Where every stage writes, and report.md (default: "
                    "runs/pipeline; runs/size_sweep for --preset size_sweep).")
flags.DEFINE_bool("overwrite", False, "Remove the workdir's stage folders and report first "
                  "(with --stages: only the selected stages of this configuration; "
                  "size_sweep: its studies, results and report).")
flags.DEFINE_list("stages", None, f"Stages to run (default: all): {','.join(STAGES)}; "
                  "earlier unselected ones must be done.")


def _check_stages(value: list[str] | None) -> bool:
    """--stages names at least one stage, and only stages (``--stages=`` is not "all")."""
    if value is not None and not value:
        raise flags.ValidationError(f"--stages is empty; name the stages to run (of: "
                                    f"{','.join(STAGES)}), or drop --stages to run them all")
    if value is not None and not set(value) <= set(STAGES):
        raise flags.ValidationError(f"must be a comma-separated list of: {','.join(STAGES)}")
    return True


flags.register_validator("stages", _check_stages)
# Short flags of StudyConfig fields (unset: the preset's value).
flags.DEFINE_string("model", None, "Base model folder or hub id (config.model).")
flags.DEFINE_string("tokenizer", None, "Tokenizer folder or hub id for a --model trained with "
                    "another model's (config.tokenizer; default: the model folder's own).")
flags.DEFINE_string("dataset", None, "Prompt data: hub id or local file (config.dataset; "
                    "default: the model folder's prompts.jsonl).")
define_spec("ground_truth", None, SCORER_KINDS, "True reward (config.ground_truth).")
flags.DEFINE_integer("rlhf_iterations", None, "PPO iterations of each RLHF run.", lower_bound=1)
flags.DEFINE_integer("rlhf_seeds", None,
                     "PPO seeds of the re-RLHF comparison (each trains with the learned and "
                     "the true reward).", lower_bound=1)
flags.DEFINE_integer("irl_seeds", None, "Independent IRL reward models (config.irl.num_seeds).",
                     lower_bound=1)
flags.DEFINE_integer("irl_epochs", None, "IRL epochs (config.irl.epochs).", lower_bound=1)
flags.DEFINE_enum("irl_loss", None, LOSS_NAMES, "IRL loss (config.irl.loss.name).")
flags.DEFINE_integer("demo_samples", None, "Demonstration pairs to draw (default: all): a "
                     "seeded subset of the prompt list repeated demos_per_prompt times when "
                     "sampling (config.demos.num_samples).", lower_bound=2)
flags.DEFINE_integer("eval_prompts", None, "Held-out prompts sampled to measure toxicity.",
                     lower_bound=0)
flags.DEFINE_integer("eval_samples_per_prompt", None,
                     "Continuations sampled per held-out prompt to measure toxicity.",
                     lower_bound=1)
flags.DEFINE_enum("dtype", None, DTYPE_NAMES, "Matmul compute dtype of every model.")
_SAME_NAME = ("model", "tokenizer", "dataset", "ground_truth", "rlhf_iterations", "rlhf_seeds", "eval_prompts",
              "eval_samples_per_prompt", "dtype")
CONFIG = config_flags.ConfigSpec(
    StudyConfig, PRESETS["default"],
    aliases=(*(Alias(name, (name,)) for name in _SAME_NAME),
             Alias("irl_seeds", ("irl.num_seeds",)), Alias("irl_epochs", ("irl.epochs",)),
             Alias("irl_loss", ("irl.loss.name",)), Alias("demo_samples", ("demos.num_samples",)),
             *parallel_flags.mesh_aliases()),
    templates={"ppo": lambda study: get_preset(study.ppo_preset)})
config_flags.define(CONFIG)
# Library names of the settings these flags set, for error messages.
FLAG_NAMES = {"IRLTrainConfig.num_seeds": "--irl_seeds", "IRLTrainConfig.epochs": "--irl_epochs",
              "RLHFRunConfig.num_iterations": "--rlhf_iterations",
              "RLHFRunConfig.eval_prompts": "--eval_prompts",
              "RLHFRunConfig.eval_samples_per_prompt": "--eval_samples_per_prompt",
              "StudyConfig.rlhf_seeds": "--rlhf_seeds", "demos field 'num_samples'":
              "--demo_samples", "the selected stages": "--stages",
              "StudyConfig.model": "--model", "StudyConfig.dataset": "--dataset",
              "StudyConfig.ground_truth": "--ground_truth",
              "reward model field 'max_length'": "--config.reward_model.max_length",
              # Every RLHF run of the study evaluates with the ground truth.
              "RLHFRunConfig.toxicity_scorer": "--ground_truth",
              "the methods preset": "--preset methods",
              # The prompt data's columns, as the stages name them (no short flags).
              "'prompt_column'": "--config.prompt_column",
              "prompt data field 'prompt_column'": "--config.prompt_column",
              "'reference_column'": "--config.reference_column",
              "'reference_column', or None": "--config.reference_column, or 'none'"}
FLAG_NAMES.update({"InterpConfig.num_layers": "--config.interp.num_layers",
                   "SAEConfig.batch_size": "--config.interp.sae.batch_size",
                   "PPOConfig field 'num_layers_unfrozen'": "--config.ppo.num_layers_unfrozen"})


def _local(path: str | None) -> str | None:
    # An existing local path is made absolute, so that stage hashes cover its content.
    return os.path.abspath(path) if path and os.path.exists(path) else path


def config_from_flags() -> StudyConfig:
    """The preset (``default`` for size_sweep), or --config_file, with the flags applied."""
    config = config_flags.resolve(PRESETS["default" if FLAGS.preset == "size_sweep" else
                                          FLAGS.preset])
    return dataclasses.replace(config, model=_local(config.model),
                               dataset=_local(config.dataset))


def workdir() -> str:
    """--workdir, else the preset's default folder."""
    return FLAGS.workdir or WORKDIRS.get(FLAGS.preset, "runs/pipeline")


def check_size_sweep_flags(config: StudyConfig) -> None:
    """Refuses what ``--preset size_sweep`` would silently ignore, naming the flag.

    The sweep builds the embedded default at each size itself (a set model would run
    at every "size" under the sizes' parameter counts) and runs every stage up to the
    evaluation.
    """
    from jaxirl.pipeline.size_sweep import changed_default_model_fields

    why = "--preset size_sweep builds the embedded default at each of its sizes"
    if FLAGS.stages:
        raise ConfigError("--stages cannot be combined with --preset size_sweep, which runs "
                          "every stage up to the evaluation at each size; drop --stages")
    overrides = getattr(FLAGS["config"], "override_values", {}) if "config" in FLAGS else {}
    if config.model:  # --config_file cannot come with --preset: a flag set it
        source = "--model" if FLAGS["model"].present else "--config.model"
        raise ConfigError(f"{source} cannot be combined with --preset size_sweep: {why} (a "
                          f"given model would run at every size); drop it")
    changed = changed_default_model_fields(config.default_model)
    if changed:
        typed = [f"--config.{p}" for p in overrides if p.split(".")[0] == "default_model"]
        source = ", ".join(typed) or f"--config.default_model ({', '.join(changed)})"
        raise ConfigError(f"{source} cannot be combined with --preset size_sweep: {why}, "
                          "which sets the recipe's width and depth; drop it")


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    config = config_from_flags()
    if FLAGS.preset == "size_sweep":
        check_size_sweep_flags(config)
    if config_flags.printed(config):
        return
    start_launcher(argv, parallel_flags.distributed_config())
    stages = set(FLAGS.stages) if FLAGS.stages else None
    start = time.time()
    if FLAGS.preset == "size_sweep":
        from jaxirl.pipeline.size_sweep import run_size_sweep

        sweep = run_size_sweep(config, workdir(), overwrite=FLAGS.overwrite)
        print(f"done in {time.time() - start:.0f} s; report: {sweep['report']}")
        return
    outputs = run_study(config, workdir(), stages=stages, overwrite=FLAGS.overwrite,
                        preset=FLAGS.preset)
    where = (f"report: {outputs['report']['report']}" if "report" in outputs else
             f"stages {', '.join(s for s in STAGES if s in outputs)} in {workdir()}")
    print(f"done in {time.time() - start:.0f} s; {where}")


def console_main() -> None:
    """The ``jaxirl-pipeline`` console script."""
    run(main, config_flags.prepare)


if __name__ == "__main__":
    console_main()
