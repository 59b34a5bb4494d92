"""Word-count probes: what demonstrations identify of a ground-truth reward."""

import numpy as np
import pytest

from jaxirl.errors import DataError
from jaxirl.irl.word_probes import word_count_probes

BAD = {"bad": -2.0, "worse": -5.0, "worst": -9.0}
NEUTRAL = ["cat", "dog", "sun", "tree", "road", "blue"]


def _texts(rng, n, with_bad):
    texts, true = [], []
    for _ in range(n):
        words = list(rng.choice(NEUTRAL, size=4))
        reward = 0.0
        if with_bad:
            bad = rng.choice(list(BAD))
            words.append(bad)
            reward += BAD[bad]
        texts.append(" ".join(words))
        true.append(reward)
    return texts, np.array(true)


def test_an_expert_that_avoids_every_bad_word_leaves_their_order_unidentified():
    # The expert never writes a bad word and the base writes one of three, each as often:
    # every bad word separates the classes alike, so the discriminator weighs them alike
    # (slope ~0 against the truth's -2, -5, -9), while the supervised oracle recovers the
    # truth, and swapping in its weights on those words recovers the Pearson.
    rng = np.random.default_rng(0)
    expert, true_e = _texts(rng, 300, with_bad=False)
    base, true_b = _texts(rng, 300, with_bad=True)
    test, true_t = _texts(rng, 200, with_bad=True)
    test_e, true_te = _texts(rng, 200, with_bad=False)
    out = word_count_probes(expert, base, np.r_[true_e, true_b], test + test_e,
                            np.r_[true_t, true_te])
    assert out["strong_words"] == 3 and out["train_pairs"] == 300
    assert abs(out["strong_weight_slope"]) < 0.1
    assert out["oracle_pearson"] > 0.99 and out["oracle_strong_weights_pearson"] > 0.99
    assert out["discriminator_pearson"] < 0.9
    assert [c["pairs"] for c in out["learning_curve"]] == [75, 150, 300]
    assert out["learning_curve"][-1]["pearson"] == pytest.approx(out["discriminator_pearson"])


def test_bad_input_is_a_clear_error():
    with pytest.raises(DataError, match="P expert and P base"):
        word_count_probes(["a b"], ["c d", "e"], np.zeros(2), ["a"], np.zeros(1))
    with pytest.raises(DataError, match="2 test texts but 1 true"):
        word_count_probes(["a b"], ["c d"], np.zeros(2), ["a", "b"], np.zeros(1))
