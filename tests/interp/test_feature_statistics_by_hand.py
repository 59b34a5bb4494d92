"""The firing-rate test, the feature labels' binomial tests and the IRM's pooling, by hand."""
import math

import numpy as np
import pytest


def _group(*a):
    from jaxirl.interp.firing import _group as g
    return g(*a)


def test_ties_count_against_greater():
    g = _group(np.array([0.1]), np.array([0.1]), "greater", {}, {"x/difference": np.zeros(200)}, "x")
    assert g.p_value == 1.0


def test_two_sided_doubles_the_smaller_tail():
    d = np.r_[np.full(150, 1.0), np.full(50, -1.0)]
    g = _group(np.array([0.2]), np.array([0.1]), "two-sided", {}, {"x/difference": d}, "x")
    assert g.p_value == pytest.approx(2 * 51 / 201)


def test_fraction_higher_is_strict():
    g = _group(np.array([0.2, 0.1, 0.0]), np.array([0.1, 0.1, 0.0]), "greater", {}, {}, "x")
    assert g.fraction_higher_on_toxic == pytest.approx(1 / 3)


def test_text_features_pool_as_asked():
    from jaxirl.interp import CapturedActivations
    from jaxirl.interp.irm import text_features
    acts = np.array([[1.0, -2.0], [3.0, 0.0], [5.0, 1.0]], np.float32)
    cap = CapturedActivations({0: acts}, np.array([0, 0, 1], np.int32), np.array([0, 1, 0], np.int32),
                              np.zeros(3, np.int32), 2)
    np.testing.assert_allclose(text_features(cap, [0], None, "max"), [[3.0, 0.0], [5.0, 1.0]])
    np.testing.assert_allclose(text_features(cap, [0], None, "sum"), [[4.0, -2.0], [5.0, 1.0]])




def test_binomial_tests_by_hand():
    from jaxirl.interp.features import _binomial_tests
    share, z, p_hi, p_lo = _binomial_tests(np.array([3]), np.array([10]), 0.1)
    # P(S <= 3) = .3487 + .3874 + .1937 + .0574; P(S >= 3) = 1 - (.3487 + .3874 + .1937)
    np.testing.assert_allclose(p_lo, [0.98720], atol=1e-5)
    np.testing.assert_allclose(p_hi, [0.07019], atol=1e-5)
    np.testing.assert_allclose(z, [0.2 / math.sqrt(0.009)], rtol=1e-9)
