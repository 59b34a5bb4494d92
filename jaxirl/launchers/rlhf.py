"""RLHF a GPT-NeoX policy with PPO against a toxicity reward.

    python experiments/rlhf.py                                  # embedded default, profanity reward
    python experiments/rlhf.py --preset pythia70m   # the paper's run: Pythia-70M, Jigsaw, RoBERTa
    python experiments/rlhf.py --reward learned:runs/irl/reward_models/seed_0   # a learned reward model
    python experiments/rlhf.py --config.ppo.lr=1e-5 --config.prompts.test_fraction=0.1
    python experiments/rlhf.py --resume                          # continue the last checkpoint

The settings are one :class:`~jaxirl.pipeline.rlhf_stage.RLHFRunConfig`: a preset
(:data:`PRESETS`: PPO, prompt data, evaluation) or ``--config_file``, then the short flags
(every PPO hyperparameter among them), then ``--config.<field>`` overrides. The resolved
config is saved as ``--workdir/run_config.json``. ``--workdir`` must be new or empty, or
hold a run of the same settings and inputs: finished (a rerun does nothing) or unfinished
(continued with ``--resume``). ``--overwrite`` replaces a jaxirl run there.
"""

import dataclasses
import json

from absl import flags

from jaxirl import parallel, runs
from jaxirl.cli import one_line_errors, refuse_resume_with_overwrite, run, start_launcher
from jaxirl.data.prompts import PAPER_DATASET, PromptDataConfig
from jaxirl.launchers import config_flags, parallel_flags
from jaxirl.launchers.choices import (
    DTYPE_NAMES,
    ENUMS,
    REWARD_KINDS,
    SCORER_KINDS,
    define_spec,
)
from jaxirl.launchers.config_flags import Alias
from jaxirl.models.gpt_neox import ATTENTION_IMPLS
from jaxirl.pipeline.rlhf_stage import (
    OUTPUTS,
    RLHFRunConfig,
    check_spec_paths,
    run_manifest,
    run_rlhf,
)
from jaxirl.ppo.config import PRESETS as PPO_PRESETS
from jaxirl.ppo.config import PPOConfig

# Stands for the embedded default's model and prompts (built or read from the user cache).
EMBEDDED = "<embedded default>"
_EMBEDDED = RLHFRunConfig(model=EMBEDDED, prompts=PromptDataConfig(path=EMBEDDED,
                                                                   max_prompt_tokens=64),
                          num_iterations=40)
_ROBERTA = "roberta:s-nlp/roberta_toxicity_classifier"
# One per PPO preset: on the embedded default (its model and prompts), and the paper's
# runs (as the study's paper70m / paper410m presets; the weights and data must be in reach).
PRESETS = {name: dataclasses.replace(_EMBEDDED, ppo=ppo) for name, ppo in PPO_PRESETS.items()}
# The presets that set the evaluation's scorer (the others take it from the reward).
SCORER_PRESETS = frozenset({"pythia70m", "pythia410m"})
for _name, _model, _prompt_tokens in (("pythia70m", "EleutherAI/pythia-70m", 896),
                                      ("pythia410m", "EleutherAI/pythia-410m", 1920)):
    PRESETS[_name] = dataclasses.replace(
        PRESETS[_name], model=_model, reward=_ROBERTA, toxicity_scorer=_ROBERTA,
        num_iterations=100, prompts=PromptDataConfig(path=PAPER_DATASET,
                                                     max_prompt_tokens=_prompt_tokens,
                                                     split_method="sklearn"))

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "default", sorted(PRESETS), "Settings preset (PPO, prompt data, "
                  "evaluation).")
flags.DEFINE_string("workdir", "runs/rlhf", "Checkpoints, metrics.jsonl, summary.json, policy/.")
flags.DEFINE_bool("resume", False, "Continue the unfinished run in --workdir (same settings).")
flags.DEFINE_bool("overwrite", False, "Replace the jaxirl run in --workdir (only its own files).")
# Short flags of RLHFRunConfig fields; unset: the preset's (or --config_file's) value.
flags.DEFINE_string("model", None, f"HF folder or hub id of the base policy ('' or '{EMBEDDED}': "
                    "the embedded default).")
