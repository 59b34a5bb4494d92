"""One process of a multi-process PPO + IRL run on CPU (or the single-process reference).

    python multihost_main.py OUT PROCESS_ID NUM_PROCESSES PORT PHASE

``NUM_PROCESSES`` 1 is the reference: one process whose XLA sees all 4 devices.
Otherwise each process sees 2 devices and joins a job on ``localhost:PORT``; the mesh
is ``data=4`` either way. ``PHASE`` is ``full`` (3 IRL epochs, then 3 PPO iterations),
``killed`` (2 IRL epochs, then dies with ``os._exit`` in PPO iteration 3, after
iteration 2's checkpoint) or ``resumed`` (resumes IRL at epoch 2 and PPO at iteration
2, finishing both).
Process 0 writes ``OUT/result.json``: the final PPO and IRL parameters' checksums and
sums; every process writes ``OUT/writes_<PHASE>_<id>.json``: the files it opened for writing
outside Orbax checkpoint folders (an audit hook).
"""

import json
import os
import pathlib
import sys

OUT, PID, NPROC, PORT, PHASE = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                                sys.argv[5])
# The suite's XLA flags (tests/conftest.py), plus this process's device count.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + f" --xla_force_host_platform_device_count={4 // NPROC}").strip()

WRITES: list[str] = []


def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(OUT):
        mode = args[1] if isinstance(args[1], str) else ""
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR):
            path = pathlib.Path(args[0])
            if not {"checkpoints", "params"} & set(path.parts):
                WRITES.append(str(path.relative_to(OUT)))


sys.addaudithook(audit)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from tiny_setup import (  # noqa: E402
    tiny_policy,
    tiny_ppo_config,
    tiny_prompts,
    tiny_tokenizer,
    word_reward,
)

from jaxirl import parallel  # noqa: E402
from jaxirl.checkpoint import Checkpointer  # noqa: E402
from jaxirl.interp.sae import SAEConfig, train_sae  # noqa: E402
from jaxirl.irl.losses import IRLLossConfig  # noqa: E402
from jaxirl.irl.pairs import pair_data  # noqa: E402
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model  # noqa: E402
from jaxirl.irl.train import IRLTrainConfig, train_irl  # noqa: E402
from jaxirl.models import save_pretrained  # noqa: E402
from jaxirl.ppo.trainer import PPOTrainer, train  # noqa: E402


def checksum(tree) -> dict:
    leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(parallel.to_host(tree))]
    return {"sum": float(sum(x.sum() for x in leaves)),
            "abs": float(sum(np.abs(x).sum() for x in leaves)),
            "first": [float(x.ravel()[0]) for x in leaves]}


def main():
    if NPROC > 1:
        parallel.initialize(parallel.DistributedConfig(f"localhost:{PORT}", NPROC, PID))
    mesh = parallel.make_mesh(parallel.MeshConfig(data=4))
    out = pathlib.Path(OUT)
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    trainer = PPOTrainer(model, tokenizer, word_reward, tiny_prompts(tokenizer),
                         tiny_ppo_config(ppo_epochs=1), mesh)
    resume = PHASE == "resumed"
    # IRL first: the killed run finishes 2 of its 3 epochs, the resumed run the third.
    folder = out / "model"
    if parallel.is_main_process() and not folder.exists():
        small, small_params = tiny_policy(layers=2)
        save_pretrained(folder, small.config, small_params, tokenizer=tokenizer)
    parallel.sync("model saved")
    rm = init_reward_model(RewardModelConfig(str(folder), num_layers_unfrozen=1, max_length=16))
    expert = ["the cat sat good", "a dog ran nice", "the mat good", "a cat sat on a mat nice",
              "the dog good", "a cat ran nice"] * 2
    base = [t.replace("good", "bad").replace("nice", "awful") for t in expert]
    data = pair_data(rm, expert, base, np.ones(12), -np.ones(12), mesh=mesh)
    config = IRLTrainConfig(loss=IRLLossConfig("max_margin", reward_l2=0.1), learning_rate=1e-2,
                            batch_size=4, num_seeds=2, epochs=2 if PHASE == "killed" else 3)
    result = train_irl(rm, data, data, config, workdir=out / "irl", resume=resume,
                       progress=False, mesh=mesh)

    # An SAE with its checkpoint: the killed run finishes it, the resumed run reads it back
    # (every process restores its part of the replicated state) and trains no epoch.
    acts = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    sae_ckpt = Checkpointer(out / "sae" / "checkpoints", max_to_keep=1)
    had_sae = sae_ckpt.latest_step() is not None
    sae, history = train_sae(acts, SAEConfig(batch_size=32, num_epochs=3), mesh=mesh,
                             checkpointer=sae_ckpt)
    sae_ckpt.close()

    def die_in_iteration_3(step, _metrics):
        if PHASE == "killed" and step == 3:  # before iteration 3's checkpoint is saved
            write_audit()
            os._exit(9)

    state = train(trainer, trainer.init_state(params), 3, checkpoint_dir=out / "ppo" / "checkpoints",
                  resume=resume, log_path=out / "ppo" / "metrics.jsonl", progress=False,
                  on_step=die_in_iteration_3)
    summary = {"ppo": checksum(state.params), "ppo_step": int(parallel.to_host(state.step)),
               "irl": checksum(result.state.params), "sae": checksum(sae.params),
               "sae_read_back": had_sae, "sae_epochs": len(history["loss"]),
               "processes": jax.process_count(),
               "devices": jax.device_count()}
    if parallel.is_main_process():
        (out / "result.json").write_text(json.dumps(summary))
    parallel.sync("done")
    write_audit()


def write_audit():
    """Records this phase's writes (after the audited ones, so it is not in the list)."""
    pathlib.Path(OUT, f"writes_{PHASE}_{PID}.json").write_text(json.dumps(sorted(set(WRITES))))


if __name__ == "__main__":
    main()
