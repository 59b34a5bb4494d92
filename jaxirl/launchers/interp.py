"""Interpretability of an RLHF policy: SAEs, the Implicit Reward Model, feature labels.

    # texts from the demonstrations stage (train/test splits kept as they are):
    python experiments/interp.py --base_model BASE --tuned_model runs/rlhf/policy \
        --demos runs/irl/demos --irl_rewards runs/irl/test_rewards.npy --out_dir runs/interp
    # any text file (json/jsonl/csv/parquet, a saved dataset folder or a hub id):
    python experiments/interp.py --base_model BASE --tuned_model runs/rlhf/policy \
        --texts texts.jsonl --text_column text --test_fraction 0.2 --dict_multiples 1,2,8

Writes into ``--out_dir``: ``interp_results.json``, ``interp_tables.md`` (the IRM against
the raw-activation baseline, SAE quality, feature labels, the firing-rate test, IRM vs
IRL), ``irm_scatter.png``, ``sae_metrics.png``, ``firing_rates.png`` and one
sae-lens folder ``sae_layer<L>_x<M>/`` per trained SAE. Every ``InterpConfig`` / ``SAEConfig``
field is a flag; unset flags keep the library defaults. ``--out_dir`` must be new or empty,
or hold a run of the same settings and inputs (finished: nothing to do; unfinished: run
again); ``--overwrite`` replaces a jaxirl run there.
"""

import dataclasses
import json
import pathlib
import re

import numpy as np
from absl import flags

from jaxirl import parallel, runs
from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.errors import ConfigError, DataError, JaxIRLError
from jaxirl.launchers import parallel_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("base_model", "", "HF folder (or hub id) of the model before RLHF.")
flags.DEFINE_string("tuned_model", "", "HF folder (or hub id) of the RLHF policy to study.")
flags.DEFINE_string("demos", "", "Demonstrations folder (jaxirl.irl.demos): its train/test "
                    "expert and base texts are the probe's train/test texts.")
flags.DEFINE_string("texts", "", "Instead of --demos: a text dataset (json/jsonl/csv/parquet "
                    "file, saved dataset folder or hub id), split by --test_fraction.")
flags.DEFINE_string("text_column", "text", "Column of --texts holding the texts.")
flags.DEFINE_float("test_fraction", 0.2, "Held-out share of --texts, in (0, 1).",
                   lower_bound=0.01, upper_bound=0.99)
flags.DEFINE_integer("split_seed", 0, "Seed of the --texts split.", lower_bound=0)
flags.DEFINE_string("scorer", "profanity", "Ground-truth scorer: profanity | roberta[:PATH].")
flags.DEFINE_string("irl_rewards", "", "Optional .npy of IRL rewards of the test texts, [texts] "
                    "or [seeds, texts] (z-scored per seed, then averaged), for IRM vs IRL.")
flags.DEFINE_list("extra_words", [], "Offensive words to add to better-profanity's list for "
                  "the feature labels.")
flags.DEFINE_bool("default_words", False, "Add the embedded default corpus's insult words to "
                  "the word list (for policies built on the embedded default model).")
flags.DEFINE_string("out_dir", "runs/interp", "Output folder.")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl run in --out_dir (only its own files).")
# InterpConfig fields; None keeps the library default.
flags.DEFINE_integer("num_layers", None, "Blocks to study, most RLHF-divergent first.",
                     lower_bound=1)
flags.DEFINE_list("dict_multiples", None, "SAE dictionary sizes as multiples of d_model, "
                  "e.g. 1,2,8.")
flags.DEFINE_enum("pooling", None, ["mean", "max", "sum"], "Token -> text pooling of the probe "
                  "inputs.")
flags.DEFINE_enum("target_transform", None, ["none", "rank_gauss"], "Monotone transform of the "
                  "reward the ridge probe is fit to.")
flags.DEFINE_integer("max_tokens", None, "Tokens read per text (the last ones); at most the "
                     "model's context.", lower_bound=1)
flags.DEFINE_integer("top_k_contexts", None, "Top-activating contexts per feature for labels.",
                     lower_bound=1)
