"""Max-margin IRL training: S seeds at once (vmap), on a device mesh, per-epoch evaluation.

The frozen trunk of the reward model runs ONCE per text (:mod:`jaxirl.irl.pairs`);
training then only touches the trainable top, so with ``num_layers_unfrozen
= 0`` an epoch is a scan of tiny matmuls. Every seed's trainable params are
stacked on a leading seed axis [S, ...] and one ``vmap``-ed step updates all
seeds together; the features are shared. Seed s (of ``config.seed = c``)
initialises its head from ``PRNGKey(c + s)`` and shuffles epoch e with
``default_rng([c + s, e])``, so it equals a one-seed run with seed c + s.

One step scores the B expert and B base texts of a minibatch in ONE forward
pass of 2B rows. On a mesh (:mod:`jaxirl.parallel`) the step is jitted with
the state's and the batch's shardings: each device holds whole pairs of the
minibatch, and the weighted-mean loss is the global one, so the update is the
one-device update.

Unlike the reference code, gradients cannot leak across steps (functional
JAX has no ``zero_grad`` to forget), the ground truth is scored once (in the
demos), and evaluation uses the held-out split only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from jaxirl import parallel, runs
from jaxirl.checkpoint import Checkpointer, kept_checkpoint
from jaxirl.data.batches import epoch_order
from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.finite import check_metrics, tree_finite
from jaxirl.irl.ensemble import (
    disagreement_predicts_error,
    ensemble,
    pairwise_seed_correlation,
    seed_spread,
)
from jaxirl.irl.evaluate import evaluate_pairs, evaluate_rewards, midpoint_threshold
from jaxirl.irl.losses import IRLLossConfig, failure_flags, pair_stats, tie_threshold
from jaxirl.irl.pairs import PairData, score_features
from jaxirl.irl.reward_model import RewardModel, init_head, save_reward_model
from jaxirl.irl.reward_net import stored_layout, training_layout
from jaxirl.metrics_log import MetricsLog

THRESHOLDS = ("median", "match_rate", "train_midpoint")
METRICS_FILE = "irl_metrics.json"
METRICS_STREAM = "irl_metrics.jsonl"
# Adam's ε (optax's default); a run keeps its folder and checkpoints unless it sets another.
DEFAULT_ADAM_EPS = 1e-8
# Losses that read a pair only through d = r_expert − r_base: a shift common to every
# reward leaves them unchanged (not ``discriminator``, which classifies single texts).
SHIFT_INVARIANT_LOSSES = frozenset({"max_margin", "hinge", "squared", "logistic", "maxent",
                                    "fa_max_margin", "fa_maxent", "fa_focal"})


@dataclasses.dataclass(frozen=True)
class IRLTrainConfig:
    """IRL optimisation and evaluation settings.

    Attributes:
      loss: which pairwise loss (and margin, reward_l2).
      learning_rate: Adam step size (paper: 1e-4 or 1e-5).
      batch_size: (expert, base) pairs per step (reference: 2); on a mesh it must
        split over its ``data × fsdp`` devices.
      epochs: passes over the training pairs (reference: 10-30).
      num_seeds: independent reward models trained together.
      seed: seed of the first model; model s uses seed + s.
      threshold: learned-reward threshold of the accuracy/F1 labels: a number
        (reference: 0), ``"median"``, ``"match_rate"`` or ``"train_midpoint"``
        (midpoint of the mean training expert and base rewards: uses only
        demonstrations, no ground truth).
      eval_batch_size: texts per batch when scoring.
      adam_eps: Adam's ε (optax's default 1e-8). A parameter whose true gradient is 0
        gets float-rounding noise on a mesh of several devices (the reduction order
        differs), which Adam divides by √ν + ε ≈ its own size, i.e. a step of about the
        learning rate; max pooling makes such directions (feature dimensions equal for
        both texts of every pair), and on a mesh its results differ from one device's by
        up to about the learning rate (BUILD_NOTES.md). A larger ε (e.g. 1e-6) damps
        those steps; the default keeps the default study's numbers.
    """

    loss: IRLLossConfig = IRLLossConfig()
    learning_rate: float = 1e-4
    batch_size: int = 2
    epochs: int = 10
    num_seeds: int = 1
    seed: int = 0
    threshold: float | str = 0.0
    eval_batch_size: int = 256
    adam_eps: float = DEFAULT_ADAM_EPS

    def __repr__(self) -> str:
        # The dataclass repr, without adam_eps at its default: the pipeline's stage keys
        # hash the repr, so a study keeps its folders (adam_eps came later).
        shown = [f for f in dataclasses.fields(self)
                 if f.repr and not (f.name == "adam_eps" and self.adam_eps == DEFAULT_ADAM_EPS)]
        return f"{type(self).__qualname__}(" + ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in shown) + ")"

    def __post_init__(self):
        checks = (("learning_rate", self.learning_rate > 0, "> 0"),
                  ("batch_size", self.batch_size >= 1, ">= 1"), ("epochs", self.epochs >= 1, ">= 1"),
                  ("num_seeds", self.num_seeds >= 1, ">= 1"), ("seed", self.seed >= 0, ">= 0"),
                  ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"))
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"IRLTrainConfig.{name} must be {rule}, got {getattr(self, name)}")
        if not (isinstance(self.adam_eps, (int, float)) and not isinstance(self.adam_eps, bool)
                and np.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise ConfigError(f"IRLTrainConfig.adam_eps must be finite and > 0, got "
                              f"{self.adam_eps!r}")
        if isinstance(self.threshold, str) and self.threshold not in THRESHOLDS:
            raise ConfigError(f"IRLTrainConfig.threshold must be a number or one of "
                              f"{', '.join(THRESHOLDS)}, got {self.threshold!r}")


@struct.dataclass
class IRLState:
    """Trainable params and Adam state of S seeds (leaves [S, ...]); ``epoch`` done so far.

    ``tx`` is the optimizer (static) that :func:`make_train_step` steps every seed with.
    """

    epoch: chex.Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)


# ------------------------------------------------------------------ pure training functions


@functools.lru_cache(maxsize=32)
def make_optimizer(learning_rate: float, eps: float = DEFAULT_ADAM_EPS
                   ) -> optax.GradientTransformation:
    """Adam (the paper's optimizer), no weight decay or clipping, over the flattened params.

    ``optax.flatten`` runs Adam on one vector per seed instead of leaf by leaf: XLA:CPU
    spends about 77 µs on each small leaf's moment update (a 65k-element MLP kernel at
    about 10 GB/s) and the top block has 16 leaves, so one fused update over all of them
    made the IRL epoch 21% faster at batch 2 and 10% at batch 8 (one core, tiny shape).
    The same Adam, to float rounding. Cached: equal settings give the same (static)
    optimizer, so states built from them share a pytree structure and compiled steps.
    ``eps``: Adam's ε (:attr:`IRLTrainConfig.adam_eps`).
    """
    return optax.flatten(optax.adam(learning_rate, eps=eps))


def init_state(model: RewardModel, config: IRLTrainConfig) -> IRLState:
    """Backbone params copied to every seed; head s from ``PRNGKey(config.seed + s)``."""
    s = config.num_seeds
    backbone = {k: v for k, v in model.params.items() if k != "head"}
    stacked = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (s, *jnp.shape(x))), backbone)
    keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(s)])
    heads = jax.vmap(lambda k: init_head(model.config, model.lm_config.hidden_size, k))(keys)
    params = {**stacked, "head": heads}
    tx = make_optimizer(config.learning_rate, config.adam_eps)
    return IRLState(epoch=jnp.zeros((), jnp.int32), params=params,
                    opt_state=jax.vmap(tx.init)(params), tx=tx)


def make_train_step(model: RewardModel, config: IRLTrainConfig):
    """``step(state, batch) -> (state, metrics)`` for all seeds at once; pure, not yet jitted.

    ``batch``: ``expert``/``base`` [S, B, ...] features, ``expert_mask``/
    ``base_mask`` [S, B, T], ``weights`` [S, B] (0 = padding pair). Metrics
    are [S]: ``loss``, ``pair_accuracy``, ``mean_gap``, ``reward_rms``,
    ``grad_norm``. Written for the global batch: on a mesh (jitted with
    :func:`jaxirl.parallel.sharded_jit`) the B pairs are split over its devices
    and XLA reduces the gradient of the global weighted-mean loss. Params that only
    shift every reward stay frozen under a shift-invariant loss
    (:func:`frozen_shift_params`).
    """
    return _make_step(model.top, config.loss)


def train_settings(config: IRLTrainConfig) -> dict[str, Any]:
    """``config`` as a dict for run records (checkpoint settings, launcher manifests):
    ``adam_eps`` at its default is left out, so runs recorded before it existed resume."""
    return {k: v for k, v in dataclasses.asdict(config).items()
            if not (k == "adam_eps" and v == DEFAULT_ADAM_EPS)}


def frozen_shift_params(head: str, loss: IRLLossConfig) -> tuple[str, ...]:
    """Paths (``jax.tree_util.keystr``) of the trainable params that only shift every
    reward by one amount, which training keeps at their initial values under a loss of
    d = r_expert − r_base alone (:data:`SHIFT_INVARIANT_LOSSES`, ``reward_l2`` 0): the
    final layer norm's bias (when it trains; any head and pooling) and a ``"scalar"``
    head's bias. Their gradient is 0 by construction, but its reduction can leave float
    noise (on a mesh, and in fully optimised programs on one device too), which Adam
    (dividing by √ν + ε) would turn into learning-rate-sized steps: an offset of every
    reward, different on each mesh.
    The discriminator's, and any under ``reward_l2`` > 0, have a real gradient and train.
    """
    if loss.name not in SHIFT_INVARIANT_LOSSES or loss.reward_l2 != 0:
        return ()
    paths = ("['final_layer_norm']['bias']",)
    return paths + (("['head']['linear']['bias']",) if head == "scalar" else ())


def _zero_paths(grads, paths: tuple[str, ...]):
    return jax.tree_util.tree_map_with_path(
        lambda path, g: jnp.zeros_like(g) if jax.tree_util.keystr(path) in paths else g, grads)


def _make_step(top, loss_config: IRLLossConfig):
    frozen = frozen_shift_params(top.head, loss_config)

    def seed_update(params, opt_state, batch, tx):
        b = batch["weights"].shape[0]
        w = batch["weights"]
        batch = parallel.constrain_rows(batch)
        # Expert and base text of a pair side by side ([B, 2, ...] -> [2B, ...]), so that a
        # device's block of rows holds whole pairs; one forward pass scores both.
        features = _interleave(batch["expert"], batch["base"])
        mask = _interleave(batch["expert_mask"], batch["base_mask"])

        def loss_fn(p):
            r = top.apply({"params": p}, features, mask).reshape(b, 2)
            r_e, r_b = r[:, 0], r[:, 1]
            loss = loss_config(r_e, r_b, w, batch.get("failures"))
            return loss, {"loss": loss, **pair_stats(r_e, r_b, w)}

        grads, stats = jax.grad(loss_fn, has_aux=True)(params)
        if frozen:
            grads = _zero_paths(grads, frozen)
        stats["grad_norm"] = optax.global_norm(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, stats

    def step(state: IRLState, batch: dict) -> tuple[IRLState, dict]:
        update = functools.partial(seed_update, tx=state.tx)
        params, opt_state, stats = jax.vmap(update)(state.params, state.opt_state, batch)
        return state.replace(params=params, opt_state=opt_state), stats

    return step


def _interleave(a, b):
    """[B, ...] and [B, ...] -> [2B, ...] with rows a0, b0, a1, b1, ..."""
    return jnp.stack([a, b], axis=1).reshape(-1, *a.shape[1:])


def make_epoch_fn(model: RewardModel, config: IRLTrainConfig):
    """``epoch(state, features, indices, weights, failures=None) -> (state, metrics [S])``; pure.

    ``features`` as :attr:`PairData.features`; ``indices``/``weights``
    [S, steps, B]: the pairs of each step. One ``lax.scan`` over the steps;
    metrics are step means.
    """
    return _make_epoch(model.top, config.loss)


def relayout_flat(flat: chex.Array, params: Any, fn) -> chex.Array:
    """``flat`` [n], a vector in ``optax.flatten``'s order for a tree shaped like ``params``
    -> the same numbers in that order for ``fn(params)`` (a re-layout: same size)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    cuts = np.cumsum([np.size(x) for x in leaves])[:-1]
    parts = [part.reshape(np.shape(x)) for part, x in
             zip(jnp.split(flat, cuts), leaves, strict=True)]
    moved = jax.tree_util.tree_leaves(fn(jax.tree_util.tree_unflatten(treedef, parts)))
    return jnp.concatenate([x.reshape(-1) for x in moved])


