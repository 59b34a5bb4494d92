"""Pairwise IRL losses on rewards of expert (RLHF policy) and base-policy texts.

Every loss scores ``B`` pairs: ``r_expert[i]`` is the learned reward of the
i-th expert text and ``r_base[i]`` that of the paired base-policy text (same
prompt), both float [B] in reward units. With d_i = r_expert[i] − r_base[i],
each pairwise loss is a non-increasing function of d_i: training pushes the
expert above the base policy. ``discriminator`` instead classifies single
texts (expert vs base), so it is non-increasing in r_expert[i] and
non-decreasing in r_base[i] but ignores which base text is paired with which
expert text. The loss is a (weighted) mean over pairs.

Optional ``weights`` [B] (≥ 0; a 0/1 mask for padded batches) weight each
pair; pairs of weight 0 never affect the value or gradient, even when their
rewards are NaN or inf (``jnp.where``, not multiplication). All-zero weights
give 0.

The reference's max-margin loss is unbounded below (it rewards ever larger
gaps), so the reward scale drifts without limit; ``reward_l2`` adds
λ · mean(r_expert² + r_base²), which makes the minimiser over the scale finite.

``maxent`` is Bradley–Terry with a temperature (the FA-IRL lab's MaxEnt IRL);
``fa_max_margin``, ``fa_maxent`` and ``fa_focal`` are failure-aware versions
(FA-IRL, arXiv 2510.06092, reconstructed [R]): the base loss plus λ times a term
on the pairs the current reward misorders or nearly ties.

All functions are pure and jittable (``name`` is a static Python string);
non-finite inputs cannot raise inside ``jit`` — :mod:`jaxirl.irl.evaluate`
checks rewards on the host.

Reference: ai4ai-lab/irl_for_llms ``src/irl_utilities.py`` ``get_irl_loss``.
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Callable, Mapping

import chex
import jax
import jax.numpy as jnp

from jaxirl.errors import ConfigError, RewardError

LossFn = Callable[..., chex.Array]


def _check_pair(r_expert: chex.Array, r_base: chex.Array, weights: chex.Array | None) -> None:
    # Shapes are static, so these checks also run (once) under jit.
    if jnp.ndim(r_expert) != 1:
        raise RewardError(f"r_expert must have shape [B], got {jnp.shape(r_expert)}")
    if jnp.shape(r_base) != jnp.shape(r_expert):
        raise RewardError(
            f"r_base has shape {jnp.shape(r_base)} but r_expert has {jnp.shape(r_expert)}"
        )
    if weights is not None and jnp.shape(weights) != jnp.shape(r_expert):
        raise RewardError(
            f"weights has shape {jnp.shape(weights)} but r_expert has {jnp.shape(r_expert)}"
        )


def _float(x: chex.Array) -> chex.Array:
    x = jnp.asarray(x)
    # bf16 rewards are upcast: the mean over pairs is taken in at least float32.
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _prepare(r_expert, r_base, weights):
    """Checked float rewards with weight-0 entries zeroed, and float weights (or None)."""
    _check_pair(r_expert, r_base, weights)
    r_expert, r_base = _float(r_expert), _float(r_base)
    if weights is None:
        return r_expert, r_base, None
    weights = _float(weights)
    keep = weights > 0
    # Zeroing before the loss keeps NaN in padded pairs out of the gradient too.
    return (
        jnp.where(keep, r_expert, 0.0),
        jnp.where(keep, r_base, 0.0),
        jnp.where(keep, weights, 0.0),
    )


def weighted_mean(x: chex.Array, weights: chex.Array | None = None) -> chex.Array:
    """Σ_i w_i x_i / Σ_i w_i over [B] (plain mean without weights; 0 if Σ w = 0)."""
    if weights is None:
        return jnp.mean(x)
    total = jnp.sum(weights)
    return jnp.sum(jnp.where(weights > 0, weights * x, 0.0)) / jnp.where(total > 0, total, 1.0)


def max_margin(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 0.0,
    weights: chex.Array | None = None,
) -> chex.Array:
    """The reference's asymmetric max-margin loss.

    With d_i = r_expert[i] − r_base[i] − margin:
      ℓ(d) = −d   if d > 0   (a correctly ordered pair: reward the gap, slope −1)
      ℓ(d) = −2d  if d < 0   (a wrongly ordered pair: penalise twice as hard)
      ℓ(0) = 0,
    and the loss is the (weighted) mean of ℓ over pairs. ``margin = 0``
    reproduces ``get_irl_loss("max_margin")`` exactly, including its gradient
    at d = 0 (+1: neither of its in-place masks touches a zero, so the entry
    stays the identity). The reference returns the unreduced vector; its
    training batch holds one element (so sum = mean) and it logs the mean.

    Unbounded below: scaling all rewards by s > 1 lowers the loss whenever the
    mean is negative. Add ``reward_l2`` (see :func:`irl_loss`) to bound it.

    Args:
      r_expert: [B] learned rewards of the expert texts.
      r_base: [B] learned rewards of the paired base-policy texts.
      margin: gap below which a pair counts as wrongly ordered (reference: 0).
      weights: optional [B] pair weights (0/1 mask for padding).

    Returns:
      Scalar loss, float32 (or float64 for float64 inputs).
    """
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    d = r_expert - r_base - margin
    per_pair = jnp.where(d > 0, -d, jnp.where(d < 0, -2.0 * d, d))
    return weighted_mean(per_pair, weights)


def hinge(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 1.0,
    weights: chex.Array | None = None,
) -> chex.Array:
    """Hinge loss mean_i max(0, margin − d_i), d_i = r_expert[i] − r_base[i].

    As the reference's ``"hinge"`` (margin 1). Zero once every gap exceeds the
    margin, so it is bounded below by 0 and scale-limited by the margin.
    Args and return as :func:`max_margin`.
    """
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    return weighted_mean(jax.nn.relu(margin - (r_expert - r_base)), weights)


def squared(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 1.0,
    weights: chex.Array | None = None,
) -> chex.Array:
    """Squared hinge mean_i max(0, margin − d_i)², d_i = r_expert[i] − r_base[i].

    Deliberately not the reference's ``"squared"``, mean_i d_i², which is
    minimised at d = 0 and so pulls expert and base rewards together instead
    of ranking them. The squared hinge is smooth at the margin, non-increasing
    in d and zero for d ≥ margin. Args and return as :func:`max_margin`.
    """
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    return weighted_mean(jnp.square(jax.nn.relu(margin - (r_expert - r_base))), weights)


def logistic(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 0.0,
    weights: chex.Array | None = None,
) -> chex.Array:
    """Bradley–Terry negative log-likelihood mean_i −log σ(d_i − margin).

    d_i = r_expert[i] − r_base[i]; σ is the logistic function, so this is the
    cross-entropy of "expert preferred" under P = σ(d). Computed as
    −log_sigmoid (stable for large |d|, unlike the reference's
    −log(sigmoid(d)), which gives inf below d ≈ −104 in float32). d = 0 gives
    log 2. Args and return as :func:`max_margin`.
    """
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    return weighted_mean(-jax.nn.log_sigmoid(r_expert - r_base - margin), weights)


def discriminator(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 0.0,
    weights: chex.Array | None = None,
) -> chex.Array:
    """Expert-vs-base text classifier whose logit is the reward (the AIRL discriminator).

    Each text is one labelled sample, expert (1) or base policy (0), and the
    reward r is the classifier's logit, P(expert | x) = σ(r(x)):
      ℓ_i = ½ [softplus(margin − r_expert[i]) + softplus(margin + r_base[i])]
          = −½ [log σ(r_expert[i] − margin) + log σ(−r_base[i] − margin)],
    and the loss is the (weighted) mean of ℓ_i over pairs; r = 0 gives log 2.

    Why it is IRL: with equal numbers of expert and base texts, the pointwise
    minimiser of E_E[softplus(−r)] + E_B[softplus(r)] (margin 0) solves
    π_E(x) σ(−r) = π_B(x) σ(r), i.e. r*(x) = log π_E(x) / π_B(x), the log
    density ratio of the two policies. An expert that is the KL-regularised
    RLHF optimum, π_E ∝ π_B exp(R / β), gives r* = R / β − log Z: the true
    reward up to scale and offset (Fu et al. 2018, AIRL; Goodfellow et al.
    2014). The pairwise ``logistic`` loss estimates the same ratio through
    differences; here each text's loss saturates on its own once it is
    classified confidently, and the pairing is not used at all (permuting the
    base texts of a batch leaves the loss unchanged), so the reward is not
    pushed to separate look-alike clean texts of one prompt. On the embedded
    default it keeps held-out Pearson stable over epochs where max-margin's
    falls (BUILD_NOTES.md).

    ``margin`` > 0 asks expert logits to exceed +margin and base logits to stay
    below −margin. Non-increasing in r_expert, non-decreasing in r_base.
    Args and return as :func:`max_margin`.
    """
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    per_pair = 0.5 * (jax.nn.softplus(margin - r_expert) + jax.nn.softplus(margin + r_base))
    return weighted_mean(per_pair, weights)


def maxent(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 0.0,
    weights: chex.Array | None = None,
    temperature: float = 0.1,
) -> chex.Array:
    """The lab's "Maximum Entropy IRL": mean_i −log σ((d_i − margin) / τ).

    Bradley–Terry with a temperature (ajagota7/irl_llms ``src/irl_utilities.py``,
    τ = 0.1 by default). ``temperature = 1`` is :func:`logistic`; a smaller τ
    rescales the gaps, which changes the optimisation (Adam's step is in reward
    units) although not the family of optima. Args as :func:`max_margin`.
    """
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    return weighted_mean(-jax.nn.log_sigmoid((r_expert - r_base - margin) / temperature), weights)


# ------------------------------------------------------------------ failure-aware IRL [R]
# FA-IRL (Patel et al., arXiv 2510.06092) as reconstructed in shared/research/beyond-paper.md
# §1.3: failures are pairs the current reward misorders or nearly ties, flagged under
# stop_gradient (refreshed once per epoch by jaxirl.irl.train) and passed in as
# ``failures`` [B] (0/1, or any weight ≥ 0). Every FA loss is its base loss PLUS λ times a
# term that only failure pairs enter, so λ = 0 (or no failures) is the base loss exactly and
# the gradients of non-failure pairs are those of the base loss.


def failure_flags(r_expert: chex.Array, r_base: chex.Array, tie: chex.Array | float
                  ) -> dict[str, chex.Array]:
    """Failure pairs of the current reward, without gradient; all outputs float [B] (0/1).

    ``misclassified``: d_i < 0; ``near_tie``: |d_i| ≤ ``tie`` (δ, in reward units);
    ``failures``: either. d_i = r_expert[i] − r_base[i].
    """
    d = jax.lax.stop_gradient(_float(r_expert) - _float(r_base))
    wrong, tied = d < 0, jnp.abs(d) <= tie
    return {"failures": (wrong | tied).astype(d.dtype), "misclassified": wrong.astype(d.dtype),
            "near_tie": tied.astype(d.dtype)}


def tie_threshold(margins: chex.Array, *, rule: str = "median", scale: float = 0.25,
                  margin: float = 1.0) -> chex.Array:
    """Scale-aware near-tie threshold δ of margins [P] (a learned reward has no fixed scale).

    ``"median"``: δ = scale · median_j |d_j|; ``"margin"``: δ = the hinge margin γ.
    """
    if rule == "margin":
        return jnp.asarray(margin, jnp.float32)
    return scale * jnp.median(jnp.abs(jax.lax.stop_gradient(_float(margins))))


def _failure_term(per_pair: chex.Array, failures: chex.Array | None,
                  weights: chex.Array | None, reduce: str) -> chex.Array:
    """Σ_F w f ℓ over the failure pairs, divided by Σ w f (``"failures"``) or Σ w (``"pairs"``)."""
    f = jax.lax.stop_gradient(_float(failures))
    w = jnp.ones_like(f) if weights is None else weights
    fw = jnp.where(w > 0, f * w, 0.0)
    total = jnp.sum(fw) if reduce == "failures" else jnp.sum(w)
    return jnp.sum(jnp.where(fw > 0, fw * per_pair, 0.0)) / jnp.where(total > 0, total, 1.0)


def fa_max_margin(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 1.0,
    weights: chex.Array | None = None,
    failures: chex.Array | None = None,
    failure_weight: float = 1.0,
    failure_margin: float = 2.0,
) -> chex.Array:
    """FA max-margin: hinge(γ) + λ · mean over failures of max(0, γ_F − d_i), γ_F > γ.

    "Tighter margin constraints" on failures: the feasible set {d_i ≥ γ ∀i,
    d_i ≥ γ_F ∀i ∈ F} is strictly inside {d_i ≥ γ ∀i} once a γ_F constraint
    binds. A failure whose gap passes γ_F stops contributing (both hinges are
    0 there). Args as :func:`hinge`, plus ``failures`` [B] (no gradient),
    ``failure_weight`` λ and ``failure_margin`` γ_F.
    """
    base = hinge(r_expert, r_base, margin=margin, weights=weights)
    if failures is None or (isinstance(failure_weight, (int, float)) and failure_weight == 0):
        return base
    _check_pair(r_expert, r_base, failures)
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    extra = jax.nn.relu(failure_margin - (r_expert - r_base))
    return base + failure_weight * _failure_term(extra, failures, weights, "failures")


def fa_maxent(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 0.0,
    weights: chex.Array | None = None,
    failures: chex.Array | None = None,
    failure_weight: float = 1.0,
    temperature: float = 0.1,
    failure_temperature: float = 0.05,
) -> chex.Array:
    """FA MaxEnt: (1/N) Σ_i [−log σ(d_i/τ)] + λ · (1/N) Σ_{i∈F} [−log σ(d_i/τ_F)].

    "Up-weighting and sharpening failure samples": pair weights w_i = 1 + λ f_i,
    the added weight on a sharper temperature τ_F < τ (τ_F = τ is plain
    up-weighting). Both sums are over all N pairs, so the gradients of
    non-failure pairs are :func:`maxent`'s. Args as :func:`maxent`, plus
    ``failures``, ``failure_weight`` λ and ``failure_temperature`` τ_F.
    """
    base = maxent(r_expert, r_base, margin=margin, weights=weights, temperature=temperature)
    if failures is None or (isinstance(failure_weight, (int, float)) and failure_weight == 0):
        return base
    _check_pair(r_expert, r_base, failures)
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    extra = -jax.nn.log_sigmoid((r_expert - r_base - margin) / failure_temperature)
    return base + failure_weight * _failure_term(extra, failures, weights, "pairs")


def fa_focal(
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float = 0.0,
    weights: chex.Array | None = None,
    failure_weight: float = 1.0,
    temperature: float = 0.1,
    focal: float = 2.0,
) -> chex.Array:
    """Continuous FA MaxEnt: pair weights 1 + λ·(1 − σ(d_i/τ))^β (no threshold, no flags).

    The focal-style soft failure indicator (1 − σ(d/τ))^β is near 1 on
    misordered pairs, 0.5^β at a tie and near 0 on confident ones; it is
    computed from the current batch under stop_gradient. The loss is
    :func:`maxent` plus λ · (1/N) Σ_i (1 − σ(d_i/τ))^β · (−log σ(d_i/τ)).
    """
    base = maxent(r_expert, r_base, margin=margin, weights=weights, temperature=temperature)
    if isinstance(failure_weight, (int, float)) and failure_weight == 0:
        return base
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    z = (r_expert - r_base - margin) / temperature
    soft = jax.lax.stop_gradient(jnp.power(1.0 - jax.nn.sigmoid(z), focal))
    return base + failure_weight * _failure_term(-jax.nn.log_sigmoid(z), soft, weights, "pairs")


LOSSES: Mapping[str, LossFn] = types.MappingProxyType(
    {"max_margin": max_margin, "hinge": hinge, "squared": squared, "logistic": logistic,
     "discriminator": discriminator, "maxent": maxent, "fa_max_margin": fa_max_margin,
     "fa_maxent": fa_maxent, "fa_focal": fa_focal}
)
"""Loss name → function, each ``fn(r_expert, r_base, *, margin, weights) -> scalar``."""

DEFAULT_MARGINS: Mapping[str, float] = types.MappingProxyType(
    {"max_margin": 0.0, "hinge": 1.0, "squared": 1.0, "logistic": 0.0, "discriminator": 0.0,
     "maxent": 0.0, "fa_max_margin": 1.0, "fa_maxent": 0.0, "fa_focal": 0.0}
)
"""Margin each loss uses when none is given (max_margin 0 and hinge 1 as the reference)."""


def get_loss(name: str) -> LossFn:
    """The loss function registered as ``name``; ConfigError naming it if unknown."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown IRL loss {name!r}; choose one of {', '.join(sorted(LOSSES))}"
        ) from None


