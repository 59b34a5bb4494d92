"""Sparse autoencoders (Marks et al., arXiv 2310.08164) on MLP activations, in plain JAX.

The model, as in the paper's code (``SparseAutoencoder`` of
apartresearch/Probing-Learned-Feedback-Patterns)::

    f    = ReLU(x W_e^T + b_e)          W_e [F, d], rows of unit L2 norm
    x_hat = f W_e + b_d                 (tied; untied: f W_d + b_d, W_d [F, d])
    loss = mean_tokens(|x_hat - x|^2) + l1_coef * mean_tokens(|f|_1)

i.e. the squared reconstruction error per token plus the L1 norm of the code per
token, both averaged over tokens.
The encoder rows are renormalised after every optimiser step (a projection onto
the constraint set; the reference renormalises at the start of each forward, which
gives the same iterates).

Activations are rescaled by one scalar before training so that their mean L2
distance from the training mean is 1 (centred norms: a large shared offset, which
``b_d`` absorbs, must not shrink the variation the features have to explain). The
reconstruction term then reads as the share of a token's variation lost, and neither
it nor the L1 term depends on the raw activation scale or on d, so one ``l1_coef``
fits every layer and model. (The paper's code
uses torch ``MSELoss`` -- a mean over coordinates -- on raw activations, so its
``l1_coef`` = 1e-3 is tied to Pythia's activation scale and width.) The scale is
stored with the SAE and applied again at encode time. Reported ``mse`` metrics are
per coordinate, as in the paper.

Parameters are a plain dict ``{"W_e", "b_e", "b_d"[, "W_d"]}``; every function is
pure. :func:`make_train_step` returns an un-jitted ``step(state, batch)`` for the
global batch; :func:`train_sae` scans it over the minibatches of an epoch, jitted
on a :mod:`jaxirl.parallel` mesh that splits every batch over its devices.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh
from tqdm import tqdm

from jaxirl import parallel
from jaxirl.errors import ConfigError, DataError
from jaxirl.finite import check_metrics, tree_finite
from jaxirl.metrics_log import MetricsLog

if TYPE_CHECKING:
    from jaxirl.checkpoint import Checkpointer

log = logging.getLogger(__name__)

SAEParams = dict[str, chex.Array]


@dataclasses.dataclass(frozen=True)
class SAEConfig:
    """Hyperparameters of one sparse autoencoder.

    Attributes:
      dict_multiple: dictionary size F as a multiple of d_model (the paper uses 1 and 2).
      l1_coef: weight of the per-token L1 norm of the code (on inputs rescaled as above).
      tied: decoder is the encoder matrix (the paper's default); False adds ``W_d``.
      learning_rate: Adam step size.
      batch_size: tokens per optimiser step (global, across devices).
      num_epochs: passes over the training tokens.
      seed: initialisation and shuffling seed.
    """

    dict_multiple: int = 2
    l1_coef: float = 0.05
    tied: bool = True
    learning_rate: float = 1e-3
    batch_size: int = 256
    num_epochs: int = 10
    seed: int = 0

    def __post_init__(self):
        if int(self.dict_multiple) < 1:
            raise ConfigError(f"SAEConfig.dict_multiple must be >= 1, got {self.dict_multiple}")
        if self.l1_coef < 0:
            raise ConfigError(f"SAEConfig.l1_coef must be >= 0, got {self.l1_coef}")
        for name in ("learning_rate",):
            if getattr(self, name) <= 0:
                raise ConfigError(f"SAEConfig.{name} must be positive, got {getattr(self, name)}")
        for name in ("batch_size", "num_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"SAEConfig.{name} must be >= 1, got {getattr(self, name)}")


@struct.dataclass
class SAEState:
    """Training state: parameters, Adam state and the number of steps taken."""

    params: SAEParams
    opt_state: Any
    step: chex.Array


@struct.dataclass
class TrainedSAE:
    """A trained SAE with the input scale it was trained at.

    Attributes:
      params: ``W_e`` [F, d], ``b_e`` [F], ``b_d`` [d] and, if untied, ``W_d`` [F, d].
      scale: float scalar that multiplies raw activations before encoding.
    """

    params: SAEParams
    scale: chex.Array

    @property
    def num_features(self) -> int:
        return int(self.params["W_e"].shape[0])

    @property
    def d_model(self) -> int:
        return int(self.params["W_e"].shape[1])

    def features(self, x: chex.Array) -> chex.Array:
        """Raw activations [..., d] -> codes [..., F] (non-negative)."""
        return encode(self.params, x * self.scale)

    def reconstruct(self, x: chex.Array) -> chex.Array:
        """Raw activations [..., d] -> reconstruction in raw units [..., d]."""
        return decode(self.params, self.features(x)) / self.scale


@dataclasses.dataclass(frozen=True)
class SAEMetrics:
    """Held-out quality of an SAE (computed on rescaled activations).

    Attributes:
      mse: mean squared error per coordinate.
      fve: fraction of variance explained, 1 - SSE/SST with SST about the eval mean.
      l0: mean number of active (> 0) features per token.
      l1: mean per-token L1 norm of the code.
      dead_fraction: share of features never active on the eval tokens.
      num_tokens: eval tokens.
      num_features: dictionary size F.
    """

    mse: float
    fve: float
    l0: float
    l1: float
    dead_fraction: float
    num_tokens: int
    num_features: int

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def normalize_rows(w: chex.Array) -> chex.Array:
    """[F, d] -> rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = jnp.linalg.norm(w, axis=-1, keepdims=True)
    return w / jnp.maximum(norm, 1e-12)


def init_sae(key: chex.PRNGKey, d_model: int, config: SAEConfig,
             data_mean: chex.Array | None = None) -> SAEParams:
    """Xavier-uniform encoder with unit rows, zero ``b_e``, ``b_d`` = data mean (or 0).

    The untied decoder starts as a copy of the encoder, so both variants start from
    the same function. The paper's code starts ``b_d`` at zero; the data mean is a
    better start for uncentred activations and costs nothing.
    """
    f = int(config.dict_multiple) * d_model
    w = jax.nn.initializers.xavier_uniform()(key, (f, d_model), jnp.float32)
    w = normalize_rows(w)
    b_d = jnp.zeros((d_model,), jnp.float32) if data_mean is None else jnp.asarray(
        data_mean, jnp.float32)
    params = {"W_e": w, "b_e": jnp.zeros((f,), jnp.float32), "b_d": b_d}
    if not config.tied:
        params["W_d"] = w
    return params


def encode(params: SAEParams, x: chex.Array) -> chex.Array:
    """Rescaled activations [..., d] -> codes ReLU(x W_e^T + b_e) [..., F]."""
    return jax.nn.relu(x @ params["W_e"].T + params["b_e"])


def decode(params: SAEParams, f: chex.Array) -> chex.Array:
    """Codes [..., F] -> reconstruction f W_d + b_d [..., d] (W_d = W_e when tied)."""
    return f @ params.get("W_d", params["W_e"]) + params["b_d"]


def sae_loss(params: SAEParams, x: chex.Array, l1_coef: float) -> tuple[chex.Array, dict]:
    """Loss on a batch x [B, d] of rescaled activations; see the module docstring.

    Returns:
      (loss scalar, {"loss", "recon", "mse", "l1", "l0"}), all batch means; ``recon`` is
      the squared error per token, ``mse`` per coordinate.
    """
    chex.assert_rank(x, 2)
    f = encode(params, x)
    recon = jnp.mean(jnp.sum(jnp.square(decode(params, f) - x), axis=-1))
    l1 = jnp.mean(jnp.sum(jnp.abs(f), axis=-1))
    loss = recon + l1_coef * l1
    l0 = jnp.mean(jnp.sum(f > 0, axis=-1).astype(jnp.float32))
    return loss, {"loss": loss, "recon": recon, "mse": recon / x.shape[-1], "l1": l1, "l0": l0}


def make_optimizer(config: SAEConfig) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


def init_state(params: SAEParams, config: SAEConfig) -> SAEState:
    return SAEState(params=params, opt_state=make_optimizer(config).init(params),
                    step=jnp.zeros((), jnp.int32))


def make_train_step(config: SAEConfig):
    """Returns ``step(state, batch [B, d]) -> (state, metrics)``, not yet jitted.

    Written for the global batch: on a mesh the B tokens are split over its devices
    and XLA reduces the gradient of the (global) mean loss, so the update equals the
    single-device update on the whole batch.
    """
    optimizer = make_optimizer(config)

    def step(state: SAEState, batch: chex.Array) -> tuple[SAEState, dict]:
        batch = parallel.constrain_rows(batch)
        grads, metrics = jax.grad(sae_loss, has_aux=True)(state.params, batch, config.l1_coef)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Projection onto the unit-norm constraint: a feature cannot shrink its
        # encoder row to dodge the L1 penalty.
        params = {**params, "W_e": normalize_rows(params["W_e"])}
        metrics["params_finite"] = tree_finite(params).astype(jnp.float32)
        return SAEState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return step


def make_epoch_fn(config: SAEConfig):
    """``epoch(state, batches [S, B, d]) -> (state, per-step metrics [S])`` via ``lax.scan``."""
    step = make_train_step(config)

    def epoch(state, batches):
        return jax.lax.scan(step, state, batches)

    return epoch


def activation_scale(x: np.ndarray) -> float:
    """The scalar that gives raw activations x [N, d] a mean centred L2 norm of 1."""
    mean_norm = float(np.mean(np.linalg.norm(x - x.mean(axis=0), axis=-1)))
    if not np.isfinite(mean_norm) or mean_norm <= 0:
        raise DataError(f"SAE training activations have mean centred norm {mean_norm}; "
                        f"expected a positive finite value (are all rows equal?)")
    return float(1.0 / mean_norm)


@functools.lru_cache(maxsize=8)
def _jitted_epoch(config: SAEConfig, mesh: Mesh):
    # Cached per config and mesh so that SAEs of the same shape share one compilation.
    repl = parallel.replicated(mesh)
    return parallel.sharded_jit(make_epoch_fn(config), mesh,
                                in_shardings=(repl, parallel.rows_sharding(mesh, 3, axis=1)),
                                out_shardings=(repl, repl))


@functools.lru_cache(maxsize=8)
def _shuffler(mesh: Mesh, num_steps: int, batch_size: int):
    """``(x [N, d], key) -> batches [S, B, d]``: one epoch's shuffle, its batches split on the mesh."""
    def shuffled(x, key):
        perm = jax.random.permutation(key, x.shape[0])[: num_steps * batch_size]
        return x[perm].reshape(num_steps, batch_size, x.shape[-1])

    repl = parallel.replicated(mesh)
    return parallel.sharded_jit(shuffled, mesh, in_shardings=(repl, repl),
                                out_shardings=parallel.rows_sharding(mesh, 3, axis=1))


def train_sae(
    activations: np.ndarray,
    config: SAEConfig,
    eval_activations: np.ndarray | None = None,
    mesh: Mesh | None = None,
    metrics_log: MetricsLog | None = None,
    progress: bool | str = False,
    checkpointer: Checkpointer | None = None,
    checkpoint_every_s: float = 60.0,
) -> tuple[TrainedSAE, dict[str, Any]]:
    """Trains one SAE on raw activations [N, d] (e.g. one layer's MLP outputs).

    Each epoch draws a fresh permutation, drops the last ``N mod batch_size`` tokens
    and scans the jitted step over the minibatches. On ``mesh`` (default: one
    device) every step's batch is split evenly across its devices, which gives the
    single-device result (to float error); the SAE's parameters are replicated.

    With a ``checkpointer`` the training state is saved after the first epoch that ends
    ``checkpoint_every_s`` seconds after the last save, and always after the last epoch;
    a call that finds a checkpoint there continues from it (a finished SAE trains no
    further) with the result of an uninterrupted call: each epoch's shuffle is keyed by
    its number, not by a running key. The checkpoint records ``config`` and a hash of
    ``activations``, and restoring it under others is a :class:`CheckpointError`.

    Args:
      activations: float [N, d] training activations, N >= batch_size.
      config: hyperparameters.
      eval_activations: optional held-out float [M, d], evaluated after training.
      mesh: the device mesh; its batch split must divide ``config.batch_size``.
      metrics_log: optional :class:`~jaxirl.metrics_log.MetricsLog`; one line per epoch
        (``step`` = epochs done) with that epoch's means.
      progress: a progress bar over the epochs (a string is its label).
      checkpointer: where the training state is saved and resumed from (optional; every
        process calls this function with the same one).
      checkpoint_every_s: the least time between two saves before the last epoch's.

    Returns:
      (TrainedSAE, history) where history has per-epoch lists ``loss``, ``recon``, ``mse``,
      ``l1``, ``l0`` (means over the epoch's steps), ``seconds`` (training wall time,
      compilation included, over every call that trained it) and, with eval activations,
      ``eval`` (:class:`SAEMetrics`).
    """
    x = np.asarray(activations, np.float32)
    if x.ndim != 2:
        raise DataError(f"SAE activations must be [tokens, d_model], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise DataError("SAE training activations contain NaN or inf")
    n, d = x.shape
    bs = int(config.batch_size)
    if n < bs:
        raise DataError(f"SAEConfig.batch_size is {bs} but SAE training has only {n} "
                        "activation rows (tokens); lower it or give more texts")
    mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_rows(bs, mesh, f"SAEConfig.batch_size {bs}")
    scale = activation_scale(x)
    xs = jnp.asarray(x * scale)
    key_init, key_data = jax.random.split(jax.random.PRNGKey(config.seed))
    params = init_sae(key_init, d, config, data_mean=jnp.mean(xs, axis=0))
    num_steps = n // bs
    epoch_fn = _jitted_epoch(dataclasses.replace(config, seed=0, num_epochs=1), mesh)
    shuffle = _shuffler(mesh, num_steps, bs)
    state, xs = parallel.replicate(mesh, (init_state(params, config), xs))
    history: dict[str, Any] = {k: [] for k in ("loss", "recon", "mse", "l1", "l0")}
    # The hash reads every activation: only for a checkpoint's record.
    settings = (None if checkpointer is None else
                {"sae": config, "activations": activations_fingerprint(x)})
    done, seconds_before = 0, 0.0
    latest = None if checkpointer is None else checkpointer.latest_step()
    if latest is not None:
        done = int(latest)
        state, meta = checkpointer.restore(state, done, settings=settings)
        history = {k: list(meta["history"][k]) for k in history}
        seconds_before = float(meta["seconds"])
    start = last_save = time.perf_counter()
    label = progress if isinstance(progress, str) else "sae"
    num_epochs = int(config.num_epochs)
    for epoch in tqdm(range(done, num_epochs), desc=label, disable=not progress,
                      leave=False, initial=done, total=num_epochs):
        key = parallel.replicate(mesh, jax.random.fold_in(key_data, epoch))
        state, metrics = epoch_fn(state, shuffle(xs, key))
        metrics = parallel.to_host(metrics)
        check_metrics({k: np.asarray(v).min() if k == "params_finite" else np.mean(v)
                       for k, v in metrics.items()}, f"SAE epoch {epoch + 1}",
                      ("loss", "params_finite"))
        for k in history:
            history[k].append(float(np.mean(metrics[k])))
        if metrics_log is not None:
            metrics_log.write(epoch + 1, {k: v[-1] for k, v in history.items()})
        now = time.perf_counter()
        if checkpointer is not None and (epoch + 1 == num_epochs
                                         or now - last_save >= checkpoint_every_s):
            # The history goes with the state: a resumed call returns every epoch's.
            checkpointer.save(epoch + 1, state, force=True, settings=settings, metadata={
                "history": history, "seconds": seconds_before + now - start})
            last_save = time.perf_counter()
    state = jax.tree_util.tree_map(jnp.asarray, parallel.to_host(state))
    history["seconds"] = seconds_before + time.perf_counter() - start
    sae = TrainedSAE(params=state.params, scale=jnp.asarray(scale, jnp.float32))
    if eval_activations is not None:
        history["eval"] = evaluate_sae(sae, eval_activations)
        log.info("SAE d=%d F=%d: %s (%.1fs)", d, sae.num_features, history["eval"],
                 history["seconds"])
    return sae, history


def activations_fingerprint(x: np.ndarray) -> str:
    """A short hash of float32 activations [N, d] and their shape (for checkpoint checks)."""
    x = np.ascontiguousarray(x, np.float32)
    digest = hashlib.blake2b(str(x.shape).encode(), digest_size=8)
    digest.update(memoryview(x).cast("B"))
    return digest.hexdigest()


@jax.jit
def _eval_sums(params, x, valid):
    f = encode(params, x)
    err = jnp.sum(jnp.square(decode(params, f) - x), axis=-1)
    active = (f > 0) & (valid[:, None] > 0)
    return (jnp.sum(err * valid), jnp.sum(jnp.sum(active, -1)), jnp.sum(jnp.sum(f, -1) * valid),
            jnp.any(active, axis=0))


def evaluate_sae(sae: TrainedSAE, activations: np.ndarray, batch_size: int = 4096) -> SAEMetrics:
    """Held-out metrics of ``sae`` on raw activations [M, d]; see :class:`SAEMetrics`."""
    x = np.asarray(activations, np.float32) * float(sae.scale)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != sae.d_model:
        raise DataError(f"SAE eval activations must be [tokens > 0, {sae.d_model}], "
                        f"got shape {x.shape}")
    m, d = x.shape
    bs = min(batch_size, m)
    sse = l0 = l1 = 0.0
    ever = np.zeros((sae.num_features,), bool)
    for start in range(0, m, bs):
        chunk = x[start:start + bs]
        valid = np.ones((bs,), np.float32)
        if chunk.shape[0] < bs:  # pad to a fixed shape: one compilation
            valid[chunk.shape[0]:] = 0.0
            chunk = np.concatenate([chunk, np.zeros((bs - chunk.shape[0], d), np.float32)])
        s, a, f1, e = jax.device_get(_eval_sums(sae.params, chunk, valid))
        sse, l0, l1 = sse + float(s), l0 + float(a), l1 + float(f1)
        ever |= np.asarray(e)
    x64 = x.astype(np.float64)
    sst = float(np.sum(np.square(x64 - x64.mean(axis=0))))
    return SAEMetrics(mse=sse / (m * d), fve=1.0 - sse / max(sst, 1e-30), l0=l0 / m, l1=l1 / m,
                      dead_fraction=float(1.0 - ever.mean()), num_tokens=m,
                      num_features=sae.num_features)
