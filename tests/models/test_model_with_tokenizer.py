"""model_with_tokenizer: a model saved without a tokenizer (as the reference's SFT starts are
used) read as one folder with another model's tokenizer; misfits are one-line errors."""

import os

import numpy as np
import pytest
from hf_helpers import make_hf_gpt_neox
from tiny_setup import WORDS, tiny_tokenizer

from jaxirl.errors import CheckpointError
from jaxirl.models import load_pretrained, load_tokenizer, model_with_tokenizer


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_with_tokenizer")
    torch_model = make_hf_gpt_neox(root / "sft", vocab_size=len(WORDS) + 3)  # no tokenizer
    tiny_tokenizer().save_pretrained(str(root / "tokenizer"))  # no weights, no config.json
    make_hf_gpt_neox(root / "small", vocab_size=len(WORDS) - 2)
    return root, torch_model


def test_the_folder_reads_as_the_model_with_the_other_tokenizer(folders):
    root, torch_model = folders
    with pytest.raises(CheckpointError, match="has no tokenizer files"):
        load_tokenizer(root / "sft")
    out = model_with_tokenizer(root / "sft", root / "tokenizer", root / "built" / "model")
    assert out == root / "built" / "model"
    tokenizer = load_tokenizer(out)
    assert tokenizer("the cat sat")["input_ids"] == tiny_tokenizer()("the cat sat")["input_ids"]
    assert tokenizer.padding_side == "left"
    # The weights are linked, not copied, and read back as the model's.
    weights = out / "model.safetensors"
    assert weights.is_symlink() and os.path.samefile(weights, root / "sft" / "model.safetensors")
    _, params = load_pretrained(out)
    _, expected = load_pretrained(root / "sft")
    np.testing.assert_array_equal(np.asarray(params["embed_in"]["embedding"]),
                                  np.asarray(expected["embed_in"]["embedding"]))
    np.testing.assert_array_equal(
        np.asarray(params["embed_in"]["embedding"]),
        torch_model.gpt_neox.embed_in.weight.detach().numpy())
    # Built again (e.g. a rerun): replaced in place, no leftover build folder.
    model_with_tokenizer(root / "sft", root / "tokenizer", out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]


def test_a_model_folder_s_own_tokenizer_is_replaced(folders, tmp_path):
    """A folder with a tokenizer of its own gets the named one, not a mix of both."""
    root, _ = folders
    own = model_with_tokenizer(root / "sft", root / "tokenizer", tmp_path / "own")
    assert (own / "tokenizer.json").is_file()
    other = tmp_path / "other_tokenizer"
    tok = tiny_tokenizer()
    tok.add_tokens(["zebra"])
    tok.save_pretrained(str(other))
    out = model_with_tokenizer(own, other, tmp_path / "out")
    assert load_tokenizer(out)("zebra")["input_ids"] == [len(WORDS)]
    assert not (out / "tokenizer.json").is_symlink()


@pytest.mark.parametrize(("tokenizer", "model", "message"), [
    ("tokenizer", "small",
     rf"has {len(WORDS)} tokens but the embedding of '.*small' has {len(WORDS) - 2} rows"),
    ("sft", "sft", r"tokenizer folder '.*sft' has no tokenizer files"),
    ("missing", "sft", r"model folder '.*missing' does not exist"),
])
def test_misfits_are_one_line_errors_and_leave_nothing(folders, tmp_path, tokenizer, model,
                                                       message):
    root, _ = folders
    with pytest.raises(CheckpointError, match=message) as err:
        model_with_tokenizer(root / model, root / tokenizer, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_copy_for_hosts_that_do_not_share_the_hub_cache(folders, tmp_path):
    root, _ = folders
    out = model_with_tokenizer(root / "sft", root / "tokenizer", tmp_path / "copy", link=False)
    weights = out / "model.safetensors"
    assert not weights.is_symlink()
    assert weights.read_bytes() == (root / "sft" / "model.safetensors").read_bytes()
    assert load_tokenizer(out)("the mat")["input_ids"] == tiny_tokenizer()("the mat")["input_ids"]


def test_a_build_that_fails_midway_leaves_nothing(folders, tmp_path, monkeypatch):
    root, _ = folders

    def no_links(*args):
        raise OSError("links not allowed here")

    monkeypatch.setattr(os, "symlink", no_links)
    with pytest.raises(OSError, match="links not allowed"):
        model_with_tokenizer(root / "sft", root / "tokenizer", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
