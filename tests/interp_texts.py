"""Word-level tokenizers and synthetic clean/rude texts for the interpretability tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

CLEAN = "the cat sat on a mat dog ran nice day good friend".split()
RUDE = "stupid shit damn crap".split()
WORDS = ["<|endoftext|>", "you"] + CLEAN + RUDE


def word_tokenizer(words: Sequence[str] = tuple(WORDS)):
    """A word-level tokenizer over ``words`` (``words[0]`` is EOS, padding and unknown)."""
    words = list(words)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=words[0],
                                                pad_token=words[0])


def synthetic_texts(n: int, seed: int) -> list[str]:
    """``n`` texts of 4-9 clean words; every odd one has "you <rude word>" inserted."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        words = list(rng.choice(CLEAN, size=rng.integers(4, 10)))
        if i % 2:
            words.insert(int(rng.integers(0, len(words))), f"you {rng.choice(RUDE)}")
        texts.append(" ".join(words))
    return texts


def save_base_and_tuned(root) -> None:
    """Saves a tiny random GPT-NeoX (2 blocks, the word tokenizer) as ``root/base`` and, with
    only block 1 moved, as ``root/tuned``: the one layer the interpretability stage must pick."""
    import jax

    from jaxirl.models import GPTNeoXConfig, init_params, save_pretrained

    cfg = GPTNeoXConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
    base = init_params(cfg, jax.random.PRNGKey(0))
    tuned = {**base, "layers_1": jax.tree_util.tree_map(lambda p: p + 0.05, base["layers_1"])}
    save_pretrained(root / "base", cfg, base, tokenizer=word_tokenizer())
    save_pretrained(root / "tuned", cfg, tuned, tokenizer=word_tokenizer())
