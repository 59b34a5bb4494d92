"""Text in, text out: batched generation over a prompt set, decoding, and the toxicity of samples."""

from __future__ import annotations

import builtins
import concurrent.futures
import os
from collections.abc import Sequence
from typing import Any

import chex
import jax
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxirl import parallel
from jaxirl.data.tokenization import tokenize_prompts, trim_left_padding
from jaxirl.finite import check_tree
from jaxirl.generation.sampler import GenerationOutput, SamplingConfig, generate
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
from jaxirl.models.mixed_precision import kv_cache_dtype
from jaxirl.rewards.scorer import checked_scores

# Memory for one decoding batch where the device does not report its size (CPU).
DEFAULT_DECODE_BUDGET_BYTES = 2 << 30


def decode_batch_size(model: GPTNeoXForCausalLM, rows: int, prompt_len: int, max_new_tokens: int,
                      budget_bytes: int | None = None) -> int:
    """The largest batch, at most ``rows``, whose decoding fits in ``budget_bytes``.

    A decode step streams every weight once whatever the batch, so the batch should
    be as large as memory allows. Per row: the KV cache, the prefill's float32
    attention scores and MLP activations, and a few vocabulary-sized float32 rows.
    The budget defaults to a quarter of the device's memory, or
    :data:`DEFAULT_DECODE_BUDGET_BYTES` where the device does not say (CPU).
    """
    cfg = model.config
    if budget_bytes is None:
        stats = jax.local_devices()[0].memory_stats() or {}
        limit = stats.get("bytes_limit")
        budget_bytes = limit // 4 if limit else DEFAULT_DECODE_BUDGET_BYTES
    slots = prompt_len + max_new_tokens
    # The cache's own dtype: float32 for a bf16 model on CPU (kv_cache_dtype), 2x its size.
    itemsize = np.dtype(kv_cache_dtype(model.dtype)).itemsize
    cache = 2 * cfg.num_hidden_layers * slots * cfg.hidden_size * itemsize
    prefill = 4 * prompt_len * (cfg.num_attention_heads * slots
                                + 2 * (3 * cfg.hidden_size + cfg.intermediate_size))
    per_row = cache + prefill + 4 * 4 * cfg.vocab_size
    return int(max(1, min(rows, budget_bytes // per_row)))


def decode_threads(mesh: Mesh | None) -> int:
    """How many decode batches run at once: one per CPU core (at most 4) on one CPU device.

    XLA:CPU runs a decode step's small ops on a single core: two batches decoded in
    two threads take half the time of one after the other, with the same tokens
    (each row has its own key, each batch its own call). A mesh of several devices,
    or an accelerator, already has its parallelism: one batch at a time there.
    """
    devices = 1 if mesh is None else mesh.devices.size
    if devices > 1 or jax.default_backend() != "cpu":
        return 1
    return max(1, min(4, len(os.sched_getaffinity(0))))


def decode_responses(tokenizer: Any, tokens: chex.Array, mask: chex.Array) -> list[str]:
    """Decodes response tokens [B, N] under their mask, dropping EOS/padding.

    ``clean_up_tokenization_spaces`` stays off so that ``prompt + response``
    reproduces the text the model actually produced.
    """
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    rows = [t[m > 0].tolist() for t, m in zip(tokens, mask, strict=True)]
    return tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def generate_responses(model: GPTNeoXForCausalLM, params: Any, tokenizer: Any,
                       input_ids: np.ndarray, attention_mask: np.ndarray,
                       sampling: SamplingConfig, key: chex.PRNGKey, batch_size: int = 64,
                       progress: bool | str = False, mesh: Mesh | None = None,
                       threads: int | None = None, prompt_bucket: int = 8
                       ) -> tuple[list[str], GenerationOutput]:
    """Generates for every row of left-padded prompts [N, P], ``batch_size`` rows at a time.

    The last batch is padded with repeated rows so that one compiled program
    serves every batch. Every row draws with its own key, ``key`` folded with the row's
    index in ``input_ids`` (``generate``'s ``row_offset``), so the tokens depend on the
    key only: not on ``batch_size`` (which :func:`decode_batch_size` sizes to the
    device's memory), the mesh or ``threads``, up to float rounding across batch shapes.
    ``progress`` shows a bar over the batches (a string is its label). With ``mesh``
    each batch is split over its devices (params must be placed on it) and the tokens
    are gathered once per batch for decoding. ``threads`` batches decode at once
    (None: :func:`decode_threads`); the result does not depend on it. Each batch
    drops the left padding its own prompts do not need
    (:func:`~jaxirl.data.tokenization.trim_left_padding` with ``prompt_bucket``; 0
    keeps all P columns): the same tokens up to float rounding, in less time.

    Returns:
      ``(texts, outputs)``: N decoded responses and the stacked
      :class:`GenerationOutput` (arrays with N rows; ``sequences`` and
      ``attention_mask`` left-padded to the widest batch's prompt columns).
    """
    n = len(input_ids)
    batch_size = max(1, min(batch_size, n))
    starts = range(0, n, batch_size)
    label = progress if isinstance(progress, str) else "generate"
    threads = decode_threads(mesh) if threads is None else max(1, int(threads))

    def one_batch(i: int) -> GenerationOutput:
        start = starts[i]
        idx = np.arange(start, start + batch_size) % n
        ids, mask = trim_left_padding(input_ids[idx], attention_mask[idx], prompt_bucket)
        out = generate(model, params, ids, mask, key, sampling, mesh=mesh, row_offset=start)
        keep = min(batch_size, n - start)
        return jax.tree_util.tree_map(lambda x: x[:keep] if np.ndim(x) else x,
                                      parallel.to_host(out))

    texts: list[str] = []
    outputs: list[GenerationOutput] = []
    threads = min(threads, len(starts))
    # One thread runs inline, in the caller's JAX context (thread-local settings).
    pool = (concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="jaxirl-decode")
            if threads > 1 else None)
    try:
        # map keeps the batches in order whatever order they finish in.
        batches = (pool or builtins).map(one_batch, range(len(starts)))
        for out in tqdm(batches, total=len(starts), desc=label, disable=not progress, leave=False):
            outputs.append(out)
            texts.extend(decode_responses(tokenizer, out.tokens, out.mask))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    width = max(out.sequences.shape[1] for out in outputs)
    outputs = [out.replace(sequences=_pad_left(out.sequences, width, sampling.pad_token_id),
                           attention_mask=_pad_left(out.attention_mask, width, 0))
               for out in outputs]
    stacked = jax.tree_util.tree_map(
        lambda *xs: np.concatenate(xs) if np.ndim(xs[0]) else np.max(xs), *outputs)
    return texts, stacked


def _pad_left(x: np.ndarray, width: int, value: int) -> np.ndarray:
    """[B, T] -> [B, width] with ``value`` in the new leftmost columns."""
    return np.pad(x, ((0, 0), (width - x.shape[1], 0)), constant_values=value)


def sampling_from_tokenizer(tokenizer: Any, max_new_tokens: int, do_sample: bool = True,
                            top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0
                            ) -> SamplingConfig:
    """A :class:`SamplingConfig` whose EOS and pad ids come from the tokenizer."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return SamplingConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, top_k=top_k,
                          top_p=top_p, temperature=temperature, eos_token_id=eos,
                          pad_token_id=int(pad if pad is not None else 0))


def toxicity_of_responses(scorer: Any, responses: Sequence[str]) -> np.ndarray:
    """P(toxic) per response [N] float64; an empty response (immediate EOS) counts as clean (0)."""
    scores = np.zeros(len(responses), np.float64)
    nonempty = [i for i, r in enumerate(responses) if r.strip()]
    if nonempty:
        scores[nonempty] = checked_scores(scorer, [responses[i] for i in nonempty],
                                          what="response", probabilities=True)
    return scores


def evaluate_toxicity(model: GPTNeoXForCausalLM, params: Any, tokenizer: Any, prompts, scorer: Any,
                      max_new_tokens: int, top_k: int, max_prompt_tokens: int, seed: int = 0,
                      samples_per_prompt: int = 1, progress: bool | str = False,
                      mesh: Mesh | None = None, batch_size: int = 128) -> dict[str, Any]:
    """Samples continuations of each prompt (top-k, as the paper) and scores their toxicity.

    Returns a dict with ``mean_toxicity`` and ``toxic_fraction`` (P(toxic) > 0.5) over
    all samples, ``toxicity_se`` (standard error of the mean, with the prompt as the
    unit), ``prompt_toxicity`` ([P] mean P(toxic) per prompt) and the raw
    ``toxicity``/``responses``/``prompts`` lists, ``samples_per_prompt`` rows per
    prompt, prompt-major. With ``mesh`` (``params`` placed on it) the sampling is split
    over it. ``batch_size`` rows are sampled at a time (each row's key depends on its
    index only, so the tokens do not depend on it beyond float rounding).
    """
    # A diverged policy samples degenerate text that scores as clean: never report it.
    check_tree(params, "the evaluated policy's parameters")
    prompts = list(prompts)
    repeated = [p for p in prompts for _ in range(samples_per_prompt)]
    tokens = tokenize_prompts(repeated, tokenizer, max_prompt_tokens)
    sampling = sampling_from_tokenizer(tokenizer, max_new_tokens, top_k=top_k)
    responses, _ = generate_responses(model, params, tokenizer, tokens.input_ids,
                                      tokens.attention_mask, sampling, jax.random.PRNGKey(seed),
                                      batch_size=batch_size, progress=progress,
                                      mesh=mesh)
    tox = toxicity_of_responses(scorer, responses)
    per_prompt = tox.reshape(len(prompts), samples_per_prompt).mean(1)
    se = float(per_prompt.std(ddof=1) / np.sqrt(len(prompts))) if len(prompts) > 1 else float("nan")
    return {"mean_toxicity": float(tox.mean()), "toxic_fraction": float((tox > 0.5).mean()),
            "toxicity_se": se, "num_prompts": len(prompts),
            "samples_per_prompt": samples_per_prompt, "prompt_toxicity": per_prompt.tolist(),
            "toxicity": tox.tolist(), "responses": responses, "prompts": repeated}
