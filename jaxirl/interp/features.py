"""Offline feature labels: which SAE features track what the reward penalises?

The paper labels features by showing GPT-4 their top-activating contexts. Offline we
score those contexts with the ground-truth side instead:

1. For each feature, its ``top_k`` highest activations (at most one per text) and a
   token window around each (``before`` tokens up to and including the activating
   token, ``after`` tokens past it), decoded to text.
2. A context is *flagged* when the toxicity scorer gives P(toxic) >= 0.5 and/or it
   contains a word of better-profanity's word list (``criterion``).
3. The null: contexts around uniformly drawn real tokens are flagged at base rate
   p0. A feature with s flagged of k contexts is *toxic-linked* when the one-sided
   binomial test P(S >= s | k, p0) < ``alpha``, *clean-linked* when
   P(S <= s | k, p0) < alpha (its contexts are cleaner than random text). z-scores
   (s/k - p0) / sqrt(p0 (1 - p0) / k) are reported too.
4. Random features (ReLU of random unit directions in activation space, same top-k
   procedure) give a population-level control: SAE features should be flagged more
   often than random ones if the SAE isolates feedback-related directions.

Then the paper's firing-rate test: do toxic-linked features fire more often on
toxic (low-reward) texts, and clean-linked ones on clean (high-reward) texts?
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import re
from collections.abc import Callable, Sequence

import numpy as np
import scipy.stats

from jaxirl.errors import ConfigError, DataError
from jaxirl.interp.activations import CapturedActivations
from jaxirl.interp.irm import encode_tokens
from jaxirl.interp.sae import TrainedSAE

_WORD = re.compile(r"[a-z0-9']+")
CRITERIA = ("scorer", "wordlist", "either")


@functools.lru_cache(maxsize=1)
def offensive_words() -> frozenset[str]:
    """better-profanity's word list, lower-cased (single words and multi-word phrases)."""
    path = importlib.resources.files("better_profanity") / "profanity_wordlist.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip().lower() for w in lines if w.strip())


def contains_offensive(texts: Sequence[str], words: frozenset[str] | None = None) -> np.ndarray:
    """bool [N]: whether each text contains a listed word or phrase (whole words only)."""
    words = offensive_words() if words is None else words
    single = {w for w in words if " " not in w}
    phrases = [w for w in words if " " in w]
    out = np.zeros((len(texts),), bool)
    for i, text in enumerate(texts):
        tokens = _WORD.findall(text.lower())
        joined = " " + " ".join(tokens) + " "
        out[i] = any(t in single for t in tokens) or any(f" {p} " in joined for p in phrases)
    return out


def offensive_token_labels(token_ids: np.ndarray, tokenizer,
                           words: frozenset[str] | None = None) -> np.ndarray:
    """bool [num_tokens]: the token, decoded and stripped, is a listed word.

    A per-token target for token-level probes. Sub-word tokens count only when the
    piece itself is listed (e.g. "shit" in "dipshit"), an approximation that
    avoids aligning BPE pieces to words.
    """
    words = offensive_words() if words is None else words
    ids = np.asarray(token_ids)
    vocab = {int(t): tokenizer.decode([int(t)]).strip().lower() in words for t in np.unique(ids)}
    return np.asarray([vocab[int(t)] for t in ids], bool)


def _text_starts(captured: CapturedActivations) -> np.ndarray:
    starts = np.zeros((captured.num_texts + 1,), np.int64)
    np.add.at(starts, captured.text_index + 1, 1)
    return np.cumsum(starts)


def top_context_rows(codes: np.ndarray, text_index: np.ndarray, top_k: int) -> list[np.ndarray]:
    """Per feature, the token rows of its ``top_k`` largest positive activations.

    At most one row per text (the strongest), so one long text cannot fill a
    feature's list with overlapping windows. Returns F int arrays, strongest first.
    """
    codes = np.asarray(codes)
    n, f = codes.shape
    pool = min(n, 4 * top_k)  # candidates; enough unless one text holds most of them
    cand = np.argpartition(-codes, pool - 1, axis=0)[:pool] if pool < n else np.tile(
        np.arange(n)[:, None], (1, f))
    rows = []
    for j in range(f):
        c = cand[:, j]
        c = c[np.argsort(-codes[c, j], kind="stable")]
        c = c[codes[c, j] > 0]
        _, first = np.unique(text_index[c], return_index=True)
        rows.append(c[np.sort(first)][:top_k])
    return rows


def decode_contexts(rows: np.ndarray, captured: CapturedActivations, tokenizer,
                    before: int = 6, after: int = 2) -> list[str]:
    """Decoded token windows around each token row: ``before`` up to it, ``after`` past it."""
    starts = _text_starts(captured)
    windows = []
    for r in np.asarray(rows, np.int64):
        t = captured.text_index[r]
        lo = max(starts[t], r - before + 1)
        hi = min(starts[t + 1], r + after + 1)
        windows.append(captured.token_ids[lo:hi].tolist())
    texts = tokenizer.batch_decode(windows) if windows else []
    return [s if s.strip() else "." for s in texts]  # scorers reject blank texts


