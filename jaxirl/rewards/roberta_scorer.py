"""The paper's ground-truth reward: a RoBERTa toxicity classifier, run in JAX.

``RobertaToxicityScorer`` tokenizes with the folder's own HF tokenizer, pads
each batch to a fixed bucket of (batch size, length) so the jitted forward
compiles once per bucket rather than once per batch, and exposes three views
of the classifier:

* ``__call__``: P(toxic) = softmax(logits)[toxic], what the reward uses; for a
  ``"problem_type": "multi_label_classification"`` checkpoint (Detoxify-style,
  one independent sigmoid per label) P(toxic) = sigmoid(logit_toxic);
* ``log_odds``: log P(not toxic) - log P(toxic) = logsumexp(other logits) -
  logit_toxic (for two classes: logit_neutral - logit_toxic; multi-label:
  -logit_toxic); 0 is the classifier's decision boundary, so its sign is the
  classifier's verdict;
* ``neg_toxic_logit``: -logit_toxic, the "true reward" of the reference code
  (irl_for_llms ``get_evaluation``: ``-logits[:, -1]``), kept for comparisons.
  It is not invariant to a shift of all logits and its 0 is not a boundary.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.models import hf_files
from jaxirl.rewards.roberta_model import (
    RobertaConfig,
    RobertaForSequenceClassification,
    load_roberta,
)
from jaxirl.rewards.scorer import check_texts

log = logging.getLogger(__name__)
DEFAULT_ROBERTA = "s-nlp/roberta_toxicity_classifier"
DEFAULT_BUCKETS = (32, 64, 128, 256, 512)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "sentencepiece.bpe.model")
_TOXIC_NAMES = ("toxic", "toxicity", "offensive", "hate", "abusive")


def toxic_label_index(hf_config: dict[str, Any], num_labels: int,
                      override: int | str | None = None) -> int:
    """Index of the "toxic" class: ``override`` (index or label name), else the first
    ``id2label`` entry named like toxic (s-nlp: 0=neutral, 1=toxic), else 1."""
    id2label = {int(k): str(v) for k, v in (hf_config.get("id2label") or {}).items()}
    if isinstance(override, str):
        by_name = {v.lower(): k for k, v in id2label.items()}
        if override.lower() not in by_name:
            raise ConfigError(f"toxic label '{override}' is not in the config's id2label "
                              f"{id2label}")
        index = by_name[override.lower()]
    elif override is not None:
        index = int(override)
    else:
        named = [k for k, v in sorted(id2label.items()) if v.lower() in _TOXIC_NAMES]
        index = named[0] if named else 1
    if not 0 <= index < num_labels:
        raise ConfigError(f"toxic label index {index} is out of range for {num_labels} labels")
    return index


def _round_up(n: int, sizes: Sequence[int]) -> int:
    return next(s for s in sizes if s >= n)


class RobertaToxicityScorer:
    """A RoBERTa sequence classifier as a :class:`~jaxirl.rewards.scorer.ToxicityScorer`.

    Args:
      config, params: the architecture and flax params (see ``roberta_model.load_roberta``).
      tokenizer: a HF tokenizer whose ids match the checkpoint (adds <s> ... </s>).
      toxic_index: which logit is "toxic".
      max_length: truncation length in tokens (<s> and </s> included); capped at what the
        position table allows (512 for RoBERTa-base).
      truncation_side: which end of a longer text is cut. ``"left"`` (the default) keeps
        the end: the scored texts are prompt + response, and a prompt longer than the
        classifier's 512 tokens would otherwise leave the response unread (every response
        to it the same score). ``"right"`` keeps the beginning, as the reference code's
        ``pipeline`` does (it sets ``truncation_side="left"`` on a tokenizer that its
        pipeline does not use). It is set on ``tokenizer``. A call that cuts texts logs how
        many, once per scorer.
      batch_size: the most texts per forward pass; smaller batches are padded to a power of 2.
      buckets: sequence lengths batches are padded to (max_length is always added).
      dtype: compute dtype of the forward pass (params stay fp32).
    """

    def __init__(self, config: RobertaConfig, params: Any, tokenizer: Any, toxic_index: int = 1,
                 max_length: int | None = None, batch_size: int = 32,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, dtype: Any = jnp.float32,
                 name: str = "roberta", truncation_side: str = "left"):
        if config.num_labels < 2:
            raise CheckpointError(f"a toxicity classifier needs >= 2 labels, the config has "
                                  f"num_labels={config.num_labels}")
        if batch_size <= 0:
            raise ConfigError(f"roberta scorer batch_size must be positive, got {batch_size}")
        self.config = config
        self.params = params
        self.tokenizer = tokenizer
        self.toxic_index = int(toxic_index)
        self.max_length = min(int(max_length or config.max_tokens), config.max_tokens)
        if self.max_length < 2:
            raise ConfigError(f"roberta scorer max_length must be >= 2, got {self.max_length}")
        if truncation_side not in ("left", "right"):
            raise ConfigError(f"roberta scorer truncation_side must be 'left' or 'right', got "
                              f"{truncation_side!r}")
        self.truncation_side = truncation_side
        # Set once, not around each call: the study's second lane scores from a thread.
        tokenizer.truncation_side = truncation_side
        self._warned_cut = False
        self.batch_size = int(batch_size)
        self.length_buckets = tuple(sorted({int(b) for b in buckets if 0 < b < self.max_length}
                                           | {self.max_length}))
        self.batch_buckets = tuple(sorted({min(2 ** k, self.batch_size)
                                           for k in range(self.batch_size.bit_length() + 1)}))
        self.name = name
        self.model = RobertaForSequenceClassification(config, dtype=dtype)
        self._forward = jax.jit(lambda p, ids, mask: self.model.apply({"params": p}, ids, mask))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_ROBERTA,
                        toxic_label: int | str | None = None, **kwargs) -> RobertaToxicityScorer:
        """Loads weights, config and tokenizer from one HF folder (or hub id)."""
        model_dir = hf_files.resolve_model_dir(name_or_path)
        config, params, hf_config = load_roberta(model_dir)
        # Without vocabulary files transformers 5 silently builds an empty tokenizer
        # that maps every word to <unk>: refuse instead.
        if not any((model_dir / f).is_file() for f in _TOKENIZER_FILES):
            raise CheckpointError(f"model folder '{model_dir}' has no tokenizer (looked for "
                                  f"{', '.join(_TOKENIZER_FILES)})")
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        except Exception as e:  # noqa: BLE001 - any tokenizer failure becomes one line
            raise CheckpointError(f"cannot load the tokenizer of '{model_dir}': "
                                  f"{type(e).__name__}: {e}") from None
        index = toxic_label_index(hf_config, config.num_labels, toxic_label)
        kwargs.setdefault("name", f"roberta:{name_or_path}")
        return cls(config, params, tokenizer, toxic_index=index, **kwargs)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (<s> and </s> included), cut to ``max_length`` on
        ``truncation_side``."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                             padding=False)["input_ids"]
        full = [i for i, row in enumerate(ids) if len(row) == self.max_length]
        if full and not self._warned_cut:
            lengths = self.tokenizer([texts[i] for i in full], truncation=False,
                                     padding=False)["input_ids"]
            cut = sum(len(row) > self.max_length for row in lengths)
            if cut:
                self._warned_cut = True
                log.warning("%s: %d of %d texts are longer than its %d tokens; cut on the %s "
                            "(keeping their %s)", self.name, cut, len(ids), self.max_length,
                            self.truncation_side,
                            "end" if self.truncation_side == "left" else "beginning")
        top = max((max(row) for row in ids if row), default=0)
        if top >= self.config.vocab_size:
            raise CheckpointError(f"the tokenizer produced token id {top} >= the model's "
                                  f"vocab_size {self.config.vocab_size}: tokenizer and weights "
                                  "do not match")
        return ids

    def pad(self, ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-pads token ids to a bucketed [B, T]; returns (input_ids, attention_mask) int32.

        Extra rows (B > len(ids)) copy row 0, so that no row is all padding.
        """
        n = len(ids)
        b = _round_up(n, self.batch_buckets)
        t = _round_up(max(len(row) for row in ids), self.length_buckets)
        input_ids = np.full((b, t), self.config.pad_token_id, np.int32)
        mask = np.zeros((b, t), np.int32)
        for i in range(b):
            row = ids[i] if i < n else ids[0]
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Jitted logits float32 [B, num_labels] of an already padded int [B, T] batch."""
        return np.asarray(self._forward(self.params, jnp.asarray(input_ids, jnp.int32),
                                        jnp.asarray(attention_mask, jnp.int32)))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Class logits, float32 [N, num_labels]."""
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.config.num_labels), np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        # Similar lengths share a batch, so that few pads are computed.
        order = np.argsort([len(row) for row in ids], kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            input_ids, mask = self.pad([ids[i] for i in idx])
            out[idx] = self.forward(input_ids, mask)[: len(idx)]
        return out

    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        """log P(not toxic) - log P(toxic), float64 [N] in nats; > 0 means "not toxic".

        Single-label: logsumexp(other logits) - logit_toxic. Multi-label: P(toxic) =
        sigmoid(logit_toxic), whose log-odds are -logit_toxic whatever the other labels say.
        """
        logits = self.logits(texts).astype(np.float64)
        if self.config.multi_label:
            return -logits[:, self.toxic_index]
        others = np.delete(logits, self.toxic_index, axis=1)
        return scipy.special.logsumexp(others, axis=1) - logits[:, self.toxic_index]

    def neg_toxic_logit(self, texts: Sequence[str]) -> np.ndarray:
        """-logit_toxic, float64 [N]: the reference code's "true reward" view."""
        return -self.logits(texts).astype(np.float64)[:, self.toxic_index]

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """P(toxic), float64 [N] in [0, 1]: softmax or, multi-label, sigmoid of the logits."""
        return scipy.special.expit(-self.log_odds(texts))

    def __repr__(self) -> str:
        return (f"RobertaToxicityScorer(name={self.name!r}, toxic_index={self.toxic_index}, "
                f"max_length={self.max_length})")


def make_roberta_scorer(arg: str = "") -> RobertaToxicityScorer:
    """Registry factory for ``"roberta"`` / ``"roberta:<folder or hub id>"``."""
    return RobertaToxicityScorer.from_pretrained(arg or DEFAULT_ROBERTA)
