"""Max-margin IRL: recover a reward from RLHF-policy (expert) vs base-model demonstrations.

    # demonstrations from an RLHF run, then 5 head-only reward models:
    python experiments/irl.py --policy_model runs/rlhf/policy --model BASE \
        --dataset BASE/prompts.jsonl --workdir runs/irl --seeds 5
    # reuse saved demonstrations (a jaxirl.irl.demos folder):
    python experiments/irl.py --demos runs/irl/demos --backbone BASE --workdir runs/irl2 \
        --loss logistic --num_layers_unfrozen 2 --lr 1e-5
    python experiments/irl.py ... --config.train.loss.reward_l2=0.01 --config.demos.top_p=0.9
    python experiments/irl.py ... --resume         # continue the last epoch checkpoint

The settings are one :class:`IRLRunConfig` (``--config.<field>``, ``--config_file``; the
short flags set its fields), saved as ``--workdir/run_config.json``. Writes
``--workdir/irl_metrics.json`` (per-epoch, per-seed held-out metrics),
``--workdir/checkpoints`` and ``--workdir/reward_models/seed_<k>``, each usable as
``experiments/rlhf.py --reward learned:<folder>``, and, as the study's IRL stage (both run
:func:`jaxirl.pipeline.irl_stage.run_irl`), ``test_rewards.npy`` (every seed's rewards of
the held-out texts, for ``experiments/interp.py --irl_rewards``), ``train_rewards.npy`` and
``epoch0.json`` (the untrained models). ``--workdir`` must be new or empty, or hold a run of
the same settings and inputs (finished: nothing to do; unfinished: ``--resume``);
``--overwrite`` replaces a jaxirl run there, but never removes an input of the new run
(demonstrations given with ``--demos``, even inside ``--workdir``; the run's own
``--workdir/demos`` is removed and built again).

An existing ``--demos`` folder is read as it is (its content fingerprint is an input of
the run, so a changed folder is noticed on ``--resume``); the flags that only build
demonstrations (``--policy_model``, ``--dataset``, ``--num_samples``, ``--top_k``,
``--prompt_split``, ``--config.demos.*``, ...) are then an error, unless this
``--workdir`` holds the run that built it with those settings.
"""

import dataclasses
import json
import logging
import pathlib

from absl import flags

from jaxirl import parallel, runs
from jaxirl.cli import one_line_errors, refuse_resume_with_overwrite, run, start_launcher
from jaxirl.errors import ConfigError, DataError
from jaxirl.irl.demos import DemoConfig
from jaxirl.irl.reward_model import HEADS, POOLINGS, RewardModelConfig
from jaxirl.irl.train import IRLTrainConfig, train_settings
from jaxirl.launchers import config_flags, parallel_flags
from jaxirl.launchers.choices import (
    DTYPE_NAMES,
    ENUMS,
    LOSS_NAMES,
    SCORER_KINDS,
    define_spec,
    define_threshold,
    enum,
)
from jaxirl.launchers.config_flags import Alias
from jaxirl.models.mixed_precision import parse_dtype
from jaxirl.parallel import MeshConfig

# reward_model.base_model: the backbone is --model unless --backbone names another.
BASE = "<base>"
PROMPT_SPLITS = ("test", "train", "all")
# IRLRunConfig settings (and the groups under them) that only building demonstrations reads.
BUILD_ONLY = ("policy_model", "dataset", "prompt_column", "prompt_split", "prompt_test_fraction",
              "prompt_seed", "demos")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IRLRunConfig:
    """Settings of one IRL launcher run: demonstrations (read or built) and reward models.

    Attributes:
      model: HF folder of the base model (the demonstrations' base, the default backbone).
      policy_model: HF folder of the RLHF policy (the expert); "": read ``demos_folder``.
      dataset: prompt data for building demonstrations (file, folder or hub id).
      prompt_column: its column holding the prompts.
      prompt_split: which split of ``dataset`` (``test``: the RLHF run's held-out prompts).
      prompt_test_fraction, prompt_seed: that split (as the RLHF run's).
      demos_folder: saved demonstrations ("": ``workdir/demos``, built there).
      demos: how demonstrations are built (``seed`` also seeds the prompt subset).
      reward_model: the reward model (``base_model`` :data:`BASE`: ``model``).
      train: IRL training (loss, learning rate, batch, epochs, seeds, threshold).
      dtype: matmul compute dtype of the generators and the reward model.
      remat: recompute each trained block's activations in the backward pass.
      mesh: the device mesh.
    """

    model: str = ""
    policy_model: str = ""
    dataset: str = ""
    prompt_column: str = "prompt"
    prompt_split: str = "test"
    prompt_test_fraction: float = 0.2
    prompt_seed: int = 0
    demos_folder: str = ""
    demos: DemoConfig = DemoConfig()
    reward_model: RewardModelConfig = RewardModelConfig(base_model=BASE)
    train: IRLTrainConfig = IRLTrainConfig()
    dtype: str = "float32"
    remat: bool = False
    mesh: MeshConfig = MeshConfig()

    def __post_init__(self):
        if self.prompt_split not in PROMPT_SPLITS:
            raise ConfigError(f"IRLRunConfig.prompt_split must be one of "
                              f"{', '.join(PROMPT_SPLITS)}, got {self.prompt_split!r}")
        if not 0.0 <= self.prompt_test_fraction < 1.0 or self.prompt_seed < 0:
            raise ConfigError("IRLRunConfig.prompt_test_fraction must lie in [0, 1) and "
                              "prompt_seed be >= 0")
        parse_dtype(self.dtype)


