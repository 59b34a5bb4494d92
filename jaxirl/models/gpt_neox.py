"""A Flax (linen) port of GPT-NeoX, the architecture of the Pythia family.

Parameter names mirror transformers' ``GPTNeoXForCausalLM`` so that conversion
is a transpose per matrix (see ``jaxirl.models.hf_io``). Parameters are a plain
nested dict; every function here is pure.

Conventions:
  * Shapes: ``B`` batch, ``T`` tokens in this call, ``S`` key/value slots
    (``S = T`` without a cache, the cache length with one), ``V`` vocabulary,
    ``H`` hidden size, ``L`` layers.
  * Padding: batches are left-padded; ``attention_mask`` is 1 on real tokens.
    Position ids default to ``cumsum(mask) - 1`` so that each row's first real
    token is at position 0, exactly as HF ``generate`` does.
  * dtypes: parameters are float32. ``dtype`` is the compute dtype of matmul
    inputs (``bfloat16``), accumulated in float32 (``jaxirl.models.mixed_precision``);
    layer norms, softmax, the residual stream, logits and the value head are float32.
"""

from __future__ import annotations

import functools
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxirl import parallel
from jaxirl.errors import ConfigError
from jaxirl.models import mixed_precision
from jaxirl.models.gpt_neox_config import SUPPORTED_ACTIVATIONS, GPTNeoXConfig

Params = Any


@struct.dataclass
class KVCache:
    """Preallocated per-layer keys and values for incremental decoding.

    Attributes:
      keys: tuple of L arrays [B, heads, S, head_dim] in the compute dtype (float32 for a
        16-bit one on CPU: :func:`~jaxirl.models.mixed_precision.kv_cache_dtype`), with
        rotary embeddings already applied. Heads before slots, so that a decode step
        reads the cache without transposing it (benchmarks/: 2x faster sampling).
      values: tuple of L arrays [B, heads, S, head_dim].
      mask: [B, S] int32, 1 where a slot holds a real (non-padding) token.
      index: int32 scalar, the next slot to write.
    """

    keys: tuple[chex.Array, ...]
    values: tuple[chex.Array, ...]
    mask: chex.Array
    index: chex.Array

    @classmethod
    def empty(cls, config: GPTNeoXConfig, batch: int, length: int, dtype=jnp.float32) -> KVCache:
        shape = (batch, config.num_attention_heads, length, config.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_hidden_layers))
        return cls(keys=zeros, values=zeros, mask=jnp.zeros((batch, length), jnp.int32),
                   index=jnp.zeros((), jnp.int32))

    def grow(self, length: int) -> KVCache:
        """The same cache with ``length`` slots (>= the current count), new slots empty."""
        extra = length - self.mask.shape[1]
        if extra < 0:
            raise ValueError(f"cannot shrink a KV cache of {self.mask.shape[1]} slots to {length}")
        if extra == 0:
            return self
        pad = ((0, 0), (0, 0), (0, extra), (0, 0))
        return KVCache(keys=tuple(jnp.pad(k, pad) for k in self.keys),
                       values=tuple(jnp.pad(v, pad) for v in self.values),
                       mask=jnp.pad(self.mask, ((0, 0), (0, extra))), index=self.index)


@struct.dataclass
class ModelOutput:
    """What :class:`GPTNeoXForCausalLM` returns.

    Attributes:
      logits: [B, T, V] float32 ([B, stop - start, V] with ``output_span``, as are
        ``values`` and ``final_hidden``).
      values: [B, T] float32 from the value head, or None without one.
      final_hidden: [B, T, H] hidden state after the final layer norm.
      hidden_states: with ``return_hidden``, L+1 arrays [B, T, H]: the embeddings,
        then the residual stream after each block (before the final norm); with
        ``blocks=(start, stop)``, the stream entering block ``start`` and after each
        block run (stop - start + 1 arrays).
      mlp_outputs: with ``return_hidden``, L arrays [B, T, H] (stop - start with
        ``blocks``): each block's MLP output before it is added to the residual stream.
      cache: the updated cache when one was passed in.
      residual: with ``blocks=(start, stop)``, the residual stream [B, T, H] after block
        ``stop - 1`` (all positions, before the final norm): the input of a later call
        with ``blocks=(stop, ...)``. With ``stop`` below the number of layers the call
        ends there and ``logits`` is None.
    """

    logits: chex.Array | None
    values: chex.Array | None = None
    final_hidden: chex.Array | None = None
    hidden_states: tuple[chex.Array, ...] | None = None
    mlp_outputs: tuple[chex.Array, ...] | None = None
    cache: KVCache | None = None
    residual: chex.Array | None = None


def position_ids_from_mask(attention_mask: chex.Array) -> chex.Array:
    """[B, T] 0/1 mask -> [B, T] int32 positions: 0 at each row's first real token.

    Padding slots get position 0 (their outputs are never used).
    """
    positions = jnp.cumsum(attention_mask, axis=-1) - 1
    return jnp.where(attention_mask > 0, positions, 0).astype(jnp.int32)


