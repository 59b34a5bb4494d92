"""Max-margin IRL: recover a reward from RLHF-policy (expert) vs base-model demonstrations.

    # demonstrations from an RLHF run, then 5 head-only reward models:
    python experiments/irl.py --policy_model runs/rlhf/policy --base_model BASE \
        --prompts BASE/prompts.jsonl --workdir runs/irl --seeds 5
    # reuse saved demonstrations (a jaxirl.irl.demos folder):
    python experiments/irl.py --demos runs/irl/demos --backbone BASE --workdir runs/irl2 \
        --loss logistic --num_layers_unfrozen 2 --lr 1e-5
    python experiments/irl.py ... --resume         # continue the last epoch checkpoint

Writes ``--workdir/irl_metrics.json`` (per-epoch, per-seed held-out metrics),
``--workdir/checkpoints`` and ``--workdir/reward_models/seed_<k>``, each usable
as ``experiments/rlhf.py --reward learned:<folder>``, and, as the study's IRL stage
(both run :func:`jaxirl.pipeline.irl_stage.run_irl`), ``test_rewards.npy`` (every seed's
rewards of the held-out texts, for ``experiments/interp.py --irl_rewards``),
``train_rewards.npy`` and ``epoch0.json`` (the untrained models). ``--workdir`` must be new or empty,
or hold a run of the same settings and inputs (finished: nothing to do; unfinished:
``--resume``); ``--overwrite`` replaces a jaxirl run there.
"""

import json
import math
import pathlib

from absl import flags

from jaxirl import parallel, runs
from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.errors import ConfigError, DataError
from jaxirl.launchers import parallel_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("demos", "", "Saved demonstrations folder; built there first if missing and "
                    "--policy_model is given (default: --workdir/demos).")
flags.DEFINE_string("policy_model", "", "HF folder of the RLHF policy (the expert).")
flags.DEFINE_string("base_model", "", "HF folder of the base model (also the default backbone).")
flags.DEFINE_string("prompts", "", "Prompt data for the demonstrations (file, folder or hub id).")
flags.DEFINE_string("prompt_column", "prompt", "Column holding the prompts.")
flags.DEFINE_enum("prompt_split", "test", ["test", "train", "all"],
                  "Which split of --prompts to use (the RLHF run's held-out prompts: test).")
