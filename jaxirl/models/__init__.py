"""Model ports: GPT-NeoX (Pythia) causal LM, with HF checkpoint IO."""

from jaxirl.models.gpt_neox import (
    GPTNeoXForCausalLM,
    KVCache,
    ModelOutput,
    add_value_head,
    init_params,
    position_ids_from_mask,
)
from jaxirl.models.gpt_neox_config import GPTNeoXConfig
from jaxirl.models.hf_io import (
    load_config,
    load_pretrained,
    load_tokenizer,
    model_with_tokenizer,
    params_from_torch_state,
    save_pretrained,
    torch_state_from_params,
)

__all__ = [
    "GPTNeoXConfig",
    "GPTNeoXForCausalLM",
    "KVCache",
    "ModelOutput",
    "add_value_head",
    "init_params",
    "load_config",
    "load_pretrained",
    "load_tokenizer",
    "model_with_tokenizer",
    "params_from_torch_state",
    "position_ids_from_mask",
    "save_pretrained",
    "torch_state_from_params",
]
