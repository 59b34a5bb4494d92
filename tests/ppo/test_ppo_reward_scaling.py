"""Running moments and trlx reward scaling against NumPy and hand values."""

import jax
import numpy as np
import pytest

from jaxirl.errors import ConfigError
from jaxirl.ppo import RewardScalingState, RunningMoments, scale_rewards, update_running_moments


def test_running_moments_match_numpy_on_concatenated_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=n).astype(np.float32) for n in (16, 5, 32, 2, 9)]
    state = RunningMoments.create()
    step = jax.jit(update_running_moments)
    seen = []
    for xs in batches:
        state, batch_mean, batch_std = step(state, xs)
        seen.append(xs)
        allx = np.concatenate(seen)
        np.testing.assert_allclose(state.mean, allx.mean(), rtol=1e-5)
        np.testing.assert_allclose(state.var, allx.var(), rtol=1e-4)  # population
        np.testing.assert_allclose(state.std, allx.std(ddof=1), rtol=1e-4)  # unbiased
        np.testing.assert_allclose(state.count, allx.size)
        np.testing.assert_allclose(batch_mean, xs.mean(), rtol=1e-5)
        np.testing.assert_allclose(batch_std, xs.std(ddof=1), rtol=1e-4)


def test_running_moments_mask_drops_rows():
    xs = np.array([1.0, 2.0, 3.0, 1e6], np.float32)
    state, mean, std = update_running_moments(RunningMoments.create(), xs, np.array([1, 1, 1, 0]))
    assert float(state.count) == pytest.approx(3.0)
    assert float(state.mean) == pytest.approx(2.0)
    assert float(state.std) == pytest.approx(1.0)  # unbiased std of 1, 2, 3
    assert float(mean) == pytest.approx(2.0) and float(std) == pytest.approx(1.0)


def test_scale_rewards_hand_values_running_then_ref():
    scores = np.array([-20.0, 4.0, 10.0, 14.0], np.float32)
    # Clip first (trlx order): [-10, 4, 10, 10]; mean 3.5;
    # squared deviations 182.25 + 0.25 + 42.25 + 42.25 = 267; unbiased var 267 / 3 = 89.
    clipped = np.array([-10.0, 4.0, 10.0, 10.0])
    std1 = np.sqrt(89.0)
    scale = jax.jit(scale_rewards, static_argnums=2)
    out, state = scale(scores, RewardScalingState.create(), "running", 10.0)
    np.testing.assert_allclose(out, clipped / std1, rtol=1e-5)  # divided, not mean-shifted
    assert float(state.ref_mean) == pytest.approx(3.5)
    assert float(state.ref_std) == pytest.approx(std1, rel=1e-6)

    second = np.array([1.0, 3.0], np.float32)
    out2, state2 = scale(second, state, "running", 10.0)
    std12 = np.concatenate([clipped, second]).std(ddof=1)  # includes this batch
    np.testing.assert_allclose(out2, second / std12, rtol=1e-5)
    # "ref" keeps dividing by the first batch's std.
    out3, state3 = scale(second, state, "ref", 10.0)
    np.testing.assert_allclose(out3, second / std1, rtol=1e-5)
    assert float(state3.ref_std) == pytest.approx(std1, rel=1e-6)
    # None: clip only; the moments still advance (trlx logs them).
    out4, state4 = scale(scores, state, None, 10.0)
    np.testing.assert_allclose(out4, clipped)
    assert float(state4.moments.count) == pytest.approx(8.0)


def test_cliprange_none_or_zero_disables_clipping_and_config_ref():
    scores = np.array([-30.0, 30.0], np.float32)
    for c in (None, 0.0):
        out, _ = scale_rewards(scores, RewardScalingState.create(), None, c)
        np.testing.assert_allclose(out, scores)
    state = RewardScalingState.create(ref_mean=0.0, ref_std=4.0)
    out, state = scale_rewards(np.array([8.0, -2.0], np.float32), state, "ref", 10.0)
    np.testing.assert_allclose(out, [2.0, -0.5])
    assert float(state.ref_std) == 4.0
    with pytest.raises(ConfigError, match="scale_reward"):
        scale_rewards(scores, state, "whiten", 10.0)
    with pytest.raises(ConfigError, match="ref_mean"):
        RewardScalingState.create(ref_std=1.0)
