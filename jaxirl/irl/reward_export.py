"""A learned reward as a transformers ``GPTNeoXForSequenceClassification`` folder, and back.

transformers' sequence classifier is ``score(final_norm(trunk(x)))[last non-pad token]``
with ``score = Linear(H -> 1, bias=False)``. jaxirl's heads map onto it exactly:

* ``"reference"`` (Linear(H -> 2), no bias, reward = -out[..., -1]): the score weight
  is minus the kernel's last column; the other column never reaches the reward.
* ``"scalar"`` (Linear(H -> 1) with bias c): the bias is folded into the final layer
  norm's bias, beta' = beta + c * w / |w|^2, so that w . (gamma * n + beta') =
  w . (gamma * n + beta) + c. The final norm feeds only the score, so nothing else
  changes.

Pooling other than ``"last"`` (a masked mean or max) has no transformers equivalent.
The folder also holds the tokenizer (padding on the right, truncating on the reward
model's side at its ``max_length``), a model card, and the jaxirl settings under
``config.json``'s ``jaxirl_reward_model``; :func:`load_hf_reward_model` reads such a
folder (or any single-label GPT-NeoX sequence classifier) as a :class:`RewardModel`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
import numpy as np

from jaxirl.errors import ConfigError
from jaxirl.irl.reward_model import RewardModel, RewardModelConfig, split_params
from jaxirl.models.hf_export import (
    read_sequence_classifier,
    save_sequence_classifier,
    settings_table,
    write_model_card,
)
from jaxirl.models.hf_io import load_tokenizer

CONFIG_KEY = "jaxirl_reward_model"


def backbone_params(model: RewardModel, params: Any = None) -> dict[str, Any]:
    """The full GPT-NeoX params (frozen bottom and trained top, head excluded), on the host."""
    params = model.params if params is None else params
    trained = {k: v for k, v in params.items() if k != "head"}
    return jax.device_get({**model.frozen_params, **trained})


def score_weight(head: str, head_params: Any, final_norm: dict[str, Any]
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """(score weight [1, H], final-norm params) that give ``head``'s reward without a bias.

    Raises:
      ConfigError: a scalar head with a non-zero bias and an all-zero weight (a
        constant reward), which a bias-free score cannot express.
    """
    kernel = np.asarray(head_params["linear"]["kernel"], np.float64)
    if head == "reference":
        return (-kernel[:, -1])[None].astype(np.float32), final_norm
    w, c = kernel[:, 0], float(np.asarray(head_params["linear"]["bias"])[0])
    norm2 = float(w @ w)
    if norm2 == 0.0:
        if c != 0.0:
            raise ConfigError("the reward head's weight is zero, so its bias (a constant reward) "
                              "cannot be folded into transformers' bias-free score")
        return w[None].astype(np.float32), final_norm
    beta = np.asarray(final_norm["bias"], np.float64) + c * w / norm2
    return w[None].astype(np.float32), {**final_norm, "bias": beta.astype(np.float32)}


def _card(model: RewardModel, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(markdown body, hub metadata) of the reward model's card."""
    from jaxirl import __version__

    cfg = model.config
    trained = {k: extra[k] for k in ("seed", "loss", "epochs") if k in extra}
    held_out = {k: v for k, v in (extra.get("heldout_metrics") or {}).items()
                if isinstance(v, (int, float))}
    body = f"""A reward model learned by inverse RL with jaxirl {__version__} from demonstrations of an RLHF-trained policy and its base model (Joselowitz et al.,
arXiv 2410.12491). Higher = more like the RLHF policy's texts.

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(PATH)
model = AutoModelForSequenceClassification.from_pretrained(PATH)
batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
rewards = model(**batch).logits[:, 0]
```

The score reads the last token that is not the pad token (so a text that ends in that
token is read one token earlier than in training); texts are truncated to
{cfg.max_length} tokens from the {cfg.truncation_side}, as in training. jaxirl loads this
folder with `jaxirl.irl.load_reward_model(PATH)` (or `--reward learned:PATH`).

## Reward model

{settings_table({"base_model": cfg.base_model, "head": cfg.head,
                 "num_layers_unfrozen": cfg.num_layers_unfrozen, "max_length": cfg.max_length,
                 "pooling": cfg.pooling, "truncation_side": cfg.truncation_side, **trained})}
"""
    if held_out:
        body += "\n## Held-out metrics (against the ground-truth reward)\n\n"
        body += settings_table({k: round(v, 4) for k, v in held_out.items()}) + "\n"
    meta = {"library_name": "transformers", "pipeline_tag": "text-classification",
            "tags": ["reward-model", "inverse-rl", "jaxirl", "gpt_neox"]}
    if cfg.base_model and not os.path.isabs(cfg.base_model):
        meta["base_model"] = cfg.base_model
    return body, meta


