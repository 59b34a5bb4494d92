"""The whole study, stage by stage: RLHF → demonstrations → IRL → re-RLHF → interpretability → report.

Each stage runs through :class:`~jaxirl.pipeline.stages.StageRunner`, so it is
keyed by its configuration (and by the folders of the stages it reads), skipped
when finished and resumed from its own checkpoints when killed.

On a one-device CPU run some stages run in background threads beside the main chain
(:class:`BackgroundLane`): the extra PPO seeds (``rlhf_seeds``, then
``rlhf_learned_seeds``, each seed in a thread of its own) in one chain, and the
interpretability stage (started beside IRL, whose rewards it waits for at its end),
then ``evaluate``, in another. The main chain alone uses about one core of two (small
XLA programs and host work), and a stage's result does not depend on what runs
beside it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import pathlib
import threading
from typing import Any

import numpy as np
from tqdm import tqdm

from jaxirl import parallel, runs
from jaxirl.data.prompts import SPLIT_METHODS, PromptDataConfig, PromptSet, load_prompts
from jaxirl.default.build import (
    PROMPTS_FILE,
    DefaultModelSpec,
    default_model_dir,
    ensure_default_model,
)
from jaxirl.default.corpus import OFFENSIVE_WORDS
from jaxirl.errors import ConfigError
from jaxirl.interp.config import InterpConfig
from jaxirl.interp.sae import SAEConfig
from jaxirl.irl.demos import DemoConfig, load_demos
from jaxirl.irl.ensemble import ensemble
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.irl.reward_model import RewardModelConfig
from jaxirl.irl.train import IRLTrainConfig
from jaxirl.models import hf_files
from jaxirl.models.mixed_precision import parse_dtype
from jaxirl.parallel import MeshConfig
from jaxirl.pipeline.irl_stage import (
    DemosStageConfig,
    IRLStageConfig,
    run_demos,
    run_evaluate,
    run_irl,
)
from jaxirl.pipeline.methods import MethodsConfig
from jaxirl.pipeline.reward_specs import check_spec_path, make_scorer
from jaxirl.pipeline.rlhf_stage import RLHFRunConfig, run_rlhf
from jaxirl.pipeline.stages import (
    SelectionDone,
    StageError,
    StageResult,
    StageRunner,
    usable_cpus,
)
from jaxirl.ppo.config import PPOConfig, get_preset

# What a finished default-model build holds (ensure_default_model's test for one).
_BUILD_SUMMARY = "build_summary.json"

STAGES = ("prepare", "rlhf", "demos", "irl", "evaluate", "rlhf_learned", "rlhf_seeds",
          "rlhf_learned_seeds", "interp", "methods", "report")


# Which prompts the demonstrations hold out (StudyConfig.demos_split).
DEMOS_SPLITS = ("own", "ppo")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Every setting of the study; the defaults are the embedded-default study.

    Attributes:
      model: base model folder or hub id ("" = build the embedded default).
      tokenizer: the tokenizer's folder or hub id when ``model`` has none of its own or
        was trained with another's ("" = the model folder's): the reference's SFT starts
        (``lomahony/eleuther-pythia70m-hh-sft``) use ``EleutherAI/pythia-70m``'s. The
        prepare stage puts it beside links to the model's files
        (:func:`jaxirl.models.model_with_tokenizer`), and every stage reads that folder.
      dataset: prompt data ("" = the model folder's ``prompts.jsonl``: the embedded
        default's prompts; a model without that file needs a dataset).
      prompt_column, reference_column: prompt data columns (reference None: no baseline).
      max_prompt_tokens: prompt budget.
      split_method: the prompts' train/held-out split (``PromptDataConfig.split_method``):
        ``"datasets"``, or ``"sklearn"`` for the reference code's split (the paper presets).
      demos_split: which prompts the demonstrations hold out: ``"own"``, a share drawn
        with ``demos.seed`` (the re-RLHF evaluation's prompts, held out from PPO, then
        mostly give IRL training pairs), or ``"ppo"``, the prompts PPO holds out (held out
        from both; see BUILD_NOTES.md).
      ground_truth: the true reward's scorer (``profanity`` | ``roberta[:PATH]``).
      ppo_preset: PPO hyperparameters for every RLHF run (a name of ``jaxirl.ppo.PRESETS``).
      ppo: PPO hyperparameters that replace the preset's (None: the preset's).
      rlhf_iterations: PPO iterations of each RLHF run.
      eval_prompts: held-out prompts sampled to measure toxicity.
      eval_samples_per_prompt: continuations sampled per held-out prompt.
      demos: demonstration settings (the paper: greedy, 100 tokens).
      demos_per_prompt: sampled demonstration pairs per prompt (1 when greedy).
      reward_model: the learned reward's architecture.
      irl: IRL training settings (loss, lr, batch, epochs, seeds).
      learned_reward_seed: which seed's reward model re-trains a fresh policy.
      rlhf_seeds: PPO seeds of the re-RLHF comparison: seeds ``ppo.seed + i``, i <
        rlhf_seeds, each RLHF-trained with the learned and with the true reward (seed
        ``ppo.seed``'s true-reward run is the ``rlhf`` stage, the demonstrations' expert).
      interp: interpretability settings.
      interp_train_pairs: training pairs read by the interpretability stage (None: all).
      default_model: recipe of the embedded default (used when ``model`` is "").
      mesh: the device mesh every stage splits its batches over (``data × fsdp``).
      methods: the paired method comparison (``--preset methods``; None: skipped).
      dtype: compute dtype of every model's matmuls (``float32`` or ``bfloat16``).
    """

    model: str = ""
    tokenizer: str = ""
    dataset: str = ""
    prompt_column: str = "prompt"
    reference_column: str | None = "original_output"
    max_prompt_tokens: int = 64
    split_method: str = "datasets"
    demos_split: str = "own"
    ground_truth: str = "profanity"
    ppo_preset: str = "default"
    ppo: PPOConfig | None = None
    rlhf_iterations: int = 30
    eval_prompts: int = 200
    # The default has 61 held-out prompts: with one sample each, the re-RLHF ratio's
    # sampling noise alone spans 0.75-1.18 (BUILD_NOTES.md); 16 cost about 2 s per model.
    eval_samples_per_prompt: int = 16
    # Sampled, not greedy: greedy continuations of the tiny default are almost never
    # toxic, which leaves IRL nothing to separate (see BUILD_NOTES.md).
    demos: DemoConfig = DemoConfig(do_sample=True, top_k=30)
    # Sampled demonstrations per prompt (the pairs of one prompt stay in one split): 20
    # give 4,860 training pairs in about 40 s, and every IRL metric gained (BUILD_NOTES.md).
    demos_per_prompt: int = 20
    # The reference's head on the last real token, with the top block trainable.
    reward_model: RewardModelConfig = RewardModelConfig(base_model="<base>", head="reference",
                                                        num_layers_unfrozen=1)
    # Accuracy/F1 threshold the learned reward at the share of texts the ground truth
    # calls toxic ("match_rate"); the report also gives the reference's threshold 0.
    # The expert-vs-base discriminator loss: max-margin ranks as well, but its Pearson
    # with the true reward falls after 2 epochs; the sweep is in BUILD_NOTES.md.
    irl: IRLTrainConfig = IRLTrainConfig(loss=IRLLossConfig("discriminator"),
                                         learning_rate=3e-5, batch_size=2, epochs=4,
                                         num_seeds=5, threshold="match_rate")
    learned_reward_seed: int = 0
    # PPO's seed spread in the re-RLHF share is about ±4 points (BUILD_NOTES.md); one
    # seed cannot show it. Each extra seed adds two PPO runs.
    rlhf_seeds: int = 3
    # Max-pooled codes over whole texts (a toxic word fires at one token, which a mean
    # dilutes), all 4 blocks and dictionaries up to 8x: chosen by prompt-grouped
    # cross-validation on the training texts only (BUILD_NOTES.md).
    interp: InterpConfig = InterpConfig(num_layers=4, dict_multiples=(1, 2, 8), pooling="max",
                                        max_tokens=128)
    # Training pairs whose texts train the SAEs and the IRM (None: all); held-out pairs
    # are all used. It bounds the stage's time as demonstrations grow.
    interp_train_pairs: int | None = 800
    default_model: DefaultModelSpec = DefaultModelSpec()
    mesh: MeshConfig = MeshConfig()
    methods: MethodsConfig | None = None
    dtype: str = "float32"

    def __post_init__(self):
        if isinstance(self.rlhf_seeds, bool) or not isinstance(self.rlhf_seeds, int) or \
                self.rlhf_seeds < 1:
            raise ConfigError(f"StudyConfig.rlhf_seeds must be a positive integer, got {self.rlhf_seeds!r}")
        parse_dtype(self.dtype)
        for name, choices in (("split_method", SPLIT_METHODS), ("demos_split", DEMOS_SPLITS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"StudyConfig.{name} must be one of {choices}, got "
                                  f"{getattr(self, name)!r}")
        # Checked here, not after the IRL stage that would otherwise find it out.
        seed = self.learned_reward_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or \
                not 0 <= seed < self.irl.num_seeds:
            raise ConfigError(f"StudyConfig.learned_reward_seed must lie in [0, "
                              f"{self.irl.num_seeds}) (irl.num_seeds), got {seed!r}")
        if self.methods is not None:
            from jaxirl.pipeline.methods import check_draws

            check_draws(self, self.methods)

    def ppo_config(self) -> PPOConfig:
        """The PPO hyperparameters of every RLHF run: ``ppo``, else the preset's."""
        return self.ppo if self.ppo is not None else get_preset(self.ppo_preset)


_SMOKE_MODEL = dataclasses.replace(
    DefaultModelSpec(), hidden_size=64, num_hidden_layers=2, intermediate_size=128,
    train=dataclasses.replace(DefaultModelSpec().train, total_steps=80, warmup_steps=5,
                              batch_size=16, seq_len=48))

PRESETS: dict[str, StudyConfig] = {
    "default": StudyConfig(),
    # Minutes-scale check of every stage and artefact (tests, CI): tiny sizes everywhere.
    "smoke": StudyConfig(
        ppo_preset="smoke", rlhf_iterations=2, eval_prompts=16, eval_samples_per_prompt=2,
        demos_per_prompt=3, rlhf_seeds=1,
        demos=DemoConfig(num_samples=48, max_length=40, batch_size=48, do_sample=True, top_k=30),
        irl=IRLTrainConfig(loss=IRLLossConfig("max_margin"), learning_rate=1e-4, batch_size=8,
                           epochs=3, num_seeds=2, threshold="match_rate"),
        interp=InterpConfig(num_layers=1, dict_multiples=(1,),
                            sae=SAEConfig(num_epochs=2, batch_size=128), max_tokens=32,
                            top_k_contexts=5),
        default_model=_SMOKE_MODEL),
}
# The paper's setups (need the weights and data locally or through the hub).
PRESETS["paper70m"] = StudyConfig(
    model="EleutherAI/pythia-70m", dataset="jaredjoss/jigsaw-long-2000",
    ground_truth="roberta:s-nlp/roberta_toxicity_classifier", ppo_preset="pythia70m",
    # trlx's max_prompt_length of the reference run: seq_length 1024 - 128 new tokens.
    max_prompt_tokens=896, rlhf_iterations=100, eval_samples_per_prompt=1,
    # The reference's held-out prompts: sklearn's train_test_split(test_size=0.2,
    # random_state=0) of src/train_rlhf.py.
    split_method="sklearn",
    demos=DemoConfig(num_samples=100),
    irl=IRLTrainConfig(loss=IRLLossConfig("max_margin"), learning_rate=1e-4, batch_size=2,
                       epochs=30, num_seeds=5),
    reward_model=RewardModelConfig(base_model="<base>", head="reference",
                                   num_layers_unfrozen=-1))
# The paired comparison of every reward-recovery method (opt-in: it trains 6 losses on 3
# demonstration draws and runs 7 extra PPO runs; see BUILD_NOTES.md for its time).
PRESETS["methods"] = StudyConfig(methods=MethodsConfig())
# The reference's 410M run sets trlx seq_length 10000, i.e. max_prompt_length 9872; Pythia's
# context caps it at 2048 - 128 new tokens.
PRESETS["paper410m"] = dataclasses.replace(
    PRESETS["paper70m"], model="EleutherAI/pythia-410m", ppo_preset="pythia410m",
    max_prompt_tokens=1920,
    demos=DemoConfig(num_samples=200),
    irl=dataclasses.replace(PRESETS["paper70m"].irl, learning_rate=1e-5))


def _prompt_config(config: StudyConfig, dataset: str) -> PromptDataConfig:
    return PromptDataConfig(path=dataset, prompt_column=config.prompt_column,
                            reference_column=config.reference_column,
                            max_prompt_tokens=config.max_prompt_tokens,
                            split_method=config.split_method)


def demo_prompts(config: StudyConfig, dataset: str) -> tuple[list[str], list[str] | None]:
    """The demonstrations' prompts (each repeated ``demos_per_prompt`` times when sampled)
    and the ones they hold out (None: a share drawn with ``demos.seed``)."""
    splits = load_prompts(_prompt_config(config, dataset))
    prompts = (list(splits.train.prompts) + list(splits.test.prompts)) * \
        (config.demos_per_prompt if config.demos.do_sample else 1)
    return prompts, (list(splits.test.prompts) if config.demos_split == "ppo" else None)


def _rlhf(config: StudyConfig, model: str, dataset: str, reward: str, folder: pathlib.Path,
          progress: bool, ppo_seed: int | None = None, export: bool = True,
          eval_before_from: pathlib.Path | None = None) -> dict[str, Any]:
    ppo = config.ppo_config()
    if reward.startswith("linear:"):
        # The Bayesian posterior's linear reward reads the completion alone (its features).
        ppo = dataclasses.replace(ppo, reward_text="response")
    run = RLHFRunConfig(model=model, prompts=_prompt_config(config, dataset), reward=reward,
                        ppo=ppo if ppo_seed is None else dataclasses.replace(ppo, seed=ppo_seed),
                        num_iterations=config.rlhf_iterations, mesh=config.mesh,
                        eval_prompts=config.eval_prompts,
                        eval_samples_per_prompt=config.eval_samples_per_prompt,
                        toxicity_scorer=config.ground_truth, export=export, dtype=config.dtype)
    return run_rlhf(run, folder, resume=True, progress=progress, eval_before_from=eval_before_from)


def extra_ppo_seeds(config: StudyConfig) -> list[int]:
    """PPO seeds of the re-RLHF comparison beyond the preset's own."""
    first = config.ppo_config().seed
    return [first + i for i in range(1, config.rlhf_seeds)]


def _rlhf_seeds(config, model, dataset, reward, folder, progress,
                eval_before_from: pathlib.Path | None = None,
                side_by_side: bool = False) -> dict[str, Any]:
    # One PPO run per extra seed, each in its own folder (resumable); no policy export.
    # eval_before_from: the true-reward seeds' stage folder, whose evaluations before
    # training the learned-reward runs of the same seeds reuse. side_by_side: the runs
    # in threads of their own (a run does not depend on what runs beside it).
    seeds = extra_ppo_seeds(config)

    def one(seed):
        _rlhf(config, model, dataset, reward, folder / f"seed_{seed}", progress, seed, False,
              eval_before_from and eval_before_from / f"seed_{seed}")
        return str(seed), str(folder / f"seed_{seed}")

    if not side_by_side or len(seeds) < 2:
        return {"runs": dict(map(one, seeds))}
    with concurrent.futures.ThreadPoolExecutor(len(seeds),
                                               thread_name_prefix="jaxirl-seed") as pool:
        return {"runs": dict(pool.map(one, seeds))}


class BackgroundLane:
    """Runs stages in daemon threads beside the main chain; ``result`` re-raises their errors.

    Stages submitted to one ``chain`` run one after another; chains run side by side. A
    stage can wait for a value the main chain publishes later (:meth:`wait_for`), so it
    can start before all its inputs exist.

    Daemons, so that an error or Ctrl-C in the main chain ends the process at once:
    the interrupted stage has no ``DONE.json`` and resumes from its checkpoints.
    """

    def __init__(self):
        # name -> (finished, {"result" | "error": ...}); submitted from one thread only.
        self._jobs: dict[str, tuple[threading.Event, dict]] = {}
        self._last: dict[str, threading.Event] = {}  # chain -> its last job's event
        self._values: dict[str, tuple[threading.Event, dict]] = {}
        self._stopped = False
        self._abandoned = False

    def stop(self) -> None:
        """Starts no further stage and waits for the running ones to end."""
        self._stopped = True
        self.abandon()
        for done, _ in list(self._jobs.values()):
            done.wait()

    def submit(self, name: str, fn, chain: str = "lane") -> None:
        done, box = threading.Event(), {}
        previous = self._last.get(chain)

        def job():
            if previous is not None:
                previous.wait()
            try:
                if self._stopped:
                    raise StageError(f"stage '{name}' did not start: the study failed")
                box["result"] = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                box["error"] = e
            finally:
                done.set()

        self._jobs[name] = (done, box)
        self._last[chain] = done
        threading.Thread(target=job, name=f"jaxirl-{name}", daemon=True).start()

    def result(self, name: str) -> StageResult:
        done, box = self._jobs[name]
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _slot(self, name: str) -> tuple[threading.Event, dict]:
        return self._values.setdefault(name, (threading.Event(), {}))

    def publish(self, name: str, value: Any) -> None:
        """Hands ``value`` to the stages waiting for ``name``."""
        ready, box = self._slot(name)
        box["value"] = value
        ready.set()

    def abandon(self) -> None:
        """Ends every wait for a value not yet published: the study failed before it."""
        self._abandoned = True
        for ready, _ in list(self._values.values()):
            ready.set()

    def wait_for(self, name: str) -> Any:
        """The value published as ``name``, once it is; StageError once abandoned."""
        ready, box = self._slot(name)
        if self._abandoned:  # set before abandon() listed the slots: it may not have seen this one
            ready.set()
        ready.wait()
        if "value" not in box:
            raise StageError(f"the study failed before '{name}' finished")
        return box["value"]


def background_lane_applies(config: StudyConfig, stages: set[str] | None,
                            until: str | None) -> bool:
    """A second lane helps where one process leaves a core idle: a CPU with 2+ cores and
    a one-device mesh, one process, every stage selected. Accelerators run one at a time."""
    import jax

    return (stages is None and until is None and bool(extra_ppo_seeds(config))
            and jax.default_backend() == "cpu" and jax.process_count() == 1
            and config.mesh.data * config.mesh.fsdp == 1
            and usable_cpus() >= 2)


def stages_never_run(config: StudyConfig, until: str | None = None) -> dict[str, str]:
    """The stages this configuration never runs, each with why."""
    never = {}
    if config.methods is None:
        never["methods"] = "no method comparison: StudyConfig.methods is None; the " \
                           "methods preset sets it"
    if not extra_ppo_seeds(config):
        for name in ("rlhf_seeds", "rlhf_learned_seeds"):
            never[name] = f"StudyConfig.rlhf_seeds is {config.rlhf_seeds}: no extra PPO seeds"
    if until is not None:
        for name in STAGES[STAGES.index(until) + 1:]:
            never.setdefault(name, f"the study stops after '{until}'")
    return never


def _check_reward_model_context(config: StudyConfig) -> None:
    """The learned reward's token budget fits the base model's context: checked before the
    RLHF and demonstration stages, not found out at the IRL stage after them. A hub id
    is not fetched for this (its reward model checks when it is built)."""
    if not config.model:
        name, context = "the embedded default", config.default_model.max_position_embeddings
    else:
        folder = pathlib.Path(os.path.expanduser(config.model))
        if not (folder / "config.json").is_file():
            return
        name = f"'{config.model}'"
        context = hf_files.read_config(folder).get("max_position_embeddings")
    if isinstance(context, int) and config.reward_model.max_length > context:
        raise ConfigError(f"reward model field 'max_length' is {config.reward_model.max_length} "
                          f"but {name} has a {context}-token context (max_position_embeddings): "
                          f"use at most {context}")


def check_study_inputs(config: StudyConfig, stages: set[str] | None = None,
                       until: str | None = None) -> None:
    """ConfigError (one line) for a selected stage this configuration never runs, for
    a model without ``prompts.jsonl`` and no dataset, and for the methods stage in a job
    of several processes, before anything is written."""
    never = stages_never_run(config, until)
    if stages is not None:
        for name in (s for s in STAGES if s in stages and s in never):
            raise ConfigError(f"'{name}' is among the selected stages, but this configuration "
                              f"never runs it ({never[name]}); drop it")
    # The methods stage runs when selected or before a later selected stage (the report).
    reached = stages is None or any(s in STAGES[STAGES.index("methods"):] for s in stages)
    if "methods" not in never and reached:
        from jaxirl.pipeline.methods import check_one_process

        check_one_process()
    check_spec_path(config.ground_truth, "StudyConfig.ground_truth")
    if config.tokenizer:
        if not config.model:
            raise ConfigError("StudyConfig.tokenizer is set but StudyConfig.model is not: the "
                              "embedded default has its own tokenizer")
        local = pathlib.Path(os.path.expanduser(config.tokenizer))
        if not local.is_dir() and not hf_files.looks_like_hub_id(config.tokenizer):
            raise ConfigError(f"StudyConfig.tokenizer '{config.tokenizer}' is neither a folder "
                              "nor a hub id like 'org/name'")
    _check_reward_model_context(config)
    if config.model and not config.dataset and \
            not (pathlib.Path(os.path.expanduser(config.model)) / PROMPTS_FILE).is_file():
        raise ConfigError(f"StudyConfig.model '{config.model}' holds no {PROMPTS_FILE} to "
                          "prompt with; give the prompt data with StudyConfig.dataset")


def run_study(config: StudyConfig, workdir: str | pathlib.Path, stages: set[str] | None = None,
              progress: bool = True, overwrite: bool = False, until: str | None = None,
              preset: str | None = None) -> dict[str, Any]:
    """Runs (or resumes) the study; returns each stage's outputs.

    With ``stages``, stops after the last selected one (later stages are not needed).
    ``overwrite`` first removes every stage folder and the report from ``workdir``
    (never one that holds the model, data or ground-truth scorer the study reads); with
    ``stages``, only the selected stages of this configuration, each just before it runs.
    A selected stage this configuration never runs is an error (:class:`ConfigError`).
    The config is saved as ``workdir/run_config.json`` once the study (or its selected
    stages) finished; a failed run leaves the one there.
    ``until="evaluate"`` stops after the evaluation, as the size sweep does. ``preset``
    names the preset ``config`` came from, for the report.
    """
    check_study_inputs(config, stages, until)
    runner = StageRunner(workdir, selected=stages, overwrite=overwrite,
                         keep=(config.model, config.dataset, config.ground_truth))
    try:
        return _run_locked(config, workdir, runner, stages, progress, until, preset)
    finally:
        runner.run_folder.release()  # held from StageRunner on: one study per workdir


# Environment variables that set a BLAS library's thread count: the user's choice stands.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread():
    """A context in which NumPy's and SciPy's BLAS run on one thread, unless the user set
    their thread count (:data:`BLAS_THREAD_VARIABLES`).

    For the study's background lanes: XLA's work there already fills every core, and the
    host-side linear algebra (probe fits, bootstraps) calls BLAS on small matrices, where
    extra threads only spin and hand off. The default study's interpretability stage,
    rerun alone with ``OPENBLAS_NUM_THREADS=1``, took 2.0-2.5 s less of 37 and about 5
    fewer CPU-seconds in each of 3 pairs of runs. Its results changed in the last bits of
    some float64 sums only, which no longer depend on the machine's core count.
    """
    if any(name in os.environ for name in BLAS_THREAD_VARIABLES):
        return contextlib.nullcontext()
    import scipy.linalg  # noqa: F401 - loads SciPy's own OpenBLAS, so that the limit reaches it
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _run_locked(config: StudyConfig, workdir: str | pathlib.Path, runner: StageRunner,
                stages: set[str] | None, progress: bool, until: str | None,
                preset: str | None) -> dict[str, Any]:
    lane = BackgroundLane() if background_lane_applies(config, stages, until) else None
    with one_blas_thread() if lane is not None else contextlib.nullcontext():
        return _run_with_lanes(config, workdir, runner, stages, progress, until, preset, lane)


def _run_with_lanes(config: StudyConfig, workdir: str | pathlib.Path, runner: StageRunner,
                    stages: set[str] | None, progress: bool, until: str | None,
                    preset: str | None, lane: BackgroundLane | None) -> dict[str, Any]:
    try:
        # On an error, the run that overwrite replaced is put back as it was (interrupted,
        # it waits in .jaxirl-replaced until a rerun finishes; see jaxirl.runs).
        with runner.run_folder.cleanup_on_error():
            try:
                outputs = _run_study(config, workdir, runner, progress, until, preset, lane)
            except SelectionDone:
                outputs = {name: r.outputs for name, r in runner.results.items()}
            except Exception:
                if lane is not None:
                    lane.abandon()  # a stage waiting for IRL's rewards fails, not hangs
                    if runner.run_folder.replaced is not None:
                        lane.stop()  # nothing may write into the workdir while it is put back
                raise
    except Exception:
        runner.put_back()
        raise
    runner.drop_replaced()
    # What --config_file reruns: only once this config's stages ran, so that a refused
    # or failed rerun (another config, a stage not selected) keeps the one that did.
    if parallel.is_main_process():
        runs.save_run_config(config, workdir)
    return outputs


def _run_study(config: StudyConfig, workdir: str | pathlib.Path, runner: StageRunner,
               progress: bool, until: str | None, preset: str | None,
               lane: BackgroundLane | None = None) -> dict[str, Any]:
    from jaxirl.pipeline.report import keep_report, restore_report, run_report

    mesh = parallel.make_mesh(config.mesh)
    progress = progress and parallel.is_main_process()
    # Only a non-default dtype enters the stage keys: float32 studies keep their folders.
    precision = {} if config.dtype == "float32" else {"dtype": config.dtype}
    skipped = (0 if extra_ppo_seeds(config) else 2) + (config.methods is None)
    bar = tqdm(total=len(STAGES) - skipped, desc="study", position=0, disable=not progress,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} stages [{elapsed}<{remaining}]")

    def stage(name, stage_config, fn, stale=None):
        bar.set_description(f"study: {name}")
        result = runner.run(name, stage_config, fn, stale)
        bar.update(1)
        return result

    def lane_stage(name, stage_config, fn, chain="lane"):
        """A stage in a background chain; its name stands for its result until joined."""
        def run():
            result = dataclasses.replace(runner.run(name, stage_config, fn), background=True)
            runner.results[name] = result
            bar.update(1)
            return result

        lane.submit(name, run, chain)
        return name

    def seeds_stage(name, stage_config, reward, eval_before_from=None):
        """The extra PPO seeds: in the background lane (without progress bars, side by
        side) if any."""
        if lane is None:
            return stage(name, stage_config, lambda f: _rlhf_seeds(
                config, base_model, dataset, reward, f, progress, eval_before_from))
        return lane_stage(name, stage_config, lambda f: _rlhf_seeds(
            config, base_model, dataset, reward, f, False, eval_before_from, side_by_side=True))

    def prepare(folder):
        model = config.model or str(ensure_default_model(config.default_model, progress=progress))
        dataset = config.dataset or str(pathlib.Path(model) / PROMPTS_FILE)
        if config.tokenizer:
            import jax

            from jaxirl.models.hf_io import model_with_tokenizer  # transformers: ~2 s

            # Process 0 builds it; with several processes (which need not share the hub
            # cache the links would point into) as a copy.
            if parallel.is_main_process():
                model_with_tokenizer(model, config.tokenizer, folder / "model",
                                     link=jax.process_count() == 1)
            parallel.sync("prepare: the model with its tokenizer")
            model = str(folder / "model")
        return {"model": model, "dataset": dataset}

    def prepared_elsewhere(outputs):
        """Why a finished prepare stage's model cannot be used (None: it can): the cache
        ($JAXIRL_CACHE) moved, the default model was removed from it, or a file the
        tokenizer's folder links to is gone (e.g. a cleared hub cache)."""
        if config.tokenizer:
            recorded = pathlib.Path(str(outputs.get("model", "")))
            gone = [e.name for e in recorded.iterdir() if not e.exists()] \
                if recorded.is_dir() else ["the folder"]
            return f"'{recorded}' lost {', '.join(gone)}" if gone else None
        if config.model:
            return None
        expected = default_model_dir(config.default_model)
        recorded = pathlib.Path(str(outputs.get("model", "")))
        if recorded.resolve() != expected.resolve():
            return f"the default model is now read from '{expected}', not '{recorded}'"
        if not (expected / _BUILD_SUMMARY).is_file():
            return f"the default model '{expected}' is gone"
        return None

    prepare_config = {"model": config.model, "dataset": config.dataset,
                      "default_model": config.default_model if not config.model else None}
    if config.tokenizer:  # only then: the other studies' prepare folders stay
        prepare_config["tokenizer"] = config.tokenizer
    prep = stage("prepare", prepare_config,
                 prepare, prepared_elsewhere).outputs
    base_model, dataset = prep["model"], prep["dataset"]
    seeds = extra_ppo_seeds(config)
    common = {"model": base_model, "dataset": dataset, "preset": config.ppo_preset,
              "iterations": config.rlhf_iterations, "prompt_column": config.prompt_column,
              "reference_column": config.reference_column, "eval_prompts": config.eval_prompts,
              "eval_samples_per_prompt": config.eval_samples_per_prompt,
              "max_prompt_tokens": config.max_prompt_tokens, "ground_truth": config.ground_truth,
              # The rewards read prompt + response since the eighteenth session (the
              # response alone before): a run of either kind keeps its own folders.
              "reward_text": config.ppo_config().reward_text}
    common.update(precision)
    if config.split_method != "datasets":
        common["split_method"] = config.split_method  # only then: default folders stay
    if config.ppo is not None and config.ppo != get_preset(config.ppo_preset):
        common["ppo"] = config.ppo  # only then: the preset's runs keep their folders
    seed_runs = []
    true_seeds = ("rlhf_seeds", {**common, "reward": config.ground_truth, "seeds": seeds},
                  config.ground_truth)
    rlhf = stage("rlhf", {**common, "reward": config.ground_truth},
                 lambda f: _rlhf(config, base_model, dataset, config.ground_truth, f, progress))
    if seeds and lane is not None:
        # It needs only the base model, but starts after rlhf, whose compiled PPO programs
        # it then loads from the cache instead of compiling them a second time beside it.
        seed_runs.append(seeds_stage(*true_seeds))
    expert_model = rlhf.outputs["policy"]

    def demos(folder):
        prompts, held_out = demo_prompts(config, dataset)
        demos_config = dataclasses.replace(config.demos, scorer=config.ground_truth)
        data = run_demos(DemosStageConfig(expert_model, base_model, demos_config, config.dtype),
                         prompts, folder / "demos", progress=progress, mesh=mesh,
                         test_prompts=held_out)
        return {"demos": str(folder / "demos"), "train_pairs": len(data["train"]),
                "test_pairs": len(data["test"])}

    demos_key = {"demos": config.demos, "per_prompt": config.demos_per_prompt,
                 "rlhf": rlhf.folder.name, **precision}
    if config.demos_split != "own":  # only then: the other studies keep their folders
        demos_key["split"] = config.demos_split
    demo = stage("demos", demos_key, demos)
    reward_model_config = dataclasses.replace(config.reward_model, base_model=base_model)
    irl_config = IRLStageConfig(reward_model_config, config.irl, config.dtype)
    irl_key = {"irl": config.irl, "reward_model": reward_model_config,
               "demos": demo.folder.name, "outputs": 2, **precision}
    # The embedded default's offensive words join the feature labels' vocabulary.
    extra_words = OFFENSIVE_WORDS if not config.model else ()

    def irl_test_rewards():
        # The seeds' ensemble: each seed z-scored (its offset and scale are arbitrary). In
        # the lane the interpretability stage starts beside IRL and waits here, at its
        # last comparison, for IRL to finish.
        outputs = lane.wait_for("irl") if lane is not None else irl_result.outputs
        return ensemble(np.load(outputs["test_rewards"]))[0]

    def interp(folder, progress_bars):
        data = load_demos(demo.outputs["demos"])
        train = data["train"]
        if config.interp_train_pairs is not None and len(train) > config.interp_train_pairs:
            train = train.select(range(config.interp_train_pairs))
        train_texts = list(train["expert_text"]) + list(train["base_text"])
        test_texts = list(data["test"]["expert_text"]) + list(data["test"]["base_text"])
        from jaxirl.pipeline.interp_stage import run_interp  # its imports cost ~2 s

        results = run_interp(config.interp, folder, base_model, expert_model, train_texts,
                             test_texts, make_scorer(config.ground_truth),
                             irl_test_rewards=irl_test_rewards, extra_words=extra_words,
                             test_groups=list(data["test"]["prompt"]) * 2, mesh=mesh,
                             progress=progress_bars)
        return {"results": str(folder / "interp_results.json"), "layers": results["layers"]}

    interp_config = {"interp": config.interp, "rlhf": rlhf.folder.name,
                     "train_pairs": config.interp_train_pairs,
                     "demos": demo.folder.name, "irl": runner.folder("irl", irl_key).name,
                     # 4: top contexts rank a feature's texts by their maximum (a
                     # candidate pool of tokens could hold few texts); the labels name
                     # their dictionary size; bootstrap p floors.
                     "version": 4}
    if extra_words != OFFENSIVE_WORDS:
        # The words added to the feature labels' vocabulary: only when they are not the
        # embedded default's, so that the default study keeps its folder name, and an
        # explicit model (even the cached default) gets its own.
        interp_config["extra_words"] = list(extra_words)
    if lane is not None:
        # It needs IRL only for its last comparison: in a chain of its own it runs beside
        # IRL and the PPO seeds, on the core that the lane would leave idle while it
        # waits for IRL (no progress bars: they would interleave with the study's).
        interp_name = lane_stage("interp", interp_config,
                                 functools.partial(interp, progress_bars=False), chain="interp")
    irl_result = stage("irl", irl_key,
                       lambda f: run_irl(irl_config, load_demos(demo.outputs["demos"]), f,
                                         resume=True, progress=progress, mesh=mesh).outputs)
    if lane is not None:
        lane.publish("irl", irl_result.outputs)
    learned_path = pathlib.Path(irl_result.outputs["reward_models"]) / \
        f"seed_{config.irl.seed + config.learned_reward_seed}"
    # The learned-reward runs start from the same policy as the true-reward run of
    # their PPO seed: they copy its evaluation before training (equal settings only).
    learned_seeds = ("rlhf_learned_seeds", {**common, "reward": f"learned:{learned_path}",
                                            "seeds": seeds, "irl": irl_result.folder.name},
                     f"learned:{learned_path}", runner.folder(*true_seeds[:2]))
    evaluate = functools.partial(run_evaluate, irl_result.outputs, demo.outputs["demos"],
                                 expert_model, base_model, rlhf.folder,
                                 config.demos.max_prompt_tokens)
    # Version 3: the log-ratio reward's accuracy and F1 follow the IRL threshold rule (they
    # were at threshold 0), so a workdir evaluated before recomputes this stage. Version
    # 4: the log-ratio reads the prompt as the demonstrations were sampled with it
    # (demos.max_prompt_tokens; the paper presets' study budget is 896 against 64).
    evaluate_config = {"irl": irl_result.folder.name, "rlhf": rlhf.folder.name,
                       "extras": "distances,log_ratio", "version": 4}
    if lane is not None:
        # The lane waits for IRL after rlhf_seeds, and the main chain's rlhf_learned and
        # interp outlast its evaluate and rlhf_learned_seeds: evaluate (no later stage
        # needs it but the report) runs there, off the main chain (about 8 s).
        evaluation = lane_stage("evaluate", evaluate_config, evaluate, chain="interp")
        if seeds:
            seed_runs.append(seeds_stage(*learned_seeds))
    else:
        evaluation = stage("evaluate", evaluate_config, evaluate)
    if until == "evaluate":
        bar.close()
        return {name: r.outputs for name, r in runner.results.items()}
    learned = stage("rlhf_learned", {**common, "reward": f"learned:{learned_path}",
                                     "irl": irl_result.folder.name},
                    lambda f: _rlhf(config, base_model, dataset, f"learned:{learned_path}", f,
                                    progress, eval_before_from=rlhf.folder))
    if seeds and lane is None:
        seed_runs += [seeds_stage(*true_seeds), seeds_stage(*learned_seeds)]

    interp_result = (lane.result(interp_name) if lane is not None else
                     stage("interp", interp_config,
                           functools.partial(interp, progress_bars=progress)))

    def report(folder):
        path = pathlib.Path(workdir) / "report.md"
        if parallel.is_main_process():
            path = run_report(config, pathlib.Path(workdir), runner.results, preset)
            keep_report(pathlib.Path(workdir), folder)
        return {"report": str(path)}

    if config.methods is not None:
        from jaxirl.pipeline.methods_stage import run_methods_stage

        paths = {"base_model": base_model, "expert_model": expert_model, "dataset": dataset,
                 "demos": demo.outputs["demos"], "rlhf_folder": str(rlhf.folder),
                 "learned_reward": str(learned_path), "rlhf_learned_folder": str(learned.folder),
                 "learned_train_rewards": irl_result.outputs["train_rewards"]}
        # Version 2: the log-ratio of every draw reads the demonstrations' prompt budget,
        # and the study's own reward stands in for a method only if trained like it.

        def methods(folder):
            # The study's extra PPO seeds (the lane's, when it runs) stand in for the
            # re-RLHF runs of the same reward and seed: equal settings, equal numbers.
            reward_of = {name: reward for name, _, reward, *_ in (true_seeds, learned_seeds)}
            finished = {}
            for run in seed_runs:
                result = lane.result(run) if isinstance(run, str) else run
                finished[reward_of[result.name]] = result.outputs["runs"]
            blob = run_methods_stage(config, config.methods, {**paths, "seed_runs": finished},
                                     folder, progress, mesh)
            return {"methods": str(folder / "methods.json"), "best": blob["best_black_box"]}

        stage("methods", {"methods": config.methods, "study": [rlhf.folder.name, demo.folder.name,
                                                                 learned.folder.name],
                          "version": 2}, methods)
    if lane is not None:
        evaluation = lane.result(evaluation)
        seed_runs = [lane.result(name) for name in seed_runs]
    # The lane's results join in the stages' own order, for the report.
    runner.results = dict(sorted(runner.results.items(), key=lambda item: STAGES.index(item[0])))
    inputs = [r.folder.name for r in (rlhf, demo, irl_result, evaluation, learned, *seed_runs,
                                      interp_result)]
    inputs += [runner.results["methods"].folder.name] if "methods" in runner.results else []
    # Version 3: the log-ratio table names its threshold rule; an ensemble's targets row
    # gives its members' seed correlation. Version 4: the stage folder keeps a copy of the
    # report, which a rerun that skips the stage puts back (the workdir's report.md may
    # be another configuration's). Version 5: the pooled re-RLHF interval resamples the
    # PPO seeds too, and the KL columns name their estimators. Version 6: the feature
    # labels name the dictionaries they read; a bootstrap p at its floor says "≤".
    # 7: pooled toxic-share bars over prompts, the identifiability and clean-linked wording.
    # 8: the run line names the usable CPU cores (and stages that ran with another count).
    # 9: the re-RLHF prompts' overlap with IRL training prompts; the IRM, KL, selectivity
    # and pairwise-accuracy labels (the twenty-second session's report audit). 10: the
    # stage-time note names background threads, not one second lane (interp joined them).
    done = stage("report", {"inputs": inputs, "version": 10}, report)
    if done.skipped and parallel.is_main_process():
        restore_report(done.folder, pathlib.Path(workdir))
    runner.finish()
    bar.close()
    return {name: r.outputs for name, r in runner.results.items()}


__all__ = ["PRESETS", "STAGES", "PromptSet", "StudyConfig", "run_study"]
