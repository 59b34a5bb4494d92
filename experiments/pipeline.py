"""The whole study in one command: RLHF, demonstrations, IRL over seeds, evaluation,
RLHF with the learned reward, interpretability, and report.md with plots.

    python experiments/pipeline.py                       # embedded default, runs/pipeline
    python experiments/pipeline.py --preset paper70m     # Pythia-70M + Jigsaw + RoBERTa
    python experiments/pipeline.py --stages irl,evaluate,report   # rerun some stages

A rerun skips finished stages; a killed run resumes from its last checkpoint.
"""

import dataclasses
import time

from absl import app, flags

from jaxirl.cli import one_line_errors, start_launcher
from jaxirl.errors import ConfigError
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.pipeline.study import PRESETS, STAGES, run_study

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "default", f"Study preset: one of {sorted(PRESETS)}.")
flags.DEFINE_string("workdir", "runs/pipeline", "Where every stage writes, and report.md.")
flags.DEFINE_list("stages", None, f"Stages to run (default: all): {','.join(STAGES)}.")
flags.DEFINE_string("model", None, "Base model folder or hub id (overrides the preset).")
flags.DEFINE_string("dataset", None, "Prompt data: hub id or local file (overrides the preset).")
flags.DEFINE_string("ground_truth", None, "True reward: profanity | roberta[:PATH].")
flags.DEFINE_integer("rlhf_iterations", None, "PPO iterations of each RLHF run.")
flags.DEFINE_integer("irl_seeds", None, "Independent IRL reward models.")
flags.DEFINE_integer("irl_epochs", None, "IRL epochs.")
flags.DEFINE_string("irl_loss", None,
                    "IRL loss: max_margin | hinge | squared | logistic | discriminator.")
flags.DEFINE_integer("demo_samples", None, "Prompts used for demonstrations (default: all).")
flags.DEFINE_integer("eval_prompts", None, "Held-out prompts sampled to measure toxicity.")
flags.DEFINE_integer("eval_samples_per_prompt", None,
                     "Continuations sampled per held-out prompt to measure toxicity.")
flags.DEFINE_integer("num_devices", None, "Devices for the pmapped PPO update.")
flags.DEFINE_string("dtype", None, "Matmul compute dtype of every model: float32 | bfloat16.")
flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")


def config_from_flags():
    if FLAGS.preset not in PRESETS:
        raise ConfigError(f"unknown --preset '{FLAGS.preset}'; choose one of {sorted(PRESETS)}")
    config = PRESETS[FLAGS.preset]
    top = {name: getattr(FLAGS, name) for name in
           ("model", "dataset", "ground_truth", "rlhf_iterations", "eval_prompts",
            "eval_samples_per_prompt", "num_devices", "dtype")
           if getattr(FLAGS, name) is not None}
    config = dataclasses.replace(config, **top)
    irl = {}
    if FLAGS.irl_seeds is not None:
        irl["num_seeds"] = FLAGS.irl_seeds
    if FLAGS.irl_epochs is not None:
        irl["epochs"] = FLAGS.irl_epochs
    if FLAGS.irl_loss is not None:
        irl["loss"] = dataclasses.replace(config.irl.loss, name=FLAGS.irl_loss)
        IRLLossConfig(FLAGS.irl_loss)  # validates the name
    if irl:
        config = dataclasses.replace(config, irl=dataclasses.replace(config.irl, **irl))
    if FLAGS.demo_samples is not None:
        config = dataclasses.replace(
            config, demos=dataclasses.replace(config.demos, num_samples=FLAGS.demo_samples))
    return config


@one_line_errors
def main(argv):
    start_launcher(argv, FLAGS.multihost)
    stages = None
    if FLAGS.stages:
        unknown = sorted(set(FLAGS.stages) - set(STAGES))
        if unknown:
            raise ConfigError(f"unknown --stages {','.join(unknown)}; choose from {','.join(STAGES)}")
        stages = set(FLAGS.stages)
    start = time.time()
    outputs = run_study(config_from_flags(), FLAGS.workdir, stages=stages)
    print(f"done in {time.time() - start:.0f} s; report: {outputs['report']['report']}")


if __name__ == "__main__":
    app.run(main)
