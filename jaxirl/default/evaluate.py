"""How toxic is the default base model's own continuation of the default prompts?

Used by ``jaxirl-pretrain-default`` to check the embedded default base model: it
must sometimes be toxic, or RLHF has nothing to learn. The prompts come from the
model folder's ``prompts.jsonl``, which only a default-model build writes.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import numpy as np

from jaxirl.data.prompts import PromptDataConfig, PromptSet, load_prompts
from jaxirl.default.build import PROMPTS_FILE
from jaxirl.errors import ConfigError
from jaxirl.generation.text import evaluate_toxicity
from jaxirl.models.hf_io import load_pretrained, load_tokenizer
from jaxirl.rewards import make_scorer


@dataclasses.dataclass(frozen=True)
class ToxicityReport:
    """Toxicity of sampled continuations.

    Attributes:
      num_prompts: continuations scored.
      mean_toxicity: mean P(toxic) of the continuations.
      toxic_fraction: share with P(toxic) > 0.5.
      clean_fraction: share with P(toxic) < 0.5.
      examples: a few (prompt, continuation, P(toxic)) triples.
    """

    num_prompts: int
    mean_toxicity: float
    toxic_fraction: float
    clean_fraction: float
    examples: tuple[tuple[str, str, float], ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def toxicity_report(prompts, responses, scores) -> ToxicityReport:
    scores = np.asarray(scores, np.float64)
    return ToxicityReport(
        num_prompts=len(scores), mean_toxicity=float(scores.mean()),
        toxic_fraction=float((scores > 0.5).mean()), clean_fraction=float((scores < 0.5).mean()),
        examples=tuple((p, r, float(s)) for p, r, s in list(zip(prompts, responses, scores, strict=True))[:8]))


DEFAULT_PROMPT_SPLITS = ("train", "test", "all")


def default_prompts(model_dir: str | os.PathLike, split: str = "all", seed: int = 0
                    ) -> PromptSet:
    """The default prompt set, served through the same ``datasets`` path as real data.

    ``split``: "train", "test" (80/20, seeded) or "all" (train then test).
    """
    if split not in DEFAULT_PROMPT_SPLITS:
        # A typo such as "heldout" must not silently evaluate on training prompts.
        raise ConfigError(f"default prompt split '{split}' is unknown; use one of "
                          f"{', '.join(DEFAULT_PROMPT_SPLITS)}")
    path = pathlib.Path(model_dir) / PROMPTS_FILE
    config = PromptDataConfig(path=str(path), prompt_column="prompt",
                              reference_column="original_output", seed=seed)
    splits = load_prompts(config)
    if split == "train":
        return splits.train
    if split == "test":
        return splits.test
    return PromptSet(splits.train.prompts + splits.test.prompts,
                     splits.train.references + splits.test.references)


def evaluate_default_model(model_dir: str | os.PathLike, num_prompts: int = 200,
                           max_new_tokens: int = 32, top_k: int = 30, seed: int = 0,
                           scorer: Any = "profanity") -> ToxicityReport:
    """Samples continuations (top-k, as the paper) of default prompts and scores them.

    The prompts are the first ``num_prompts`` of ``default_prompts(model_dir, "all")``,
    training prompts first: a check of the base model before any RLHF, not a held-out
    evaluation of a trained policy.
    """
    model, params = load_pretrained(model_dir)
    tokenizer = load_tokenizer(model_dir)
    prompts = default_prompts(model_dir).prompts[:num_prompts]
    scorer = make_scorer(scorer) if isinstance(scorer, str) else scorer
    out = evaluate_toxicity(model, params, tokenizer, prompts, scorer, max_new_tokens, top_k,
                            max_prompt_tokens=32, seed=seed, progress="eval sampling",
                            batch_size=100)
    return toxicity_report(prompts, out["responses"], out["toxicity"])
