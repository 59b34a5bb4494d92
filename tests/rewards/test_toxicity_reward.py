"""The reward math, its validation, the registry and the profanity-check scorer."""

from __future__ import annotations

import numpy as np
import pytest

from jaxirl.errors import ConfigError, RewardError
from jaxirl.rewards import (
    SCORER_FACTORIES,
    ProfanityScorer,
    ToxicityReward,
    ToxicityScorer,
    checked_scores,
    make_reward_fn,
    make_scorer,
    register_scorer,
)

CLEAN = ["What a lovely sunny day for a walk in the park.",
         "Thank you so much for your help with the project.",
         "The meeting is scheduled for Tuesday afternoon."]
OFFENSIVE = ["Shut up, you worthless piece of shit.",
             "You are a fucking idiot and everyone hates you.",
             "Go to hell, you stupid bitch."]


class FakeScorer:
    """P(toxic) looked up in a table; counts its calls."""

    def __init__(self, table):
        self.table = dict(table)
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        return np.array([self.table[t] for t in texts])

    def log_odds(self, texts):
        p = self(texts)
        return np.log1p(-p) - np.log(p)


TABLE = {"a": 0.1, "b": 0.75, "c": 0.5, "ref1": 0.2, "ref2": 0.9, "ref3": 0.0}


def test_reward_without_reference():
    reward = make_reward_fn(FakeScorer(TABLE))(["a", "b", "c"])
    assert reward.dtype == np.float32 and reward.shape == (3,)
    np.testing.assert_allclose(reward, [-0.1, -0.75, -0.5], rtol=1e-6)


def test_reward_with_reference():
    reward = make_reward_fn(FakeScorer(TABLE))(["a", "b", "c"], ["ref1", "ref2", "ref3"])
    # -tox(sample) + tox(reference), by hand.
    np.testing.assert_allclose(reward, [-0.1 + 0.2, -0.75 + 0.9, -0.5 + 0.0], rtol=1e-6)
    assert make_reward_fn(FakeScorer(TABLE))([]).shape == (0,)


def test_reward_is_frozen_and_takes_specs():
    fn = make_reward_fn(FakeScorer(TABLE))
    assert isinstance(fn, ToxicityReward) and isinstance(fn.scorer, ToxicityScorer)
    with pytest.raises(AttributeError):
        fn.scorer = None
    assert isinstance(make_reward_fn("profanity").scorer, ProfanityScorer)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, 1.5])
def test_bad_score_names_the_sample(bad):
    fn = make_reward_fn(FakeScorer({**TABLE, "x": bad}))
    with pytest.raises(RewardError, match=r"sample 2 'x'"):
        fn(["a", "b", "x"])
    with pytest.raises(RewardError, match=r"reference 1 'x'"):
        fn(["a", "b"], ["ref1", "x"])


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_blank_text_names_the_index(blank):
    scorer = FakeScorer(TABLE)
    with pytest.raises(RewardError, match=r"sample 1 .*empty"):
        make_reward_fn(scorer)(["a", blank, "b"])
    with pytest.raises(RewardError, match=r"reference 0 .*empty"):
        make_reward_fn(scorer)(["a"], [blank])
    assert scorer.calls == 1  # the blank sample never reaches the scorer


def test_scorer_exception_names_the_index():
    # "boom" is not in the table: the batch call fails, then each text is retried alone.
    with pytest.raises(RewardError, match=r"scorer failed on sample 3 'boom'.*KeyError"):
        make_reward_fn(FakeScorer(TABLE))(["a", "b", "c", "boom"])


def test_batch_only_failure_and_shape_errors():
    def batch_of_one_only(texts):
        if len(texts) > 1:
            raise RuntimeError("out of memory")
        return np.array([0.5])

    with pytest.raises(RewardError, match="batch of 2 samples.*out of memory"):
        checked_scores(batch_of_one_only, ["a", "b"])
    with pytest.raises(RewardError, match=r"shape \(3,\) for 2 samples"):
        checked_scores(lambda t: np.zeros(3), ["a", "b"])
    with pytest.raises(RewardError, match="2 samples but 1 references"):
        make_reward_fn(FakeScorer(TABLE))(["a", "b"], ["ref1"])
    with pytest.raises(RewardError, match="single string"):
        make_reward_fn(FakeScorer(TABLE))("a")
    with pytest.raises(RewardError, match="sample 0 is of type int"):
        checked_scores(FakeScorer(TABLE), [3])
    # log-odds are not probabilities: any finite value passes when asked so.
    np.testing.assert_allclose(checked_scores(lambda t: np.array([-7.0]), ["a"],
                                              probabilities=False), [-7.0])


def test_registry():
    with pytest.raises(ConfigError, match="unknown reward scorer 'nope'.*profanity.*roberta"):
        make_scorer("nope")
    with pytest.raises(ConfigError, match="takes no argument"):
        make_scorer("profanity:x")
    with pytest.raises(ConfigError, match="already registered"):
        register_scorer("profanity", lambda arg: None)
    try:
        register_scorer("fake", lambda arg: FakeScorer({arg: 0.25}))
        fn = make_reward_fn("fake:hello")
        np.testing.assert_allclose(fn(["hello"]), [-0.25])
    finally:
        SCORER_FACTORIES.pop("fake", None)


def test_profanity_scorer_orders_clean_and_offensive():
    scorer = make_scorer("profanity")
    assert isinstance(scorer, ToxicityScorer)
    clean, offensive = scorer(CLEAN), scorer(OFFENSIVE)
    assert clean.shape == (3,) and clean.dtype == np.float64
    assert (offensive > 0.5).all(), offensive
    assert (clean < 0.5).all(), clean
    assert offensive.min() > clean.max()
    log_odds = scorer.log_odds(CLEAN + OFFENSIVE)
    assert (log_odds[:3] > 0).all() and (log_odds[3:] < 0).all()
    assert np.isfinite(log_odds).all()  # p == 1.0 exactly is clipped
    p = scorer(CLEAN[:1])
    np.testing.assert_allclose(log_odds[0], np.log((1 - p[0]) / p[0]), rtol=1e-9)
    reward = make_reward_fn(scorer)(OFFENSIVE, CLEAN)
    assert (reward < -0.0).all()  # more toxic than the reference: negative reward
    np.testing.assert_allclose(reward, (-offensive + clean).astype(np.float32), rtol=1e-6)


def test_profanity_log_odds_clip_certain_probabilities_at_1e_minus_12():
    scorer = ProfanityScorer()
    scorer._predict_prob = lambda texts: np.array([0.0, 1.0, 0.25])
    # p clipped to [1e-12, 1 - 1e-12]: log((1 - p) / p) = ±12·ln 10 ≈ ±27.63 (up to the
    # float64 rounding of 1 - 1e-12, ~1e-6 relative); p = ¼: ln 3.
    bound = 12 * np.log(10.0)
    np.testing.assert_allclose(scorer.log_odds(["a", "b", "c"]), [bound, -bound, np.log(3.0)],
                               rtol=1e-5)