def last_token_index(mask: chex.Array) -> chex.Array:
    """[..., T] 0/1 mask -> [...] int32 column of each row's last real token (any padding side).

    A row with no real token gives 0 (callers that can meet one combine with
    ``mask.any(-1)``). PPO reads the last response token's value with it, the learned
    reward the last text token's hidden state.
    """
    t = jnp.arange(mask.shape[-1], dtype=jnp.int32)
    return jnp.max(jnp.where(mask > 0, t, 0), axis=-1)


def gelu_exact(x: chex.Array) -> chex.Array:
    """x * Phi(x) written with erf, as torch's GELU is.

    Equal to ``jax.nn.gelu(x, approximate=False)`` (which uses erfc) within 5e-7, and
    on XLA:CPU about 2x faster forward: erf is a rational polynomial, erfc needs an
    exp and a branch (benchmarks/: the MLP activation of every PPO and IRL step).
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


def _activation(name: str):
    approximate = SUPPORTED_ACTIVATIONS[name]
    if approximate is None:
        return {"relu": jax.nn.relu, "silu": jax.nn.silu}[name]
    if not approximate:
        return gelu_exact
    return functools.partial(jax.nn.gelu, approximate=True)


def rotary_cos_sin(positions: chex.Array, rotary_ndims: int, base: float,
                   max_position: int | None = None) -> tuple[chex.Array, chex.Array]:
    """Rotary tables for integer positions [B, T] -> cos, sin [B, T, rotary_ndims] (float32).

    With ``max_position`` (the caller promises 0 <= positions < max_position), the rows
    are gathered from a [max_position, rotary_ndims] table that XLA computed once, with
    values equal to the direct computation's bit for bit (tested). XLA:CPU fuses cos and
    sin into every consumer and so recomputed them per head and per use, forward and
    backward: about a sixth of a learned-reward IRL step at the default's sizes.
    """
    if max_position is None:
        return _rotary_direct(positions, rotary_ndims, base)
    cos, sin = _rotary_table(int(max_position), rotary_ndims, float(base))
    return (jnp.take(cos, positions, axis=0, mode="clip"),
            jnp.take(sin, positions, axis=0, mode="clip"))


def _rotary_direct(positions, rotary_ndims, base):
    inv_freq = 1.0 / (base ** (jnp.arange(0, rotary_ndims, 2, dtype=jnp.float32) / rotary_ndims))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


@functools.lru_cache(maxsize=64)
def _rotary_table(length: int, rotary_ndims: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    # Its own program, with the positions as its argument, so that XLA compiles it as it
    # compiles the direct path inside a model (inv_freq folded at compile time, cos and
    # sin by XLA's kernels). Folded into the caller's program, the table would take the C
    # library's cos and sin; computed op by op, XLA's pow: both differ in the last bits.
    positions = np.arange(length, dtype=np.int32)
    # A compiled program runs on concrete arguments even inside a caller's trace.
    program = jax.jit(_rotary_direct, static_argnums=(1, 2)).lower(
        positions, rotary_ndims, base).compile()
    cos, sin = program(positions)
    return np.asarray(cos), np.asarray(sin)


def apply_rotary(x: chex.Array, cos: chex.Array, sin: chex.Array) -> chex.Array:
    """Rotates the leading ``cos.shape[-1]`` dims of each head of x [B, T, heads, D] (HF rotate_half).

    cos, sin: [B, T, rot] float32 (:func:`rotary_cos_sin`).
    """
    rot = cos.shape[-1]
    if rot == 0:
        return x
    x_rot, x_pass = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = jnp.concatenate([-x_rot[..., half:], x_rot[..., :half]], axis=-1)
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    x_rot = (x_rot.astype(jnp.float32) * cos + rotated.astype(jnp.float32) * sin).astype(x.dtype)
    return jnp.concatenate([x_rot, x_pass], axis=-1)


@jax.custom_vjp
def apply_rotary_whole_head_grad(x: chex.Array, cos: chex.Array, sin: chex.Array) -> chex.Array:
    """:func:`apply_rotary`, differentiated through whole-head products (the same values).

    Its gradient equals autodiff's of :func:`apply_rotary` to the bit (tested), but XLA:CPU
    computes it without padding and concatenating the whole K gradient: the learned
    reward's last-query block (IRL) steps about 7% faster on one core. cos and sin get no
    gradient.
    """
    return apply_rotary(x, cos, sin)


def rotate_half_matrix(head_dim: int, rot: int) -> np.ndarray:
    """[D, D] signed permutation R: ``x @ R`` is HF's rotate_half of x's first ``rot`` dims
    (the remaining D - rot columns are zero)."""
    r, half = np.zeros((head_dim, head_dim), np.float32), rot // 2
    r[np.arange(half) + half, np.arange(half)] = -1.0
    r[np.arange(half), np.arange(half) + half] = 1.0
    return r


def _whole_head_tables(cos, sin, head_dim):
    """cos, sin [B, T, rot] -> C = [cos, 1...], S = [sin, 0...] as [B, T, 1, head_dim]."""
    widths = [(0, 0)] * (cos.ndim - 1) + [(0, head_dim - cos.shape[-1])]
    return (jnp.pad(cos, widths, constant_values=1.0)[:, :, None, :],
            jnp.pad(sin, widths)[:, :, None, :])


def _rotary_fwd(x, cos, sin):
    # Under differentiation only: y = x * C + (x @ R) * S over whole heads, equal to the
    # primal's slices and concatenation to the bit (R has one +-1 per column), and on
    # XLA:CPU cheaper to differentiate (see _rotary_bwd).
    rot, d = cos.shape[-1], x.shape[-1]
    if rot == 0:
        return x, (cos, sin)
    c, s = _whole_head_tables(cos, sin, d)
    x32 = x.astype(jnp.float32)
    rotated = jnp.einsum("bthd,de->bthe", x32, jnp.asarray(rotate_half_matrix(d, rot)))
    return (x32 * c + rotated * s).astype(x.dtype), (cos, sin)


def _rotary_bwd(residuals, g):
    # y = x * C + (x @ R) * S, with C = [cos, 1...] and S = [sin, 0...] over the head dim,
    # so dx = g * C + (g * S) @ R^T. Written as whole-head products: autodiff of the
    # forward's slices and concatenations gave XLA:CPU pads and concatenations of the
    # whole K gradient, about 10% of an IRL step. R^T has one +-1 per row, so the
    # product is exact and dx equals the autodiff gradient.
    cos, sin = residuals
    dtype = g.dtype  # the output's, which is x's
    rot, d = cos.shape[-1], g.shape[-1]
    zero_tables = (jnp.zeros_like(cos), jnp.zeros_like(sin))
    if rot == 0:
        return (g, *zero_tables)
    cos_full, sin_full = _whole_head_tables(cos, sin, d)
    g = g.astype(jnp.float32)
    rotated_back = jnp.einsum("bthe,de->bthd", g * sin_full,
                              jnp.asarray(rotate_half_matrix(d, rot)))
    return ((g * cos_full + rotated_back).astype(dtype), *zero_tables)


apply_rotary_whole_head_grad.defvjp(_rotary_fwd, _rotary_bwd)


def _take_rows(x: chex.Array, index: chex.Array) -> chex.Array:
    """x [B, T, ...] and index [B] or [B, Q] -> [B, 1 or Q, ...]: row b's entries at index[b]."""
    index = index[:, None] if index.ndim == 1 else index
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