flags.DEFINE_string("dataset", None, "Prompt data: hub id or local json/jsonl/csv/parquet "
                    f"('' or '{EMBEDDED}': the embedded default's prompts; config.prompts.path).")
flags.DEFINE_string("prompt_column", None, "Column holding the prompts.")
flags.DEFINE_string("reference_column", None,
                    "Column of reference outputs for the reward baseline; 'none' for no baseline.")
flags.DEFINE_float("test_fraction", None, "Held-out share of the prompts, in [0, 1).",
                   lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_integer("max_prompt_tokens", None, "Prompt token budget (left-truncated).",
                     lower_bound=1)
define_spec("reward", None, REWARD_KINDS, "The PPO reward: profanity | roberta[:PATH] | "
            "learned:PATH | ensemble:PATH | linear:PATH.")
flags.DEFINE_integer("num_iterations", None, "PPO iterations (rollout + update each).",
                     lower_bound=1)
flags.DEFINE_bool("remat", None, "Recompute each block's activations in the backward pass "
                  "(less memory on long sequences).")
flags.DEFINE_enum("attention", None, list(ATTENTION_IMPLS), "Attention kernel: auto (row-by-row "
                  "on CPU, jax.nn.dot_product_attention elsewhere), rows, xla or cudnn.")
define_spec("toxicity_scorer", None, SCORER_KINDS, "Ground-truth scorer of the evaluation "
            "(default: the preset's or --config_file's, RoBERTa in pythia70m/pythia410m; "
            "else the reward when it is a scorer, else profanity).")
flags.DEFINE_integer("save_every", None, "Checkpoint every K iterations.", lower_bound=1)
flags.DEFINE_bool("export", None, "Export the trained policy to --workdir/policy as an HF folder.")
flags.DEFINE_integer("eval_prompts", None, "Held-out prompts to sample before and after training "
                     "(0: no evaluation).", lower_bound=0)
flags.DEFINE_integer("eval_samples_per_prompt", None,
                     "Continuations sampled per held-out prompt (more: less noisy toxicity).",
                     lower_bound=1)
flags.DEFINE_integer("seed", None, "PPO seed (config.ppo.seed).", lower_bound=0)
flags.DEFINE_enum("dtype", None, DTYPE_NAMES, "Matmul compute dtype "
                  "(parameters, optimizer state, log-probs and losses stay float32).")
# Every scalar PPOConfig field is a flag too.
_PPO_FLAGS = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool}
for _field in dataclasses.fields(PPOConfig):
    _kind = _field.type.removesuffix(" | None")
    if f"PPOConfig.{_field.name}" in ENUMS:
        _none = "; 'none' = None" if _field.type.endswith(" | None") else ""
        flags.DEFINE(ENUMS[f"PPOConfig.{_field.name}"], _field.name, None,
                     f"PPO {_field.name} (config.ppo.{_field.name}{_none}).")
    elif _field.name != "seed" and _kind in ("int", "float", "bool"):
        _PPO_FLAGS[{"int": int, "float": float, "bool": bool}[_kind]](
            _field.name, None, f"PPO {_field.name} (config.ppo.{_field.name}).")
_PPO_SHORT = [f.name for f in dataclasses.fields(PPOConfig) if f.name in FLAGS and f.name != "seed"]
_PROMPT_SHORT = {"prompt_column": "prompt_column",
                 "test_fraction": "test_fraction", "max_prompt_tokens": "max_prompt_tokens"}
CONFIG = config_flags.ConfigSpec(RLHFRunConfig, _EMBEDDED, aliases=(
    Alias("model", ("model",), lambda v: v or EMBEDDED),
    Alias("dataset", ("prompts.path",), lambda v: v or EMBEDDED),
    *(Alias(name, (name,)) for name in (
        "reward", "num_iterations", "remat", "attention", "toxicity_scorer", "save_every",
        "export", "eval_prompts", "eval_samples_per_prompt", "dtype")),
    *(Alias(flag, (f"prompts.{field}",)) for flag, field in _PROMPT_SHORT.items()),
    Alias("reference_column", ("prompts.reference_column",),
          lambda v: None if v.lower() == "none" else v),
    *(Alias(name, (f"ppo.{name}",)) for name in (*_PPO_SHORT, "seed")),
    *parallel_flags.mesh_aliases()))
