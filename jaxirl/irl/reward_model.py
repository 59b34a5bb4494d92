"""The learned reward: a GPT-NeoX backbone with a Flax head on the last real token.

The backbone is split at block ``first = L - k`` (``k = num_layers_unfrozen``):

* a FROZEN bottom (embedding and blocks ``0 .. first-1``) whose output, the
  "features", depends on no trainable parameter and is computed once per text;
* a TRAINABLE top (blocks ``first .. L-1``, the final layer norm, pooling and
  the head) whose parameters are what IRL learns and what is checkpointed.

``k = 0`` trains the head only; the features are then the pooled final hidden
states [N, H] and one IRL step is a matmul. ``0 < k`` trains the top k blocks
(features: the residual stream [N, T, H] entering block ``first``); ``k < 0``
trains everything including the embedding (features: the token ids).

Pooling reads the hidden state at the LAST NON-PADDING token of each row (or
the mean / max over real tokens), so left and right padding give the same
reward; the reference (ai4ai-lab/irl_for_llms) reads position -1, which is
padding for all but the longest text of a right-padded batch. The Flax
modules live in :mod:`jaxirl.irl.reward_net`.

Head forms (``head``):
  * ``"reference"``: the reference's bias-free Linear(H -> 2) with reward
    ``-output[..., -1]``;
  * ``"scalar"``: Linear(H -> 1) with a bias.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax.sharding import Mesh

from jaxirl import parallel, runs
from jaxirl.checkpoint import Checkpointer
from jaxirl.data.tokenization import pad_token_id
from jaxirl.errors import CheckpointError, ConfigError, RewardError
from jaxirl.irl.length_buckets import length_batches
from jaxirl.irl.reward_net import FrozenTrunk, RewardHead, RewardTop
from jaxirl.models.gpt_neox_config import GPTNeoXConfig
from jaxirl.models.hf_export import load_backbone
from jaxirl.models.hf_io import load_tokenizer

HEADS = ("reference", "scalar")
POOLINGS = ("last", "mean", "max")
TRUNCATION_SIDES = ("left", "right")
CONFIG_FILE = "reward_model.json"
PARAMS_DIR = "params"
HF_DIR = "hf"
# 2: the folder holds the transformers export (HF_DIR) and the params the final norm.
FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class RewardModelConfig:
    """What a learned reward model is made of; stored as ``reward_model.json``.

    Attributes:
      base_model: GPT-NeoX folder (or hub id) whose weights initialise the backbone.
      head: ``"reference"`` (Linear(H->2), no bias, reward = -out[..., -1]) or
        ``"scalar"`` (Linear(H->1) with bias).
      num_layers_unfrozen: k; 0 trains the head only, k > 0 the top k blocks
        and the final layer norm, k < 0 everything.
      max_length: token budget per text; longer texts are truncated.
      pooling: ``"last"`` (hidden state of the last real token), ``"mean"`` or
        ``"max"`` (per-dimension mean / max over real tokens).
      truncation_side: ``"left"`` keeps a long text's END (the continuation a
        policy is rewarded for), ``"right"`` its beginning (HF's default).
    """

    base_model: str
    head: str = "reference"
    num_layers_unfrozen: int = 0
    max_length: int = 100
    pooling: str = "last"
    truncation_side: str = "left"

    def __post_init__(self):
        if not str(self.base_model):
            raise ConfigError("reward model field 'base_model' is empty")
        for field, allowed in (("head", HEADS), ("pooling", POOLINGS),
                               ("truncation_side", TRUNCATION_SIDES)):
            if getattr(self, field) not in allowed:
                raise ConfigError(f"reward model field '{field}' must be one of "
                                  f"{', '.join(allowed)}, got {getattr(self, field)!r}")
        if self.max_length < 1:
            raise ConfigError(f"reward model field 'max_length' must be >= 1, got {self.max_length}")
        if self.num_layers_unfrozen < -1:
            raise ConfigError(f"reward model field 'num_layers_unfrozen' must be >= -1 (-1: all "
                              f"layers), got {self.num_layers_unfrozen}")

    def first_block(self, num_layers: int) -> int:
        """Index of the first trainable block (``num_layers``: head only; 0 with k<0 too)."""
        if self.num_layers_unfrozen < 0:
            return 0
        return max(num_layers - self.num_layers_unfrozen, 0)

    def trains_embedding(self) -> bool:
        return self.num_layers_unfrozen < 0


# ------------------------------------------------------------------ tokenization


def tokenize_texts(texts: Sequence[str], tokenizer: Any, max_length: int,
                   truncation_side: str = "left", pad_to_multiple_of: int = 8,
                   width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> left-padded (ids [N, W] int32, mask [N, W] int32), truncated to max_length.

    ``W`` is the longest row rounded up to ``pad_to_multiple_of`` (never past
    ``max_length``), or ``width`` when given (>= the longest row).
    """
    if isinstance(texts, str):
        raise RewardError("expected a sequence of texts, got a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RewardError(f"text {i} is of type {type(text).__name__}, not a string")
    # verbose=False: truncation is done below, so the "longer than model_max_length"
    # warning (the exported tokenizer's max is max_length) would be noise.
    ids = tokenizer(texts, add_special_tokens=True, truncation=False, padding=False,
                    return_attention_mask=False, verbose=False)["input_ids"] if texts else []
    rows = []
    for i, seq in enumerate(ids):
        if not seq:
            raise RewardError(f"text {i} ({texts[i]!r:.40}) tokenizes to no tokens; "
                              "a reward of nothing is undefined")
        rows.append(seq[-max_length:] if truncation_side == "left" else seq[:max_length])
    longest = max((len(r) for r in rows), default=1)
    if width is None:
        width = min(-(-longest // pad_to_multiple_of) * pad_to_multiple_of, max_length)
    elif width < longest:
        raise RewardError(f"width {width} is shorter than the longest text ({longest} tokens)")
    out = np.full((len(rows), width), pad_token_id(tokenizer), np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        out[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return out, mask


# ------------------------------------------------------------------ the model


@dataclasses.dataclass(eq=False)
class RewardModel:
    """A loaded reward model: frozen trunk params, trainable params and compiled functions.

    Attributes:
      config: the :class:`RewardModelConfig`.
      lm_config: the backbone's GPT-NeoX config.
      tokenizer: the backbone's tokenizer.
      frozen_params: params of the frozen bottom (embedding, lower blocks; final
        norm too when k = 0).
      params: trainable params: the top's blocks (``layers_i``), ``final_layer_norm``
        and ``embed_in`` when trained, and ``head``.
      dtype: compute dtype of the backbone's matmuls (parameters stay float32).
      remat: recompute the trained blocks' activations in the backward pass
        (``jax.checkpoint``); a memory setting, not part of the saved model.
    """

    config: RewardModelConfig
    lm_config: GPTNeoXConfig
    tokenizer: Any
    frozen_params: Any
    params: Any
    dtype: Any = jnp.float32
    remat: bool = False

    def __post_init__(self):
        # Rows are padded to max_length, and the backbone (like transformers' export,
        # whose tokenizer stops at the context) cannot place tokens past its context.
        context = self.lm_config.max_position_embeddings
        if self.config.max_length > context:
            raise ConfigError(f"reward model field 'max_length' is {self.config.max_length} but "
                              f"'{self.config.base_model}' has a {context}-token context "
                              f"(max_position_embeddings): use at most {context}")
        first = self.config.first_block(self.lm_config.num_hidden_layers)
        emb = self.config.trains_embedding()
        self.trunk = FrozenTrunk(self.lm_config, first, emb, self.config.pooling, self.dtype)
        self.top = RewardTop(self.lm_config, first, emb, self.config.head, self.config.pooling,
                             self.dtype, remat=self.remat)

    # Pure functions (jit / vmap / grad them freely).
    def features_fn(self, frozen_params, input_ids, attention_mask):
        """Frozen features of ids [B, T] (see :class:`FrozenTrunk`)."""
        return self.trunk.apply({"params": frozen_params}, input_ids, attention_mask)

    def rewards_fn(self, params, features, attention_mask) -> chex.Array:
        """Rewards [B] float32 of features [B, ...] with mask [B, T]."""
        return self.top.apply({"params": params}, features, attention_mask)

    # Host-side helpers.
    def tokenize(self, texts: Sequence[str], width: int | None = None):
        """(ids, mask) [N, W], see :func:`tokenize_texts`."""
        return tokenize_texts(texts, self.tokenizer, self.config.max_length,
                              self.config.truncation_side, width=width)

    def features(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 batch_size: int = 64, mesh: Mesh | None = None) -> np.ndarray:
        """Frozen features of all N left-padded rows [N, W] (see :class:`FrozenTrunk`).

        Rows run ``batch_size`` at a time in length buckets (:mod:`jaxirl.irl.length_buckets`);
        per-token features come back [N, W, H], zero on padding. With ``mesh`` the rows of
        each batch are split over it and the frozen trunk is placed by the parameter rule
        (replicated, or split over ``fsdp``).
        """
        if self.trunk.trains_embedding:
            return np.asarray(input_ids)  # the trainable top embeds the ids itself
        frozen = self.frozen_params if mesh is None else parallel.place_params(
            mesh, self.frozen_params)
        n, width = attention_mask.shape
        per_token = self.trunk.first_block < self.lm_config.num_hidden_layers
        out = None
        for rows, keep, w in length_batches(attention_mask, batch_size,
                                            multiple=parallel.rows_multiple(1, mesh)):
            f = parallel.apply_rows(lambda i, m: _trunk_jit(self.trunk, frozen, i, m),
                                    (input_ids[rows, -w:], attention_mask[rows, -w:]), mesh)[:keep]
            if out is None:
                out = np.zeros((n, width, *f.shape[2:]) if per_token else (n, *f.shape[1:]), f.dtype)
            if per_token:
                out[rows[:keep], width - w:] = f
            else:
                out[rows[:keep]] = f
        return out

    def score_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                     params: Any = None, batch_size: int = 64) -> np.ndarray:
        """Rewards [N] float32 of left-padded token rows [N, T], in length buckets.

        ``params`` defaults to ``self.params``.
        """
        params = self.params if params is None else params
        out = np.zeros(len(input_ids), np.float32)
        for rows, keep, w in length_batches(attention_mask, batch_size):
            out[rows[:keep]] = np.asarray(_score_jit(
                self.trunk, self.top, self.frozen_params, params, input_ids[rows, -w:],
                attention_mask[rows, -w:]))[:keep]
        return out

    def score(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Learned rewards of ``texts``, float32 [N]; higher = more expert-like."""
        # Padded to max_length whatever the texts, so that the bucket widths (and the
        # compiled programs) are the same from call to call.
        ids, mask = self.tokenize(texts, width=self.config.max_length)
        if len(ids) == 0:
            return np.zeros((0,), np.float32)
        return self.score_tokens(ids, mask, batch_size=batch_size)

    def with_params(self, params: Any) -> RewardModel:
        """The same model with other trainable params (shares the compiled functions' code)."""
        return dataclasses.replace(self, params=params)


# Modules are hashable static arguments: equal configs share one compiled program.
@functools.partial(jax.jit, static_argnums=0)
def _trunk_jit(trunk, frozen_params, input_ids, attention_mask):
    return trunk.apply({"params": frozen_params}, input_ids, attention_mask)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _score_jit(trunk, top, frozen_params, params, input_ids, attention_mask):
    features = trunk.apply({"params": frozen_params}, input_ids, attention_mask)
    return top.apply({"params": params}, features, attention_mask)


def split_params(config: RewardModelConfig, lm_config: GPTNeoXConfig, lm_params: Any
                 ) -> tuple[dict, dict]:
    """Full GPT-NeoX params -> (frozen bottom, trainable backbone top), head excluded."""
    num_layers = lm_config.num_hidden_layers
    first = config.first_block(num_layers)
    head_only = first >= num_layers and not config.trains_embedding()
    frozen, trainable = {}, {}
    for name, sub in lm_params.items():
        if name in ("embed_out", "value_head"):
            continue
        if name == "embed_in":
            (trainable if config.trains_embedding() else frozen)[name] = sub
        elif name.startswith("layers_"):
            (trainable if int(name.split("_")[1]) >= first else frozen)[name] = sub
        elif name == "final_layer_norm":
            (frozen if head_only else trainable)[name] = sub
    return frozen, trainable


def init_head(config: RewardModelConfig, hidden_size: int, key: chex.PRNGKey) -> Any:
    """Fresh head params (Flax's lecun-normal init) from ``key``."""
    return RewardHead(config.head).init(key, jnp.zeros((1, hidden_size)))["params"]


def init_reward_model(config: RewardModelConfig, seed: int = 0, dtype: Any = jnp.float32,
                      remat: bool = False) -> RewardModel:
    """Loads the backbone of ``config.base_model`` and adds a head initialised from ``seed``.

    The base model is a causal LM folder (or hub id) or a transformers sequence
    classifier / trunk folder (whose score head is not used). ``dtype`` is the compute
    dtype of the backbone's matmuls (see :class:`RewardModel`); ``remat`` recomputes
    the trained blocks' activations in the backward pass.
    """
    lm_config, lm_params = load_backbone(config.base_model)
    layers = lm_config.num_hidden_layers
    if config.num_layers_unfrozen > layers:
        raise ConfigError(f"reward model field 'num_layers_unfrozen' is "
                          f"{config.num_layers_unfrozen} but '{config.base_model}' has {layers} "
                          f"layers: use 0..{layers}, or -1 for all")
    tokenizer = load_tokenizer(config.base_model)
    frozen, trainable = split_params(config, lm_config, lm_params)
    trainable["head"] = init_head(config, lm_config.hidden_size, jax.random.PRNGKey(seed))
    return RewardModel(config, lm_config, tokenizer, frozen, trainable, dtype, remat)


# ------------------------------------------------------------------ save / load


def save_reward_model(path: str | os.PathLike, model: RewardModel, params: Any = None,
                      extra: dict | None = None) -> pathlib.Path:
    """Writes a self-contained reward model folder.

    ``hf/``: the transformers export (:func:`~jaxirl.irl.reward_export.save_hf_backbone`:
    a ``GPTNeoXForSequenceClassification`` folder with tokenizer and model card; the
    trunk alone for pooling other than "last"), which also holds the frozen trunk;
    ``params/``: the trainable params and the final layer norm (Orbax, exact);
    ``reward_model.json``: config, format and ``extra``. ``config.base_model`` is kept
    (as an absolute path when it is a local folder) for the record only: loading
    reads ``hf/``, so the folder can move. The model is written into a staging folder
    and swapped in, so an old copy at ``path`` survives until the new one is complete.
    """
    from jaxirl.irl.reward_export import save_hf_backbone

    final = pathlib.Path(path)
    main = parallel.is_main_process()
    path = _staging_dir(final)
    params = model.params if params is None else params
    cfg = dataclasses.asdict(model.config)
    if pathlib.Path(os.path.expanduser(cfg["base_model"])).exists():
        cfg["base_model"] = str(pathlib.Path(os.path.expanduser(cfg["base_model"])).resolve())
    blob = {"format_version": FORMAT_VERSION, "config": cfg, **(extra or {})}
    if main:  # every process saves its shards of the params below, process 0 the rest
        (path / CONFIG_FILE).write_text(json.dumps(blob, indent=2) + "\n")
        save_hf_backbone(model, path / HF_DIR, params, extra)
    ckpt = Checkpointer(path / PARAMS_DIR, max_to_keep=1)
    try:
        ckpt.save(0, _with_final_norm(model, params), metadata=blob, force=True)
    finally:
        ckpt.close()
    parallel.sync(f"reward model {final} written")
    if main:
        runs.swap_in(path, final)
    parallel.sync(f"reward model {final} in place")
    return final


def _staging_dir(final: pathlib.Path) -> pathlib.Path:
    """An empty folder to build ``final`` in: :func:`jaxirl.runs.staging_dir`, or with several
    processes one folder of a fixed name that all of them write into."""
    if jax.process_count() == 1:
        path = runs.staging_dir(final)
        path.mkdir(parents=True)
        return path
    path = final.with_name(f".{final.name}.building-all-processes")
    if parallel.is_main_process():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    parallel.sync(f"reward model {final} staged")
    return path


def _with_final_norm(model: RewardModel, params: Any) -> dict:
    # The export folds a scalar head's bias into the final norm's bias, so the exact norm
    # is saved with the params even where it is frozen (head-only training).
    if "final_layer_norm" in params:
        return params
    return {**params, "final_layer_norm": model.frozen_params["final_layer_norm"]}


def read_reward_model_config(path: str | os.PathLike) -> tuple[RewardModelConfig, dict]:
    """(config, whole JSON) of a saved reward model; CheckpointError naming the file if bad."""
    runs.recover(path)  # a save killed between its two renames left the old copy aside
    file = pathlib.Path(path) / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"'{path}' is not a reward model folder (no {CONFIG_FILE}, "
                              "nor a transformers config.json)")
    try:
        blob = json.loads(file.read_text())
        return RewardModelConfig(**blob["config"]), blob
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{file} is malformed: {type(e).__name__}: {e}") from None


def load_reward_model(path: str | os.PathLike) -> RewardModel:
    """Rebuilds a reward model saved by :func:`save_reward_model` (identical scores).

    Also reads a transformers sequence classifier folder, such as the ``hf/`` export
    alone (:func:`~jaxirl.irl.reward_export.load_hf_reward_model`). Folders of format 1
    (before ``hf/``) re-read their trunk from ``base_model``.
    """
    path = pathlib.Path(path)
    if not (path / CONFIG_FILE).is_file() and (path / "config.json").is_file():
        from jaxirl.irl.reward_export import load_hf_reward_model

        return load_hf_reward_model(path)
    config, blob = read_reward_model_config(path)
    has_hf = blob.get("format_version", 1) >= 2 and (path / HF_DIR).is_dir()
    source = dataclasses.replace(config, base_model=str(path / HF_DIR)) if has_hf else config
    template = init_reward_model(source, seed=0)
    target = _with_final_norm(template, template.params) if has_hf else template.params
    ckpt = Checkpointer(path / PARAMS_DIR)
    try:
        params, _ = ckpt.restore(target)
    finally:
        ckpt.close()
    params = jax.tree_util.tree_map(jnp.asarray, params)
    frozen = template.frozen_params
    if has_hf and "final_layer_norm" in frozen:
        frozen = {**frozen, "final_layer_norm": params.pop("final_layer_norm")}
    return RewardModel(config, template.lm_config, template.tokenizer, frozen, params)


# ------------------------------------------------------------------ as a PPO reward


@dataclasses.dataclass(eq=False)
class LearnedReward:
    """PPO reward ``(responses, references | None) -> float32 [N]`` from a learned reward.

    With references (and ``use_references``): r(response) - r(reference), the
    paper's baseline form (its ground truth is -tox(sample) + tox(reference));
    otherwise r(response). ``model`` is anything with ``score(texts, batch_size)``:
    a :class:`RewardModel` or a :class:`~jaxirl.irl.ensemble_reward.RewardEnsemble`.
    """

    model: RewardModel
    use_references: bool = True
    batch_size: int = 64
    # r(reference) of known references (see with_references).
    reference_rewards: dict[str, np.float32] | None = None

    def with_references(self, references: Sequence[str]) -> LearnedReward:
        """A copy that scores ``references`` now, once each, and looks them up later.

        PPO draws each training prompt many times, and its reference with it;
        :class:`~jaxirl.ppo.trainer.PPOTrainer` calls this with its training references.
        The scores come from one pass over the distinct references in their given
        order, so they do not depend on which rollout first drew them (a resumed run
        gets the same ones).
        """
        if not self.use_references:
            return self
        unique = list(dict.fromkeys(references))
        scores = self.model.score(unique, self.batch_size) if unique else np.zeros(0)
        return dataclasses.replace(self, reference_rewards=dict(zip(unique, scores, strict=True)))

    def _reference_rewards(self, references: list[str]) -> np.ndarray:
        known = self.reference_rewards or {}
        missing = [r for r in dict.fromkeys(references) if r not in known]
        if missing:
            known = {**known, **dict(zip(missing, self.model.score(missing, self.batch_size),
                                         strict=True))}
        return np.array([known[r] for r in references], np.float32)

    def __call__(self, responses: Sequence[str],
                 references: Sequence[str] | None = None) -> np.ndarray:
        reward = self.model.score(responses, self.batch_size)
        if references is not None and self.use_references:
            references = list(references)
            if len(references) != len(reward):
                raise RewardError(f"learned reward got {len(reward)} responses but "
                                  f"{len(references)} references")
            reward = reward - self._reference_rewards(references)
        bad = np.flatnonzero(~np.isfinite(reward))
        if bad.size:
            raise RewardError(f"learned reward is {reward[bad[0]]} for response {bad[0]}")
        return reward.astype(np.float32)


def make_learned_reward_fn(path: str | os.PathLike, use_references: bool = True,
                           batch_size: int = 64) -> LearnedReward:
    """The PPO reward of a saved reward model (see :class:`LearnedReward`)."""
    return LearnedReward(load_reward_model(path), use_references, batch_size)


@dataclasses.dataclass(eq=False)
class LearnedRewardScorer:
    """A learned reward in the :class:`~jaxirl.rewards.scorer.ToxicityScorer` interface.

    The reward r is read as log-odds of "not toxic": ``log_odds`` = r and
    ``__call__`` = P(toxic) = sigmoid(-r). The scale of r is whatever IRL
    learned, so these "probabilities" rank texts but are not calibrated.
    """

    model: RewardModel
    batch_size: int = 64
    name: str = "learned"

    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.score(texts, self.batch_size).astype(np.float64)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return scipy.special.expit(-self.log_odds(texts))


def make_learned_scorer(arg: str = "") -> LearnedRewardScorer:
    """The scorer of ``"learned:/path/to/reward_model"`` (see :mod:`jaxirl.pipeline.reward_specs`)."""
    if not arg:
        raise ConfigError("the 'learned' scorer needs a reward model folder: "
                          "'learned:/path/to/reward_model'")
    return LearnedRewardScorer(load_reward_model(arg))
