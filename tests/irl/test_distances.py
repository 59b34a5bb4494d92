"""EPIC and STARC reward distances: hand-computed values and the metric properties."""

import numpy as np
import pytest

from jaxirl.errors import RewardError
from jaxirl.irl.distances import (
    canonicalize,
    epic_distance,
    margin_cosine_distance,
    pair_distances,
    starc_distance,
    weighted_norm,
)


def _pairs(rng, p=12):
    expert, base = rng.normal(size=p), rng.normal(size=p)
    return np.concatenate([expert, base]), np.concatenate([np.arange(p), np.arange(p)])


def test_hand_computed_values():
    true, hat = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 3.0, 2.0])
    # Centred: [-1.5, -.5, .5, 1.5] and [-1.5, -.5, 1.5, .5]: cov 4, variances 5, rho 0.8.
    assert epic_distance(hat, true) == pytest.approx(np.sqrt(0.1), abs=1e-12)
    assert starc_distance(hat, true, halve=False) == pytest.approx(np.sqrt(0.4), abs=1e-12)
    assert starc_distance(hat, true) == pytest.approx(np.sqrt(0.1), abs=1e-12)
    # Variant B on two pairs (expert 0, base 2), (expert 1, base 3): margins [1, 0] and [1, 1].
    groups = np.array([0, 1, 0, 1])
    r_hat, r_true = np.array([1.0, 5.0, 0.0, 5.0]), np.array([2.0, 1.0, 1.0, 0.0])
    expected = np.sqrt(2 - np.sqrt(2))  # cos = 1/sqrt(2)
    assert starc_distance(r_hat, r_true, canon="per_prompt", groups=groups,
                          halve=False) == pytest.approx(expected, abs=1e-12)
    assert margin_cosine_distance([1.0, 0.0], [1.0, 1.0], halve=False) == pytest.approx(expected)
    # L1 and L-inf on the global variant: centred [-1, 1] vs [1, -1] after scaling, by hand.
    assert starc_distance([0.0, 2.0], [1.0, 0.0], norm=1, halve=False) == pytest.approx(2.0)
    assert starc_distance([0.0, 2.0], [1.0, 0.0], norm=np.inf, halve=False) == pytest.approx(2.0)


def test_epic_equals_halved_starc_a_with_weights():
    rng = np.random.default_rng(0)
    for _ in range(20):
        true = rng.normal(size=50)
        hat = true + rng.normal(scale=rng.uniform(0.1, 3), size=50)
        w = rng.uniform(0, 1, size=50)
        assert abs(epic_distance(hat, true, weights=w) -
                   starc_distance(hat, true, weights=w)) < 1e-12
        assert abs(epic_distance(hat, true) - starc_distance(hat, true)) < 1e-12


def test_variant_b_is_the_margin_cosine_distance():
    rng = np.random.default_rng(1)
    hat, groups = _pairs(rng)
    true, _ = _pairs(rng)
    p = len(hat) // 2
    d = starc_distance(hat, true, canon="per_prompt", groups=groups)
    assert d == pytest.approx(margin_cosine_distance(hat[:p] - hat[p:], true[:p] - true[p:]))
    out = pair_distances(hat[:p], hat[p:], true[:p], true[p:])
    assert out["starc_b"] == pytest.approx(d)
    assert out["starc_a"] == pytest.approx(out["epic"], abs=1e-12)


@pytest.mark.parametrize("canon", ["global", "per_prompt"])
@pytest.mark.parametrize("norm", [1, 2, np.inf])
def test_invariant_to_positive_affine_maps(canon, norm):
    rng = np.random.default_rng(2)
    hat, groups = _pairs(rng)
    true, _ = _pairs(rng)
    kw = {"canon": canon, "norm": norm, "groups": groups}
    d = starc_distance(hat, true, **kw)
    for a, b in ((3.0, -7.0), (0.01, 100.0)):
        assert starc_distance(a * hat + b, true, **kw) == pytest.approx(d, abs=1e-12)
        assert starc_distance(hat, a * true + b, **kw) == pytest.approx(d, abs=1e-12)
    assert epic_distance(5 * hat - 2, true) == pytest.approx(epic_distance(hat, true))


def test_variant_b_ignores_per_prompt_offsets_and_a_does_not():
    rng = np.random.default_rng(3)
    hat, groups = _pairs(rng)
    true, _ = _pairs(rng)
    shifted = hat + rng.normal(scale=10, size=groups.max() + 1)[groups]
    kw = {"canon": "per_prompt", "groups": groups}
    assert starc_distance(shifted, true, **kw) == pytest.approx(
        starc_distance(hat, true, **kw), abs=1e-12)
    assert abs(starc_distance(shifted, true) - starc_distance(hat, true)) > 1e-3