def _flags(contexts: list[str], scorer, words) -> tuple[np.ndarray, np.ndarray]:
    """(scorer says toxic, contains a listed word), bool [N] each."""
    if not contexts:
        return np.zeros((0,), bool), np.zeros((0,), bool)
    tox = (np.asarray(scorer(contexts)) >= 0.5) if scorer is not None else np.zeros(
        (len(contexts),), bool)
    word = contains_offensive(contexts, words)
    return tox, word


def _combine(tox, word, criterion):
    return {"scorer": tox, "wordlist": word, "either": tox | word}[criterion]


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureLabels:
    """Per-feature enrichment of top contexts in flagged (toxic/offensive) text.

    Arrays are over all features of all layers, layer-major ([num_total_features]).

    Attributes:
      layer, feature: which SAE and which of its features.
      num_contexts: top contexts found (< top_k for rarely active features; 0 = dead).
      toxic_share / word_share / flagged_share: shares of contexts flagged by the
        scorer, by the word list, and by ``criterion``.
      z: (flagged_share - base_rate) / binomial sd; NaN without contexts.
      p_enriched / p_depleted: one-sided binomial p-values against ``base_rate``.
      toxic_linked / clean_linked: bool, p_enriched / p_depleted < alpha.
      base_rate: share of random-token contexts flagged (p0).
      random_flagged_share: flagged share of each random-direction feature [R].
      random_toxic_linked_fraction: share of random features that pass the enrichment test.
      examples: (layer, feature) -> its decoded top contexts, for the most enriched features.
      criterion, alpha, top_k: settings.
    """

    layer: np.ndarray
    feature: np.ndarray
    num_contexts: np.ndarray
    toxic_share: np.ndarray
    word_share: np.ndarray
    flagged_share: np.ndarray
    z: np.ndarray
    p_enriched: np.ndarray
    p_depleted: np.ndarray
    toxic_linked: np.ndarray
    clean_linked: np.ndarray
    base_rate: float
    random_flagged_share: np.ndarray
    random_toxic_linked_fraction: float
    examples: dict[tuple[int, int], list[str]]
    criterion: str
    alpha: float
    top_k: int

    def summary(self) -> dict[str, float]:
        alive = self.num_contexts > 0
        return {
            "num_features": int(len(self.layer)), "num_alive": int(alive.sum()),
            "base_rate": self.base_rate,
            "mean_flagged_share_sae": float(np.mean(self.flagged_share[alive])) if alive.any()
            else float("nan"),
            "mean_flagged_share_random": float(np.mean(self.random_flagged_share))
            if len(self.random_flagged_share) else float("nan"),
            "num_toxic_linked": int(self.toxic_linked.sum()),
            "num_clean_linked": int(self.clean_linked.sum()),
            "toxic_linked_fraction_sae": float(self.toxic_linked[alive].mean()) if alive.any()
            else float("nan"),
            "toxic_linked_fraction_random": self.random_toxic_linked_fraction,
            "expected_false_positives": self.alpha * int(alive.sum()),
        }


def _binomial_tests(flagged: np.ndarray, k: np.ndarray, p0: float):
    p0 = float(np.clip(p0, 1e-6, 1 - 1e-6))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(k > 0, flagged / np.maximum(k, 1), np.nan)
        z = (share - p0) / np.sqrt(p0 * (1 - p0) / np.maximum(k, 1))
    p_hi = np.where(k > 0, scipy.stats.binom.sf(flagged - 1, k, p0), 1.0)
    p_lo = np.where(k > 0, scipy.stats.binom.cdf(flagged, k, p0), 1.0)
    return share, np.where(k > 0, z, np.nan), p_hi, p_lo


