"""The library's layering: low layers never reach up, not even lazily or by string.

``jaxirl/ppo``, ``jaxirl/rewards``, ``jaxirl/models`` and ``jaxirl/generation`` are the
building blocks; ``jaxirl/irl``, ``jaxirl/interp`` and ``jaxirl/pipeline`` build on them.
An import the other way (at module level, inside a function, or as a ``"module:attr"``
string handed to importlib) would make the blocks unusable on their own.
"""

from __future__ import annotations

import ast
import configparser
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


def _defines_flags(path: pathlib.Path) -> list[int]:
    """Lines of ``path`` that call an absl ``DEFINE_*`` (flags.DEFINE_string(...), ...)."""
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("DEFINE")]


def test_absl_flags_are_defined_only_in_the_launchers():
    offenders = {str(p.relative_to(PACKAGE.parent)): lines
                 for p in sorted(PACKAGE.rglob("*.py"))
                 if "launchers" not in p.parts and (lines := _defines_flags(p))}
    assert not offenders, f"library modules define absl flags: {offenders}"
    assert _defines_flags(PACKAGE / "launchers" / "rlhf.py")  # the check sees real flags


def test_every_console_script_names_a_launcher_and_its_experiments_entry():
    setup = configparser.ConfigParser()
    setup.read(PACKAGE.parent / "setup.cfg")
    scripts = dict(line.split(" = ") for line in
                   setup["options.entry_points"]["console_scripts"].strip().splitlines())
    assert sorted(scripts) == ["jaxirl-interp", "jaxirl-irl", "jaxirl-pipeline",
                               "jaxirl-pretrain-default", "jaxirl-rlhf"]
    for script, target in scripts.items():
        module, _, function = target.partition(":")
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        functions = {n.name for n in ast.parse(path.read_text()).body
                     if isinstance(n, ast.FunctionDef)}
        assert function in functions, (script, target)
        # The checkout's entry point runs the same function.
        entry = PACKAGE.parent / "experiments" / f"{module.rsplit('.', 1)[1]}.py"
        assert f"from {module} import {function}" in entry.read_text(), entry