# SAEConfig fields.
flags.DEFINE_integer("sae_epochs", None, "SAE training epochs.", lower_bound=1)
flags.DEFINE_float("sae_l1_coef", None, "SAE L1 coefficient.", lower_bound=0.0)
flags.DEFINE_float("sae_lr", None, "SAE Adam learning rate.")
flags.DEFINE_integer("sae_batch_size", None, "SAE tokens per step.", lower_bound=1)
flags.DEFINE_bool("sae_tied", None, "Tied SAE decoder (the paper's default).")
flags.DEFINE_integer("sae_seed", None, "SAE initialisation and shuffling seed.")

# Top-level entries this launcher writes into --out_dir (what --overwrite may remove).
OUTPUTS = ("interp_results.json", "interp_tables.md", "irm_scatter.png", "sae_metrics.png",
           "firing_rates.png", "sae_layer*_x*", "tensorboard")
# Config field -> flag, so that a config error names the flag the user typed.
_SAE_FLAGS = {"num_epochs": "sae_epochs", "l1_coef": "sae_l1_coef", "learning_rate": "sae_lr",
              "batch_size": "sae_batch_size", "tied": "sae_tied", "seed": "sae_seed",
              "dict_multiple": "dict_multiples"}


def _flag_error(e: JaxIRLError) -> ConfigError:
    msg = re.sub(r"SAEConfig\.(\w+)", lambda m: "--" + _SAE_FLAGS.get(m[1], m[1]), str(e))
    return ConfigError(re.sub(r"InterpConfig\.(\w+)", r"--\1", msg))


def interp_config_from_flags():
    from jaxirl.pipeline.interp_stage import InterpConfig

    top = {}
    for name in ("num_layers", "pooling", "target_transform", "max_tokens", "top_k_contexts"):
        if getattr(FLAGS, name) is not None:
            top[name] = getattr(FLAGS, name)
    if FLAGS.dict_multiples is not None:
        try:
            top["dict_multiples"] = tuple(int(m) for m in FLAGS.dict_multiples)
        except ValueError:
            raise ConfigError(f"--dict_multiples must be comma-separated integers, got "
                              f"'{','.join(FLAGS.dict_multiples)}'") from None
    sae = {field: getattr(FLAGS, flag) for field, flag in _SAE_FLAGS.items()
           if field != "dict_multiple" and getattr(FLAGS, flag) is not None}
    try:
        base = InterpConfig()
        return dataclasses.replace(base, sae=dataclasses.replace(base.sae, **sae), **top)
    except JaxIRLError as e:
        raise _flag_error(e) from None


def _check_model(flag: str) -> str:
    from jaxirl.models.hf_files import resolve_model_dir

    value = getattr(FLAGS, flag)
    if not value:
        raise ConfigError(f"--{flag} must name a GPT-NeoX model folder")
    try:
        return str(resolve_model_dir(value))
    except JaxIRLError as e:
        raise ConfigError(f"--{flag}: {e}") from None


def load_texts() -> tuple[list[str], list[str]]:
    """(train texts, test texts) from --demos or --texts."""
    if bool(FLAGS.demos) == bool(FLAGS.texts):
        raise ConfigError("pass exactly one of --demos (a demonstrations folder) and --texts "
                          "(a text dataset)")
    if FLAGS.demos:
        from jaxirl.irl.demos import load_demos

        try:
            data = load_demos(FLAGS.demos)
        except JaxIRLError as e:
            raise DataError(f"--demos: {e}") from None
        return tuple(list(data[split]["expert_text"]) + list(data[split]["base_text"])
                     for split in ("train", "test"))
    from jaxirl.data.prompts import PromptDataConfig, load_prompts

    if not 0.0 < FLAGS.test_fraction < 1.0:
        raise ConfigError(f"--test_fraction must lie in (0, 1), got {FLAGS.test_fraction}")
    try:
        splits = load_prompts(PromptDataConfig(
            path=FLAGS.texts, prompt_column=FLAGS.text_column, reference_column=None,
            test_fraction=FLAGS.test_fraction, seed=FLAGS.split_seed))
    except JaxIRLError as e:
        raise DataError(f"--texts: {e}".replace("'prompt_column'", "--text_column")) from None
    return list(splits.train.prompts), list(splits.test.prompts)


