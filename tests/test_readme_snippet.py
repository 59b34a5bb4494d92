"""The README's library snippet runs as written."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def run_snippet(marker: str) -> dict:
    """Executes the README's python block that contains ``marker``; returns its namespace."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    snippet = next(b for b in blocks if marker in b)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def test_readme_snippet_imports_and_jits_the_losses():
    namespace = run_snippet("jaxirl.irl import losses")
    # diff = [1.5, -0.2]: the reference max-margin is mean(-1 * 1.5, -2 * -0.2) = -0.55,
    # and its gradient with respect to r_expert is [-1, -2] / 2.
    np.testing.assert_allclose(float(namespace["loss"]), -0.55, atol=1e-6)
    np.testing.assert_allclose(np.asarray(namespace["grads"]), [-0.5, -1.0], atol=1e-6)
    assert float(namespace["pg_loss"]) == -1.0


def test_readme_research_code_jits_a_ppo_update_and_an_irl_step():
    namespace = run_snippet("make_update")
    ppo, irl = namespace["metrics"], namespace["irl_metrics"]
    assert np.isfinite(float(ppo["loss"])) and float(ppo["grad_norm"]) > 0
    assert int(namespace["state"].step) == 0  # the update steps params; the loop counts iterations
    moved = np.abs(np.asarray(namespace["state"].params["layers_1"]["mlp"]["dense_4h_to_h"]["kernel"])
                   - np.asarray(namespace["params"]["layers_1"]["mlp"]["dense_4h_to_h"]["kernel"]))
    assert moved.max() > 0
    frozen_layer = namespace["state"].params["layers_0"]["mlp"]["dense_4h_to_h"]["kernel"]
    np.testing.assert_array_equal(frozen_layer,
                                  namespace["params"]["layers_0"]["mlp"]["dense_4h_to_h"]["kernel"])
    assert irl["loss"].shape == (1,) and np.isfinite(np.asarray(irl["loss"])).all()