def _relayout_state(state: IRLState, fn) -> IRLState:
    """``fn`` applied to the params [S, ...] and to Adam's flat moments [S, n] alike."""
    n = sum(np.size(x) // x.shape[0] for x in jax.tree_util.tree_leaves(state.params))

    def seed_moments(opt_state, params):
        return jax.tree_util.tree_map(
            lambda x: relayout_flat(x, params, fn) if x.shape == (n,) else x, opt_state)

    return state.replace(params=fn(state.params),
                         opt_state=jax.vmap(seed_moments)(state.opt_state, state.params))


def _make_epoch(top, loss_config: IRLLossConfig):
    step = _make_step(top, loss_config)
    # Inside the epoch the query block's QKV projection is split (reward_net.training_
    # layout), once per epoch instead of being sliced and re-padded at every step; Adam
    # is elementwise, so its flat moments are permuted alike and every number stays.
    to_training = functools.partial(_relayout_state, fn=lambda p: training_layout(p, top))
    to_stored = functools.partial(_relayout_state, fn=lambda p: stored_layout(p, top))

    def epoch(state, features, indices, weights, failures=None):
        def body(state, xs):
            idx, w = xs
            batch = {k: v[idx] for k, v in features.items()}
            batch["weights"] = w
            if failures is not None:  # [S, P] flags of each seed's own reward
                batch["failures"] = jnp.take_along_axis(failures, idx, axis=1)
            return step(state, batch)

        xs = (jnp.swapaxes(indices, 0, 1), jnp.swapaxes(weights, 0, 1))
        state, stats = jax.lax.scan(body, to_training(state), xs)
        state = to_stored(state)
        # Each step's stats are means over its real pairs: weighted by their count, so a
        # last, partly filled minibatch counts as the pairs it holds, not as a full step.
        count = jnp.swapaxes(weights.sum(-1), 0, 1)  # [T, S]
        total = jnp.maximum(count.sum(0), 1e-12)

        def pair_mean(x):  # [T, S, ...] -> [S, ...]
            c = count.reshape(count.shape + (1,) * (x.ndim - 2))
            return (x * c).sum(0) / total.reshape(total.shape + (1,) * (x.ndim - 2))

        stats = jax.tree_util.tree_map(pair_mean, stats)
        # Per seed, on device: the host's divergence check reads it with the other stats.
        stats["params_finite"] = jax.vmap(tree_finite)(state.params).astype(jnp.float32)
        return state.replace(epoch=state.epoch + 1), stats

    return epoch


def epoch_minibatches(num_pairs: int, epoch: int, config: IRLTrainConfig
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed shuffled minibatches of one epoch: (indices int32, weights float32), [S, steps, B].

    Seed s's order is :func:`jaxirl.data.batches.epoch_order` of seed ``config.seed + s``;
    the last minibatch is topped up with weight-0 copies of pair 0.
    """
    b = config.batch_size
    steps = -(-num_pairs // b)
    idx = np.zeros((config.num_seeds, steps * b), np.int32)
    w = np.zeros((config.num_seeds, steps * b), np.float32)
    for s in range(config.num_seeds):
        idx[s, :num_pairs] = epoch_order(num_pairs, config.seed + s, epoch)
        w[s, :num_pairs] = 1.0
    return idx.reshape(-1, steps, b), w.reshape(-1, steps, b)


def state_shardings(model: RewardModel, config: IRLTrainConfig, mesh: Mesh) -> IRLState:
    """Shardings of the IRL state on ``mesh`` (the parameter rule; see :mod:`jaxirl.parallel`)."""
    abstract = jax.eval_shape(lambda p: init_state(dataclasses.replace(model, params=p), config),
                              model.params)
    return parallel.state_shardings(abstract, mesh)


def compile_epoch(model: RewardModel, config: IRLTrainConfig, mesh: Mesh | None = None):
    """The epoch jitted on ``mesh`` (default: one device).

    Returns ``run(state, features, indices, weights, failures=None)``: ``state`` placed
    by :func:`state_shardings`, ``features`` replicated (:func:`jaxirl.parallel.replicate`),
    ``indices``/``weights`` host arrays [S, steps, B] whose B pairs are split over
    the mesh, and FA-IRL's failure flags [S, P] (:func:`refresh_failures`) or None.
    """
    mesh = parallel.make_mesh() if mesh is None else mesh
    compiled = epoch_program(model, config, mesh)

    def run(state, features, indices, weights, failures=None):
        if failures is not None:  # [S, P], read by every device's pairs
            failures = parallel.replicate(mesh, failures)
        return compiled(state, features, *parallel.shard_rows(mesh, (indices, weights), axis=2),
                        failures)

    return run


def epoch_program(model: RewardModel, config: IRLTrainConfig, mesh: Mesh):
    """The epoch as a :func:`jaxirl.parallel.sharded_jit` on ``mesh`` (``.lower`` works on
    ``jax.ShapeDtypeStruct`` inputs: see ``benchmarks/memory_plan.py``).

    Inputs: the state (sharded by :func:`state_shardings`), replicated features,
    indices/weights [S, steps, B] already split over the mesh, and replicated failure
    flags [S, P] or None.
    """
    parallel.check_rows(config.batch_size, mesh, f"IRLTrainConfig.batch_size {config.batch_size}")
    leaves, treedef = jax.tree_util.tree_flatten(state_shardings(model, config, mesh))
    return _compiled_epoch(model.top, config.loss, mesh, treedef, tuple(leaves))


@functools.lru_cache(maxsize=32)
def _compiled_epoch(top, loss_config: IRLLossConfig, mesh: Mesh, treedef, leaves: tuple):
    # Runs that differ only in seeds, epochs or data reuse one compiled program.
    shardings = jax.tree_util.tree_unflatten(treedef, leaves)
    repl, pairs = parallel.replicated(mesh), parallel.rows_sharding(mesh, 3, axis=2)
    return parallel.sharded_jit(_make_epoch(top, loss_config), mesh,
                                in_shardings=(shardings, repl, pairs, pairs, repl),
                                out_shardings=(shardings, repl))


# ------------------------------------------------------------------ evaluation and the loop


def pair_rewards(model: RewardModel, params: Any, pairs: PairData, batch_size: int = 256,
                 mesh: Mesh | None = None) -> np.ndarray:
    """Rewards of every seed, [S, 2P]: the P expert texts, then the P base texts.

    With ``mesh`` (``params`` on it) the scoring is split over its devices.
    """
    f = pairs.features
    return np.concatenate([score_features(model, params, f[side], f[f"{side}_mask"], batch_size,
                                          mesh) for side in ("expert", "base")], axis=1)


def evaluate_epoch(model: RewardModel, params: Any, test: PairData, config: IRLTrainConfig,
                   train: PairData | None = None, mesh: Mesh | None = None
                   ) -> tuple[dict, np.ndarray]:
    """Held-out metrics of every seed, their spread, and the seed ensemble.

    With ``mesh`` (``params`` on it) the scoring is split over its devices.

    Returns:
      (record, rewards [S, 2P]: expert rewards then base rewards of the test pairs).
    """
    rewards = pair_rewards(model, params, test, config.eval_batch_size, mesh)
    r_e, r_b = np.split(rewards, 2, axis=1)
    thresholds = [config.threshold] * len(r_e)
    if config.threshold == "train_midpoint" and train is None:
        raise ConfigError("IRLTrainConfig.threshold 'train_midpoint' needs the training pairs")
    # The training texts' rewards: the midpoint thresholds, and the ensemble's per-seed
    # standardisation (the held-out texts must not scale or cut themselves).
    train_rewards = (pair_rewards(model, params, train, config.eval_batch_size, mesh)
                     if train is not None and (config.threshold == "train_midpoint"
                                               or len(rewards) > 1) else None)
    if config.threshold == "train_midpoint":
        thresholds = list(midpoint_threshold(*np.split(train_rewards, 2, axis=1)))
    per_seed = [evaluate_pairs(r_e[s], r_b[s], test.true_expert, test.true_base,
                               threshold=thresholds[s]).as_dict() for s in range(len(r_e))]
    true = np.concatenate([test.true_expert, test.true_base])
    record = {"per_seed": per_seed,
              "spread": {k: v._asdict() for k, v in seed_spread(per_seed).items()}}
    if len(rewards) > 1:
        corr = pairwise_seed_correlation(rewards)
        # Each seed z-scored with its training texts' mean and std (the held-out ones'
        # without training pairs): a numeric threshold means "above the training mean".
        ens_thr = config.threshold if config.threshold in ("median", "match_rate") else 0.0
        if config.threshold == "train_midpoint":
            ens_train, _ = ensemble(train_rewards, reference=train_rewards)
            ens_thr = float(midpoint_threshold(*np.split(ens_train[None], 2, axis=1))[0])
        mean, _ = ensemble(rewards, reference=train_rewards)
        p = len(test)
        pairs = np.stack([np.arange(p), np.arange(p) + p], axis=1)
        record["seed_correlation_mean"] = float(corr[~np.eye(len(corr), dtype=bool)].mean())
        record["ensemble"] = evaluate_rewards(mean, true, pairs=pairs, threshold=ens_thr).as_dict()
        record["disagreement"] = disagreement_predicts_error(
            rewards, true, threshold=ens_thr, reference=train_rewards).as_dict()
    return record, rewards


def refresh_failures(model: RewardModel, params: Any, train: PairData, config: IRLTrainConfig,
                     mesh: Mesh | None = None) -> tuple[jax.Array, dict]:
    """FA-IRL failure flags of every training pair under each seed's current reward.

    Returns (flags [S, P] float32, {"failures": per-seed shares of failures,
    misclassified and near-tie pairs, and the tie threshold δ}), the latter
    logged with the epoch. No gradient: the flags are data for the epoch. With
    ``mesh`` (``params`` on it) the scoring is split over its devices.
    """
    r_e, r_b = np.split(pair_rewards(model, params, train, config.eval_batch_size, mesh), 2, axis=1)
    loss = config.loss
    tie = jax.vmap(lambda m: tie_threshold(m, rule=loss.failure.tie_rule,
                                           scale=loss.failure.tie_scale,
                                           margin=loss.effective_margin))(jnp.asarray(r_e - r_b))
    flags = jax.vmap(failure_flags)(jnp.asarray(r_e, jnp.float32), jnp.asarray(r_b, jnp.float32),
                                    tie)
    shares = {k: np.asarray(v).mean(1).tolist() for k, v in flags.items()}
    return flags["failures"], {"failures": {**shares, "tie_threshold": np.asarray(tie).tolist()}}


@dataclasses.dataclass
class IRLResult:
    """What :func:`train_irl` returns: final state, per-epoch records, test rewards [S, 2P]."""

    state: IRLState
    history: list[dict]
    test_rewards: np.ndarray


def train_irl(model: RewardModel, train: PairData, test: PairData, config: IRLTrainConfig,
              workdir: str | pathlib.Path | None = None, resume: bool = False,
              progress: bool = True, save_models: bool = True,
              mesh: Mesh | None = None) -> IRLResult:
    """Trains ``config.num_seeds`` reward models, evaluating on ``test`` after each epoch.

    With ``workdir``: Orbax checkpoints every epoch in ``workdir/checkpoints``
    (``resume`` continues from the latest, with identical results), one
    line per epoch in ``workdir/irl_metrics.jsonl`` as it finishes (see
    :class:`~jaxirl.metrics_log.MetricsLog`), the metrics JSON
    ``workdir/irl_metrics.json`` at the end and, with ``save_models``, one
    reward model folder per seed ``workdir/reward_models/seed_<seed>``.
    On ``mesh`` (default: one device) the state stays sharded across epochs and
    every minibatch is split over its devices; with several processes all of them
    checkpoint, and only process 0 writes files and shows progress.
    """
    from tqdm import tqdm

    mesh = parallel.make_mesh() if mesh is None else mesh
    epoch_fn = compile_epoch(model, config, mesh)
    state = parallel.place(init_state(model, config), state_shardings(model, config, mesh))
    history: list[dict] = []
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints") if workdir else None
    if not resume and ckpt is not None and ckpt.latest_step() is not None:
        latest = ckpt.latest_step()
        ckpt.close()
        raise CheckpointError(f"'{ckpt.directory}' already holds checkpoints (latest epoch "
                              f"{latest}); pass resume=True to continue them")
    # What the state depends on; ``epochs`` only ends the loop, so a run may be extended.
    settings = {"train": {k: v for k, v in train_settings(config).items() if k != "epochs"},
                "reward_model": model.config}
    if resume and ckpt is not None and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state, settings=settings)
        history = list(meta.get("history", []))[: int(parallel.to_host(state.epoch))]
    done = int(parallel.to_host(state.epoch))
    main = parallel.is_main_process()
    metrics_log = (MetricsLog(pathlib.Path(workdir) / METRICS_STREAM, resume_step=done,
                              tag_prefix="irl/") if workdir and main else None)
    features = parallel.replicate(mesh, train.features)
    rewards = None
    try:
        for epoch in tqdm(range(done, config.epochs), desc="irl", initial=done,
                          total=config.epochs, disable=not (progress and main)):
            t0 = time.perf_counter()
            indices, weights = epoch_minibatches(len(train), epoch, config)
            failures, counts = None, {}
            if config.loss.uses_failure_flags:
                failures, counts = refresh_failures(model, state.params, train, config, mesh)
            state, stats = epoch_fn(state, features, indices, weights, failures)
            stats = parallel.to_host(stats)
            check_metrics(stats, f"IRL epoch {epoch + 1}", ("loss", "grad_norm", "params_finite"),
                          hint=kept_checkpoint(ckpt))
            t1 = time.perf_counter()
            record, rewards = evaluate_epoch(model, state.params, test, config, train, mesh)
            record = {"epoch": epoch + 1, "train": {k: np.asarray(v).tolist()
                                                    for k, v in stats.items()},
                      **record, **counts, "time_train_s": t1 - t0,
                      "time_eval_s": time.perf_counter() - t1}
            history.append(record)
            if metrics_log is not None:
                metrics_log.write(epoch + 1, record)
            if ckpt is not None:
                ckpt.save(epoch + 1, state, metadata={"history": history}, settings=settings)
    finally:
        if metrics_log is not None:
            metrics_log.close()
        if ckpt is not None:
            ckpt.close()
    if rewards is None:  # resumed after the last epoch: nothing ran
        _, rewards = evaluate_epoch(model, state.params, test, config, train, mesh)
    if workdir is not None:
        _write_outputs(pathlib.Path(workdir), model, state, history, config, save_models)
    return IRLResult(state, history, rewards)


def _write_outputs(workdir, model, state, history, config, save_models):
    loss = dataclasses.asdict(config.loss)
    blob = {"train_config": {**dataclasses.asdict(config), "loss": loss},
            "reward_model": dataclasses.asdict(model.config), "history": history}
    if parallel.is_main_process():
        runs.write_text_atomic(workdir / METRICS_FILE, json.dumps(blob, indent=1) + "\n")
    if not save_models:
        return
    params_all = parallel.to_host(state.params)
    for s in range(config.num_seeds):
        params = jax.tree_util.tree_map(lambda x, s=s: x[s], params_all)
        final = history[-1]["per_seed"][s] if history else {}
        save_reward_model(workdir / "reward_models" / f"seed_{config.seed + s}", model, params,
                          extra={"seed": config.seed + s, "loss": loss, "epochs": config.epochs,
                                 "heldout_metrics": final})
