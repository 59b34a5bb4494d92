"""Jitted autoregressive sampling with a preallocated KV cache.

One compiled program per (model, SamplingConfig, batch shape): the prompt is
prefilled in a single forward pass, then a ``lax.while_loop`` decodes one token
per iteration against the cache and stops early once every row has emitted
EOS. Nothing returns to the host inside the loop.

Decoding streams every weight and the whole cache once per step, so the loop
reads as little as it can: the weights are cast to the model's compute dtype
once, before the loop (bf16 halves them), and the cache grows in blocks of
``SamplingConfig.cache_block`` slots, one ``while_loop`` per block, so that
attention reads the filled part of the cache rather than all P + N slots.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh

from jaxirl import parallel
from jaxirl.errors import ConfigError
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, KVCache, position_ids_from_mask
from jaxirl.models.mixed_precision import cast_for_compute, decode_layout, kv_cache_dtype


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How to pick each new token. Hashable: it is a static argument of the jit.

    Attributes:
      max_new_tokens: tokens to generate per row.
      do_sample: False means greedy decoding (argmax), ignoring the fields below.
      temperature: logits are divided by it before top-k / top-p.
      top_k: keep the k most likely tokens (0 = all).
      top_p: nucleus sampling mass (1.0 = off).
      eos_token_id: stop a row after it emits this token (None: never stop).
      pad_token_id: what follows EOS in the output.
      cache_block: the KV cache grows by this many slots at a time (0: all P + N at
        once). Each block compiles the decode step once more; the tokens do not depend
        on it beyond float rounding.
    """

    max_new_tokens: int = 32
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    eos_token_id: int | None = 0
    pad_token_id: int = 0
    cache_block: int = 64

    def __post_init__(self):
        if self.max_new_tokens <= 0:
            raise ConfigError(f"sampling field 'max_new_tokens' must be positive, got {self.max_new_tokens}")
        if self.do_sample and self.temperature <= 0:
            raise ConfigError(f"sampling field 'temperature' must be > 0 when sampling, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"sampling field 'top_k' must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"sampling field 'top_p' must lie in (0, 1], got {self.top_p}")
        if self.cache_block < 0:
            raise ConfigError(f"sampling field 'cache_block' must be >= 0, got {self.cache_block}")


@struct.dataclass
class GenerationOutput:
    """Result of :func:`generate`, with ``N = max_new_tokens``.

    Attributes:
      sequences: [B, P + N] int32, the left-padded prompt then the new tokens.
      attention_mask: [B, P + N] int32, 1 on real prompt tokens and generated tokens.
      tokens: [B, N] int32 new tokens; ``pad_token_id`` after a row's EOS.
      logprobs: [B, N] float32 log-probability of each new token under the model's
        raw distribution (temperature 1, no top-k/top-p), 0 where masked. This is
        the behaviour log-prob that PPO's ratio needs for greedy or filtered
        sampling alike.
      mask: [B, N] int32, 1 on generated tokens up to and including EOS.
      num_steps: int32 scalar, decoding steps actually run (< N on early stop).
    """

    sequences: chex.Array
    attention_mask: chex.Array
    tokens: chex.Array
    logprobs: chex.Array
    mask: chex.Array
    num_steps: chex.Array


# Two-stage top-k: the vocabulary is cut into chunks of this many logits.
TOP_K_CHUNK = 32
# ... and taken only when there are at least this many chunks per kept token (the
# candidates are then at most 1/8 of the vocabulary; below it XLA's TopK wins).
TOP_K_CHUNKS_PER_TOKEN = 8


def two_stage_top_k_pays(vocab: int, k: int) -> bool:
    """Whether :func:`top_k` takes the chunked path for ``k`` of ``vocab`` logits (CPU only).

    Measured on one core, [16, 50304], k = 30: XLA:CPU's TopK 1.41 ms, the chunked path
    0.43 ms; [64, 2048]: 0.71 against 0.83 ms, so small vocabularies keep the plain one.
    Static (shapes and the default backend): a GPU's TopK kernel has no such gap.
    """
    return (jax.default_backend() == "cpu"
            and vocab >= TOP_K_CHUNKS_PER_TOKEN * k * TOP_K_CHUNK)


