"""Builds jaxirl's embedded default model: corpus, BPE tokenizer, causal-LM pretraining.

    python experiments/pretrain_default.py                 # cached build
    python experiments/pretrain_default.py --out /tmp/m    # explicit folder (kept if built)
    python experiments/pretrain_default.py --out /tmp/m --overwrite   # rebuild it
    python experiments/pretrain_default.py --evaluate      # + toxicity of sampled continuations

The result is a standard HF folder (config.json, model.safetensors, tokenizer.json,
prompts.jsonl) that transformers' GPTNeoXForCausalLM also loads. ``--out`` must be a new
or empty folder, or a build of the same recipe (kept as is); ``--overwrite`` replaces a
jaxirl build and nothing else. The build goes to a staging folder renamed into place.
"""

# A thin entry point: the launcher is jaxirl.launchers.pretrain_default (console script
# jaxirl-pretrain-default after pip install).
from jaxirl.launchers.pretrain_default import console_main

if __name__ == "__main__":
    console_main()
