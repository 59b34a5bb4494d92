"""Deterministic, resumable prompt minibatches.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so a
run resumed from a checkpoint that stored how many batches it had consumed
(see :func:`data_position`) sees exactly the batches it would have seen.
Batches have a fixed shape ``[B, P]`` (the last partial batch is dropped by
default) so that one compiled program serves the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxirl.data.tokenization import TokenizedPrompts
from jaxirl.errors import ConfigError


def num_batches(num_prompts: int, batch_size: int, drop_last: bool = True) -> int:
    """Batches per epoch."""
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    return num_prompts // batch_size if drop_last else -(-num_prompts // batch_size)


def epoch_order(num_prompts: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """[num_prompts] int64 row order of one epoch, a function of (seed, epoch) only."""
    if seed < 0 or epoch < 0:
        raise ConfigError(f"seed and epoch must be >= 0, got seed={seed} epoch={epoch}")
    if not shuffle:
        return np.arange(num_prompts)
    return np.random.default_rng([seed, epoch]).permutation(num_prompts)


def data_position(batches_consumed: int, num_prompts: int, batch_size: int,
                  drop_last: bool = True) -> tuple[int, int]:
    """(epoch, start_batch) reached after ``batches_consumed`` batches in total."""
    per_epoch = num_batches(num_prompts, batch_size, drop_last)
    if per_epoch == 0:
        raise ConfigError(f"batch_size {batch_size} exceeds the {num_prompts} prompts")
    return divmod(batches_consumed, per_epoch)


def iterate_batches(
    data: TokenizedPrompts,
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    start_batch: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yields the batches of one epoch, from batch ``start_batch`` on.

    Each batch is a dict with
      ``input_ids``, ``attention_mask``: [B, P] int32 (left-padded);
      ``indices``: [B] int32 rows of ``data``;
      ``prompts``: list of B strings; ``references``: list of B strings or None;
      ``epoch``, ``batch_index``: ints, the position of this batch.
    ``B = batch_size``, except a final partial batch when ``drop_last=False``.
    """
    n = len(data)
    per_epoch = num_batches(n, batch_size, drop_last)
    if per_epoch == 0:
        raise ConfigError(f"batch_size {batch_size} exceeds the {n} prompts")
    if not 0 <= start_batch <= per_epoch:
        raise ConfigError(f"start_batch must lie in [0, {per_epoch}], got {start_batch}")
    order = epoch_order(n, seed, epoch, shuffle)
    for b in range(start_batch, per_epoch):
        idx = order[b * batch_size:(b + 1) * batch_size]
        yield {
            "input_ids": data.input_ids[idx],
            "attention_mask": data.attention_mask[idx],
            "indices": idx.astype(np.int32),
            "prompts": [data.prompts[i] for i in idx],
            "references": None if data.references is None else [data.references[i] for i in idx],
            "epoch": epoch,
            "batch_index": b,
        }


def batch_stream(
    data: TokenizedPrompts, batch_size: int, *, seed: int, start_step: int = 0,
    shuffle: bool = True,
) -> Iterator[dict[str, Any]]:
    """Endless full batches across epochs, starting after ``start_step`` batches.

    ``batch_stream(..., start_step=k)`` yields what ``batch_stream(...)`` yields
    after skipping its first ``k`` batches, without computing them.
    """
    epoch, start = data_position(start_step, len(data), batch_size)
    while True:
        yield from iterate_batches(data, batch_size, seed=seed, epoch=epoch, start_batch=start,
                                   shuffle=shuffle)
        epoch, start = epoch + 1, 0
