"""Demonstrations for IRL: expert (RLHF policy) and base-model texts of the same prompts.

For each prompt, the expert policy and the base model each write one
continuation (greedy by default, as the reference). As in the paper, the
generation budget is ``max_length`` = 100 tokens of prompt + continuation
(HF ``generate(max_length=100)``): the continuation gets ``max_length - P``
new tokens, P the padded prompt width; ``max_new_tokens`` overrides it.

Every text is stored in full, ``prompt + continuation``, because the
reference scores (and its reward model reads) full texts; the continuations
alone are kept too (``*_response``). The ground truth of each text is the
scorer's log-odds of "not toxic" (``*_true_reward``; > 0 = not toxic) and its
P(toxic) (``*_toxicity``). The result is a ``datasets.DatasetDict`` with a
seeded ``train``/``test`` split by prompt, written with ``save_to_disk``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import datasets
import jax
import numpy as np
from jax.sharding import Mesh

from jaxirl import parallel, runs
from jaxirl.data.tokenization import tokenize_prompts
from jaxirl.errors import ConfigError, DataError
from jaxirl.generation.text import generate_responses, sampling_from_tokenizer
from jaxirl.rewards.scorer import checked_scores, make_scorer

TEXT_COLUMNS = ("prompt", "expert_text", "base_text", "expert_response", "base_response")
REWARD_COLUMNS = ("expert_true_reward", "base_true_reward", "expert_toxicity", "base_toxicity")
DEMO_COLUMNS = TEXT_COLUMNS + REWARD_COLUMNS


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """How demonstrations are generated and split.

    Attributes:
      num_samples: prompts to use (a seeded random subset, at most the prompts given);
        None: all.
      max_length: token budget of prompt + continuation (the paper's 100).
      max_new_tokens: continuation length; None: ``max_length`` minus the
        padded prompt width.
      max_prompt_tokens: prompts keep at most their last this-many tokens.
      do_sample: sample instead of greedy decoding.
      top_k, top_p, temperature: sampling settings (ignored when greedy).
      test_fraction: share of pairs held out, in (0, 1).
      seed: seeds the prompt subset, the sampling and the split.
      batch_size: prompts per generation batch.
      scorer: ground-truth scorer spec for :func:`~jaxirl.rewards.make_scorer`.
    """

    num_samples: int | None = None
    max_length: int = 100
    max_new_tokens: int | None = None
    max_prompt_tokens: int = 64
    do_sample: bool = False
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    test_fraction: float = 0.2
    seed: int = 0
    batch_size: int = 32
    scorer: str = "profanity"

    def __post_init__(self):
        if self.num_samples is not None and self.num_samples < 2:
            raise ConfigError(f"demos field 'num_samples' must be >= 2, got {self.num_samples}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"demos field 'max_new_tokens' must be >= 1, got {self.max_new_tokens}")
        if self.max_prompt_tokens < 1:
            raise ConfigError(
                f"demos field 'max_prompt_tokens' must be >= 1, got {self.max_prompt_tokens}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(
                f"demos field 'test_fraction' must lie in (0, 1), got {self.test_fraction}")
        if self.batch_size < 1:
            raise ConfigError(f"demos field 'batch_size' must be >= 1, got {self.batch_size}")


class Generator(NamedTuple):
    """A model that writes continuations: Flax module, params and tokenizer."""

    model: Any
    params: Any
    tokenizer: Any


def select_prompts(prompts: Sequence[str], num_samples: int | None, seed: int) -> list[str]:
    """``num_samples`` prompts drawn without replacement (seeded); all, in order, if None
    (or exactly as many as there are).

    Raises:
      DataError: ``num_samples`` exceeds the prompts given (it was silently capped).
    """
    prompts = list(prompts)
    if num_samples is not None and num_samples > len(prompts):
        raise DataError(f"demos field 'num_samples' is {num_samples} but there are only "
                        f"{len(prompts)} prompts to draw from; lower it, or leave it unset "
                        "to use every prompt")
    if num_samples is None or num_samples == len(prompts):
        return prompts
    order = np.random.default_rng(seed).permutation(len(prompts))[:num_samples]
    return [prompts[i] for i in sorted(order)]


def continue_prompts(generator: Generator, prompts: Sequence[str], config: DemoConfig,
                     key: jax.Array, progress: bool | str = False, mesh: Mesh | None = None
                     ) -> tuple[list[str], list[str]]:
    """(full texts = prompt + continuation, continuations) of every prompt (split over ``mesh``)."""
    tok = tokenize_prompts(list(prompts), generator.tokenizer, config.max_prompt_tokens,
                           pad_to_multiple_of=1)
    width = tok.input_ids.shape[1]
    new = config.max_new_tokens or config.max_length - width
    if new < 1:
        raise ConfigError(f"prompts of {width} tokens leave no room under demos max_length "
                          f"{config.max_length}; lower max_prompt_tokens or set max_new_tokens")
    sampling = sampling_from_tokenizer(generator.tokenizer, new, do_sample=config.do_sample,
                                       top_k=config.top_k, top_p=config.top_p,
                                       temperature=config.temperature)
    params = generator.params if mesh is None else parallel.place_params(mesh, generator.params)
    responses, _ = generate_responses(generator.model, params, generator.tokenizer,
                                      tok.input_ids, tok.attention_mask, sampling, key,
                                      config.batch_size, progress=progress, mesh=mesh)
    return [p + r for p, r in zip(prompts, responses, strict=True)], responses


def true_rewards(scorer: Any, texts: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """(log-odds of not toxic, P(toxic)), both float64 [N], validated per text."""
    log_odds = checked_scores(scorer.log_odds, texts, what=what, probabilities=False)
    return log_odds, checked_scores(scorer, texts, what=what, probabilities=True)


def demos_from_texts(prompts: Sequence[str], expert_texts: Sequence[str],
                     base_texts: Sequence[str], *, scorer: Any = "profanity",
                     test_fraction: float = 0.2, seed: int = 0,
                     expert_responses: Sequence[str] | None = None,
                     base_responses: Sequence[str] | None = None,
                     test_prompts: Collection[str] | None = None) -> datasets.DatasetDict:
    """Scores paired full texts with the ground truth and splits them train/test.

    Args:
      prompts, expert_texts, base_texts: N strings each; pair i shares prompt i.
      scorer: a ToxicityScorer or a spec such as ``"profanity"``.
      test_fraction: held-out share of the DISTINCT prompts, in (0, 1); all
        pairs of a prompt land in the same split; both splits need >= 1 prompt.
      seed: split seed.
      expert_responses, base_responses: the continuations alone (default: the
        full text minus the prompt when it starts with it, else the full text).
      test_prompts: the held-out prompts themselves (e.g. those PPO held out), instead of
        a ``test_fraction`` drawn with ``seed``; both splits must keep a prompt.
    """
    n = len(prompts)
    for name, col in (("expert_texts", expert_texts), ("base_texts", base_texts),
                      ("expert_responses", expert_responses),
                      ("base_responses", base_responses)):
        if col is not None and len(col) != n:
            raise DataError(f"{name} has {len(col)} rows but there are {n} prompts")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    scorer = make_scorer(scorer) if isinstance(scorer, str) else scorer

    def strip(texts, ps):
        return [t[len(p):] if t.startswith(p) else t for t, p in zip(texts, ps, strict=True)]

    expert_r, expert_tox = true_rewards(scorer, expert_texts, "expert text")
    base_r, base_tox = true_rewards(scorer, base_texts, "base text")
    ds = datasets.Dataset.from_dict({
        "prompt": list(prompts),
        "expert_text": list(expert_texts),
        "base_text": list(base_texts),
        "expert_response": list(expert_responses or strip(expert_texts, prompts)),
        "base_response": list(base_responses or strip(base_texts, prompts)),
        "expert_true_reward": expert_r, "base_true_reward": base_r,
        "expert_toxicity": expert_tox, "base_toxicity": base_tox,
    })
    # Split by prompt, so that no held-out prompt was seen in training (prompts may repeat
    # when each is continued several times); with unique prompts this is a plain row split.
    unique = list(dict.fromkeys(prompts))
    if test_prompts is not None:
        held = set(test_prompts)
        n_test = sum(p in held for p in unique)
        if not 0 < n_test < len(unique):
            raise DataError(f"the given held-out prompts leave {n_test} of the "
                            f"{len(unique)} distinct demonstration prompts held out; both "
                            "splits need one")
    else:
        n_test = int(np.ceil(test_fraction * len(unique)))
        if len(unique) < 2 or n_test >= len(unique):
            raise DataError(f"{len(unique)} distinct prompts are too few to hold out "
                            f"test_fraction {test_fraction} and keep a training prompt")
        perm = np.random.default_rng(seed).permutation(len(unique))
        held = {unique[i] for i in perm[:n_test]}
    is_test = np.array([p in held for p in prompts])
    return datasets.DatasetDict(train=ds.select(np.flatnonzero(~is_test)),
                                test=ds.select(np.flatnonzero(is_test)))


def build_demos(prompts: Sequence[str], expert: Generator, base: Generator,
                config: DemoConfig = DemoConfig(), progress: bool = True,
                mesh: Mesh | None = None,
                test_prompts: Collection[str] | None = None) -> datasets.DatasetDict:
    """Generates expert and base continuations of the same prompts and scores them.

    With ``mesh`` each generation batch is split over its devices; the texts (and so
    the demonstrations) are the same as on one device. ``test_prompts``: the held-out
    prompts (None: ``config.test_fraction`` of them, drawn with ``config.seed``).
    """
    prompts = select_prompts(prompts, config.num_samples, config.seed)
    if len(prompts) < 2:
        raise DataError(f"need at least 2 prompts for demonstrations, got {len(prompts)}")
    key = jax.random.PRNGKey(config.seed)
    expert_texts, expert_resp = continue_prompts(expert, prompts, config,
                                                 jax.random.fold_in(key, 0),
                                                 progress=progress and "demos: expert", mesh=mesh)
    base_texts, base_resp = continue_prompts(base, prompts, config, jax.random.fold_in(key, 1),
                                             progress=progress and "demos: base", mesh=mesh)
    return demos_from_texts(prompts, expert_texts, base_texts, scorer=config.scorer,
                            test_fraction=config.test_fraction, seed=config.seed,
                            expert_responses=expert_resp, base_responses=base_resp,
                            test_prompts=test_prompts)


def save_demos(demos: datasets.DatasetDict, path: str | os.PathLike) -> pathlib.Path:
    """``save_to_disk`` of the train/test demonstrations; returns the folder.

    Written into a staging folder and swapped in: a killed save leaves no half folder.
    """
    path = pathlib.Path(path)
    staged = runs.staging_dir(path)
    demos.save_to_disk(str(staged))
    return runs.swap_in(staged, path)


def load_demos(path: str | os.PathLike) -> datasets.DatasetDict:
    """Reads and validates demonstrations written by :func:`save_demos`.

    Raises:
      DataError: naming the folder, split, column or row at fault.
    """
    path = pathlib.Path(os.path.expanduser(str(path)))
    if not (path / "dataset_dict.json").is_file():
        raise DataError(f"demos folder {path} is not a saved DatasetDict (no dataset_dict.json); "
                        "build it with jaxirl.irl.demos.build_demos / save_demos")
    try:
        dd = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any reader failure is a bad folder
        raise DataError(f"cannot read demos folder {path}: {type(e).__name__}: {e}") from None
    for split in ("train", "test"):
        if split not in dd:
            raise DataError(f"demos folder {path} has no '{split}' split (splits: {', '.join(dd)})")
        ds = dd[split]
        if len(ds) == 0:
            raise DataError(f"demos folder {path}: split '{split}' has no rows")
        missing = [c for c in ("prompt", "expert_text", "base_text", "expert_true_reward",
                               "base_true_reward") if c not in ds.column_names]
        if missing:
            raise DataError(f"demos folder {path}: split '{split}' lacks column '{missing[0]}'")
        for col in ("expert_text", "base_text"):
            for row, text in enumerate(ds[col]):
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"demos folder {path}: split '{split}' column '{col}' row "
                                    f"{row} is empty or not a string")
        for col in ("expert_true_reward", "base_true_reward"):
            values = np.asarray(ds[col], np.float64)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataError(f"demos folder {path}: split '{split}' column '{col}' row "
                                f"{bad[0]} is {values[bad[0]]}")
    return dd
