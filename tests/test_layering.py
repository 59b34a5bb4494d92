"""The library's layering: low layers never reach up, not even lazily or by string.

``jaxirl/ppo``, ``jaxirl/rewards``, ``jaxirl/models`` and ``jaxirl/generation`` are the
building blocks; ``jaxirl/irl``, ``jaxirl/interp`` and ``jaxirl/pipeline`` build on them.
An import the other way (at module level, inside a function, or as a ``"module:attr"``
string handed to importlib) would make the blocks unusable on their own.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxirl"
LOW = ("ppo", "rewards", "models", "generation")
HIGH = ("jaxirl.irl", "jaxirl.interp", "jaxirl.pipeline")


def _reaches_up(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") or name.startswith(h + ":") for h in HIGH)


def upward_references(path: pathlib.Path) -> list[str]:
    """Every import or string literal in ``path`` that names a higher layer, as 'line: text'."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if node.module == "jaxirl":
                names += [f"jaxirl.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value.strip()]
        found += [f"{node.lineno}: {n}" for n in names if _reaches_up(n)]
    return found


@pytest.mark.parametrize("layer", LOW)
def test_low_layers_never_import_higher_ones(layer):
    offenders = {str(p.relative_to(PACKAGE.parent)): refs
                 for p in sorted((PACKAGE / layer).rglob("*.py"))
                 if (refs := upward_references(p))}
    assert not offenders, f"jaxirl/{layer} reaches up: {offenders}"


def test_the_checker_finds_every_form(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import jaxirl.irl\n"
                   "from jaxirl.pipeline import study\n"
                   "from jaxirl import interp\n"
                   "def f():\n    from jaxirl.irl.reward_model import x\n"
                   "REGISTRY = {'learned': 'jaxirl.irl.reward_model:make_learned_scorer'}\n"
                   "import jaxirl.irl_like_name_is_fine\n")
    refs = upward_references(bad)
    assert sorted({int(r.split(":")[0]) for r in refs}) == [1, 2, 3, 5, 6], refs
