"""The toxicity-scorer interface, its input/output checks, and the scorer registry.

A scorer maps a batch of texts to the probability that each is toxic. Every
score that can reach training goes through :func:`checked_scores`, which turns
an empty text, a scorer exception or a NaN/inf/out-of-range score into a
one-line :class:`~jaxirl.errors.RewardError` naming the sample index.

Scorers are built from a spec string by :func:`make_scorer`:
``"profanity"`` (default ground truth), ``"roberta"`` (= the s-nlp classifier)
or ``"roberta:/path/to/folder"``. Users add kinds with :func:`register_scorer`.
A learned reward (``"learned:PATH"``) is not a kind of this low layer: the stage
layer resolves it (:mod:`jaxirl.pipeline.reward_specs`), so that ``jaxirl.rewards``
never reaches into ``jaxirl.irl``.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from jaxirl.errors import ConfigError, JaxIRLError, RewardError

DEFAULT_SCORER = "profanity"
_REPR_CHARS = 60


@runtime_checkable
class ToxicityScorer(Protocol):
    """A ground-truth (or learned) toxicity model.

    ``__call__`` gives P(toxic) as float [N] in [0, 1]. ``log_odds`` gives the
    log-odds of *not* toxic, log P(not toxic) - log P(toxic), float [N]: positive
    means "not toxic" and 0 is the scorer's decision boundary (the sign convention
    of a reward). Scorers may offer more views (see ``RobertaToxicityScorer``).
    """

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        ...

    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        ...


def short_repr(text: object) -> str:
    """A repr of at most ~60 characters, for error messages."""
    r = repr(text)
    return r if len(r) <= _REPR_CHARS else r[: _REPR_CHARS - 4] + "...'"


def check_texts(texts: Sequence[str], what: str = "sample") -> list[str]:
    """Returns ``texts`` as a list; raises RewardError at the first non-string or blank text."""
    if isinstance(texts, str):
        raise RewardError(f"expected a sequence of {what} texts, got a single string "
                          f"{short_repr(texts)}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RewardError(f"{what} {i} is of type {type(text).__name__}, not a string: "
                              f"{short_repr(text)}")
        if not text.strip():
            raise RewardError(f"{what} {i} is an empty (or whitespace-only) text "
                              f"{short_repr(text)}; a toxicity score of nothing is meaningless")
    return texts


def check_score_array(scores: object, texts: Sequence[str], what: str = "sample",
                      probabilities: bool = True) -> np.ndarray:
    """Validates a scorer's output for ``texts``: float64 [N], finite, in [0, 1] if probs."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise RewardError(f"scorer returned non-numeric scores for {len(texts)} {what}s "
                          f"({e})") from None
    if arr.shape != (len(texts),):
        raise RewardError(f"scorer returned scores of shape {arr.shape} for {len(texts)} {what}s; "
                          f"expected ({len(texts)},)")
    bad = ~np.isfinite(arr)
    if probabilities:
        bad |= (arr < 0.0) | (arr > 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "non-finite" if not np.isfinite(arr[i]) else "out-of-[0,1]"
        more = f" ({int(bad.sum())} bad scores in the batch)" if bad.sum() > 1 else ""
        raise RewardError(f"scorer gave a {kind} score {arr[i]} for {what} {i} "
                          f"{short_repr(texts[i])}{more}")
    return arr


def checked_scores(fn: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str],
                   what: str = "sample", probabilities: bool = True) -> np.ndarray:
    """Calls ``fn(texts)`` (a scorer or one of its views) and validates inputs and outputs.

    Args:
      fn: texts -> float [N], e.g. a ``ToxicityScorer`` or its ``log_odds``.
      texts: N non-blank strings.
      what: how error messages name an element ("sample", "reference", ...).
      probabilities: also require scores in [0, 1].

    Returns:
      float64 [N].

    Raises:
      RewardError: a blank text, a scorer exception, or a bad score; names the index.
        When the batch call fails, texts are re-scored one at a time to find the culprit.
    """
    texts = check_texts(texts, what)
    if not texts:
        return np.zeros((0,), np.float64)
    try:
        scores = fn(texts)
    except JaxIRLError:
        raise
    except Exception as batch_error:  # noqa: BLE001 - any scorer failure must name its sample
        for i, text in enumerate(texts):
            try:
                fn([text])
            except Exception as e:  # noqa: BLE001
                raise RewardError(f"scorer failed on {what} {i} {short_repr(text)}: "
                                  f"{type(e).__name__}: {e}") from e
        raise RewardError(f"scorer failed on a batch of {len(texts)} {what}s (each alone scores "
                          f"fine): {type(batch_error).__name__}: {batch_error}") from batch_error
    return check_score_array(scores, texts, what, probabilities)


