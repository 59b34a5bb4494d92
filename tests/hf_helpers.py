"""Helpers shared by tests: tiny random transformers models and padded batches."""

from __future__ import annotations

import numpy as np


def make_hf_gpt_neox(path, seed: int = 0, **overrides):
    """Saves a random transformers GPTNeoXForCausalLM to ``path``; returns the torch model."""
    import torch
    import transformers

    kwargs = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=128, rotary_pct=0.25,
                  use_parallel_residual=True, eos_token_id=5, pad_token_id=1, bos_token_id=0)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**kwargs)).eval()
    model.save_pretrained(str(path))
    return model


def left_padded_batch(vocab: int, lengths, total: int, pad_id: int = 1, seed: int = 0):
    """Random ids [B, total] with row i holding lengths[i] real tokens on the right."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(6, vocab, size=(len(lengths), total)).astype(np.int64)
    mask = np.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, total - n:] = 1
    ids[mask == 0] = pad_id
    return ids, mask


def hf_logits(torch_model, ids, mask):
    """transformers logits with HF generate's position ids for left padding."""
    import torch

    pos = np.clip(mask.cumsum(-1) - 1, 0, None)
    with torch.no_grad():
        return torch_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                           position_ids=torch.tensor(pos)).logits.numpy()