flags.DEFINE_float("prompt_test_fraction", 0.2, "Test share of the --prompts split (as RLHF).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("prompt_seed", 0, "Seed of the --prompts split (as RLHF).", lower_bound=0)
flags.DEFINE_integer("num_samples", None, "Prompts to build demonstrations from (default: all).",
                     lower_bound=2)
flags.DEFINE_integer("max_new_tokens", None, "Continuation tokens (default: --max_length minus "
                     "the prompt width).", lower_bound=1)
flags.DEFINE_bool("do_sample", False, "Sample the demonstrations instead of greedy decoding.")
flags.DEFINE_integer("top_k", 0, "Top-k when sampling (0 = off).", lower_bound=0)
flags.DEFINE_string("scorer", "profanity", "Ground-truth scorer: profanity | roberta[:PATH].")
flags.DEFINE_float("demo_test_fraction", 0.2, "Held-out share of the demonstration pairs.",
                   lower_bound=0.01, upper_bound=0.99)
flags.DEFINE_string("backbone", "", "Reward model backbone folder (default: --base_model).")
flags.DEFINE_enum("head", "reference", ["reference", "scalar"],
                  "reference: Linear(H->2), reward -out[..., -1]; scalar: Linear(H->1).")
flags.DEFINE_enum("pooling", "last", ["last", "mean", "max"], "Hidden state of the last real "
                  "token, or the mean / max over real tokens.")
flags.DEFINE_integer("num_layers_unfrozen", 0, "0: head only; k: top k blocks (at most the "
                     "backbone's layers); -1: everything.", lower_bound=-1)
flags.DEFINE_integer("max_length", 100, "Token budget of prompt + continuation (demos and "
                     "reward model).", lower_bound=2)
flags.DEFINE_string("loss", "max_margin",
                    "max_margin | hinge | squared | logistic | discriminator")
flags.DEFINE_float("margin", None, "Loss margin (default: the loss's own).")
flags.DEFINE_float("reward_l2", 0.0, "Weight of the reward-scale penalty mean(r_e^2 + r_b^2).",
                   lower_bound=0.0)
flags.DEFINE_float("lr", 1e-4, "Adam learning rate (paper: 1e-4 / 1e-5).")
flags.DEFINE_integer("batch_size", 2, "Pairs per step (reference: 2).")
flags.DEFINE_integer("epochs", 10, "Epochs (reference: 10-30).")
flags.DEFINE_integer("seeds", 1, "Independent reward models, trained together (vmap).")
flags.DEFINE_integer("seed", 0, "Seed of the first reward model (model k uses seed + k); "
                     "also seeds the demonstrations.")
flags.DEFINE_bool("remat", False, "Recompute each trained block's activations in the backward "
                  "pass (less memory).")
# The training settings are validated by IRLTrainConfig, whose names map to these flags.
FLAG_NAMES = {f"IRLTrainConfig.{field}": f"--{flag}" for field, flag in (
    ("learning_rate", "lr"), ("batch_size", "batch_size"), ("epochs", "epochs"),
    ("num_seeds", "seeds"), ("seed", "seed"), ("threshold", "threshold"))}
FLAG_NAMES.update({f"reward model field '{name}'": f"--{name}" for name in (
    "head", "pooling", "num_layers_unfrozen", "max_length")})
FLAG_NAMES.update({f"demos field '{name}'": f"--{flag}" for name, flag in (
    ("num_samples", "num_samples"), ("max_new_tokens", "max_new_tokens"),
    ("test_fraction", "demo_test_fraction"))})
flags.DEFINE_string("threshold", "0", "Learned-reward threshold of accuracy/F1: a number, "
                    "median, match_rate or train_midpoint.")
flags.DEFINE_string("workdir", "runs/irl", "Output folder.")
flags.DEFINE_bool("resume", False, "Continue the unfinished run in --workdir (same settings).")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl run in --workdir (only its own files).")
flags.DEFINE_bool("progress", True, "Show progress bars.")
# Top-level entries this launcher writes into --workdir (what --overwrite may remove).
OUTPUTS = ("demos", "checkpoints", "irl_metrics.json", "irl_metrics.jsonl", "tensorboard",
           "reward_models", "test_rewards.npy", "train_rewards.npy", "epoch0.json")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Matmul compute dtype of the "
                  "demonstration generators and the reward model (parameters stay float32).")


