"""The trained policy as a transformers folder: weights, tokenizer, generation config, model card."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from jaxirl.models.gpt_neox_config import GPTNeoXConfig
from jaxirl.models.hf_export import settings_table, write_generation_config, write_model_card
from jaxirl.models.hf_io import save_pretrained
from jaxirl.ppo.config import PPOConfig


def generation_settings(config: GPTNeoXConfig, tokenizer: Any, ppo: PPOConfig) -> dict[str, Any]:
    """``generation_config.json`` fields: the token ids and PPO's rollout sampling."""
    eos = tokenizer.eos_token_id if tokenizer is not None else config.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer is not None else config.pad_token_id
    settings = {"bos_token_id": config.bos_token_id, "eos_token_id": eos,
                "pad_token_id": eos if pad is None else pad, "do_sample": True,
                "max_new_tokens": ppo.max_new_tokens, "temperature": ppo.temperature,
                "top_p": ppo.top_p, "top_k": ppo.top_k}
    return settings


def policy_card(base_model: str, reward: str, ppo: PPOConfig, iterations: int,
                summary: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(markdown body, hub metadata) of an RLHF policy's model card."""
    from jaxirl import __version__

    summary = summary or {}
    body = (f"`{base_model}` fine-tuned by jaxirl {__version__} with PPO (trlx's recipe) for "
            f"{iterations} iterations against the reward `{reward}`.\n\n"
            f"## PPO settings\n\n{settings_table(dataclasses.asdict(ppo))}\n")
    evaluation = {k: summary[k] for k in ("toxicity_before", "toxicity_after",
                                          "relative_toxicity_reduction", "eval_samples",
                                          "final_kl", "final_score")
                  if summary.get(k) is not None}
    if evaluation:
        body += (f"\n## Evaluation (held-out prompts, ground-truth toxicity scorer)\n\n"
                 f"{settings_table(evaluation)}\n")
    meta = {"library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["rlhf", "ppo", "jaxirl", "gpt_neox"]}
    if base_model and not os.path.isabs(base_model):
        meta["base_model"] = base_model  # a hub id: the hub links the model tree
    return body, meta


def export_policy(out_dir: str | os.PathLike, config: GPTNeoXConfig, params: dict[str, Any],
                  tokenizer: Any, base_model: str, reward: str, ppo: PPOConfig, iterations: int,
                  summary: dict[str, Any] | None = None) -> pathlib.Path:
    """Writes the policy (value head dropped) with ``generation_config.json`` and ``README.md``."""
    out = save_pretrained(out_dir, config, params, tokenizer=tokenizer)
    write_generation_config(out, **generation_settings(config, tokenizer, ppo))
    body, meta = policy_card(base_model, reward, ppo, iterations, summary)
    write_model_card(out, "RLHF policy (jaxirl PPO)", body, meta)
    return out