@pytest.mark.parametrize("canon", ["global", "per_prompt"])
def test_zero_iff_canonical_forms_agree(canon):
    rng = np.random.default_rng(4)
    hat, groups = _pairs(rng)
    kw = {"canon": canon, "groups": groups}
    offsets = rng.normal(size=groups.max() + 1)[groups] if canon == "per_prompt" else 1.0
    assert starc_distance(2.5 * hat + offsets, hat, **kw) == pytest.approx(0.0, abs=1e-12)
    other = hat.copy()
    other[0] += 0.5  # changes the canonical form (any single-text change does)
    assert starc_distance(other, hat, **kw) > 1e-3
    # Opposite rewards are as far apart as the halved L2 distance allows.
    assert starc_distance(-hat, hat, **kw) == pytest.approx(1.0)


@pytest.mark.parametrize("canon", ["global", "per_prompt"])
@pytest.mark.parametrize("norm", [1, 2, np.inf])
def test_symmetry_and_triangle_inequality(canon, norm):
    rng = np.random.default_rng(5)
    kw = {"canon": canon, "norm": norm}
    for _ in range(200):
        (x, groups), (y, _), (z, _) = _pairs(rng, 4), _pairs(rng, 4), _pairs(rng, 4)
        kw["groups"] = groups
        dxy, dyx = starc_distance(x, y, **kw), starc_distance(y, x, **kw)
        assert dxy == pytest.approx(dyx, abs=1e-12)
        assert dxy <= starc_distance(x, z, **kw) + starc_distance(z, y, **kw) + 1e-12


def test_coverage_weights_are_used():
    rng = np.random.default_rng(6)
    hat, true = rng.normal(size=10), rng.normal(size=10)
    w = np.ones(10)
    w[3] = 0.0
    keep = np.arange(10) != 3
    assert starc_distance(hat, true, weights=w) == pytest.approx(
        starc_distance(hat[keep], true[keep]), abs=1e-12)
    assert epic_distance(hat, true, weights=w) == pytest.approx(
        epic_distance(hat[keep], true[keep]), abs=1e-12)


def test_constant_reward_has_zero_standardised_form():
    # s(R) = c(R) = 0 when the canonical form has norm 0: distance ½·‖s(true)‖ = ½.
    assert starc_distance(np.ones(6), np.arange(6.0)) == pytest.approx(0.5)
    assert np.allclose(canonicalize(np.full(4, 3.0)), 0.0)


@pytest.mark.parametrize("n, c", [(16, 1.0), (20, 0.0), (20, 1.0), (10, 0.3), (10, 7.1)])
def test_epic_of_a_constant_reward_is_halved_starc_a(n, c):
    # It read 0 (a perfect match: max(0, nan) is 0) or the correlation with float noise
    # left by centring (0.707 for c = 1, n = 20).
    true = np.random.default_rng(n).normal(size=n)
    assert epic_distance(np.full(n, c), true) == pytest.approx(0.5)
    assert epic_distance(np.full(n, c), np.full(n, 2.0)) == 0.0


def test_bad_input_one_line_errors():
    with pytest.raises(RewardError, match="groups"):
        starc_distance([1.0, 2.0], [2.0, 1.0], canon="per_prompt")
    with pytest.raises(RewardError, match="canonicalisation"):
        starc_distance([1.0, 2.0], [2.0, 1.0], canon="value")
    with pytest.raises(RewardError, match="have 3"):
        starc_distance([1.0, 2.0], [2.0, 1.0, 0.0])
    with pytest.raises(RewardError, match="non-finite"):
        epic_distance([1.0, np.nan], [2.0, 1.0])
    with pytest.raises(RewardError, match=r"one value per pair each, got \[2, 2, 3, 2\]"):
        pair_distances([1.0, 2.0], [0.0, 1.0], [1.0, 2.0, 3.0], [0.0, 1.0])


def test_per_prompt_canonicalisation_subtracts_the_weighted_prompt_mean():
    r, groups = np.array([0.0, 4.0, 10.0, 20.0]), np.array([0, 0, 1, 1])
    # Prompt 0: (3·0 + 1·4) / 4 = 1; prompt 1: (10 + 20) / 2 = 15 (the unweighted mean is 2).
    got = canonicalize(r, canon="per_prompt", weights=[3.0, 1.0, 1.0, 1.0], groups=groups)
    np.testing.assert_allclose(got, [-1.0, 3.0, -5.0, 5.0], atol=1e-12)


def test_inf_norm_ignores_texts_of_weight_zero():
    assert weighted_norm(np.array([1.0, -5.0, 2.0]), np.array([0.5, 0.0, 0.5]), np.inf) == 2.0
    # So a weight-0 text changes no L-inf STARC distance, however extreme its rewards.
    hat, true = np.array([0.0, 1.0, 3.0, 100.0]), np.array([1.0, 0.0, 2.0, -100.0])
    w = np.array([1.0, 1.0, 1.0, 0.0])
    assert starc_distance(hat, true, norm=np.inf, weights=w) == pytest.approx(
        starc_distance(hat[:3], true[:3], norm=np.inf), abs=1e-12)
