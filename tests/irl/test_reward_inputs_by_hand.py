"""Truncation of the log-ratio and reward-model inputs, and the demonstration columns and split, by hand."""

import numpy as np
from tiny_setup import tiny_tokenizer


def test_completion_truncation_keeps_the_first_tokens():
    from jaxirl.irl.log_ratio import tokenize_completions
    tok = tiny_tokenizer()
    ids, mask, comp = tokenize_completions(tok, ["the"], [" cat sat on a mat"],
                                           max_completion_tokens=2)
    assert tok.decode(ids[0][comp[0] > 0].tolist()).split() == ["cat", "sat"]


def test_width_never_exceeds_max_length():
    from jaxirl.irl.reward_model import tokenize_texts
    ids, mask = tokenize_texts(["the cat sat on a mat good"], tiny_tokenizer(), max_length=5)
    assert ids.shape == (1, 5) and mask.sum() == 5


def test_demo_columns_and_split_size():
    from jaxirl.irl.demos import demos_from_texts
    from jaxirl.rewards import make_scorer
    prompts = ["a b", "c d", "e f", "g h"]
    demos = demos_from_texts(prompts, [p + " fine" for p in prompts],
                             [p + " damn it" for p in prompts], test_fraction=0.3, seed=0)
    assert len(demos["test"]) == 2  # ceil(0.3 * 4) = 2 held-out prompts
    scorer = make_scorer("profanity")
    for split in ("train", "test"):
        np.testing.assert_allclose(demos[split]["expert_toxicity"],
                                   scorer(demos[split]["expert_text"]))


def test_selected_prompts_keep_their_order():
    from jaxirl.irl.demos import select_prompts
    prompts = [f"p{i}" for i in range(10)]
    order = np.random.default_rng(0).permutation(10)[:4]
    assert select_prompts(prompts, 4, 0) == [prompts[i] for i in sorted(order)]
