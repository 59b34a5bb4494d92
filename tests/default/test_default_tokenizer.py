"""The embedded default's byte-level BPE tokenizer."""

import json
import unicodedata

import pytest
from transformers import AutoTokenizer

from jaxirl.default import EOS_TOKEN, build_corpus, train_tokenizer
from jaxirl.errors import ConfigError, DataError

TRICKY = [
    "Hello world! What the fuck, caf\u00e9 \n \u00fcn\u00efcode \U0001F600 test.",
    "  leading spaces,\ttabs and trailing  ",
    "<|endoftext|> is special; <|endoftext is not.",
]


@pytest.fixture(scope="module")
def splits():
    return build_corpus(seed=0)


@pytest.fixture(scope="module")
def tok(splits):
    return train_tokenizer(splits.train_texts, vocab_size=2000)


def test_deterministic(splits, tok):
    again = train_tokenizer(splits.train_texts, vocab_size=2000)
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()


def test_vocab_and_special_tokens(tok):
    assert len(tok) == 2000
    assert tok.convert_tokens_to_ids(EOS_TOKEN) == 0
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == tok.unk_token_id == 0
    assert tok.padding_side == "left"
    # Pythia adds no bos/eos when encoding.
    assert 0 not in tok("Hello there.")["input_ids"]


def test_round_trip(splits, tok):
    for text in list(splits.heldout_texts[:50]) + list(splits.prompts[:50]) + TRICKY:
        text = unicodedata.normalize("NFC", text)
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
    # Merges are learnt: held-out dialog compresses well beyond one byte per token.
    text = " ".join(splits.heldout_texts)
    assert len(text) / len(tok(text)["input_ids"]) > 3.0


def test_left_padding(tok):
    batch = tok(["Hi.", "How are you doing today?"], padding=True)
    short, long = batch["input_ids"]
    mask = batch["attention_mask"][0]
    n = len(tok("Hi.")["input_ids"])
    assert len(short) == len(long) > n
    assert short[: len(short) - n] == [0] * (len(short) - n)
    assert mask == [0] * (len(short) - n) + [1] * n


def test_autotokenizer_reload(tok, splits, tmp_path):
    tok.save_pretrained(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in tmp_path.iterdir()}
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    assert spec["pre_tokenizer"]["type"] == "ByteLevel"
    assert spec["pre_tokenizer"]["add_prefix_space"] is False
    assert spec["decoder"]["type"] == "ByteLevel"
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.padding_side == "left"
    assert loaded.pad_token == loaded.eos_token == EOS_TOKEN
    assert loaded.pad_token_id == 0
    texts = list(splits.prompts[:20]) + TRICKY
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"]


def test_bad_input():
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(["some text"], vocab_size=100)
    with pytest.raises(DataError, match="empty"):
        train_tokenizer(["", ""])


def test_prompt_truncation_is_a_plain_left_cut(splits, tok):
    # The default (Pythia-style) tokenizer adds no specials: left truncation keeps exactly
    # the last max_prompt_tokens ids, "<|endoftext|>" written in the text included.
    import numpy as np

    from jaxirl.data import tokenize_prompts

    texts = list(splits.prompts[:20]) + TRICKY
    full = tok(texts)["input_ids"]
    out = tokenize_prompts(texts, tok, max_prompt_tokens=5, pad_to_multiple_of=1)
    assert out.num_truncated == sum(len(seq) > 5 for seq in full) > 0
    for row, seq in enumerate(full):
        np.testing.assert_array_equal(out.input_ids[row, out.attention_mask[row] == 1], seq[-5:])