def call_reward_fn(reward_fn: Callable, samples: Sequence[str],
                   references: Sequence[str] | None = None) -> np.ndarray:
    """Calls a PPO reward ``reward_fn(samples, references) -> [N]`` and checks what it returns.

    Returns:
      float32 [N]: one finite score per sample.

    Raises:
      RewardError: the function raised, or returned a scalar, another shape, strings or
        other non-numbers, or a NaN/inf score (the message names the first such sample).
    """
    name = getattr(reward_fn, "__name__", type(reward_fn).__name__)
    n = len(samples)
    try:
        out = reward_fn(samples, references)
    except JaxIRLError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's reward function may raise anything
        raise RewardError(f"reward function '{name}' raised {type(e).__name__} on {n} samples: "
                          f"{e}") from e
    arr = np.asarray(out)
    if arr.dtype.kind not in "iuf":
        raise RewardError(f"reward function '{name}' returned {arr.dtype} values "
                          f"({short_repr(out)}); expected numbers, one per sample")
    if arr.shape != (n,):
        what = "a scalar" if arr.ndim == 0 else f"shape {arr.shape}"
        raise RewardError(f"reward function '{name}' returned {what} for {n} samples; "
                          f"expected shape ({n},), one score per sample")
    bad = np.flatnonzero(~np.isfinite(arr.astype(np.float64)))
    if bad.size:
        i = int(bad[0])
        raise RewardError(f"reward function '{name}' returned {arr[i]} for sample {i} "
                          f"{short_repr(samples[i])}")
    return arr.astype(np.float32)


# ---------------------------------------------------------------- registry

# kind -> factory(arg). Each factory imports its module on first use, so that heavy
# dependencies such as jax/transformers load only for the scorer asked for.
ScorerFactory = Callable[[str], ToxicityScorer]


def _profanity(arg: str) -> ToxicityScorer:
    from jaxirl.rewards.profanity import make_profanity_scorer

    return make_profanity_scorer(arg)


def _roberta(arg: str) -> ToxicityScorer:
    from jaxirl.rewards.roberta_scorer import make_roberta_scorer

    return make_roberta_scorer(arg)


SCORER_FACTORIES: dict[str, ScorerFactory] = {"profanity": _profanity, "roberta": _roberta}


def register_scorer(kind: str, factory: ScorerFactory, overwrite: bool = False) -> None:
    """Adds a scorer kind for ``make_scorer("<kind>:<arg>")``.

    Args:
      kind: the name before the colon, e.g. ``"mine"``.
      factory: ``factory(arg) -> ToxicityScorer``, where arg is the text after the colon
        ("" when absent).
      overwrite: replace an existing kind instead of raising ConfigError.
    """
    if not kind or ":" in kind:
        raise ConfigError(f"scorer kind '{kind}' must be non-empty and contain no ':'")
    if not callable(factory):
        raise ConfigError(f"scorer kind '{kind}': the factory must be callable, got "
                          f"{type(factory).__name__}")
    if kind in SCORER_FACTORIES and not overwrite:
        raise ConfigError(f"scorer kind '{kind}' is already registered")
    SCORER_FACTORIES[kind] = factory


def make_scorer(spec: str = DEFAULT_SCORER) -> ToxicityScorer:
    """Builds a scorer from ``"<kind>"`` or ``"<kind>:<arg>"``, e.g. ``"roberta:/models/tox"``.

    Raises:
      ConfigError: unknown kind (the message lists the known ones) or a bad argument.
    """
    kind, _, arg = str(spec).strip().partition(":")
    if kind not in SCORER_FACTORIES:
        raise ConfigError(f"unknown reward scorer '{spec}': expected one of "
                          f"{', '.join(sorted(SCORER_FACTORIES))}, optionally followed by ':<arg>' "
                          "(e.g. 'roberta:/path/to/folder')")
    return SCORER_FACTORIES[kind](arg.strip())
