"""A tiny word-level policy, tokenizer, prompts and reward for fast RL tests."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from jaxirl.data.tokenization import tokenize_prompts
from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params
from jaxirl.ppo.config import get_preset

WORDS = "<|endoftext|> the cat sat on a mat dog bad good nice awful ran".split()


def tiny_tokenizer():
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                                pad_token="<|endoftext|>", padding_side="left")


def word_reward(texts, refs=None):
    """+1 per 'good', -1 per 'bad': a reward whose optimum is easy to see."""
    return np.array([t.split().count("good") - t.split().count("bad") for t in texts], np.float32)


def tiny_policy(seed: int = 0, layers: int = 3):
    config = GPTNeoXConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=layers,
                           num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    model = GPTNeoXForCausalLM(config, with_value_head=True)
    params = init_params(config, jax.random.PRNGKey(seed), with_value_head=True)
    return model, params


def tiny_prompts(tokenizer, pad_to_multiple_of: int = 1):
    return tokenize_prompts(["the cat", "a dog sat", "the mat", "a cat ran on"] * 4, tokenizer, 8,
                            pad_to_multiple_of=pad_to_multiple_of)


def tiny_ppo_config(**overrides):
    base = dict(num_layers_unfrozen=2, target=1.0, horizon=100, batch_size=4, num_rollouts=8,
                chunk_size=4, ppo_epochs=2, max_new_tokens=8, lr=1e-3, seed=3,
                # Adam turns float-noise gradients (e.g. of key biases, which softmax
                # ignores) into lr-sized steps when eps is tiny; 1e-6 keeps them noise-sized.
                adam_eps=1e-6)
    base.update(overrides)
    return dataclasses.replace(get_preset("tiny"), **base)


def write_tiny_model(folder, seed: int = 0, layers: int = 2):
    """Saves a tiny random policy (no value head) with the word tokenizer; returns the folder."""
    from jaxirl.models import save_pretrained

    model, params = tiny_policy(seed=seed, layers=layers)
    lm_params = {k: v for k, v in params.items() if k != "value_head"}
    return save_pretrained(folder, model.config, lm_params, tokenizer=tiny_tokenizer())


def write_tiny_run_inputs(root):
    """An RLHF run's inputs under ``root``: a 3-block tiny model in ``model/`` and 30
    prompts with references in ``prompts.jsonl``; returns ``root``."""
    from jaxirl.data.prompts import write_jsonl

    write_tiny_model(root / "model", layers=3)
    words = ["the cat", "a dog sat", "the mat", "a cat ran on", "the dog", "a mat"]
    # Distinct strings: repeated prompts are dropped before the train/held-out split.
    prompts = [w + end for end in ("", " sat", " ran", " on a mat", " good") for w in words]
    write_jsonl([{"prompt": p, "original_output": " good cat"} for p in prompts],
                root / "prompts.jsonl")
    return root


def write_tiny_demos(folder, num_prompts: int = 10):
    """Saves demonstrations (expert texts end in 'good', base texts in 'bad'); returns the folder."""
    from jaxirl.irl.demos import demos_from_texts, save_demos

    prompts = [f"{a} {b}" for a in ("the cat", "a dog", "the dog", "a cat", "the mat")
               for b in ("sat", "ran")][:num_prompts]
    expert = [p + " good nice" for p in prompts]
    base = [p + " bad awful" for p in prompts]
    return save_demos(demos_from_texts(prompts, expert, base, scorer="profanity"), folder)