def parse_threshold(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise ConfigError(f"--threshold must be finite, got {text}")
    return value


def demos_path(workdir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(FLAGS.demos) if FLAGS.demos else workdir / "demos"


def demo_config():
    """The demonstration settings; None when only --demos is given (read, not built).

    The mode follows the flags, not what exists on disk, so that a rerun of the same
    command has the same manifest after its first run built the demonstrations.
    """
    from jaxirl.irl.demos import DemoConfig

    if FLAGS.demos and not FLAGS.policy_model:
        return None
    return DemoConfig(num_samples=FLAGS.num_samples, max_length=FLAGS.max_length,
                      max_new_tokens=FLAGS.max_new_tokens, do_sample=FLAGS.do_sample,
                      top_k=FLAGS.top_k, test_fraction=FLAGS.demo_test_fraction,
                      seed=FLAGS.seed, scorer=FLAGS.scorer)


def irl_manifest(train_config, rm_config, demos) -> runs.Manifest:
    """Settings and inputs of this IRL run: read demonstrations, or what builds them."""
    settings = {"train": train_config, "reward_model": rm_config, "demos": demos,
                "dtype": FLAGS.dtype}
    inputs = {"backbone": rm_config.base_model}
    if demos is None:
        inputs["demos"] = FLAGS.demos
    else:
        settings["prompts"] = {"split": FLAGS.prompt_split, "column": FLAGS.prompt_column,
                               "test_fraction": FLAGS.prompt_test_fraction,
                               "seed": FLAGS.prompt_seed}
        inputs.update(policy_model=FLAGS.policy_model or None,
                      base_model=FLAGS.base_model or None, prompts=FLAGS.prompts or None)
    return runs.Manifest.build("irl", settings, inputs)


def load_or_build_demos(workdir: pathlib.Path, config, mesh):
    from jaxirl.irl.demos import load_demos
    from jaxirl.pipeline.irl_stage import DemosStageConfig, run_demos

    path = demos_path(workdir)
    if (path / "dataset_dict.json").is_file():
        return load_demos(path)
    if not (FLAGS.policy_model and FLAGS.base_model and FLAGS.prompts):
        raise ConfigError(f"no demonstrations at '{path}': pass an existing --demos folder, or "
                          "--policy_model, --base_model and --prompts to build them")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DataError(f"--demos '{path}' exists and is not a demonstrations folder (no "
                        "dataset_dict.json); pass a new folder to build them in")
    from jaxirl.data.prompts import PromptDataConfig, load_prompts

    split_all = FLAGS.prompt_split == "all"
    splits = load_prompts(PromptDataConfig(
        path=FLAGS.prompts, prompt_column=FLAGS.prompt_column, reference_column=None,
        test_fraction=0.0 if split_all else FLAGS.prompt_test_fraction, seed=FLAGS.prompt_seed))
    prompts = (splits.train if split_all else getattr(splits, FLAGS.prompt_split)).prompts
    return run_demos(DemosStageConfig(FLAGS.policy_model, FLAGS.base_model, config, FLAGS.dtype),
                     prompts, path, progress=FLAGS.progress, mesh=mesh)


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    start_launcher(argv, parallel_flags.distributed_config())
    from jaxirl.irl.losses import IRLLossConfig
    from jaxirl.irl.reward_model import RewardModelConfig
    from jaxirl.irl.train import METRICS_FILE, IRLTrainConfig
    from jaxirl.models.mixed_precision import parse_dtype
    from jaxirl.pipeline.irl_stage import IRLStageConfig, run_irl

    # Validate every flag before any model is loaded or text generated.
    train_config = IRLTrainConfig(
        loss=IRLLossConfig(FLAGS.loss, FLAGS.margin, FLAGS.reward_l2),
        learning_rate=FLAGS.lr, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
        num_seeds=FLAGS.seeds, seed=FLAGS.seed, threshold=parse_threshold(FLAGS.threshold))
    mesh = parallel.make_mesh(parallel_flags.mesh_config())
    parallel.check_rows(train_config.batch_size, mesh, f"--batch_size {train_config.batch_size}")
    parse_dtype(FLAGS.dtype)
    backbone = FLAGS.backbone or FLAGS.base_model
    if not backbone:
        raise ConfigError("--backbone (or --base_model) must name the reward model's GPT-NeoX "
                          "folder")
    rm_config = RewardModelConfig(base_model=backbone, head=FLAGS.head,
                                  num_layers_unfrozen=FLAGS.num_layers_unfrozen,
                                  max_length=FLAGS.max_length, pooling=FLAGS.pooling)
    demos_config = demo_config()
    folder = runs.open_run(FLAGS.workdir, irl_manifest(train_config, rm_config, demos_config),
                           OUTPUTS, resume=FLAGS.resume, overwrite=FLAGS.overwrite)
    if folder.finished:
        print(f"nothing to do: '{folder.path}' already holds this finished run "
              f"({METRICS_FILE}; --overwrite reruns it)")
        return
    workdir = folder.path
    with folder.cleanup_on_error():
        demos = load_or_build_demos(workdir, demos_config, mesh)
        irl = run_irl(IRLStageConfig(rm_config, train_config, FLAGS.dtype, FLAGS.remat), demos,
                      workdir, resume=FLAGS.resume, progress=FLAGS.progress, mesh=mesh)
    if not parallel.is_main_process():
        return
    history = irl.result.history
    spread = history[-1]["spread"] if history else {}
    summary = {k: f"{spread[k]['mean']:.3f} ± {spread[k]['std']:.3f}"
               for k in ("accuracy", "f1", "roc_auc", "pearson_correlation",
                         "pairwise_accuracy") if k in spread}
    folder.finish()
    print(json.dumps({"heldout": summary, "train_pairs": irl.train_pairs, "test_pairs": irl.test_pairs,
                      "workdir": str(workdir)}, indent=2, ensure_ascii=False))



def console_main() -> None:
    """The ``jaxirl-irl`` console script."""
    run(main)


if __name__ == "__main__":
    console_main()
