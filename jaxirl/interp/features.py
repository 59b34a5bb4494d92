"""Offline feature labels: which SAE features track what the reward penalises?

The paper labels features by showing GPT-4 their top-activating contexts. Offline we
score those contexts with the ground-truth side instead:

1. For each feature, its ``top_k`` highest activations (at most one per text) and a
   token window around each (``before`` tokens up to and including the activating
   token, ``after`` tokens past it), decoded to text.
2. A context is *flagged* when the toxicity scorer gives P(toxic) >= 0.5 and/or it
   contains a word of better-profanity's word list (``criterion``).
3. The null: contexts around a uniform token of a uniformly drawn text (top contexts
   hold one token per text) are flagged at base rate p0. A feature with s flagged of k contexts gets the one-sided binomial p-values
   P(S >= s | k, p0) (enriched) and P(S <= s | k, p0) (depleted); the p-values of all
   features are corrected together with Benjamini-Hochberg
   (``scipy.stats.false_discovery_control``), and a feature is *toxic-linked* /
   *clean-linked* when its corrected value is < ``fdr``. z-scores
   (s/k - p0) / sqrt(p0 (1 - p0) / k) are reported too. With p0 ~ 0.05 and k = 20 the
   depletion test cannot reach significance at all: its smallest p-value, (1 - p0)^k,
   is about 0.36.
4. Random features (ReLU of random unit directions in the centred activation space,
   same top-k procedure, same test and correction) are the control: SAE features
   should be toxic-linked more often than random directions if the SAE isolates
   feedback-related directions. They are kept (:class:`RandomDirections`) so the
   firing-rate test can run on them too.

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

    At most one row per text (the strongest; the first of equals), so one long text
    cannot fill a feature's list with overlapping windows. The texts are ranked by
    their maximum first, so a feature active in at least ``top_k`` texts always gets
    ``top_k`` rows, however many strong tokens a few long texts hold. Returns F int
    arrays, strongest first (equal activations: lower row first), the order of a full
    sort of the feature's column.
    """
    codes = np.asarray(codes)
    text_index = np.asarray(text_index)
    n, f = codes.shape
    if n == 0:
        return [np.zeros((0,), np.int64) for _ in range(f)]
    num_texts = int(text_index.max()) + 1
    order = np.argsort(text_index, kind="stable")  # each text's rows, together, ascending
    bounds = np.searchsorted(text_index[order], np.arange(num_texts + 1))
    # Each text's maximum in the codes' own dtype (ranks must not round); a capture lists
    # a text's tokens together, so the reduction usually reads the codes in place.
    grouped = codes if np.all(text_index[1:] >= text_index[:-1]) else codes[order]
    filled = bounds[1:] > bounds[:-1]
    by_feature = np.zeros((f, num_texts), codes.dtype)  # [F, T]: contiguous per feature
    by_feature[:, filled] = np.maximum.reduceat(grouped, bounds[:-1][filled], axis=0).T
    k = min(top_k, num_texts)
    # The k-th largest text maximum of each feature: texts at or above it (ties included)
    # are the candidates, so equal maxima are broken by row as a full sort would.
    kth = np.partition(by_feature, num_texts - k, axis=1)[:, num_texts - k]
    rows = []
    for j in range(f):
        texts = np.flatnonzero((by_feature[j] >= kth[j]) & (by_feature[j] > 0))
        best = np.asarray([order[bounds[t] + int(np.argmax(codes[order[bounds[t]:bounds[t + 1]], j]))]
                           for t in texts], np.int64)
        rows.append(best[np.lexsort((best, -by_feature[j, texts]))][:top_k])
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
class RandomDirections:
    """The control features: ReLU((a - mean) · d) for random unit directions d per layer.

    Attributes:
      directions: layer -> [R, D] unit directions.
      means: layer -> [D] activation mean they are centred on (training tokens).
      layer, num_contexts, flagged_share, p_enriched, q_enriched, toxic_linked: [R total],
        as in :class:`FeatureLabels` (BH within the random directions).
    """

    directions: dict[int, np.ndarray]
    means: dict[int, np.ndarray]
    layer: np.ndarray
    num_contexts: np.ndarray
    flagged_share: np.ndarray
    p_enriched: np.ndarray
    q_enriched: np.ndarray
    toxic_linked: np.ndarray

    def codes(self, layer: int, activations: np.ndarray) -> np.ndarray:
        """[num_tokens, R] codes of this layer's random directions."""
        return np.maximum((activations - self.means[layer]) @ self.directions[layer].T, 0.0)


