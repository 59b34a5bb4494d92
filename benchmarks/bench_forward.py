"""Forward-pass tokens/s, float32 CPU: jaxirl's jitted forward vs transformers (torch.no_grad).

Both sides compute the full [B, T, V] logits of the same weights on an all-ones
attention mask. Run alone with ``python -m benchmarks.bench_forward``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import common


def make_jax_forward(model):
    """jit(params, ids [B, T], mask [B, T]) -> logits [B, T, V] float32."""

    @jax.jit
    def forward(params, input_ids, attention_mask):
        return model.apply({"params": params}, input_ids, attention_mask).logits

    return forward


def forward_pair(torch_model, jax_model, params, batch: int, seq: int, repeats: int = 3,
                 seed: int = 0) -> dict[str, Any]:
    """Times one (batch, seq) forward on both sides; returns a result row (times in s)."""
    import torch

    vocab = jax_model.config.vocab_size
    ids = np.random.RandomState(seed).randint(0, vocab, size=(batch, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    forward = make_jax_forward(jax_model)
    j_ids, j_mask = jnp.asarray(ids), jnp.asarray(mask)
    t_ids, t_mask = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))

    def torch_forward():
        with torch.no_grad():
            return torch_model(input_ids=t_ids, attention_mask=t_mask).logits

    jax_t, torch_t = common.time_pair(
        lambda: forward(params, j_ids, j_mask).block_until_ready(), torch_forward, repeats)
    tokens = batch * seq
    return {
        "batch": batch, "seq": seq, "tokens": tokens,
        **common.throughput_row(jax_t, torch_t, tokens),
    }


def run(shapes: Sequence[str] = ("tiny", "pythia-70m"), batch: int = 8,
        seqs: Sequence[int] = (128, 512), repeats: int = 3) -> list[dict[str, Any]]:
    """Forward tokens/s for every shape x sequence length; one row each."""
    rows = []
    for shape in shapes:
        torch_model, jax_model, params = common.build_pair(shape)
        for seq in seqs:
            row = forward_pair(torch_model, jax_model, params, batch, seq, repeats)
            rows.append({"benchmark": "forward", "shape": shape, **row})
    return rows


COLUMNS = ["shape", "batch", "seq", "jaxirl_compile_s", "torch_warmup_s", "jaxirl_tok_s",
           "torch_tok_s", "speedup"]

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when this module is the program (absl flags are global)."""
    flags.DEFINE_list("shapes", ["tiny", "pythia-70m"], "Model shapes: tiny, pythia-70m.")
    flags.DEFINE_integer("batch", 8, "Batch size.")
    flags.DEFINE_list("seqs", ["128", "512"], "Sequence lengths.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")


def main(argv):
    del argv
    rows = run(FLAGS.shapes, FLAGS.batch, [int(s) for s in FLAGS.seqs], FLAGS.repeats)
    print(common.markdown_table(rows, COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
