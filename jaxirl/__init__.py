"""jaxirl: recover the reward an RLHF-trained language model was optimised for.

A JAX/Flax reimplementation of "Insights from the Inverse: Reconstructing LLM
Training Goals Through Inverse RL" (Joselowitz et al., arXiv 2410.12491) and
its interpretability companions (Learned Feedback Patterns, Implicit Reward
Models).
"""

from jaxirl.errors import JaxIRLError

__version__ = "0.1.0"
__all__ = ["JaxIRLError", "__version__"]
