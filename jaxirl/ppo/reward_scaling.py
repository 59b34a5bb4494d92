"""Reward-model score scaling and clipping, as trlx's ``make_experience`` does it.

Order in trlx (kept here): clip to ±``cliprange_reward`` → record the
reference statistics on the first batch → update the running moments with the
clipped scores → divide by the running std (``"running"``) or the reference
std (``"ref"``). Scores are only divided, never mean-shifted.

State is a ``flax.struct.dataclass``; all updates are pure and jittable.
"""

from __future__ import annotations

from typing import Literal

import chex
import jax.numpy as jnp
from flax import struct

from jaxirl.errors import ConfigError

ScaleMode = Literal["running", "ref"] | None


@struct.dataclass
class RunningMoments:
    """trlx ``RunningMoments``: streaming mean and variance (Chan et al. parallel update).

    Attributes (scalars, float32):
      mean: running mean of everything seen.
      var: running population variance (divides by the count).
      std: running *unbiased* std, sqrt(var · n / (n − 1)), as trlx reports it.
      count: number of values seen; starts at 1e-24 (trlx), which makes the
        initial mean 0 and var 1 vanish from the first update.
    """

    mean: chex.Array
    var: chex.Array
    std: chex.Array
    count: chex.Array

    @classmethod
    def create(cls) -> RunningMoments:
        f = lambda x: jnp.asarray(x, jnp.float32)
        return cls(mean=f(0.0), var=f(1.0), std=f(1.0), count=f(1e-24))


def update_running_moments(
    state: RunningMoments, xs: chex.Array, mask: chex.Array | None = None
) -> tuple[RunningMoments, chex.Array, chex.Array]:
    """Merge a batch into the running moments.

    With batch count n_b, mean μ_b, population variance σ²_b and δ = μ_b − μ:
      N' = N + n_b,  μ' = μ + δ n_b / N',
      σ²' = (σ² N + δ² N n_b / N' + σ²_b n_b) / N',  std' = sqrt(σ²' N' / (N' − 1)).

    Args:
      state: current moments.
      xs: [B] (any shape) values, e.g. one clipped score per sample.
      mask: optional 0/1, same shape: only these values count (e.g. to drop
        padding rows of a partial batch).

    Returns:
      (new state, batch mean, batch unbiased std). When N' ≤ 1 (a first batch
      of one value) the std is not Bessel-corrected, where trlx would give inf.
    """
    xs = jnp.asarray(xs, jnp.float32)
    real = jnp.ones(xs.shape, bool) if mask is None else (mask > 0)
    n = jnp.sum(real.astype(jnp.float32))
    safe_n = jnp.maximum(n, 1.0)
    xs_mean = jnp.sum(jnp.where(real, xs, 0.0)) / safe_n
    xs_var = jnp.sum(jnp.where(real, jnp.square(xs - xs_mean), 0.0)) / safe_n

    delta = xs_mean - state.mean
    tot = state.count + n
    old_sum = state.var * state.count + jnp.square(delta) * state.count * n / tot
    new_var = (old_sum + xs_var * n) / tot
    bessel = jnp.where(tot > 1.0, tot / jnp.maximum(tot - 1.0, 1e-12), 1.0)
    new_state = RunningMoments(
        mean=state.mean + delta * n / tot,
        var=new_var,
        std=jnp.sqrt(new_var * bessel),
        count=tot,
    )
    batch_std = jnp.sqrt(xs_var * n / jnp.maximum(n - 1.0, 1.0))
    return new_state, xs_mean, batch_std


@struct.dataclass
class RewardScalingState:
    """Running moments plus trlx's reference statistics.

    Attributes:
      moments: :class:`RunningMoments` of the clipped scores.
      ref_mean, ref_std: scalar float32 mean and unbiased std of the first
        batch's clipped scores (or given by the config); NaN until set.
    """

    moments: RunningMoments
    ref_mean: chex.Array
    ref_std: chex.Array

    @classmethod
    def create(
        cls, ref_mean: float | None = None, ref_std: float | None = None
    ) -> RewardScalingState:
        """Fresh state; ``ref_mean``/``ref_std`` as trlx's ``method.ref_mean/ref_std``."""
        if (ref_mean is None) != (ref_std is None):
            raise ConfigError("reward scaling: set both 'ref_mean' and 'ref_std', or neither")
        if ref_std is not None and not ref_std > 0:
            raise ConfigError(f"reward scaling 'ref_std' must be > 0, got {ref_std}")
        f = lambda x: jnp.asarray(jnp.nan if x is None else x, jnp.float32)
        return cls(moments=RunningMoments.create(), ref_mean=f(ref_mean), ref_std=f(ref_std))


def scale_rewards(
    scores: chex.Array,
    state: RewardScalingState,
    mode: ScaleMode,
    cliprange_reward: float | chex.Array | None,
    mask: chex.Array | None = None,
) -> tuple[chex.Array, RewardScalingState]:
    """Clip, then scale one rollout batch of sequence scores (trlx ``make_experience``).

    1. s ← clip(s, −c, c) with c = ``cliprange_reward`` (None or 0: no clip, trlx's
       ``if cliprange_reward:``).
    2. On the first batch (ref stats NaN): ref_mean, ref_std ← mean and
       unbiased std of the clipped s.
    3. The running moments absorb the clipped s (always, whatever the mode).
    4. ``"running"``: s / running std (after step 3, so this batch counts);
       ``"ref"``: s / ref_std; None: s unchanged.

    Args:
      scores: [B] one reward-model score per sample.
      state: from :meth:`RewardScalingState.create` or a previous call.
      mode: ``"running"``, ``"ref"`` or None (trlx's ``"ignored"``); static.
      cliprange_reward: c.
      mask: optional [B] 0/1 rows that count toward the statistics.

    Returns:
      (scaled clipped scores [B] float32, new state).
    """
    if mode not in ("running", "ref", None):
        raise ConfigError(f"'scale_reward' must be 'running', 'ref' or None, got {mode!r}")
    chex.assert_rank(scores, 1)
    scores = jnp.asarray(scores, jnp.float32)
    if cliprange_reward is not None:
        c = jnp.asarray(cliprange_reward, jnp.float32)
        scores = jnp.where(c > 0, jnp.clip(scores, -c, c), scores)

    moments, batch_mean, batch_std = update_running_moments(state.moments, scores, mask)
    first = jnp.isnan(state.ref_mean)
    new_state = RewardScalingState(
        moments=moments,
        ref_mean=jnp.where(first, batch_mean, state.ref_mean),
        ref_std=jnp.where(first, batch_std, state.ref_std),
    )
    if mode == "running":
        scores = scores / moments.std
    elif mode == "ref":
        scores = scores / new_state.ref_std
    return scores, new_state
