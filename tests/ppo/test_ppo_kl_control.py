"""KL controllers: hand-computed updates, jit/vmap, config dispatch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxirl.errors import ConfigError
from jaxirl.ppo import (
    PRESETS,
    PPOConfig,
    adaptive_kl_controller,
    fixed_kl_controller,
    kl_controller_from_config,
    update_kl_controller,
)


def test_adaptive_update_by_hand():
    ctl = adaptive_kl_controller(init_kl_coef=0.2, target=6.0, horizon=10000)
    step = jax.jit(update_kl_controller)
    # KL 9 > target: error 9/6 - 1 = 0.5, clipped to 0.2;
    # mult = 1 + 0.2 * 16 / 10000 = 1.00032 -> beta = 0.2 * 1.00032 = 0.200064
    ctl = step(ctl, 9.0, 16)
    assert float(ctl.value) == pytest.approx(0.200064, rel=1e-6)
    # KL 5.7 < target: error 5.7/6 - 1 = -0.05 (inside the clip);
    # mult = 1 - 0.05 * 16 / 10000 = 0.99992 -> beta = 0.200064 * 0.99992 = 0.20004799488
    ctl = step(ctl, 5.7, 16)
    assert float(ctl.value) == pytest.approx(0.20004799488, rel=1e-6)
    # Far below target: error clipped to -0.2; n_steps = horizon: beta *= 0.8.
    ctl2 = update_kl_controller(adaptive_kl_controller(1.0, 6.0, 100), 0.0, 100)
    assert float(ctl2.value) == pytest.approx(0.8, rel=1e-6)


def test_fixed_controller_never_moves():
    ctl = fixed_kl_controller(0.05)
    for kl in (0.0, 1e3):
        ctl = jax.jit(update_kl_controller)(ctl, kl, 32)
    assert float(ctl.value) == pytest.approx(0.05)
    assert not ctl.adaptive


def test_vmap_over_controllers_with_different_targets():
    ctls = jax.vmap(lambda t: adaptive_kl_controller(0.1, 6.0, 1000).replace(target=t))(
        jnp.array([3.0, 6.0, 12.0])
    )
    out = jax.vmap(update_kl_controller, in_axes=(0, None, None))(ctls, 6.0, 10)
    # errors: clip(6/3 - 1) = 0.2, 0, clip(6/12 - 1 = -0.5) = -0.2; mult = 1 + e * 10 / 1000
    np.testing.assert_allclose(out.value, [0.1 * 1.002, 0.1, 0.1 * 0.998], rtol=1e-6)


def test_from_config_and_bad_args():
    adaptive = kl_controller_from_config(PRESETS["pythia70m"])
    assert adaptive.adaptive and float(adaptive.target) == pytest.approx(5.71)
    assert float(adaptive.value) == pytest.approx(0.2)
    fixed = kl_controller_from_config(PPOConfig(init_kl_coef=0.3, target=None))
    assert not fixed.adaptive and float(fixed.value) == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="target"):
        adaptive_kl_controller(0.1, 0.0, 10)
    with pytest.raises(ConfigError, match="horizon"):
        adaptive_kl_controller(0.1, 1.0, 0)
