"""Offline feature labels and the firing-rate test on a hand-built "SAE" with known features.

Activations are one-hot token ids and the SAE is the identity, so feature j fires
exactly on token j: the feature of "stupid" must come out toxic-linked, that of
"cat" not, and only the former fires more on toxic texts.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from interp_texts import word_tokenizer as words_tokenizer

from jaxirl.errors import ConfigError, DataError
from jaxirl.interp import (
    CapturedActivations,
    TrainedSAE,
    contains_offensive,
    decode_contexts,
    firing_rate_test,
    label_features,
    offensive_token_labels,
    top_context_rows,
)

WORDS = "<|endoftext|> the cat sat on a mat dog ran nice day you idiot stupid".split()
STUPID, CAT, PAD = WORDS.index("stupid"), WORDS.index("cat"), 0


def word_tokenizer():
    return words_tokenizer(WORDS)


def hand_setup(seed=0):
    rng = np.random.default_rng(seed)
    clean_words = [WORDS.index(w) for w in "the cat sat on a mat dog ran nice day".split()]
    texts, toxic = [], []
    for i in range(60):
        ids = list(rng.choice(clean_words, size=6))
        if i % 3 == 0:  # a third of the texts insult the reader
            ids[3:5] = [WORDS.index("you"), STUPID]
        texts.append(ids)
        toxic.append(i % 3 == 0)
    ids = np.concatenate(texts)
    captured = CapturedActivations(
        activations={0: np.eye(len(WORDS), dtype=np.float32)[ids]},
        text_index=np.repeat(np.arange(60), 6).astype(np.int32),
        position=np.tile(np.arange(6), 60).astype(np.int32), token_ids=ids.astype(np.int32),
        num_texts=60)
    v = len(WORDS)
    sae = TrainedSAE(params={"W_e": jnp.eye(v), "b_e": jnp.zeros(v), "b_d": jnp.zeros(v)},
                     scale=jnp.asarray(1.0))
    return captured, {0: sae}, np.array(toxic)


def test_wordlist_matching_is_whole_word():
    got = contains_offensive(["you stupid", "the cat", "Fuck off.", "a classic pass"])
    np.testing.assert_array_equal(got, [True, False, True, False])
    assert contains_offensive(["you idiot"], frozenset({"idiot"}))[0]
    tok = word_tokenizer()
    np.testing.assert_array_equal(offensive_token_labels(np.array([STUPID, CAT, STUPID]), tok),
                                  [True, False, True])


def test_top_context_rows_from_a_candidate_pool_match_a_full_sort():
    # 60 rows, top 3: the rows come from a partitioned pool of 12 candidates per feature;
    # ties (rows 30-39 repeat rows 0-9 in other texts) keep the lower row first.
    rng = np.random.default_rng(0)
    codes = np.maximum(rng.standard_normal((60, 5)), 0.0)
    codes[30:40] = codes[0:10]
    text = np.arange(60) // 2
    for j, rows in enumerate(top_context_rows(codes, text, top_k=3)):
        order = np.argsort(-codes[:, j], kind="stable")
        order = order[codes[order, j] > 0]
        _, first = np.unique(text[order], return_index=True)
        np.testing.assert_array_equal(rows, order[np.sort(first)][:3])


def test_top_context_rows_reach_top_k_texts_when_a_few_long_texts_fire_strongly():
    # 3 texts of 30 strong tokens each, then 200 one-token texts that fire weaker: a
    # candidate pool of the 4k strongest tokens held only the 3 long texts.
    text = np.concatenate([np.repeat(np.arange(3), 30), np.arange(3, 203)])
    codes = np.concatenate([np.full(90, 5.0), np.linspace(1.0, 2.0, 200)])[:, None]
    rows = top_context_rows(codes, text, top_k=20)
    assert len(rows[0]) == 20
    np.testing.assert_array_equal(rows[0][:3], [0, 30, 60])  # each long text's first row
    np.testing.assert_array_equal(rows[0][3:], np.arange(289, 272, -1))  # then the strongest


@pytest.mark.parametrize("layout", ["one feature", "Fortran order", "texts unsorted"])
def test_top_context_rows_leave_the_codes_alone_and_match_a_full_sort(layout):
    rng = np.random.default_rng(1)
    codes = np.maximum(rng.standard_normal((300, 1 if layout == "one feature" else 4)), 0.0)
    text = np.arange(300) // 3
    if layout == "Fortran order":
        codes = np.asfortranarray(codes)
    if layout == "texts unsorted":
        text = rng.permutation(text)
    before = codes.copy()
    for j, rows in enumerate(top_context_rows(codes, text, top_k=5)):
        order = np.argsort(-codes[:, j], kind="stable")
        order = order[codes[order, j] > 0]
        _, first = np.unique(text[order], return_index=True)
        np.testing.assert_array_equal(rows, order[np.sort(first)][:5])
    np.testing.assert_array_equal(codes, before)


def test_top_context_rows_one_per_text_and_windows():
    codes = np.array([[0.1, 0], [0.9, 0], [0.5, 2], [0.7, 0]])
    rows = top_context_rows(codes, np.array([0, 0, 1, 2]), top_k=2)
    np.testing.assert_array_equal(rows[0], [1, 3])  # row 0 shares text 0 with the stronger row 1
    np.testing.assert_array_equal(rows[1], [2])     # only positive codes count
    captured, _, _ = hand_setup()
    ctx = decode_contexts(np.array([4, 6]), captured, word_tokenizer(), before=3, after=1)
    first = [WORDS[i] for i in captured.token_ids[2:6]]   # window clipped at the text's end
    second = [WORDS[i] for i in captured.token_ids[6:8]]  # clipped at the next text's start
    assert ctx == [" ".join(first), " ".join(second)]


@pytest.mark.parametrize("criterion", ["wordlist", "either"])
def test_planted_toxic_feature_is_found_and_fires_on_toxic_texts(criterion):
    from jaxirl.rewards import make_scorer

    captured, saes, toxic = hand_setup()
    scorer = None if criterion == "wordlist" else make_scorer("profanity")
    labels = label_features(captured, saes, word_tokenizer(), scorer, top_k=10, before=2,
                            after=0, criterion=criterion, num_random_features=8)
    assert labels.layer.shape == (len(WORDS),)
    assert labels.num_contexts[PAD] == 0 and np.isnan(labels.z[PAD])  # never active
    assert labels.word_share[STUPID] == 1.0 and labels.toxic_linked[STUPID]
    assert not labels.toxic_linked[CAT]
    assert 0.0 < labels.base_rate < 0.5
    assert (0, STUPID) in labels.examples and "stupid" in labels.examples[(0, STUPID)][0]
    s = labels.summary()
    assert s["num_alive"] == len(WORDS) - 2  # PAD and "idiot" never occur
    assert s["num_toxic_linked"] >= 1
    test = firing_rate_test(captured, saes, labels, toxic, relative_threshold=0.0)
    # "stupid" is 1 of the 6 tokens of every toxic text and absent from clean ones.
    assert test.rate_on_toxic[STUPID] == pytest.approx(1 / 6)
    assert test.rate_on_clean[STUPID] == 0.0
    g = test.toxic_linked
    assert g.num_features >= 1 and g.rate_on_toxic > g.rate_on_clean
    by_text = firing_rate_test(captured, saes, labels, toxic, unit="text")
    assert by_text.rate_on_toxic[STUPID] == 1.0 and by_text.rate_on_clean[STUPID] == 0.0


def test_labels_are_fdr_corrected_and_random_directions_are_a_control():
    import scipy.stats

    captured, saes, toxic = hand_setup()
    labels = label_features(captured, saes, word_tokenizer(), None, top_k=10, before=2, after=0,
                            criterion="wordlist", num_random_features=8)
    alive = labels.num_contexts > 0
    np.testing.assert_allclose(labels.q_enriched[alive],
                               scipy.stats.false_discovery_control(labels.p_enriched[alive]))
    np.testing.assert_array_equal(labels.toxic_linked, labels.q_enriched < labels.fdr)
    assert labels.random.layer.shape == (8,) and labels.random.directions[0].shape == (8, len(WORDS))
    s = labels.summary()
    assert s["num_random_features"] == 8 and s["min_depletion_p"] == pytest.approx(
        (1 - labels.base_rate) ** 10)
    assert s["toxic_linked_fraction_difference_low"] <= s["toxic_linked_fraction_difference"]
    # Texts 3k and 3k+1 share a prompt: the bootstrap resamples 20 prompts, not 60 texts.
    groups = np.arange(60) // 3
    test = firing_rate_test(captured, saes, labels, toxic, relative_threshold=0.0, groups=groups,
                            n_resamples=200)
    assert test.num_groups == 20 and test.random_rate_on_toxic.shape == (8,)
    g = test.toxic_linked
    # Every toxic-linked feature fires only on toxic texts: selectivity exactly 1 in every
    # resample, and the bootstrap p-value is as small as 200 resamples allow, no smaller.
    assert g.selectivity["estimate"] == g.selectivity["low"] == 1.0
    assert g.p_value == pytest.approx(1 / 201) and g.p_floor == pytest.approx(1 / 201)
    # The others' test is two-sided: its smallest p is twice the one-sided one.
    assert test.others.num_features and test.others.alternative == "two-sided"
    assert test.others.p_floor == pytest.approx(2 / 201)
    assert test.random_others.num_features + (test.random_toxic_linked.num_features
                                              if test.random_toxic_linked else 0) == 8
    summary = test.summary()
    assert "random_others" in summary and summary["toxic_linked"]["difference"]["estimate"] > 0


def test_label_and_firing_errors():
    captured, saes, toxic = hand_setup()
    with pytest.raises(ConfigError, match="criterion"):
        label_features(captured, saes, word_tokenizer(), None, criterion="gpt4")
    with pytest.raises(ConfigError, match="wordlist"):
        label_features(captured, saes, word_tokenizer(), None, criterion="either")
    labels = label_features(captured, saes, word_tokenizer(), None, criterion="wordlist",
                            num_random_features=2)
    with pytest.raises(DataError, match="both toxic and clean"):
        firing_rate_test(captured, saes, labels, np.zeros(60, bool))


def test_base_rate_contexts_draw_texts_not_tokens():
    from jaxirl.interp.features import random_context_rows

    # One 1-token text and one 99-token text: top contexts take one token per text, so
    # the null must hit the short text half the time, not 1% of the time.
    ids = np.arange(100) % len(WORDS)
    captured = CapturedActivations(
        activations={0: np.zeros((100, 2), np.float32)},
        text_index=np.r_[0, np.ones(99, np.int32)].astype(np.int32),
        position=np.r_[0, np.arange(99)].astype(np.int32), token_ids=ids.astype(np.int32),
        num_texts=2)
    rows = random_context_rows(captured, 4000, np.random.default_rng(0))
    assert rows.min() >= 0 and rows.max() < 100
    assert np.mean(rows == 0) == pytest.approx(0.5, abs=0.03)
    assert len(np.unique(rows[rows > 0])) > 90  # uniform within the long text


def test_binomial_p_values_and_the_others_set_by_hand():
    import math

    from jaxirl.interp import firing_rate_test, label_features

    captured, saes, toxic = hand_setup()
    labels = label_features(captured, saes, word_tokenizer(), None, top_k=10, before=2, after=0,
                            criterion="wordlist", num_random_features=8)
    p0 = labels.base_rate
    assert labels.num_contexts[STUPID] == 10 and labels.flagged_share[STUPID] == 1.0
    assert labels.p_enriched[STUPID] == pytest.approx(p0 ** 10)          # P(S >= 10)
    assert labels.p_depleted[STUPID] == pytest.approx(1.0)               # P(S <= 10)
    assert labels.z[STUPID] == pytest.approx((1 - p0) / math.sqrt(p0 * (1 - p0) / 10))
    test = firing_rate_test(captured, saes, labels, toxic, relative_threshold=0.0, n_resamples=50)
    alive = labels.num_contexts > 0
    assert test.others.num_features == int((alive & ~labels.toxic_linked & ~labels.clean_linked).sum())
