"""The README's library snippet runs as written."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_snippet_imports_and_jits_the_losses():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    snippet = next(b for b in blocks if "jaxirl.irl import losses" in b)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    # diff = [1.5, -0.2]: the reference max-margin is mean(-1 * 1.5, -2 * -0.2) = -0.55,
    # and its gradient with respect to r_expert is [-1, -2] / 2.
    np.testing.assert_allclose(float(namespace["loss"]), -0.55, atol=1e-6)
    np.testing.assert_allclose(np.asarray(namespace["grads"]), [-0.5, -1.0], atol=1e-6)
    assert float(namespace["pg_loss"]) == -1.0
