"""Interpretability of an RLHF policy: SAEs, the Implicit Reward Model, feature labels.

    # texts from the demonstrations stage (train/test splits kept as they are):
    python experiments/interp.py --model BASE --policy_model runs/rlhf/policy \
        --demos runs/irl/demos --irl_rewards runs/irl/test_rewards.npy --workdir runs/interp
    # any text file (json/jsonl/csv/parquet, a saved dataset folder or a hub id):
    python experiments/interp.py --model BASE --policy_model runs/rlhf/policy \
        --dataset texts.jsonl --text_column text --test_fraction 0.2 --dict_multiples 1,2,8

Writes into ``--workdir``: ``interp_results.json``, ``interp_tables.md`` (the IRM against
the raw-activation baseline, SAE quality, feature labels, the firing-rate test, IRM vs
IRL), ``irm_scatter.png``, ``sae_metrics.png``, ``firing_rates.png`` and one
sae-lens folder ``sae_layer<L>_x<M>/`` per trained SAE. The settings are one
:class:`InterpRunConfig` (``--config.<field>``, ``--config_file``; every ``InterpConfig`` /
``SAEConfig`` field also has a short flag), saved as ``run_config.json``. ``--workdir``
(formerly ``--out_dir``) must be new or empty, or hold a run of the same settings and
inputs (finished: nothing to do; unfinished: run again); ``--overwrite`` replaces a
jaxirl run there.
"""

import dataclasses
import json
import pathlib

import numpy as np
from absl import flags

from jaxirl import parallel, runs
from jaxirl.cli import one_line_errors, run, start_launcher
from jaxirl.errors import ConfigError, DataError, JaxIRLError
from jaxirl.interp.activations import TEXT_POOLINGS
from jaxirl.interp.config import InterpConfig
from jaxirl.interp.probes import TARGET_TRANSFORMS
from jaxirl.launchers import config_flags, parallel_flags
from jaxirl.launchers.choices import SCORER_KINDS, define_spec
from jaxirl.launchers.config_flags import Alias
from jaxirl.parallel import MeshConfig


@dataclasses.dataclass(frozen=True)
class InterpRunConfig:
    """Settings of one interpretability launcher run.

    Attributes:
      model: HF folder (or hub id) of the model before RLHF.
      policy_model: HF folder (or hub id) of the RLHF policy to study.
      scorer: the ground-truth scorer.
      irl_rewards: optional .npy of IRL rewards of the test texts, [texts] or [seeds, texts].
      interp: SAEs, probes and feature labels.
      demos_folder: demonstrations (jaxirl.irl.demos) whose train/test expert and base
        texts are the probe's train/test texts; or
      dataset: a text dataset (json/jsonl/csv/parquet file, saved dataset folder or hub
        id), split by ``test_fraction`` with ``split_seed``; ``text_column`` holds the texts.
      extra_words: offensive words added to better-profanity's list for feature labels.
      default_words: add the embedded default corpus's insult words to that list.
      mesh: the device mesh.
    """

    model: str = ""
    policy_model: str = ""
    scorer: str = "profanity"
    irl_rewards: str = ""
    interp: InterpConfig = InterpConfig()
    # The texts: demonstrations (their splits), or a dataset split here.
    demos_folder: str = ""
    dataset: str = ""
    text_column: str = "text"
    test_fraction: float = 0.2
    split_seed: int = 0
    extra_words: tuple[str, ...] = ()
    default_words: bool = False
    mesh: MeshConfig = MeshConfig()

    def __post_init__(self):
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"InterpRunConfig.test_fraction must lie in (0, 1), got "
                              f"{self.test_fraction}")
        if self.split_seed < 0:
            raise ConfigError(f"InterpRunConfig.split_seed must be >= 0, got {self.split_seed}")


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/interp", "Output folder.")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl run in --workdir (only its own files).")
# Short flags of InterpRunConfig fields; unset: the config's value.
flags.DEFINE_string("model", None, "HF folder (or hub id) of the model before RLHF.")
flags.DEFINE_string("policy_model", None, "HF folder (or hub id) of the RLHF policy to study.")
flags.DEFINE_string("demos", None, "Demonstrations folder (jaxirl.irl.demos): its train/test "
                    "expert and base texts are the probe's train/test texts.")
