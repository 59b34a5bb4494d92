"""A Flax (linen) port of transformers' ``RobertaForSequenceClassification``.

Inference only (no dropout): embeddings with RoBERTa's padding-offset position
ids, post-LayerNorm encoder layers, and the classification head
``dense -> tanh -> out_proj`` on the ``<s>`` token. ``load_roberta`` reads any
HF folder of that architecture (e.g. ``s-nlp/roberta_toxicity_classifier``)
through :mod:`jaxirl.models.hf_files` and checks every tensor name and shape.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxirl.errors import CheckpointError
from jaxirl.models import hf_files

# hidden_act -> activation; "gelu" is the exact erf GELU, as in transformers' ACT2FN.
_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}
# HF problem_type values whose logits read as class probabilities: softmax over the
# labels, or (multi-label, e.g. Detoxify's unitary/*-toxic-roberta) an independent
# sigmoid per label. None is what most single-label checkpoints save.
PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification")
# Tensors that checkpoints may carry and that this port does not use: non-persistent
# buffers saved by old transformers versions, and the pooler that
# RobertaForSequenceClassification drops (add_pooling_layer=False).
_IGNORED = re.compile(r"(position_ids|token_type_ids)$|^roberta\.pooler\.")


@dataclasses.dataclass(frozen=True)
class RobertaConfig:
    """Architecture of a RoBERTa sequence classifier; field names follow HF ``config.json``."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    num_labels: int = 2
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    hidden_act: str = "gelu"
    pad_token_id: int = 1
    # How logits become probabilities (see PROBLEM_TYPES); None means single-label softmax.
    problem_type: str | None = None

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "num_labels", "max_position_embeddings",
                     "type_vocab_size"):
            if int(getattr(self, name)) <= 0:
                raise CheckpointError(f"RoBERTa config field '{name}' must be positive, "
                                      f"got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(f"RoBERTa config: hidden_size {self.hidden_size} is not "
                                  f"divisible by num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in _ACTIVATIONS:
            raise CheckpointError(f"RoBERTa config field 'hidden_act' = '{self.hidden_act}' is not "
                                  f"supported (supported: {', '.join(sorted(_ACTIVATIONS))})")
        if self.problem_type not in PROBLEM_TYPES:
            raise CheckpointError(f"RoBERTa config field 'problem_type' = {self.problem_type!r} "
                                  "is not supported (supported: single_label_classification, "
                                  "multi_label_classification or unset)")

    @property
    def multi_label(self) -> bool:
        """True when each label has its own sigmoid (Detoxify-style), not a shared softmax."""
        return self.problem_type == "multi_label_classification"

    @property
    def max_tokens(self) -> int:
        """Longest input, <s> and </s> included: positions start at pad_token_id + 1."""
        return self.max_position_embeddings - self.pad_token_id - 1

    @classmethod
    def from_hf(cls, hf: dict[str, Any], source: str = "config.json") -> RobertaConfig:
        """Builds the config from a parsed HF ``config.json``; unknown keys are ignored."""
        kwargs = {f.name: hf[f.name] for f in dataclasses.fields(cls) if f.name in hf}
        if "num_labels" not in hf and isinstance(hf.get("id2label"), dict):
            kwargs["num_labels"] = len(hf["id2label"])
        missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers",
                               "num_attention_heads", "intermediate_size") if n not in kwargs]
        if missing:
            raise CheckpointError(f"'{source}' lacks RoBERTa field(s) {', '.join(missing)}")
        if kwargs.get("pad_token_id") is None:
            kwargs["pad_token_id"] = 1
        if kwargs.get("problem_type") not in PROBLEM_TYPES:
            # A regression head's logits are scores, not class probabilities.
            raise CheckpointError(f"'{source}' has problem_type {kwargs['problem_type']!r}; only "
                                  "single_label_classification and multi_label_classification "
                                  "(or unset) can give P(toxic)")
        return cls(**kwargs)


