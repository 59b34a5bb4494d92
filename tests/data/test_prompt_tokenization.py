"""Left padding / left truncation of prompts, and deterministic resumable batches."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest

from jaxirl.data import (
    PromptDataConfig,
    PromptSet,
    batch_stream,
    data_position,
    iterate_batches,
    load_tokenized_prompts,
    padded_length,
    tokenize_prompts,
    trim_left_padding,
    write_jsonl,
)
from jaxirl.errors import ConfigError

PAD, EOS = 0, 1


def _tokenizer(with_pad=True, with_eos=True):
    """Word-level tokenizer: 'wK' -> id K + 3; <pad>=0, <eos>=1, <unk>=2."""
    import tokenizers
    import transformers
    from tokenizers import models, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{f"w{k}": k + 3 for k in range(40)}}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"unk_token": "<unk>"}
    if with_pad:
        special["pad_token"] = "<pad>"
    if with_eos:
        special["eos_token"] = "<eos>"
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **special)


@pytest.fixture(scope="module")
def tokenizer():
    return _tokenizer()


def test_left_padding_hand_computed(tokenizer):
    out = tokenize_prompts(PromptSet(("w1 w2 w3", "w4", "w5 w6"), ("r0", "r1", "r2")),
                           tokenizer, max_prompt_tokens=10, pad_to_multiple_of=1)
    np.testing.assert_array_equal(out.input_ids, [[4, 5, 6], [PAD, PAD, 7], [PAD, 8, 9]])
    np.testing.assert_array_equal(out.attention_mask, [[1, 1, 1], [0, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(out.lengths, [3, 1, 2])
    assert out.input_ids.dtype == np.int32 and out.attention_mask.dtype == np.int32
    assert out.references == ("r0", "r1", "r2") and out.num_truncated == 0


def test_left_truncation_keeps_the_end_and_logs(tokenizer, caplog):
    with caplog.at_level(logging.INFO, logger="jaxirl.data.tokenization"):
        out = tokenize_prompts(["w1 w2 w3 w4 w5", "w6", "w7 w8 w9"], tokenizer,
                               max_prompt_tokens=2, pad_to_multiple_of=8)
    np.testing.assert_array_equal(out.input_ids, [[7, 8], [PAD, 9], [11, 12]])
    np.testing.assert_array_equal(out.attention_mask, [[1, 1], [0, 1], [1, 1]])
    assert out.num_truncated == 2
    assert "truncated 2 of 3 prompts to 2 tokens" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jaxirl.data.tokenization"):
        tokenize_prompts(["w1 w2"], tokenizer, max_prompt_tokens=2)
    assert "truncated" not in caplog.text


def test_matches_transformers_left_padding_and_truncation():
    tokenizer = _tokenizer()
    rng = np.random.RandomState(0)
    texts = [" ".join(f"w{k}" for k in rng.randint(0, 40, size=rng.randint(1, 20)))
             for _ in range(16)]
    ours = tokenize_prompts(texts, tokenizer, max_prompt_tokens=12, pad_to_multiple_of=8)
    assert ours.input_ids.shape == (16, 12)  # longest 19 -> capped at 12 (not rounded to 16)
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    ref = tokenizer(texts, padding="max_length", truncation=True, max_length=12,
                    return_tensors="np")
    np.testing.assert_array_equal(ours.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(ours.attention_mask, ref["attention_mask"])
    assert ours.num_truncated == sum(len(t.split()) > 12 for t in texts)


def test_padded_length_rounding():
    assert padded_length(3, 896, 8) == 8
    assert padded_length(17, 896, 8) == 24
    assert padded_length(5000, 896, 8) == 896
    assert padded_length(5, 6, 8) == 6  # rounding never exceeds the budget
    assert padded_length(5, 100, 1) == 5
    assert padded_length(0, 100, 8) == 0


def test_pad_falls_back_to_eos():
    out = tokenize_prompts(["w1 w2", "w3"], _tokenizer(with_pad=False), max_prompt_tokens=4,
                           pad_to_multiple_of=1)
    np.testing.assert_array_equal(out.input_ids, [[4, 5], [EOS, 6]])
    assert out.pad_token_id == EOS
    with pytest.raises(ConfigError, match="neither a pad nor an eos"):
        tokenize_prompts(["w1"], _tokenizer(with_pad=False, with_eos=False), max_prompt_tokens=4)


def test_load_tokenized_prompts_end_to_end(tmp_path, tokenizer):
    rows = [{"prompt": " ".join(f"w{k}" for k in range(i + 1)), "original_output": f"o{i}"}
            for i in range(10)]
    path = write_jsonl(rows, tmp_path / "p.jsonl")
    cfg = PromptDataConfig(path=str(path), max_prompt_tokens=6, pad_to_multiple_of=4,
                           cache_dir=str(tmp_path / "c"))
    train, test = load_tokenized_prompts(cfg, tokenizer)
    assert (len(train), len(test)) == (8, 2)
    assert train.input_ids.shape[1] in (4, 6) and test.input_ids.shape[1] in (4, 6)
    for part in (train, test):
        for i, (prompt, ref) in enumerate(zip(part.prompts, part.references, strict=True)):
            n = len(prompt.split())
            assert ref == f"o{n - 1}"
            want = [int(w[1:]) + 3 for w in prompt.split()][-6:]
            assert part.input_ids[i, part.attention_mask[i] == 1].tolist() == want


def _data(n=10):
    texts = [f"w{i} w{i + 1}" if i % 2 else f"w{i}" for i in range(n)]
    return tokenize_prompts(PromptSet(tuple(texts), tuple(f"r{i}" for i in range(n))),
                            _tokenizer(), max_prompt_tokens=4, pad_to_multiple_of=1)


def test_iterate_batches_deterministic_and_consistent():
    data = _data()
    batches = list(iterate_batches(data, 3, seed=5, epoch=0))
    assert [b["batch_index"] for b in batches] == [0, 1, 2]  # drop_last: 10 // 3
    seen = np.concatenate([b["indices"] for b in batches])
    assert len(set(seen.tolist())) == 9
    for b in batches:
        assert b["input_ids"].shape == (3, 2) and b["input_ids"].dtype == np.int32
        np.testing.assert_array_equal(b["input_ids"], data.input_ids[b["indices"]])
        np.testing.assert_array_equal(b["attention_mask"], data.attention_mask[b["indices"]])
        assert b["prompts"] == [data.prompts[i] for i in b["indices"]]
        assert b["references"] == [f"r{i}" for i in b["indices"]]
    again = list(iterate_batches(data, 3, seed=5, epoch=0))
    assert all((a["indices"] == b["indices"]).all() for a, b in zip(batches, again, strict=True))
    other_epoch = np.concatenate([b["indices"] for b in iterate_batches(data, 3, seed=5, epoch=1)])
    other_seed = np.concatenate([b["indices"] for b in iterate_batches(data, 3, seed=6, epoch=0)])
    assert not np.array_equal(seen, other_epoch) and not np.array_equal(seen, other_seed)
    resumed = list(iterate_batches(data, 3, seed=5, epoch=0, start_batch=2))
    assert len(resumed) == 1
    np.testing.assert_array_equal(resumed[0]["indices"], batches[2]["indices"])


def test_iterate_batches_keep_last_and_no_shuffle():
    data = _data()
    batches = list(iterate_batches(data, 4, seed=0, drop_last=False, shuffle=False))
    assert [len(b["prompts"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b["indices"] for b in batches]), np.arange(10))
    with pytest.raises(ConfigError, match="exceeds the 10 prompts"):
        list(iterate_batches(data, 11, seed=0))
    with pytest.raises(ConfigError, match="start_batch"):
        list(iterate_batches(data, 3, seed=0, start_batch=4))


def test_batch_stream_resumes_across_epochs():
    data = _data()
    assert data_position(7, 10, 3) == (2, 1)
    full = list(itertools.islice(batch_stream(data, 3, seed=2), 8))
    assert [(b["epoch"], b["batch_index"]) for b in full][2:5] == [(0, 2), (1, 0), (1, 1)]
    resumed = list(itertools.islice(batch_stream(data, 3, seed=2, start_step=5), 3))
    for a, b in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(a["indices"], b["indices"])
        assert (a["epoch"], a["batch_index"]) == (b["epoch"], b["batch_index"])


def test_trim_left_padding_keeps_the_columns_the_longest_prompt_needs():
    # Rows with 2, 3 and 1 real tokens, left-padded to 8 columns.
    mask = np.zeros((3, 8), np.int32)
    for row, n in enumerate((2, 3, 1)):
        mask[row, 8 - n:] = 1
    ids = np.arange(24, dtype=np.int32).reshape(3, 8) * mask
    for bucket, width in ((0, 8), (1, 3), (2, 4), (3, 3), (4, 4), (8, 8), (16, 8)):
        kept_ids, kept_mask = trim_left_padding(ids, mask, bucket)
        assert kept_ids.shape == kept_mask.shape == (3, width), bucket
        np.testing.assert_array_equal(kept_ids, ids[:, 8 - width:])
        np.testing.assert_array_equal(kept_mask, mask[:, 8 - width:])
        # Only padding goes: every real token is still there.
        assert kept_mask.sum() == mask.sum()


def _bos_tokenizer(template):
    """The word-level tokenizer with <bos>=43 and a post-processor adding specials per template."""
    import transformers
    from tokenizers import processors

    tok = _tokenizer().backend_tokenizer
    tok.add_special_tokens(["<bos>"])
    assert tok.token_to_id("<bos>") == 43
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<bos>", 43), ("<eos>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>")


@pytest.mark.parametrize("template", ["<bos> $A", "<bos> $A <eos>"])
def test_left_truncation_keeps_special_tokens(template):
    tokenizer = _bos_tokenizer(template)
    rng = np.random.RandomState(1)
    texts = [" ".join(f"w{k}" for k in rng.randint(0, 40, size=rng.randint(1, 20)))
             for _ in range(16)]
    ours = tokenize_prompts(texts, tokenizer, max_prompt_tokens=6, pad_to_multiple_of=1)
    assert ours.num_truncated > 0
    # transformers cuts the text and then adds the specials inside max_length.
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    ref = tokenizer(texts, padding="max_length", truncation=True, max_length=6,
                    return_tensors="np")
    np.testing.assert_array_equal(ours.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(ours.attention_mask, ref["attention_mask"])
    # Every row starts with <bos>; the specials count towards the budget (the width).
    assert ours.input_ids.shape[1] == 6
    assert all(row[mask == 1][0] == 43 for row, mask in zip(ours.input_ids, ours.attention_mask,
                                                         strict=True))
    with pytest.raises(ConfigError, match="max_prompt_tokens 1 leaves no room"):
        tokenize_prompts(["w1 w2 w3"], tokenizer, max_prompt_tokens=1)


def test_truncation_without_specials_is_a_plain_left_cut(tokenizer):
    # No specials (Pythia-like), even with add_special_tokens: exactly the last tokens.
    texts = ["w1 w2 w3 w4 w5 w6 w7", "w8 w9", "<eos> w1 w2 w3 <eos> w4"]
    out = tokenize_prompts(texts, tokenizer, max_prompt_tokens=3, pad_to_multiple_of=1)
    full = tokenizer(texts, add_special_tokens=True)["input_ids"]
    for row, seq in enumerate(full):
        assert out.input_ids[row, out.attention_mask[row] == 1].tolist() == seq[-3:]


def test_left_truncation_without_special_tokens_keeps_the_end():
    # add_special_tokens=False: no <bos> (43) is added, and a long prompt keeps its last tokens.
    tokenizer = _bos_tokenizer("<bos> $A")
    out = tokenize_prompts(["w1 w2 w3 w4 w5", "w6"], tokenizer, max_prompt_tokens=2,
                           pad_to_multiple_of=1, add_special_tokens=False)
    np.testing.assert_array_equal(out.input_ids, [[7, 8], [PAD, 9]])  # w4 w5 | w6
    np.testing.assert_array_equal(out.attention_mask, [[1, 1], [0, 1]])
    assert out.num_truncated == 1
