"""A Bayesian reward posterior on frozen base-model features (after arXiv 2510.06096).

Model (the Alignment Auditor's, Matthieu6/IRL-Alignment-Auditor):

* features φ(o) ∈ ℝ^d: the base model's final hidden state (after the final
  layer norm), mean-pooled over the completion's tokens, z-scored with the
  training pool's mean and std (:func:`completion_features`, :func:`zscore`);
* a linear reward R_θ(o) = θᵀφ(o);
* a Bradley–Terry likelihood on (expert, base) pairs,
  log p(D | θ) = Σ_i log σ(θᵀ x_i), x_i = φ(o_i^expert) − φ(o_i^base);
* a Gaussian prior, N(0, I) in the first round and the last posterior after.

Inference, all pure and jittable (d is small: the default's d = 128):

* :func:`laplace_posterior`: Newton's method to the MAP (the log-posterior is
  strictly concave), then Σ = H⁻¹ with the exact Hessian
  H = Xᵀ diag(σ(1 − σ)) X + Σ₀⁻¹;
* :func:`mean_field_vi`: q(θ) = N(μ, diag s²), reparameterised ELBO, optax
  Adam (the Auditor's Pyro SVI: lr 1e-2, 3,000 full-batch steps);
* a NUTS reference (blackjax) lives in the opt-in slow tests.

Sequential rounds (:func:`sequential_posteriors`) feed each round's posterior in
as the next prior; tr Σ, log det Σ and the Gaussian entropy are logged per round.
Var[R(x)] = φ(x)ᵀ Σ φ(x) (:func:`predictive_variance`) flags texts the
posterior knows little about. :func:`mahalanobis_distance` scores the same features
with no reward at all (their distance from the training pool), the reference that
tells whether an OOD miss comes from the posterior or from the features.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxirl.errors import ConfigError


@struct.dataclass
class Gaussian:
    """N(mean [d], cov [d, d]) over reward weights θ."""

    mean: chex.Array
    cov: chex.Array

    @classmethod
    def standard(cls, d: int) -> Gaussian:
        return cls(jnp.zeros(d), jnp.eye(d))

    def stats(self) -> dict[str, float]:
        """tr Σ, log det Σ and the entropy ½(d(1 + log 2π) + log det Σ), in nats."""
        d = self.mean.shape[0]
        logdet = float(jnp.linalg.slogdet(self.cov)[1])
        return {"trace": float(jnp.trace(self.cov)), "logdet": logdet,
                "entropy": 0.5 * (d * (1.0 + np.log(2 * np.pi)) + logdet)}


@dataclasses.dataclass(frozen=True)
class BayesConfig:
    """Bayesian reward posterior settings.

    Attributes:
      method: ``"laplace"`` or ``"vi"`` (mean-field).
      rounds: sequential rounds (disjoint folds of the training pairs).
      prior_scale: std of the first round's N(0, prior_scale² I) prior.
      newton_steps: Newton iterations of the Laplace MAP.
      vi_steps, vi_lr, vi_samples: mean-field VI optimisation (Auditor: 3,000, 1e-2).
      seed: VI's reparameterisation noise.
    """

    method: str = "laplace"
    rounds: int = 5
    prior_scale: float = 1.0
    newton_steps: int = 30
    vi_steps: int = 3000
    vi_lr: float = 1e-2
    vi_samples: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.method not in ("laplace", "vi"):
            raise ConfigError(f"bayes field 'method' must be laplace or vi, got {self.method!r}")
        for field in ("rounds", "newton_steps", "vi_steps", "vi_samples"):
            if getattr(self, field) < 1:
                raise ConfigError(f"bayes field '{field}' must be >= 1, got {getattr(self, field)}")
        if not self.prior_scale > 0 or not self.vi_lr > 0:
            raise ConfigError("bayes fields 'prior_scale' and 'vi_lr' must be > 0")


# ------------------------------------------------------------------ features


@functools.partial(jax.jit, static_argnums=0)
def _pooled_final_hidden(model, params, ids, mask):
    hidden = model.apply({"params": params}, ids, mask).final_hidden
    m = mask.astype(jnp.float32)
    return jnp.einsum("bth,bt->bh", hidden, m) / jnp.maximum(m.sum(1, keepdims=True), 1.0)


def completion_features(model: Any, params: Any, tokenizer: Any, texts: Sequence[str],
                        max_tokens: int = 128, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled final hidden state of each completion text, float64 [N, H].

    Each text is read on its own after one end-of-text token (so an empty
    completion still has a context), truncated to its first ``max_tokens``;
    the mean runs over all of its real tokens, that first one included.
    """
    from jaxirl.data.tokenization import pad_token_id

    bos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    enc = tokenizer(list(texts), add_special_tokens=False, padding=False, truncation=False,
                    return_attention_mask=False)["input_ids"] if len(texts) else []
    rows = [[bos] + ids[: max_tokens - 1] for ids in enc]
    width = -(-max((len(r) for r in rows), default=1) // 16) * 16
    ids = np.full((len(rows), width), pad_token_id(tokenizer), np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    out = []
    for start in range(0, len(rows), batch_size):
        idx = np.arange(start, start + batch_size) % len(rows)
        pooled = _pooled_final_hidden(model, params, ids[idx], mask[idx])
        out.append(np.asarray(pooled)[: min(batch_size, len(rows) - start)])
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def zscore(features: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z-scored features, mean, std); std clamped at 1e-6 (the Auditor's) and frozen once fit."""
    if mean is None:
        mean, std = features.mean(0), np.maximum(features.std(0), 1e-6)
    return (features - mean) / std, mean, std


# ------------------------------------------------------------------ the model


def bt_log_likelihood(theta: chex.Array, x: chex.Array) -> chex.Array:
    """Σ_i log σ(θᵀ x_i) of pair differences x [P, d] (expert minus base)."""
    return jnp.sum(jax.nn.log_sigmoid(x @ theta))


def gaussian_log_density(theta: chex.Array, prior: Gaussian) -> chex.Array:
    """log N(θ; prior) up to its constant."""
    diff = theta - prior.mean
    return -0.5 * diff @ jnp.linalg.solve(prior.cov, diff)


@functools.partial(jax.jit, static_argnames="steps")
def laplace_posterior(x: chex.Array, prior: Gaussian, steps: int = 30) -> Gaussian:
    """Laplace approximation: MAP by Newton's method, Σ = (exact Hessian)⁻¹.

    The BT log-likelihood is concave and the Gaussian prior strictly concave,
    so Newton from the prior mean converges (quadratically near the optimum).
    """
    precision0 = jnp.linalg.inv(prior.cov)

    def hessian(theta):
        p = jax.nn.sigmoid(x @ theta)
        return (x * (p * (1 - p))[:, None]).T @ x + precision0

    def newton(_, theta):
        grad = x.T @ jax.nn.sigmoid(-(x @ theta)) - precision0 @ (theta - prior.mean)
        return theta + jnp.linalg.solve(hessian(theta), grad)

    theta = jax.lax.fori_loop(0, steps, newton, prior.mean)
    cov = jnp.linalg.inv(hessian(theta))
    return Gaussian(theta, 0.5 * (cov + cov.T))


@functools.partial(jax.jit, static_argnames=("steps", "samples", "learning_rate"))
def mean_field_vi(x: chex.Array, prior: Gaussian, key: chex.PRNGKey, steps: int = 3000,
                  learning_rate: float = 1e-2, samples: int = 4) -> Gaussian:
    """Mean-field Gaussian VI: maximise E_q[log p(D | θ)] − KL(q ‖ diag(prior)).

    q = N(μ, diag exp(2ρ)), initialised at the prior (as the Auditor's guide);
    the prior's off-diagonal covariance is ignored (the Auditor's sequential
    rounds pass diagonal posteriors on).
    """
    var0 = jnp.diag(prior.cov)
    optimizer = optax.adam(learning_rate)

    def neg_elbo(params, key):
        mu, rho = params
        eps = jax.random.normal(key, (samples, mu.shape[0]))
        thetas = mu + jnp.exp(rho) * eps
        expected = jnp.mean(jax.vmap(lambda t: bt_log_likelihood(t, x))(thetas))
        var = jnp.exp(2 * rho)
        kl = 0.5 * jnp.sum(var / var0 + (mu - prior.mean) ** 2 / var0 - 1 - jnp.log(var / var0))
        return kl - expected

    def step(carry, key):
        params, opt_state = carry
        grads = jax.grad(neg_elbo)(params, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    params = (prior.mean, 0.5 * jnp.log(var0))
    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)),
                                  jax.random.split(key, steps))
    mu, rho = params
    return Gaussian(mu, jnp.diag(jnp.exp(2 * rho)))


def posterior(x: np.ndarray, prior: Gaussian, config: BayesConfig, round_index: int = 0
              ) -> Gaussian:
    """One round's posterior of pair differences x [P, d] under ``prior``."""
    x = jnp.asarray(x, jnp.float32)
    if config.method == "laplace":
        return laplace_posterior(x, prior, steps=config.newton_steps)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), round_index)
    return mean_field_vi(x, prior, key, steps=config.vi_steps, learning_rate=config.vi_lr,
                         samples=config.vi_samples)


