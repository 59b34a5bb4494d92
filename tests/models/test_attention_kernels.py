"""Every attention kernel gives the row-by-row CPU path's outputs, and remat its gradients.

``xla`` is ``jax.nn.dot_product_attention`` (the GPU/TPU path of ``attention="auto"``),
which XLA:CPU runs too; the long left-padded batch takes the row-by-row chunked path
under ``rows``, the short one and the KV-cache decode the one-block path.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_helpers import left_padded_batch

from jaxirl.errors import ConfigError
from jaxirl.generation.sampler import SamplingConfig, generate
from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params
from jaxirl.models.gpt_neox import resolve_attention

CONFIG = GPTNeoXConfig(vocab_size=61, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=48, max_position_embeddings=512)


@pytest.fixture(scope="module")
def params():
    return init_params(CONFIG, jax.random.PRNGKey(0), with_value_head=True)


@pytest.mark.parametrize("lengths,total", [([14, 9, 1], 14), ([300, 170, 9], 300)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dot_product_attention_equals_the_row_path(params, lengths, total, dtype):
    ids, mask = left_padded_batch(61, lengths=lengths, total=total)
    outs = {}
    for kernel in ("rows", "xla"):
        model = GPTNeoXForCausalLM(CONFIG, dtype=dtype, with_value_head=True, attention=kernel)
        outs[kernel] = model.apply({"params": params}, ids, mask)
    real = np.asarray(mask, bool)
    atol = 1e-5 if dtype == jnp.float32 else 2e-2  # bf16 products, summed in another order
    for field in ("logits", "values"):
        a, b = (np.asarray(getattr(outs[k], field)) for k in ("rows", "xla"))
        assert np.isfinite(b).all()  # padding rows attend to nothing: uniform, never NaN
        np.testing.assert_allclose(b[real], a[real], atol=atol)


def test_kv_cache_generation_is_the_same_with_every_kernel(params):
    ids, mask = left_padded_batch(61, lengths=[7, 3], total=7)
    sampling = SamplingConfig(max_new_tokens=6, top_k=5, eos_token_id=None, pad_token_id=0)
    lm = {k: v for k, v in params.items() if k != "value_head"}
    runs = [generate(GPTNeoXForCausalLM(CONFIG, attention=kernel), lm, ids, mask,
                     jax.random.PRNGKey(3), sampling) for kernel in ("rows", "xla")]
    np.testing.assert_array_equal(runs[0].tokens, runs[1].tokens)
    np.testing.assert_allclose(runs[0].logprobs, runs[1].logprobs, atol=1e-5)


def test_auto_is_the_row_path_on_cpu_and_bad_names_are_errors():
    assert jax.default_backend() == "cpu" and resolve_attention("auto") == "rows"
    assert resolve_attention("cudnn") == "cudnn"
    with pytest.raises(ConfigError, match="--attention must be one of auto, rows, xla, cudnn"):
        resolve_attention("flash")


def test_remat_gives_the_same_loss_and_gradients(params):
    ids, mask = left_padded_batch(61, lengths=[20, 11], total=20)

    def loss(p, remat):
        out = GPTNeoXForCausalLM(CONFIG, with_value_head=True, remat=remat).apply(
            {"params": p}, ids, mask)
        return jnp.mean(jax.nn.log_softmax(out.logits)[..., 0]) + jnp.mean(out.values ** 2)

    # Jitted, as training runs it (and one compile instead of an op-by-op trace).
    grad_fn = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (plain, g_plain), (remat, g_remat) = (grad_fn(params, r) for r in (False, True))
    np.testing.assert_allclose(remat, plain, rtol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g_remat, g_plain)