def load_irl_rewards(num_test: int) -> np.ndarray | None:
    """The IRL reward of each test text [num_test], or None without --irl_rewards."""
    if not FLAGS.irl_rewards:
        return None
    path = pathlib.Path(FLAGS.irl_rewards)
    try:
        rewards = np.asarray(np.load(path, allow_pickle=False), np.float64)
    except (OSError, ValueError) as e:
        raise DataError(f"--irl_rewards: cannot read '{path}' as a .npy array: "
                        f"{type(e).__name__}: {e}") from None
    if rewards.ndim not in (1, 2) or rewards.shape[-1] != num_test:
        raise DataError(f"--irl_rewards '{path}' has shape {rewards.shape}; expected [{num_test}] "
                        f"or [seeds, {num_test}] for the {num_test} test texts")
    if not np.all(np.isfinite(rewards)):
        raise DataError(f"--irl_rewards '{path}' contains NaN or inf")
    if rewards.ndim == 2:
        from jaxirl.irl.ensemble import ensemble

        # As the study: each seed's reward model has its own offset and scale.
        rewards, _ = ensemble(rewards)
    return rewards


def offensive_extra_words() -> tuple[str, ...]:
    words = tuple(w.strip().lower() for w in FLAGS.extra_words if w.strip())
    if FLAGS.default_words:
        from jaxirl.default.corpus import OFFENSIVE_WORDS

        words += OFFENSIVE_WORDS
    return words


def interp_manifest(config, base: str, tuned: str) -> runs.Manifest:
    settings = {"config": config, "scorer": FLAGS.scorer, "text_column": FLAGS.text_column,
                "test_fraction": FLAGS.test_fraction, "split_seed": FLAGS.split_seed,
                "extra_words": offensive_extra_words()}
    inputs = {"base_model": base, "tuned_model": tuned, "demos": FLAGS.demos or None,
              "texts": FLAGS.texts or None, "irl_rewards": FLAGS.irl_rewards or None,
              "scorer": FLAGS.scorer}
    return runs.Manifest.build("interp", settings, inputs)


def fit_context(config, model: str):
    """``config`` with the default token budget capped at the model's context; an explicit
    --max_tokens past the context is an error."""
    from jaxirl.models.hf_io import load_config

    context = load_config(model).max_position_embeddings
    if config.max_tokens <= context:
        return config
    if FLAGS.max_tokens is not None:
        raise ConfigError(f"--max_tokens {config.max_tokens} exceeds the {context}-token "
                          f"context of '{model}'")
    return dataclasses.replace(config, max_tokens=context)


@one_line_errors
def main(argv):
    start_launcher(argv, parallel_flags.distributed_config())
    from jaxirl.pipeline.interp_stage import run_interp
    from jaxirl.pipeline.reward_specs import make_scorer

    # Validate every flag before any model is loaded.
    config = interp_config_from_flags()
    mesh = parallel.make_mesh(parallel_flags.mesh_config())
    base, tuned = _check_model("base_model"), _check_model("tuned_model")
    config = fit_context(config, tuned)
    try:
        scorer = make_scorer(FLAGS.scorer)
    except JaxIRLError as e:
        raise ConfigError(f"--scorer: {e}") from None
    train_texts, test_texts = load_texts()
    irl = load_irl_rewards(len(test_texts))
    # No checkpoints to continue from: an unfinished run of these settings starts again.
    folder = runs.open_run(FLAGS.out_dir, interp_manifest(config, base, tuned), OUTPUTS,
                           resume=True, overwrite=FLAGS.overwrite)
    if folder.finished:
        print(f"nothing to do: '{folder.path}' already holds this finished run "
              "(interp_results.json; --overwrite reruns it)")
        return
    with folder.cleanup_on_error():
        results = run_interp(config, folder.path, base, tuned, train_texts, test_texts, scorer,
                             irl_test_rewards=irl, extra_words=offensive_extra_words(),
                             mesh=mesh)
    if not parallel.is_main_process():
        return
    folder.finish()
    keys = ("spearman", "pearson", "kendall")
    summary = {"layers": results["layers"],
               "irm_vs_true": {k: round(results["irm_vs_true"][k], 3) for k in keys},
               "raw_vs_true": {k: round(results["raw_vs_true"][k], 3) for k in keys},
               "train_texts": len(train_texts), "test_texts": len(test_texts),
               "out_dir": FLAGS.out_dir}
    if "irm_vs_irl" in results:
        summary["irm_vs_irl"] = {k: round(results["irm_vs_irl"][k], 3) for k in keys}
    print(json.dumps(summary, indent=2))



def console_main() -> None:
    """The ``jaxirl-interp`` console script."""
    run(main)


if __name__ == "__main__":
    console_main()
