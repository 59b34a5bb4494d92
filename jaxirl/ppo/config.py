"""PPO hyperparameters with trlx's names, and the paper's Pythia presets.

Defaults are trlx's ``default_ppo_config()``; :data:`PRESETS` holds the runs
of the paper's reference code (ai4ai-lab/irl_for_llms ``src/train_rlhf.py``,
itself following EleutherAI's pythia-rlhf sweeps).
"""

from __future__ import annotations

import dataclasses

from jaxirl.errors import ConfigError

SCALE_REWARD_MODES = ("running", "ref", None)
# What the reward function reads: the prompt and the response (the paper's reference
# scores trlx's ``samples``, prompt + output, against prompt + original output), or the
# response alone.
REWARD_TEXTS = ("prompt_and_response", "response")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO-for-RLHF hyperparameters. Frozen and hashable (usable as a jit static arg).

    Attributes:
      lr: AdamW learning rate.
      weight_decay, adam_betas, adam_eps: the rest of trlx's AdamW kwargs.
      batch_size: sequences per PPO minibatch (optimizer step).
      num_rollouts: sequences generated per experience-collection phase.
      ppo_epochs: passes over the rollouts per phase.
      chunk_size: prompts per generation batch during rollouts.
      init_kl_coef: initial β of the KL penalty.
      target: target KL (nats per sequence) of the adaptive controller; None
        keeps β fixed.
      horizon: adaptive controller horizon, in samples.
      gamma, lam: GAE discount and λ.
      cliprange: PPO ratio clip ε.
      cliprange_value: value clip ε_v (reward units).
      vf_coef: value-loss weight.
      ent_coef: entropy-bonus weight (not in trlx; 0 reproduces it).
      whiten_advantages: whiten advantages (trlx default True), once over the whole
        rollout's response tokens (trlx whitens each minibatch; see BUILD_NOTES.md).
      cliprange_reward: clip reward-model scores to ±this; None or 0 = no clip.
      scale_reward: "running" (÷ running std), "ref" (÷ first-batch std) or None.
      ref_mean, ref_std: fixed reference statistics for "ref" (None: first batch).
      reward_text: what the reward function scores. ``"prompt_and_response"`` (the
        paper's): the prompt followed by the response, against the prompt followed by
        its reference continuation (trlx hands ``samples`` = prompt + output to the
        reward; irl_for_llms scores those and prompt + ``original_output``).
        ``"response"``: the response alone, against the reference alone.
      max_new_tokens, top_k, top_p, temperature: rollout sampling (top_k 0 = off).
      num_layers_unfrozen: trainable top transformer blocks (-1: all); the
        rest of the policy is frozen and shared with the reference model.
      max_grad_norm: global-norm gradient clip; None = none (as trlx).
      seed: PRNG seed (trlx TrainConfig default 1000).
      prompt_bucket: each iteration's prompts keep only the left-padding columns
        their longest prompt needs, rounded up to a multiple of this (trlx pads each
        batch to its longest prompt; the rounding bounds the compiled widths); 0 pads
        every iteration to the dataset's longest prompt.
    """

    lr: float = 3e-5
    weight_decay: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    batch_size: int = 32
    num_rollouts: int = 128
    ppo_epochs: int = 4
    chunk_size: int = 128
    init_kl_coef: float = 0.001
    target: float | None = None
    horizon: int = 10000
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 1.0
    ent_coef: float = 0.0
    whiten_advantages: bool = True
    cliprange_reward: float | None = 10.0
    scale_reward: str | None = None
    ref_mean: float | None = None
    ref_std: float | None = None
    reward_text: str = "prompt_and_response"
    max_new_tokens: int = 40
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    num_layers_unfrozen: int = 2
    max_grad_norm: float | None = None
    seed: int = 1000
    prompt_bucket: int = 8

    def __post_init__(self):
        self.validate()

    def _fail(self, field: str, rule: str):
        raise ConfigError(f"PPOConfig field '{field}' {rule}, got {getattr(self, field)!r}")

    def validate(self) -> PPOConfig:
        """Check every field; raise ConfigError naming the first bad one. Returns self."""
        ints = (
            "batch_size", "num_rollouts", "ppo_epochs", "chunk_size", "horizon",
            "max_new_tokens", "top_k", "num_layers_unfrozen", "seed", "prompt_bucket",
        )  # fmt: skip
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                self._fail(name, "must be an integer")
        for name in ("batch_size", "num_rollouts", "ppo_epochs", "chunk_size", "horizon"):
            if getattr(self, name) <= 0:
                self._fail(name, "must be > 0")
        if self.max_new_tokens <= 0:
            self._fail("max_new_tokens", "must be > 0")
        positive = ("lr", "cliprange", "cliprange_value", "temperature", "adam_eps")
        for name in positive:
            if not getattr(self, name) > 0:
                self._fail(name, "must be > 0")
        for name in ("weight_decay", "init_kl_coef", "vf_coef", "ent_coef"):
            if not getattr(self, name) >= 0:
                self._fail(name, "must be >= 0")
        for name in ("gamma", "lam"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                self._fail(name, "must lie in [0, 1]")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            self._fail("adam_betas", "must be two numbers in [0, 1)")
        if self.target is not None and not self.target > 0:
            self._fail("target", "must be > 0 or None (fixed KL coefficient)")
        if self.cliprange_reward is not None and not self.cliprange_reward >= 0:
            self._fail("cliprange_reward", "must be >= 0 or None")
        if self.scale_reward not in SCALE_REWARD_MODES:
            self._fail("scale_reward", "must be 'running', 'ref' or None")
        if (self.ref_mean is None) != (self.ref_std is None):
            self._fail("ref_std", "must be set together with 'ref_mean'")
        if self.ref_std is not None and not self.ref_std > 0:
            self._fail("ref_std", "must be > 0")
        if self.reward_text not in REWARD_TEXTS:
            self._fail("reward_text", "must be 'prompt_and_response' or 'response'")
        if self.prompt_bucket < 0:
            self._fail("prompt_bucket", "must be >= 0 (0 = the dataset's longest prompt)")
        if self.top_k < 0:
            self._fail("top_k", "must be >= 0 (0 = off)")
        if not 0.0 < self.top_p <= 1.0:
            self._fail("top_p", "must lie in (0, 1]")
        if self.num_layers_unfrozen < -1:
            self._fail("num_layers_unfrozen", "must be >= -1 (-1 = all layers)")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            self._fail("max_grad_norm", "must be > 0 or None")
        return self


_PYTHIA70M = PPOConfig(
    lr=3e-6,
    weight_decay=6e-4,
    batch_size=16,
    num_rollouts=32,
    ppo_epochs=8,
    chunk_size=4,
    init_kl_coef=0.2,
    target=5.71,
    horizon=10000,
    gamma=1.0,
    lam=0.95,
    cliprange=0.2,
    cliprange_value=0.2,
    vf_coef=1.0,
    cliprange_reward=10.0,
    scale_reward="running",
    max_new_tokens=128,
    top_k=30,
    top_p=1.0,
    num_layers_unfrozen=4,
)

PRESETS: dict[str, PPOConfig] = {
    # EleutherAI pythia-rlhf run do2vbz2o, as in the paper's reference code.
    "pythia70m": _PYTHIA70M,
    # Run vpuhppgx: 410m overrides on top of the 70m run. The reference code also
    # sets batch_size=8 and num_rollouts=48 here; the paper reports 70m's values.
    "pythia410m": dataclasses.replace(
        _PYTHIA70M, lr=8e-7, weight_decay=1e-6, ppo_epochs=5, target=4.9, num_layers_unfrozen=3
    ),
    # The embedded default model (4 x 128, 2k vocab) on 2 CPU cores; tuned so that
    # a few minutes of PPO halve held-out toxicity at a KL near the target.
    "default": dataclasses.replace(
        _PYTHIA70M,
        lr=1e-4,
        weight_decay=0.0,
        batch_size=16,
        num_rollouts=64,
        chunk_size=64,
        ppo_epochs=4,
        init_kl_coef=0.05,
        target=4.0,
        horizon=2000,
        max_new_tokens=24,
        top_k=30,
        scale_reward="running",
        num_layers_unfrozen=-1,
        max_grad_norm=1.0,
    ),
    # The pipeline's smoke run: the default's settings at toy sizes.
    "smoke": dataclasses.replace(
        _PYTHIA70M, lr=1e-4, weight_decay=0.0, batch_size=8, num_rollouts=16, chunk_size=16,
        ppo_epochs=1, init_kl_coef=0.05, target=4.0, horizon=2000, max_new_tokens=8, top_k=30,
        scale_reward="running", num_layers_unfrozen=-1, max_grad_norm=1.0),
    # Smoke tests with a tiny random GPT-NeoX.
    "tiny": dataclasses.replace(
        _PYTHIA70M,
        lr=1e-4,
        batch_size=4,
        num_rollouts=8,
        ppo_epochs=2,
        chunk_size=4,
        max_new_tokens=8,
        top_k=0,
        num_layers_unfrozen=-1,
    ),
}


def get_preset(name: str) -> PPOConfig:
    """The preset called ``name``; ConfigError listing the valid names otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"unknown PPO preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