def reward_l2_penalty(
    r_expert: chex.Array, r_base: chex.Array, weights: chex.Array | None = None
) -> chex.Array:
    """Reward-scale penalty mean_i (r_expert[i]² + r_base[i]²), [B] → scalar."""
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    return weighted_mean(jnp.square(r_expert) + jnp.square(r_base), weights)


TIE_RULES = ("median", "margin")
FLAGGED_LOSSES = frozenset({"fa_max_margin", "fa_maxent"})
"""Losses that take per-pair failure flags (the trainer refreshes them every epoch)."""


@dataclasses.dataclass(frozen=True)
class FailureConfig:
    """Settings of the failure-aware losses (``fa_*``); ignored by the others.

    Attributes:
      weight: λ ≥ 0, the weight of the failure term (0 = the base loss).
      margin: γ_F of ``fa_max_margin``, above the hinge margin γ.
      temperature: τ_F of ``fa_maxent`` (sharper than τ: smaller).
      tie_rule: near-tie threshold δ: ``"median"`` (scale · median |d| over the
        training pairs) or ``"margin"`` (the hinge margin γ).
      tie_scale: κ of the ``"median"`` rule.
      focal: β of ``fa_focal``'s soft weights (1 − σ(d/τ))^β.
    """

    weight: float = 1.0
    margin: float = 2.0
    temperature: float = 0.05
    tie_rule: str = "median"
    tie_scale: float = 0.25
    focal: float = 2.0

    def __post_init__(self):
        if self.tie_rule not in TIE_RULES:
            raise ConfigError(f"failure field 'tie_rule' must be one of {', '.join(TIE_RULES)}, "
                              f"got {self.tie_rule!r}")
        for field in ("weight", "tie_scale", "focal"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"failure field '{field}' must be finite and ≥ 0, got {value}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"failure field 'temperature' must be > 0, got {self.temperature}")
        if not math.isfinite(self.margin):
            raise ConfigError(f"failure field 'margin' must be finite, got {self.margin}")


def _loss_options(name: str, temperature: float, failure: FailureConfig,
                  failures: chex.Array | None) -> dict:
    """The keyword arguments beyond (margin, weights) that LOSSES[name] takes."""
    options: dict = {}
    if name in ("maxent", "fa_maxent", "fa_focal"):
        options["temperature"] = temperature
    if name.startswith("fa_"):
        options["failure_weight"] = failure.weight
    if name in FLAGGED_LOSSES:
        options["failures"] = failures
    if name == "fa_max_margin":
        options["failure_margin"] = failure.margin
    elif name == "fa_maxent":
        options["failure_temperature"] = failure.temperature
    elif name == "fa_focal":
        options["focal"] = failure.focal
    return options


def irl_loss(
    name: str,
    r_expert: chex.Array,
    r_base: chex.Array,
    *,
    margin: float | None = None,
    reward_l2: float = 0.0,
    weights: chex.Array | None = None,
    failures: chex.Array | None = None,
    temperature: float = 0.1,
    failure: FailureConfig = FailureConfig(),
) -> chex.Array:
    """LOSSES[name](d) + reward_l2 · mean(r_expert² + r_base²).

    For max-margin with every pair correctly ordered and rewards scaled by
    s > 0, the loss is −s·a + λ s² b (a = mean gap, b = mean squared reward),
    minimised at the finite s* = a / (2 λ b) instead of s → ∞.

    Args:
      name: a key of :data:`LOSSES` (static under jit).
      r_expert: [B] learned rewards of expert texts.
      r_base: [B] learned rewards of the paired base texts.
      margin: None uses :data:`DEFAULT_MARGINS` [name].
      reward_l2: λ ≥ 0, in 1 / reward².
      weights: optional [B] pair weights (0/1 mask for padding).
      failures: [B] failure flags of the ``fa_*`` losses (None: no failures).
      temperature: τ of ``maxent`` and the ``fa_*`` MaxEnt losses.
      failure: λ, γ_F, τ_F and β of the ``fa_*`` losses.

    Returns:
      Scalar loss.
    """
    fn = get_loss(name)
    if margin is None:
        margin = DEFAULT_MARGINS[name]
    loss = fn(r_expert, r_base, margin=margin, weights=weights,
              **_loss_options(name, temperature, failure, failures))
    # A Python 0 skips the penalty; an array λ (e.g. traced) is always applied.
    if not (isinstance(reward_l2, (int, float)) and reward_l2 == 0):
        loss = loss + reward_l2 * reward_l2_penalty(r_expert, r_base, weights)
    return loss


def pair_stats(
    r_expert: chex.Array, r_base: chex.Array, weights: chex.Array | None = None
) -> dict[str, chex.Array]:
    """Jittable batch diagnostics for logging (no gradient).

    Returns scalars: ``pair_accuracy`` (share of pairs with r_expert > r_base),
    ``mean_gap`` (mean d), ``reward_rms`` (sqrt of mean(r_expert² + r_base²)/2,
    to watch the scale drift of unbounded losses).
    """
    r_expert, r_base, weights = _prepare(r_expert, r_base, weights)
    r_expert, r_base = jax.lax.stop_gradient(r_expert), jax.lax.stop_gradient(r_base)
    d = r_expert - r_base
    return {
        "pair_accuracy": weighted_mean((d > 0).astype(d.dtype), weights),
        "mean_gap": weighted_mean(d, weights),
        "reward_rms": jnp.sqrt(0.5 * weighted_mean(r_expert**2 + r_base**2, weights)),
    }


@dataclasses.dataclass(frozen=True)
class IRLLossConfig:
    """Which IRL loss to train with.

    Attributes:
      name: a key of :data:`LOSSES` (reference: ``"max_margin"``).
      margin: None uses the loss's default (:data:`DEFAULT_MARGINS`).
      reward_l2: λ of the reward-scale penalty λ · mean(r_expert² + r_base²);
        0 is the reference (unbounded max-margin).
      temperature: τ of ``maxent`` and the ``fa_*`` MaxEnt losses (the lab's 0.1).
      failure: settings of the failure-aware ``fa_*`` losses.
    """

    name: str = "max_margin"
    margin: float | None = None
    reward_l2: float = 0.0
    temperature: float = 0.1
    failure: FailureConfig = FailureConfig()

    def __post_init__(self):
        get_loss(self.name)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"IRLLossConfig.temperature must be > 0, got {self.temperature}")
        if self.name == "fa_max_margin" and self.failure.margin <= self.effective_margin:
            raise ConfigError(f"fa_max_margin needs failure margin γ_F ({self.failure.margin}) "
                              f"above the margin γ ({self.effective_margin})")
        if self.margin is not None and not math.isfinite(self.margin):
            raise ConfigError(f"IRLLossConfig.margin must be finite, got {self.margin}")
        if self.name in FLAGGED_LOSSES and self.failure.tie_rule == "margin" \
                and self.effective_margin <= 0:
            # δ = γ = 0 would flag no near-tie at all, silently.
            raise ConfigError(f"failure tie_rule 'margin' needs a margin γ > 0, but {self.name}'s "
                              f"is {self.effective_margin}; use tie_rule 'median' or set margin")
        if not (math.isfinite(self.reward_l2) and self.reward_l2 >= 0):
            raise ConfigError(
                f"IRLLossConfig.reward_l2 must be finite and ≥ 0, got {self.reward_l2}"
            )

    @property
    def effective_margin(self) -> float:
        """The margin actually used (the loss's default when ``margin`` is None)."""
        return DEFAULT_MARGINS[self.name] if self.margin is None else float(self.margin)

    @property
    def uses_failure_flags(self) -> bool:
        """Whether the trainer must flag failure pairs for this loss (every epoch)."""
        return self.name in FLAGGED_LOSSES

    def __call__(
        self, r_expert: chex.Array, r_base: chex.Array, weights: chex.Array | None = None,
        failures: chex.Array | None = None,
    ) -> chex.Array:
        """:func:`irl_loss` with this config; [B], [B] (, failures [B]) → scalar."""
        return irl_loss(
            self.name,
            r_expert,
            r_base,
            margin=self.effective_margin,
            reward_l2=self.reward_l2,
            weights=weights,
            failures=failures,
            temperature=self.temperature,
            failure=self.failure,
        )
