"""The PPO loop: rollout, score, build experience, update, checkpoint.

Everything heavy is jitted on the device mesh (sampling, experience, the whole
multi-epoch update); the host only decodes text for the reward model and writes
logs. One iteration = ``num_rollouts`` prompts sampled in ``chunk_size`` batches,
then ``ppo_epochs`` passes over ``batch_size`` minibatches (trlx's schedule).
The loop is a thin layer over the pure API of :mod:`jaxirl.ppo`
(:func:`~jaxirl.ppo.init_ppo_state`, :func:`~jaxirl.ppo.make_experience`,
:func:`~jaxirl.ppo.make_update`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxirl import parallel
from jaxirl.checkpoint import Checkpointer, kept_checkpoint
from jaxirl.data.batches import batch_stream
from jaxirl.data.tokenization import TokenizedPrompts, trim_left_padding
from jaxirl.errors import CheckpointError, ConfigError, RewardError
from jaxirl.finite import check_metrics
from jaxirl.generation.sampler import check_prompt_fits
from jaxirl.generation.text import (
    decode_batch_size,
    generate_responses,
    sampling_from_tokenizer,
    toxicity_of_responses,
)
from jaxirl.metrics_log import MetricsLog
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
from jaxirl.ppo import kl_controller
from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.experience import Rollout, make_experience
from jaxirl.ppo.state import PPOState, frozen_trunk_depth, init_ppo_state
from jaxirl.ppo.update import check_batch_split, make_update
from jaxirl.rewards.scorer import call_reward_fn

log = logging.getLogger(__name__)

# Checked after every iteration; any non-finite one stops the run (DivergenceError).
DIVERGENCE_METRICS = ("loss", "policy_loss", "value_loss", "kl", "kl_controller_input",
                      "grad_norm", "params_finite")

# texts, references (or None) -> float32 [R] sequence scores. What the texts are is
# PPOConfig.reward_text: prompt + response (the paper's) or the response alone.
RewardFn = Callable[[Sequence[str], Sequence[str] | None], np.ndarray]


def after_prompts(prompts: Sequence[str], texts: Sequence[str]) -> list[str]:
    """Each text after its prompt (the paper's reward reads prompt + continuation)."""
    return [p + t for p, t in zip(prompts, texts, strict=True)]


def response_rewards(reward_fn: RewardFn, responses: Sequence[str],
                     references: Sequence[str] | None,
                     prompts: Sequence[str] | None = None,
                     empty_response: str = "") -> np.ndarray:
    """Scores R responses, float32 [R].

    Args:
      reward_fn: see :data:`RewardFn`.
      responses: the R decoded responses (special tokens dropped).
      references: R reference continuations of the same prompts, or None.
      prompts: the R prompts (``PPOConfig.reward_text = "prompt_and_response"``): the
        reward then scores ``prompt + response`` against ``prompt + reference``, as the
        paper's reward function does. None: responses and references alone.
      empty_response: the text an empty response (immediate EOS) is scored as, when
        scored alone (the tokenizer's EOS token: what the policy emitted). A reward
        whose ``empty_text_reward_is_zero`` is true (toxicity: nothing is not toxic)
        takes 0 for it instead, so that with a reference the score is −r(reference).

    Non-finite scores raise RewardError naming the sample: they never enter training.
    """
    if prompts is not None:
        if len(prompts) != len(responses):
            raise RewardError(f"{len(responses)} responses but {len(prompts)} prompts")
        texts = after_prompts(prompts, responses)
        refs = None if references is None else after_prompts(prompts, references)
        return _checked(call_reward_fn(reward_fn, texts, refs), texts)
    texts = [r if r.strip() else "" for r in responses]
    if not getattr(reward_fn, "empty_text_reward_is_zero", False):
        texts = [t or empty_response for t in texts]
    nonempty = [i for i, t in enumerate(texts) if t]
    scores = np.zeros(len(texts), np.float32)
    if nonempty:
        refs = None if references is None else [references[i] for i in nonempty]
        scores[nonempty] = call_reward_fn(reward_fn, [texts[i] for i in nonempty], refs)
    empty = [i for i, t in enumerate(texts) if not t]
    if empty and references is not None:
        # r("") = 0, so r("") − r(ref) = −r(ref): score the references alone.
        scores[empty] = call_reward_fn(reward_fn, [references[i] for i in empty], None) * -1.0
    return _checked(scores, texts)


def _checked(scores: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    scores = np.asarray(scores, np.float32)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise RewardError(f"reward is {scores[bad[0]]} for sample {bad[0]} ({texts[bad[0]]!r:.60})")
    return scores


@dataclasses.dataclass
class PPOTrainer:
    """A thin host loop over the pure PPO API, on a device mesh.

    It holds the compiled experience and update steps (built here, from the model's
    abstract state, never as a side effect of :meth:`init_state`); the state itself
    is passed around and stays sharded on the mesh across iterations.

    Args:
      model: policy module built ``with_value_head=True``.
      tokenizer: its tokenizer (decoding responses).
      reward_fn: see :data:`RewardFn`. One with a ``with_references(references)``
        method (a learned reward) is replaced by what that returns for the training
        prompts' references, so that it can score each reference once.
      prompts: tokenized training prompts.
      config: PPO hyperparameters.
      mesh: the device mesh (:func:`jaxirl.parallel.make_mesh`); None: one device.
        Prompts and rollouts are split over its batch axes, parameters and Adam
        state over ``fsdp``.
      toxicity_scorer: optional ground-truth scorer; when set, each iteration also logs
        the mean P(toxic) of its responses (``toxicity``), whatever reward trains.
    """

    model: GPTNeoXForCausalLM
    tokenizer: Any
    reward_fn: RewardFn
    prompts: TokenizedPrompts
    config: PPOConfig
    mesh: Mesh | None = None
    toxicity_scorer: Any = None

    def __post_init__(self):
        cfg = self.config
        if not self.model.with_value_head:
            raise ConfigError("the PPO policy needs a value head: build the model with_value_head=True")
        self.mesh = self.mesh if self.mesh is not None else parallel.make_mesh()
        check_batch_split(cfg, parallel.batch_split(self.mesh))
        if cfg.num_rollouts % cfg.chunk_size:
            raise ConfigError(f"PPOConfig.num_rollouts {cfg.num_rollouts} is not divisible by "
                              f"PPOConfig.chunk_size {cfg.chunk_size}")
        if len(self.prompts) < cfg.chunk_size:
            raise ConfigError(f"only {len(self.prompts)} training prompts for PPOConfig.chunk_size {cfg.chunk_size}")
        self.prompt_len = self.prompts.input_ids.shape[1]
        wanted = getattr(self.reward_fn, "reward_text", None)
        if wanted is not None and wanted != cfg.reward_text:
            raise ConfigError(f"PPOConfig.reward_text is '{cfg.reward_text}' but this reward "
                              f"scores '{wanted}' texts (it was fitted on them); set "
                              f"reward_text='{wanted}'")
        prepare = getattr(self.reward_fn, "with_references", None)
        if prepare is not None and self.prompts.references is not None:
            references = self.prompts.references
            self.reward_fn = prepare(after_prompts(self.prompts.prompts, references)
                                     if self.reads_prompts else list(references))
        check_prompt_fits(self.model, self.prompt_len, cfg.max_new_tokens)
        self.sampling = sampling_from_tokenizer(self.tokenizer, cfg.max_new_tokens, do_sample=True,
                                                top_k=cfg.top_k, top_p=cfg.top_p,
                                                temperature=cfg.temperature)
        steps = self.programs()
        self.state_shardings = steps.state_shardings
        self.kl_update_fn = steps.kl_update_fn

    @property
    def reads_prompts(self) -> bool:
        """Whether the reward reads each text after its prompt (``reward_text``)."""
        return self.config.reward_text == "prompt_and_response"

    def programs(self, prompt_len: int | None = None) -> _CompiledSteps:
        """The compiled steps for prompts of ``prompt_len`` columns (None: the dataset's).

        Shared by every trainer of the same model, settings (seed aside) and mesh.
        """
        return _compiled_steps(self.model, _program_settings(self.config),
                               self.prompt_len if prompt_len is None else prompt_len, self.mesh)

    def experience(self, state: PPOState, sequences: jax.Array, attention_mask: jax.Array,
                   scores: jax.Array) -> tuple[Rollout, Any, dict]:
        """:func:`~jaxirl.ppo.make_experience` on sequences [R, P + N] of any prompt width P."""
        width = sequences.shape[1] - self.config.max_new_tokens
        return self.programs(width).experience_fn(state, sequences, attention_mask, scores)

    def update(self, state: PPOState, rollout: Rollout, key: jax.Array) -> tuple[PPOState, dict]:
        """The multi-epoch update (:func:`~jaxirl.ppo.make_update`) of a rollout, whatever
        its prompt width. The state passed in is consumed (its buffers are reused)."""
        width = rollout.sequences.shape[1] - self.config.max_new_tokens
        return self.programs(width).update_fn(state, rollout, key)

    def _initial_state(self, params: Any, key: jax.Array) -> PPOState:
        return init_ppo_state(params, self.config, self.model.config.num_hidden_layers, key)

    def init_state(self, params: Any, seed: int | None = None) -> PPOState:
        """The initial :class:`PPOState` of ``params`` (with value head), placed on the mesh."""
        seed = self.config.seed if seed is None else seed
        state = self._initial_state(params, jax.random.PRNGKey(seed))
        return parallel.place(state, self.state_shardings)

    # ------------------------------------------------------------------ rollout
    def rollout(self, state: PPOState, key: jax.Array) -> tuple[Any, dict, list[str]]:
        """Samples ``num_rollouts`` responses, scores them and builds the experience.

        Each chunk of prompts is split over the mesh and decoded in place; the tokens
        are gathered once for the host reward, and the experience is built from
        sharded sequences again.
        """
        cfg = self.config
        chunks = cfg.num_rollouts // cfg.chunk_size
        stream = batch_stream(self.prompts, cfg.chunk_size, seed=cfg.seed,
                              start_step=int(parallel.to_host(state.data_position)))
        batches = [next(stream) for _ in range(chunks)]
        refs = [r for batch in batches for r in (batch["references"] or [])]
        prompts = [p for batch in batches for p in batch["prompts"]]
        # All chunks decode together, as many rows per call as memory allows: a decode
        # step streams every weight whatever its batch. The row count depends neither on
        # the mesh nor on the trimmed width, so neither do the sampled tokens.
        ids, mask = trim_left_padding(np.concatenate([b["input_ids"] for b in batches]),
                                      np.concatenate([b["attention_mask"] for b in batches]),
                                      cfg.prompt_bucket)
        rows = decode_batch_size(self.model, len(ids), self.prompt_len, cfg.max_new_tokens)
        texts, out = generate_responses(self.model, state.params, self.tokenizer, ids, mask,
                                        self.sampling, key, batch_size=rows, mesh=self.mesh)
        scores = response_rewards(
            self.reward_fn, texts, refs or None,
            prompts if self.reads_prompts else None,
            empty_response=self.tokenizer.eos_token or "")
        rollout, moments, stats = self.experience(state, *parallel.shard_rows(
            self.mesh, (out.sequences, out.attention_mask, scores)))
        state = state.replace(reward_moments=moments,
                              data_position=state.data_position + chunks)
        return (state, rollout), stats, texts

    # ------------------------------------------------------------------ one iteration
    def step(self, state: PPOState) -> tuple[PPOState, dict[str, float], list[str]]:
        """One PPO iteration: rollout, multi-epoch update, β update.

        The state passed in is consumed (the update reuses its device buffers).
        """
        key, gen_key, update_key = jax.random.split(state.key, 3)
        t0 = time.perf_counter()
        (state, rollout), stats, texts = self.rollout(state, gen_key)
        jax.block_until_ready(rollout)
        t1 = time.perf_counter()
        state, metrics = self.update(state, rollout, update_key)
        kl = self.kl_update_fn(state.kl, stats["kl_controller_input"])
        state = state.replace(kl=kl, key=key, step=state.step + 1)
        metrics = {k: float(v) for k, v in parallel.to_host({**stats, **metrics}).items()}
        if self.toxicity_scorer is not None:
            metrics["toxicity"] = float(np.mean(toxicity_of_responses(self.toxicity_scorer, texts)))
        metrics.update(time_rollout=t1 - t0, time_update=time.perf_counter() - t1)
        return state, metrics, texts


@dataclasses.dataclass(frozen=True)
class _CompiledSteps:
    state_shardings: Any
    experience_fn: Callable
    update_fn: Callable
    kl_update_fn: Callable


def _program_settings(config: PPOConfig) -> PPOConfig:
    """``config`` with the settings the compiled steps never read at their defaults: the
    seed (the steps get theirs from the state's key and the host's prompt stream), the
    prompt bucket (the host trims the prompts; the width is the program's key) and what
    the host's reward reads (``reward_text``). So
    runs that differ only in those share one program."""
    return dataclasses.replace(config, seed=PPOConfig.seed, prompt_bucket=PPOConfig.prompt_bucket,
                               reward_text=PPOConfig.reward_text)


@functools.lru_cache(maxsize=16)
def _compiled_steps(model: GPTNeoXForCausalLM, cfg: PPOConfig, prompt_len: int, mesh: Mesh
                    ) -> _CompiledSteps:
    """The jitted experience, update and β steps of one (model, settings, mesh).

    Cached, so that the study's PPO runs (seeds, true and learned rewards) trace, lower
    and load each program once per process, not once per run.
    """
    abstract = jax.eval_shape(
        lambda params, key: init_ppo_state(params, cfg, model.config.num_hidden_layers, key),
        _abstract_params(model), jax.random.PRNGKey(0))
    state_shardings = parallel.state_shardings(abstract, mesh)
    rows, repl = partial(parallel.rows_sharding, mesh), parallel.replicated(mesh)
    depth = frozen_trunk_depth(abstract.trainable, model.config.num_hidden_layers)
    rollout_shardings = Rollout(**{f.name: rows(2) for f in dataclasses.fields(Rollout)
                                   if f.name != "trunk"}, trunk=rows(3) if depth else None)
    experience_fn = parallel.sharded_jit(
        partial(make_experience, model, prompt_len=prompt_len, config=cfg), mesh,
        in_shardings=(state_shardings, rows(2), rows(2), rows(1)),
        out_shardings=(rollout_shardings, repl, repl))
    # The host loop owns the state: the update may reuse its buffers.
    update_fn = parallel.sharded_jit(
        make_update(model, cfg, prompt_len), mesh,
        in_shardings=(state_shardings, rollout_shardings, repl),
        out_shardings=(state_shardings, repl), donate_argnums=(0,))
    # trlx updates β once per PPO epoch (post_backward_callback runs after the
    # minibatch loop, inside the inner-epoch loop) with the rollout's KL.
    kl_update_fn = jax.jit(lambda kl, current: jax.lax.fori_loop(
        0, cfg.ppo_epochs, lambda _, c: kl_controller.update(c, current, cfg.batch_size), kl))
    replicated = parallel.replicated_leaves(abstract.params, mesh)
    if replicated and parallel.is_main_process():
        log.info("fsdp=%d leaves replicated (no divisible dimension): %s",
                 mesh.shape[parallel.FSDP], ", ".join(replicated))
    return _CompiledSteps(state_shardings, experience_fn, update_fn, kl_update_fn)


def _abstract_params(model: GPTNeoXForCausalLM) -> Any:
    """The shapes and dtypes of the policy's params (no memory, no compute)."""
    return jax.eval_shape(lambda key: model.init(key, jnp.zeros((1, 2), jnp.int32))["params"],
                          jax.random.PRNGKey(0))


def train(trainer: PPOTrainer, state: PPOState, num_iterations: int,
          checkpoint_dir: str | pathlib.Path | None = None, save_every: int = 1,
          resume: bool = False, log_path: str | pathlib.Path | None = None,
          progress: bool = True, on_step: Callable[[int, dict], None] | None = None) -> PPOState:
    """Runs PPO iterations up to ``num_iterations`` in total, checkpointing as it goes.

    With ``resume`` the latest checkpoint in ``checkpoint_dir`` is restored (sharded
    as ``state`` is) and the run continues from its step; the metrics log is truncated
    to that step, so an interrupted-then-resumed run writes the same log as an
    uninterrupted one. With several processes every one checkpoints its shards, and
    only process 0 writes the log and shows the progress bar.
    """
    from tqdm import tqdm

    main = parallel.is_main_process()
    ckpt = Checkpointer(checkpoint_dir, save_every=save_every) if checkpoint_dir else None
    if not resume and ckpt is not None and ckpt.latest_step() is not None:
        latest = ckpt.latest_step()
        ckpt.close()
        raise CheckpointError(f"'{ckpt.directory}' already holds checkpoints (latest step "
                              f"{latest}); pass resume=True to continue them")
    if resume and ckpt is not None and ckpt.latest_step() is not None:
        state, _ = ckpt.restore(state, settings=trainer.config)
    start = int(parallel.to_host(state.step))
    metrics_log = None
    if log_path is not None and main:
        metrics_log = MetricsLog(log_path, resume_step=start, tag_prefix="ppo/")
    try:
        bar = tqdm(range(start, num_iterations), desc="ppo", initial=start, total=num_iterations,
                   disable=not (progress and main))
        for _ in bar:
            state, metrics, _ = trainer.step(state)
            step = int(parallel.to_host(state.step))
            # Before this iteration is logged or checkpointed: the last good state stays.
            check_metrics(metrics, f"PPO iteration {step}", DIVERGENCE_METRICS,
                          hint=kept_checkpoint(ckpt))
            if metrics_log is not None:
                metrics = metrics_log.write(step, metrics)
            else:
                metrics["step"] = step
            if on_step is not None:
                on_step(step, metrics)
            bar.set_postfix(score=f"{metrics['score']:.3f}", kl=f"{metrics['kl']:.2f}")
            if ckpt is not None:
                ckpt.save(step, state, force=step == num_iterations, settings=trainer.config)
    finally:
        if metrics_log is not None:
            metrics_log.close()
        if ckpt is not None:
            ckpt.close()
    return state
