"""Demonstrations: generation budget, full texts, ground truth, split by prompt, disk round trip."""

import datasets
import numpy as np
import pytest
from tiny_setup import tiny_policy, tiny_tokenizer

from jaxirl.errors import ConfigError, DataError
from jaxirl.irl.demos import (
    DEMO_COLUMNS,
    DemoConfig,
    Generator,
    build_demos,
    demos_from_texts,
    load_demos,
    save_demos,
)
from jaxirl.rewards import make_scorer

PROMPTS = ["the cat", "a dog sat", "the mat", "a cat ran on", "the dog", "a mat",
           "the cat sat", "a dog ran", "the dog sat on", "a cat"]


def _generator(seed):
    model, params = tiny_policy(seed=seed, layers=2)
    return Generator(model, params, tiny_tokenizer())


def test_build_save_load_round_trip(tmp_path):
    config = DemoConfig(max_length=9, test_fraction=0.2, seed=3, batch_size=4)
    demos = build_demos(PROMPTS, _generator(1), _generator(2), config)
    assert len(demos["train"]) == 8 and len(demos["test"]) == 2
    assert set(demos["train"]["prompt"]).isdisjoint(demos["test"]["prompt"])
    tok = tiny_tokenizer()
    scorer = make_scorer("profanity")
    for split in ("train", "test"):
        ds = demos[split]
        assert tuple(ds.column_names) == DEMO_COLUMNS
        for row in ds:
            for who in ("expert", "base"):
                assert row[f"{who}_text"] == row["prompt"] + row[f"{who}_response"]
                # Greedy, 9 tokens in all: the widest prompt (4 tokens) leaves 5 new tokens.
                # (An immediate EOS leaves the response empty and the text = the prompt.)
                assert len(tok(row[f"{who}_response"])["input_ids"]) <= 5
                assert len(tok(row[f"{who}_text"])["input_ids"]) <= 9
        np.testing.assert_allclose(ds["expert_true_reward"], scorer.log_odds(ds["expert_text"]))
        np.testing.assert_allclose(ds["base_toxicity"], scorer(ds["base_text"]))
    # The expert and base models differ, so their continuations do too.
    assert demos["train"]["expert_text"] != demos["train"]["base_text"]
    assert max(len(tok(r)["input_ids"]) for r in demos["train"]["base_response"]) == 5
    # Greedy decoding and a seeded split: the same config gives the same demos.
    again = build_demos(PROMPTS, _generator(1), _generator(2), config)
    assert again["test"]["expert_text"] == demos["test"]["expert_text"]

    save_demos(demos, tmp_path / "demos")
    loaded = load_demos(tmp_path / "demos")
    for split in ("train", "test"):
        assert loaded[split].to_dict() == demos[split].to_dict()


def test_repeated_prompts_stay_in_one_split():
    prompts = ["a b"] * 3 + ["c d"] * 3 + ["e f"] * 3 + ["g h"] * 3 + ["i j"] * 3
    expert = [p + " fine" for p in prompts]
    base = [p + " damn it" for p in prompts]
    demos = demos_from_texts(prompts, expert, base, test_fraction=0.2, seed=0)
    assert len(demos["test"]) == 3 and len(set(demos["test"]["prompt"])) == 1
    assert set(demos["train"]["prompt"]).isdisjoint(demos["test"]["prompt"])
    assert demos["train"]["base_response"][0] == " damn it"


def test_given_held_out_prompts_are_the_test_split():
    prompts = ["a b", "c d", "e f", "g h", "i j"] * 2
    demos = demos_from_texts(prompts, [p + " x" for p in prompts], [p + " y" for p in prompts],
                             test_prompts=["c d", "i j", "not a demo prompt"])
    assert demos["test"]["prompt"] == ["c d", "i j", "c d", "i j"]
    assert demos["train"]["prompt"] == ["a b", "e f", "g h"] * 2
    for held in ([], ["z"], list(set(prompts))):
        with pytest.raises(DataError, match=r"leave \d+ of the 5 distinct demonstration "
                                            r"prompts held out; both splits need one"):
            demos_from_texts(prompts, prompts, prompts, test_prompts=held)


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="expert_texts has 1 rows but there are 2 prompts"):
        demos_from_texts(["a", "b"], ["a x"], ["a y", "b y"])
    with pytest.raises(DataError, match="too few"):
        demos_from_texts(["a", "a"], ["a x", "a z"], ["a y", "a w"])
    with pytest.raises(ConfigError, match="'test_fraction'"):
        DemoConfig(test_fraction=1.0)
    with pytest.raises(ConfigError, match="leave no room"):
        build_demos(PROMPTS, _generator(1), _generator(2), DemoConfig(max_length=4))
    with pytest.raises(DataError, match="not a saved DatasetDict"):
        load_demos(tmp_path)
    bad = datasets.DatasetDict(train=datasets.Dataset.from_dict({"prompt": ["a"]}),
                               test=datasets.Dataset.from_dict({"prompt": ["b"]}))
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match="split 'train' lacks column 'expert_text'"):
        load_demos(tmp_path / "bad")


def test_more_samples_than_prompts_is_an_error_naming_both():
    from jaxirl.irl.demos import select_prompts

    assert select_prompts(PROMPTS, None, 0) == PROMPTS == select_prompts(PROMPTS, 10, 0)
    assert len(select_prompts(PROMPTS, 4, 0)) == 4
    # It was silently capped at the 10 prompts.
    with pytest.raises(DataError, match=r"^demos field 'num_samples' is 11 but there are only "
                                        r"10 prompts to draw from"):
        select_prompts(PROMPTS, 11, 0)
