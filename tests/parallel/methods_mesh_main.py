"""Run with 2 simulated CPU devices: one method of the methods stage trained on a data=2
mesh (as the stage gets the study's) against the same method on one device.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python methods_mesh_main.py

Prints one ``RESULT <json>`` line: the device count of the mesh each ``train_irl`` call
received (None: none given, one device), the largest differences of the held-out and
training rewards and of the saved seeds' scores, and how far training moved them.
"""

import json
import pathlib
import tempfile

import numpy as np
from tiny_setup import write_tiny_demos, write_tiny_model

import jaxirl.irl.train as train_module
from jaxirl import parallel
from jaxirl.irl.demos import load_demos
from jaxirl.irl.losses import IRLLossConfig
from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model, load_reward_model
from jaxirl.irl.train import IRLTrainConfig
from jaxirl.pipeline.methods import MethodSpec, irl_reward_models, irl_rewards


def main():
    root = pathlib.Path(tempfile.mkdtemp())
    write_tiny_model(root / "model")
    write_tiny_demos(root / "demos")
    data = load_demos(root / "demos")
    seen = []
    original = train_module.train_irl

    def recording(*args, mesh=None, **kwargs):
        seen.append(None if mesh is None else int(mesh.devices.size))
        return original(*args, mesh=mesh, **kwargs)

    train_module.train_irl = recording
    rm = RewardModelConfig(str(root / "model"), num_layers_unfrozen=1, max_length=16)
    irl = IRLTrainConfig(batch_size=2, epochs=2, num_seeds=2)
    spec = MethodSpec("logistic", IRLLossConfig("logistic"), learning_rate=1e-2, epochs=2)
    mesh = parallel.make_mesh(parallel.MeshConfig.parse("data=2"))
    one = irl_rewards(spec, rm, irl, data, root / "one")
    two = irl_rewards(spec, rm, irl, data, root / "two", mesh=mesh)
    # The deployable seeds: saved from the last checkpoint, restored onto the mesh.
    models = irl_reward_models(spec, rm, irl, data, root / "two", mesh=mesh)
    texts = list(data["test"]["expert_text"]) + list(data["test"]["base_text"])
    saved = np.stack([load_reward_model(m).score(texts) for m in models])
    untrained = np.stack([init_reward_model(rm, seed=irl.seed + s).score(texts)
                          for s in range(irl.num_seeds)])
    print("RESULT " + json.dumps({
        "devices": seen,
        "test": float(np.abs(one["test"] - two["test"]).max()),
        "train": float(np.abs(one["train"] - two["train"]).max()),
        "saved": float(np.abs(saved - one["test"]).max()),
        "moved": float(np.abs(one["test"] - untrained).max())}), flush=True)


if __name__ == "__main__":
    main()