def save_hf_backbone(model: RewardModel, out_dir: str | os.PathLike, params: Any = None,
                     extra: dict[str, Any] | None = None) -> pathlib.Path:
    """Writes the reward model's transformers folder: a sequence classifier for pooling
    ``"last"``, else the trunk alone (``GPTNeoXModel``; the head then lives in jaxirl's
    params only)."""
    params = model.params if params is None else params
    cfg = model.config
    backbone = backbone_params(model, params)
    score = None
    if cfg.pooling == "last":
        score, backbone["final_layer_norm"] = score_weight(
            cfg.head, jax.device_get(params["head"]), backbone["final_layer_norm"])
    settings = {**dataclasses.asdict(cfg), "base_model": str(cfg.base_model)}
    out = save_sequence_classifier(
        out_dir, model.lm_config, backbone, score, model.tokenizer,
        extra_config={CONFIG_KEY: settings},
        tokenizer_settings={"truncation_side": cfg.truncation_side,
                            "model_max_length": cfg.max_length})
    if score is not None:
        body, meta = _card(model, dict(extra or {}))
        write_model_card(out, "Learned reward model (jaxirl)", body, meta)
    return out


def export_reward_model(model: RewardModel, out_dir: str | os.PathLike, params: Any = None,
                        extra: dict[str, Any] | None = None) -> pathlib.Path:
    """Writes ``model`` as a transformers ``GPTNeoXForSequenceClassification`` folder.

    ``AutoModelForSequenceClassification.from_pretrained(out_dir)`` then scores texts
    (padded either side) as ``model.score`` does, up to float rounding, except texts
    whose last token is the pad id (see :mod:`jaxirl.models.hf_export`).
    ``extra`` (seed, loss, epochs, held-out metrics) goes into the model card.

    Raises:
      ConfigError: pooling other than ``"last"``.
    """
    if model.config.pooling != "last":
        raise ConfigError(f"a reward model with pooling '{model.config.pooling}' cannot be "
                          "exported to transformers, whose sequence classifier reads the last "
                          "token; only pooling 'last' can")
    return save_hf_backbone(model, out_dir, params, extra)


def load_hf_reward_model(path: str | os.PathLike) -> RewardModel:
    """A single-label GPT-NeoX sequence classifier folder as a jaxirl :class:`RewardModel`.

    The score becomes a scalar head with bias 0 on the last real token (trunk frozen);
    ``max_length`` and ``truncation_side`` come from ``config.json``'s
    ``jaxirl_reward_model`` when present, else from the tokenizer.
    """
    lm_config, lm_params, score, raw = read_sequence_classifier(path)
    if score is None:
        raise ConfigError(f"'{path}' is not a reward model folder (no reward_model.json, and "
                          "its GPT-NeoX model has no score head: a transformers reward model "
                          "is a GPTNeoXForSequenceClassification)")
    tokenizer = load_tokenizer(path)
    saved = raw.get(CONFIG_KEY) or {}
    max_length = saved.get("max_length") or min(int(getattr(tokenizer, "model_max_length", 0)
                                                    or lm_config.max_position_embeddings),
                                                lm_config.max_position_embeddings)
    config = RewardModelConfig(base_model=str(path), head="scalar", num_layers_unfrozen=0,
                               max_length=int(max_length), pooling="last",
                               truncation_side=saved.get("truncation_side",
                                                         tokenizer.truncation_side))
    frozen, trainable = split_params(config, lm_config, lm_params)
    trainable["head"] = {"linear": {"kernel": np.asarray(score, np.float32).T,
                                    "bias": np.zeros((1,), np.float32)}}
    return RewardModel(config, lm_config, tokenizer, frozen,
                       jax.tree_util.tree_map(np.asarray, trainable))