class Linear(nn.Module):
    """``flax.linen.Dense`` (same parameters and init) with its matmul in ``dtype``, float32 out.

    The bias stays float32 and is added to the float32 accumulator.
    """

    features: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        if self.has_variable("params", "kernel_nk"):  # mixed_precision.decode_layout's
            y = mixed_precision.linear_nk(x, self.get_variable("params", "kernel_nk"), self.dtype)
        else:
            kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
            y = mixed_precision.linear(x, kernel, self.dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return y


class FusedQKV(nn.Module):
    """HF's fused ``query_key_value`` projection (a :class:`Linear` of 3 * hidden outputs).

    The output columns interleave per head, ``[heads, (q | k | v), head_dim]``: the
    port reshapes rather than permuting weights, so loading is a transpose only.
    """

    num_heads: int
    head_dim: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x, query_index=None, key_value_params: bool = False):
        """x [B, T, H] -> q, k, v [B, T, heads, D]; q is [B, Q, heads, D] with ``query_index``.

        With ``query_index`` [B] (Q = 1) or [B, Q], keys and values come from all T
        tokens and the queries from tokens ``query_index[b]`` of each row only: the
        query columns of the kernel multiply Q rows instead of T. With
        ``key_value_params`` as well, returns (q, {"kv_kernel", "kv_bias"}) instead: the
        key/value projection unapplied, for :func:`_attend_single_query`.
        """
        b, t, h = x.shape
        heads, d = self.num_heads, self.head_dim
        if self.has_variable("params", "q_kernel"):  # split_qkv's training layout
            return self._split_layout(x, query_index, key_value_params)
        # The kernel's param is created first, so that init draws the same numbers.
        nk = query_index is None and self.has_variable("params", "kernel_nk")
        kernel = (self.get_variable("params", "kernel_nk") if nk  # decode_layout's
                  else self.param("kernel", self.kernel_init, (h, 3 * heads * d)))
        bias = (self.param("bias", nn.initializers.zeros_init(), (3 * heads * d,))
                if self.use_bias else jnp.zeros((3 * heads * d,), jnp.float32))
        if query_index is None:
            qkv = (mixed_precision.linear_nk(x, kernel, self.dtype) if nk
                   else mixed_precision.linear(x, kernel, self.dtype)) + bias
            q, k, v = jnp.split(qkv.reshape(b, t, heads, 3 * d), 3, axis=-1)
            return q, k, v
        parts = split_qkv({"kernel": kernel, "bias": bias}, heads)
        if key_value_params:
            return _query_products(x, query_index, parts, heads, self.dtype), parts
        return _split_products(x, query_index, parts, heads, self.dtype)

    def _split_layout(self, x, query_index, key_value_params: bool = False):
        """The query path above on :func:`split_qkv`'s params, already split: the same
        products, without slicing the fused kernel (nor, under differentiation, padding
        its gradient back)."""
        parts = {name: self.get_variable("params", name)
                 for name in ("q_kernel", "kv_kernel", "q_bias", "kv_bias")
                 if self.has_variable("params", name)}
        if key_value_params:
            return _query_products(x, query_index, parts, self.num_heads, self.dtype), parts
        return _split_products(x, query_index, parts, self.num_heads, self.dtype)