flags.DEFINE_string("dataset", None, "Instead of --demos: a text dataset (json/jsonl/csv/parquet "
                    "file, saved dataset folder or hub id), split by --test_fraction.")
flags.DEFINE_string("text_column", None, "Column of --dataset holding the texts.")
flags.DEFINE_float("test_fraction", None, "Held-out share of --dataset, in (0, 1).",
                   lower_bound=0.01, upper_bound=0.99)
flags.DEFINE_integer("split_seed", None, "Seed of the --dataset split.", lower_bound=0)
define_spec("scorer", None, SCORER_KINDS, "Ground-truth scorer: profanity | roberta[:PATH].")
flags.DEFINE_string("irl_rewards", None, "Optional .npy of IRL rewards of the test texts, [texts] "
                    "or [seeds, texts] (z-scored per seed, then averaged), for IRM vs IRL.")
flags.DEFINE_list("extra_words", None, "Offensive words to add to better-profanity's list for "
                  "the feature labels.")
flags.DEFINE_bool("default_words", None, "Add the embedded default corpus's insult words to "
                  "the word list (for policies built on the embedded default model).")
# InterpConfig fields (config.interp.*).
flags.DEFINE_integer("num_layers", None, "Blocks to study, most RLHF-divergent first.",
                     lower_bound=1)
flags.DEFINE_list("dict_multiples", None, "SAE dictionary sizes as multiples of d_model, "
                  "e.g. 1,2,8.")
flags.DEFINE_enum("pooling", None, list(TEXT_POOLINGS), "Token -> text pooling of the probe "
                  "inputs.")
flags.DEFINE_enum("target_transform", None, list(TARGET_TRANSFORMS), "Monotone transform of the "
                  "reward the ridge probe is fit to.")
flags.DEFINE_integer("max_tokens", None, "Tokens read per text (the last ones); at most the "
                     "model's context.", lower_bound=1)
flags.DEFINE_integer("top_k_contexts", None, "Top-activating contexts per feature for labels.",
                     lower_bound=1)
# SAEConfig fields (config.interp.sae.*).
flags.DEFINE_integer("sae_epochs", None, "SAE training epochs.", lower_bound=1)
flags.DEFINE_float("sae_l1_coef", None, "SAE L1 coefficient.", lower_bound=0.0)
flags.DEFINE_float("sae_lr", None, "SAE Adam learning rate.")
flags.DEFINE_integer("sae_batch_size", None, "SAE tokens per step.", lower_bound=1)
flags.DEFINE_bool("sae_tied", None, "Tied SAE decoder (the paper's default).")
flags.DEFINE_integer("sae_seed", None, "SAE initialisation and shuffling seed.")
for _old, _new in (("base_model", "model"), ("tuned_model", "policy_model"),
                   ("texts", "dataset"), ("out_dir", "workdir")):
    config_flags.define_deprecated(_old, _new)

# SAEConfig field -> flag.
_SAE_FLAGS = {"num_epochs": "sae_epochs", "l1_coef": "sae_l1_coef", "learning_rate": "sae_lr",
              "batch_size": "sae_batch_size", "tied": "sae_tied", "seed": "sae_seed"}
_INTERP_FLAGS = ("num_layers", "pooling", "target_transform", "max_tokens", "top_k_contexts")


def _multiples(values: list[str]) -> tuple[int, ...]:
    try:
        return tuple(int(m) for m in values)
    except ValueError:
        raise ConfigError(f"--dict_multiples must be comma-separated integers, got "
                          f"'{','.join(values)}'") from None


