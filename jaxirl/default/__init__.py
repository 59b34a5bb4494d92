"""Embedded default: a corpus, prompts and tokenizer that need no model hub.

The default pipeline pretrains a tiny GPT-NeoX model on :func:`build_corpus`'s
texts, tokenised by :func:`train_tokenizer`, and serves its held-out prompts
(:func:`write_prompts_jsonl`) through the same ``datasets`` path as real data.
"""

from jaxirl.default.corpus import (
    CorpusSplits,
    build_corpus,
    load_conversations,
    write_prompts_jsonl,
)
from jaxirl.default.tokenizer import EOS_TOKEN, train_tokenizer

__all__ = [
    "EOS_TOKEN",
    "CorpusSplits",
    "build_corpus",
    "load_conversations",
    "train_tokenizer",
    "write_prompts_jsonl",
]
