"""What to run first on a GPU or TPU machine: bf16 and kernel parity, then PPO and IRL at real shapes.

    python -m benchmarks.accelerator_check                    # 70M and 410M, all local devices
    python -m benchmarks.accelerator_check --shapes=pythia-70m --iterations=1

On random weights of the real Pythia shapes (no download), with the paper presets'
settings (prompt length, generation length and sampling, batch sizes):

1. **parity**: the policy's log-probabilities with bf16 compute against float32, and
   every attention kernel (``rows``, ``xla``, and ``cudnn`` on a GPU with bf16)
   against the row-by-row one, on left-padded batches;
2. **PPO**: a few ``PPOTrainer`` iterations of the ``pythia70m``/``pythia410m``
   presets (a trivial word reward stands in for RoBERTa), on a data mesh of all
   local devices: time per iteration and finite losses;
3. **IRL**: a few epochs of the paper's IRL setting (every block trained, max-margin,
   100-token texts) on random demonstrations.

One JSON line per check; ``scripts/accelerator_check.sh`` runs this, the benchmarks
and the memory plan.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time

import numpy as np
from absl import app, flags

from benchmarks import common
from benchmarks.bench_ppo import random_prompts, word_reward, word_tokenizer

PRESETS = {"pythia-70m": "pythia70m", "pythia-410m": "pythia410m"}
PROMPT_LEN = 896  # trlx's max_prompt_length of the paper's runs (seq_length 1024 - 128)


def report(check: str, **fields) -> None:
    print(json.dumps({"check": check, **fields}), flush=True)


def parity(shape: str) -> None:
    """bf16 vs float32 log-probs, and each attention kernel vs ``rows``, on a padded batch."""
    import jax
    import jax.numpy as jnp

    from jaxirl.models import GPTNeoXForCausalLM, init_params

    config = common.jaxirl_config(shape)
    params = init_params(config, jax.random.PRNGKey(0))
    ids = jax.random.randint(jax.random.PRNGKey(1), (4, 512), 1, config.vocab_size)
    mask = np.ones((4, 512), np.int32)
    mask[1, :100], mask[2, :300] = 0, 0
    real = mask[:, 1:] > 0

    def logprobs(dtype, attention):
        model = GPTNeoXForCausalLM(config, dtype=dtype, attention=attention)
        logits = jax.jit(model.apply)({"params": params}, ids, mask).logits
        logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
        return np.asarray(jnp.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0])

    ref = logprobs(jnp.float32, "rows")
    bf16 = logprobs(jnp.bfloat16, "rows")
    report("parity", shape=shape, what="bf16 vs fp32 log-probs",
           max_abs=float(np.abs(bf16 - ref)[real].max()))
    kernels = ["xla"] + (["cudnn"] if jax.default_backend() == "gpu" else [])
    for kernel in kernels:
        for dtype in (jnp.float32, jnp.bfloat16):
            if kernel == "cudnn" and dtype == jnp.float32:
                continue  # cuDNN's fused attention takes bf16/fp16 only
            base = ref if dtype == jnp.float32 else bf16
            try:
                diff = float(np.abs(logprobs(dtype, kernel) - base)[real].max())
            except Exception as e:  # noqa: BLE001 - report the kernel that fails, go on
                report("parity", shape=shape, what=f"{kernel} attention", error=str(e)[:300])
                continue
            report("parity", shape=shape, what=f"{kernel} vs rows attention",
                   dtype=jnp.dtype(dtype).name, max_abs=diff)


def ppo(shape: str, iterations: int, workdir: str) -> None:
    """A few PPO iterations of the paper preset of ``shape`` on random weights."""
    import jax

    from jaxirl import parallel
    from jaxirl.data.tokenization import tokenize_prompts
    from jaxirl.models import load_pretrained
    from jaxirl.ppo.config import get_preset
    from jaxirl.ppo.trainer import PPOTrainer

    _, folder = _random_model(shape, workdir)
    model, params = load_pretrained(folder, with_value_head=True)
    config = get_preset(PRESETS[shape])
    vocab = model.config.vocab_size
    tokenizer = word_tokenizer(vocab)
    texts = random_prompts(vocab, 4 * config.num_rollouts, PROMPT_LEN)
    prompts = tokenize_prompts(texts, tokenizer, PROMPT_LEN, pad_to_multiple_of=1)
    mesh = parallel.make_mesh(parallel.MeshConfig(data=_data_devices(config)))
    trainer = PPOTrainer(model, tokenizer, word_reward, prompts, config, mesh)
    state = trainer.init_state(params)
    for i in range(iterations):
        start = time.perf_counter()
        state, metrics, _ = trainer.step(state)
        report("ppo", shape=shape, preset=PRESETS[shape], mesh=str(parallel.mesh_config(mesh)),
               iteration=i + 1, seconds=time.perf_counter() - start,
               loss=metrics["loss"], kl=metrics["kl"], finite=bool(np.isfinite(metrics["loss"])))
    jax.block_until_ready(state)


def irl(shape: str, epochs: int, workdir: str) -> None:
    """The paper's IRL setting (all blocks train, max-margin, 100 tokens) on random pairs."""
    from benchmarks.bench_irl import random_texts
    from jaxirl import parallel
    from jaxirl.irl.losses import IRLLossConfig
    from jaxirl.irl.pairs import pair_data
    from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
    from jaxirl.irl.train import IRLTrainConfig, train_irl

    vocab, folder = _random_model(shape, workdir)
    mesh = parallel.make_mesh(parallel.MeshConfig(data=_data_devices(None)))
    rm = init_reward_model(RewardModelConfig(str(folder), num_layers_unfrozen=-1, max_length=100))
    n = 64
    expert, base = random_texts(vocab, n, 80, seed=1), random_texts(vocab, n, 80, seed=2)
    data = pair_data(rm, expert, base, np.ones(n), -np.ones(n), mesh=mesh)
    config = IRLTrainConfig(loss=IRLLossConfig("max_margin"), learning_rate=1e-5,
                            batch_size=max(2, parallel.batch_split(mesh)), epochs=epochs)
    start = time.perf_counter()
    result = train_irl(rm, data, data, config, progress=False, mesh=mesh)
    losses = [float(np.mean(r["train"]["loss"])) for r in result.history]
    report("irl", shape=shape, mesh=str(parallel.mesh_config(mesh)), epochs=epochs,
           pairs=n, seconds=time.perf_counter() - start, losses=losses,
           finite=bool(np.all(np.isfinite(losses))))