def position_ids_from_input_ids(input_ids: chex.Array, pad_token_id: int) -> chex.Array:
    """RoBERTa's position ids [B, T]: pad_token_id + 1, + 2, ... on tokens, pad_token_id on pads.

    Same as transformers' ``create_position_ids_from_input_ids``: a token counts as
    padding when its id equals ``pad_token_id``, whatever the attention mask says.
    """
    mask = (input_ids != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(mask, axis=1) * mask + pad_token_id


class _SelfAttention(nn.Module):
    config: RobertaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: chex.Array, bias: chex.Array) -> chex.Array:
        cfg = self.config
        b, t, h = x.shape
        n = cfg.num_attention_heads
        d = h // n
        split = lambda y: y.reshape(b, t, n, d)
        q = split(nn.Dense(h, dtype=self.dtype, name="query")(x))
        k = split(nn.Dense(h, dtype=self.dtype, name="key")(x))
        v = split(nn.Dense(h, dtype=self.dtype, name="value")(x))
        scores = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32) * (d ** -0.5)
        probs = jax.nn.softmax(scores + bias, axis=-1).astype(self.dtype)
        return jnp.einsum("bnqk,bknd->bqnd", probs, v).reshape(b, t, h)


class _Layer(nn.Module):
    """One post-LN encoder layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    config: RobertaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: chex.Array, bias: chex.Array) -> chex.Array:
        cfg = self.config
        ln = lambda name: nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name=name)
        attn = _SelfAttention(cfg, self.dtype, name="attention")(x, bias)
        attn = nn.Dense(cfg.hidden_size, dtype=self.dtype, name="attention_output")(attn)
        x = ln("attention_norm")(x + attn)
        y = nn.Dense(cfg.intermediate_size, dtype=self.dtype, name="intermediate")(x)
        y = _ACTIVATIONS[cfg.hidden_act](y)
        y = nn.Dense(cfg.hidden_size, dtype=self.dtype, name="output")(y)
        return ln("output_norm")(x + y)


class RobertaForSequenceClassification(nn.Module):
    """RoBERTa encoder + classification head; ``dtype`` is the compute dtype (params stay fp32)."""

    config: RobertaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids: chex.Array, attention_mask: chex.Array) -> chex.Array:
        """Class logits.

        Args:
          input_ids: int [B, T] token ids, padded with ``config.pad_token_id``; row i starts
            with ``<s>`` (the head reads position 0).
          attention_mask: [B, T], 1 on real tokens, 0 on padding.

        Returns:
          float32 [B, num_labels] logits.
        """
        cfg = self.config
        chex.assert_rank([input_ids, attention_mask], 2)
        chex.assert_equal_shape([input_ids, attention_mask])
        embed = lambda n, name: nn.Embed(n, cfg.hidden_size, dtype=self.dtype, name=name)
        positions = position_ids_from_input_ids(input_ids, cfg.pad_token_id)
        x = (embed(cfg.vocab_size, "word_embeddings")(input_ids)
             + embed(cfg.type_vocab_size, "token_type_embeddings")(jnp.zeros_like(input_ids))
             + embed(cfg.max_position_embeddings, "position_embeddings")(positions))
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="embeddings_norm")(x)
        # Additive key mask [B, 1, 1, T]; finite so that an all-pad row cannot give NaN.
        bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
        for i in range(cfg.num_hidden_layers):
            x = _Layer(cfg, self.dtype, name=f"layer_{i}")(x, bias)
        cls = x[:, 0, :]
        cls = jnp.tanh(nn.Dense(cfg.hidden_size, dtype=self.dtype, name="classifier_dense")(cls))
        logits = nn.Dense(cfg.num_labels, dtype=self.dtype, name="classifier_out_proj")(cls)
        return logits.astype(jnp.float32)


def _linear(prefix: str, path: tuple[str, ...], n_out: int, n_in: int):
    # PyTorch Linear stores [out, in]; flax Dense wants kernel [in, out].
    return [(prefix + ".weight", path + ("kernel",), (n_out, n_in), True),
            (prefix + ".bias", path + ("bias",), (n_out,), False)]


def _norm(prefix: str, path: tuple[str, ...], h: int):
    return [(prefix + ".weight", path + ("scale",), (h,), False),
            (prefix + ".bias", path + ("bias",), (h,), False)]


def _tensor_map(cfg: RobertaConfig) -> list[tuple[str, tuple[str, ...], tuple[int, ...], bool]]:
    """(PyTorch name, flax param path, PyTorch shape, transpose?) of every expected tensor."""
    h, inter = cfg.hidden_size, cfg.intermediate_size
    e = "roberta.embeddings."
    out = [(e + "word_embeddings.weight", ("word_embeddings", "embedding"),
            (cfg.vocab_size, h), False),
           (e + "position_embeddings.weight", ("position_embeddings", "embedding"),
            (cfg.max_position_embeddings, h), False),
           (e + "token_type_embeddings.weight", ("token_type_embeddings", "embedding"),
            (cfg.type_vocab_size, h), False)]
    out += _norm(e + "LayerNorm", ("embeddings_norm",), h)
    for i in range(cfg.num_hidden_layers):
        p, f = f"roberta.encoder.layer.{i}.", (f"layer_{i}",)
        for name in ("query", "key", "value"):
            out += _linear(p + "attention.self." + name, f + ("attention", name), h, h)
        out += _linear(p + "attention.output.dense", f + ("attention_output",), h, h)
        out += _norm(p + "attention.output.LayerNorm", f + ("attention_norm",), h)
        out += _linear(p + "intermediate.dense", f + ("intermediate",), inter, h)
        out += _linear(p + "output.dense", f + ("output",), h, inter)
        out += _norm(p + "output.LayerNorm", f + ("output_norm",), h)
    out += _linear("classifier.dense", ("classifier_dense",), h, h)
    out += _linear("classifier.out_proj", ("classifier_out_proj",), cfg.num_labels, h)
    return out


def _canonical_name(name: str) -> str:
    # Very old checkpoints name LayerNorm parameters gamma/beta (transformers renames them too).
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    return re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)


def params_from_state_dict(state: dict[str, np.ndarray], config: RobertaConfig,
                           source: str = "checkpoint") -> dict[str, Any]:
    """Maps a PyTorch ``RobertaForSequenceClassification`` state dict onto this port's params.

    Raises:
      CheckpointError: a tensor is missing, unexpected, or has the wrong shape (named).
    """
    state = {_canonical_name(k): v for k, v in state.items() if not _IGNORED.search(k)}
    expected = _tensor_map(config)
    names = {name for name, *_ in expected}
    missing = [name for name in names if name not in state]
    if missing:
        layers = config.num_hidden_layers
        raise CheckpointError(f"{source} lacks tensor(s) {', '.join(sorted(missing)[:5])}"
                              f"{' ...' if len(missing) > 5 else ''} ({len(missing)} missing) "
                              f"for a RobertaForSequenceClassification with {layers} layers")
    extra = sorted(set(state) - names)
    if extra:
        raise CheckpointError(f"{source} holds unexpected tensor(s) {', '.join(extra[:5])}"
                              f"{' ...' if len(extra) > 5 else ''} ({len(extra)} extra); is it a "
                              "RobertaForSequenceClassification matching its config.json?")
    params: dict[str, Any] = {}
    for name, path, shape, transpose in expected:
        value = np.asarray(state[name])
        if value.shape != shape:
            raise CheckpointError(f"{source} tensor '{name}' has shape {value.shape}, "
                                  f"expected {shape} from config.json")
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray((value.T if transpose else value).astype(np.float32))
    return params


def load_roberta(name_or_path: str | os.PathLike) -> tuple[RobertaConfig, dict[str, Any], dict]:
    """Reads an HF RoBERTa sequence-classifier folder (or hub id).

    Returns:
      (config, params, hf_config): params is the flax ``params`` collection (fp32);
      hf_config is the raw ``config.json`` dict (for ``id2label``).
    """
    model_dir = hf_files.resolve_model_dir(name_or_path)
    hf_config = hf_files.read_config(model_dir)
    config = RobertaConfig.from_hf(hf_config, source=str(model_dir / "config.json"))
    state = hf_files.read_state_dict(model_dir)
    params = params_from_state_dict(state, config, source=f"checkpoint '{model_dir}'")
    return config, params, hf_config
