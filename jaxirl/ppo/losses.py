"""PPO losses and masked statistics for token-level RLHF, following trlx.

Shapes: ``B`` sequences, ``T`` response tokens. ``mask`` is 0/1 (bool or
numeric) and marks the tokens that count; masked-out positions never affect a
result, even when they hold NaN or inf (``jnp.where``, not multiplication).
Every function works on any leading batch shape (time is not special here), is
pure, and can be jitted and vmapped.

Reference: ``trlx/models/modeling_ppo.py`` (``PPOConfig.loss``) and
``trlx/utils/modeling.py`` (``whiten``).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import chex
import jax
import jax.numpy as jnp

from jaxirl.errors import ConfigError

KLMode = Literal["k1", "k2", "k3", "trlx_k3"]


def _count(mask: chex.Array, axis=None) -> chex.Array:
    return jnp.sum((mask > 0).astype(jnp.float32), axis=axis)


def masked_sum(x: chex.Array, mask: chex.Array, axis=None) -> chex.Array:
    """sum_i x_i over positions with mask_i = 1; ``x`` and ``mask`` share a shape."""
    chex.assert_equal_shape([x, mask])
    return jnp.sum(jnp.where(mask > 0, x, 0), axis=axis)


def masked_mean(x: chex.Array, mask: chex.Array, axis=None) -> chex.Array:
    """Mean of ``x`` over positions with mask = 1: sum(x·m) / sum(m).

    Args:
      x: [B, T] (any shape) values.
      mask: same shape as ``x``, 0/1.
      axis: reduce over these axes (None: all), as in ``jnp.sum``.

    Returns:
      The masked mean, float32 or x's float dtype. An all-zero mask gives 0
      instead of trlx's NaN (0/0), so that an empty minibatch cannot poison
      the parameters.
    """
    n = _count(mask, axis)
    return masked_sum(x, mask, axis) / jnp.maximum(n, 1.0)


def masked_var(x: chex.Array, mask: chex.Array, unbiased: bool = True) -> chex.Array:
    """Variance of the masked entries of ``x`` (all axes), with Bessel's correction.

    ``unbiased=True`` divides by (n − 1) like ``torch.var_mean`` (trlx's
    whiten); n = 1 divides by 1 instead of 0.
    """
    n = _count(mask)
    mean = masked_mean(x, mask)
    sq = masked_sum(jnp.square(x - mean), mask)
    denom = jnp.maximum(n - 1.0, 1.0) if unbiased else jnp.maximum(n, 1.0)
    return sq / denom


def masked_whiten(
    x: chex.Array, mask: chex.Array, shift_mean: bool = True, eps: float = 1e-8
) -> chex.Array:
    """trlx ``whiten``: (x − μ) / sqrt(σ² + 1e-8) over the masked entries.

    μ is the masked mean and σ² the masked variance with Bessel's correction
    (trlx calls ``torch.var_mean(xs)``, whose default is unbiased). With
    ``shift_mean=False`` μ is added back (rescale only). trlx whitens the whole
    zero-padded [B, T] tensor with no mask, so ``mask=jnp.ones_like(x)``
    reproduces it exactly; a real mask keeps padding out of μ and σ².

    Args:
      x: [B, T] values (e.g. GAE advantages).
      mask: [B, T] 0/1.
      shift_mean: False keeps the mean of x.
      eps: added to σ² before the square root (trlx: 1e-8).

    Returns:
      [B, T] whitened values; masked-out positions are 0.
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask, unbiased=True)
    whitened = (x - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return jnp.where(mask > 0, whitened, 0)


def clipped_policy_loss(
    logprobs: chex.Array,
    old_logprobs: chex.Array,
    advantages: chex.Array,
    mask: chex.Array,
    cliprange: float | chex.Array,
) -> tuple[chex.Array, dict[str, chex.Array]]:
    """PPO clipped surrogate (Schulman et al. 2017), as in trlx.

    With ρ_t = exp(logπ_t − logπ_old,t) and advantages A_t:
      L = mean_m[ max(−A_t ρ_t, −A_t clip(ρ_t, 1 − ε, 1 + ε)) ].

    Args:
      logprobs: [B, T] log π(a_t | s_t) of the sampled tokens, current policy.
      old_logprobs: [B, T] the same under the rollout policy.
      advantages: [B, T] (usually whitened); treated as constants.
      mask: [B, T] 0/1 tokens that count.
      cliprange: ε.

    Returns:
      (loss, metrics): scalar loss; metrics holds ``approx_kl`` (masked mean
      of k3 = (ρ − 1) − log ρ, an estimate of KL(π_old ‖ π)), ``clipfrac``
      (fraction of tokens where the clipped term is the larger one) and
      ``ratio`` (masked mean ρ). trlx averages ``approx_kl`` over all B·T
      entries, padding included; this averages over masked tokens only.
    """
    chex.assert_equal_shape([logprobs, old_logprobs, advantages, mask])
    advantages = jax.lax.stop_gradient(advantages)
    old_logprobs = jax.lax.stop_gradient(old_logprobs)
    log_ratio = jnp.where(mask > 0, logprobs - old_logprobs, 0.0)
    ratio = jnp.exp(log_ratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * jnp.clip(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(jnp.maximum(pg_loss1, pg_loss2), mask)
    metrics = {
        "approx_kl": jax.lax.stop_gradient(masked_mean((ratio - 1.0) - log_ratio, mask)),
        "clipfrac": masked_mean((pg_loss2 > pg_loss1).astype(jnp.float32), mask),
        "ratio": jax.lax.stop_gradient(masked_mean(ratio, mask)),
    }
    return loss, metrics


def clipped_value_loss(
    values: chex.Array,
    old_values: chex.Array,
    returns: chex.Array,
    mask: chex.Array,
    cliprange_value: float | chex.Array,
) -> tuple[chex.Array, dict[str, chex.Array]]:
    """Clipped value loss, as in trlx (and OpenAI baselines ppo2).

    With V^clip_t = clip(V_t, V_old,t − ε_v, V_old,t + ε_v):
      L_V = ½ · mean_m[ max((V_t − R_t)², (V^clip_t − R_t)²) ].

    Args:
      values: [B, T] current value predictions.
      old_values: [B, T] value predictions at rollout time; constants.
      returns: [B, T] GAE returns (advantages + old values); constants.
      mask: [B, T] 0/1.
      cliprange_value: ε_v, in reward units.

    Returns:
      (loss, metrics) with ``vf_clipfrac``: fraction of tokens where the
      clipped squared error is the larger one.
    """
    chex.assert_equal_shape([values, old_values, returns, mask])
    old_values = jax.lax.stop_gradient(old_values)
    returns = jax.lax.stop_gradient(returns)
    values_clipped = jnp.clip(values, old_values - cliprange_value, old_values + cliprange_value)
    vf_loss1 = jnp.square(values - returns)
    vf_loss2 = jnp.square(values_clipped - returns)
    loss = 0.5 * masked_mean(jnp.maximum(vf_loss1, vf_loss2), mask)
    metrics = {"vf_clipfrac": masked_mean((vf_loss2 > vf_loss1).astype(jnp.float32), mask)}
    return loss, metrics


def token_entropy(logits: chex.Array) -> chex.Array:
    """Entropy H(π(· | s_t)) = −Σ_v p_v log p_v in nats, [B, T, V] → [B, T] float32.

    Logits are cast to float32 first: bfloat16 keeps about 3 significant
    digits and would also accumulate the 50k-term vocabulary sums in bf16; on
    random 50k-vocab logits a bf16 entropy is off by up to ~0.05 nats. Tokens
    with p = 0 (logit −inf, e.g. after top-k filtering) contribute 0, not NaN.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    p = jnp.exp(logp)
    # The inner where keeps −inf out of the product so its gradient stays finite.
    safe_logp = jnp.where(p > 0, logp, 0.0)
    return -jnp.sum(p * safe_logp, axis=-1)


def entropy_from_logits(logits: chex.Array, mask: chex.Array) -> chex.Array:
    """Masked mean per-token policy entropy in nats.

    Args:
      logits: [B, T, V] next-token logits at the response positions (any float dtype).
      mask: [B, T] 0/1.

    Returns:
      Scalar float32: mean over masked tokens of −Σ_v p_v log p_v.
    """
    chex.assert_rank(logits, mask.ndim + 1)
    return masked_mean(token_entropy(logits), mask)


def kl_penalty_per_token(
    logprobs: chex.Array, ref_logprobs: chex.Array, mode: KLMode = "k1"
) -> chex.Array:
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π, [B, T] → [B, T].

    With log r = logπ(a_t) − logπ_ref(a_t) (see http://joschu.net/blog/kl-approx.html):
      - ``"k1"``: log r. trlx's reward penalty (``kl_ctl.value * -log_ratio``).
        Unbiased, but a single token can be negative.
      - ``"k2"``: ½ (log r)². Non-negative, biased, low variance.
      - ``"k3"``: (1/r − 1) + log r = exp(−log r) − 1 + log r. Schulman's k3:
        unbiased for KL(π ‖ π_ref) under samples from π, and non-negative.
      - ``"trlx_k3"``: (r − 1) − log r. What trlx's ``make_experience`` logs as
        ``policy/sqrt_kl``² and feeds to the adaptive KL controller. It is k3
        with the ratio inverted: ≥ 0 and equal to KL to second order in log r,
        but its expectation under π is χ²(π ‖ π_ref) − KL(π ‖ π_ref).

    Masking is the caller's job (see :func:`mean_sequence_kl`).
    """
    chex.assert_equal_shape([logprobs, ref_logprobs])
    log_r = logprobs - ref_logprobs
    if mode == "k1":
        return log_r
    if mode == "k2":
        return 0.5 * jnp.square(log_r)
    if mode == "k3":
        return jnp.expm1(-log_r) + log_r
    if mode == "trlx_k3":
        return jnp.expm1(log_r) - log_r
    raise ConfigError(f"kl mode must be one of 'k1', 'k2', 'k3', 'trlx_k3', got {mode!r}")


def mean_sequence_kl(
    logprobs: chex.Array,
    ref_logprobs: chex.Array,
    mask: chex.Array,
    mode: KLMode = "trlx_k3",
) -> chex.Array:
    """Batch mean of per-sequence summed KL: mean_b Σ_t m_bt · kl_bt, in nats.

    With the default ``"trlx_k3"`` and a response mask this is trlx's rollout
    ``mean_kl`` (the ``current`` value its ``AdaptiveKLController.update``
    receives) restricted to the response: trlx also sums the prompt's positions, and
    for a rollout collected in several chunks it squares the chunks' mean √KL, which
    is at most this mean (see BUILD_NOTES.md, "KL controller").

    Args:
      logprobs, ref_logprobs: [B, T] log-probabilities of the sampled tokens.
      mask: [B, T] 0/1 response tokens.
      mode: estimator, see :func:`kl_penalty_per_token`.
    """
    kl = kl_penalty_per_token(logprobs, ref_logprobs, mode)
    return jnp.mean(masked_sum(kl, mask, axis=-1))


def ppo_loss(
    logprobs: chex.Array,
    values: chex.Array,
    old_logprobs: chex.Array,
    old_values: chex.Array,
    advantages: chex.Array,
    returns: chex.Array,
    mask: chex.Array,
    *,
    cliprange: float | chex.Array,
    cliprange_value: float | chex.Array,
    vf_coef: float | chex.Array,
    ent_coef: float | chex.Array = 0.0,
    logits: chex.Array | None = None,
) -> tuple[chex.Array, dict[str, chex.Array]]:
    """Total PPO loss: L = L_π + vf_coef · L_V − ent_coef · H.

    trlx has no entropy bonus; ``ent_coef=0`` (the default) reproduces its loss.

    Args:
      logprobs, old_logprobs: [B, T] sampled-token log-probabilities, current / rollout policy.
      values, old_values: [B, T] value predictions, current / rollout.
      advantages, returns: [B, T] from :func:`jaxirl.ppo.gae_advantages` (advantages
        usually whitened, returns not).
      mask: [B, T] 0/1 tokens that count.
      cliprange, cliprange_value, vf_coef, ent_coef: hyperparameters (see PPOConfig).
      logits: [B, T, V] current-policy logits; needed only for the entropy
        term, which is then also reported.

    Returns:
      (loss, metrics): scalar loss; metrics (scalars) ``total_loss``,
      ``policy_loss``, ``value_loss``, ``approx_kl``, ``clipfrac``, ``ratio``,
      ``vf_clipfrac`` and, with logits, ``entropy``.
    """
    if logits is None and not (isinstance(ent_coef, (int, float)) and ent_coef == 0):
        raise ConfigError(f"ppo_loss: ent_coef={ent_coef} needs the policy logits (logits=None)")
    pg_loss, pg_metrics = clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange)
    vf_loss, vf_metrics = clipped_value_loss(values, old_values, returns, mask, cliprange_value)
    loss = pg_loss + vf_coef * vf_loss
    metrics = {"policy_loss": pg_loss, "value_loss": vf_loss, **pg_metrics, **vf_metrics}
    if logits is not None:
        entropy = entropy_from_logits(logits, mask)
        loss = loss - ent_coef * entropy
        metrics["entropy"] = entropy
    metrics["total_loss"] = loss
    return loss, metrics


@dataclasses.dataclass(frozen=True, kw_only=True)
class PPOLoss:
    """The PPO loss that training differentiates: :func:`ppo_loss` with its hyperparameters bound.

    One object for training and export (gemma's loss style): the update calls it on
    each minibatch, and it is exactly the :func:`ppo_loss` tested against trlx.

    Attributes:
      cliprange, cliprange_value, vf_coef, ent_coef: as in :func:`ppo_loss`.
    """

    cliprange: float
    cliprange_value: float
    vf_coef: float
    ent_coef: float = 0.0

    @classmethod
    def from_config(cls, config) -> PPOLoss:
        """From a :class:`~jaxirl.ppo.config.PPOConfig`."""
        return cls(cliprange=config.cliprange, cliprange_value=config.cliprange_value,
                   vf_coef=config.vf_coef, ent_coef=config.ent_coef)

    def __call__(self, logprobs: chex.Array, values: chex.Array, old_logprobs: chex.Array,
                 old_values: chex.Array, advantages: chex.Array, returns: chex.Array,
                 mask: chex.Array, logits: chex.Array) -> tuple[chex.Array, dict[str, chex.Array]]:
        """``(loss, metrics)`` of one minibatch; shapes as :func:`ppo_loss`.

        ``logits`` [B, T, V] always yield the ``entropy`` metric; with ``ent_coef = 0``
        they enter under ``stop_gradient``, because 0 · H would still be differentiated
        (XLA keeps x · 0 for NaN semantics): a softmax backward over [B, T, V] for nothing.
        """
        if not self.ent_coef:
            logits = jax.lax.stop_gradient(logits)
        return ppo_loss(logprobs, values, old_logprobs, old_values, advantages, returns, mask,
                        cliprange=self.cliprange, cliprange_value=self.cliprange_value,
                        vf_coef=self.vf_coef, ent_coef=self.ent_coef, logits=logits)
