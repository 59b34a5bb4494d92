"""Generation new tokens/s: jaxirl's jitted KV-cache sampler (float32, bf16) vs transformers.

Every side samples (top-k 30, temperature 1) from the same weights with a KV cache
and EOS disabled, so every row produces exactly ``new_tokens`` tokens (asserted).
The peers are HF ``generate`` eager (its dynamic cache) and, with
``compiled_peer``, ``generate`` with ``cache_implementation="static"`` and a
``torch.compile``-d forward, what a speed-minded PyTorch user runs. jaxirl also
returns each token's log-prob, which PPO needs; HF returns tokens only.

The roofline is bandwidth-bound: each decode step reads every matmul weight and
the filled KV cache (4 bytes per value in float32, 2 in bf16). The bf16 fidelity
columns compare bf16 with float32 on the same tokens: the largest |difference| of
the sampled tokens' log-probs, and the share of positions whose greedy (argmax)
token is the same under both (teacher-forced: the same prefix). With random
weights the logits are nearly flat, so argmax ties flip easily: a worst case.
Run alone with ``python -m benchmarks.bench_generate``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import common, roofline
from jaxirl.generation.sampler import SamplingConfig, generate

TOP_K = 30


def bf16_fidelity(jax_model, params, ids, mask, new_tokens: int, seed: int = 0) -> dict[str, float]:
    """Log-prob error of bf16 sampling against float32, and greedy-token agreement."""
    bf16 = jax_model.clone(dtype=jnp.bfloat16)
    sampling = SamplingConfig(max_new_tokens=new_tokens, top_k=TOP_K, eos_token_id=None,
                              pad_token_id=0)
    out = generate(bf16, params, ids, mask, jax.random.PRNGKey(seed), sampling)
    p = ids.shape[1]
    forward = jax.jit(lambda m, s, a: m.apply({"params": params}, s, a).logits[:, p - 1:-1],
                      static_argnums=0)
    exact = forward(jax_model, out.sequences, out.attention_mask)
    low = forward(bf16, out.sequences, out.attention_mask)
    logp = jnp.take_along_axis(jax.nn.log_softmax(exact), out.tokens[..., None], -1)[..., 0]
    return {"bf16_logprob_max_err": float(jnp.max(jnp.abs(logp - out.logprobs))),
            "bf16_logprob_mean_err": float(jnp.mean(jnp.abs(logp - out.logprobs))),
            "bf16_greedy_agreement": float(jnp.mean(jnp.argmax(low, -1) == jnp.argmax(exact, -1)))}


def generate_pair(torch_model, jax_model, params, batch: int, prompt_len: int, new_tokens: int,
                  repeats: int = 3, seed: int = 0, machine: roofline.Machine | None = None,
                  compiled_peer: bool = True) -> dict[str, Any]:
    """Times sampling ``new_tokens`` after [batch, prompt_len] random prompts on every side."""
    import torch
    import transformers

    vocab = jax_model.config.vocab_size
    ids = np.random.RandomState(seed).randint(0, vocab, size=(batch, prompt_len)).astype(np.int32)
    mask = np.ones_like(ids)

    sampling = SamplingConfig(max_new_tokens=new_tokens, do_sample=True, top_k=TOP_K,
                              eos_token_id=None, pad_token_id=0)
    j_ids, j_mask = jnp.asarray(ids), jnp.asarray(mask)
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 1000))
    bf16_model = jax_model.clone(dtype=jnp.bfloat16)

    def jax_generate(model=jax_model):
        out = generate(model, params, j_ids, j_mask, next(keys), sampling)
        jax.block_until_ready(out.tokens)
        if int(out.num_steps) != new_tokens:
            raise AssertionError(f"jaxirl stopped after {int(out.num_steps)} of {new_tokens} steps")

    # No EOS on the HF side either: generation only ends at max_new_tokens.
    torch_model.generation_config.eos_token_id = None

    def hf_config(**extra):
        return transformers.GenerationConfig(
            do_sample=True, top_k=TOP_K, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens,
            min_new_tokens=0, eos_token_id=None, pad_token_id=0, use_cache=True, **extra)

    t_ids, t_mask = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
    torch.manual_seed(seed)

    eager_config = hf_config()

    def torch_generate(model=torch_model, config=eager_config):
        with torch.no_grad():
            out = model.generate(input_ids=t_ids, attention_mask=t_mask, generation_config=config)
        if out.shape != (batch, prompt_len + new_tokens):
            raise AssertionError(f"HF generate returned shape {tuple(out.shape)}")

    fns = [jax_generate, lambda: jax_generate(bf16_model), torch_generate]
    error, compile_s = None, float("nan")
    if compiled_peer:
        # What a speed-minded PyTorch user runs: a static cache and a compiled forward.
        static = copy.deepcopy(torch_model)
        static.forward = torch.compile(static.forward, fullgraph=True)
        static_config = hf_config(cache_implementation="static")

        def compiled():
            torch_generate(static, static_config)

        error, compile_s = common.try_peer(compiled)
        if error is None:
            fns.append(compiled)
    # The first call of each side is its compile / warm-up; no further untimed call is needed.
    timings = common.time_interleaved(fns, repeats, warmup=0)
    jax_t, bf16_t, torch_t = timings[:3]
    units = batch * new_tokens
    row = {
        "batch": batch, "prompt": prompt_len, "new_tokens": new_tokens,
        **common.throughput_row(jax_t, torch_t, units),
        "bf16_compile_s": bf16_t.first_s, "bf16_s": bf16_t.median_s,
        "bf16_tok_s": units / bf16_t.median_s,
        "bf16_speedup": common.ratio(units / bf16_t.median_s, units / torch_t.median_s),
        "bf16_over_f32": common.ratio(units / bf16_t.median_s, units / jax_t.median_s),
        "compiled_torch_compile_s": compile_s, "compiled_torch_tok_s": float("nan"),
        "compiled_speedup": float("nan"), "compiled_peer_error": error,
        **bf16_fidelity(jax_model, params, j_ids, j_mask, new_tokens, seed),
    }
    if len(timings) > 3:
        compiled_t = timings[3]
        row.update(compiled_torch_warmup_s=compiled_t.first_s,
                   compiled_torch_tok_s=units / compiled_t.median_s,
                   compiled_speedup=common.ratio(row["jaxirl_tok_s"], units / compiled_t.median_s))
    if machine is not None:
        cfg = jax_model.config
        row.update(roofline.roofline_columns(
            roofline.decode_work(cfg, batch, prompt_len, new_tokens, 4), machine, jax_t.median_s))
        row.update(roofline.roofline_columns(
            roofline.decode_work(cfg, batch, prompt_len, new_tokens, 2), machine, bf16_t.median_s,
            "bfloat16", "bf16_"))
    return row


def trained_default_fidelity(batch: int, prompt_len: int, new_tokens: int) -> dict[str, Any]:
    """:func:`bf16_fidelity` on the embedded default model, trained (built if not cached).

    Random weights give nearly flat logits, whose top two differ by less than bf16's
    rounding at many positions; a trained model's are peaked, as a user's are.
    """
    from jaxirl.default.build import ensure_default_model
    from jaxirl.models import load_pretrained

    model, params = load_pretrained(ensure_default_model(progress=False))
    ids = np.random.RandomState(0).randint(0, model.config.vocab_size, size=(batch, prompt_len))
    ids = jnp.asarray(ids, jnp.int32)
    return {"benchmark": "generate_fidelity", "shape": "embedded default (trained)",
            **bf16_fidelity(model, params, ids, jnp.ones_like(ids), new_tokens)}


def run(shapes: Sequence[str] = ("tiny", "pythia-70m"), batch: int = 16, prompt_len: int = 64,
        new_tokens: int = 64, repeats: int = 3, machine: roofline.Machine | None = None,
        compiled_peer: bool = True, trained_default: bool = False) -> list[dict[str, Any]]:
    """Generation new tokens/s for every shape; one row each, plus headline rows.

    Each shape also gets a ``generate_fidelity`` row (bf16 against float32 on random
    weights), and ``trained_default`` adds one for the trained embedded default model.
    """
    rows, fidelity = [], []
    for shape in shapes:
        torch_model, jax_model, params = common.build_pair(shape)
        row = generate_pair(torch_model, jax_model, params, batch, prompt_len, new_tokens,
                            repeats, machine=machine, compiled_peer=compiled_peer)
        rows.append({"benchmark": "generate", "shape": shape, **row})
        fidelity.append({"benchmark": "generate_fidelity", "shape": f"{shape} (random weights)",
                         **{c: row[c] for c in FIDELITY_COLUMNS[1:]}})
    if trained_default:
        fidelity.append(trained_default_fidelity(batch, prompt_len, new_tokens))
    if machine is not None:
        last = rows[-1]
        units = last["batch"] * last["new_tokens"]
        what = f"generation {last['shape']}, batch {last['batch']}"
        rows.append(common.headline(f"{what}, float32", "new tokens/s", "HF eager",
                                    last["torch_tok_s"], last["jaxirl_tok_s"],
                                    units / last["roofline_s"]))
        if compiled_peer:
            rows.append(common.headline(f"{what}, float32", "new tokens/s",
                                        "HF static cache + torch.compile",
                                        last["compiled_torch_tok_s"], last["jaxirl_tok_s"],
                                        units / last["roofline_s"]))
        rows.append(common.headline(f"{what}, bf16", "new tokens/s", "HF eager",
                                    last["torch_tok_s"], last["bf16_tok_s"],
                                    units / last["bf16_roofline_s"]))
    return rows + fidelity


COLUMNS = ["shape", "batch", "prompt", "new_tokens", "jaxirl_compile_s", "jaxirl_tok_s",
           "bf16_tok_s", "torch_tok_s", "compiled_torch_tok_s", "speedup", "compiled_speedup",
           "bf16_speedup", "bf16_over_f32", "gflop", "mbytes", "roofline_s", "share",
           "bf16_roofline_s", "bf16_share"]
FIDELITY_COLUMNS = ["shape", "bf16_logprob_max_err", "bf16_logprob_mean_err",
                    "bf16_greedy_agreement"]

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when this module is the program (absl flags are global)."""
    flags.DEFINE_list("shapes", ["tiny", "pythia-70m"], "Model shapes: tiny, pythia-70m.")
    flags.DEFINE_integer("batch", 16, "Batch size.")
    flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per row.")
    flags.DEFINE_integer("new_tokens", 64, "New tokens per row.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")
    flags.DEFINE_bool("compiled_peer", True, "Also time HF with a static cache + torch.compile.")
    flags.DEFINE_bool("trained_default", True,
                      "Also compare bf16 with float32 on the trained embedded default model.")


def main(argv):
    del argv
    machine = roofline.measure_machine()
    rows = run(FLAGS.shapes, FLAGS.batch, FLAGS.prompt_len, FLAGS.new_tokens, FLAGS.repeats,
               machine, FLAGS.compiled_peer, FLAGS.trained_default)
    print(common.markdown_table([r for r in rows if r["benchmark"] == "generate"], COLUMNS))
    print(common.markdown_table([r for r in rows if r["benchmark"] == "generate_fidelity"],
                                FIDELITY_COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