CONFIG = config_flags.ConfigSpec(InterpRunConfig, InterpRunConfig(), aliases=(
    *(Alias(name, (name,)) for name in (
        "model", "policy_model", "dataset", "text_column", "test_fraction", "split_seed",
        "scorer", "irl_rewards", "default_words")),
    Alias("demos", ("demos_folder",)), Alias("extra_words", ("extra_words",), tuple),
    Alias("dict_multiples", ("interp.dict_multiples",), _multiples),
    *(Alias(name, (f"interp.{name}",)) for name in _INTERP_FLAGS),
    *(Alias(flag, (f"interp.sae.{field}",)) for field, flag in _SAE_FLAGS.items()),
    *parallel_flags.mesh_aliases()))
config_flags.define(CONFIG)
# Config names -> flags, so that a config error names the flag the user typed.
FLAG_NAMES = {f"SAEConfig.{field}": f"--{flag}" for field, flag in _SAE_FLAGS.items()}
FLAG_NAMES.update({"SAEConfig.dict_multiple": "--dict_multiples",
                   "InterpConfig.dict_multiples": "--dict_multiples"})
FLAG_NAMES.update({f"InterpConfig.{name}": f"--{name}" for name in _INTERP_FLAGS})
FLAG_NAMES.update({f"InterpRunConfig.{name}": f"--{name}" for name in ("test_fraction",
                                                                       "split_seed")})
# Top-level entries this launcher writes into --workdir (what --overwrite may remove).
OUTPUTS = ("interp_results.json", "interp_tables.md", "irm_scatter.png", "sae_metrics.png",
           "firing_rates.png", "sae_layer*_x*", "sae_checkpoints", "tensorboard",
           runs.RUN_CONFIG_FILE)


def _check_model(value: str, flag: str) -> str:
    from jaxirl.models.hf_files import resolve_model_dir

    if not value:
        raise ConfigError(f"--{flag} must name a GPT-NeoX model folder")
    try:
        return str(resolve_model_dir(value))
    except JaxIRLError as e:
        raise ConfigError(f"--{flag}: {e}") from None


def load_texts(config: InterpRunConfig) -> tuple[list[str], list[str], list[str] | None]:
    """(train texts, test texts, the prompt of each test text) from the demonstrations, or
    from the text dataset (no prompts: None, each text is its own bootstrap unit).

    A prompt's expert and base texts are one unit of the bootstrap intervals, as in the
    study (:func:`jaxirl.pipeline.interp_stage.run_interp`'s ``test_groups``).
    """
    if bool(config.demos_folder) == bool(config.dataset):
        raise ConfigError("pass exactly one of --demos (a demonstrations folder) and --dataset "
                          "(a text dataset)")
    if config.demos_folder:
        from jaxirl.irl.demos import load_demos

        try:
            data = load_demos(config.demos_folder)
        except JaxIRLError as e:
            raise DataError(f"--demos: {e}") from None
        train, test = (list(data[split]["expert_text"]) + list(data[split]["base_text"])
                       for split in ("train", "test"))
        return train, test, list(data["test"]["prompt"]) * 2
    from jaxirl.data.prompts import PromptDataConfig, load_prompts

    try:
        splits = load_prompts(PromptDataConfig(
            path=config.dataset, prompt_column=config.text_column, reference_column=None,
            test_fraction=config.test_fraction, seed=config.split_seed))
    except JaxIRLError as e:
        raise DataError(f"--dataset: {e}".replace("'prompt_column'", "--text_column")) from None
    return list(splits.train.prompts), list(splits.test.prompts), None


def load_irl_rewards(path: str, num_test: int) -> np.ndarray | None:
    """The IRL reward of each test text [num_test], or None without --irl_rewards."""
    if not path:
        return None
    path = pathlib.Path(path)
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


def offensive_extra_words(config: InterpRunConfig) -> tuple[str, ...]:
    words = tuple(w.strip().lower() for w in config.extra_words if w.strip())
    if config.default_words:
        from jaxirl.default.corpus import OFFENSIVE_WORDS

        words += OFFENSIVE_WORDS
    return words