def _data_devices(config) -> int:
    """All local devices that split the preset's batches (largest power of two)."""
    import jax

    n = jax.device_count()
    while n > 1 and config is not None and (config.batch_size % n or config.chunk_size % n):
        n //= 2
    return n


_MODELS: dict[str, tuple] = {}


def _random_model(shape: str, workdir: str):
    """(vocab size, folder) of a random transformers model of ``shape``, saved once."""
    if shape not in _MODELS:
        import torch
        import transformers

        torch.manual_seed(0)
        kwargs = common.hf_config_kwargs(shape, pad_token_id=0)
        folder = pathlib.Path(workdir) / shape
        model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**kwargs))
        model.save_pretrained(str(folder))
        word_tokenizer(kwargs["vocab_size"]).save_pretrained(str(folder))
        _MODELS[shape] = (kwargs["vocab_size"], folder)
    return _MODELS[shape]


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("shapes", list(PRESETS), "Pythia shapes with a paper preset.")
    flags.DEFINE_list("checks", ["parity", "ppo", "irl"], "Which checks to run.")
    flags.DEFINE_integer("iterations", 3, "PPO iterations per shape.")
    flags.DEFINE_integer("epochs", 2, "IRL epochs per shape.")


def main(argv):
    del argv
    import jax

    report("devices", backend=jax.default_backend(), devices=[str(d) for d in jax.devices()])
    with tempfile.TemporaryDirectory() as workdir:
        for shape in FLAGS.shapes:
            if "parity" in FLAGS.checks:
                parity(shape)
            if "ppo" in FLAGS.checks:
                ppo(shape, FLAGS.iterations, workdir)
            if "irl" in FLAGS.checks:
                irl(shape, FLAGS.epochs, workdir)


if __name__ == "__main__":
    define_flags()
    app.run(main)