def top_k(logits: chex.Array, k: int) -> tuple[chex.Array, chex.Array]:
    """``jax.lax.top_k`` over the last axis of logits [B, V] -> values, indices [B, k].

    The same values and indices, ties included (the lower index first). Where it pays
    (:func:`two_stage_top_k_pays`) it finds the k chunks with the largest maxima, then
    the top k among those chunks' logits only. That is exact: an element outside those
    chunks has k chunk maxima ranked ahead of it (larger, or equal and at lower indices),
    so it cannot be among the top k.
    """
    batch, vocab = logits.shape
    if not two_stage_top_k_pays(vocab, k):
        return jax.lax.top_k(logits, k)
    pad = -vocab % TOP_K_CHUNK
    # Padding sits at the highest indices, so it loses every tie with a real logit.
    chunks = jnp.pad(logits, ((0, 0), (0, pad)), constant_values=-jnp.inf)
    chunks = chunks.reshape(batch, -1, TOP_K_CHUNK)
    _, chunk_ids = jax.lax.top_k(jnp.max(chunks, axis=-1), k)
    # Candidates in vocabulary order, so that TopK breaks their ties as on the whole row.
    chunk_ids = jnp.sort(chunk_ids, axis=-1)
    candidates = jnp.take_along_axis(chunks, chunk_ids[:, :, None], axis=1).reshape(batch, -1)
    values, picked = jax.lax.top_k(candidates, k)
    chunk = jnp.take_along_axis(chunk_ids, picked // TOP_K_CHUNK, axis=-1)
    return values, chunk * TOP_K_CHUNK + picked % TOP_K_CHUNK


def filter_logits(logits: chex.Array, config: SamplingConfig) -> chex.Array:
    """Applies temperature, then top-k, then top-p (HF's order) to logits [B, V]."""
    logits = logits / config.temperature
    neg = jnp.finfo(logits.dtype).min
    if 0 < config.top_k < logits.shape[-1]:
        # min over the k values, not [..., -1:]: that slice makes XLA:CPU sort the whole
        # vocabulary (0.23 s vs 1.4 ms per step at 16 x 50304, benchmarks/).
        kth = jnp.min(top_k(logits, config.top_k)[0], axis=-1, keepdims=True)
        logits = jnp.where(logits < kth, neg, logits)
    if config.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (always the top token).
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = jnp.where(mass_before < config.top_p, sorted_logits, jnp.inf)
        cutoff = jnp.min(kept, axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, neg, logits)
    return logits


def row_keys(key: chex.PRNGKey, rows: chex.Array) -> chex.Array:
    """One PRNG key per row [B]: ``key`` folded with each row's (global) index."""
    return jax.vmap(lambda r: jax.random.fold_in(key, r))(rows)


def sample_tokens(logits: chex.Array, keys: chex.Array, config: SamplingConfig) -> chex.Array:
    """Picks one token per row from logits [B, V]: argmax, or a draw after filtering -> [B] int32.

    ``keys`` [B] are per-row keys (:func:`row_keys`): a row's draw depends only on its
    own key and logits, so however the rows are split over devices, each draws the
    same token.
    """
    if not config.do_sample:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    categorical = jax.vmap(jax.random.categorical)
    if 0 < config.top_k < logits.shape[-1] and config.top_p >= 1.0:
        # The same distribution as filtering the whole vocabulary, but the draw only
        # touches the k candidates (about 25% faster generation, benchmarks/).
        top_vals, top_idx = top_k(logits / config.temperature, config.top_k)
        choice = categorical(keys, top_vals)
        return jnp.take_along_axis(top_idx, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
    return categorical(keys, filter_logits(logits, config)).astype(jnp.int32)


def check_prompt_fits(model: GPTNeoXForCausalLM, prompt_len: int, max_new_tokens: int) -> None:
    """Raises ConfigError when the prompt plus the new tokens exceed the model's context."""
    limit = model.config.max_position_embeddings
    if prompt_len + max_new_tokens > limit:
        raise ConfigError(
            f"prompt length {prompt_len} + max_new_tokens {max_new_tokens} = "
            f"{prompt_len + max_new_tokens} exceeds the model context max_position_embeddings={limit}; "
            "truncate the prompts or lower max_new_tokens"
        )


def check_left_padded(attention_mask: np.ndarray) -> None:
    """Raises ConfigError unless every row of a [B, P] 0/1 mask ends on a real token.

    The prefill reads each row's next-token logits from the last column, so a
    right-padded (or all-padding) row would continue from padding, silently wrong.
    """
    padded = np.flatnonzero(np.asarray(attention_mask)[:, -1] == 0)
    if padded.size:
        raise ConfigError(f"generate needs left-padded prompts: attention_mask row {padded[0]}'s "
                          f"last column is padding ({padded.size} such row(s))")


def generate(model: GPTNeoXForCausalLM, params: Any, input_ids: chex.Array,
             attention_mask: chex.Array, key: chex.PRNGKey, config: SamplingConfig,
             mesh: Mesh | None = None, row_offset: int = 0) -> GenerationOutput:
    """Samples ``config.max_new_tokens`` tokens after left-padded prompts.

    Args:
      model: the Flax module (its config fixes the architecture).
      params: its parameters (with ``mesh``: already placed on it, e.g. by
        :func:`jaxirl.parallel.place_params`).
      input_ids: [B, P] int32 prompts, left-padded.
      attention_mask: [B, P] 0/1, 1 on real prompt tokens. Every row's last column must
        be one (left padding; a row of padding only fails too). Checked on the host:
        one [B] read per call, before the jitted program.
      key: PRNG key; the same key gives the same samples. Row b draws with
        ``fold_in(fold_in(key, step), row_offset + b)``, so the tokens do not depend on
        the mesh, nor, with ``row_offset`` the rows' global index, on how a larger set of
        prompts is split into batches.
      config: the sampling settings.
      mesh: split the prompts over this mesh (each device decodes its rows); rows are
        padded to a multiple of its batch split and the padding dropped again. The
        outputs are then global arrays (:func:`jaxirl.parallel.to_host` reads them).
      row_offset: the global index of row 0 (an int32 argument of the compiled program,
        not a static one: every batch of a prompt set shares one compilation).

    Raises:
      ConfigError: the prompt plus max_new_tokens exceed the context, or a prompt is not
        left-padded.
    """
    check_prompt_fits(model, input_ids.shape[1], config.max_new_tokens)
    offset = np.int32(row_offset)
    if mesh is None:
        check_left_padded(parallel.to_host(attention_mask))
        return _generate_jit(model, params, jnp.asarray(input_ids, jnp.int32),
                             jnp.asarray(attention_mask, jnp.int32), key, offset, config)
    ids, mask = (np.asarray(parallel.to_host(x), np.int32) for x in (input_ids, attention_mask))
    check_left_padded(mask)
    rows = ids.shape[0]
    padded = -(-rows // parallel.batch_split(mesh)) * parallel.batch_split(mesh)
    if padded > rows:  # extra rows copy row 0; they come last, so no real row's key moves
        ids, mask = (np.concatenate([x, np.repeat(x[:1], padded - rows, 0)]) for x in (ids, mask))
    ids, mask = parallel.shard_rows(mesh, (ids, mask))
    with jax.set_mesh(mesh):
        out = _generate_jit(model, params, ids, mask, parallel.replicate(mesh, key),
                            parallel.replicate(mesh, offset), config)
    if padded > rows:
        out = jax.tree_util.tree_map(lambda x: x[:rows] if np.ndim(x) else x, out)
    return out


def cache_lengths(prompt_len: int, max_new_tokens: int, block: int) -> list[int]:
    """Cache sizes of the decode loop's segments, the last one ``prompt_len + max_new_tokens - 1``.

    The token sampled last is never fed back, so the cache needs one slot fewer
    than the sequence; ``block`` 0 gives one segment.
    """
    full = prompt_len + max_new_tokens - 1
    if block <= 0 or max_new_tokens - 1 <= block:
        return [full]
    return [min(prompt_len + k, full) for k in range(block, max_new_tokens - 1 + block, block)]


@functools.partial(jax.jit, static_argnames=("model", "config"))
def _generate_jit(model, params, input_ids, attention_mask, key, row_offset,
                  config: SamplingConfig):
    b, p = input_ids.shape
    n = config.max_new_tokens
    if model.with_value_head:  # decoding never reads the values
        model = model.clone(with_value_head=False)
        params = {k: v for k, v in params.items() if k != "value_head"}
    # Once here, not per decode step: each step would otherwise re-read the float32 weights.
    params = cast_for_compute(params, model.dtype, model.config.tie_word_embeddings)
    # Also once: the large block kernels transposed for the few-row decode matmul (CPU).
    params = decode_layout(params, b, model.dtype)
    lengths = cache_lengths(p, n, config.cache_block)
    cache = KVCache.empty(model.config, b, lengths[0], dtype=kv_cache_dtype(model.dtype))
    positions = position_ids_from_mask(attention_mask)
    # With left padding the last column is every row's last real prompt token, and only
    # its logits are needed: the prefill skips the LM head on the other P - 1 columns.
    out = model.apply({"params": params}, input_ids, attention_mask, positions, cache=cache,
                      output_span=(p - 1, p))
    next_pos = positions[:, -1] + 1
    eos = -1 if config.eos_token_id is None else config.eos_token_id

    # Global row indices: a row's key depends on where it sits in the whole prompt set,
    # not on the batch (nor the mesh shard) that holds it.
    rows = row_offset + jnp.arange(b, dtype=jnp.int32)

    def sample_step(carry):
        """Samples token ``step`` from the carried logits and records it."""
        step, logits, cache, done, pos, tokens, logprobs, mask = carry
        token = sample_tokens(logits, row_keys(jax.random.fold_in(key, step), rows), config)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
        live = ~done
        token = jnp.where(live, token, config.pad_token_id)
        tokens = tokens.at[:, step].set(token)
        logprobs = logprobs.at[:, step].set(jnp.where(live, logp, 0.0))
        mask = mask.at[:, step].set(live.astype(jnp.int32))
        return token, live, (step, logits, cache, done | (token == eos), pos, tokens, logprobs, mask)

    def body(carry):
        token, live, carry = sample_step(carry)
        step, _, cache, done, pos, tokens, logprobs, mask = carry
        step_out = model.apply({"params": params}, token[:, None], live.astype(jnp.int32)[:, None],
                               pos[:, None], cache=cache)
        return (step + 1, step_out.logits[:, -1], step_out.cache, done, pos + 1, tokens, logprobs, mask)

    carry = (jnp.zeros((), jnp.int32), out.logits[:, -1], out.cache, jnp.zeros((b,), bool), next_pos,
             jnp.full((b, n), config.pad_token_id, jnp.int32), jnp.zeros((b, n), jnp.float32),
             jnp.zeros((b, n), jnp.int32))
    for length in lengths:
        # Steps feed their token to slot P + step: this segment runs while it fits. On a
        # mesh every per-row carry keeps its rows split (the grown cache included).
        carry = (*carry[:2], carry[2].grow(length), *carry[3:])
        carry = carry[:1] + parallel.constrain_rows(carry[1:])
        carry = jax.lax.while_loop(
            lambda c, last=length - p: (c[0] < last) & ~jnp.all(c[3]), body, carry)
    # The last token is sampled without a forward pass after it. When every row had
    # already stopped, it records padding and the step does not count.
    _, live, carry = sample_step(carry)
    steps, _, _, _, _, tokens, logprobs, mask = carry
    return GenerationOutput(
        sequences=jnp.concatenate([input_ids, tokens], axis=1),
        attention_mask=jnp.concatenate([attention_mask, mask], axis=1),
        tokens=tokens,
        logprobs=logprobs,
        mask=mask,
        num_steps=steps + jnp.any(live).astype(jnp.int32),
    )
