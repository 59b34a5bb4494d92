"""Held-out toxicity evaluation: several samples per prompt, per-prompt means and their SE."""

import jax
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.data.prompts import PromptDataConfig
from jaxirl.errors import ConfigError
from jaxirl.generation.text import evaluate_toxicity, generate_responses, sampling_from_tokenizer
from jaxirl.pipeline.rlhf_stage import RLHFRunConfig


def bad_word_share(texts):
    """P(toxic): the share of words that are 'bad' or 'awful'."""
    return np.array([sum(w in ("bad", "awful") for w in t.split()) / max(len(t.split()), 1)
                     for t in texts])


def test_samples_per_prompt_are_prompt_major_and_averaged_per_prompt():
    model, params = tiny_policy()
    lm = model.clone(with_value_head=False)
    lm_params = {k: v for k, v in params.items() if k != "value_head"}
    prompts = ["the cat", "a dog sat", "the mat", "a cat ran on"]
    out = evaluate_toxicity(lm, lm_params, tiny_tokenizer(), prompts, bad_word_share,
                            max_new_tokens=6, top_k=0, max_prompt_tokens=8, seed=0,
                            samples_per_prompt=5)
    assert out["prompts"] == [p for p in prompts for _ in range(5)]
    tox = np.asarray(out["toxicity"])
    assert tox.shape == (20,) and out["num_prompts"] == 4 and out["samples_per_prompt"] == 5
    np.testing.assert_allclose(out["prompt_toxicity"], tox.reshape(4, 5).mean(1))
    np.testing.assert_allclose(out["mean_toxicity"], tox.mean())
    np.testing.assert_allclose(out["toxicity_se"],
                               np.std(out["prompt_toxicity"], ddof=1) / np.sqrt(4))
    # Samples of one prompt are independent draws, not copies.
    assert len(set(out["responses"][:5])) > 1
    np.testing.assert_allclose(bad_word_share(out["responses"]), tox)


def test_batches_decoded_in_threads_equal_one_after_another():
    """Concurrent decode batches (one per CPU core) give the tokens and texts of a serial run."""
    model, params = tiny_policy()
    tok = tiny_tokenizer()
    lm = model.clone(with_value_head=False)
    lm_params = {k: v for k, v in params.items() if k != "value_head"}
    ids = tok(["the cat", "a dog sat", "the mat", "a cat ran on", "the dog"] * 2, padding=True,
              return_tensors="np")
    sampling = sampling_from_tokenizer(tok, 6, top_k=5)
    runs = [generate_responses(lm, lm_params, tok, ids["input_ids"], ids["attention_mask"],
                               sampling, jax.random.PRNGKey(3), batch_size=3, threads=threads)
            for threads in (1, 3)]
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 10
    np.testing.assert_array_equal(runs[0][1].tokens, runs[1][1].tokens)
    np.testing.assert_array_equal(runs[0][1].logprobs, runs[1][1].logprobs)
    assert len(set(runs[0][0])) > 2  # batches drew different continuations


def test_each_batch_drops_the_padding_its_prompts_do_not_need():
    # Prompts padded to 8 columns; batches of 2 hold prompts of 1-2 or 3-4 tokens, so
    # with bucket 2 they run on 2 or 4 columns: the same tokens and (to rounding)
    # log-probs as on all 8, and the outputs are left-padded back to the widest batch.
    tok = tiny_tokenizer()
    model, params = tiny_policy()
    lm = model.clone(with_value_head=False)
    lm_params = {k: v for k, v in params.items() if k != "value_head"}
    ids = tok(["the", "the cat", "a dog sat", "a cat ran on"], padding="max_length",
              max_length=8, return_tensors="np")
    lengths = ids["attention_mask"].sum(1)
    assert lengths.max() <= 4 < 8 and lengths[:2].max() <= 2
    sampling = sampling_from_tokenizer(tok, 6, top_k=5)
    runs = {bucket: generate_responses(lm, lm_params, tok, ids["input_ids"],
                                       ids["attention_mask"], sampling, jax.random.PRNGKey(3),
                                       batch_size=2, threads=1, prompt_bucket=bucket)
            for bucket in (0, 2)}
    (full_texts, full), (cut_texts, cut) = runs[0], runs[2]
    assert cut_texts == full_texts
    np.testing.assert_array_equal(cut.tokens, full.tokens)
    np.testing.assert_allclose(cut.logprobs, full.logprobs, atol=1e-5)
    assert full.sequences.shape == (4, 8 + 6) and cut.sequences.shape == (4, 4 + 6)
    np.testing.assert_array_equal(cut.sequences, full.sequences[:, 4:])
    np.testing.assert_array_equal(cut.attention_mask, full.attention_mask[:, 4:])


def test_zero_samples_per_prompt_is_a_clear_error():
    with pytest.raises(ConfigError, match="RLHFRunConfig.eval_samples_per_prompt must be >= 1"):
        RLHFRunConfig(model="m", prompts=PromptDataConfig(path="p.jsonl"),
                      eval_samples_per_prompt=0)
