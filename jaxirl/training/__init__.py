"""Training loops shared across stages (causal-LM pretraining)."""
