"""Causal language-model training: the loss, a jitted step, and token packing.

Used to pretrain the embedded default model (``experiments/pretrain_default.py``)
and reusable for supervised fine-tuning of any GPT-NeoX port.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxirl.errors import ConfigError, DataError, DivergenceError
from jaxirl.finite import tree_finite
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
    """Optimisation settings of causal-LM training.

    Attributes:
      learning_rate: peak AdamW learning rate.
      warmup_steps: linear warm-up steps, then cosine decay to 10% of the peak.
      total_steps: total optimiser steps.
      batch_size: sequences per step.
      seq_len: tokens per packed sequence.
      weight_decay: AdamW decoupled weight decay (not applied to biases or norms).
      max_grad_norm: global gradient-norm clip.
      seed: PRNG seed of initialisation and batch order.
    """

    learning_rate: float = 3e-3
    warmup_steps: int = 50
    total_steps: int = 600
    batch_size: int = 32
    seq_len: int = 64
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        # An int given for a float setting (max_grad_norm=1) is stored as the float: equal
        # settings then serialise alike (the default model's cache folder hashes them).
        for name in ("learning_rate", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        for name in ("total_steps", "batch_size", "seq_len"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"LM training field '{name}' must be positive, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"LM training field 'learning_rate' must be positive, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ConfigError(f"LM training field 'warmup_steps' must be >= 0, got {self.warmup_steps}")


@struct.dataclass
class LMTrainState:
    step: chex.Array
    params: Any
    opt_state: Any


def lm_loss(logits: chex.Array, tokens: chex.Array, mask: chex.Array) -> chex.Array:
    """Mean next-token cross-entropy (nats/token).

    Args:
      logits: [B, T, V] predictions at each position.
      tokens: [B, T] int tokens; position t's logits predict tokens[:, t + 1].
      mask: [B, T] 0/1, 1 where tokens[:, t] is a real token.
    """
    chex.assert_rank(logits, 3)
    chex.assert_equal_shape([tokens, mask])
    targets, target_mask = tokens[:, 1:], mask[:, 1:] * mask[:, :-1]
    # float32 before log_softmax: bf16 logits lose the tail of the distribution.
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(nll * target_mask) / jnp.maximum(jnp.sum(target_mask), 1)


def make_optimizer(config: LMTrainConfig) -> optax.GradientTransformation:
    # The warm-up ends one step before the last at the latest, so that the cosine
    # phase is never empty (optax rejects a zero-step decay).
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, min(config.warmup_steps, config.total_steps - 1),
        config.total_steps, end_value=0.1 * config.learning_rate)

    def decay_mask(params):
        # Decay matrices only (Dense kernels and the LM head's weight): biases, norm
        # scales and embeddings stay undecayed.
        return jax.tree_util.tree_map_with_path(
            lambda path, _: getattr(path[-1], "key", "") in ("kernel", "weight"), params)

    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                       optax.adamw(schedule, weight_decay=config.weight_decay, mask=decay_mask))


def init_state(params: Any, optimizer: optax.GradientTransformation) -> LMTrainState:
    return LMTrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


def make_train_step(model: GPTNeoXForCausalLM, optimizer: optax.GradientTransformation):
    """Returns a jitted ``step(state, batch) -> (state, metrics)``.

    ``batch`` holds ``tokens`` [B, T] int32 and ``mask`` [B, T] int32. Metrics:
    ``loss``, ``grad_norm`` and ``params_finite`` (loss, gradients and new parameters
    all finite; see :func:`check_finite_steps`).
    """

    def loss_fn(params, batch):
        logits = model.apply({"params": params}, batch["tokens"], batch["mask"]).logits
        return lm_loss(logits, batch["tokens"], batch["mask"])

    @jax.jit
    def step(state: LMTrainState, batch: dict[str, chex.Array]):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & tree_finite(params)
        metrics = {"loss": loss, "grad_norm": grad_norm, "params_finite": finite}
        return LMTrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


def check_finite_steps(flags: Sequence[chex.Array], first_step: int) -> None:
    """DivergenceError naming the first step whose ``params_finite`` flag is false.

    ``flags`` are the flags of steps ``first_step, first_step + 1, ...``, fetched in one
    transfer, so a loop can check every K steps without a sync per step.
    """
    values = np.asarray(jax.device_get(list(flags)), bool)
    if not values.all():
        step = first_step + int(np.flatnonzero(~values)[0])
        raise DivergenceError(f"LM training step {step} diverged: non-finite loss, gradients or "
                              "parameters")


def make_eval_loss(model: GPTNeoXForCausalLM):
    """Returns a jitted ``eval_loss(params, batch) -> mean nll`` (nats/token)."""

    @jax.jit
    def eval_loss(params, batch):
        logits = model.apply({"params": params}, batch["tokens"], batch["mask"]).logits
        return lm_loss(logits, batch["tokens"], batch["mask"])

    return eval_loss


def pack_texts(texts: Sequence[str], tokenizer: Any, seq_len: int) -> np.ndarray:
    """Tokenizes texts, joins them with EOS and cuts the stream into [N, seq_len] blocks.

    Raises:
      DataError: when the texts hold fewer than ``seq_len`` tokens.
    """
    eos = tokenizer.eos_token_id
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    stream = np.fromiter((t for seq in ids for t in (*seq, eos)), dtype=np.int32)
    n = len(stream) // seq_len
    if n == 0:
        raise DataError(f"the training texts hold {len(stream)} tokens, fewer than one block of {seq_len}")
    return stream[: n * seq_len].reshape(n, seq_len)


def iterate_blocks(blocks: np.ndarray, batch_size: int, seed: int, start_step: int = 0
                   ) -> Iterator[dict[str, np.ndarray]]:
    """Endless shuffled batches of packed blocks, deterministic in (seed, step).

    Each epoch is a fresh permutation, so resuming at ``start_step`` replays the
    same batches an uninterrupted run would have seen.
    """
    n = len(blocks)
    per_epoch = max(n // batch_size, 1)
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(n)
        idx = np.resize(order[offset * batch_size:(offset + 1) * batch_size], batch_size)
        tokens = blocks[idx]
        yield {"tokens": tokens, "mask": np.ones_like(tokens)}
        step += 1
