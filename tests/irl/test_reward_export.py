"""A learned reward as a transformers sequence classifier: equal scores, padding, relocation."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.checkpoint import Checkpointer
from jaxirl.errors import ConfigError
from jaxirl.irl.reward_export import export_reward_model, score_weight
from jaxirl.irl.reward_model import (
    RewardModelConfig,
    init_reward_model,
    load_reward_model,
    make_learned_reward_fn,
    save_reward_model,
)
from jaxirl.models import save_pretrained

# Lengths 1..9 tokens; max_length 6 truncates the longest from the left.
TEXTS = ["good", "bad dog", "the cat sat on a mat", "a dog ran on the mat awful bad",
         "nice good cat", "the mat the mat the mat ran"]


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_lm")
    model, params = tiny_policy(layers=3)
    save_pretrained(folder, model.config, params, tokenizer=tiny_tokenizer())
    return folder


def _trained(base, head="scalar", k=1, seed=3, **kw):
    """A reward model whose every trainable leaf moved off its init, scalar bias included."""
    rm = init_reward_model(RewardModelConfig(str(base), head=head, num_layers_unfrozen=k,
                                             max_length=6, **kw), seed=seed)
    leaves, tree = jax.tree_util.tree_flatten(rm.params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    moved = [x + 0.3 * jax.random.normal(key, x.shape) for x, key in zip(leaves, keys, strict=True)]
    params = jax.tree_util.tree_unflatten(tree, moved)
    if head == "scalar":
        params["head"]["linear"]["bias"] = jnp.array([1.7])
    return rm.with_params(params)


def _hf_scores(folder, texts, padding_side="right"):
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    tokenizer.padding_side = padding_side
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch).logits
    assert out.shape == (len(texts), 1)
    return out[:, 0].numpy()


# Scalar heads with a frozen (k = 0) and a trained final norm take the bias fold.
@pytest.mark.parametrize("head,k", [("scalar", 0), ("reference", 2), ("scalar", -1)])
def test_transformers_scores_equal_jaxirls(base_folder, tmp_path, head, k):
    pytest.importorskip("torch")
    rm = _trained(base_folder, head, k)
    out = export_reward_model(rm, tmp_path / "hf", extra={"seed": 3, "epochs": 2})
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["GPTNeoXForSequenceClassification"]
    assert (len(config["id2label"]), config["pad_token_id"]) == (1, 0)  # num_labels = 1
    assert config["jaxirl_reward_model"]["head"] == head
    assert {"model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert "AutoModelForSequenceClassification" in (out / "README.md").read_text()

    ours = rm.score(TEXTS)
    np.testing.assert_allclose(_hf_scores(out, TEXTS), ours, atol=1e-4)
    # Left padding too: the last non-pad column is the last token, and rotary attention
    # depends on relative positions only, so transformers' position ids need no shift.
    np.testing.assert_allclose(_hf_scores(out, TEXTS, "left"), ours, atol=1e-4)


def test_a_text_ending_in_the_pad_id_is_pooled_one_token_earlier_by_transformers(
        base_folder, tmp_path):
    """Pythia's pad = eos (id 0; here also the unknown word): transformers finds the last
    token by pad_token_id, so it skips a trailing id 0 that jaxirl (by mask) reads."""
    pytest.importorskip("torch")
    rm = _trained(base_folder, "scalar", 1)
    out = export_reward_model(rm, tmp_path / "hf")
    ids, _ = rm.tokenize(["the cat zebra", "the cat"])
    assert ids[0, -1] == 0 and ids[1, -1] != 0
    hf = _hf_scores(out, ["the cat zebra", "the cat"])
    assert hf[0] == pytest.approx(hf[1], abs=1e-5)  # transformers reads "cat" in both
    assert abs(rm.score(["the cat zebra"])[0] - hf[0]) > 1e-3


def test_scalar_bias_folds_exactly_into_the_final_norm():
    rng = np.random.default_rng(0)
    w, beta, c = rng.normal(size=8), rng.normal(size=8), 2.5
    head = {"linear": {"kernel": w[:, None], "bias": np.array([c])}}
    score, norm = score_weight("scalar", head, {"scale": np.ones(8), "bias": beta})
    x = rng.normal(size=(5, 8))  # normalised hidden states, any values
    np.testing.assert_allclose((x + norm["bias"]) @ score[0], (x + beta) @ w + c, rtol=1e-5)
    with pytest.raises(ConfigError, match="weight is zero"):
        score_weight("scalar", {"linear": {"kernel": np.zeros((8, 1)), "bias": np.array([1.0])}},
                     {"scale": np.ones(8), "bias": beta})


def test_pooling_other_than_last_cannot_be_exported(base_folder, tmp_path):
    rm = _trained(base_folder, "scalar", 1, pooling="mean")
    with pytest.raises(ConfigError, match="pooling 'mean' cannot be exported to transformers"):
        export_reward_model(rm, tmp_path / "hf")


@pytest.mark.parametrize("head,k,pooling", [("scalar", 0, "last"), ("reference", 1, "last"),
                                            ("scalar", 1, "max")])
def test_saved_folder_moves_and_loads_without_the_base_model(base_folder, tmp_path, head, k,
                                                             pooling):
    base = tmp_path / "base"
    shutil.copytree(base_folder, base)
    rm = _trained(base, head, k, pooling=pooling)
    want = rm.score(TEXTS)
    save_reward_model(tmp_path / "rm", rm, extra={"seed": 0})
    shutil.rmtree(base)  # the base model is gone ...
    moved = shutil.move(tmp_path / "rm", tmp_path / "elsewhere")  # ... and the folder moved
    loaded = load_reward_model(moved)
    assert loaded.config == rm.config
    np.testing.assert_array_equal(loaded.score(TEXTS), want)
    np.testing.assert_array_equal(make_learned_reward_fn(moved)(TEXTS, None), want)
    if pooling == "last":  # its hf/ folder alone is a reward model too, for jaxirl as well
        np.testing.assert_allclose(load_reward_model(moved / "hf").score(TEXTS), want, atol=1e-5)


def test_reward_models_saved_before_the_hf_export_still_load(base_folder, tmp_path):
    """Format 1: reward_model.json with the base model's path, and the trainable params."""
    rm = _trained(base_folder, "scalar", 1)
    folder = tmp_path / "old"
    folder.mkdir()
    blob = {"format_version": 1, "config": {**rm.config.__dict__}}
    (folder / "reward_model.json").write_text(json.dumps(blob))
    ckpt = Checkpointer(folder / "params", max_to_keep=1)
    ckpt.save(0, rm.params, metadata=blob, force=True)
    ckpt.close()
    np.testing.assert_array_equal(load_reward_model(folder).score(TEXTS), rm.score(TEXTS))
