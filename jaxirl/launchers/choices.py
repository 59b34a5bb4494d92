"""The enumerated settings of the launchers, and absl parsers for them.

One table, :data:`ENUMS`, names every setting whose value is one of a fixed set
(``"IRLLossConfig.name"`` → the loss names), taken from the library's own constants.
The short flags (``--loss``, ``--head``, ``--dtype``) are ``flags.DEFINE_enum`` of these
sets, and the dotted overrides (``--config.irl.loss.name``) parse with the same
parsers, so a bad value is absl's one-line ``--flag=value: value should be one of <...>``.

Two kinds of setting are an enumeration with an argument, which ``DEFINE_enum`` cannot
hold: scorer and reward specs (``profanity``, ``roberta[:PATH]``, ``learned:PATH``) and
the IRL threshold (a number, or ``median``/``match_rate``/``train_midpoint``).
:class:`SpecParser` and :class:`NumberOrNameParser` check them the same way and give
the same message; :func:`define_spec` and :func:`define_threshold` define their flags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from absl import flags

from jaxirl.data.prompts import SPLIT_METHODS
from jaxirl.interp.activations import TEXT_POOLINGS
from jaxirl.interp.probes import TARGET_TRANSFORMS
from jaxirl.irl.losses import LOSSES, TIE_RULES
from jaxirl.irl.reward_model import HEADS, POOLINGS, TRUNCATION_SIDES
from jaxirl.irl.train import THRESHOLDS
from jaxirl.models.gpt_neox import ATTENTION_IMPLS
from jaxirl.models.mixed_precision import DTYPES
from jaxirl.ppo.config import PRESETS as PPO_PRESETS
from jaxirl.ppo.config import REWARD_TEXTS, SCALE_REWARD_MODES
from jaxirl.rewards.scorer import SCORER_FACTORIES

DTYPE_NAMES = tuple(DTYPES)
LOSS_NAMES = tuple(sorted(LOSSES))
# The ground-truth scorers (``kind`` or ``kind:ARG``), and what a PPO reward may also be.
SCORER_KINDS = tuple(sorted(SCORER_FACTORIES))
REWARD_KINDS = (*SCORER_KINDS, "learned", "ensemble", "linear")
# Kinds whose argument (a folder) is required.
_NEEDS_ARGUMENT = ("learned", "ensemble", "linear")


class SpecParser(flags.EnumParser):
    """``kind`` or ``kind:ARG`` with ``kind`` from a fixed set (scorers, rewards)."""

    def __init__(self, kinds: Sequence[str]):
        super().__init__(list(kinds))

    def parse(self, argument):
        kind, _, arg = str(argument).strip().partition(":")
        if kind not in self.enum_values or (kind in _NEEDS_ARGUMENT and not arg.strip()):
            raise ValueError(f"value should be one of <{self.describe()}>")
        return str(argument).strip()

    def describe(self) -> str:
        return "|".join(f"{k}:PATH" if k in _NEEDS_ARGUMENT else f"{k}[:ARG]"
                        for k in self.enum_values)

    def flag_type(self):
        return "spec"


class NumberOrNameParser(flags.EnumParser):
    """A finite number, or one of a fixed set of names (the IRL threshold)."""

    def parse(self, argument):
        if isinstance(argument, (int, float)) and not isinstance(argument, bool):
            value = float(argument)
        elif argument in self.enum_values:
            return argument
        else:
            try:
                value = float(argument)
            except (TypeError, ValueError):
                raise ValueError(f"value should be a number or one of "
                                 f"<{'|'.join(self.enum_values)}>") from None
        if not math.isfinite(value):
            raise ValueError(f"value should be finite, got {argument}")
        return value

    def flag_type(self):
        return "number or name"


class OptionalParser(flags.ArgumentParser):
    """``none`` (any case) or a value of ``inner``."""

    def __init__(self, inner: flags.ArgumentParser):
        self.inner = inner

    def parse(self, argument):
        if argument is None or (isinstance(argument, str) and argument.strip().lower() == "none"):
            return None
        try:
            return self.inner.parse(argument)
        except ValueError as e:
            raise ValueError(f"{e} (or none)") from None

    def flag_type(self):
        return f"{self.inner.flag_type()} or none"


def enum(choices: Sequence) -> flags.ArgumentParser:
    """absl's enum parser; ``None`` among the choices makes it optional (``none``)."""
    names = [c for c in choices if c is not None]
    parser = flags.EnumParser(names)
    return OptionalParser(parser) if None in choices else parser


# "<dataclass>.<field>" -> the parser of its values. Used by --config.* overrides.
ENUMS: dict[str, flags.ArgumentParser] = {
    "IRLLossConfig.name": enum(LOSS_NAMES),
    "FailureConfig.tie_rule": enum(TIE_RULES),
    "IRLTrainConfig.threshold": NumberOrNameParser(list(THRESHOLDS)),
    "RewardModelConfig.head": enum(HEADS),
    "RewardModelConfig.pooling": enum(POOLINGS),
    "RewardModelConfig.truncation_side": enum(TRUNCATION_SIDES),
    "InterpConfig.pooling": enum(TEXT_POOLINGS),
    "InterpConfig.target_transform": enum(TARGET_TRANSFORMS),
    "PromptDataConfig.split_method": enum(SPLIT_METHODS),
    "PPOConfig.scale_reward": enum(SCALE_REWARD_MODES),
    "PPOConfig.reward_text": enum(REWARD_TEXTS),
    "BayesConfig.method": enum(("laplace", "vi")),
    "RLHFRunConfig.attention": enum(ATTENTION_IMPLS),
    "RLHFRunConfig.reward": SpecParser(REWARD_KINDS),
    "RLHFRunConfig.toxicity_scorer": SpecParser(SCORER_KINDS),
    "StudyConfig.ground_truth": SpecParser(SCORER_KINDS),
    "StudyConfig.split_method": enum(SPLIT_METHODS),
    "StudyConfig.ppo_preset": enum(sorted(PPO_PRESETS)),
    "DemoConfig.scorer": SpecParser(SCORER_KINDS),
}
for _owner in ("StudyConfig", "RLHFRunConfig", "IRLRunConfig"):
    ENUMS[f"{_owner}.dtype"] = enum(DTYPE_NAMES)
ENUMS["InterpRunConfig.scorer"] = SpecParser(SCORER_KINDS)


def define_spec(name: str, default: str | None, kinds: Sequence[str], help_string: str):
    """A flag holding a scorer or reward spec (``kind`` or ``kind:ARG``)."""
    return flags.DEFINE(SpecParser(kinds), name, default, help_string)


def define_threshold(name: str, default, help_string: str):
    """A flag holding a threshold: a number or one of :data:`~jaxirl.irl.train.THRESHOLDS`."""
    return flags.DEFINE(NumberOrNameParser(list(THRESHOLDS)), name, default, help_string)


__all__ = ["DTYPE_NAMES", "ENUMS", "LOSS_NAMES", "NumberOrNameParser", "OptionalParser",
           "REWARD_KINDS", "SCORER_KINDS", "SpecParser", "define_spec", "define_threshold",
           "enum"]