def benjamini_hochberg(p_values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """BH-adjusted p-values of the ``valid`` entries (others: 1), one family."""
    p = np.asarray(p_values, np.float64)
    valid = np.ones(p.shape, bool) if valid is None else np.asarray(valid, bool)
    out = np.ones(p.shape)
    if valid.any():
        out[valid] = scipy.stats.false_discovery_control(np.clip(p[valid], 0.0, 1.0))
    return out


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
      q_enriched / q_depleted: their Benjamini-Hochberg adjustments over the alive features.
      toxic_linked / clean_linked: bool, q_enriched / q_depleted < fdr.
      base_rate: share of random-token contexts flagged (p0).
      random_flagged_share: flagged share of each random-direction feature [R].
      random_toxic_linked_fraction: share of random features toxic-linked (same rule).
      examples: (layer, feature) -> its decoded top contexts, for the most enriched features.
      criterion, alpha, top_k: settings (``alpha``: the uncorrected level, reported only).
      fdr: the false discovery rate of the BH correction.
      random: the random-direction control (None in labels built before it existed).
      context_norm / random_context_norm: per feature [F] / direction [R], the mean norm
        of the centred activation at its top-context tokens, in units of the layer's mean
        norm (how strongly top-k selection prefers high-norm tokens).
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
    q_enriched: np.ndarray | None = None
    q_depleted: np.ndarray | None = None
    fdr: float = 0.05
    random: RandomDirections | None = None
    context_norm: np.ndarray | None = None
    random_context_norm: np.ndarray | None = None

    def summary(self) -> dict[str, float]:
        alive = self.num_contexts > 0
        nan = float("nan")
        full = self.num_contexts >= self.top_k
        out = {
            "num_features": int(len(self.layer)), "num_alive": int(alive.sum()),
            "base_rate": self.base_rate, "top_k": self.top_k, "fdr": self.fdr,
            "mean_flagged_share_sae": float(np.mean(self.flagged_share[alive])) if alive.any()
            else nan,
            "mean_flagged_share_random": float(np.mean(self.random_flagged_share))
            if len(self.random_flagged_share) else nan,
            "num_toxic_linked": int(self.toxic_linked.sum()),
            "num_clean_linked": int(self.clean_linked.sum()),
            "num_toxic_linked_uncorrected": int((self.p_enriched < self.alpha).sum()),
            "expected_false_positives_uncorrected": self.alpha * int(alive.sum()),
            "toxic_linked_fraction_sae": float(self.toxic_linked[alive].mean()) if alive.any()
            else nan,
            "toxic_linked_fraction_random": self.random_toxic_linked_fraction,
            # The depletion test's best attainable p-value with k contexts.
            "min_depletion_p": float((1 - self.base_rate) ** self.top_k),
            "mean_contexts_sae": float(np.mean(self.num_contexts[alive])) if alive.any() else nan,
            "share_full_contexts_sae": float(np.mean(full[alive])) if alive.any() else nan,
            "toxic_linked_fraction_sae_full_contexts": float(self.toxic_linked[full].mean())
            if full.any() else nan,
            "toxic_linked_fraction_sae_by_layer": {
                str(la): float(self.toxic_linked[alive & (self.layer == la)].mean())
                for la in np.unique(self.layer[alive])},
        }
        if self.context_norm is not None:
            out["context_norm_ratio_sae"] = float(np.nanmean(self.context_norm[alive]))
            out["norm_flagged_spearman_sae"] = _spearman(self.context_norm[alive],
                                                         self.flagged_share[alive])
        if self.random is not None:
            r = self.random
            out["mean_contexts_random"] = float(np.mean(r.num_contexts))
            out["num_random_features"] = int(len(r.layer))
            out["toxic_linked_fraction_random_by_layer"] = {
                str(la): float(r.toxic_linked[r.layer == la].mean()) for la in np.unique(r.layer)}
            if self.random_context_norm is not None:
                out["context_norm_ratio_random"] = float(np.nanmean(self.random_context_norm))
                out["norm_flagged_spearman_random"] = _spearman(self.random_context_norm,
                                                                r.flagged_share)
            out.update(_fraction_difference(self.toxic_linked[alive], r.toxic_linked))
        return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(a[keep], b[keep])[0])


def random_context_rows(captured: CapturedActivations, num: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Token rows for the base rate: a uniformly drawn text, then a uniform token in it.

    Top contexts hold at most one token per text, so the matched null draws texts
    uniformly, not tokens: uniform tokens overweight long texts (on the default study,
    which hold more offensive edits, 0.117 against 0.085 flagged).
    """
    starts = _text_starts(captured)
    lengths = np.diff(starts)
    texts = np.flatnonzero(lengths > 0)
    picked = rng.choice(texts, num, replace=True)
    return starts[picked] + (rng.random(num) * lengths[picked]).astype(np.int64)


def _fraction_difference(sae: np.ndarray, random: np.ndarray, seed: int = 0) -> dict[str, float]:
    """SAE minus random toxic-linked fraction, with a 95% bootstrap interval that resamples
    the SAE features and the random directions independently."""
    sae, random = np.asarray(sae, float), np.asarray(random, float)
    est = float(sae.mean() - random.mean()) if len(sae) and len(random) else float("nan")
    low = high = float("nan")
    if len(sae) > 1 and len(random) > 1 and (np.ptp(sae) > 0 or np.ptp(random) > 0):
        res = scipy.stats.bootstrap((sae, random), lambda a, b, axis: a.mean(axis) - b.mean(axis),
                                    n_resamples=2000, method="percentile",
                                    rng=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return {"toxic_linked_fraction_difference": est,
            "toxic_linked_fraction_difference_low": low,
            "toxic_linked_fraction_difference_high": high}


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
    fdr: float = 0.05,
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
      alpha: uncorrected one-sided test level (only reported: how many pass uncorrected).
      num_random_tokens: random-token contexts (one token of a random text each, see
        :func:`random_context_rows`) that estimate the base rate.
      num_random_features: random unit directions per layer for the control.
      num_examples: how many of the most enriched features keep their contexts.
      seed: for the random tokens and directions.
      words: lower-case offensive words/phrases; default better-profanity's list (which
        lacks mild insults such as "idiot": add domain words here).
      fdr: Benjamini-Hochberg false discovery rate of the labels.
    """
    if criterion not in CRITERIA:
        raise ConfigError(f"feature-label criterion '{criterion}' is not one of {CRITERIA}")
    if scorer is None and criterion != "wordlist":
        raise ConfigError("feature labels without a scorer need criterion='wordlist'")
    if top_k < 1 or captured.num_tokens == 0:
        raise DataError(f"need top_k >= 1 and captured tokens, got top_k={top_k}, "
                        f"{captured.num_tokens} tokens")
    rng = np.random.default_rng(seed)
    rand_rows = random_context_rows(captured, num_random_tokens, rng)
    tox, word = _flags(decode_contexts(rand_rows, captured, tokenizer, before, after), scorer,
                       words)
    base_rate = float(_combine(tox, word, criterion).mean())

    cols = {kind: {k: [] for k in ("layer", "feature", "k", "tox", "word", "flag", "norm")}
            for kind in ("sae", "random")}
    contexts_of: dict[tuple[int, int], list[str]] = {}
    directions, means = {}, {}
    for layer in sorted(saes):
        acts = captured.activations[layer]
        means[layer] = acts.mean(0)
        # Centred activation norm relative to the layer's mean norm: what top-k favours.
        norm = np.linalg.norm(acts - means[layer], axis=1)
        norm = norm / max(float(norm.mean()), 1e-12)
        d = rng.normal(size=(num_random_features, acts.shape[1]))
        directions[layer] = d / np.linalg.norm(d, axis=1, keepdims=True)
        matrices = {"sae": encode_tokens(saes[layer], acts),
                    "random": np.maximum((acts - means[layer]) @ directions[layer].T, 0.0)}
        for kind, matrix in matrices.items():
            rows = top_context_rows(matrix, captured.text_index, top_k)
            flat = np.concatenate(rows) if rows else np.zeros((0,), np.int64)
            ctx = decode_contexts(flat, captured, tokenizer, before, after)
            t, w = _flags(ctx, scorer, words)
            f = _combine(t, w, criterion)
            bounds = np.cumsum([0] + [len(r) for r in rows])
            for j in range(len(rows)):
                sl = slice(bounds[j], bounds[j + 1])
                for key, value in (("layer", layer), ("feature", j),
                                   ("k", bounds[j + 1] - bounds[j]), ("tox", t[sl].sum()),
                                   ("word", w[sl].sum()), ("flag", f[sl].sum())):
                    cols[kind][key].append(value)
                if kind == "sae":
                    contexts_of[(layer, j)] = ctx[sl]
            cols[kind]["norm"].extend(float(norm[r].mean()) if len(r) else np.nan for r in rows)
    sae, rnd = ({k: np.asarray(v) for k, v in c.items()} for c in (cols["sae"], cols["random"]))
    k = sae["k"].astype(np.int64)
    share, z, p_hi, p_lo = _binomial_tests(sae["flag"], k, base_rate)
    q_hi, q_lo = benjamini_hochberg(p_hi, k > 0), benjamini_hochberg(p_lo, k > 0)
    with np.errstate(invalid="ignore"):
        tox_share = np.where(k > 0, sae["tox"] / np.maximum(k, 1), np.nan)
        word_share = np.where(k > 0, sae["word"] / np.maximum(k, 1), np.nan)
    rk = rnd["k"].astype(np.int64)
    r_share, _, r_hi, _ = _binomial_tests(rnd["flag"], rk, base_rate)
    r_q = benjamini_hochberg(r_hi, rk > 0)
    random = RandomDirections(directions, means, rnd["layer"].astype(np.int32), rk,
                              np.nan_to_num(r_share, nan=0.0), r_hi, r_q, r_q < fdr)
    toxic_linked = q_hi < fdr
    order = np.argsort(np.where(toxic_linked, -np.nan_to_num(z, nan=-np.inf), np.inf))
    layers_arr = sae["layer"].astype(np.int32)
    feats_arr = sae["feature"].astype(np.int32)
    examples = {}
    for i in order[:num_examples]:
        key = (int(layers_arr[i]), int(feats_arr[i]))
        if toxic_linked[i] and key in contexts_of:
            examples[key] = contexts_of[key]
    return FeatureLabels(
        layer=layers_arr, feature=feats_arr, num_contexts=k, toxic_share=tox_share,
        word_share=word_share, flagged_share=share, z=z, p_enriched=p_hi, p_depleted=p_lo,
        toxic_linked=toxic_linked, clean_linked=q_lo < fdr, base_rate=base_rate,
        random_flagged_share=random.flagged_share,
        random_toxic_linked_fraction=float(np.mean(random.toxic_linked)) if len(rk) else
        float("nan"),
        examples=examples, criterion=criterion, alpha=alpha, top_k=top_k, q_enriched=q_hi,
        q_depleted=q_lo, fdr=fdr, random=random,
        context_norm=sae["norm"], random_context_norm=rnd["norm"])
