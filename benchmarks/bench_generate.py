"""Generation new tokens/s: jaxirl's jitted KV-cache sampler vs transformers ``generate``.

Both sides sample (top-k 30, temperature 1) from the same weights with a KV cache
and EOS disabled, so every row produces exactly ``new_tokens`` tokens on both
sides (asserted). jaxirl additionally returns each token's log-prob, which PPO
needs; HF returns tokens only. Run alone with ``python -m benchmarks.bench_generate``.
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
from jaxirl.generation.sampler import SamplingConfig, generate

TOP_K = 30


def generate_pair(torch_model, jax_model, params, batch: int, prompt_len: int, new_tokens: int,
                  repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Times sampling ``new_tokens`` after [batch, prompt_len] random prompts on both sides."""
    import torch
    import transformers

    vocab = jax_model.config.vocab_size
    ids = np.random.RandomState(seed).randint(0, vocab, size=(batch, prompt_len)).astype(np.int32)
    mask = np.ones_like(ids)

    sampling = SamplingConfig(max_new_tokens=new_tokens, do_sample=True, top_k=TOP_K,
                              eos_token_id=None, pad_token_id=0)
    j_ids, j_mask = jnp.asarray(ids), jnp.asarray(mask)
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 1000))

    def jax_generate():
        out = generate(jax_model, params, j_ids, j_mask, next(keys), sampling)
        jax.block_until_ready(out.tokens)
        if int(out.num_steps) != new_tokens:
            raise AssertionError(f"jaxirl stopped after {int(out.num_steps)} of {new_tokens} steps")

    # No EOS on the HF side either: generation only ends at max_new_tokens.
    torch_model.generation_config.eos_token_id = None
    hf_config = transformers.GenerationConfig(
        do_sample=True, top_k=TOP_K, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens,
        min_new_tokens=0, eos_token_id=None, pad_token_id=0, use_cache=True)
    t_ids, t_mask = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
    torch.manual_seed(seed)

    def torch_generate():
        with torch.no_grad():
            out = torch_model.generate(input_ids=t_ids, attention_mask=t_mask,
                                       generation_config=hf_config)
        if out.shape != (batch, prompt_len + new_tokens):
            raise AssertionError(f"HF generate returned shape {tuple(out.shape)}")

    # The first call of each side is its compile / warm-up; no further untimed call is needed.
    jax_t, torch_t = common.time_pair(jax_generate, torch_generate, repeats, warmup=0)
    return {
        "batch": batch, "prompt": prompt_len, "new_tokens": new_tokens,
        **common.throughput_row(jax_t, torch_t, batch * new_tokens),
    }


def run(shapes: Sequence[str] = ("tiny", "pythia-70m"), batch: int = 16, prompt_len: int = 64,
        new_tokens: int = 64, repeats: int = 3) -> list[dict[str, Any]]:
    """Generation new tokens/s for every shape; one row each."""
    rows = []
    for shape in shapes:
        torch_model, jax_model, params = common.build_pair(shape)
        row = generate_pair(torch_model, jax_model, params, batch, prompt_len, new_tokens, repeats)
        rows.append({"benchmark": "generate", "shape": shape, **row})
    return rows


COLUMNS = ["shape", "batch", "prompt", "new_tokens", "jaxirl_compile_s", "torch_warmup_s",
           "jaxirl_tok_s", "torch_tok_s", "speedup"]

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags, defined only when this module is the program (absl flags are global)."""
    flags.DEFINE_list("shapes", ["tiny", "pythia-70m"], "Model shapes: tiny, pythia-70m.")
    flags.DEFINE_integer("batch", 16, "Batch size.")
    flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per row.")
    flags.DEFINE_integer("new_tokens", 64, "New tokens per row.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")


def main(argv):
    del argv
    rows = run(FLAGS.shapes, FLAGS.batch, FLAGS.prompt_len, FLAGS.new_tokens, FLAGS.repeats)
    print(common.markdown_table(rows, COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
