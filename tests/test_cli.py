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


def test_launchers_cache_compilations_in_the_user_cache(tmp_path):
    code = ("import jax, jax.numpy as jnp\n"
            "from jaxirl.cli import enable_compilation_cache\n"
            "print(enable_compilation_cache())\n"
            "jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}
    env.update(JAXIRL_CACHE=str(tmp_path / "c"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == str(tmp_path / "c" / "xla"), out.stderr[-2000:]
    # The program compiled in milliseconds and was stored all the same (JAX's own minimum
    # is 1 s of compile time); a minimum the user set is kept.
    assert any((tmp_path / "c" / "xla").iterdir())
    slow_only = dict(env, JAXIRL_CACHE=str(tmp_path / "d"),
                     JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1000")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=slow_only)
    assert out.returncode == 0 and not any((tmp_path / "d" / "xla").iterdir()), out.stderr[-2000:]
    # The user's own cache wins; an uncreatable one leaves caching off.
    mine = dict(env, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "mine"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=mine)
    assert out.stdout.strip() == str(tmp_path / "mine"), out.stderr[-2000:]
    (tmp_path / "file").write_text("x")
    bad = dict(env, JAXIRL_CACHE=str(tmp_path / "file" / "c"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=bad)
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stderr[-2000:]


def test_launchers_raise_the_gc_thresholds_unless_the_user_changed_them():
    import gc

    from jaxirl.cli import GC_THRESHOLDS, tune_garbage_collector

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # Python's default
        tune_garbage_collector()
        assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() > 0
        gc.unfreeze()
        gc.set_threshold(5000, 5, 5)  # the user's own: kept
        tune_garbage_collector()
        assert gc.get_threshold() == (5000, 5, 5)
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


# A launcher whose daemon worker thread (named like the study's second lane) is still busy
# when the main thread is interrupted or fails.
_BUSY_LAUNCHER = """
import sys, threading, time
from jaxirl import cli
from jaxirl.errors import ConfigError

def work():
    while True:
        time.sleep(0.01)

@cli.one_line_errors
def main(argv):
    threading.Thread(target=work, name="jaxirl-lane", daemon=True).start()
    if argv[1] == "interrupt":
        raise KeyboardInterrupt
    raise ConfigError("bad input")

cli.run(main)
"""


@pytest.mark.parametrize("how, code, line", [
    ("interrupt", 130, "interrupted: run the same command again to continue where it stopped"),
    ("error", 2, "error: bad input")])
def test_a_launcher_exits_at_once_while_its_workers_are_busy(how, code, line):
    """Ctrl-C or a one-line error while the second lane runs exits at once with the
    launcher's code and one line (an interpreter shutdown under a lane inside XLA could
    abort with SIGABRT)."""
    proc = subprocess.run([sys.executable, "-c", _BUSY_LAUNCHER, how], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == line
    assert "Traceback" not in proc.stderr


def test_an_interrupted_sae_job_reaches_the_caller_while_another_still_runs():
    """The SAE pool: an interrupt in one job reaches the caller at once, not after every
    other job ran to its end (queued jobs are cancelled)."""
    import threading

    from jaxirl.pipeline.interp_stage import _train_in_threads

    release, started = threading.Event(), []

    def train_one(job, bar):
        started.append(job)
        if job[0] == 8:
            raise KeyboardInterrupt
        release.wait(timeout=60)  # the other running job: blocked until the test ends
        return job

    with pytest.raises(KeyboardInterrupt):
        _train_in_threads([(1, 0), (2, 0), (8, 0)], train_one, threads=2, progress=False)
    assert not release.is_set()  # returned while a job was still running
    release.set()
