"""Where the time goes: a thunk-level XLA:CPU trace of generation or an IRL epoch, per op.

Runs the program once to compile, times a few calls, then traces one call with
``--xla_cpu_enable_xprof_traceme`` and sums each compiled op's (thunk's) time, so the
table names XLA's fusions (``ynn_fusion.2``, ``copy_bitcast_fusion.5``, ...); the
compiled HLO (``.lower(...).compile().as_text()``) maps a name to its shapes and source.

    python -m benchmarks.profile_trace --what=generate --shape=pythia-70m --batch=16
    python -m benchmarks.profile_trace --what=generate --shape=tiny --dtype=bfloat16
    python -m benchmarks.profile_trace --what=irl --batch=8
    python -m benchmarks.profile_trace --what=irl --batch=2 --seeds=5

Pinned to one core (``common.pin_to_one_core``). BENCHMARKS.md section 7 reads its output.
"""

from __future__ import annotations

import collections
import glob
import os
import pathlib
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS


def op_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
    """Total ns and call count per op name, over every non-Python trace line."""
    from jax._src.lib import _profile_data

    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    total, count = collections.Counter(), collections.Counter()
    for plane in _profile_data.ProfileData.from_file(path).planes:
        for line in plane.lines:
            if line.name.startswith("python"):
                continue
            for event in line.events:
                name = event.name
                # Python frames ("$file.py:line fn"), jit dispatch, executor spans, region
                # markers, and control flow, whose span holds its body's ops (counted themselves).
                if (name.startswith(("$", "PjitFunction", "end:", "while", "conditional", "call"))
                        or "Execute" in name or "Threadpool" in name):
                    continue
                total[name] += event.duration_ns
                count[name] += 1
    return total, count


def generate_program(shape: str, batch: int, prompt_len: int = 64, new_tokens: int = 64,
                     dtype: str = "float32"):
    """(run, per_call_units): ``jaxirl.generation.generate`` on random weights of ``shape``,
    computing its matmuls in ``dtype``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import common
    from jaxirl.generation.sampler import SamplingConfig, generate
    from jaxirl.models.gpt_neox import GPTNeoXForCausalLM, init_params

    config = common.jaxirl_config(shape)
    model = GPTNeoXForCausalLM(config, dtype=jnp.dtype(dtype))
    params = init_params(config, jax.random.PRNGKey(0))
    ids = jnp.asarray(np.random.RandomState(0).randint(0, config.vocab_size,
                                                       (batch, prompt_len)), jnp.int32)
    sampling = SamplingConfig(max_new_tokens=new_tokens, top_k=30, eos_token_id=None,
                              pad_token_id=0)

    def run():
        out = generate(model, params, ids, jnp.ones_like(ids), jax.random.PRNGKey(0), sampling)
        jax.block_until_ready(out.tokens)

    return run, f"{batch * new_tokens} new tokens, {new_tokens - 1} decode steps"


def irl_program(batch: int, shape: str = "tiny", num_pairs: int = 200, text_len: int = 60,
                seeds: int = 1):
    """(run, units): one max-margin IRL epoch as ``benchmarks.bench_irl`` times it, for
    ``seeds`` vmapped seeds (the default study trains 5)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import transformers

    from benchmarks import common
    from benchmarks.bench_irl import random_texts
    from benchmarks.bench_ppo import EOS, word_tokenizer
    from jaxirl.irl.pairs import pair_data
    from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
    from jaxirl.irl.train import IRLTrainConfig, compile_epoch, epoch_minibatches, init_state

    kwargs = common.hf_config_kwargs(shape, pad_token_id=EOS)
    tokenizer = word_tokenizer(kwargs["vocab_size"])
    expert = random_texts(kwargs["vocab_size"], num_pairs, text_len, seed=1)
    base = random_texts(kwargs["vocab_size"], num_pairs, text_len, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / shape
        torch.manual_seed(0)
        transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**kwargs)).save_pretrained(
            str(folder))
        tokenizer.save_pretrained(str(folder))
        model = init_reward_model(RewardModelConfig(
            base_model=str(folder), head="reference", num_layers_unfrozen=1,
            max_length=text_len * 5 // 4 + 1))
    data = pair_data(model, expert, base, np.zeros(num_pairs), np.zeros(num_pairs))
    features = jax.tree_util.tree_map(jnp.asarray, data.features)
    config = IRLTrainConfig(batch_size=batch, epochs=1, learning_rate=1e-4, num_seeds=seeds)
    epoch, state = compile_epoch(model, config), init_state(model, config)
    indices, weights = epoch_minibatches(len(data), 0, config)

    def run():
        jax.block_until_ready(epoch(state, features, indices, weights))

    return run, f"{indices.shape[1]} steps of {batch} pairs"


def main(argv):
    del argv
    from benchmarks import common

    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_enable_xprof_traceme=true")
    common.pin_to_one_core()
    import jax

    if FLAGS.what == "generate":
        run, units = generate_program(FLAGS.shape, FLAGS.batch, dtype=FLAGS.dtype)
    else:
        run, units = irl_program(FLAGS.batch, seeds=FLAGS.seeds)
    run()
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    shape = FLAGS.shape if FLAGS.what == "generate" else "tiny"
    print(f"{FLAGS.what} {shape} {FLAGS.dtype} batch {FLAGS.batch} ({units}): best "
          f"{min(times) * 1e3:.1f} ms of {FLAGS.repeats}")
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        run()
        jax.profiler.stop_trace()
        total, count = op_times(trace_dir)
    print(f"ops in the traced call: {sum(total.values()) / 1e6:.1f} ms")
    print("| ms | calls | op |\n|---|---|---|")
    for name, ns in total.most_common(FLAGS.top):
        print(f"| {ns / 1e6:.2f} | {count[name]} | {name} |")


if __name__ == "__main__":
    flags.DEFINE_enum("what", "generate", ["generate", "irl"], "The program to profile.")
    flags.DEFINE_string("shape", "pythia-70m", "Model shape for --what=generate.")
    flags.DEFINE_integer("batch", 16, "Rows decoded (generate) or pairs per step (irl).")
    flags.DEFINE_integer("seeds", 1, "Vmapped IRL seeds for --what=irl.")
    flags.DEFINE_integer("repeats", 3, "Timed calls before the traced one.")
    flags.DEFINE_integer("top", 30, "Ops listed, by total time.")
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                      "Matmul compute dtype of --what=generate.")
    app.run(main)
