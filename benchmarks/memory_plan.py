"""Per-device memory of the PPO update and the IRL step at real Pythia scale, with no weights.

Each setup is lowered and compiled ahead of time from ``jax.ShapeDtypeStruct``
inputs carrying their mesh shardings (``jax.jit(...).lower(...).compile()``), and
``memory_analysis()`` of the compiled per-device program gives its argument,
output, aliased (donated) and temporary bytes. Nothing is allocated or run, so
Pythia-6.9B plans on a laptop. The process simulates 8 CPU devices; a mesh of 1 is
its first device.

    python -m benchmarks.memory_plan                      # the full grid (slow: compiles)
    python -m benchmarks.memory_plan --models=pythia-410m --meshes="data=1;data=2,fsdp=4" --steps=ppo

Caveat: the programs are compiled by XLA:CPU. A GPU or TPU compile of the same
program fuses and schedules differently (and keeps workspace outside these
counts), so read the numbers as a plan to within tens of percent, not a
measurement; ``scripts/accelerator_check.sh`` compiles the same grid on a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import types
from typing import Any

from absl import app, flags

from benchmarks import common
from jaxirl.models.remat import MEMORY_AWARE_CPU_SCHEDULER
from jaxirl.xla_flags import add_xla_flag


def configure_xla() -> None:
    """The XLA flags of a plan, set before JAX starts (run as a script only: importing this
    module, as the tests do, leaves the caller's environment alone).

    8 simulated CPU devices; LLVM's optimisations off: they change the machine code, not
    the HLO buffer assignment that memory_analysis() reports, and they dominate compile
    time. XLA:CPU's memory-aware scheduler, as accelerators schedule for memory: under its
    default (concurrency) scheduler remat and bf16 changed no row of the plan
    (jaxirl/models/remat.py). A flag already in XLA_FLAGS is kept as set.
    """
    for flag in ("--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0",
                 "--xla_llvm_disable_expensive_passes=true", MEMORY_AWARE_CPU_SCHEDULER):
        add_xla_flag(flag)


GIB = 2**30
GPU_BYTES = 80 * 10**9  # one 80 GB A100 / H100
MODELS = ("pythia-410m", "pythia-1.4b", "pythia-2.8b", "pythia-6.9b")
MESHES = ("data=1", "data=1,fsdp=8", "data=2,fsdp=4")
# The paper presets' PPO sequence: trlx's max_prompt_length (seq_length 1024 minus the
# 128 new tokens) plus the 128 new tokens; the IRL texts: the paper's max_length 100.
PROMPT_LEN, NEW_TOKENS, IRL_LENGTH = 896, 128, 100


def ppo_program(shape: str, mesh, dtype: str, remat: bool, trainable: int):
    """(the trainer's jitted update, its abstract arguments) for the ``pythia410m`` PPO preset."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxirl import parallel
    from jaxirl.data.tokenization import TokenizedPrompts
    from jaxirl.models.gpt_neox import GPTNeoXForCausalLM
    from jaxirl.ppo.config import get_preset
    from jaxirl.ppo.experience import Rollout
    from jaxirl.ppo.state import frozen_trunk_depth
    from jaxirl.ppo.trainer import PPOTrainer

    config = dataclasses.replace(get_preset("pythia410m"), max_new_tokens=NEW_TOKENS,
                                 num_layers_unfrozen=trainable)
    # The accelerator's attention kernel (jax.nn.dot_product_attention), not the CPU one.
    model = GPTNeoXForCausalLM(common.jaxirl_config(shape), dtype=jnp.dtype(dtype),
                               with_value_head=True, remat=remat, attention="xla")
    rows = config.chunk_size
    prompts = TokenizedPrompts(np.zeros((rows, PROMPT_LEN), np.int32),
                               np.ones((rows, PROMPT_LEN), np.int32), np.ones(rows, np.int32),
                               ("",) * rows, None, 0, 0)
    tokenizer = types.SimpleNamespace(eos_token_id=0, pad_token_id=0)  # sampling settings only
    trainer = PPOTrainer(model, tokenizer, None, prompts, config, mesh)
    abstract = jax.eval_shape(trainer._initial_state, _abstract_params(model),
                              jax.random.PRNGKey(0))
    state = _with_shardings(abstract, trainer.state_shardings)
    r, t, n = config.num_rollouts, PROMPT_LEN + NEW_TOKENS, NEW_TOKENS
    spec = {"sequences": (r, t, jnp.int32), "attention_mask": (r, t, jnp.int32)}
    if frozen_trunk_depth(abstract.trainable, model.config.num_hidden_layers):
        spec["trunk"] = (r, t, model.config.hidden_size, jnp.float32)
    fields = {f.name: spec.get(f.name, (r, n, jnp.float32)) for f in dataclasses.fields(Rollout)}
    rollout = Rollout(**{k: jax.ShapeDtypeStruct(v[:-1], v[-1], sharding=parallel.rows_sharding(
        mesh, len(v) - 1)) for k, v in fields.items()})
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=parallel.replicated(mesh))
    return trainer.programs(PROMPT_LEN).update_fn, (state, rollout, key), config


def irl_program(shape: str, mesh, dtype: str, remat: bool, trainable: int):
    """(the IRL epoch of one step, its abstract arguments): one seed, every block trained."""
    import jax
    import jax.numpy as jnp

    from jaxirl import parallel
    from jaxirl.irl.losses import IRLLossConfig
    from jaxirl.irl.reward_model import RewardModel, RewardModelConfig, init_head, split_params
    from jaxirl.irl.train import IRLTrainConfig, epoch_program, init_state, state_shardings
    from jaxirl.models.gpt_neox import GPTNeoXForCausalLM

    lm_config = common.jaxirl_config(shape)
    rm_config = RewardModelConfig(base_model="<abstract>", num_layers_unfrozen=trainable,
                                  max_length=IRL_LENGTH)
    batch = 8  # pairs per step (the paper's 2 cannot split over 8 devices)
    config = IRLTrainConfig(loss=IRLLossConfig("max_margin"), learning_rate=1e-4,
                            batch_size=batch, num_seeds=1)

    def abstract_model_params():
        lm = _abstract_params(GPTNeoXForCausalLM(lm_config))
        frozen, top = split_params(rm_config, lm_config, lm)
        return frozen, {**top, "head": jax.eval_shape(
            lambda k: init_head(rm_config, lm_config.hidden_size, k), jax.random.PRNGKey(0))}

    frozen, top = abstract_model_params()
    model = RewardModel(rm_config, lm_config, None, frozen, top, remat=remat)
    model.top = model.top.clone(dtype=jnp.dtype(dtype))
    shardings = state_shardings(model, config, mesh)
    abstract = jax.eval_shape(lambda p: init_state(dataclasses.replace(model, params=p), config),
                              top)
    state = _with_shardings(abstract, shardings)
    # Every block trains: the features are the token ids themselves.
    repl = parallel.replicated(mesh)
    pairs = 2 * batch
    features = {k: jax.ShapeDtypeStruct((pairs, IRL_LENGTH), jnp.int32, sharding=repl)
                for k in ("expert", "base", "expert_mask", "base_mask")}
    index = jax.ShapeDtypeStruct((1, 1, batch), jnp.int32,
                                 sharding=parallel.rows_sharding(mesh, 3, axis=2))
    weight = jax.ShapeDtypeStruct((1, 1, batch), jnp.float32, sharding=index.sharding)
    # The last argument is FA-IRL's failure flags: None for max-margin.
    return epoch_program(model, config, mesh), (state, features, index, weight, None), config


def _abstract_params(model) -> Any:
    import jax
    import jax.numpy as jnp

    return jax.eval_shape(lambda key: model.init(key, jnp.zeros((1, 2), jnp.int32))["params"],
                          jax.random.PRNGKey(0))


def _with_shardings(abstract: Any, shardings: Any) -> Any:
    import jax

    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def plan(step: str, shape: str, mesh_text: str, dtype: str, remat: bool,
         trainable: int) -> dict[str, Any]:
    """Compiles one setup; returns its per-device byte counts (and compile time)."""
    from jaxirl import parallel

    mesh = parallel.make_mesh(parallel.MeshConfig.parse(mesh_text))
    build = ppo_program if step == "ppo" else irl_program
    program, args, config = build(shape, mesh, dtype, remat, trainable)
    start = time.perf_counter()
    stats = program.lower(*args).compile().memory_analysis()
    seconds = time.perf_counter() - start
    arg, out = stats.argument_size_in_bytes, stats.output_size_in_bytes
    alias, temp = stats.alias_size_in_bytes, stats.temp_size_in_bytes
    peak = arg + out - alias + temp
    return {"step": step, "model": shape, "mesh": mesh_text, "dtype": dtype, "remat": remat,
            "trainable_blocks": "all" if trainable < 0 else trainable,
            "batch": config.batch_size, "argument_gib": arg / GIB, "output_gib": out / GIB,
            "alias_gib": alias / GIB, "temp_gib": temp / GIB, "peak_gib": peak / GIB,
            "fits_80gb": peak < GPU_BYTES, "compile_s": seconds}


COLUMNS = ["step", "model", "trainable_blocks", "mesh", "dtype", "remat", "argument_gib",
           "output_gib", "alias_gib", "temp_gib", "peak_gib", "fits_80gb", "compile_s"]

FSDP8, DATA2_FSDP4 = "data=1,fsdp=8", "data=2,fsdp=4"


def default_grid() -> list[tuple]:
    """(step, model, mesh, dtype, remat) of the plan in BENCHMARKS.md.

    The full product (2 steps x 4 models x 3 meshes x 2 dtypes x 2 remat = 96 compiles of
    up to 32 unrolled blocks) takes hours on a 2-core CPU, so it is pruned: every model
    gets one device and both 8-device meshes, fp32 without remat (the plain setting) and
    bf16 with remat (the leanest); the two smaller models get the whole 1-device square;
    Pythia-6.9B PPO also gets fsdp=2 and fsdp=4, to find the smallest mesh it fits.
    """
    grid = []
    for model in MODELS:
        meshes = ("data=1", FSDP8, DATA2_FSDP4)
        settings = [("float32", False), ("bfloat16", True)]
        for mesh in meshes:
            for dtype, remat in settings:
                grid.append(("ppo", model, mesh, dtype, remat))
        if model in ("pythia-410m", "pythia-1.4b"):
            grid += [("ppo", model, "data=1", "float32", True),
                     ("ppo", model, "data=1", "bfloat16", False)]
        for mesh in ("data=1", FSDP8):
            grid.append(("irl", model, mesh, "float32", False))
    grid += [("ppo", "pythia-6.9b", mesh, dtype, True) for mesh in ("data=1,fsdp=2",
             "data=1,fsdp=4") for dtype in ("bfloat16", "float32")]
    return grid


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_bool("grid", True, "The pruned grid of BENCHMARKS.md (default_grid); "
                      "--nogrid plans the product of the flags below.")
    flags.DEFINE_list("models", list(MODELS), "Pythia shapes to plan.")
    flags.DEFINE_string("meshes", ";".join(MESHES), "Meshes data=D,fsdp=F separated by ';' "
                        "(on CPU out of 8 simulated devices).")
    flags.DEFINE_list("steps", ["ppo", "irl"], "ppo (the update) and/or irl (one step).")
    flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes (params stay float32).")
    flags.DEFINE_list("remat", ["false", "true"], "Per-block rematerialisation settings.")
    flags.DEFINE_integer("ppo_trainable", -1, "PPO trainable top blocks (-1: all, the worst case).")
    flags.DEFINE_integer("irl_trainable", -1, "IRL trainable top blocks (-1: all, the paper's).")
    flags.DEFINE_string("out", "", "Append one JSON row per setup to this file (setups already "
                        "in it are skipped, so an interrupted plan resumes).")


def main(argv):
    del argv
    if FLAGS.grid:
        setups = default_grid()
    else:
        setups = [(step, model, mesh, dtype, remat == "true") for step in FLAGS.steps
                  for model in FLAGS.models for mesh in FLAGS.meshes.split(";")
                  for dtype in FLAGS.dtypes for remat in FLAGS.remat]
    done, rows = set(), []
    if FLAGS.out and os.path.exists(FLAGS.out):
        with open(FLAGS.out) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        done = {(r["step"], r["model"], r["mesh"], r["dtype"], r["remat"]) for r in rows}
    for step, model, mesh, dtype, remat in setups:
        if (step, model, mesh, dtype, remat) in done:
            continue
        trainable = FLAGS.ppo_trainable if step == "ppo" else FLAGS.irl_trainable
        row = plan(step, model, mesh, dtype, remat, trainable)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if FLAGS.out:
            with open(FLAGS.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(common.markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    configure_xla()
    define_flags()
    app.run(main)
