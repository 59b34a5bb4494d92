"""Shared fixtures: tiny random transformers models saved to temporary folders."""

from __future__ import annotations

import os

# Tests never reach the hub; fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from hf_helpers import make_hf_gpt_neox  # noqa: E402


@pytest.fixture
def tiny_hf_model(tmp_path):
    """(folder, torch model) of a 2-layer random GPT-NeoX."""
    folder = tmp_path / "tiny"
    return folder, make_hf_gpt_neox(folder)