def _query_products(x, query_index, parts, num_heads: int, dtype):
    """q [B, Q, heads, D] of the tokens at ``query_index`` (None: all T) from
    :func:`split_qkv`'s parts."""
    q_rows = x if query_index is None else _take_rows(x, query_index)
    q = mixed_precision.linear(q_rows, parts["q_kernel"], dtype)
    if "q_bias" in parts:
        q = q + parts["q_bias"]
    return q.reshape(q.shape[0], q.shape[1], num_heads, -1)


def _split_products(x, query_index, parts, num_heads: int, dtype):
    """q, k, v [B, ., heads, D] from :func:`split_qkv`'s parts (biases optional): keys and
    values from every token of x [B, T, H], queries from ``query_index``'s (None: all)."""
    b, t, _ = x.shape
    kv = mixed_precision.linear(x, parts["kv_kernel"], dtype)
    if "kv_bias" in parts:
        kv = kv + parts["kv_bias"]
    k, v = jnp.split(kv.reshape(b, t, num_heads, -1), 2, axis=-1)
    return _query_products(x, query_index, parts, num_heads, dtype), k, v


def split_qkv(qkv: Params, num_heads: int) -> Params:
    """A fused ``query_key_value`` param dict -> the query and key/value parts apart.

    ``kernel`` [..., H, heads * 3 * D] (HF's per-head [q | k | v] columns) becomes
    ``q_kernel`` [..., H, heads * D] and ``kv_kernel`` [..., H, heads * 2 * D] (per head
    [k | v]), the bias likewise; leading dims (stacked seeds) pass through. These are the
    matrices :class:`FusedQKV`'s query path slices out of the fused kernel, so a model
    reading them computes the same numbers, while a training loop that converts once
    (IRL: per epoch) no longer slices the fused kernel, and pads its gradient back, at
    every step. :func:`fuse_qkv` is the inverse.
    """
    out = {}
    for name in ("kernel", "bias"):
        if name not in qkv:
            continue
        w = qkv[name]
        parts = w.reshape(*w.shape[:-1], num_heads, 3, w.shape[-1] // (3 * num_heads))
        out[f"q_{name}"] = parts[..., 0, :].reshape(*w.shape[:-1], -1)
        out[f"kv_{name}"] = parts[..., 1:, :].reshape(*w.shape[:-1], -1)
    return out


def fuse_qkv(split: Params, num_heads: int) -> Params:
    """The inverse of :func:`split_qkv`: HF's fused ``query_key_value`` layout again."""
    out = {}
    for name in ("kernel", "bias"):
        if f"q_{name}" not in split:
            continue
        q, kv = split[f"q_{name}"], split[f"kv_{name}"]
        lead = q.shape[:-1]
        q = q.reshape(*lead, num_heads, 1, -1)
        kv = kv.reshape(*lead, num_heads, 2, q.shape[-1])
        out[name] = jnp.concatenate([q, kv], axis=-2).reshape(*lead, -1)
    return out


# Attention kernels: "auto" resolves by backend (see :func:`resolve_attention`).
ATTENTION_IMPLS = ("auto", "rows", "xla", "cudnn")


def resolve_attention(implementation: str) -> str:
    """The kernel ``implementation`` names on this backend.

    ``"auto"`` is ``"rows"`` on CPU (the CPU-tuned row-by-row path below) and ``"xla"``
    elsewhere: ``jax.nn.dot_product_attention``, which batches every row and head in
    one fused program on GPU and TPU. ``"cudnn"`` asks for cuDNN's fused kernel
    (GPU, bf16/fp16 compute only).
    """
    if implementation not in ATTENTION_IMPLS:
        raise ConfigError(f"--attention must be one of {', '.join(ATTENTION_IMPLS)}, "
                          f"got {implementation!r}")
    if implementation == "auto":
        return "rows" if jax.default_backend() == "cpu" else "xla"
    return implementation


class Attention(nn.Module):
    config: GPTNeoXConfig
    dtype: Any = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, x, cos, sin, key_mask, layer_cache, cache_index, query_index=None):
        """x [B, T, H]; key_mask [B, T, S] bool; layer_cache (k, v) [B, heads, S, D] or None.

        With ``query_index`` [B] (or [B, Q]) int32, keys and values come from all T
        tokens but only the tokens at ``query_index`` of each row query them: the
        output is [B, 1 (or Q), H], equal to those rows of the full output.
        """
        cfg = self.config
        b, t, _ = x.shape
        init = nn.initializers.normal(cfg.initializer_range)
        implementation = resolve_attention(self.attention)
        qkv = FusedQKV(cfg.num_attention_heads, cfg.head_dim, cfg.attention_bias, self.dtype,
                       init, name="query_key_value")
        if query_index is not None and layer_cache is None and implementation == "rows":
            q, kv = qkv(x, query_index, key_value_params=True)
            q = apply_rotary(q, *(_take_rows(a, query_index) for a in (cos, sin)))
            out = _attend_single_query(x, q, kv, cos, sin, _take_rows(key_mask, query_index),
                                       self.dtype)
            out = out.reshape(b, q.shape[1], cfg.hidden_size)
            return Linear(cfg.hidden_size, cfg.attention_bias, self.dtype, init,
                          name="dense")(out), None
        q, k, v = qkv(x, query_index)
        # The whole-head gradient pays in the learned reward's last-query block (IRL). PPO's
        # update gained nothing from it, and its other fusions changed PPO's float rounding
        # (so every study number): the other paths keep plain autodiff.
        rope = apply_rotary if query_index is None else apply_rotary_whole_head_grad
        k = rope(k, cos, sin)
        if query_index is not None:
            cos, sin, key_mask = (_take_rows(a, query_index) for a in (cos, sin, key_mask))
            t = q.shape[1]
        q = rope(q, cos, sin)
        # [B, heads, T, D] from here on: the cache's layout.
        q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
        new_cache = None
        if layer_cache is not None:
            k_all, v_all = layer_cache
            k = jax.lax.dynamic_update_slice(k_all, k.astype(k_all.dtype), (0, 0, cache_index, 0))
            v = jax.lax.dynamic_update_slice(v_all, v.astype(v_all.dtype), (0, 0, cache_index, 0))
            new_cache = (k, v)
        if implementation != "rows":
            # cuDNN's kernel takes half-precision operands only; XLA's stays float32 as below.
            fused_dtype = self.dtype if implementation == "cudnn" else jnp.float32
            out = _attend_fused(q, k, v, key_mask, fused_dtype, implementation)
        elif layer_cache is None and query_index is None and t >= 2 * QUERY_CHUNK:
            out = _attend_long(q, k, v, key_mask, jnp.float32)
        else:
            out = _attend(q, k, v, key_mask, jnp.float32)
        out = out.reshape(b, t, cfg.hidden_size)
        return Linear(cfg.hidden_size, cfg.attention_bias, self.dtype, init, name="dense")(out), new_cache


# Query rows per attention chunk on long sequences without a cache.
QUERY_CHUNK = 128


def _attend_long(q, k, v, key_mask, dtype):
    """Causal attention of a long sequence without a cache; same shapes as :func:`_attend`.

    The attention core of long sequences is memory-bound on CPU (BENCHMARKS.md), so
    its scores are kept cache-sized: one batch row at a time (``lax.map``), and causal
    query chunks, where chunk [i, j) reads only the keys before j and so skips the
    masked upper triangle. The softmax is normalised after the value product (on
    [T, D] rather than [T, S]). At Pythia-70M's shapes (8 x 512 tokens) this core takes
    43 ms per layer on one core against 85 ms for all rows with chunks and 134 ms
    for one block.
    """
    t, scale = q.shape[2], q.shape[-1] ** -0.5

    def one_row(row):
        q, k, v, mask = row  # [heads, T, D] x 3, [T, T]
        outs = []
        for i in range(0, t, QUERY_CHUNK):
            j = min(i + QUERY_CHUNK, t)
            scores = mixed_precision.einsum("htd,hsd->hts", q[:, i:j], k[:, :j], dtype) * scale
            scores = jnp.where(mask[None, i:j, :j], scores, jnp.finfo(jnp.float32).min)
            weights = jnp.exp(scores - jnp.max(scores, axis=-1, keepdims=True))
            out = mixed_precision.einsum("hts,hsd->htd", weights, v[:, :j], dtype)
            outs.append(out / jnp.sum(weights, axis=-1, keepdims=True))
        return jnp.concatenate(outs, axis=1)

    return jnp.swapaxes(jax.lax.map(one_row, (q, k, v, key_mask)), 1, 2)


