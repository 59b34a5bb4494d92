"""Long loops show a labelled tqdm bar when asked, and none by default."""

import jax
import numpy as np
from tiny_setup import tiny_policy, tiny_prompts, tiny_tokenizer

from jaxirl.generation.text import generate_responses, sampling_from_tokenizer
from jaxirl.interp.activations import capture_mlp_activations
from jaxirl.interp.sae import SAEConfig, train_sae


def _bar(err: str, label: str) -> bool:
    # A bar inside a stage is cleared when done (leave=False); its first frame stays.
    return f"\r{label}:   0%|" in err


def test_generation_and_activation_capture_bars(capsys):
    tokenizer = tiny_tokenizer()
    model, params = tiny_policy()
    lm = model.clone(with_value_head=False)
    params = {k: v for k, v in params.items() if k != "value_head"}
    prompts = tiny_prompts(tokenizer)
    sampling = sampling_from_tokenizer(tokenizer, 4)
    args = (lm, params, tokenizer, prompts.input_ids, prompts.attention_mask, sampling,
            jax.random.PRNGKey(0))
    quiet, _ = generate_responses(*args, batch_size=8)
    assert "%|" not in capsys.readouterr().err
    shown, _ = generate_responses(*args, batch_size=8, progress="demos: expert")
    assert _bar(capsys.readouterr().err, "demos: expert") and shown == quiet

    capture_mlp_activations(lm, params, prompts.input_ids, prompts.attention_mask, [1],
                            batch_size=4, progress="activations: train")
    assert _bar(capsys.readouterr().err, "activations: train")


def test_sae_training_bar(capsys):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    train_sae(x, SAEConfig(batch_size=16, num_epochs=2), progress="sae_layer1_x2")
    assert _bar(capsys.readouterr().err, "sae_layer1_x2")