def interp_manifest(config: InterpRunConfig, base: str, tuned: str) -> runs.Manifest:
    settings = {"config": config.interp, "scorer": config.scorer,
                "text_column": config.text_column, "test_fraction": config.test_fraction,
                "split_seed": config.split_seed, "extra_words": offensive_extra_words(config)}
    inputs = {"base_model": base, "tuned_model": tuned, "demos": config.demos_folder or None,
              "texts": config.dataset or None, "irl_rewards": config.irl_rewards or None,
              "scorer": config.scorer}
    if config.demos_folder:  # the intervals resample prompts (before this: texts)
        settings["bootstrap_unit"] = "prompt"
    return runs.Manifest.build("interp", settings, inputs)


def fit_context(config: InterpConfig, model: str) -> InterpConfig:
    """``config`` with the default token budget capped at the model's context; a given
    max_tokens past the context is an error."""
    from jaxirl.models.hf_io import load_config

    context = load_config(model).max_position_embeddings
    if config.max_tokens <= context:
        return config
    if config_flags.given("interp.max_tokens"):
        raise ConfigError(f"--max_tokens {config.max_tokens} exceeds the {context}-token "
                          f"context of '{model}'")
    return dataclasses.replace(config, max_tokens=context)


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    # Validate every setting before any model is loaded.
    config = config_flags.resolve(CONFIG.example)
    if config_flags.printed(config):
        return
    start_launcher(argv, parallel_flags.distributed_config())
    from jaxirl.pipeline.interp_stage import run_interp
    from jaxirl.pipeline.reward_specs import make_scorer

    mesh = parallel.make_mesh(config.mesh)
    base = _check_model(config.model, "model")
    tuned = _check_model(config.policy_model, "policy_model")
    config = dataclasses.replace(config, interp=fit_context(config.interp, tuned))
    try:
        scorer = make_scorer(config.scorer)
    except JaxIRLError as e:
        raise ConfigError(f"--scorer: {e}") from None
    train_texts, test_texts, test_groups = load_texts(config)
    irl = load_irl_rewards(config.irl_rewards, len(test_texts))
    # An unfinished run of these settings continues: each SAE from its checkpoint.
    folder = runs.open_run(FLAGS.workdir, interp_manifest(config, base, tuned), OUTPUTS,
                           resume=True, overwrite=FLAGS.overwrite,
                           keep=(base, tuned, config.demos_folder, config.dataset,
                                 config.irl_rewards))
    if folder.finished:
        print(f"nothing to do: '{folder.path}' already holds this finished run "
              "(interp_results.json; --overwrite reruns it)")
        return
    with folder.cleanup_on_error():
        if parallel.is_main_process():
            runs.save_run_config(config, folder.path)
        results = run_interp(config.interp, folder.path, base, tuned, train_texts, test_texts,
                             scorer, irl_test_rewards=irl,
                             extra_words=offensive_extra_words(config), test_groups=test_groups,
                             mesh=mesh)
    if not parallel.is_main_process():
        return
    folder.finish()
    keys = ("spearman", "pearson", "kendall")
    summary = {"layers": results["layers"],
               "irm_vs_true": {k: round(results["irm_vs_true"][k], 3) for k in keys},
               "raw_vs_true": {k: round(results["raw_vs_true"][k], 3) for k in keys},
               "train_texts": len(train_texts), "test_texts": len(test_texts),
               "workdir": FLAGS.workdir}
    if "irm_vs_irl" in results:
        summary["irm_vs_irl"] = {k: round(results["irm_vs_irl"][k], 3) for k in keys}
    print(json.dumps(summary, indent=2))


def console_main() -> None:
    """The ``jaxirl-interp`` console script."""
    run(main, config_flags.prepare)


if __name__ == "__main__":
    console_main()
