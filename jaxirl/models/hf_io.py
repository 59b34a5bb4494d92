"""Loading Hugging Face GPT-NeoX checkpoints into jaxirl, and exporting back.

``load_pretrained`` accepts a local folder or a hub id, validates every tensor
name and shape against the config, and returns ``(model, params)``.
``save_pretrained`` writes a folder that ``transformers.AutoModelForCausalLM``
loads with identical logits.
"""

from __future__ import annotations

import copy
import os
import pathlib
import re
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxirl.errors import CheckpointError
from jaxirl.models import hf_files
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, add_value_head
from jaxirl.models.gpt_neox_config import GPTNeoXConfig

# Buffers that old GPT-NeoX checkpoints carry and that hold no learned weights.
_IGNORED = re.compile(r"(attention\.(bias|masked_bias)|rotary_emb\.inv_freq)$")
_LINEARS = {
    "attention.query_key_value": ("attention", "query_key_value"),
    "attention.dense": ("attention", "dense"),
    "mlp.dense_h_to_4h": ("mlp", "dense_h_to_4h"),
    "mlp.dense_4h_to_h": ("mlp", "dense_4h_to_h"),
}
_NORMS = ("input_layernorm", "post_attention_layernorm")


def _expected_shapes(config: GPTNeoXConfig) -> dict[str, tuple[int, ...]]:
    """PyTorch name -> shape of every tensor a GPTNeoXForCausalLM checkpoint must hold."""
    h, inter, v = config.hidden_size, config.intermediate_size, config.vocab_size
    shapes = {"gpt_neox.embed_in.weight": (v, h),
              "gpt_neox.final_layer_norm.weight": (h,), "gpt_neox.final_layer_norm.bias": (h,)}
    if not config.tie_word_embeddings:
        shapes["embed_out.weight"] = (v, h)
    linear_shapes = {
        "attention.query_key_value": (3 * h, h),
        "attention.dense": (h, h),
        "mlp.dense_h_to_4h": (inter, h),
        "mlp.dense_4h_to_h": (h, inter),
    }
    for i in range(config.num_hidden_layers):
        p = f"gpt_neox.layers.{i}."
        for name, shape in linear_shapes.items():
            shapes[p + name + ".weight"] = shape
            if config.attention_bias or not name.startswith("attention."):
                shapes[p + name + ".bias"] = (shape[0],)
        for name in _NORMS:
            shapes[p + name + ".weight"] = (h,)
            shapes[p + name + ".bias"] = (h,)
    return shapes


