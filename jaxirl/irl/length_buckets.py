"""Left-padded texts of very different lengths in fixed-shape batches: one width per bucket.

Demonstrations are padded to the longest text (88 tokens on the default study)
while most are far shorter (median 12-18). Running each batch at that width
multiplies the work by the padding; running each at its own longest row would
compile a program per width. Here rows are sorted by length and each batch is
cut to the smallest width of a short geometric ladder (16, 32, 64, ..., the full
width) that holds its longest row: at most twice the real work, and a handful of
compiled shapes. Left padding keeps every row's real tokens in the last columns,
so a batch is the last ``width`` columns of its rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

SMALLEST_WIDTH = 16


def bucket_widths(full_width: int, smallest: int = SMALLEST_WIDTH) -> list[int]:
    """The ladder ``smallest, 2 * smallest, ...`` below ``full_width``, then ``full_width``."""
    widths = []
    width = smallest
    while width < full_width:
        widths.append(width)
        width *= 2
    return widths + [full_width]


def bucket_width(length: int, full_width: int, smallest: int = SMALLEST_WIDTH) -> int:
    """The smallest width of :func:`bucket_widths` that holds ``length`` tokens."""
    return next(w for w in bucket_widths(full_width, smallest) if w >= length)


def length_batches(mask: np.ndarray, batch_size: int, smallest: int = SMALLEST_WIDTH,
                   multiple: int = 1) -> Iterator[tuple[np.ndarray, int, int]]:
    """Batches of rows of a left-padded [N, W] mask, shortest rows first.

    Yields ``(rows, keep, width)``: ``rows`` [batch_size] int indices (the last batch
    is topped up with repeats of its last row, so every batch has one shape),
    ``keep`` the number of real rows in it, and ``width`` the columns it needs.
    The batch size is rounded up to a multiple of ``multiple`` (a mesh's batch split).
    """
    mask = np.asarray(mask)
    n, full = mask.shape
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    batch_size = -(-max(1, min(batch_size, n)) // multiple) * multiple
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        keep = len(rows)
        rows = np.concatenate([rows, np.full(batch_size - keep, rows[-1])]).astype(np.int64)
        yield rows, keep, bucket_width(int(lengths[rows].max()), full, smallest)
