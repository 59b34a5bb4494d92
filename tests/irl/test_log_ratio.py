"""The white-box log-ratio reward: completion log-probabilities by hand, padding, the ratio."""

import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.errors import RewardError
from jaxirl.irl.log_ratio import completion_logprobs, log_ratio_rewards, tokenize_completions
from jaxirl.models import GPTNeoXForCausalLM

PROMPTS = ["the cat", "a dog sat on", "the"]
COMPLETIONS = [" sat on a mat", " good", " bad dog ran"]


def _lm(seed):
    model, params = tiny_policy(seed, layers=2)
    params = {k: v for k, v in params.items() if k != "value_head"}
    return GPTNeoXForCausalLM(model.config), params


def _by_hand(model, params, tok, prompt, completion):
    """Σ log p(completion token | prefix), one unpadded forward per row."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    ids = np.array([p + c], np.int32)
    logits = np.asarray(model.apply({"params": params}, ids).logits[0], np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return sum(logp[len(p) - 1 + i, tok_id] for i, tok_id in enumerate(c))


def test_completion_logprobs_match_unpadded_forward_by_hand():
    tok = tiny_tokenizer()
    model, params = _lm(0)
    ids, mask, comp = tokenize_completions(tok, PROMPTS, COMPLETIONS, bucket=8)
    assert ids.shape[1] % 8 == 0 and comp.sum(1).tolist() == [4, 1, 3]
    got = completion_logprobs(model, params, ids, mask, comp, batch_size=2)
    want = [_by_hand(model, params, tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_rows_of_very_different_lengths_run_in_width_buckets_and_keep_their_order():
    """A long row sets the padded width; short rows run in narrower batches (16 columns
    of 48) and still match their unpadded forward, in the input order."""
    tok = tiny_tokenizer()
    model, params = _lm(1)
    long_prompt = " ".join(["the cat sat on a mat"] * 6)
    prompts = ["the", long_prompt, "a dog", "the cat"]
    completions = [" bad dog ran", " good", " sat", " on a mat"]
    ids, mask, comp = tokenize_completions(tok, prompts, completions, max_prompt_tokens=64)
    assert ids.shape[1] == 48 and mask.sum(1).min() <= 8
    got = completion_logprobs(model, params, ids, mask, comp, batch_size=2)
    want = [_by_hand(model, params, tok, p, c) for p, c in zip(prompts, completions, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_log_ratio_is_zero_for_the_same_model_and_scales_with_beta():
    tok = tiny_tokenizer()
    a, b = _lm(0), _lm(1)
    assert np.allclose(log_ratio_rewards(a, a, tok, PROMPTS, COMPLETIONS), 0.0)
    r1 = log_ratio_rewards(a, b, tok, PROMPTS, COMPLETIONS, beta=1.0)
    r2 = log_ratio_rewards(a, b, tok, PROMPTS, COMPLETIONS, beta=0.5)
    np.testing.assert_allclose(r2, 0.5 * r1, rtol=1e-6)
    want = [_by_hand(*a, tok, p, c) - _by_hand(*b, tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    np.testing.assert_allclose(r1, want, rtol=1e-4, atol=1e-5)


def test_prompt_truncation_keeps_the_last_tokens():
    tok = tiny_tokenizer()
    model, params = _lm(0)
    ids, mask, comp = tokenize_completions(tok, ["a dog sat on"], [" mat"], max_prompt_tokens=2)
    row = ids[0][mask[0] > 0].tolist()
    assert tok.decode(row).split() == ["sat", "on", "mat"]
    assert comp[0].sum() == 1


def test_mismatched_lengths_are_an_error():
    with pytest.raises(RewardError, match="2 prompts but 1 completions"):
        tokenize_completions(tiny_tokenizer(), ["a", "b"], ["c"])
