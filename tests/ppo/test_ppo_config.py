"""PPOConfig validation and the paper presets."""

import dataclasses

import pytest

from jaxirl.errors import ConfigError
from jaxirl.ppo import PRESETS, PPOConfig, get_preset


def test_pythia_presets_match_paper_values():
    c = get_preset("pythia70m")
    assert (c.lr, c.batch_size, c.num_rollouts, c.ppo_epochs, c.chunk_size) == (3e-6, 16, 32, 8, 4)
    assert (c.init_kl_coef, c.target, c.horizon) == (0.2, 5.71, 10000)
    assert (c.gamma, c.lam, c.cliprange, c.cliprange_value, c.vf_coef) == (1.0, 0.95, 0.2, 0.2, 1.0)
    assert (c.cliprange_reward, c.scale_reward) == (10.0, "running")
    assert (c.max_new_tokens, c.top_k, c.num_layers_unfrozen) == (128, 30, 4)
    big = get_preset("pythia410m")
    assert (big.lr, big.ppo_epochs, big.target, big.num_layers_unfrozen) == (8e-7, 5, 4.9, 3)
    assert (big.batch_size, big.num_rollouts, big.max_new_tokens) == (16, 32, 128)
    assert "tiny" in PRESETS
    hash(c)  # usable as a jit static argument


@pytest.mark.parametrize(
    "field,value",
    [
        ("lr", 0.0),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("ppo_epochs", True),
        ("gamma", 1.5),
        ("lam", -0.1),
        ("cliprange", -0.2),
        ("target", 0.0),
        ("scale_reward", "ignored"),
        ("top_p", 0.0),
        ("top_k", -1),
        ("num_layers_unfrozen", -2),
        ("max_grad_norm", 0.0),
        ("cliprange_reward", -1.0),
    ],
)
def test_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        dataclasses.replace(PRESETS["pythia70m"], **{field: value})


def test_unknown_preset_lists_names():
    with pytest.raises(ConfigError, match="pythia70m"):
        get_preset("pythia1b")
    assert PPOConfig().validate() == PPOConfig()