def _canonical_names(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Maps transformers-5 / base-model names onto the classic Pythia names."""
    out = {}
    for name, value in state.items():
        if _IGNORED.search(name):
            continue
        if name == "lm_head.weight":
            name = "embed_out.weight"
        elif not name.startswith(("gpt_neox.", "embed_out.")):
            name = "gpt_neox." + name  # a bare GPTNeoXModel checkpoint
        out[name] = value
    return out


def params_from_torch_state(config: GPTNeoXConfig, state: dict[str, np.ndarray],
                            source: str = "checkpoint") -> dict[str, Any]:
    """Converts a PyTorch GPT-NeoX state dict into jaxirl's Flax params (float32).

    Raises:
      CheckpointError: naming the first missing, unexpected or mis-shaped tensor.
    """
    state = _canonical_names(state)
    if config.tie_word_embeddings:
        state.pop("embed_out.weight", None)
    expected = _expected_shapes(config)
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: tensor '{missing[0]}' is missing "
                              f"({len(missing)} missing in all) for this config.json")
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor '{extra[0]}' "
                              f"({len(extra)} unexpected in all) for this config.json")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise CheckpointError(f"{source}: tensor '{name}' has shape {tuple(state[name].shape)}, "
                                  f"config.json implies {shape}")
    for name in expected:
        values = np.asarray(state[name])
        bad = values.size - np.count_nonzero(np.isfinite(values))
        if bad:
            raise CheckpointError(f"{source}: tensor '{name}' holds {bad} NaN or inf value(s)")

    def f32(x):
        return jnp.asarray(np.asarray(x, dtype=np.float32))

    params: dict[str, Any] = {
        "embed_in": {"embedding": f32(state["gpt_neox.embed_in.weight"])},
        "final_layer_norm": {"scale": f32(state["gpt_neox.final_layer_norm.weight"]),
                             "bias": f32(state["gpt_neox.final_layer_norm.bias"])},
    }
    if not config.tie_word_embeddings:
        params["embed_out"] = {"weight": f32(state["embed_out.weight"])}
    for i in range(config.num_hidden_layers):
        p = f"gpt_neox.layers.{i}."
        layer: dict[str, Any] = {"attention": {}, "mlp": {}}
        for torch_name, (group, flax_name) in _LINEARS.items():
            entry = {"kernel": f32(state[p + torch_name + ".weight"].T)}
            if p + torch_name + ".bias" in state:
                entry["bias"] = f32(state[p + torch_name + ".bias"])
            layer[group][flax_name] = entry
        for name in _NORMS:
            layer[name] = {"scale": f32(state[p + name + ".weight"]), "bias": f32(state[p + name + ".bias"])}
        params[f"layers_{i}"] = layer
    return params


def torch_state_from_params(config: GPTNeoXConfig, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Inverse of :func:`params_from_torch_state`: classic Pythia tensor names, float32."""
    params = jax.device_get(params)

    def np32(x):
        return np.asarray(x, dtype=np.float32)

    state = {
        "gpt_neox.embed_in.weight": np32(params["embed_in"]["embedding"]),
        "gpt_neox.final_layer_norm.weight": np32(params["final_layer_norm"]["scale"]),
        "gpt_neox.final_layer_norm.bias": np32(params["final_layer_norm"]["bias"]),
    }
    if not config.tie_word_embeddings:
        state["embed_out.weight"] = np32(params["embed_out"]["weight"])
    for i in range(config.num_hidden_layers):
        p, layer = f"gpt_neox.layers.{i}.", params[f"layers_{i}"]
        for torch_name, (group, flax_name) in _LINEARS.items():
            entry = layer[group][flax_name]
            state[p + torch_name + ".weight"] = np32(entry["kernel"]).T
            if "bias" in entry:
                state[p + torch_name + ".bias"] = np32(entry["bias"])
        for name in _NORMS:
            state[p + name + ".weight"] = np32(layer[name]["scale"])
            state[p + name + ".bias"] = np32(layer[name]["bias"])
    return state


def load_config(name_or_path: str | os.PathLike, revision: str | None = None) -> GPTNeoXConfig:
    """Reads the GPT-NeoX config of a local folder or hub id (``revision``: see load_pretrained)."""
    model_dir = hf_files.resolve_model_dir(name_or_path, revision)
    return GPTNeoXConfig.from_hf_dict(hf_files.read_config(model_dir))


def load_pretrained(name_or_path: str | os.PathLike, dtype: Any = jnp.float32,
                    with_value_head: bool = False, value_head_seed: int = 0,
                    revision: str | None = None) -> tuple[GPTNeoXForCausalLM, dict[str, Any]]:
    """Loads an HF GPT-NeoX checkpoint (local folder or hub id).

    Args:
      name_or_path: folder with config.json and model.safetensors / pytorch_model.bin,
        or a hub id such as ``EleutherAI/pythia-70m`` (``@step3000`` names a revision).
      dtype: compute dtype (parameters stay float32).
      with_value_head: add a freshly initialised trlx-style value head.
      value_head_seed: PRNG seed of that head.
      revision: hub branch, tag or commit (e.g. Pythia's ``step3000``); a repo or
        revision without safetensors is fetched with its ``*.bin`` weights.

    Returns:
      ``(model, params)``: a :class:`GPTNeoXForCausalLM` module and its params.
    """
    model_dir = hf_files.resolve_model_dir(name_or_path, revision)
    config = GPTNeoXConfig.from_hf_dict(hf_files.read_config(model_dir))
    params = params_from_torch_state(config, hf_files.read_state_dict(model_dir), source=str(model_dir))
    if with_value_head:
        params = add_value_head(config, params, jax.random.PRNGKey(value_head_seed))
    return GPTNeoXForCausalLM(config, dtype=dtype, with_value_head=with_value_head), params


def save_pretrained(out_dir: str | os.PathLike, config: GPTNeoXConfig, params: dict[str, Any],
                    tokenizer: Any = None) -> pathlib.Path:
    """Writes an HF folder (config.json through transformers, model.safetensors[, tokenizer]).

    The value head, if any, is not part of the HF architecture and is dropped. The
    tokenizer is saved padding on the left, as :func:`load_tokenizer` sets it up, so that
    ``AutoTokenizer`` + ``generate`` on the folder batch prompts correctly.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.to_hf_config().save_pretrained(str(out))
    hf_files.write_safetensors(torch_state_from_params(config, params), out / "model.safetensors")
    if tokenizer is not None:
        saved = copy.deepcopy(tokenizer)  # the caller's keeps its settings
        saved.padding_side = "left"
        saved.init_kwargs["padding_side"] = "left"  # what save_pretrained writes
        saved.save_pretrained(str(out))
    return out


# One of these holds a tokenizer's vocabulary (fast, BPE, sentencepiece, wordpiece).
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "vocab.txt")


def _read_tokenizer(source: pathlib.Path, model_dir: pathlib.Path, hint: str = "",
                    own: bool = False):
    """``AutoTokenizer`` of the folder ``source`` (``own``: the model folder itself), checked
    to have an EOS token and to fit the embedding of the model in ``model_dir``;
    CheckpointError (one line) otherwise."""
    from transformers import AutoTokenizer

    if not any((source / name).is_file() for name in _TOKENIZER_FILES):
        raise CheckpointError(f"{'model' if own else 'tokenizer'} folder "
                              f"'{source}' has no tokenizer files (looked for "
                              f"{', '.join(_TOKENIZER_FILES)}){hint}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except Exception as e:  # noqa: BLE001 - any tokenizer failure becomes one line
        raise CheckpointError(f"cannot load a tokenizer from '{source}': "
                              f"{type(e).__name__}: {e}") from None
    if tokenizer.eos_token_id is None:
        raise CheckpointError(f"the tokenizer in '{source}' has no EOS token")
    vocab_size = hf_files.read_config(model_dir).get("vocab_size")
    if isinstance(vocab_size, int) and len(tokenizer) > vocab_size:
        embedding = "the model's embedding" if own else \
            f"the embedding of '{model_dir}'"
        raise CheckpointError(
            f"the tokenizer in '{source}' has {len(tokenizer)} tokens but {embedding} has "
            f"{vocab_size} rows (config.json vocab_size): ids past {vocab_size - 1} have no "
            "embedding; use the tokenizer the model was trained with")
    return tokenizer


def load_tokenizer(name_or_path: str | os.PathLike, revision: str | None = None):
    """The tokenizer of a model folder, through ``AutoTokenizer``, set up for left padding.

    A missing pad token falls back to EOS, as the reference code sets it (transformers
    5's GPTNeoXTokenizer gives Pythia ``<|padding|>``, id 1, and that is kept).

    Raises:
      CheckpointError: the folder holds no tokenizer files, the tokenizer has no EOS
        token, or it has more tokens than the model's embedding has rows
        (``config.json``'s ``vocab_size``).
    """
    model_dir = hf_files.resolve_model_dir(name_or_path, revision)
    tokenizer = _read_tokenizer(
        model_dir, model_dir, hint="; for a model used with another model's tokenizer, give "
        "that one to the pipeline's --tokenizer or build one folder with "
        "jaxirl.models.model_with_tokenizer", own=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# Files a tokenizer's ``save_pretrained`` may write (besides its vocabulary files): a
# model folder's own are left out when another tokenizer is put beside its weights.
_TOKENIZER_SIDE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                         "merges.txt", "chat_template.jinja", "chat_template.json")


def model_with_tokenizer(model: str | os.PathLike, tokenizer: str | os.PathLike,
                         out_dir: str | os.PathLike, revision: str | None = None,
                         link: bool = True) -> pathlib.Path:
    """A model folder with another model's tokenizer: ``out_dir``, returned.

    The reference starts its 70M and 410M RLHF runs from supervised fine-tunes
    (``lomahony/eleuther-pythia70m-hh-sft``) tokenized with the base model's tokenizer
    (``EleutherAI/pythia-70m``). ``out_dir`` gets a symbolic link to each file of
    ``model`` but its tokenizer files (a copy with ``link=False``) and the files of
    ``tokenizer``, so that every loader reads it as one model folder. It is built beside
    ``out_dir`` and renamed into place, replacing an older one.

    Args:
      model: the weights: a folder or hub id (``@revision`` allowed).
      tokenizer: a folder holding a tokenizer (with or without weights) or a hub id.
      out_dir: the folder to build.
      revision: the model's hub revision (overrides one given with ``@``).
      link: link the model's files (True) or copy them (for hosts that do not share the
        hub cache the model was fetched into).

    Raises:
      CheckpointError: either cannot be read, the tokenizer has no EOS token, or it has
        more tokens than the model's embedding has rows.
    """
    model_dir = hf_files.resolve_model_dir(model, revision)
    local = pathlib.Path(os.path.expanduser(str(tokenizer)))
    source = local if local.is_dir() else hf_files.resolve_model_dir(tokenizer)
    loaded = _read_tokenizer(source, model_dir)
    out = pathlib.Path(out_dir)
    building = out.with_name(out.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        loaded.save_pretrained(str(building))
        skip = {*_TOKENIZER_FILES, *_TOKENIZER_SIDE_FILES, *(e.name for e in building.iterdir())}
        for entry in sorted(model_dir.iterdir()):
            if entry.is_file() and entry.name not in skip and not entry.name.startswith("."):
                if link:
                    os.symlink(entry.resolve(), building / entry.name)
                else:
                    shutil.copyfile(entry, building / entry.name)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)  # no half-built folder left behind
        raise
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)
    os.replace(building, out)
    return out
