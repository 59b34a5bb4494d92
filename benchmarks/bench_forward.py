"""Forward-pass tokens/s: jaxirl's jitted forward (float32 and bf16) vs transformers.

Every side computes the full [B, T, V] float32 logits of the same weights on an
all-ones attention mask. The peers are transformers eager (``torch.no_grad``, SDPA
attention) and, with ``compiled_peer``, the same model under
``torch.compile(dynamic=False)`` (one static-shape graph per sequence length).
The roofline is the forward's FLOPs over the float32 matmul peak (the better of
MKL and XLA) or, if larger, its bytes (weights and logits) over the bandwidth.
Run alone with ``python -m benchmarks.bench_forward``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import common, roofline


def make_jax_forward(model):
    """jit(params, ids [B, T], mask [B, T]) -> logits [B, T, V] float32."""

    @jax.jit
    def forward(params, input_ids, attention_mask):
        return model.apply({"params": params}, input_ids, attention_mask).logits

    return forward


def compiled_torch(torch_model):
    """``torch.compile`` of the model, shape-specialised (compiled lazily, at its first call).

    ``dynamic=False``: each sequence length gets its own static-shape graph, as jaxirl's
    jit does, rather than a dynamic-shape recompile when a second length arrives.
    """
    import torch

    return torch.compile(torch_model, dynamic=False)


def forward_pair(torch_model, jax_model, params, batch: int, seq: int, repeats: int = 3,
                 seed: int = 0, machine: roofline.Machine | None = None,
                 compiled_model=None, bf16: bool = True) -> dict[str, Any]:
    """Times one (batch, seq) forward on every side; returns a result row (times in s).

    Sides: jaxirl float32, jaxirl bf16 (with ``bf16``), HF eager, and HF under
    ``torch.compile`` (with ``compiled_model``; where it fails, the row's
    ``compiled_peer_error`` says why and its columns are NaN).
    """
    import torch

    vocab = jax_model.config.vocab_size
    ids = np.random.RandomState(seed).randint(0, vocab, size=(batch, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    forward = make_jax_forward(jax_model)
    forward_bf16 = make_jax_forward(jax_model.clone(dtype=jnp.bfloat16))
    j_ids, j_mask = jnp.asarray(ids), jnp.asarray(mask)
    t_ids, t_mask = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))

    def torch_forward(model=torch_model):
        with torch.no_grad():
            return model(input_ids=t_ids, attention_mask=t_mask).logits

    sides = {"jax": lambda: forward(params, j_ids, j_mask).block_until_ready(),
             "torch": torch_forward}
    if bf16:
        sides["bf16"] = lambda: forward_bf16(params, j_ids, j_mask).block_until_ready()
    error, compile_s = None, float("nan")
    if compiled_model is not None:
        error, compile_s = common.try_peer(lambda: torch_forward(compiled_model))
    if compiled_model is not None and error is None:
        sides["compiled"] = lambda: torch_forward(compiled_model)
    timings = dict(zip(sides, common.time_interleaved(list(sides.values()), repeats), strict=True))
    jax_t, torch_t = timings["jax"], timings["torch"]
    tokens = batch * seq
    nan = float("nan")
    row = {"batch": batch, "seq": seq, "tokens": tokens,
           **common.throughput_row(jax_t, torch_t, tokens),
           "bf16_compile_s": nan, "bf16_s": nan, "bf16_tok_s": nan, "bf16_speedup": nan,
           "compiled_torch_compile_s": compile_s, "compiled_torch_tok_s": nan,
           "compiled_speedup": nan, "compiled_peer_error": error}
    if bf16:
        bf16_t = timings["bf16"]
        row.update(bf16_compile_s=bf16_t.first_s, bf16_s=bf16_t.median_s,
                   bf16_tok_s=tokens / bf16_t.median_s,
                   bf16_speedup=common.ratio(tokens / bf16_t.median_s, tokens / torch_t.median_s))
    if "compiled" in timings:
        compiled_t = timings["compiled"]
        row.update(compiled_torch_warmup_s=compiled_t.first_s,
                   compiled_torch_tok_s=tokens / compiled_t.median_s,
                   compiled_speedup=common.ratio(row["jaxirl_tok_s"], tokens / compiled_t.median_s))
    if machine is not None:
        work = roofline.forward_work(jax_model.config, batch, seq)
        row.update(roofline.roofline_columns(work, machine, jax_t.median_s))
        # The denominator: MKL's float32 peak.
        row["mkl_roofline_s"] = work.roofline_s(machine.mkl_f32_peak, machine.bandwidth)
        row["mkl_share"] = roofline.share(row["mkl_roofline_s"], jax_t.median_s)
        if bf16:
            # 2-byte weights, the least traffic, as the other bf16 rooflines count (rows
            # committed before counted 4 bytes; they were compute-bound, so same value).
            bf16_work = roofline.forward_work(jax_model.config, batch, seq, itemsize=2)
            row.update(roofline.roofline_columns(bf16_work, machine, row["bf16_s"], "bfloat16",
                                                 "bf16_"))
    return row


def run(shapes: Sequence[str] = ("tiny", "pythia-70m"), batch: int = 8,
        seqs: Sequence[int] = (128, 512), repeats: int = 3, machine: roofline.Machine | None = None,
        compiled_peer: bool = True) -> list[dict[str, Any]]:
    """Forward tokens/s for every shape x sequence length; one row each, plus headline rows."""
    rows = []
    for shape in shapes:
        torch_model, jax_model, params = common.build_pair(shape)
        compiled = compiled_torch(torch_model) if compiled_peer else None
        for seq in seqs:
            row = forward_pair(torch_model, jax_model, params, batch, seq, repeats,
                               machine=machine, compiled_model=compiled)
            rows.append({"benchmark": "forward", "shape": shape, **row})
    if machine is not None:
        last = rows[-1]  # the largest shape and sequence: the headline
        what = f"forward {last['shape']}, {last['batch']} x {last['seq']}"
        # The denominator is MKL's peak, the better one on the Intel cores it was
        # written on; on AMD cores MKL runs far below XLA (119 against 270 GFLOP/s on a
        # Zen 5 core), so the lead table takes the machine's peak, the better of the two.
        roof = last["tokens"] / last["roofline_s"]
        rows.append(common.headline(f"{what}, float32", "tokens/s", "HF eager",
                                    last["torch_tok_s"], last["jaxirl_tok_s"], roof))
        if compiled_peer:
            rows.append(common.headline(f"{what}, float32", "tokens/s", "HF torch.compile",
                                        last["compiled_torch_tok_s"], last["jaxirl_tok_s"], roof))
        rows.append(common.headline(f"{what}, bf16", "tokens/s", "HF eager", last["torch_tok_s"],
                                    last["bf16_tok_s"],
                                    last["tokens"] / last["bf16_roofline_s"]))
    return rows


COLUMNS = ["shape", "batch", "seq", "jaxirl_compile_s", "jaxirl_tok_s", "bf16_tok_s",
           "torch_tok_s", "compiled_torch_tok_s", "speedup", "compiled_speedup", "bf16_speedup",
           "gflop", "mbytes", "roofline_s", "share", "mkl_share", "bf16_roofline_s", "bf16_share"]

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when this module is the program (absl flags are global)."""
    flags.DEFINE_list("shapes", ["tiny", "pythia-70m"], "Model shapes: tiny, pythia-70m.")
    flags.DEFINE_integer("batch", 8, "Batch size.")
    flags.DEFINE_list("seqs", ["128", "512"], "Sequence lengths.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")
    flags.DEFINE_bool("compiled_peer", True, "Also time transformers under torch.compile.")


def main(argv):
    del argv
    machine = roofline.measure_machine()
    rows = run(FLAGS.shapes, FLAGS.batch, [int(s) for s in FLAGS.seqs], FLAGS.repeats, machine,
               FLAGS.compiled_peer)
    print(common.markdown_table([r for r in rows if r["benchmark"] == "forward"], COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
