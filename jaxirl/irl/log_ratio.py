"""The white-box log-ratio reward β·[log π_RLHF(o | p) − log π_base(o | p)].

For the KL-regularised objective E[r] − β·KL(π ‖ π_base) the optimum is
π★ ∝ π_base · exp(r / β), so r(p, o) = β·log(π★(o | p) / π_base(o | p)) + β·log Z(p)
(Rafailov et al. 2023, the DPO implicit reward). With both models in hand this
recovers the reward without any training, up to the per-prompt constant
β·log Z(p), which STARC variant B ignores. It is the upper reference that
black-box IRL (demonstrations only) should approach; PPO not being at its
optimum, the adaptive β and sampling noise are why IRL can still beat it.

The completion's log-probability is summed over its tokens, each predicted from
the prompt (left-truncated to ``max_prompt_tokens``, as the demonstrations'
prompts) and the completion tokens before it. Decoded completions are
re-tokenized, which can differ from the sampled ids where BPE merges across
the boundary; both models see the same ids, so the ratio stays consistent.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxirl.data.tokenization import pad_token_id
from jaxirl.errors import RewardError
from jaxirl.irl.length_buckets import length_batches


def tokenize_completions(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str],
                         max_prompt_tokens: int = 64, max_completion_tokens: int = 128,
                         bucket: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left-padded prompt + completion ids [N, T], attention mask and completion mask [N, T].

    ``T`` is the longest row rounded up to ``bucket`` (few compiled shapes).
    """
    if len(prompts) != len(completions):
        raise RewardError(f"{len(prompts)} prompts but {len(completions)} completions")
    enc = functools.partial(tokenizer, add_special_tokens=False, padding=False,
                            truncation=False, return_attention_mask=False)
    p_ids = enc(list(prompts))["input_ids"] if len(prompts) else []
    c_ids = enc(list(completions))["input_ids"] if len(completions) else []
    rows = [(p[-max_prompt_tokens:], c[:max_completion_tokens]) for p, c in zip(p_ids, c_ids, strict=True)]
    longest = max((len(p) + len(c) for p, c in rows), default=1)
    width = -(-longest // bucket) * bucket
    ids = np.full((len(rows), width), pad_token_id(tokenizer), np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    comp = np.zeros((len(rows), width), np.int32)
    for i, (p, c) in enumerate(rows):
        seq = p + c
        ids[i, width - len(seq):] = seq
        mask[i, width - len(seq):] = 1
        comp[i, width - len(c):] = 1 if c else 0
    return ids, mask, comp


@functools.partial(jax.jit, static_argnums=0)
def _sequence_logprob(model, params, ids, mask, completion_mask):
    logits = model.apply({"params": params}, ids, mask).logits[:, :-1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    token = jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(token * completion_mask[:, 1:], axis=1)


def completion_logprobs(model: Any, params: Any, ids: np.ndarray, mask: np.ndarray,
                        completion_mask: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Σ over completion tokens of log π(token | everything before), float64 [N].

    Rows run shortest first, each batch cut to its bucket's width
    (:func:`~jaxirl.irl.length_buckets.length_batches`): the held-out rows of the
    default study average a fifth of the padded width.
    """
    n = len(ids)
    out = np.zeros(n, np.float64)
    for rows, keep, w in length_batches(mask, batch_size):
        lp = _sequence_logprob(model, params, ids[rows, -w:], mask[rows, -w:],
                               completion_mask[rows, -w:])
        out[rows[:keep]] = np.asarray(lp)[:keep]
    return out


def log_ratio_rewards(policy: tuple[Any, Any], base: tuple[Any, Any], tokenizer: Any,
                      prompts: Sequence[str], completions: Sequence[str], beta: float = 1.0,
                      max_prompt_tokens: int = 64, batch_size: int = 64) -> np.ndarray:
    """r̂ = β·[log π_RLHF(o | p) − log π_base(o | p)] of N (prompt, completion) rows, [N].

    Args:
      policy, base: (Flax module, params) of the RLHF policy and its base model
        (the same tokenizer).
      beta: the KL coefficient (only scales r̂; the correlation metrics ignore it).
    """
    ids, mask, comp = tokenize_completions(tokenizer, prompts, completions, max_prompt_tokens)
    lp_policy = completion_logprobs(*policy, ids, mask, comp, batch_size)
    lp_base = completion_logprobs(*base, ids, mask, comp, batch_size)
    return beta * (lp_policy - lp_base)


__all__ = ["completion_logprobs", "log_ratio_rewards", "tokenize_completions"]