def _attend_fused(q, k, v, key_mask, dtype, implementation):
    """:func:`_attend` through ``jax.nn.dot_product_attention`` (the GPU/TPU path).

    The same semantics: operands in ``dtype`` (float32 but for cuDNN), softmax in
    float32 (masked keys at a large negative score, so an all-masked padding row is
    uniform, never NaN); the output is float32 like :func:`_attend`'s.
    """
    q, k, v = (jnp.swapaxes(x, 1, 2).astype(dtype) for x in (q, k, v))  # [B, T|S, heads, D]
    out = jax.nn.dot_product_attention(q, k, v, mask=key_mask[:, None],
                                       implementation=implementation)
    return out.astype(jnp.float32)


def _attend(q, k, v, key_mask, dtype):
    """q [B, heads, T, D], k/v [B, heads, S, D], key_mask [B, T, S] -> [B, T, heads, D] float32.

    The two matmuls take ``dtype`` operands and accumulate in float32.
    """
    scores = mixed_precision.einsum("bhtd,bhsd->bhts", q, k, dtype)
    scores = scores * (q.shape[-1] ** -0.5)
    scores = jnp.where(key_mask[:, None, :, :], scores, jnp.finfo(jnp.float32).min)
    # Softmax in float32: bf16 logits lose the small attention weights.
    probs = jax.nn.softmax(scores, axis=-1)
    return mixed_precision.einsum("bhts,bhsd->bthd", probs, v, dtype)


