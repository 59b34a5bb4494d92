"""IRL with a linear reward r(o) = wᵀφ(o) + b on fixed features, S seeds at once.

The cheap counterpart of :mod:`jaxirl.irl.train`: the features (e.g. the Bayesian
posterior's z-scored mean-pooled base-model states, :func:`jaxirl.irl.bayes.completion_features`)
are computed once, and every loss of :mod:`jaxirl.irl.losses` trains a linear
head on them in seconds, which makes loss comparisons and hyperparameter sweeps
affordable on a CPU. Seed s initialises w from ``PRNGKey(seed + s)`` (normal,
scale 1/√d) and shuffles epoch e with ``default_rng([seed + s, e])``; the
failure-aware losses get their flags refreshed from each seed's own reward at
the start of every epoch, as in the full trainer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxirl.irl.losses import IRLLossConfig, failure_flags, tie_threshold


def _rewards(params, x):
    return x @ params["w"] + params["b"]


@functools.partial(jax.jit, static_argnames=("loss", "learning_rate"))
def _epoch(params, opt_state, x_e, x_b, order, weights, failures, loss: IRLLossConfig,
           learning_rate: float):
    """One epoch of every seed: params leaves [S, ...], order/weights [S, steps, B]."""
    optimizer = optax.adam(learning_rate)

    def seed_epoch(p, o, idx_all, w_all, f_all):
        def step(carry, xs):
            p, o = carry
            idx, w = xs
            f = None if f_all is None else f_all[idx]

            def loss_fn(p):
                return loss(_rewards(p, x_e[idx]), _rewards(p, x_b[idx]), w, f)

            value, grads = jax.value_and_grad(loss_fn)(p)
            updates, o = optimizer.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), value

        (p, o), values = jax.lax.scan(step, (p, o), (idx_all, w_all))
        return p, o, values.mean()

    return jax.vmap(seed_epoch)(params, opt_state, order, weights, failures)


def train_linear_irl(x_expert: np.ndarray, x_base: np.ndarray, loss: IRLLossConfig, *,
                     num_seeds: int = 5, seed: int = 0, epochs: int = 10, batch_size: int = 32,
                     learning_rate: float = 1e-3) -> tuple[dict, list[dict]]:
    """Linear reward heads of ``num_seeds`` seeds on pair features [P, d] (expert, base).

    Returns (params {"w": [S, d], "b": [S]}, per-epoch records with the mean loss
    and, for the ``fa_*`` losses with flags, the failure shares and δ per seed).
    """
    x_e, x_b = jnp.asarray(x_expert, jnp.float32), jnp.asarray(x_base, jnp.float32)
    p, d = x_e.shape
    keys = jnp.stack([jax.random.PRNGKey(seed + s) for s in range(num_seeds)])
    params = {"w": jax.vmap(lambda k: jax.random.normal(k, (d,)) / np.sqrt(d))(keys),
              "b": jnp.zeros(num_seeds)}
    opt_state = jax.vmap(optax.adam(learning_rate).init)(params)
    steps = -(-p // batch_size)
    history = []
    for e in range(epochs):
        order = np.zeros((num_seeds, steps * batch_size), np.int32)
        weights = np.zeros_like(order, np.float32)
        for s in range(num_seeds):
            order[s, :p] = np.random.default_rng([seed + s, e]).permutation(p)
            weights[s, :p] = 1.0
        record = {"epoch": e + 1}
        failures = None
        if loss.uses_failure_flags:
            r_e = jax.vmap(_rewards, in_axes=(0, None))(params, x_e)
            r_b = jax.vmap(_rewards, in_axes=(0, None))(params, x_b)
            tie = jax.vmap(lambda m: tie_threshold(m, rule=loss.failure.tie_rule,
                                                   scale=loss.failure.tie_scale,
                                                   margin=loss.effective_margin))(r_e - r_b)
            flags = jax.vmap(failure_flags)(r_e, r_b, tie)
            failures = flags["failures"]
            record["failures"] = {k: np.asarray(v).mean(1).tolist() for k, v in flags.items()}
            record["failures"]["tie_threshold"] = np.asarray(tie).tolist()
        params, opt_state, values = _epoch(
            params, opt_state, x_e, x_b, order.reshape(num_seeds, steps, batch_size),
            weights.reshape(num_seeds, steps, batch_size), failures, loss, learning_rate)
        record["loss"] = np.asarray(values).tolist()
        history.append(record)
    return jax.device_get(params), history


def linear_rewards(params: dict, x: np.ndarray) -> np.ndarray:
    """Rewards [S, N] of features [N, d] under every seed's head."""
    w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
    return w @ np.asarray(x, np.float64).T + b[:, None]


__all__ = ["linear_rewards", "train_linear_irl"]
