"""The GPT-NeoX (Pythia) configuration, and its mapping to HF ``config.json``."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

from jaxirl.errors import ConfigError

# Activations that GPT-NeoX configs name, as (jax function name, approximate?).
SUPPORTED_ACTIVATIONS = {
    "gelu": False,  # exact erf GELU: what Pythia uses
    "gelu_new": True,
    "gelu_fast": True,
    "gelu_pytorch_tanh": True,
    "relu": None,
    "silu": None,
}

# Field kinds, checked before any value is compared: a config.json string such as
# "hidden_size": "512" would otherwise fail as a raw TypeError deep in the checks.
_INT_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "intermediate_size", "max_position_embeddings")
_FLOAT_FIELDS = ("rotary_pct", "rotary_emb_base", "layer_norm_eps", "initializer_range")
_BOOL_FIELDS = ("use_parallel_residual", "tie_word_embeddings", "attention_bias")
_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def _check_kind(name: str, value: Any) -> None:
    """ConfigError naming field ``name`` unless ``value`` has the field's kind."""
    if name in _BOOL_FIELDS:
        ok, kind = isinstance(value, bool), "true or false"
    elif name in _FLOAT_FIELDS:
        ok, kind = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
    elif name in _INT_FIELDS or name in _TOKEN_FIELDS:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        kind = "an integer"
        if name in _TOKEN_FIELDS:
            ok, kind = ok or value is None, "an integer or null"
    elif name == "hidden_act":
        ok, kind = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise ConfigError(f"GPT-NeoX config field '{name}' must be {kind}, got {value!r} "
                          f"({type(value).__name__})")


def _check_default_rope(field: str, rope: Any) -> None:
    """ConfigError naming ``field`` unless the rope dict (or None) asks for default RoPE."""
    if rope is None:
        return
    if not isinstance(rope, dict):
        raise ConfigError(f"config.json field '{field}' must be a dict, got {rope!r}")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", None):
        raise ConfigError(f"config.json {field} rope_type '{rope_type}' is not supported "
                          "(only 'default')")


@dataclasses.dataclass(frozen=True)
class GPTNeoXConfig:
    """Architecture of a GPT-NeoX causal LM; field names follow HF's Pythia configs.

    The dataclass is hashable so that it can be a static argument of ``jax.jit``.
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 2048
    rotary_pct: float = 0.25
    rotary_emb_base: float = 10000.0
    layer_norm_eps: float = 1e-5
    use_parallel_residual: bool = True
    tie_word_embeddings: bool = False
    attention_bias: bool = True
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0
    pad_token_id: int | None = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check_kind(field.name, getattr(self, field.name))
        for name in _INT_FIELDS:
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"GPT-NeoX config field '{name}' must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"GPT-NeoX config: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if not 0.0 <= self.rotary_pct <= 1.0:
            raise ConfigError(f"GPT-NeoX config field 'rotary_pct' must lie in [0, 1], got {self.rotary_pct}")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(
                f"GPT-NeoX config field 'hidden_act' = '{self.hidden_act}' is not supported "
                f"(supported: {', '.join(SUPPORTED_ACTIVATIONS)})"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_ndims(self) -> int:
        """Leading dims of each head that get rotary embeddings (HF: int(head_dim * rotary_pct))."""
        return int(self.head_dim * self.rotary_pct)

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> GPTNeoXConfig:
        """Builds a config from an HF ``config.json`` dict (transformers 4 or 5 layout).

        The rotary settings resolve as transformers 5's ``GPTNeoXConfig`` does: from
        ``rope_scaling`` if set, else ``rope_parameters`` (``partial_rotary_factor``,
        ``rope_theta``), falling back to the top-level transformers-4 names
        ``rotary_pct`` and ``rotary_emb_base``. Both dicts must be default RoPE (no
        scaling). A token id given as a list (several EOS ids) keeps its first id:
        the sampler stops on one EOS id only.
        """
        model_type = d.get("model_type", "gpt_neox")
        if model_type != "gpt_neox":
            raise ConfigError(f"config.json has model_type '{model_type}'; jaxirl's port needs 'gpt_neox'")
        # Both checked: transformers 5 lets rope_scaling replace rope_parameters whole,
        # and a scaled RoPE in either would silently change every position's rotation.
        for field in ("rope_scaling", "rope_parameters"):
            _check_default_rope(field, d.get(field))
        rope = d.get("rope_scaling") or d.get("rope_parameters") or {}
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in d:
                kwargs[field.name] = d[field.name]
        # transformers 5 reads the rotary settings from the rope dict first (an exported
        # config edited there must not be overridden by its stale top-level copies).
        if "partial_rotary_factor" in rope:
            kwargs["rotary_pct"] = rope["partial_rotary_factor"]
        if "rope_theta" in rope:
            kwargs["rotary_emb_base"] = rope["rope_theta"]
        for name in _TOKEN_FIELDS:
            if isinstance(kwargs.get(name), list):
                kwargs[name] = kwargs[name][0] if kwargs[name] else None
        missing = [f for f in ("vocab_size", "hidden_size", "num_hidden_layers",
                               "num_attention_heads", "intermediate_size") if f not in kwargs]
        if missing:
            raise ConfigError(f"config.json lacks required GPT-NeoX field(s): {', '.join(missing)}")
        return cls(**kwargs)

    def to_hf_config(self, architecture: str = "GPTNeoXForCausalLM", **fields: Any):
        """transformers' ``GPTNeoXConfig`` of this architecture (float32 weights).

        ``fields`` are further config attributes (e.g. ``num_labels``). The rotary
        settings are also kept under their transformers-4 names, which transformers 4
        reads and transformers 5 ignores.
        """
        import transformers

        names = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "layer_norm_eps",
                 "use_parallel_residual", "tie_word_embeddings", "attention_bias", "hidden_act",
                 "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id")
        hf = transformers.GPTNeoXConfig(
            **{name: getattr(self, name) for name in names},
            rope_parameters={"rope_type": "default", "rope_theta": self.rotary_emb_base,
                             "partial_rotary_factor": self.rotary_pct},
            hidden_dropout=0.0, attention_dropout=0.0, use_cache=True,
            architectures=[architecture], dtype="float32")
        hf.rotary_pct, hf.rotary_emb_base = self.rotary_pct, self.rotary_emb_base
        for name, value in fields.items():
            setattr(hf, name, value)
        return hf

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict that transformers' ``GPTNeoXForCausalLM`` loads."""
        return self.to_hf_config().to_dict()