def _attend_single_query(x, q, kv, cos, sin, key_mask, dtype):
    """Attention of a few query tokens per row, without every token's keys and values.

    x [B, T, H] (the block's normed input), q [B, Q, heads, D] (rotated), ``kv`` the
    key/value projection in :func:`split_qkv`'s layout (``kv_kernel`` [H, heads * 2 * D],
    per head [k | v]; ``kv_bias`` optional), cos/sin [B, T, rot] of every token,
    key_mask [B, Q, T] -> [B, Q, heads, D] float32.

    For Q queries and T tokens, projecting every token's key and value costs
    T·H·2·heads·D multiply-adds. Reassociated, a query's scores and output need far
    less: the non-rotary key dims enter the score as x_t · (W_k q), the value as
    (Σ_t p_t x_t) W_v + b_v (the weights sum to 1), and only the ``rot`` rotary dims of
    each key are projected per token (their rotation depends on t). The key bias's
    non-rotary part adds q · b_k to every score of a row, which softmax ignores but is
    kept. Equal to projecting keys and values to float rounding (tested); the learned
    reward's last-query block at the default's sizes runs its attention about 4× faster
    forward and backward.
    """
    _, _, heads, d = q.shape
    rot = cos.shape[-1]
    kernel = kv["kv_kernel"].reshape(-1, heads, 2 * d)
    bias = kv["kv_bias"].reshape(heads, 2 * d) if "kv_bias" in kv else None
    q32 = q.astype(jnp.float32)
    scores = jnp.zeros(q.shape[:3] + (x.shape[1],), jnp.float32)
    if rot:
        k_rot = mixed_precision.einsum("bth,hnr->btnr", x, kernel[..., :rot], dtype)
        if bias is not None:
            k_rot = k_rot + bias[:, :rot]
        k_rot = apply_rotary(k_rot, cos, sin)
        scores = scores + mixed_precision.einsum("btnr,bqnr->bqnt", k_rot, q32[..., :rot], dtype)
    if rot < d:
        q_pass = q32[..., rot:]
        k_query = mixed_precision.einsum("hnd,bqnd->bqnh", kernel[..., rot:d], q_pass, dtype)
        scores = scores + mixed_precision.einsum("bth,bqnh->bqnt", x, k_query, dtype)
        if bias is not None:
            scores = scores + jnp.einsum("bqnd,nd->bqn", q_pass, bias[:, rot:d])[..., None]
    scores = scores * (d ** -0.5)
    scores = jnp.where(key_mask[:, :, None, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    mean_input = mixed_precision.einsum("bqnt,bth->bqnh", probs, x, dtype)
    out = mixed_precision.einsum("bqnh,hnd->bqnd", mean_input, kernel[..., d:], dtype)
    return out if bias is None else out + bias[:, d:]


class MLP(nn.Module):
    config: GPTNeoXConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)
        h = Linear(cfg.intermediate_size, dtype=self.dtype, kernel_init=init, name="dense_h_to_4h")(x)
        h = _activation(cfg.hidden_act)(h)  # float32
        return Linear(cfg.hidden_size, dtype=self.dtype, kernel_init=init, name="dense_4h_to_h")(h)


class Block(nn.Module):
    config: GPTNeoXConfig
    dtype: Any = jnp.float32
    attention: str = "auto"

    @nn.compact
    def __call__(self, x, cos, sin, key_mask, layer_cache, cache_index, query_index=None):
        """Returns (new residual [B, T, H], MLP output [B, T, H], updated layer cache).

        With ``query_index`` [B] (or [B, Q]) int32, only those tokens of each row are
        computed past the keys and values (T becomes 1, or Q, in the outputs): a reward
        read at one token then skips the query, attention output and MLP work of the others.
        """
        cfg = self.config
        norm = functools.partial(nn.LayerNorm, epsilon=cfg.layer_norm_eps, dtype=jnp.float32)
        ln1 = norm(name="input_layernorm")(x).astype(self.dtype)
        attn, new_cache = Attention(cfg, self.dtype, self.attention, name="attention")(
            ln1, cos, sin, key_mask, layer_cache, cache_index, query_index)
        if query_index is not None:
            x = _take_rows(x, query_index)
        mlp = MLP(cfg, self.dtype, name="mlp")
        if cfg.use_parallel_residual:
            mlp_out = mlp(norm(name="post_attention_layernorm")(x).astype(self.dtype))
            out = x + attn.astype(x.dtype) + mlp_out.astype(x.dtype)
        else:
            x = x + attn.astype(x.dtype)
            mlp_out = mlp(norm(name="post_attention_layernorm")(x).astype(self.dtype))
            out = x + mlp_out.astype(x.dtype)
        return out, mlp_out, new_cache


def block_class(remat: bool):
    """:class:`Block`, or its ``jax.checkpoint`` (``nn.remat``) form."""
    return nn.remat(Block) if remat else Block


class ValueHead(nn.Module):
    """trlx's value head: Linear(H, 2H) -> ReLU -> Linear(2H, 1), in float32."""

    hidden_size: int

    @nn.compact
    def __call__(self, h):
        h = nn.Dense(2 * self.hidden_size, name="dense_0")(h.astype(jnp.float32))
        return nn.Dense(1, name="dense_1")(jax.nn.relu(h))[..., 0]


class LMHead(nn.Module):
    """The untied output projection: ``weight`` [V, H], PyTorch's (and HF's) layout.

    Stored [V, H] rather than Flax's [H, V] kernel because XLA:CPU's matmul of a
    decode step, [B, H] x [H, V] with B = 16 at Pythia-70M's V = 50304, runs in
    15 ms instead of 23 ms with the weight's rows contiguous per vocabulary entry
    (measured, one core; BENCHMARKS.md). The init draws an [H, V] matrix and
    transposes it, so random parameters match the former Dense kernel exactly.
    """

    vocab_size: int
    initializer_range: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        """``x`` [..., H] -> logits [..., V] float32 (a ``dtype`` matmul)."""
        normal = nn.initializers.normal(self.initializer_range)
        weight = self.param("weight", lambda key, shape: normal(key, shape[::-1]).T,
                            (self.vocab_size, x.shape[-1]))
        return _project_to_vocab(x, weight, self.dtype)


def _project_to_vocab(x, weight, dtype):
    """x [..., H] and an LM head weight [V, H] -> logits [..., V] float32."""
    rows = x.size // x.shape[-1]
    if (mixed_precision.is_low_precision(dtype)
            or mixed_precision.row_reduce_pays(rows, weight.shape, dtype)):  # a CPU decode step
        return mixed_precision.linear_nk(x, weight, dtype)
    return jnp.einsum("...h,vh->...v", x, weight)


class GPTNeoXForCausalLM(nn.Module):
    """GPT-NeoX causal LM with an optional scalar value head.

    Call with ``input_ids`` [B, T] int32 and ``attention_mask`` [B, T] (1 = real
    token). With ``cache`` (a :class:`KVCache`), the T tokens are written at slots
    ``cache.index .. cache.index + T`` and attend to every valid earlier slot;
    ``position_ids`` must then be given by the caller (a ValueError otherwise).
    """

    config: GPTNeoXConfig
    dtype: Any = jnp.float32
    with_value_head: bool = False
    # Attention kernel (see resolve_attention) and per-block rematerialisation: with
    # ``remat`` each block's activations are recomputed in the backward pass instead of
    # stored, trading about a third more compute for memory on long sequences.
    attention: str = "auto"
    remat: bool = False

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                 return_hidden: bool = False,
                 output_span: tuple[int, int] | None = None,
                 blocks: tuple[int, int] | None = None,
                 residual: chex.Array | None = None) -> ModelOutput:
        """See the class docstring; ``output_span = (start, stop)`` (static ints) computes
        ``final_hidden``, logits and values for positions ``start .. stop-1`` only: PPO
        reads only the response's, and the LM head is the largest matmul.

        ``blocks = (start, stop)`` (static ints) runs blocks ``start .. stop-1`` only. With
        ``start > 0``, ``residual`` [B, T, H] float32 is the residual stream entering
        block ``start`` (``input_ids`` then gives only the shape); with ``stop`` below
        the number of layers the call ends there and returns ``residual`` (no logits).
        Splitting a forward pass this way computes the same numbers as one call: PPO
        runs its frozen bottom blocks once per rollout instead of once per minibatch.
        """
        cfg = self.config
        start, stop = (0, cfg.num_hidden_layers) if blocks is None else blocks
        if not 0 <= start <= stop <= cfg.num_hidden_layers:
            raise ValueError(f"blocks {blocks} is not a range of the model's "
                             f"{cfg.num_hidden_layers} layers")
        if (start > 0) != (residual is not None):
            raise ValueError("residual must be given exactly when blocks starts above 0")
        if blocks is not None and cache is not None:
            raise ValueError("blocks cannot be combined with a KV cache")
        if cache is not None and position_ids is None:
            # Positions derived from the new tokens' mask alone would restart at 0 at
            # every call: a decode step would run at position 0, silently wrong.
            raise ValueError("position_ids must be given with a KV cache (the tokens' "
                             "positions continue the cached ones)")
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), jnp.int32)
        attention_mask = attention_mask.astype(jnp.int32)
        max_position = None  # given positions may lie anywhere: computed directly
        if position_ids is None:
            position_ids = position_ids_from_mask(attention_mask)
            max_position = t  # derived from the mask, in [0, t): the tables are gathered
        if cache is None:
            slot_mask = attention_mask
            query_slots = jnp.arange(t)
            index = jnp.zeros((), jnp.int32)
        else:
            index = cache.index
            slot_mask = jax.lax.dynamic_update_slice(cache.mask, attention_mask, (0, index))
            query_slots = index + jnp.arange(t)
        causal = query_slots[:, None] >= jnp.arange(slot_mask.shape[1])[None, :]
        key_mask = causal[None, :, :] & (slot_mask[:, None, :] > 0)

        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="embed_in",
                         embedding_init=nn.initializers.normal(cfg.initializer_range))
        # The residual stream stays float32 so that bf16 compute does not accumulate drift.
        x = embed(input_ids).astype(jnp.float32) if residual is None else residual
        cos, sin = rotary_cos_sin(position_ids, cfg.rotary_ndims, cfg.rotary_emb_base,
                                  max_position)
        hidden_states, mlp_outputs, new_keys, new_values = [x], [], [], []
        for i in range(start, stop):
            layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
            x, mlp_out, new_layer_cache = block_class(self.remat)(
                cfg, self.dtype, self.attention, name=f"layers_{i}")(
                x, cos, sin, key_mask, layer_cache, index)
            # On a mesh the residual stream stays split by rows, so that FSDP gathers each
            # weight rather than re-splitting activations by features (no-op elsewhere).
            x = parallel.constrain_rows(x)
            if return_hidden:
                hidden_states.append(x)
                mlp_outputs.append(mlp_out.astype(jnp.float32))
            if new_layer_cache is not None:
                new_keys.append(new_layer_cache[0])
                new_values.append(new_layer_cache[1])
        if stop < cfg.num_hidden_layers:
            return ModelOutput(logits=None, residual=x,
                               hidden_states=tuple(hidden_states) if return_hidden else None,
                               mlp_outputs=tuple(mlp_outputs) if return_hidden else None)
        residual = x if blocks is not None else None
        if output_span is not None:
            x = x[:, output_span[0]:output_span[1]]
        final = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, name="final_layer_norm")(x)
        if cfg.tie_word_embeddings:
            # The compute-dtype copy cast_for_compute adds (the sampler's params), where
            # given: the input lookup above keeps the float32 embedding either way.
            head = mixed_precision.TIED_HEAD_WEIGHT
            weight = (self.get_variable("params", head) if self.has_variable("params", head)
                      else embed.embedding)
            logits = _project_to_vocab(final, weight, self.dtype)
        else:
            logits = LMHead(cfg.vocab_size, cfg.initializer_range, self.dtype,
                            name="embed_out")(final)
        values = ValueHead(cfg.hidden_size, name="value_head")(final) if self.with_value_head else None
        new_cache = None
        if cache is not None:
            new_cache = KVCache(keys=tuple(new_keys), values=tuple(new_values), mask=slot_mask,
                                index=index + t)
        return ModelOutput(
            logits=logits.astype(jnp.float32),
            values=values,
            final_hidden=final,
            hidden_states=tuple(hidden_states) if return_hidden else None,
            mlp_outputs=tuple(mlp_outputs) if return_hidden else None,
            cache=new_cache,
            residual=residual,
        )


def init_params(config: GPTNeoXConfig, key: chex.PRNGKey, with_value_head: bool = False) -> Params:
    """Random parameters (HF's normal(initializer_range) init for matrices)."""
    model = GPTNeoXForCausalLM(config, with_value_head=with_value_head)
    dummy = jnp.zeros((1, 2), jnp.int32)
    return model.init(key, dummy)["params"]


def add_value_head(config: GPTNeoXConfig, params: Params, key: chex.PRNGKey) -> Params:
    """Returns params with a freshly initialised value head added (trunk untouched)."""
    head = ValueHead(config.hidden_size).init(key, jnp.zeros((1, config.hidden_size)))["params"]
    return {**params, "value_head": head}
