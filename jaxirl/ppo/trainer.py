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
import json
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
from jaxirl.checkpoint import Checkpointer
from jaxirl.data.batches import batch_stream
from jaxirl.data.tokenization import TokenizedPrompts
from jaxirl.errors import ConfigError, RewardError
from jaxirl.generation.sampler import check_prompt_fits, generate
from jaxirl.generation.text import (
    decode_responses,
    sampling_from_tokenizer,
    toxicity_of_responses,
)
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
from jaxirl.ppo import kl_controller
from jaxirl.ppo.config import PPOConfig
from jaxirl.ppo.experience import Rollout, make_experience
from jaxirl.ppo.state import PPOState, init_ppo_state
from jaxirl.ppo.update import check_batch_split, make_update

log = logging.getLogger(__name__)

# responses, references (or None) -> float32 [R] sequence scores.
RewardFn = Callable[[Sequence[str], Sequence[str] | None], np.ndarray]


def response_rewards(reward_fn: RewardFn, responses: Sequence[str],
                     references: Sequence[str] | None) -> np.ndarray:
    """Scores responses; an empty response (immediate EOS) is scored as the text "".

    Non-finite scores raise RewardError naming the sample: they never enter training.
    """
    texts = [r if r.strip() else "" for r in responses]
    nonempty = [i for i, t in enumerate(texts) if t]
    scores = np.zeros(len(texts), np.float32)
    if nonempty:
        refs = None if references is None else [references[i] for i in nonempty]
        scores[nonempty] = reward_fn([texts[i] for i in nonempty], refs)
    empty = [i for i, t in enumerate(texts) if not t]
    if empty and references is not None:
        # −tox("") + tox(ref) = tox(ref): score the references alone.
        scores[empty] = reward_fn([references[i] for i in empty], None) * -1.0
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
      reward_fn: see :data:`RewardFn`.
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
            raise ConfigError(f"--num_rollouts {cfg.num_rollouts} is not divisible by "
                              f"--chunk_size {cfg.chunk_size}")
        if len(self.prompts) < cfg.chunk_size:
            raise ConfigError(f"only {len(self.prompts)} training prompts for --chunk_size {cfg.chunk_size}")
        self.prompt_len = self.prompts.input_ids.shape[1]
        check_prompt_fits(self.model, self.prompt_len, cfg.max_new_tokens)
        self.sampling = sampling_from_tokenizer(self.tokenizer, cfg.max_new_tokens, do_sample=True,
                                                top_k=cfg.top_k, top_p=cfg.top_p,
                                                temperature=cfg.temperature)
        mesh = self.mesh
        abstract = jax.eval_shape(self._initial_state, _abstract_params(self.model),
                                  jax.random.PRNGKey(0))
        self.state_shardings = parallel.state_shardings(abstract, mesh)
        rows, repl = partial(parallel.rows_sharding, mesh), parallel.replicated(mesh)
        rollout_shardings = Rollout(*(rows(2) for _ in dataclasses.fields(Rollout)))
        self.experience_fn = parallel.sharded_jit(
            partial(make_experience, self.model, prompt_len=self.prompt_len, config=cfg), mesh,
            in_shardings=(self.state_shardings, rows(2), rows(2), rows(1)),
            out_shardings=(rollout_shardings, repl, repl))
        # The host loop owns the state: the update may reuse its buffers.
        self.update_fn = parallel.sharded_jit(
            make_update(self.model, cfg, self.prompt_len), mesh,
            in_shardings=(self.state_shardings, rollout_shardings, repl),
            out_shardings=(self.state_shardings, repl), donate_argnums=(0,))
        # trlx updates β after every optimizer step with the rollout's KL; do the same.
        optimizer_steps = cfg.ppo_epochs * (cfg.num_rollouts // cfg.batch_size)
        self.kl_update_fn = jax.jit(lambda kl, current: jax.lax.fori_loop(
            0, optimizer_steps, lambda _, c: kl_controller.update(c, current, cfg.batch_size), kl))
        replicated = parallel.replicated_leaves(abstract.params, mesh)
        if replicated and parallel.is_main_process():
            log.info("fsdp=%d leaves replicated (no divisible dimension): %s",
                     mesh.shape[parallel.FSDP], ", ".join(replicated))

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
        seqs, masks, texts, refs = [], [], [], []
        for i in range(chunks):
            batch = next(stream)
            out = generate(self.model, state.params, batch["input_ids"], batch["attention_mask"],
                           jax.random.fold_in(key, i), self.sampling, mesh=self.mesh)
            out = parallel.to_host(out)
            seqs.append(out.sequences)
            masks.append(out.attention_mask)
            texts.extend(decode_responses(self.tokenizer, out.tokens, out.mask))
            if batch["references"] is not None:
                refs.extend(batch["references"])
        scores = response_rewards(self.reward_fn, texts, refs or None)
        rollout, moments, stats = self.experience_fn(state, *parallel.shard_rows(
            self.mesh, (np.concatenate(seqs), np.concatenate(masks), scores)))
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
        state, metrics = self.update_fn(state, rollout, update_key)
        kl = self.kl_update_fn(state.kl, stats["kl_controller_input"])
        state = state.replace(kl=kl, key=key, step=state.step + 1)
        metrics = {k: float(v) for k, v in parallel.to_host({**stats, **metrics}).items()}
        if self.toxicity_scorer is not None:
            metrics["toxicity"] = float(np.mean(toxicity_of_responses(self.toxicity_scorer, texts)))
        metrics.update(time_rollout=t1 - t0, time_update=time.perf_counter() - t1)
        return state, metrics, texts


def _abstract_params(model: GPTNeoXForCausalLM) -> Any:
    """The shapes and dtypes of the policy's params (no memory, no compute)."""
    return jax.eval_shape(lambda key: model.init(key, jnp.zeros((1, 2), jnp.int32))["params"],
                          jax.random.PRNGKey(0))


def tensorboard_writer(logdir: str | pathlib.Path):
    """A TensorBoard ``SummaryWriter`` when tensorboardX or torch's is installed, else None."""
    for module in ("tensorboardX", "torch.utils.tensorboard"):
        try:
            writer_cls = __import__(module, fromlist=["SummaryWriter"]).SummaryWriter
        except ImportError:
            continue
        return writer_cls(str(logdir))
    return None


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
    if resume and ckpt is not None and ckpt.latest_step() is not None:
        state, _ = ckpt.restore(state)
    start = int(parallel.to_host(state.step))
    log_file = writer = None
    if log_path is not None and main:
        writer = tensorboard_writer(pathlib.Path(log_path).parent / "tensorboard")
        log_path = pathlib.Path(log_path)
        kept = []
        if log_path.exists() and start > 0:
            kept = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
        log_path.write_text("".join(ln + "\n" for ln in kept))
        log_file = open(log_path, "a")  # noqa: SIM115 - kept open across iterations
    try:
        bar = tqdm(range(start, num_iterations), desc="ppo", initial=start, total=num_iterations,
                   disable=not (progress and main))
        for _ in bar:
            state, metrics, _ = trainer.step(state)
            step = int(parallel.to_host(state.step))
            metrics["step"] = step
            if log_file is not None:
                log_file.write(json.dumps(metrics) + "\n")
                log_file.flush()
            if writer is not None:
                for name, value in metrics.items():
                    writer.add_scalar(f"ppo/{name}", value, step)
            if on_step is not None:
                on_step(step, metrics)
            bar.set_postfix(score=f"{metrics['score']:.3f}", kl=f"{metrics['kl']:.2f}")
            if ckpt is not None:
                ckpt.save(step, state, force=step == num_iterations)
    finally:
        if log_file is not None:
            log_file.close()
        if writer is not None:
            writer.close()
        if ckpt is not None:
            ckpt.close()
    return state