ENUMS["IRLRunConfig.prompt_split"] = enum(PROMPT_SPLITS)
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/irl", "Output folder.")
flags.DEFINE_bool("resume", False, "Continue the unfinished run in --workdir (same settings).")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl run in --workdir (only its own files).")
flags.DEFINE_bool("progress", True, "Show progress bars.")
# Short flags of IRLRunConfig fields; unset: the config's value.
flags.DEFINE_string("demos", None, "Saved demonstrations folder, read as it is; built there "
                    "first if missing and --policy_model is given (default: --workdir/demos, "
                    "always built). --overwrite never removes it.")
flags.DEFINE_string("policy_model", None, "HF folder of the RLHF policy (the expert).")
flags.DEFINE_string("model", None, "HF folder of the base model (also the default backbone).")
flags.DEFINE_string("dataset", None, "Prompt data for the demonstrations (file, folder or hub id).")
flags.DEFINE_string("prompt_column", None, "Column holding the prompts.")
flags.DEFINE_enum("prompt_split", None, list(PROMPT_SPLITS),
                  "Which split of --dataset to use (the RLHF run's held-out prompts: test).")
flags.DEFINE_float("prompt_test_fraction", None, "Test share of the --dataset split (as RLHF).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("prompt_seed", None, "Seed of the --dataset split (as RLHF).", lower_bound=0)
flags.DEFINE_integer("num_samples", None, "Prompts to build demonstrations from (default: all).",
                     lower_bound=2)
flags.DEFINE_integer("max_new_tokens", None, "Continuation tokens (default: --max_length minus "
                     "the prompt width).", lower_bound=1)
flags.DEFINE_bool("do_sample", None, "Sample the demonstrations instead of greedy decoding.")
flags.DEFINE_integer("top_k", None, "Top-k when sampling (0 = off).", lower_bound=0)
define_spec("scorer", None, SCORER_KINDS, "Ground-truth scorer: profanity | roberta[:PATH].")
flags.DEFINE_float("demo_test_fraction", None, "Held-out share of the demonstration pairs.",
                   lower_bound=0.01, upper_bound=0.99)
flags.DEFINE_string("backbone", None, "Reward model backbone folder (default: --model).")
flags.DEFINE_enum("head", None, list(HEADS),
                  "reference: Linear(H->2), reward -out[..., -1]; scalar: Linear(H->1).")
flags.DEFINE_enum("pooling", None, list(POOLINGS), "Hidden state of the last real token, or "
                  "the mean / max over real tokens.")
flags.DEFINE_integer("num_layers_unfrozen", None, "0: head only; k: top k blocks (at most the "
                     "backbone's layers); -1: everything.", lower_bound=-1)
flags.DEFINE_integer("max_length", None, "Token budget of prompt + continuation (demos and "
                     "reward model).", lower_bound=2)
flags.DEFINE_enum("loss", None, LOSS_NAMES, "The IRL loss.")
flags.DEFINE_float("margin", None, "Loss margin (default: the loss's own).")
flags.DEFINE_float("reward_l2", None, "Weight of the reward-scale penalty mean(r_e^2 + r_b^2).",
                   lower_bound=0.0)
flags.DEFINE_float("lr", None, "Adam learning rate (paper: 1e-4 / 1e-5).")
flags.DEFINE_integer("batch_size", None, "Pairs per step (reference: 2).")
flags.DEFINE_integer("epochs", None, "Epochs (reference: 10-30).")
flags.DEFINE_integer("seeds", None, "Independent reward models, trained together (vmap).")
flags.DEFINE_integer("seed", None, "Seed of the first reward model (model k uses seed + k); "
                     "also seeds the demonstrations.")
define_threshold("threshold", None, "Learned-reward threshold of accuracy/F1: a number, "
                 "median, match_rate or train_midpoint.")
flags.DEFINE_bool("remat", None, "Recompute each trained block's activations in the backward "
                  "pass (less memory).")
flags.DEFINE_enum("dtype", None, DTYPE_NAMES, "Matmul compute dtype of the demonstration "
                  "generators and the reward model (parameters stay float32).")
config_flags.define_deprecated("base_model", "model")
config_flags.define_deprecated("prompts", "dataset")
_SHORT = {"demos": "demos_folder", "backbone": "reward_model.base_model",
          "num_samples": "demos.num_samples", "max_new_tokens": "demos.max_new_tokens",
          "do_sample": "demos.do_sample", "top_k": "demos.top_k", "scorer": "demos.scorer",
          "demo_test_fraction": "demos.test_fraction", "head": "reward_model.head",
          "pooling": "reward_model.pooling", "num_layers_unfrozen":
          "reward_model.num_layers_unfrozen", "loss": "train.loss.name",
          "margin": "train.loss.margin", "reward_l2": "train.loss.reward_l2",
          "lr": "train.learning_rate", "batch_size": "train.batch_size",
          "epochs": "train.epochs", "seeds": "train.num_seeds", "threshold": "train.threshold"}
CONFIG = config_flags.ConfigSpec(IRLRunConfig, IRLRunConfig(), aliases=(
    *(Alias(name, (name,)) for name in (
        "policy_model", "model", "dataset", "prompt_column", "prompt_split",
        "prompt_test_fraction", "prompt_seed", "remat", "dtype")),
    *(Alias(flag, (path,)) for flag, path in _SHORT.items() if flag != "backbone"),
    Alias("backbone", ("reward_model.base_model",), lambda v: v or BASE),
    Alias("max_length", ("demos.max_length", "reward_model.max_length")),
    Alias("seed", ("train.seed", "demos.seed")),
    *parallel_flags.mesh_aliases()))
config_flags.define(CONFIG)
# The training settings are validated by IRLTrainConfig, whose names map to these flags.
FLAG_NAMES = {f"IRLTrainConfig.{field}": f"--{flag}" for field, flag in (
    ("learning_rate", "lr"), ("batch_size", "batch_size"), ("epochs", "epochs"),
    ("num_seeds", "seeds"), ("seed", "seed"), ("threshold", "threshold"))}
FLAG_NAMES.update({f"reward model field '{name}'": f"--{name}" for name in (
    "head", "pooling", "num_layers_unfrozen", "max_length")})
FLAG_NAMES.update({f"demos field '{name}'": f"--{flag}" for name, flag in (
    ("num_samples", "num_samples"), ("max_new_tokens", "max_new_tokens"),
    ("test_fraction", "demo_test_fraction"))})
FLAG_NAMES.update({"'prompt_column'": "--prompt_column",
                   "prompt data field 'prompt_column'": "--prompt_column"})
# Top-level entries this launcher writes into --workdir (what --overwrite may remove).
OUTPUTS = ("demos", "checkpoints", "irl_metrics.json", "irl_metrics.jsonl", "tensorboard",
           "reward_models", "test_rewards.npy", "train_rewards.npy", "epoch0.json",
           runs.RUN_CONFIG_FILE)


def demos_path(config: IRLRunConfig, workdir: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(config.demos_folder) if config.demos_folder else workdir / "demos"


def demo_config(config: IRLRunConfig) -> DemoConfig | None:
    """The demonstration settings; None when only a demonstrations folder is given (read,
    not built).

    The mode follows the settings, not what exists on disk, so that a rerun of the same
    command has the same settings after its first run built the demonstrations.
    """
    return None if config.demos_folder and not config.policy_model else config.demos


def given_demos(config: IRLRunConfig) -> pathlib.Path | None:
    """The ``--demos`` folder when it holds demonstrations (read, not built); else None."""
    path = pathlib.Path(config.demos_folder).expanduser() if config.demos_folder else None
    return path if path is not None and (path / "dataset_dict.json").is_file() else None


def irl_manifest(config: IRLRunConfig, rm_config: RewardModelConfig) -> runs.Manifest:
    """Settings and inputs of this IRL run: read demonstrations, or what builds them.

    A ``--demos`` folder is an input by content; while one that this run builds does not
    exist yet, it is None (:func:`record_built_demos` records it once built).
    """
    demos = demo_config(config)
    settings = {"train": train_settings(config.train), "reward_model": rm_config, "demos": demos,
                "dtype": config.dtype}
    inputs = {"backbone": rm_config.base_model}
    if demos is None:
        inputs["demos"] = config.demos_folder
    else:
        settings["prompts"] = {"split": config.prompt_split, "column": config.prompt_column,
                               "test_fraction": config.prompt_test_fraction,
                               "seed": config.prompt_seed}
        inputs.update(policy_model=config.policy_model or None, base_model=config.model or None,
                      prompts=config.dataset or None)
        if config.demos_folder:
            inputs["demos"] = given_demos(config)
    return runs.Manifest.build("irl", settings, inputs)


def run_inputs(config: IRLRunConfig, rm_config: RewardModelConfig) -> tuple[str, ...]:
    """The paths this run reads (what ``--overwrite`` must not remove); not the
    ``--workdir/demos`` that the run builds itself."""
    return tuple(p for p in (config.demos_folder, config.policy_model, config.model,
                             config.dataset, rm_config.base_model) if p)


def _build_only(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in BUILD_ONLY)


def given_build_flags() -> list[str]:
    """The flags on the command line that only building demonstrations reads."""
    names = [f"--{a.flag}" for a in CONFIG.aliases
             if FLAGS[a.flag].present and all(map(_build_only, a.paths))]
    overrides = FLAGS["config"].override_values if "config" in FLAGS else {}
    return names + [f"--config.{path}" for path in overrides if _build_only(path)]


def _built_here(manifest: runs.Manifest, workdir: str) -> str | None | bool:
    """The ``--demos`` content that the run in ``workdir`` recorded when it built the
    demonstrations from the same policy, base model, prompts and settings (None: not yet
    built); False when ``workdir`` holds no such run.
    """
    try:
        marker = runs.read_marker(pathlib.Path(workdir).expanduser())
    except (runs.RunFolderError, OSError):
        return False
    if not marker or marker.get("kind") != manifest.kind or manifest.settings["demos"] is None:
        return False
    inputs, settings = marker.get("inputs") or {}, marker["settings"]
    same = all(inputs.get(k) == manifest.inputs.get(k)
               for k in ("policy_model", "base_model", "prompts")) and \
        all(settings.get(k) == manifest.settings.get(k) for k in ("demos", "prompts"))
    return inputs.get("demos") if same else False


def _building_into(path: pathlib.Path, workdir: str) -> bool:
    """The run in ``workdir`` (same settings, demonstrations not yet recorded) was building
    into ``path``: killed between saving them and recording their content."""
    try:
        saved = json.loads((pathlib.Path(workdir).expanduser() / runs.RUN_CONFIG_FILE)
                           .read_text())
        return bool(saved.get("demos_folder")) and \
            pathlib.Path(saved["demos_folder"]).expanduser().resolve() == path.resolve()
    except (OSError, ValueError, AttributeError):
        return False


def check_given_demos(config: IRLRunConfig, manifest: runs.Manifest,
                      workdir: str) -> runs.Manifest:
    """An existing ``--demos`` folder is read as it is: flags that would build it are an
    error (a config file's settings: a warning), unless ``workdir`` holds the run that built
    it with these settings (a rerun or ``--resume``).

    Returns the manifest to open ``workdir`` with: ``manifest``, or, when the run there
    was killed after building the folder but before recording its content, the same
    without that content (:func:`record_built_demos` records it again).

    Raises:
      ConfigError: naming the flags that would be ignored, or the folder changed since
        the run in ``workdir`` built it.
    """
    path = given_demos(config)
    if path is None:
        return manifest
    built = _built_here(manifest, workdir)
    if built == manifest.inputs["demos"]:
        return manifest
    if built is None and _building_into(path, workdir):
        return dataclasses.replace(manifest, inputs={**manifest.inputs, "demos": None})
    ignored = given_build_flags()
    if built and ignored:
        raise ConfigError(
            f"--demos '{config.demos_folder}' changed since the run in '{workdir}' built it "
            f"(content {built} → {manifest.inputs['demos']}); pass a new --demos folder to "
            f"build demonstrations again, or drop {', '.join(ignored)} to read it as it is "
            "(in a new --workdir)")
    if ignored:
        raise ConfigError(
            f"--demos '{config.demos_folder}' already holds demonstrations, which are read as "
            f"they are: {', '.join(ignored)} would be ignored; drop "
            f"{'it' if len(ignored) == 1 else 'them'} to read the folder, or pass a new "
            "--demos folder to build demonstrations in")
    if config.policy_model:
        log.warning("--demos '%s' already holds demonstrations: read as they are, not built "
                    "from the policy model with the config's demonstration settings",
                    config.demos_folder)
    return manifest


def record_built_demos(config: IRLRunConfig, folder: runs.RunFolder) -> None:
    """Records the content of a ``--demos`` folder this run has just built in its marker."""
    if not config.demos_folder or demo_config(config) is None:
        return
    fingerprint = runs.input_fingerprint(given_demos(config))
    folder.keep_on_error = True  # a failure from here on keeps the marker naming them
    if folder.manifest.inputs.get("demos") != fingerprint:
        folder.manifest = dataclasses.replace(
            folder.manifest, inputs={**folder.manifest.inputs, "demos": fingerprint})
        folder.record()


def load_or_build_demos(config: IRLRunConfig, workdir: pathlib.Path, mesh):
    from jaxirl.irl.demos import load_demos
    from jaxirl.pipeline.irl_stage import DemosStageConfig, run_demos

    path = demos_path(config, workdir)
    if (path / "dataset_dict.json").is_file():
        return load_demos(path)
    if not (config.policy_model and config.model and config.dataset):
        raise ConfigError(f"no demonstrations at '{path}': pass an existing --demos folder, or "
                          "--policy_model, --model and --dataset to build them")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DataError(f"--demos '{path}' exists and is not a demonstrations folder (no "
                        "dataset_dict.json); pass a new folder to build them in")
    from jaxirl.data.prompts import PromptDataConfig, load_prompts

    split_all = config.prompt_split == "all"
    splits = load_prompts(PromptDataConfig(
        path=config.dataset, prompt_column=config.prompt_column, reference_column=None,
        test_fraction=0.0 if split_all else config.prompt_test_fraction, seed=config.prompt_seed))
    prompts = (splits.train if split_all else getattr(splits, config.prompt_split)).prompts
    return run_demos(DemosStageConfig(config.policy_model, config.model, config.demos,
                                      config.dtype), prompts, path, progress=FLAGS.progress,
                     mesh=mesh)


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    refuse_resume_with_overwrite(FLAGS.resume, FLAGS.overwrite)  # before anything is read
    # Validate every setting before any model is loaded or text generated.
    config = config_flags.resolve(CONFIG.example)
    if config_flags.printed(config):
        return
    start_launcher(argv, parallel_flags.distributed_config(), remat=config.remat)
    from jaxirl.irl.train import METRICS_FILE
    from jaxirl.pipeline.irl_stage import IRLStageConfig, run_irl

    mesh = parallel.make_mesh(config.mesh)
    parallel.check_rows(config.train.batch_size, mesh, f"--batch_size {config.train.batch_size}")
    rm_config = config.reward_model
    if rm_config.base_model == BASE:
        if not config.model:
            raise ConfigError("--backbone (or --model) must name the reward model's GPT-NeoX "
                              "folder")
        rm_config = dataclasses.replace(rm_config, base_model=config.model)
    manifest = check_given_demos(config, irl_manifest(config, rm_config), FLAGS.workdir)
    # Demonstrations given with --demos are an input, not an output, even inside --workdir.
    outputs = tuple(o for o in OUTPUTS if o != "demos" or not config.demos_folder)
    folder = runs.open_run(FLAGS.workdir, manifest, outputs, resume=FLAGS.resume,
                           overwrite=FLAGS.overwrite, keep=run_inputs(config, rm_config))
    if folder.finished:
        print(f"nothing to do: '{folder.path}' already holds this finished run "
              f"({METRICS_FILE}; --overwrite reruns it)")
        return
    workdir = folder.path
    with folder.cleanup_on_error():
        if parallel.is_main_process():
            runs.save_run_config(config, workdir)
        demos = load_or_build_demos(config, workdir, mesh)
        record_built_demos(config, folder)
        irl = run_irl(IRLStageConfig(rm_config, config.train, config.dtype, config.remat), demos,
                      workdir, resume=FLAGS.resume, progress=FLAGS.progress, mesh=mesh)
    if not parallel.is_main_process():
        return
    history = irl.result.history
    spread = history[-1]["spread"] if history else {}
    summary = {k: f"{spread[k]['mean']:.3f} ± {spread[k]['std']:.3f}"
               for k in ("accuracy", "f1", "roc_auc", "pearson_correlation",
                         "pairwise_accuracy") if k in spread}
    folder.finish()
    print(json.dumps({"heldout": summary, "train_pairs": irl.train_pairs,
                      "test_pairs": irl.test_pairs, "workdir": str(workdir)},
                     indent=2, ensure_ascii=False))


def console_main() -> None:
    """The ``jaxirl-irl`` console script."""
    run(main, config_flags.prepare)


if __name__ == "__main__":
    console_main()
