"""Ground-truth toxicity rewards: scorers (profanity-check, RoBERTa in JAX) and the reward.

``make_scorer("profanity")`` / ``make_scorer("roberta:/path")`` build a
:class:`ToxicityScorer` (texts -> P(toxic) [N]); ``make_reward_fn(scorer)``
turns it into the paper's reward ``-tox(sample) + tox(reference)``.
"""

from jaxirl.rewards.profanity import ProfanityScorer
from jaxirl.rewards.reward_fn import ToxicityReward, make_reward_fn
from jaxirl.rewards.roberta_model import (
    RobertaConfig,
    RobertaForSequenceClassification,
    load_roberta,
    params_from_state_dict,
)
from jaxirl.rewards.roberta_scorer import RobertaToxicityScorer, toxic_label_index
from jaxirl.rewards.scorer import (
    DEFAULT_SCORER,
    SCORER_FACTORIES,
    ToxicityScorer,
    call_reward_fn,
    check_texts,
    checked_scores,
    make_scorer,
    register_scorer,
)

__all__ = [
    "DEFAULT_SCORER",
    "SCORER_FACTORIES",
    "ProfanityScorer",
    "RobertaConfig",
    "RobertaForSequenceClassification",
    "RobertaToxicityScorer",
    "ToxicityReward",
    "ToxicityScorer",
    "call_reward_fn",
    "check_texts",
    "checked_scores",
    "load_roberta",
    "make_reward_fn",
    "make_scorer",
    "params_from_state_dict",
    "register_scorer",
    "toxic_label_index",
]
