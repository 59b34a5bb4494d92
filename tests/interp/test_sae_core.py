"""SAE maths: hand-computed loss and metrics, the unit-norm projection, tied/untied shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxirl.errors import ConfigError, DataError
from jaxirl.interp import sae as sae_lib
from jaxirl.interp.sae import SAEConfig, TrainedSAE
from jaxirl.interp.sae_lens_format import load_sae, save_sae
from jaxirl.metrics_log import MetricsLog, read_metrics


def hand_params():
    return {"W_e": jnp.eye(2), "b_e": jnp.array([0.0, -0.5]), "b_d": jnp.array([0.1, 0.0])}


def test_loss_matches_hand_computation():
    x = jnp.array([[1.0, 2.0], [-1.0, 0.25]])
    # f = relu([[1, 1.5], [-1, -0.25]]) = [[1, 1.5], [0, 0]]; x_hat = f + b_d.
    # errors [[0.1, -0.5], [1.1, -0.25]] -> per-token SSE 0.26, 1.2725.
    loss, aux = sae_lib.sae_loss(hand_params(), x, l1_coef=0.1)
    np.testing.assert_allclose(aux["recon"], (0.26 + 1.2725) / 2, rtol=1e-6)
    np.testing.assert_allclose(aux["mse"], (0.26 + 1.2725) / 4, rtol=1e-6)
    np.testing.assert_allclose(aux["l1"], 1.25, rtol=1e-6)
    np.testing.assert_allclose(aux["l0"], 1.0)
    np.testing.assert_allclose(loss, 0.76625 + 0.1 * 1.25, rtol=1e-6)


def test_untied_decoder_is_used_and_shapes():
    cfg_t, cfg_u = SAEConfig(dict_multiple=3), SAEConfig(dict_multiple=3, tied=False)
    pt = sae_lib.init_sae(jax.random.PRNGKey(0), 5, cfg_t)
    pu = sae_lib.init_sae(jax.random.PRNGKey(0), 5, cfg_u)
    assert set(pt) == {"W_e", "b_e", "b_d"} and set(pu) == {"W_e", "b_e", "b_d", "W_d"}
    assert pt["W_e"].shape == (15, 5) and pt["b_e"].shape == (15,) and pt["b_d"].shape == (5,)
    assert pu["W_d"].shape == (15, 5)
    f = jnp.abs(jax.random.normal(jax.random.PRNGKey(1), (4, 15)))
    np.testing.assert_allclose(sae_lib.decode(pt, f), sae_lib.decode(pu, f), rtol=1e-6)
    pu2 = {**pu, "W_d": 2 * pu["W_d"]}
    np.testing.assert_allclose(sae_lib.decode(pu2, f), 2 * f @ pu["W_e"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tied", [True, False])
def test_encoder_rows_stay_unit_norm(tied):
    cfg = SAEConfig(dict_multiple=2, tied=tied, learning_rate=1e-2, l1_coef=0.1)
    params = sae_lib.init_sae(jax.random.PRNGKey(0), 6, cfg)
    np.testing.assert_allclose(jnp.linalg.norm(params["W_e"], axis=1), 1.0, rtol=1e-6)
    state = sae_lib.init_state(params, cfg)
    step = jax.jit(sae_lib.make_train_step(cfg))
    x = jax.random.normal(jax.random.PRNGKey(2), (32, 6))
    for _ in range(5):
        state, metrics = step(state, x)
    np.testing.assert_allclose(jnp.linalg.norm(state.params["W_e"], axis=1), 1.0, rtol=1e-5)
    assert float(jnp.max(jnp.abs(state.params["W_e"] - params["W_e"]))) > 1e-3
    assert int(state.step) == 5 and np.isfinite(float(metrics["loss"]))


def test_evaluate_sae_hand_case():
    # Features +-e1, +-e2 reconstruct any x exactly (tied, no biases).
    w = jnp.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    sae = TrainedSAE(params={"W_e": w, "b_e": jnp.zeros(4), "b_d": jnp.zeros(2)},
                     scale=jnp.asarray(1.0))
    m = sae_lib.evaluate_sae(sae, np.array([[1.0, 2.0], [3.0, -1.0]]))
    assert m.mse == pytest.approx(0.0, abs=1e-10) and m.fve == pytest.approx(1.0)
    assert m.l0 == pytest.approx(2.0) and m.l1 == pytest.approx(3.5)
    assert m.dead_fraction == pytest.approx(0.25)  # -e1 never fires
    assert (m.num_tokens, m.num_features) == (2, 4)
    # A constant-only SAE (encoder never fires) explains none of the variance.
    off = TrainedSAE(params={"W_e": w, "b_e": -100 * jnp.ones(4), "b_d": jnp.array([2.0, 0.5])},
                     scale=jnp.asarray(1.0))
    m0 = sae_lib.evaluate_sae(off, np.array([[1.0, 2.0], [3.0, -1.0]]))
    assert m0.fve == pytest.approx(0.0, abs=1e-6) and m0.dead_fraction == 1.0


def test_evaluate_sae_padding_rows_never_count_as_active():
    # b_e = 0.5 on feature 0 makes it fire on an all-zero row; batch_size 2 over 3 tokens
    # pads the second chunk with one such row, which must not count.
    w = jnp.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    sae = TrainedSAE(params={"W_e": w, "b_e": jnp.array([0.5, 0, 0, 0]), "b_d": jnp.zeros(2)},
                     scale=jnp.asarray(1.0))
    x = np.array([[1.0, 2.0], [3.0, -1.0], [-1.0, 1.0]])
    # Codes: [1.5, 0, 2, 0], [3.5, 0, 0, 1], [0, 1, 1, 0]: 2 active each, L1 3.5 + 4.5 + 2.
    m = sae_lib.evaluate_sae(sae, x, batch_size=2)
    assert m.l0 == pytest.approx(2.0)
    assert m.l1 == pytest.approx(10.0 / 3)
    assert m.dead_fraction == 0.0


def test_activation_scale_uses_the_centred_norm():
    # Centred rows [0, -2] and [0, 2]: mean norm 2, scale 1/2 (the offset 5 is ignored).
    assert sae_lib.activation_scale(np.array([[5.0, 0.0], [5.0, 4.0]])) == pytest.approx(0.5)


def test_train_sae_recovers_planted_sparse_code(tmp_path):
    rng = np.random.default_rng(0)
    d, k_true = 8, 12
    dirs = rng.normal(size=(k_true, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    codes = rng.exponential(1.0, size=(6000, k_true)) * (rng.random((6000, k_true)) < 0.15)
    x = (codes @ dirs + 0.3).astype(np.float32) * 7.0  # offset and scale must not matter
    cfg = SAEConfig(dict_multiple=2, l1_coef=0.02, batch_size=128, num_epochs=6,
                    learning_rate=3e-3)
    with MetricsLog(tmp_path / "sae.jsonl", tensorboard=False) as log:
        sae, hist = sae_lib.train_sae(x[:5000], cfg, x[5000:], metrics_log=log)
    assert hist["loss"][-1] < hist["loss"][0]
    rows = read_metrics(tmp_path / "sae.jsonl")  # one streamed line per epoch
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert [r["loss"] for r in rows] == hist["loss"] and [r["l0"] for r in rows] == hist["l0"]
    assert hist["eval"].fve > 0.9, hist["eval"]
    assert hist["eval"].l0 < d  # sparser than the dense basis
    np.testing.assert_allclose(np.linalg.norm(sae.params["W_e"], axis=1), 1.0, rtol=1e-5)
    save_sae(tmp_path / "sae", sae)  # a sae-lens folder; the input scale is folded in
    back = load_sae(tmp_path / "sae")
    np.testing.assert_allclose(back.features(x[:5]), sae.features(x[:5]), rtol=1e-5, atol=1e-5)
    assert sae_lib.evaluate_sae(back, x[5000:]).fve == pytest.approx(hist["eval"].fve, abs=1e-5)


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ConfigError, match="dict_multiple"):
        SAEConfig(dict_multiple=0)
    with pytest.raises(DataError, match=r"^SAEConfig\.batch_size is 256 but SAE training has "
                                        r"only 10 "):
        sae_lib.train_sae(np.ones((10, 4), np.float32), SAEConfig())
    with pytest.raises(DataError, match="NaN"):
        sae_lib.train_sae(np.full((300, 4), np.nan, np.float32), SAEConfig())
