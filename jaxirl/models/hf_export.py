"""Hugging Face artefacts beyond the weights: generation configs, model cards, reward heads.

* :func:`write_generation_config` and :func:`write_model_card` complete an exported
  causal LM (``generation_config.json``, ``README.md`` with model-card metadata).
* :func:`save_sequence_classifier` writes a GPT-NeoX trunk with a bias-free scalar
  score as a ``GPTNeoXForSequenceClassification`` folder (``num_labels = 1``), what
  transformers' ``AutoModelForSequenceClassification`` and reward-model tooling load;
  :func:`read_sequence_classifier` reads one back, and :func:`load_backbone` reads the
  trunk of either kind of folder.

transformers pools a sequence classifier at the last token that is not
``pad_token_id``: jaxirl's last real token for left and right padding alike (and
rotary attention sees relative positions only, so left padding needs no position
ids). A tokenizer saved here pads on the right, transformers' default. The one
difference: where pad = eos (the embedded default's tokenizer, and a tokenizer file
without a pad token, which :func:`~jaxirl.models.hf_io.load_tokenizer` pads with EOS),
a text whose last token IS that id (a trailing EOS) is pooled one token earlier by
transformers. Pythia's tokenizer under transformers 5 pads with ``<|padding|>`` (id 1)
instead, and then both pool the same token.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxirl.errors import CheckpointError
from jaxirl.models import hf_files
from jaxirl.models.gpt_neox_config import GPTNeoXConfig
from jaxirl.models.hf_io import load_pretrained, params_from_torch_state, torch_state_from_params

SEQUENCE_CLASSIFIER = "GPTNeoXForSequenceClassification"
SCORE = "score.weight"


def write_generation_config(out_dir: str | os.PathLike, **settings: Any) -> pathlib.Path:
    """Writes ``generation_config.json`` through transformers' ``GenerationConfig``.

    ``settings`` are its fields (``bos_token_id``, ``eos_token_id``, ``pad_token_id``,
    ``do_sample``, ``top_k``, ``top_p``, ``temperature``, ``max_new_tokens``, ...).
    """
    from transformers import GenerationConfig

    GenerationConfig(**settings).save_pretrained(str(out_dir))
    return pathlib.Path(out_dir) / "generation_config.json"


def write_model_card(out_dir: str | os.PathLike, title: str, body: str,
                     metadata: Mapping[str, Any]) -> pathlib.Path:
    """Writes ``README.md``: YAML model-card metadata (the hub's keys), a title and ``body``."""
    import yaml

    header = yaml.safe_dump(dict(metadata), sort_keys=False, allow_unicode=True).strip()
    path = pathlib.Path(out_dir) / "README.md"
    path.write_text(f"---\n{header}\n---\n\n# {title}\n\n{body.strip()}\n")
    return path


def settings_table(settings: Mapping[str, Any]) -> str:
    """A two-column markdown table of ``name -> value`` (for model cards)."""
    rows = "\n".join(f"| `{name}` | `{value}` |" for name, value in settings.items())
    return f"| setting | value |\n|---|---|\n{rows}"


def save_sequence_classifier(out_dir: str | os.PathLike, config: GPTNeoXConfig,
                             params: Mapping[str, Any], score_weight: np.ndarray | None,
                             tokenizer: Any = None, extra_config: Mapping[str, Any] | None = None,
                             tokenizer_settings: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Writes a GPT-NeoX trunk and a scalar score as a transformers folder.

    Args:
      out_dir: the folder (created).
      config: the trunk's architecture.
      params: jaxirl GPT-NeoX params (``embed_out`` and ``value_head``, if any, are not
        written).
      score_weight: [1, H] float, the score ``Linear(H -> 1, bias=False)``; None writes
        the trunk alone as a ``GPTNeoXModel`` folder.
      tokenizer: saved beside the weights (a copy, padding on the right; see above).
      extra_config: more ``config.json`` attributes (JSON-serialisable).
      tokenizer_settings: attributes of the saved tokenizer copy (``truncation_side``,
        ``model_max_length``, ...).
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trunk_config = dataclasses.replace(config, tie_word_embeddings=True)  # no LM head
    trunk = {k: v for k, v in params.items() if k not in ("embed_out", "value_head")}
    state = torch_state_from_params(trunk_config, trunk)
    fields = dict(extra_config or {})
    architecture = "GPTNeoXModel"
    if score_weight is not None:
        score = np.asarray(score_weight, np.float32).reshape(1, config.hidden_size)
        state[SCORE] = score
        architecture = SEQUENCE_CLASSIFIER
        # HF finds each row's last token through pad_token_id.
        pad = config.pad_token_id
        if tokenizer is not None and tokenizer.pad_token_id is not None:
            pad = tokenizer.pad_token_id
        fields.update(num_labels=1, pad_token_id=pad if pad is not None else config.eos_token_id)
    config.to_hf_config(architecture, **fields).save_pretrained(str(out))
    hf_files.write_safetensors(state, out / "model.safetensors")
    if tokenizer is not None:
        saved = copy.deepcopy(tokenizer)
        for name, value in {"padding_side": "right", **(tokenizer_settings or {})}.items():
            setattr(saved, name, value)
            saved.init_kwargs[name] = value  # what save_pretrained writes to tokenizer_config
        saved.save_pretrained(str(out))
    return out


def read_sequence_classifier(model_dir: str | os.PathLike
                             ) -> tuple[GPTNeoXConfig, dict[str, Any], np.ndarray | None, dict]:
    """Reads a folder written by :func:`save_sequence_classifier` (or by transformers).

    Returns:
      ``(config, params, score_weight, config_json)``: the trunk's config, its jaxirl
      params (no ``embed_out``), the [1, H] score (None for a bare trunk) and the whole
      ``config.json`` dict.

    Raises:
      CheckpointError: not a single-label GPT-NeoX sequence classifier or trunk.
    """
    model_dir = hf_files.resolve_model_dir(model_dir)
    raw = hf_files.read_config(model_dir)
    config = GPTNeoXConfig.from_hf_dict(raw)
    state = hf_files.read_state_dict(model_dir)
    score = state.pop(SCORE, None)
    state.pop("embed_out.weight", None)
    state.pop("lm_head.weight", None)
    if score is not None and tuple(score.shape) != (1, config.hidden_size):
        raise CheckpointError(f"{model_dir}: '{SCORE}' has shape {tuple(score.shape)}; a reward "
                              f"model needs one label, shape (1, {config.hidden_size})")
    trunk_config = dataclasses.replace(config, tie_word_embeddings=True)
    params = params_from_torch_state(trunk_config, state, source=str(model_dir))
    return config, params, None if score is None else np.asarray(score, np.float32), raw


def load_backbone(name_or_path: str | os.PathLike) -> tuple[GPTNeoXConfig, dict[str, Any]]:
    """GPT-NeoX config and params of a causal LM, sequence classifier or bare trunk folder.

    A classifier's score and a causal LM's head are not returned (``embed_out`` may be).
    """
    model_dir = hf_files.resolve_model_dir(name_or_path)
    architectures = hf_files.read_config(model_dir).get("architectures") or []
    if set(architectures) & {SEQUENCE_CLASSIFIER, "GPTNeoXModel"}:
        config, params, _, _ = read_sequence_classifier(model_dir)
        return config, params
    model, params = load_pretrained(model_dir)
    return model.config, params
