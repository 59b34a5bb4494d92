"""Failure-aware IRL losses (FA-IRL) and the MaxEnt baseline: values, gradients, properties."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxirl.errors import ConfigError
from jaxirl.irl.losses import (
    FailureConfig,
    IRLLossConfig,
    fa_focal,
    fa_max_margin,
    fa_maxent,
    failure_flags,
    hinge,
    irl_loss,
    logistic,
    maxent,
    tie_threshold,
)

BASES = {"fa_max_margin": (fa_max_margin, hinge, {"margin": 1.0}),
         "fa_maxent": (fa_maxent, maxent, {}),
         "fa_focal": (fa_focal, maxent, {})}


def _data(seed=0, b=16):
    rng = np.random.default_rng(seed)
    r_e, r_b = (rng.normal(size=(2, b)) * 1.5).astype(np.float32)
    failures = (rng.uniform(size=b) < 0.4).astype(np.float32)
    return jnp.asarray(r_e), jnp.asarray(r_b), jnp.asarray(failures)


def _call(fn, r_e, r_b, failures, weight, kw):
    extra = {} if fn is fa_focal else {"failures": failures}
    return fn(r_e, r_b, failure_weight=weight, **kw, **extra)


@pytest.mark.parametrize("name", sorted(BASES))
def test_zero_weight_is_the_base_loss_bit_for_bit(name):
    fa, base, kw = BASES[name]
    r_e, r_b, f = _data()
    got = jax.value_and_grad(lambda a, b: _call(fa, a, b, f, 0.0, kw), argnums=(0, 1))(r_e, r_b)
    want = jax.value_and_grad(lambda a, b: base(a, b, **kw), argnums=(0, 1))(r_e, r_b)
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    # No failure flagged: also the base loss exactly, whatever λ.
    if name != "fa_focal":
        none = _call(fa, r_e, r_b, jnp.zeros_like(f), 3.0, kw)
        assert np.array_equal(np.asarray(none), np.asarray(base(r_e, r_b, **kw)))


@pytest.mark.parametrize("name", ["fa_max_margin", "fa_maxent"])
def test_non_failure_gradients_are_the_base_gradients(name):
    fa, base, kw = BASES[name]
    r_e, r_b, f = _data(1)
    g_fa = jax.grad(lambda a: _call(fa, a, r_b, f, 2.0, kw))(r_e)
    g_base = jax.grad(lambda a: base(a, r_b, **kw))(r_e)
    keep = np.asarray(f) == 0
    np.testing.assert_array_equal(np.asarray(g_fa)[keep], np.asarray(g_base)[keep])
    # Failures do get an extra pull towards larger gaps.
    assert np.all(np.asarray(g_fa)[~keep] <= np.asarray(g_base)[~keep])
    assert np.any(np.asarray(g_fa)[~keep] < np.asarray(g_base)[~keep])


def test_failure_past_the_failure_margin_stops_contributing():
    # Pair 0: a failure whose gap (3) passed γ_F = 2; pair 1: a failure at gap 1.5 (past γ = 1,
    # so the plain hinge ignores it, but the tighter γ_F still pulls); pair 2: not a failure.
    r_e, r_b = jnp.array([3.0, 1.5, -1.0]), jnp.zeros(3)
    f = jnp.array([1.0, 1.0, 0.0])
    loss, grad = jax.value_and_grad(lambda a: fa_max_margin(
        a, r_b, margin=1.0, failures=f, failure_weight=0.5, failure_margin=2.0))(r_e)
    # hinge: mean(0, 0, 2) = 2/3; FA term: mean over the 2 failures of (0, 0.5) = 0.25.
    assert float(loss) == pytest.approx(2 / 3 + 0.5 * 0.25, rel=1e-6)
    assert float(grad[0]) == 0.0
    assert float(grad[1]) == pytest.approx(-0.5 / 2)
    assert float(grad[2]) == pytest.approx(-1 / 3)


def test_fa_maxent_hand_computed():
    r_e, r_b, f = jnp.array([0.1, -0.2]), jnp.array([0.0, 0.0]), jnp.array([0.0, 1.0])
    tau, tau_f, lam = 0.1, 0.05, 2.0

    def nll(d, t):
        return math.log1p(math.exp(-d / t))

    want = 0.5 * (nll(0.1, tau) + nll(-0.2, tau)) + lam * 0.5 * nll(-0.2, tau_f)
    got = fa_maxent(r_e, r_b, failures=f, failure_weight=lam, temperature=tau,
                    failure_temperature=tau_f)
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_fa_focal_weights_peak_on_misordered_pairs():
    tau, beta, lam = 0.5, 2.0, 1.0
    r_e, r_b = jnp.array([-1.0, 0.0, 1.0]), jnp.zeros(3)
    z = np.array([-2.0, 0.0, 2.0])
    sig = 1 / (1 + np.exp(-z))
    nll = np.log1p(np.exp(-z))
    want = np.mean(nll) + lam * np.mean((1 - sig) ** beta * nll)
    got = fa_focal(r_e, r_b, temperature=tau, focal=beta, failure_weight=lam)
    assert float(got) == pytest.approx(want, rel=1e-6)
    # The soft weight is stop-gradient: the gradient is the weighted MaxEnt gradient.
    g = np.asarray(jax.grad(lambda a: fa_focal(a, r_b, temperature=tau, focal=beta))(r_e))
    want_g = -(1 + (1 - sig) ** beta) * (1 - sig) / tau / 3
    np.testing.assert_allclose(g, want_g, rtol=1e-5)


def test_maxent_is_the_labs_formula_and_logistic_at_unit_temperature():
    rng = np.random.default_rng(2)
    r_d, r_o = rng.normal(size=(2, 20)).astype(np.float32)
    t = 0.1
    lab = -np.mean(r_d / t - np.logaddexp(r_o / t, r_d / t))  # ajagota7/irl_llms, T = 0.1
    assert float(maxent(r_d, r_o)) == pytest.approx(lab, rel=1e-5)
    assert float(maxent(r_d, r_o, temperature=1.0)) == pytest.approx(float(logistic(r_d, r_o)))


def test_failure_flags_and_scale_aware_tie_threshold():
    r_e, r_b = jnp.array([-1.0, 0.05, 2.0, 0.5]), jnp.zeros(4)
    flags = failure_flags(r_e, r_b, tie=0.1)
    np.testing.assert_array_equal(flags["misclassified"], [1, 0, 0, 0])
    np.testing.assert_array_equal(flags["near_tie"], [0, 1, 0, 0])
    np.testing.assert_array_equal(flags["failures"], [1, 1, 0, 0])
    # No gradient flows through the flags.
    g = jax.grad(lambda a: jnp.sum(failure_flags(a, r_b, tie=0.1)["failures"] * a))(r_e)
    np.testing.assert_array_equal(g, flags["failures"])
    d = jnp.array([1.0, -2.0, 3.0, 0.5, 4.0])
    assert float(tie_threshold(d, scale=0.5)) == pytest.approx(1.0)  # 0.5 · median(|d|) = 2
    assert float(tie_threshold(10 * d, scale=0.5)) == pytest.approx(10.0)
    assert float(tie_threshold(d, rule="margin", margin=0.3)) == pytest.approx(0.3)


@pytest.mark.parametrize("name", ["fa_max_margin", "fa_maxent", "fa_focal"])
def test_jittable_and_vmappable_over_seeds(name):
    config = IRLLossConfig(name, failure=FailureConfig(weight=1.5))
    rng = np.random.default_rng(3)
    r_e, r_b = jnp.asarray(rng.normal(size=(2, 3, 8)), jnp.float32)
    f = jnp.asarray(rng.uniform(size=(3, 8)) < 0.5, jnp.float32)
    w = jnp.ones((3, 8)).at[:, -1].set(0.0)
    batched = jax.jit(jax.vmap(lambda a, b, ww, ff: config(a, b, ww, ff)))(r_e, r_b, w, f)
    for s in range(3):
        assert float(batched[s]) == pytest.approx(float(config(r_e[s], r_b[s], w[s], f[s])),
                                                  rel=1e-6)


def test_padding_pairs_never_matter():
    r_e, r_b, f = _data(4, 6)
    w = jnp.array([1.0, 1, 1, 1, 0, 0])
    poisoned = r_e.at[4].set(jnp.nan).at[5].set(jnp.inf)
    for name in ("fa_max_margin", "fa_maxent", "fa_focal"):
        a = irl_loss(name, poisoned, r_b, weights=w, failures=f)
        b = irl_loss(name, r_e[:4], r_b[:4], failures=f[:4])
        assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_config_validation():
    with pytest.raises(ConfigError, match="γ_F"):
        IRLLossConfig("fa_max_margin", margin=1.0, failure=FailureConfig(margin=0.5))
    with pytest.raises(ConfigError, match="tie_rule"):
        FailureConfig(tie_rule="mean")
    with pytest.raises(ConfigError, match="weight"):
        FailureConfig(weight=-1.0)
    with pytest.raises(ConfigError, match="temperature"):
        IRLLossConfig("maxent", temperature=0.0)
    # fa_maxent's margin is 0: tie_rule "margin" would flag no near-tie at all.
    with pytest.raises(ConfigError, match="tie_rule 'margin' needs a margin γ > 0"):
        IRLLossConfig("fa_maxent", failure=FailureConfig(tie_rule="margin"))
    assert IRLLossConfig("fa_maxent", margin=0.5, failure=FailureConfig(tie_rule="margin"))
    assert IRLLossConfig("fa_maxent").uses_failure_flags
    assert not IRLLossConfig("fa_focal").uses_failure_flags


def test_near_tie_threshold_is_inclusive():
    # |d| = δ exactly (0.5, -0.25 + 0.75 and 0.75 are exact in binary) counts as a near tie.
    r_e, r_b = jnp.array([0.5, 0.5, 2.0]), jnp.array([0.0, 1.0, 1.25])
    flags = failure_flags(r_e, r_b, tie=0.5)
    np.testing.assert_array_equal(flags["near_tie"], [1, 1, 0])
    np.testing.assert_array_equal(flags["misclassified"], [0, 1, 0])
    np.testing.assert_array_equal(flags["failures"], [1, 1, 0])


def test_fa_maxent_failure_term_subtracts_the_margin():
    # margin 0.1: the failure term is −log σ((d − 0.1) / τ_F), like the base term's d − 0.1.
    r_e, r_b, f = jnp.array([0.3, 0.05]), jnp.array([0.0, 0.0]), jnp.array([0.0, 1.0])
    tau, tau_f, lam, m = 0.1, 0.05, 2.0, 0.1

    def nll(d, t):
        return math.log1p(math.exp(-d / t))

    want = 0.5 * (nll(0.3 - m, tau) + nll(0.05 - m, tau)) + lam * 0.5 * nll(0.05 - m, tau_f)
    got = fa_maxent(r_e, r_b, margin=m, failures=f, failure_weight=lam, temperature=tau,
                    failure_temperature=tau_f)
    assert float(got) == pytest.approx(want, rel=1e-5)