def label_features(
    captured: CapturedActivations,
    saes: dict[int, TrainedSAE],
    tokenizer,
    scorer: Callable[[Sequence[str]], np.ndarray] | None,
    top_k: int = 20,
    before: int = 6,
    after: int = 2,
    criterion: str = "either",
    alpha: float = 0.01,
    num_random_tokens: int = 2000,
    num_random_features: int = 64,
    num_examples: int = 5,
    seed: int = 0,
    words: frozenset[str] | None = None,
) -> FeatureLabels:
    """Labels every feature of every SAE as toxic-linked, clean-linked or neither.

    Args:
      captured: MLP activations of the fine-tuned policy on a text set (with tokens).
      saes: layer -> SAE; every layer must be in ``captured``.
      tokenizer: decodes token windows.
      scorer: texts -> P(toxic) [N] (e.g. ``make_scorer("profanity")``); None uses the
        word list only (then ``criterion`` must be ``"wordlist"``).
      top_k: contexts per feature.
      before, after: window size in tokens (see module docstring).
      criterion: ``"scorer"``, ``"wordlist"`` or ``"either"``: what flags a context.
      alpha: one-sided binomial test level.
      num_random_tokens: random-token contexts that estimate the base rate.
      num_random_features: random unit directions per layer for the control.
      num_examples: how many of the most enriched features keep their contexts.
      seed: for the random tokens and directions.
      words: lower-case offensive words/phrases; default better-profanity's list (which
        lacks mild insults such as "idiot": add domain words here).
    """
    if criterion not in CRITERIA:
        raise ConfigError(f"feature-label criterion '{criterion}' is not one of {CRITERIA}")
    if scorer is None and criterion != "wordlist":
        raise ConfigError("feature labels without a scorer need criterion='wordlist'")
    if top_k < 1 or captured.num_tokens == 0:
        raise DataError(f"need top_k >= 1 and captured tokens, got top_k={top_k}, "
                        f"{captured.num_tokens} tokens")
    rng = np.random.default_rng(seed)
    rand_rows = rng.choice(captured.num_tokens, min(num_random_tokens, captured.num_tokens),
                           replace=False)
    tox, word = _flags(decode_contexts(rand_rows, captured, tokenizer, before, after), scorer,
                       words)
    base_rate = float(_combine(tox, word, criterion).mean())

    cols = {k: [] for k in ("layer", "feature", "k", "tox", "word", "flag")}
    contexts_of: dict[tuple[int, int], list[str]] = {}
    rand_counts = []
    for layer in sorted(saes):
        acts = captured.activations[layer]
        codes = encode_tokens(saes[layer], acts)
        directions = rng.normal(size=(num_random_features, acts.shape[1]))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        centred = (acts - acts.mean(0)) @ directions.T  # centred: about half the tokens fire
        for kind, matrix in (("sae", codes), ("random", np.maximum(centred, 0.0))):
            rows = top_context_rows(matrix, captured.text_index, top_k)
            flat = np.concatenate(rows) if rows else np.zeros((0,), np.int64)
            ctx = decode_contexts(flat, captured, tokenizer, before, after)
            t, w = _flags(ctx, scorer, words)
            f = _combine(t, w, criterion)
            bounds = np.cumsum([0] + [len(r) for r in rows])
            for j in range(len(rows)):
                sl = slice(bounds[j], bounds[j + 1])
                if kind == "random":
                    rand_counts.append((f[sl].sum(), bounds[j + 1] - bounds[j]))
                    continue
                cols["layer"].append(layer)
                cols["feature"].append(j)
                cols["k"].append(bounds[j + 1] - bounds[j])
                cols["tox"].append(t[sl].sum())
                cols["word"].append(w[sl].sum())
                cols["flag"].append(f[sl].sum())
                contexts_of[(layer, j)] = ctx[sl]
    k = np.asarray(cols["k"], np.int64)
    share, z, p_hi, p_lo = _binomial_tests(np.asarray(cols["flag"]), k, base_rate)
    with np.errstate(invalid="ignore"):
        tox_share = np.where(k > 0, np.asarray(cols["tox"]) / np.maximum(k, 1), np.nan)
        word_share = np.where(k > 0, np.asarray(cols["word"]) / np.maximum(k, 1), np.nan)
    rand = np.asarray(rand_counts, np.float64).reshape(-1, 2)
    r_share, _, r_hi, _ = _binomial_tests(rand[:, 0], rand[:, 1].astype(np.int64), base_rate)
    toxic_linked = p_hi < alpha
    order = np.argsort(np.where(toxic_linked, -np.nan_to_num(z, nan=-np.inf), np.inf))
    layers_arr = np.asarray(cols["layer"], np.int32)
    feats_arr = np.asarray(cols["feature"], np.int32)
    examples = {}
    for i in order[:num_examples]:
        key = (int(layers_arr[i]), int(feats_arr[i]))
        if toxic_linked[i] and key in contexts_of:
            examples[key] = contexts_of[key]
    return FeatureLabels(
        layer=layers_arr, feature=feats_arr, num_contexts=k, toxic_share=tox_share,
        word_share=word_share, flagged_share=share, z=z, p_enriched=p_hi, p_depleted=p_lo,
        toxic_linked=toxic_linked, clean_linked=p_lo < alpha, base_rate=base_rate,
        random_flagged_share=np.nan_to_num(r_share, nan=0.0),
        random_toxic_linked_fraction=float(np.mean(r_hi < alpha)) if len(r_hi) else float("nan"),
        examples=examples, criterion=criterion, alpha=alpha, top_k=top_k)
