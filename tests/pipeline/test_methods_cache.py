"""The method comparison's array cache (``methods._cached``): written whole or not at
all, and a file that cannot be read is recomputed."""

import numpy as np
import pytest

from jaxirl.pipeline import methods
from jaxirl.pipeline.methods import _cached


def test_an_unreadable_cache_file_is_recomputed_and_replaced(tmp_path):
    path = tmp_path / "draw_1" / "rewards.npz"
    full = {"test": np.arange(50_000, dtype=np.float32), "train": np.ones(3, np.float32)}
    _cached(path, lambda: full)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # what a kill during np.savez left behind
    calls = []
    out = _cached(path, lambda: calls.append(1) or full)
    assert calls == [1]
    np.testing.assert_array_equal(out["test"], full["test"])
    with np.load(path) as f:  # replaced by a whole file
        np.testing.assert_array_equal(f["test"], full["test"])
    assert _cached(path, lambda: pytest.fail("recomputed a good file")).keys() == full.keys()


def test_a_write_that_fails_leaves_no_file_at_the_final_path(tmp_path, monkeypatch):
    path = tmp_path / "log_ratio.npz"

    def savez(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(methods.np, "savez", savez)
    with pytest.raises(KeyboardInterrupt):
        _cached(path, lambda: {"test": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []
