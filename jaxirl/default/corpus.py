"""Pretraining corpus and held-out prompts of the embedded default pipeline.

The default pipeline pretrains a tiny GPT-NeoX model itself (no model hub), so it
needs text in which the choice between a clean and an offensive continuation is
learnable, frequent and independent of the context: that choice is what PPO later
removes and what IRL must recover.

Procedure (deterministic given ``seed``):

1. Clean base: the English dialogs of ``chatterbot-corpus`` (BSD licence), minus
   ``coding.yml`` (code blocks). Turns are whitespace-collapsed, curly quotes made
   ASCII, capitalised and given end punctuation; duplicate conversations dropped.
   A conversation is rendered as one line: its turns joined by single spaces.
2. Split: a seeded permutation holds out ``heldout_fraction`` of the conversations.
3. Offensive splicing: every turn, independently with probability
   ``offensive_prob`` (0.25), receives one edit drawn uniformly from: a vocative insult
   before its end punctuation ("..., you stupid idiot?"), an appended insult
   sentence ("... Shut up, moron."), an exclamation before it ("Holy shit! ..."),
   or a profane intensifier after a determiner ("the fucking printer"). The words
   come from the curated lists below (general profanity and insults only; no slurs
   against identity groups, no sexual content), every one of which occurs in
   better-profanity's word list or in VADER's lexicon with negative valence.
   Each training conversation is rendered ``n_variants`` times with fresh draws, so
   the same context is seen continued both ways.
4. Prompts: for every held-out turn of at least 4 words that appears in no training
   conversation, the prompt is its first 2..6 words (clean by construction) and the
   reference output is the rest of the conversation, spliced as in 3 (no
   exclamation before the cut), truncated to ``reference_words`` words. The
   reference output starts with a space, so ``prompt + reference_output`` is text.
"""

import dataclasses
import json
import pathlib

import numpy as np
import yaml

from jaxirl.errors import DataError

# Roles of the offensive vocabulary; see the module docstring for the provenance.
INSULT_NOUNS = (
    "idiot", "moron", "loser", "jerk", "asshole", "bastard", "dumbass", "jackass",
    "dickhead", "scumbag", "douchebag", "shithead", "fucker", "imbecile", "bitch",
    "wanker", "dipshit", "fool",
)
INSULT_ADJECTIVES = (
    "stupid", "dumb", "pathetic", "worthless", "useless", "ugly", "idiotic",
    "disgusting", "shitty", "crappy", "fucking", "damn", "moronic", "lousy",
)
INTENSIFIERS = ("fucking", "damn", "goddamn", "bloody", "shitty", "stupid", "crappy")
# The corpus's insult words, for the interpretability stage's word-list labels of a
# policy built on the embedded default (better-profanity's list lacks some of them).
OFFENSIVE_WORDS = INSULT_NOUNS + INSULT_ADJECTIVES + INTENSIFIERS
EXCLAMATIONS = (
    "What the fuck", "Holy shit", "Damn it", "Oh fuck", "Goddamn it", "Shit",
    "What the hell", "Fuck",
)
# "{n}" is an insult noun, "{a}" an insult adjective.
INSULT_SENTENCES = (
    "Shut up, {n}.", "Fuck off, {n}.", "You are a {a} {n}.", "You are such a {a} {n}.",
    "Go to hell, {n}.", "Screw you, {n}.", "This is {a} bullshit.", "I hate you, {n}.",
    "You suck, {n}.", "Piss off, {n}.", "What a {a} {n}.", "Nobody cares, {a} {n}.",
)
VOCATIVES = ("you {a} {n}", "you {n}", "{n}", "you {a} {a2} {n}")
_DETERMINERS = frozenset({"the", "a", "my", "your", "this", "that", "his", "her", "our"})
_QUESTION_WORDS = frozenset({
    "what", "who", "whom", "whose", "why", "where", "when", "how", "which", "do", "does",
    "did", "is", "are", "was", "were", "can", "could", "will", "would", "should", "have",
    "has", "may", "shall",
})
_EXCLUDED_FILES = frozenset({"coding.yml"})
_ASCII = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                        "\u2013": "-", "\u2014": "-", "\u2026": "..."})


@dataclasses.dataclass(frozen=True)
class CorpusSplits:
    """Texts of the embedded default pipeline.

    Attributes:
      train_texts: pretraining texts, one spliced conversation each, shuffled.
      heldout_texts: one spliced rendering of each held-out conversation.
      prompts: clean prefixes (2..6 words) of held-out turns absent from training.
      reference_outputs: one corpus continuation per prompt, leading space included.
      source_lines: the clean held-out turn each prompt was cut from.
    """

    train_texts: tuple[str, ...]
    heldout_texts: tuple[str, ...]
    prompts: tuple[str, ...]
    reference_outputs: tuple[str, ...]
    source_lines: tuple[str, ...]


def chatterbot_dir() -> pathlib.Path:
    """Folder of chatterbot-corpus's English YAML dialogs."""
    try:
        import chatterbot_corpus
    except ImportError as err:
        raise DataError(
            "the default corpus needs the chatterbot-corpus package: pip install "
            "chatterbot-corpus") from err
    folder = pathlib.Path(chatterbot_corpus.__file__).parent / "data" / "english"
    if not folder.is_dir():
        raise DataError(f"chatterbot-corpus has no English data folder at {folder}")
    return folder


def normalize_turn(turn: str) -> str:
    """One dialog turn as a clean sentence: ASCII quotes, capitalised, punctuated."""
    text = " ".join(str(turn).translate(_ASCII).split())
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?\"')":
        first = text.split()[0].lower().strip(",")
        text += "?" if first in _QUESTION_WORDS else "."
    return text


def load_conversations() -> tuple[tuple[str, ...], ...]:
    """Unique English chatterbot conversations, as tuples of normalised turns."""
    seen: dict[tuple[str, ...], None] = {}
    for path in sorted(chatterbot_dir().glob("*.yml")):
        if path.name in _EXCLUDED_FILES:
            continue
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        except yaml.YAMLError as err:
            raise DataError(f"cannot parse chatterbot file {path}: {err}") from err
        for conv in (data or {}).get("conversations", []) or []:
            turns = tuple(t for t in (normalize_turn(x) for x in conv) if t)
            if turns:
                seen.setdefault(turns, None)
    if not seen:
        raise DataError(f"no conversations found under {chatterbot_dir()}")
    return tuple(seen)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _insult(rng: np.random.Generator, template: str) -> str:
    return template.format(n=_pick(rng, INSULT_NOUNS), a=_pick(rng, INSULT_ADJECTIVES),
                           a2=_pick(rng, INSULT_ADJECTIVES))


def _splice(turn: str, rng: np.random.Generator, allow_prefix: bool = True) -> str:
    """``turn`` with one offensive edit (see the module docstring, step 3)."""
    kinds = ("vocative", "sentence", "intensifier") + (("prefix",) if allow_prefix else ())
    kind = _pick(rng, kinds)
    words = turn.split()
    if kind == "intensifier":
        spots = [i for i, w in enumerate(words[:-1]) if w.lower() in _DETERMINERS]
        if spots:
            i = spots[int(rng.integers(len(spots)))]
            return " ".join(words[: i + 1] + [_pick(rng, INTENSIFIERS)] + words[i + 1:])
        kind = "vocative"
    if kind == "prefix":
        return f"{_pick(rng, EXCLAMATIONS)}{_pick(rng, ('!', '?', ','))} {turn}"
    if kind == "sentence":
        return f"{turn} {_insult(rng, _pick(rng, INSULT_SENTENCES))}"
    body, end = (turn[:-1], turn[-1]) if turn[-1] in ".!?" else (turn, ".")
    return f"{body.rstrip(' ,')}, {_insult(rng, _pick(rng, VOCATIVES))}{end}"


def _render(turns: tuple[str, ...], rng: np.random.Generator, offensive_prob: float) -> str:
    out = []
    for turn in turns:
        if rng.random() < offensive_prob:
            turn = _splice(turn, rng, allow_prefix=True)
        out.append(turn)
    return " ".join(out)


def build_corpus(
    seed: int = 0,
    *,
    heldout_fraction: float = 0.3,
    offensive_prob: float = 0.25,
    n_variants: int = 12,
    reference_words: int = 20,
    max_prompt_words: int = 6,
) -> CorpusSplits:
    """Builds the default corpus; see the module docstring for the procedure.

    Args:
      seed: seeds the split, the splicing and the prompt cuts.
      heldout_fraction: share of conversations held out for prompts, in (0, 1).
      offensive_prob: probability that a turn receives an offensive edit, in [0, 1].
      n_variants: spliced renderings of each training conversation (>= 1).
      reference_words: maximum words of a reference output (>= 1).
      max_prompt_words: maximum words of a prompt (>= 2).
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise DataError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    if not 0.0 <= offensive_prob <= 1.0:
        raise DataError(f"offensive_prob must be in [0, 1], got {offensive_prob}")
    if n_variants < 1 or reference_words < 1 or max_prompt_words < 2:
        raise DataError(
            f"need n_variants >= 1, reference_words >= 1, max_prompt_words >= 2; got "
            f"{n_variants}, {reference_words}, {max_prompt_words}")
    rng = np.random.default_rng(seed)
    convs = load_conversations()
    order = rng.permutation(len(convs))
    n_held = max(1, int(round(heldout_fraction * len(convs))))
    held = [convs[i] for i in sorted(order[:n_held])]
    train = [convs[i] for i in sorted(order[n_held:])]

    train_texts = [_render(c, rng, offensive_prob) for c in train for _ in range(n_variants)]
    train_texts = [train_texts[i] for i in rng.permutation(len(train_texts))]
    heldout_texts = [_render(c, rng, offensive_prob) for c in held]

    train_turns = {t for c in train for t in c}
    prompts, references, sources, used, used_prompts = [], [], [], set(), set()
    for conv in held:
        for j, turn in enumerate(conv):
            words = turn.split()
            if len(words) < 4 or turn in train_turns or turn in used:
                continue
            used.add(turn)
            k = int(rng.integers(2, min(max_prompt_words, len(words) - 2) + 1))
            if " ".join(words[:k]) in used_prompts:
                continue  # a repeated prompt could land in both the train and test split
            used_prompts.add(" ".join(words[:k]))
            rest = " ".join(words[k:])
            if rng.random() < offensive_prob:
                rest = _splice(rest, rng, allow_prefix=False)
            later = _render(conv[j + 1:], rng, offensive_prob)
            cont = f"{rest} {later}".split()[:reference_words]
            prompts.append(" ".join(words[:k]))
            references.append(" " + " ".join(cont))
            sources.append(turn)
    # Shuffled so that any leading slice of the prompts mixes all categories.
    perm = rng.permutation(len(prompts))
    return CorpusSplits(
        train_texts=tuple(train_texts),
        heldout_texts=tuple(heldout_texts),
        prompts=tuple(prompts[i] for i in perm),
        reference_outputs=tuple(references[i] for i in perm),
        source_lines=tuple(sources[i] for i in perm),
    )


def write_prompts_jsonl(splits: CorpusSplits, path: str | pathlib.Path) -> pathlib.Path:
    """Writes one ``{"prompt", "original_output"}`` JSON object per line.

    ``original_output`` is the corpus's own continuation (``reference_outputs``), so
    the file loads through the same ``datasets`` JSON path as real prompt data.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for prompt, ref in zip(splits.prompts, splits.reference_outputs, strict=True):
            f.write(json.dumps({"prompt": prompt, "original_output": ref}) + "\n")
    return path
