"""The whole study in one command: RLHF, demonstrations, IRL over seeds, evaluation,
RLHF with the learned reward, interpretability, and report.md with plots.

    python experiments/pipeline.py                       # embedded default, runs/pipeline
    python experiments/pipeline.py --preset paper70m     # Pythia-70M + Jigsaw + RoBERTa
    python experiments/pipeline.py --stages irl,evaluate,report   # rerun some stages

A rerun skips finished stages; a killed run resumes from its last checkpoint. The
workdir must be new, empty or a pipeline workdir; ``--overwrite`` removes its stage
folders and report (nothing else) first.
"""

import dataclasses
import os
import time

from absl import flags

from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.irl.losses import LOSSES
from jaxirl.launchers import parallel_flags
from jaxirl.pipeline.study import PRESETS, STAGES, run_study

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "default", sorted(PRESETS) + ["size_sweep"],
                  "Study preset; size_sweep runs the study at three sizes of the embedded default.")
flags.DEFINE_string("workdir", "runs/pipeline", "Where every stage writes, and report.md.")
flags.DEFINE_bool("overwrite", False, "Remove the workdir's stage folders and report first.")
flags.DEFINE_list("stages", None, f"Stages to run (default: all): {','.join(STAGES)}; "
                  "earlier unselected ones must be done.")
flags.register_validator("stages", lambda v: v is None or set(v) <= set(STAGES),
                         f"must be a comma-separated list of: {','.join(STAGES)}")
flags.DEFINE_string("model", None, "Base model folder or hub id (overrides the preset).")
flags.DEFINE_string("dataset", None, "Prompt data: hub id or local file (overrides the preset).")
flags.DEFINE_string("ground_truth", None, "True reward: profanity | roberta[:PATH].")
flags.DEFINE_integer("rlhf_iterations", None, "PPO iterations of each RLHF run.", lower_bound=1)
flags.DEFINE_integer("rlhf_seeds", None,
                     "PPO seeds of the re-RLHF comparison (each trains with the learned and "
                     "the true reward).", lower_bound=1)
flags.DEFINE_integer("irl_seeds", None, "Independent IRL reward models.", lower_bound=1)
flags.DEFINE_integer("irl_epochs", None, "IRL epochs.", lower_bound=1)
flags.DEFINE_enum("irl_loss", None, sorted(LOSSES), "IRL loss.")
flags.DEFINE_integer("demo_samples", None, "Prompts used for demonstrations (default: all).",
                     lower_bound=2)
flags.DEFINE_integer("eval_prompts", None, "Held-out prompts sampled to measure toxicity.",
                     lower_bound=0)
flags.DEFINE_integer("eval_samples_per_prompt", None,
                     "Continuations sampled per held-out prompt to measure toxicity.",
                     lower_bound=1)
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "Matmul compute dtype of every model.")
# Library names of the settings these flags set, for error messages.
FLAG_NAMES = {"IRLTrainConfig.num_seeds": "--irl_seeds", "IRLTrainConfig.epochs": "--irl_epochs",
              "RLHFRunConfig.num_iterations": "--rlhf_iterations",
              "RLHFRunConfig.eval_prompts": "--eval_prompts",
              "RLHFRunConfig.eval_samples_per_prompt": "--eval_samples_per_prompt",
              "StudyConfig.rlhf_seeds": "--rlhf_seeds", "demos field 'num_samples'":
              "--demo_samples", "the selected stages": "--stages"}


def _local(path: str | None) -> str | None:
    # An existing local path is made absolute, so that stage hashes cover its content.
    return os.path.abspath(path) if path and os.path.exists(path) else path


def config_from_flags():
    if FLAGS.preset == "size_sweep":
        return dataclasses.replace(PRESETS["default"], mesh=parallel_flags.mesh_config())
    config = PRESETS[FLAGS.preset]
    FLAGS.model, FLAGS.dataset = _local(FLAGS.model), _local(FLAGS.dataset)
    top = {name: getattr(FLAGS, name) for name in
           ("model", "dataset", "ground_truth", "rlhf_iterations", "eval_prompts",
            "eval_samples_per_prompt", "rlhf_seeds", "dtype")
           if getattr(FLAGS, name) is not None}
    config = dataclasses.replace(config, **top, mesh=parallel_flags.mesh_config())
    irl = {}
    if FLAGS.irl_seeds is not None:
        irl["num_seeds"] = FLAGS.irl_seeds
    if FLAGS.irl_epochs is not None:
        irl["epochs"] = FLAGS.irl_epochs
    if FLAGS.irl_loss is not None:
        irl["loss"] = dataclasses.replace(config.irl.loss, name=FLAGS.irl_loss)
    if irl:
        config = dataclasses.replace(config, irl=dataclasses.replace(config.irl, **irl))
    if FLAGS.demo_samples is not None:
        config = dataclasses.replace(
            config, demos=dataclasses.replace(config.demos, num_samples=FLAGS.demo_samples))
    return config


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    start_launcher(argv, parallel_flags.distributed_config())
    stages = set(FLAGS.stages) if FLAGS.stages else None
    start = time.time()
    if FLAGS.preset == "size_sweep":
        from jaxirl.pipeline.size_sweep import run_size_sweep

        sweep = run_size_sweep(config_from_flags(), FLAGS.workdir)
        print(f"done in {time.time() - start:.0f} s; report: {sweep['report']}")
        return
    outputs = run_study(config_from_flags(), FLAGS.workdir, stages=stages,
                        overwrite=FLAGS.overwrite, preset=FLAGS.preset)
    where = (f"report: {outputs['report']['report']}" if "report" in outputs else
             f"stages {', '.join(s for s in STAGES if s in outputs)} in {FLAGS.workdir}")
    print(f"done in {time.time() - start:.0f} s; {where}")



def console_main() -> None:
    """The ``jaxirl-pipeline`` console script."""
    run(main)


if __name__ == "__main__":
    console_main()