config_flags.define(CONFIG)
# Library names of settings -> this launcher's flags, for error messages.
FLAG_NAMES = {name: f"--{f.name}" for f in dataclasses.fields(PPOConfig)
              for name in (f"PPOConfig field '{f.name}'", f"PPOConfig.{f.name}")}
FLAG_NAMES.update({f"RLHFRunConfig.{f.name}": f"--{f.name}"
                   for f in dataclasses.fields(RLHFRunConfig)})
FLAG_NAMES.update({"reward 'learned:PATH'": "--reward learned:PATH",
                   "reward 'ensemble:PATH'": "--reward ensemble:PATH",
                   "prompt data field 'prompt_column'": "--prompt_column",
                   "'prompt_column'": "--prompt_column",
                   "'reference_column'": "--reference_column",
                   # The flag takes 'none' for no baseline, not Python's None.
                   "'reference_column', or None": "--reference_column, or 'none'",
                   "prompt data field 'test_fraction'": "--test_fraction"})


def evaluation_scorer(reward: str, scorer: str | None) -> str:
    """The evaluation's scorer: the flag, else the reward when it is a ground-truth scorer."""
    if scorer:
        return scorer
    return reward if reward.split(":", 1)[0] in SCORER_KINDS else "profanity"


def default_model_and_prompts() -> tuple[str, str]:
    from jaxirl.default.build import PROMPTS_FILE, ensure_default_model

    folder = ensure_default_model()
    return str(folder), str(folder / PROMPTS_FILE)


def config_from_flags() -> RLHFRunConfig:
    """The preset or --config_file with the flags applied (an :data:`EMBEDDED` model or
    prompts: filled in by :func:`with_default_model`).

    The evaluation's scorer is the flag's, else the config file's, else the preset's
    (:data:`SCORER_PRESETS`); only a preset that sets none takes it from the reward.
    """
    config = config_flags.resolve(PRESETS[FLAGS.preset])
    if config_flags.given("toxicity_scorer") or FLAGS.preset in SCORER_PRESETS:
        return config
    return dataclasses.replace(config, toxicity_scorer=evaluation_scorer(config.reward, None))


def with_default_model(config: RLHFRunConfig) -> RLHFRunConfig:
    """``config`` with an :data:`EMBEDDED` (or empty) model or prompt path filled in."""
    unset = ("", EMBEDDED)
    if config.model not in unset and config.prompts.path not in unset:
        return config
    model, dataset = default_model_and_prompts()
    prompts = dataclasses.replace(
        config.prompts, path=dataset if config.prompts.path in unset else config.prompts.path)
    return dataclasses.replace(config, model=model if config.model in unset else config.model,
                               prompts=prompts)


@one_line_errors(flag_names=FLAG_NAMES)
def main(argv):
    refuse_resume_with_overwrite(FLAGS.resume, FLAGS.overwrite)  # before anything is read
    config = config_from_flags()
    if config_flags.printed(config):
        return
    start_launcher(argv, parallel_flags.distributed_config(), remat=config.remat)
    config = with_default_model(config)
    check_spec_paths(config)  # before the run folder is opened
    folder = runs.open_run(FLAGS.workdir, run_manifest(config),
                           (*OUTPUTS, runs.RUN_CONFIG_FILE), resume=FLAGS.resume,
                           overwrite=FLAGS.overwrite,  # never removing an input
                           keep=(config.model, config.prompts.path, config.reward,
                                 config.toxicity_scorer))
    if folder.finished:
        print(f"nothing to do: '{folder.path}' already holds this finished run "
              "(summary.json; --overwrite reruns it)")
        return
    with folder.cleanup_on_error():
        if parallel.is_main_process():
            runs.save_run_config(config, folder.path)
        summary = run_rlhf(config, FLAGS.workdir, resume=FLAGS.resume)
    folder.finish()
    print(json.dumps(summary, indent=2))


def console_main() -> None:
    """The ``jaxirl-rlhf`` console script."""
    run(main, config_flags.prepare)


if __name__ == "__main__":
    console_main()
