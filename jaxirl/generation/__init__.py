"""Jitted KV-cache sampling for the GPT-NeoX port."""

from jaxirl.generation.sampler import (
    GenerationOutput,
    SamplingConfig,
    check_prompt_fits,
    filter_logits,
    generate,
)

__all__ = ["GenerationOutput", "SamplingConfig", "check_prompt_fits", "filter_logits", "generate"]
