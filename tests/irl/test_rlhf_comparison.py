"""The re-RLHF share of the toxicity reduction and its paired bootstrap interval."""

import numpy as np
import pytest

from jaxirl.errors import RewardError
from jaxirl.irl import toxicity_reduction_share


def test_share_is_the_ratio_of_the_mean_drops():
    base = np.array([0.5, 0.3, 0.4, 0.2])      # mean 0.35
    true = np.array([0.1, 0.1, 0.05, 0.05])    # mean 0.075: drop 0.275
    learned = np.array([0.2, 0.1, 0.1, 0.0])   # mean 0.1:   drop 0.25
    result = toxicity_reduction_share(base, true, learned)
    np.testing.assert_allclose(result.share, 0.25 / 0.275, rtol=1e-12)
    assert result.num_prompts == 4 and result.confidence == 0.95
    assert result.low <= result.share <= result.high


def test_interval_narrows_with_more_prompts_and_is_deterministic():
    rng = np.random.default_rng(0)

    def draw(n):
        base = rng.uniform(0.2, 0.6, n)
        return base, base - 0.3 + rng.normal(0, 0.1, n), base - 0.24 + rng.normal(0, 0.1, n)

    few, many = toxicity_reduction_share(*draw(30)), toxicity_reduction_share(*draw(3000))
    assert many.high - many.low < 0.3 * (few.high - few.low)
    assert many.low < 0.8 < many.high  # the planted share is 0.24 / 0.3
    data = draw(50)
    assert toxicity_reduction_share(*data) == toxicity_reduction_share(*data)


def test_learned_as_good_as_true_gives_one_with_a_paired_interval():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, 40)
    after = base * 0.3
    result = toxicity_reduction_share(base, after, after)
    assert result.share == pytest.approx(1.0) and result.low == pytest.approx(1.0)
    assert result.high == pytest.approx(1.0)  # paired: every resample gives exactly 1


def test_no_true_reduction_is_nan_and_bad_input_names_the_array():
    same = np.full(5, 0.3)
    assert np.isnan(toxicity_reduction_share(same, same, same * 0.5).share)
    with pytest.raises(RewardError, match="after_learned"):
        toxicity_reduction_share(same, same * 0.5, np.array([0.1, np.nan, 0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="same prompts"):
        toxicity_reduction_share(same, same * 0.5, same[:3])


def test_seed_share_is_the_ratio_of_seed_means_and_widens_with_seed_spread():
    from jaxirl.irl.rlhf_comparison import toxicity_reduction_share_seeds

    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.6, (3, 60))
    true = base.mean(0) - 0.25 + rng.normal(0, 0.02, (3, 60))
    learned = base.mean(0) - 0.25 + rng.normal(0, 0.02, (3, 60))
    result = toxicity_reduction_share_seeds(base, true, learned, n_resamples=500)
    drop_t = base.mean() - true.mean()
    drop_l = base.mean() - learned.mean()
    assert result.share == pytest.approx(drop_l / drop_t, rel=1e-12)
    assert result.low <= result.share <= result.high and result.num_prompts == 60
    # Seed-to-seed spread of the learned-reward runs (whole-run offsets) widens the interval.
    spread = learned + np.array([[-0.08], [0.0], [0.08]])
    wide = toxicity_reduction_share_seeds(base, true, spread, n_resamples=500)
    assert wide.high - wide.low > 2 * (result.high - result.low)
    # One seed each and one base row reduce to the prompt bootstrap's point estimate.
    single = toxicity_reduction_share_seeds(base[0], true[:1], learned[:1], n_resamples=100)
    assert single.share == pytest.approx(toxicity_reduction_share(base[0], true[0],
                                                                  learned[0]).share)


def test_seed_interval_cuts_half_the_tail_on_each_side():
    from jaxirl.irl.rlhf_comparison import toxicity_reduction_share_seeds

    # Prompts are identical, so only the learned reward's two seeds vary: a resample's mean
    # is 0.1 (share 1, prob ¼), 0.3 (share ½, prob ½) or 0.5 (share 0, prob ¼).
    base, true = np.full((1, 2), 0.5), np.full((1, 2), 0.1)
    learned = np.array([[0.1, 0.1], [0.5, 0.5]])
    result = toxicity_reduction_share_seeds(base, true, learned, confidence=0.6)
    assert result.share == pytest.approx(0.5)
    # 60%: the 20% and 80% quantiles fall in the share-0 and share-1 atoms (each ~25% of
    # 2000 draws); cutting the whole 40% on each side would give [0.5, 0.5].
    assert result.low == pytest.approx(0.0, abs=1e-12)
    assert result.high == pytest.approx(1.0)
