"""Tokenize prompts into left-padded, left-truncated int32 arrays.

Decoder-only generation continues from the last column, so prompts are padded
on the LEFT (every row's final real token sits in the last column) and
over-long prompts lose their BEGINNING (the end is what the model continues),
as the reference code's trlx tokenizer settings do
(``truncation_side="left", padding_side="left"``). Special tokens the tokenizer
wraps a prompt in (a BOS in front, an EOS/SEP behind) survive the cut: only the
text tokens between them are dropped, as transformers' own left truncation does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import chex
import numpy as np

from jaxirl.data.prompts import PromptDataConfig, PromptSet, PromptSplits, load_prompts
from jaxirl.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizedPrompts:
    """``N`` prompts padded to ``P`` tokens.

    Attributes:
      input_ids: [N, P] int32 token ids, pad id in the left padding.
      attention_mask: [N, P] int32, 1 on real tokens (a right-aligned block).
      lengths: [N] int32 real tokens per row after truncation (>= 1).
      prompts: the N prompt strings as given (before truncation).
      references: the N reference continuations, or None.
      pad_token_id: the id written into the padding.
      num_truncated: how many prompts lost tokens to the budget.
    """

    input_ids: chex.Array
    attention_mask: chex.Array
    lengths: chex.Array
    prompts: tuple[str, ...]
    references: tuple[str, ...] | None
    pad_token_id: int
    num_truncated: int

    def __len__(self) -> int:
        return len(self.prompts)


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's pad id, else its EOS id (Pythia ships no pad token)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise ConfigError(
        f"tokenizer {type(tokenizer).__name__} has neither a pad nor an eos token; "
        f"set tokenizer.pad_token")


def padded_length(longest: int, max_prompt_tokens: int, pad_to_multiple_of: int = 1) -> int:
    """``min(longest, budget)`` rounded up to a multiple, never past the budget."""
    length = min(longest, max_prompt_tokens)
    length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    return min(length, max_prompt_tokens)


def trim_left_padding(input_ids: np.ndarray, attention_mask: np.ndarray, bucket: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded prompts [R, P] cut to the columns their longest row needs.

    The width kept is the longest row's real tokens rounded up to a multiple of
    ``bucket`` (so that a few widths, each one compiled program, serve every batch),
    at most ``P``; ``bucket`` 0 keeps all ``P`` columns. Only padding is dropped: the
    model's positions come from the mask, so each row's outputs are the same up to
    float rounding. trlx likewise pads each batch of prompts to its own longest.
    """
    width = input_ids.shape[1]
    if bucket > 0:
        longest = int(np.max(np.sum(np.asarray(attention_mask) > 0, axis=1), initial=1))
        width = min(width, max(bucket, -(-longest // bucket) * bucket))
    return input_ids[:, input_ids.shape[1] - width:], attention_mask[:, attention_mask.shape[1] - width:]


def _split_specials(full: Sequence[int], plain: Sequence[int]) -> tuple[int, int] | None:
    """(prefix, suffix) lengths with ``full == full[:prefix] + plain + full[len(full)-suffix:]``.

    ``full`` is a prompt tokenized with special tokens, ``plain`` the same prompt without;
    None when ``full`` is not ``plain`` wrapped in extra tokens.
    """
    extra = len(full) - len(plain)
    if extra < 0:
        return None
    for prefix in range(extra + 1):
        if list(full[prefix:prefix + len(plain)]) == list(plain):
            return prefix, extra - prefix
    return None


def _truncate_left(full: Sequence[int], plain: Sequence[int], budget: int, row: int
                   ) -> list[int]:
    """The last ``budget`` tokens of ``full``, keeping its leading/trailing special tokens."""
    split = _split_specials(full, plain)
    if split is None or split == (0, 0):
        # No specials (Pythia, the default tokenizer), or a template that rewrites the text
        # tokens: a plain cut, exactly as before specials were kept.
        if split is None:
            logger.warning("prompt row %d: cannot locate the tokenizer's special tokens; "
                           "truncated without keeping them", row)
        return list(full[-budget:])
    prefix, suffix = split
    room = budget - prefix - suffix
    if room < 1:
        raise ConfigError(f"max_prompt_tokens {budget} leaves no room for prompt text after "
                          f"the tokenizer's {prefix + suffix} special tokens")
    return list(full[:prefix]) + list(plain[-room:]) + list(full[len(full) - suffix:])


def tokenize_prompts(
    prompts: PromptSet | Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    max_prompt_tokens: int,
    pad_to_multiple_of: int = 8,
    add_special_tokens: bool = True,
) -> TokenizedPrompts:
    """Tokenizes, left-truncates to ``max_prompt_tokens`` and left-pads.

    Args:
      prompts: a :class:`PromptSet` or plain strings.
      tokenizer: any ``transformers`` tokenizer.
      max_prompt_tokens: token budget, special tokens included; longer prompts keep
        their last text tokens and the special tokens the tokenizer adds around them.
      pad_to_multiple_of: see :func:`padded_length` (1 = pad to the longest).
      add_special_tokens: passed to the tokenizer (Pythia adds none either way).

    Returns:
      :class:`TokenizedPrompts` with ``P = padded_length(longest, ...)``.
    """
    if max_prompt_tokens <= 0:
        raise ConfigError(f"max_prompt_tokens must be positive, got {max_prompt_tokens}")
    if pad_to_multiple_of <= 0:
        raise ConfigError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
    if isinstance(prompts, PromptSet):
        texts, refs = prompts.prompts, prompts.references
    else:
        texts, refs = tuple(prompts), None
    pad_id = pad_token_id(tokenizer)
    if texts:
        ids = tokenizer(list(texts), add_special_tokens=add_special_tokens, padding=False,
                        truncation=False, return_attention_mask=False)["input_ids"]
    else:
        ids = []
    for row, seq in enumerate(ids):
        if not seq:
            raise DataError(f"prompt row {row} ({texts[row]!r:.40}) tokenizes to no tokens")

    # Over-long rows are tokenized again without specials, to tell the BOS/EOS the
    # tokenizer adds (kept) from the text tokens (cut from the left).
    long_rows = [row for row, seq in enumerate(ids) if len(seq) > max_prompt_tokens]
    kept_long: dict[int, list[int]] = {}
    if long_rows and add_special_tokens:
        plain = tokenizer([texts[row] for row in long_rows], add_special_tokens=False,
                          padding=False, truncation=False,
                          return_attention_mask=False)["input_ids"]
        kept_long = {row: _truncate_left(ids[row], p, max_prompt_tokens, row)
                     for row, p in zip(long_rows, plain, strict=True)}

    n = len(ids)
    width = padded_length(max((len(s) for s in ids), default=0), max_prompt_tokens,
                          pad_to_multiple_of)
    input_ids = np.full((n, width), pad_id, dtype=np.int32)
    attention_mask = np.zeros((n, width), dtype=np.int32)
    lengths = np.zeros((n,), dtype=np.int32)
    for row, seq in enumerate(ids):
        kept = kept_long[row] if row in kept_long else seq[-max_prompt_tokens:]
        input_ids[row, width - len(kept):] = kept
        attention_mask[row, width - len(kept):] = 1
        lengths[row] = len(kept)
    num_truncated = sum(len(s) > max_prompt_tokens for s in ids)
    if num_truncated:
        logger.info("truncated %d of %d prompts to %d tokens (kept their ends)",
                    num_truncated, n, max_prompt_tokens)
    chex.assert_shape([input_ids, attention_mask], (n, width))
    return TokenizedPrompts(input_ids, attention_mask, lengths, texts, refs, pad_id,
                            int(num_truncated))


def load_tokenized_prompts(
    config: PromptDataConfig, tokenizer: PreTrainedTokenizerBase,
    splits: PromptSplits | None = None,
) -> tuple[TokenizedPrompts, TokenizedPrompts]:
    """(train, test) prompts tokenized with the budget and rounding of ``config``.

    Each split is padded to its own longest prompt. ``splits`` defaults to
    ``load_prompts(config)``.
    """
    if splits is None:
        splits = load_prompts(config)
    return tuple(
        tokenize_prompts(part, tokenizer, config.max_prompt_tokens, config.pad_to_multiple_of)
        for part in (splits.train, splits.test))
