"""jaxirl.cli: --verbosity / -v set jaxirl's log level; third-party loggers stay quiet."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _logged(*flags: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "verbosity_main.py"), *flags],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return {line.split("] ", 1)[1] for line in out.stderr.splitlines() if "] " in line}


@pytest.mark.parametrize("flags,shown", [
    ((), {"jaxirl warning"}),  # default: warnings only, between the progress bars
    (("--verbosity", "0"), {"jaxirl info", "jaxirl warning"}),
    (("-v", "1"), {"jaxirl debug", "jaxirl info", "jaxirl warning"}),
    (("--verbosity=-2",), set()),
])
def test_verbosity_sets_jaxirls_level(flags, shown):
    assert _logged(*flags) - {"transformers warning"} == shown


def test_third_party_loggers_stay_at_warning():
    assert {x for x in _logged("-v", "1") if x.startswith("transformers")} == {
        "transformers warning"}
