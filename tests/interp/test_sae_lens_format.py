"""SAEs in the sae-lens format: sae_lens loads jaxirl's export with the same outputs, and back."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxirl.errors import CheckpointError
from jaxirl.interp.sae import SAEConfig, TrainedSAE, decode, init_sae
from jaxirl.interp.sae_lens_format import load_sae, mlp_out_hook_name, save_sae

D = 16


def _trained_like(tied: bool, seed: int = 0) -> TrainedSAE:
    """A random SAE with every parameter non-trivial and an input scale far from 1."""
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = init_sae(k[0], D, SAEConfig(dict_multiple=2, tied=tied))
    params["b_e"] = 0.1 * jax.random.normal(k[1], params["b_e"].shape)
    params["b_d"] = jax.random.normal(k[2], (D,))
    if not tied:
        params["W_d"] = 0.3 * jax.random.normal(k[3], params["W_d"].shape)
    return TrainedSAE(params=params, scale=jnp.asarray(0.037, jnp.float32))


def _raw_activations(n=64, seed=1):
    # Raw units: about 1 / scale, with an offset, as real MLP outputs.
    return np.asarray(3.0 + 27.0 * jax.random.normal(jax.random.PRNGKey(seed), (n, D)), np.float32)


@pytest.mark.parametrize("tied", [True, False])
def test_sae_lens_loads_the_export_with_equal_outputs(tmp_path, tied):
    torch = pytest.importorskip("torch")
    sae_lens = pytest.importorskip("sae_lens")
    sae = _trained_like(tied)
    x = _raw_activations()
    path = save_sae(tmp_path / "sae", sae, hook_name=mlp_out_hook_name(2), model_name="m",
                    context_size=32)
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae_weights.safetensors"]

    theirs = sae_lens.SAE.load_from_disk(str(path))
    assert theirs.cfg.metadata.hook_name == "blocks.2.hook_mlp_out"
    assert (theirs.cfg.d_in, theirs.cfg.d_sae) == (D, 2 * D)
    with torch.no_grad():
        codes = theirs.encode(torch.tensor(x)).numpy()
        recon = theirs.decode(torch.tensor(codes)).numpy()
        forward = theirs(torch.tensor(x)).numpy()
    ours = np.asarray(sae.features(x))
    assert (ours > 0).mean() > 0.2  # enough active features for the check to mean something
    np.testing.assert_allclose(codes, ours, atol=1e-5)
    # Reconstructions are in raw units (|x| up to ~100 here): equal within 1e-5 of that scale.
    want = np.asarray(sae.reconstruct(x))
    scale = np.abs(want).max()
    np.testing.assert_allclose(recon / scale, want / scale, atol=1e-5)
    np.testing.assert_allclose(forward, recon, atol=1e-6 * scale)


@pytest.mark.parametrize("tied", [True, False])
def test_load_sae_recovers_jaxirls_parameters(tmp_path, tied):
    sae = _trained_like(tied)
    back = load_sae(save_sae(tmp_path / "sae", sae))
    assert ("W_d" in back.params) == (not tied) and float(back.scale) == pytest.approx(0.037)
    for name, value in sae.params.items():
        np.testing.assert_allclose(back.params[name], value, rtol=1e-5, atol=1e-6)
    x = _raw_activations()
    np.testing.assert_allclose(back.reconstruct(x), sae.reconstruct(x), rtol=1e-5, atol=1e-4)


def test_a_standard_sae_lens_sae_loads_into_jaxirl(tmp_path):
    """sae-lens' own SAEs subtract b_dec from the input; load_sae folds that into b_e."""
    torch = pytest.importorskip("torch")
    sae_lens = pytest.importorskip("sae_lens")
    torch.manual_seed(0)
    theirs = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=D, d_sae=3 * D,
                                                             apply_b_dec_to_input=True))
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    theirs.save_model(str(tmp_path / "theirs"))
    ours = load_sae(tmp_path / "theirs")
    x = _raw_activations() / 27.0
    with torch.no_grad():
        codes = theirs.encode(torch.tensor(x)).numpy()
        recon = theirs.decode(torch.tensor(codes)).numpy()
    np.testing.assert_allclose(ours.features(x), codes, atol=1e-5)
    np.testing.assert_allclose(decode(ours.params, ours.features(x)), recon, atol=1e-5)


def test_unsupported_or_broken_folders_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a sae-lens SAE folder"):
        load_sae(tmp_path)
    path = save_sae(tmp_path / "sae", _trained_like(True))
    cfg = json.loads((path / "cfg.json").read_text())
    (path / "cfg.json").write_text(json.dumps({**cfg, "architecture": "topk"}))
    with pytest.raises(CheckpointError, match="architecture 'topk' is not supported"):
        load_sae(path)
    (path / "cfg.json").write_text(json.dumps(cfg))
    (path / "sae_weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read .*sae_weights.safetensors"):
        load_sae(path)
