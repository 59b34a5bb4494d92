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
as ``experiments/rlhf.py --reward learned:<folder>``.
"""

import json
import math
import pathlib

from absl import app, flags

from jaxirl.cli import one_line_errors, start_launcher
from jaxirl.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string("demos", "", "Saved demonstrations folder; built there first if missing and "
                    "--policy_model is given (default: --workdir/demos).")
flags.DEFINE_string("policy_model", "", "HF folder of the RLHF policy (the expert).")
flags.DEFINE_string("base_model", "", "HF folder of the base model (also the default backbone).")
flags.DEFINE_string("prompts", "", "Prompt data for the demonstrations (file, folder or hub id).")
flags.DEFINE_string("prompt_column", "prompt", "Column holding the prompts.")
flags.DEFINE_enum("prompt_split", "test", ["test", "train", "all"],
                  "Which split of --prompts to use (the RLHF run's held-out prompts: test).")
flags.DEFINE_float("prompt_test_fraction", 0.2, "Test share of the --prompts split (as RLHF).")
flags.DEFINE_integer("prompt_seed", 0, "Seed of the --prompts split (as RLHF).")
flags.DEFINE_integer("num_samples", None, "Prompts to build demonstrations from (default: all).")
flags.DEFINE_integer("max_new_tokens", None, "Continuation tokens (default: --max_length minus "
                     "the prompt width).")
flags.DEFINE_bool("do_sample", False, "Sample the demonstrations instead of greedy decoding.")
flags.DEFINE_integer("top_k", 0, "Top-k when sampling (0 = off).")
flags.DEFINE_string("scorer", "profanity", "Ground-truth scorer: profanity | roberta[:PATH].")
flags.DEFINE_float("demo_test_fraction", 0.2, "Held-out share of the demonstration pairs.")
flags.DEFINE_string("backbone", "", "Reward model backbone folder (default: --base_model).")
flags.DEFINE_enum("head", "reference", ["reference", "scalar"],
                  "reference: Linear(H->2), reward -out[..., -1]; scalar: Linear(H->1).")
flags.DEFINE_enum("pooling", "last", ["last", "mean", "max"], "Hidden state of the last real "
                  "token, or the mean / max over real tokens.")
flags.DEFINE_integer("num_layers_unfrozen", 0, "0: head only; k: top k blocks; -1: everything.")
flags.DEFINE_integer("max_length", 100, "Token budget of prompt + continuation (demos and "
                     "reward model).")
flags.DEFINE_string("loss", "max_margin",
                    "max_margin | hinge | squared | logistic | discriminator")
flags.DEFINE_float("margin", None, "Loss margin (default: the loss's own).")
flags.DEFINE_float("reward_l2", 0.0, "Weight of the reward-scale penalty mean(r_e^2 + r_b^2).")
flags.DEFINE_float("lr", 1e-4, "Adam learning rate (paper: 1e-4 / 1e-5).")
flags.DEFINE_integer("batch_size", 2, "Pairs per step (reference: 2).")
flags.DEFINE_integer("epochs", 10, "Epochs (reference: 10-30).")
flags.DEFINE_integer("seeds", 1, "Independent reward models, trained together (vmap).")
flags.DEFINE_integer("seed", 0, "Seed of the first reward model (model k uses seed + k); "
                     "also seeds the demonstrations.")
flags.DEFINE_integer("num_devices", 1, "Devices for the pmapped step (must divide --batch_size).")
flags.DEFINE_string("threshold", "0", "Learned-reward threshold of accuracy/F1: a number, "
                    "median, match_rate or train_midpoint.")
flags.DEFINE_string("workdir", "runs/irl", "Output folder.")
flags.DEFINE_bool("resume", False, "Resume from the latest checkpoint in --workdir.")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_string("dtype", "float32", "Matmul compute dtype of the demonstration generators and "
                    "the reward model: float32 | bfloat16 (parameters stay float32).")


def parse_threshold(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):
        raise ConfigError(f"--threshold must be finite, got {text}")
    return value


def load_or_build_demos(workdir: pathlib.Path):
    from jaxirl.irl.demos import DemoConfig, Generator, build_demos, load_demos, save_demos

    path = pathlib.Path(FLAGS.demos) if FLAGS.demos else workdir / "demos"
    if (path / "dataset_dict.json").is_file():
        return load_demos(path)
    if not (FLAGS.policy_model and FLAGS.base_model and FLAGS.prompts):
        raise ConfigError(f"no demonstrations at '{path}': pass an existing --demos folder, or "
                          "--policy_model, --base_model and --prompts to build them")
    from jaxirl.data.prompts import PromptDataConfig, load_prompts
    from jaxirl.models import load_pretrained, load_tokenizer
    from jaxirl.models.mixed_precision import parse_dtype

    config = DemoConfig(num_samples=FLAGS.num_samples, max_length=FLAGS.max_length,
                        max_new_tokens=FLAGS.max_new_tokens, do_sample=FLAGS.do_sample,
                        top_k=FLAGS.top_k, test_fraction=FLAGS.demo_test_fraction,
                        seed=FLAGS.seed, scorer=FLAGS.scorer)
    split_all = FLAGS.prompt_split == "all"
    splits = load_prompts(PromptDataConfig(
        path=FLAGS.prompts, prompt_column=FLAGS.prompt_column, reference_column=None,
        test_fraction=0.0 if split_all else FLAGS.prompt_test_fraction, seed=FLAGS.prompt_seed))
    prompts = (splits.train if split_all else getattr(splits, FLAGS.prompt_split)).prompts

    def generator(folder):
        model, params = load_pretrained(folder, parse_dtype(FLAGS.dtype))
        return Generator(model, params, load_tokenizer(folder))

    demos = build_demos(prompts, generator(FLAGS.policy_model), generator(FLAGS.base_model),
                        config)
    save_demos(demos, path)
    return demos


@one_line_errors
def main(argv):
    start_launcher(argv)
    from jaxirl.irl.losses import IRLLossConfig
    from jaxirl.irl.pairs import demo_pairs
    from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
    from jaxirl.irl.train import IRLTrainConfig, check_devices, train_irl
    from jaxirl.models.mixed_precision import parse_dtype

    # Validate every flag before any model is loaded or text generated.
    train_config = IRLTrainConfig(
        loss=IRLLossConfig(FLAGS.loss, FLAGS.margin, FLAGS.reward_l2),
        learning_rate=FLAGS.lr, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
        num_seeds=FLAGS.seeds, seed=FLAGS.seed, num_devices=FLAGS.num_devices,
        threshold=parse_threshold(FLAGS.threshold))
    check_devices(train_config)
    dtype = parse_dtype(FLAGS.dtype)
    backbone = FLAGS.backbone or FLAGS.base_model
    if not backbone:
        raise ConfigError("--backbone (or --base_model) must name the reward model's GPT-NeoX "
                          "folder")
    rm_config = RewardModelConfig(base_model=backbone, head=FLAGS.head,
                                  num_layers_unfrozen=FLAGS.num_layers_unfrozen,
                                  max_length=FLAGS.max_length, pooling=FLAGS.pooling)
    workdir = pathlib.Path(FLAGS.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    demos = load_or_build_demos(workdir)
    model = init_reward_model(rm_config, seed=FLAGS.seed, dtype=dtype)
    train, test = demo_pairs(model, demos["train"]), demo_pairs(model, demos["test"])
    result = train_irl(model, train, test, train_config, workdir=workdir, resume=FLAGS.resume,
                       progress=FLAGS.progress)
    spread = result.history[-1]["spread"] if result.history else {}
    summary = {k: f"{spread[k]['mean']:.3f} ± {spread[k]['std']:.3f}"
               for k in ("accuracy", "f1", "roc_auc", "pearson_correlation",
                         "pairwise_accuracy") if k in spread}
    print(json.dumps({"heldout": summary, "train_pairs": len(train), "test_pairs": len(test),
                      "workdir": str(workdir)}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    app.run(main)
