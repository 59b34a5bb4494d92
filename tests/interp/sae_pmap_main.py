"""Run with 2 simulated CPU devices: prints max |params(2 devices) - params(1 device)|."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import jax_utils

from jaxirl.interp import sae as sae_lib


def main():
    assert jax.device_count() == 2, jax.device_count()
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(512, 16)) * rng.uniform(0.5, 2, 16) + 1.0).astype(np.float32)
    cfg = sae_lib.SAEConfig(dict_multiple=2, batch_size=128, num_epochs=2, l1_coef=0.05,
                            learning_rate=3e-3)
    one, _ = sae_lib.train_sae(x, cfg, num_devices=1)
    two, _ = sae_lib.train_sae(x, cfg, num_devices=2)
    d_train = max(float(jnp.max(jnp.abs(one.params[k] - two.params[k]))) for k in one.params)
    # The bare step under pmap, for a few steps of the same global batches.
    params = sae_lib.init_sae(jax.random.PRNGKey(1), 16, cfg)
    single = sae_lib.init_state(params, cfg)
    multi = jax_utils.replicate(single)
    jit_step = jax.jit(sae_lib.make_train_step(cfg))
    pmap_step = jax.pmap(sae_lib.make_train_step(cfg, axis_name="b"), axis_name="b")
    for s in range(4):
        batch = jnp.asarray(x[s * 128:(s + 1) * 128])
        single, m1 = jit_step(single, batch)
        multi, m2 = pmap_step(multi, batch.reshape(2, 64, 16))
    d_step = max(float(jnp.max(jnp.abs(single.params[k] - multi.params[k][0])))
                 for k in params)
    d_loss = abs(float(m1["loss"]) - float(m2["loss"][0]))
    moved = float(jnp.max(jnp.abs(single.params["W_e"] - params["W_e"])))
    print(f"RESULT train={d_train:.3e} step={d_step:.3e} loss={d_loss:.3e} moved={moved:.3e}")


if __name__ == "__main__":
    main()