def sequential_posteriors(folds: Sequence[np.ndarray], config: BayesConfig
                          ) -> tuple[list[Gaussian], list[dict[str, float]]]:
    """Round k conditions on fold k with the round k−1 posterior as its prior.

    Returns the posteriors and, per round, tr Σ, log det Σ, entropy and the fold size.
    """
    d = folds[0].shape[1]
    prior = Gaussian(jnp.zeros(d), config.prior_scale ** 2 * jnp.eye(d))
    posts, stats = [], []
    for k, fold in enumerate(folds):
        prior = posterior(fold, prior, config, k)
        posts.append(prior)
        stats.append({"round": k + 1, "pairs": int(len(fold)), **prior.stats()})
    return posts, stats


def predictive_variance(phi: np.ndarray, post: Gaussian) -> np.ndarray:
    """Var[R(x)] = φ(x)ᵀ Σ φ(x) of features [N, d] (z-scored), float64 [N]."""
    phi = np.asarray(phi, np.float64)
    return np.einsum("nd,de,ne->n", phi, np.asarray(post.cov, np.float64), phi)


def mahalanobis_distance(phi: np.ndarray, reference: np.ndarray, ridge: float = 1e-6
                         ) -> np.ndarray:
    """Squared Mahalanobis distance of features [N, d] from the rows of ``reference``
    [M, d] (their mean and covariance, ``ridge`` added to its diagonal), float64 [N].

    A feature-level OOD score that uses no reward: if it cannot separate OOD texts
    from in-distribution ones, neither can Var[R] on the same features.
    """
    reference = np.asarray(reference, np.float64)
    centred = np.asarray(phi, np.float64) - reference.mean(0)
    cov = np.atleast_2d(np.cov(reference, rowvar=False)) + ridge * np.eye(reference.shape[1])
    return np.einsum("nd,nd->n", centred, np.linalg.solve(cov, centred.T).T)


def pairwise_probability(x: np.ndarray, post: Gaussian) -> np.ndarray:
    """Posterior predictive P(expert ≻ base) ≈ σ(μᵀx / √(1 + π xᵀΣx / 8)) (probit approximation)."""
    x = np.asarray(x, np.float64)
    mean = x @ np.asarray(post.mean, np.float64)
    var = np.einsum("nd,de,ne->n", x, np.asarray(post.cov, np.float64), x)
    return 1.0 / (1.0 + np.exp(-mean / np.sqrt(1.0 + np.pi * var / 8.0)))


__all__ = ["BayesConfig", "Gaussian", "bt_log_likelihood", "completion_features",
           "gaussian_log_density", "laplace_posterior", "mahalanobis_distance", "mean_field_vi",
           "pairwise_probability", "posterior", "predictive_variance", "sequential_posteriors",
           "zscore"]
