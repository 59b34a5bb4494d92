"""Prompt data: load (hub id or local file), split, tokenize (left pad) and batch."""

from jaxirl.data.batches import (
    batch_stream,
    data_position,
    epoch_order,
    iterate_batches,
    num_batches,
)
from jaxirl.data.prompts import (
    PAPER_DATASET,
    PromptDataConfig,
    PromptSet,
    PromptSplits,
    load_prompt_dataset,
    load_prompts,
    split_prompt_dataset,
    write_jsonl,
)
from jaxirl.data.tokenization import (
    TokenizedPrompts,
    load_tokenized_prompts,
    pad_token_id,
    padded_length,
    tokenize_prompts,
    trim_left_padding,
)

__all__ = [
    "PAPER_DATASET",
    "PromptDataConfig",
    "PromptSet",
    "PromptSplits",
    "TokenizedPrompts",
    "batch_stream",
    "data_position",
    "epoch_order",
    "iterate_batches",
    "load_prompt_dataset",
    "load_prompts",
    "load_tokenized_prompts",
    "num_batches",
    "pad_token_id",
    "padded_length",
    "split_prompt_dataset",
    "tokenize_prompts",
    "trim_left_padding",
    "write_jsonl",
]
