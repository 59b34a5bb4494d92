"""The embedded default corpus: determinism, toxicity mix, held-out prompts."""

import pathlib
import re

import better_profanity
import datasets
import numpy as np
import pytest
import vaderSentiment
from profanity_check import predict_prob

from jaxirl.default import corpus
from jaxirl.errors import DataError


@pytest.fixture(scope="module")
def splits():
    return corpus.build_corpus(seed=0)


def _toxic_share(texts) -> float:
    return float(np.mean(predict_prob(list(texts)) > 0.5))


def _sentences(texts):
    return [s for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if s]


def test_deterministic_in_seed(splits):
    assert corpus.build_corpus(seed=0) == splits
    other = corpus.build_corpus(seed=1)
    assert other.prompts != splits.prompts
    assert other.train_texts != splits.train_texts


def test_sizes(splits):
    chars = sum(map(len, splits.train_texts))
    assert 300_000 < chars < 3_000_000
    assert len(splits.prompts) >= 300
    assert len(splits.prompts) == len(splits.reference_outputs) == len(splits.source_lines)
    assert len(splits.heldout_texts) > 100
    assert all(p.strip() for p in splits.prompts)
    assert all(r.startswith(" ") and 1 <= len(r.split()) <= 20
               for r in splits.reference_outputs)


def test_toxicity_mix_by_profanity_check(splits):
    # About a fifth of sentences carry an insult; continuations are toxic
    # often enough for RLHF to have work, clean often enough to learn from.
    assert 0.15 < _toxic_share(_sentences(splits.train_texts)) < 0.35
    assert 0.25 < _toxic_share(splits.train_texts) < 0.55
    assert 0.25 < _toxic_share(splits.heldout_texts) < 0.55
    assert 0.20 < _toxic_share(splits.reference_outputs) < 0.45
    assert _toxic_share(splits.prompts) < 0.02


def test_splicing_is_what_makes_text_toxic():
    clean = corpus.build_corpus(seed=0, offensive_prob=0.0, n_variants=1)
    dirty = corpus.build_corpus(seed=0, offensive_prob=1.0, n_variants=1)
    # chatterbot itself has a few rude lines ("Robots are stupid."), ~3%.
    assert _toxic_share(clean.train_texts) < 0.06
    assert _toxic_share(clean.reference_outputs) < 0.06
    assert _toxic_share(dirty.train_texts) > 0.95
    # Every edit is cheap to spot: each text gains a word from the curated lists.
    words = set(corpus.INSULT_NOUNS) | set(corpus.INSULT_ADJECTIVES) | set(corpus.INTENSIFIERS)
    words |= {"fuck", "shit", "hell", "damn", "bullshit", "suck"}
    for text in dirty.train_texts:
        assert set(re.findall(r"[a-z]+", text.lower())) & words, text


def test_without_splicing_prompt_and_reference_continue_the_source_line():
    clean = corpus.build_corpus(seed=3, offensive_prob=0.0)
    for prompt, ref, src in zip(clean.prompts, clean.reference_outputs, clean.source_lines,
                                strict=True):
        full = prompt + ref
        assert src.startswith(prompt + " ")
        assert full.startswith(src) or src.startswith(full), (full, src)


def test_prompts_come_from_lines_never_seen_in_training(splits):
    train_blob = "\n".join(splits.train_texts)
    train_set = set(splits.train_texts)
    for prompt, src in zip(splits.prompts, splits.source_lines, strict=True):
        assert src.startswith(prompt)
        assert src not in train_blob
        assert prompt not in train_set
    assert len(set(splits.source_lines)) == len(splits.source_lines)


def test_offensive_words_come_from_the_packaged_lexicons():
    bp_dir = pathlib.Path(better_profanity.__file__).parent
    bp_words = set((bp_dir / "profanity_wordlist.txt").read_text().split())
    vader = {}
    vd_file = pathlib.Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    for line in vd_file.read_text(encoding="utf-8").splitlines():
        word, score = line.split("\t")[:2]
        vader[word] = float(score)
    words = set(corpus.INSULT_NOUNS) | set(corpus.INSULT_ADJECTIVES) | set(corpus.INTENSIFIERS)
    for word in words:
        assert word in bp_words or vader.get(word, 0.0) < 0.0, word


def test_normalize_turn():
    assert corpus.normalize_turn("  who is hal ") == "Who is hal?"
    assert corpus.normalize_turn("robots are stupid") == "Robots are stupid."
    assert corpus.normalize_turn("It\u2019s  fine!") == "It's fine!"
    assert corpus.normalize_turn("   ") == ""


def test_prompts_jsonl_loads_through_datasets(splits, tmp_path):
    path = corpus.write_prompts_jsonl(splits, tmp_path / "sub" / "prompts.jsonl")
    ds = datasets.load_dataset("json", data_files=str(path), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == ["prompt", "original_output"]
    assert tuple(ds["prompt"]) == splits.prompts
    assert tuple(ds["original_output"]) == splits.reference_outputs


@pytest.mark.parametrize("kwargs, field", [
    ({"heldout_fraction": 1.0}, "heldout_fraction"),
    ({"offensive_prob": -0.1}, "offensive_prob"),
    ({"n_variants": 0}, "n_variants"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(DataError, match=field):
        corpus.build_corpus(**kwargs)
