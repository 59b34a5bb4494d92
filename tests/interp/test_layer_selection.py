"""Layer selection by summed Frobenius norm of the fine-tuning update, on hand-built trees."""

import numpy as np
import pytest

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.interp import layer_divergences, select_divergent_layers


def block(scale_w, bias):
    return {"mlp": {"kernel": np.full((2, 2), scale_w)}, "ln": {"bias": np.asarray(bias, float)}}


BASE = {"embed_in": {"embedding": np.zeros((4, 2))},
        "layers_0": block(0.0, [0.0, 0.0]), "layers_1": block(0.0, [0.0, 0.0]),
        "layers_2": block(0.0, [0.0, 0.0]), "layers_10": block(0.0, [0.0, 0.0])}


def test_known_ranking():
    tuned = {"embed_in": {"embedding": np.full((4, 2), 100.0)},  # outside any block: ignored
             "layers_0": block(1.0, [3.0, 4.0]),     # ||.||_F = 2 + 5 = 7 (a sum of norms)
             "layers_1": block(0.0, [0.0, 1.0]),     # 1
             "layers_2": block(2.0, [0.0, 0.0]),     # 4
             "layers_10": block(0.0, [6.0, 8.0])}    # 10
    div = layer_divergences(BASE, tuned)
    assert div == pytest.approx({0: 7.0, 1: 1.0, 2: 4.0, 10: 10.0})
    assert select_divergent_layers(BASE, tuned, 2) == [10, 0]
    assert select_divergent_layers({"params": BASE}, tuned, 4) == [10, 0, 2, 1]


def test_ties_go_to_lower_index():
    tuned = {**BASE, "layers_2": block(0.5, [0.0, 0.0]), "layers_1": block(0.5, [0.0, 0.0])}
    assert select_divergent_layers(BASE, tuned, 2) == [1, 2]


def test_mismatches_raise():
    with pytest.raises(CheckpointError, match="blocks"):
        layer_divergences(BASE, {k: v for k, v in BASE.items() if k != "layers_2"})
    bad = {**BASE, "layers_0": {"mlp": {"kernel": np.zeros((3, 2))}, "ln": {"bias": np.zeros(2)}}}
    with pytest.raises(CheckpointError, match=r"layers_0.*shape"):
        layer_divergences(BASE, bad)
    with pytest.raises(ConfigError, match=r"^InterpConfig\.num_layers \(blocks to study\) must "
                                          r"be in \[1, 4\]"):
        select_divergent_layers(BASE, BASE, 5)
