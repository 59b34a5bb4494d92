"""Shared fixtures: tiny random transformers models saved to temporary folders."""

from __future__ import annotations

import os

# Tests never reach the hub; fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One persistent XLA compilation cache for the session and every launcher it spawns: the
# subprocess tests compile the same tiny-model programs dozens of times, and a cache hit
# loads the identical executable (results do not change, only compile time goes).
_OWN_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    _OWN_XLA_CACHE = tempfile.mkdtemp(prefix="jaxirl-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_XLA_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Tests run thousands of tiny programs whose compile time dwarfs their run time: XLA's
# expensive optimisation passes cost more than they save here (the smoke study's fixture
# 148 s -> 128 s, and every test passes either way). Launchers, benchmarks and the main
# job compile fully optimised; the parity tests' tolerances cover both. A test whose run
# time dominates (a long scan) takes ``@pytest.mark.optimized``: 6 s instead of 43 s.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# For the same reason, XLA:CPU's classic elemental emitters instead of its MLIR fusion
# emitters: they compile the same programs 2-3x faster (a tiny PPO update 4.1 s -> 1.8 s;
# the multi-host test's one-process run 61 -> 39 s of CPU, with the same final parameters).
# Subprocesses inherit it; tests that set XLA_FLAGS append to it.
_FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"
if _FAST_COMPILE_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE_FLAG}".strip()

import pytest  # noqa: E402
from hf_helpers import make_hf_gpt_neox  # noqa: E402


@pytest.fixture(autouse=True)
def _optimized_compiles(request):
    """XLA's full optimisation for tests marked ``optimized`` (see above)."""
    if request.node.get_closest_marker("optimized") is None:
        yield
        return
    import jax

    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def tiny_hf_model(tmp_path):
    """(folder, torch model) of a 2-layer random GPT-NeoX."""
    folder = tmp_path / "tiny"
    return folder, make_hf_gpt_neox(folder)


def pytest_unconfigure(config):
    if _OWN_XLA_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_XLA_CACHE, ignore_errors=True)


# The longest files, longest first. pytest-xdist (``--dist loadfile``, scripts/test.sh)
# hands files out in collection order, and the file that starts last bounds the wall
# time; so these start first and the short files fill in around them.
SLOWEST_FILES = ("parallel/test_multihost.py", "parallel/test_equality.py",
                 "test_bad_input.py", "pipeline/test_pipeline_smoke.py",
                 "pipeline/test_kill_during_irl_save.py", "ppo/test_ppo_objective.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return next((i for i, name in enumerate(SLOWEST_FILES) if path.endswith(name)),
                    len(SLOWEST_FILES))

    items.sort(key=rank)  # stable: every other test keeps its place
