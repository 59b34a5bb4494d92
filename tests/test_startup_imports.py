"""Start-up cost: launchers import no heavy library they do not need to parse flags, and the
lazy package namespaces (jaxirl/_lazy.py) still give every public name."""

import importlib
import json
import subprocess
import sys

import pytest

LAUNCHERS = ("rlhf", "irl", "interp", "pipeline", "pretrain_default")
# SciPy.stats, scikit-learn and matplotlib are loaded when a stage uses them; torch never
# by jaxirl's own code (tensorboardX is imported with torch hidden, see metrics_log.py).
HEAVY = ("scipy.stats", "sklearn", "matplotlib", "torch")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_launcher_imports_no_heavy_library_at_start_up(launcher):
    code = (f"import sys, json; import jaxirl.launchers.{launcher}; "
            f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_metrics_log_writes_tensorboard_without_importing_torch(tmp_path):
    code = ("import sys, pathlib; from jaxirl.metrics_log import MetricsLog\n"
            f"with MetricsLog(pathlib.Path({str(tmp_path)!r}) / 'm.jsonl', tensorboard=True)"
            " as log:\n    log.write(1, {'loss': 0.5})\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[-1] == "False"
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("package", ["jaxirl.irl", "jaxirl.interp"])
def test_every_lazy_name_resolves_to_its_modules_object(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        assert name in dir(module)
        owner = importlib.import_module(getattr(value, "__module__", package) or package)
        if isinstance(value, type) or callable(value):
            assert getattr(owner, name) is value, name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_a_name_shadowing_its_submodule_stays_the_function():
    # ``jaxirl.irl.ensemble`` is the function, even after the module of the same name loads.
    code = ("import jaxirl.irl.ensemble, jaxirl.irl, sys\n"
            "from jaxirl.irl import ensemble\n"
            "print(callable(ensemble) and not isinstance(ensemble, type(sys)),"
            " jaxirl.irl.ensemble is sys.modules['jaxirl.irl.ensemble'].ensemble)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "True"]
