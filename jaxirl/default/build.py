"""Building the embedded default: a tiny Pythia-architecture model that jaxirl pretrains.

``ensure_default_model()`` returns a standard HF folder (config.json,
model.safetensors, tokenizer.json, prompts.jsonl, the pretraining log
train_metrics.jsonl) under the user cache
(``$JAXIRL_CACHE`` or ``~/.cache/jaxirl``), building it on first use: corpus,
BPE tokenizer, then causal-LM pretraining with ``jaxirl.training.lm``. The
folder name hashes every build setting, so a changed recipe never reuses a
stale model. The build writes into a temporary folder and renames it into
place, so an interrupted build leaves nothing half-written behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import time

import jax
import numpy as np
from tqdm import tqdm

from jaxirl import runs
from jaxirl.default.corpus import build_corpus, write_prompts_jsonl
from jaxirl.default.tokenizer import train_tokenizer
from jaxirl.errors import ConfigError, RunFolderError
from jaxirl.metrics_log import MetricsLog
from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, init_params
from jaxirl.models.gpt_neox_config import GPTNeoXConfig
from jaxirl.models.hf_io import save_pretrained
from jaxirl.training import lm

log = logging.getLogger(__name__)

RECIPE_VERSION = 2
PROMPTS_FILE = "prompts.jsonl"
# Divergence is checked every this many pretraining steps (one device transfer each).
_CHECK_EVERY = 25
TRAIN_METRICS_FILE = "train_metrics.jsonl"


@dataclasses.dataclass(frozen=True)
class DefaultModelSpec:
    """Architecture and pretraining recipe of the embedded default.

    A Pythia-style GPT-NeoX (parallel residual, rotary on 25% of each head,
    untied embeddings, exact GELU), shrunk to train in about two minutes on two
    CPU cores.
    """

    vocab_size: int = 2048
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 256
    train: lm.LMTrainConfig = lm.LMTrainConfig(
        learning_rate=3e-3, warmup_steps=30, total_steps=250, batch_size=32, seq_len=96)
    corpus_seed: int = 0

    def __post_init__(self):
        # Not a field: the recipe's fingerprint (its cache folder) is unchanged.
        if self.train.seq_len > self.max_position_embeddings:
            raise ConfigError(
                f"default model field 'train.seq_len' is {self.train.seq_len} but "
                f"'max_position_embeddings' is {self.max_position_embeddings}: it would train "
                "on sequences past the model's context; lower one or raise the other")

    def model_config(self, eos_token_id: int) -> GPTNeoXConfig:
        return GPTNeoXConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings, rotary_pct=0.25,
            use_parallel_residual=True, tie_word_embeddings=False,
            bos_token_id=eos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id)

    def fingerprint(self) -> str:
        blob = json.dumps({"v": RECIPE_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]


cache_root = runs.cache_root


def default_model_dir(spec: DefaultModelSpec = DefaultModelSpec()) -> pathlib.Path:
    return cache_root() / f"default-model-{spec.fingerprint()}"


def pretrain(spec: DefaultModelSpec, out_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Builds corpus and tokenizer, pretrains the model and saves an HF folder at ``out_dir``.

    Returns a summary: token counts, final train loss, held-out loss and perplexity, seconds.
    """
    start = time.time()
    splits = build_corpus(seed=spec.corpus_seed)
    tokenizer = train_tokenizer(splits.train_texts, vocab_size=spec.vocab_size)
    config = spec.model_config(tokenizer.eos_token_id)
    model = GPTNeoXForCausalLM(config)
    tcfg = spec.train
    blocks = lm.pack_texts(splits.train_texts, tokenizer, tcfg.seq_len)
    heldout = lm.pack_texts(splits.heldout_texts, tokenizer, tcfg.seq_len)
    optimizer = lm.make_optimizer(tcfg)
    state = lm.init_state(init_params(config, jax.random.PRNGKey(tcfg.seed)), optimizer)
    step_fn = lm.make_train_step(model, optimizer)
    batches = lm.iterate_blocks(blocks, tcfg.batch_size, tcfg.seed)
    out = pathlib.Path(out_dir)
    losses, flags = [], []
    with MetricsLog(out / TRAIN_METRICS_FILE, tag_prefix="pretrain/") as metrics_log:
        previous = None
        for step in tqdm(range(1, tcfg.total_steps + 1), desc="pretrain default",
                         disable=not progress):
            state, metrics = step_fn(state, next(batches))
            losses.append(metrics["loss"])
            flags.append(metrics["params_finite"])
            if step % _CHECK_EVERY == 0 or step == tcfg.total_steps:
                lm.check_finite_steps(flags, step - len(flags) + 1)  # one transfer per K steps
                flags = []
            # Logs the step before: reading its values then does not stall the one in flight.
            if previous is not None:
                metrics_log.write(*previous)
            previous = (step, metrics)
        if previous is not None:
            metrics_log.write(*previous)
    train_loss = float(np.mean(jax.device_get(losses[-20:])))
    eval_loss = lm.make_eval_loss(model)
    heldout_loss = float(np.mean([eval_loss(state.params, {"tokens": b, "mask": np.ones_like(b)})
                                  for b in np.array_split(heldout, max(len(heldout) // 64, 1))]))
    save_pretrained(out, config, state.params, tokenizer=tokenizer)
    write_prompts_jsonl(splits, out / PROMPTS_FILE)
    summary = {
        "train_tokens": int(blocks.size),
        "heldout_tokens": int(heldout.size),
        "steps": tcfg.total_steps,
        "tokens_seen": tcfg.total_steps * tcfg.batch_size * tcfg.seq_len,
        "final_train_loss": train_loss,
        "heldout_loss": heldout_loss,
        "heldout_perplexity": float(np.exp(heldout_loss)),
        "seconds": time.time() - start,
        "fingerprint": spec.fingerprint(),
    }
    (out / "build_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def build_manifest(spec: DefaultModelSpec) -> runs.Manifest:
    """The run manifest of a default-model build: its whole recipe."""
    return runs.Manifest.build("default_model", {"recipe_version": RECIPE_VERSION,
                                                 "spec": spec})


def build_default_model(spec: DefaultModelSpec, out_dir: str | os.PathLike,
                        overwrite: bool = False, progress: bool = True
                        ) -> tuple[pathlib.Path, bool]:
    """Builds the model into ``out_dir`` through a staging folder renamed into place.

    An ``out_dir`` holding the finished build of the same recipe is kept as is; any
    other existing folder is refused unless ``overwrite`` (see
    :func:`jaxirl.runs.open_run`), and even then only the build's own files are
    replaced, once the new build is complete. Returns (folder, whether it was built now).
    """
    run = runs.open_run(out_dir, build_manifest(spec), (), overwrite=overwrite, create=False)
    if run.finished:
        return run.path, False
    staged = runs.staging_dir(run.path)
    try:
        summary = pretrain(spec, staged, progress=progress)
        runs.publish(staged, run)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    _log_build(summary)
    return run.path, True


def ensure_default_model(spec: DefaultModelSpec = DefaultModelSpec(), progress: bool = True
                         ) -> pathlib.Path:
    """Returns the folder of the default model, building it first if it is not cached."""
    final = default_model_dir(spec)
    if (final / "build_summary.json").is_file():
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = runs.staging_dir(final)
        staged.mkdir()
    except OSError as e:
        raise RunFolderError(f"cannot write the default model into the cache '{final.parent}' "
                             f"({type(e).__name__}: {e.strerror or e}); set JAXIRL_CACHE to a "
                             "writable folder") from None
    try:
        summary = pretrain(spec, staged, progress=progress)
        runs.RunFolder(staged, build_manifest(spec), (), "new").finish()
        try:
            os.replace(staged, final)
        except OSError:
            if not (final / "build_summary.json").is_file():
                raise
            # Another process finished the same build first; keep theirs.
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    _log_build(summary)
    return final


def _log_build(summary: dict) -> None:
    log.info("built the default model in %.0f s: held-out perplexity %.1f",
             summary["seconds"], summary["heldout_perplexity"])
