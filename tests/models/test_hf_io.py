"""Loading, exporting and the clear errors of the HF checkpoint IO."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from hf_helpers import hf_logits, left_padded_batch, make_hf_gpt_neox

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.models import load_pretrained, load_tokenizer, save_pretrained
from jaxirl.models.hf_files import read_state_dict, write_safetensors


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, "<pad>": 1}
    vocab.update({w: i + 2 for i, w in enumerate("the cat sat on a mat dog".split())})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def test_round_trip_through_jaxirl_gives_identical_logits(tmp_path):
    torch_model = make_hf_gpt_neox(tmp_path / "src", use_parallel_residual=False)
    model, params = load_pretrained(tmp_path / "src")
    save_pretrained(tmp_path / "out", model.config, params, tokenizer=_tiny_tokenizer())
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
    ids, mask = left_padded_batch(97, lengths=[9, 4], total=9)
    np.testing.assert_array_equal(hf_logits(reloaded, ids, mask), hf_logits(torch_model, ids, mask))
    tok = load_tokenizer(tmp_path / "out")
    assert tok.padding_side == "left" and tok.pad_token == "<|endoftext|>"
    assert tok("the cat sat")["input_ids"] == [2, 3, 4]
    # transformers alone reads the export set up for batched generation (left padding).
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out")).padding_side == "left"
    # Saving left the caller's tokenizer as it was.
    given = _tiny_tokenizer()
    save_pretrained(tmp_path / "again", model.config, params, tokenizer=given)
    assert given.padding_side == "right" and "padding_side" not in given.init_kwargs


def test_lm_head_keeps_the_pytorch_layout_and_init(tmp_path):
    """embed_out.weight loads as [V, H] without a transpose; a random init draws the
    same numbers as a Flax Dense kernel [H, V] would (so seeded models did not change)."""
    import flax.linen as nn
    import jax

    from jaxirl.models.gpt_neox import LMHead

    torch_model = make_hf_gpt_neox(tmp_path / "src")
    _, params = load_pretrained(tmp_path / "src")
    np.testing.assert_array_equal(params["embed_out"]["weight"],
                                  torch_model.get_output_embeddings().weight.detach().numpy())
    x = jnp.ones((2, 16))
    head = LMHead(50, 0.02)
    dense = nn.Dense(50, use_bias=False, kernel_init=nn.initializers.normal(0.02))
    weight = head.init(jax.random.PRNGKey(3), x)["params"]["weight"]
    kernel = dense.init(jax.random.PRNGKey(3), x)["params"]["kernel"]
    assert weight.shape == (50, 16)
    np.testing.assert_array_equal(weight, kernel.T)
    np.testing.assert_allclose(head.apply({"params": {"weight": weight}}, x),
                               dense.apply({"params": {"kernel": kernel}}, x),
                               rtol=1e-5, atol=1e-7)  # x @ W.T and x @ K sum in different orders


def test_pytorch_bin_checkpoints_load(tmp_path):
    torch_model = make_hf_gpt_neox(tmp_path / "st")
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text((tmp_path / "st" / "config.json").read_text())
    # Old Pythia layout: embed_out naming plus the ignorable attention buffers.
    state = {k.replace("lm_head.", "embed_out."): v for k, v in torch_model.state_dict().items()}
    state["gpt_neox.layers.0.attention.masked_bias"] = torch.tensor(-1e9)
    torch.save(state, folder / "pytorch_model.bin")
    model, params = load_pretrained(folder)
    ids, mask = left_padded_batch(97, lengths=[5], total=5)
    out = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask)).logits
    assert np.abs(np.asarray(out) - hf_logits(torch_model, ids, mask)).max() <= 1e-4


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as e:
        load_pretrained(tmp_path / "nope")
    assert "\n" not in str(e.value)


def test_unreachable_hub_id_is_one_line():
    with pytest.raises(CheckpointError, match="cannot fetch 'no-such-org/no-such-model'") as e:
        load_pretrained("no-such-org/no-such-model")
    assert "\n" not in str(e.value)


def test_corrupt_weights_file(tmp_path):
    make_hf_gpt_neox(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_pretrained(tmp_path / "m")


def test_missing_weights_and_bad_config(tmp_path):
    make_hf_gpt_neox(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no weights"):
        load_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match="model_type 'llama'"):
        load_pretrained(tmp_path / "m")


@pytest.mark.parametrize("edit,message", [
    ("drop", "tensor 'gpt_neox.layers.1.mlp.dense_4h_to_h.bias' is missing"),
    ("extra", "unexpected tensor 'gpt_neox.layers.7.mlp.dense_4h_to_h.bias'"),
    ("shape", r"tensor 'gpt_neox.layers.1.mlp.dense_4h_to_h.bias' has shape \(31,\)"),
])
def test_config_weights_mismatch_names_the_tensor(tmp_path, edit, message):
    make_hf_gpt_neox(tmp_path / "m")
    path = tmp_path / "m" / "model.safetensors"
    state = read_state_dict(tmp_path / "m")
    name = "gpt_neox.layers.1.mlp.dense_4h_to_h.bias"
    if edit == "drop":
        del state[name]
    elif edit == "extra":
        state[name.replace("layers.1", "layers.7")] = state[name]
    else:
        state[name] = state[name][:31]
    write_safetensors(state, path)
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(tmp_path / "m")


def test_mismatched_config_dims_name_the_tensor(tmp_path):
    make_hf_gpt_neox(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["intermediate_size"] = 80
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="dense_h_to_4h.weight' has shape"):
        load_pretrained(tmp_path / "m")


_BASE_CONFIG = dict(model_type="gpt_neox", vocab_size=97, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=64)


@pytest.mark.parametrize("rotary", [
    # A jaxirl export edited in rope_parameters: its stale top-level copies lose.
    dict(rotary_pct=0.25, rotary_emb_base=10000.0,
         rope_parameters={"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 1.0}),
    dict(rotary_pct=0.5, rotary_emb_base=300.0),  # transformers 4's names only
    dict(rotary_pct=0.5, rope_parameters={"rope_type": "default", "rope_theta": 700.0}),
    # rope_scaling replaces rope_parameters whole in transformers 5.
    dict(rotary_emb_base=300.0, rope_parameters={"rope_theta": 50.0, "partial_rotary_factor": 1.0},
         rope_scaling={"rope_type": "default", "partial_rotary_factor": 0.5}),
    dict(rope_theta=500.0, partial_rotary_factor=0.5),  # top-level new names: ignored by HF
    {},
])
def test_rotary_settings_resolve_as_transformers_5_does(rotary):
    import copy

    from jaxirl.models import GPTNeoXConfig

    raw = {**_BASE_CONFIG, **rotary}
    ours = GPTNeoXConfig.from_hf_dict(copy.deepcopy(raw))
    hf = transformers.GPTNeoXConfig.from_dict(copy.deepcopy(raw)).rope_parameters
    assert (ours.rotary_pct, ours.rotary_emb_base) == (hf["partial_rotary_factor"], hf["rope_theta"])


@pytest.mark.parametrize("rotary, field", [
    (dict(rope_scaling={"rope_type": "linear", "factor": 2.0},
          rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), "rope_scaling"),
    (dict(rope_scaling={"type": "dynamic", "factor": 2.0}), "rope_scaling"),  # transformers 4
    (dict(rope_scaling={"rope_type": "default"},
          rope_parameters={"rope_type": "yarn", "factor": 2.0}), "rope_parameters"),
])
def test_scaled_rope_in_either_field_is_refused(rotary, field):
    from jaxirl.models import GPTNeoXConfig

    with pytest.raises(ConfigError, match=f"config.json {field} rope_type '.*' is not supported"):
        GPTNeoXConfig.from_hf_dict({**_BASE_CONFIG, **rotary})


@pytest.mark.parametrize("field, value", [("hidden_size", "512"), ("rotary_pct", "0.25"),
                                          ("num_attention_heads", 4.0), ("eos_token_id", "0"),
                                          ("tie_word_embeddings", "false")])
def test_a_field_of_the_wrong_kind_is_a_config_error_naming_it(field, value):
    from jaxirl.models import GPTNeoXConfig

    with pytest.raises(ConfigError, match=f"GPT-NeoX config field '{field}' must be"):
        GPTNeoXConfig.from_hf_dict({**_BASE_CONFIG, field: value})


def test_a_list_of_eos_ids_keeps_the_first():
    from jaxirl.models import GPTNeoXConfig

    assert GPTNeoXConfig.from_hf_dict({**_BASE_CONFIG, "eos_token_id": [2, 5]}).eos_token_id == 2
