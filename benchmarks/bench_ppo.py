"""One PPO iteration: jaxirl's ``PPOTrainer.step`` vs the same step written in PyTorch.

An iteration is trlx's schedule: sample ``num_rollouts`` continuations (top-k),
score them on the host, one forward for log-probs / values / reference log-probs,
per-token KL penalty, GAE, whitening; then ``ppo_epochs`` passes over
``batch_size`` minibatches of the clipped policy + value loss with AdamW.

There is no off-the-shelf PyTorch peer: TRL 1.x dropped its PPO trainer and trl
is not installed here, so :class:`TorchPPO` is a faithful PyTorch implementation
of the same step on transformers' ``GPTNeoXForCausalLM`` (HF ``generate`` for the
rollout, a trlx value head, a frozen deep-copied reference model). Both sides use
the same weights, prompts, hyperparameters and a trivial word-count reward, so
both pay the same (negligible) host reward cost.
Run alone with ``python -m benchmarks.bench_ppo``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import tempfile
import time
from typing import Any

import numpy as np
from absl import app, flags

from benchmarks import common

EOS = 0


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer whose words are ``w1 .. w{V-1}`` (id 0 is EOS / pad)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    words = ["<|endoftext|>"] + [f"w{i}" for i in range(1, vocab_size)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=words[0],
                                                pad_token=words[0], padding_side="left")


def word_reward(texts, refs=None) -> np.ndarray:
    """+1 per 'w1', -1 per 'w2': a reward that costs the host next to nothing."""
    return np.array([t.split().count("w1") - t.split().count("w2") for t in texts], np.float32)


def random_prompts(vocab_size: int, count: int, length: int, seed: int = 0) -> list[str]:
    rng = np.random.RandomState(seed)
    return [" ".join(f"w{i}" for i in rng.randint(1, vocab_size, size=length)) for _ in range(count)]


def ppo_config(**overrides):
    """The ``default`` preset (its sizes), fixed KL coefficient for a steady comparison."""
    from jaxirl.ppo.config import get_preset

    return dataclasses.replace(get_preset("default"), **overrides)


class TorchPPO:
    """The PPO iteration of :class:`jaxirl.ppo.trainer.PPOTrainer`, in plain PyTorch.

    Args:
      folder: a saved transformers GPT-NeoX (the same weights jaxirl loads).
      tokenizer: for decoding responses to text.
      config: a jaxirl ``PPOConfig`` (only its numbers are read).
      prompt_ids: [num_prompts, P] int64 prompt tokens (no padding).
    """

    def __init__(self, folder, tokenizer, config, prompt_ids: np.ndarray, seed: int = 0):
        import torch
        import transformers
        from torch import nn

        torch.manual_seed(seed)
        self.cfg, self.tokenizer = config, tokenizer
        self.policy = transformers.GPTNeoXForCausalLM.from_pretrained(str(folder))
        hidden = self.policy.config.hidden_size
        self.value_head = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(),
                                        nn.Linear(2 * hidden, 1))
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.params = list(self.policy.parameters()) + list(self.value_head.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, betas=config.adam_betas,
                                     eps=config.adam_eps, weight_decay=config.weight_decay)
        self.prompts = torch.from_numpy(prompt_ids.astype(np.int64))
        self.position = 0
        self.kl_coef = config.init_kl_coef

    def _forward(self, model, seqs, mask, prompt_len, with_values: bool):
        """Log-probs [R, N] of the response tokens (and values [R, N])."""
        import torch

        out = model(input_ids=seqs, attention_mask=mask, output_hidden_states=with_values)
        logits = out.logits[:, prompt_len - 1:-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        lp = torch.gather(logp, 2, seqs[:, prompt_len:, None])[..., 0]
        values = None
        if with_values:
            values = self.value_head(out.hidden_states[-1][:, prompt_len - 1:-1])[..., 0]
        return lp, values, logits

    def rollout(self):
        import torch

        cfg = self.cfg
        n = cfg.num_rollouts
        idx = (self.position + np.arange(n)) % len(self.prompts)
        self.position += n
        prompts = self.prompts[idx]
        p = prompts.shape[1]
        self.policy.eval()
        with torch.no_grad():
            seqs = []
            for chunk in torch.split(prompts, cfg.chunk_size):
                out = self.policy.generate(
                    input_ids=chunk, attention_mask=torch.ones_like(chunk), do_sample=True,
                    top_k=cfg.top_k, top_p=cfg.top_p, temperature=cfg.temperature,
                    max_new_tokens=cfg.max_new_tokens, min_new_tokens=0, eos_token_id=EOS,
                    pad_token_id=EOS)
                # Pad every chunk to the full budget so that rows stack.
                pad = p + cfg.max_new_tokens - out.shape[1]
                seqs.append(torch.nn.functional.pad(out, (0, pad), value=EOS))
            seqs = torch.cat(seqs)
            tokens = seqs[:, p:]
            # Response tokens up to and including the first EOS.
            is_eos = (tokens == EOS).int()
            mask = ((torch.cumsum(is_eos, 1) - is_eos) == 0).float()
            attn = torch.cat([torch.ones_like(prompts), mask.long()], dim=1)
            texts = [self.tokenizer.decode(t[m.bool()].tolist(), skip_special_tokens=True)
                     for t, m in zip(tokens, mask, strict=True)]
            scores = torch.from_numpy(word_reward(texts))
            std = scores.std()
            scaled = scores / std if std > 0 else scores
            scaled = scaled.clamp(-cfg.cliprange_reward, cfg.cliprange_reward)
            logprobs, values, _ = self._forward(self.policy, seqs, attn, p, True)
            ref_logprobs, _, _ = self._forward(self.ref, seqs, attn, p, False)
            # Per-token KL penalty, sequence score added at the last response token.
            rewards = -self.kl_coef * (logprobs - ref_logprobs) * mask
            last = (mask.sum(1).long() - 1).clamp(min=0)
            rewards[torch.arange(n), last] += scaled
            advantages = torch.zeros_like(rewards)
            next_adv = torch.zeros(n)
            next_value = torch.zeros(n)
            for t in reversed(range(rewards.shape[1])):
                delta = rewards[:, t] + cfg.gamma * next_value - values[:, t]
                next_adv = (delta + cfg.gamma * cfg.lam * next_adv) * mask[:, t]
                next_value = values[:, t] * mask[:, t]
                advantages[:, t] = next_adv
            returns = advantages + values
            mean = (advantages * mask).sum() / mask.sum()
            var = (((advantages - mean) ** 2) * mask).sum() / (mask.sum() - 1)
            advantages = (advantages - mean) * torch.rsqrt(var + 1e-8) * mask
        return dict(seqs=seqs, attn=attn, mask=mask, logprobs=logprobs, values=values,
                    advantages=advantages, returns=returns, prompt_len=p)

    def update(self, buf) -> float:
        import torch

        cfg = self.cfg
        self.policy.train()
        p = buf["prompt_len"]
        loss = torch.zeros(())
        for _ in range(cfg.ppo_epochs):
            for idx in torch.randperm(cfg.num_rollouts).split(cfg.batch_size):
                mask = buf["mask"][idx]
                count = mask.sum().clamp(min=1.0)
                lp, values, logits = self._forward(self.policy, buf["seqs"][idx], buf["attn"][idx],
                                                   p, True)
                ratio = torch.exp(lp - buf["logprobs"][idx])
                adv = buf["advantages"][idx]
                pg = torch.maximum(-adv * ratio,
                                   -adv * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange))
                old_v = buf["values"][idx]
                v_clip = old_v + (values - old_v).clamp(-cfg.cliprange_value, cfg.cliprange_value)
                ret = buf["returns"][idx]
                vf = 0.5 * torch.maximum((values - ret) ** 2, (v_clip - ret) ** 2)
                loss = ((pg * mask).sum() + cfg.vf_coef * (vf * mask).sum()) / count
                if cfg.ent_coef:
                    ent = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
                    loss = loss - cfg.ent_coef * (ent * mask).sum() / count
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.opt.step()
        return float(loss.detach())

    def step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        buf = self.rollout()
        t1 = time.perf_counter()
        loss = self.update(buf)
        return {"loss": loss, "time_rollout": t1 - t0, "time_update": time.perf_counter() - t1}


def ppo_pair(shape: str, repeats: int = 3, prompt_len: int = 8, num_prompts: int = 256,
             workdir=None, **overrides) -> dict[str, Any]:
    """Times one PPO iteration on both sides; returns a result row (times in s)."""
    import torch
    import transformers

    from jaxirl.data.tokenization import tokenize_prompts
    from jaxirl.models import load_pretrained
    from jaxirl.ppo.trainer import PPOTrainer

    cfg = ppo_config(**overrides)
    kwargs = common.hf_config_kwargs(shape, pad_token_id=EOS)
    vocab = kwargs["vocab_size"]
    tokenizer = word_tokenizer(vocab)
    texts = random_prompts(vocab, num_prompts, prompt_len)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = pathlib.Path(tmp) / shape
        torch.manual_seed(0)
        transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**kwargs)).save_pretrained(
            str(folder))
        model, params = load_pretrained(folder, with_value_head=True)
        peer = TorchPPO(folder, tokenizer, cfg, np.asarray(tokenizer(texts)["input_ids"]))
    prompts = tokenize_prompts(texts, tokenizer, prompt_len, pad_to_multiple_of=1)
    assert prompts.input_ids.shape[1] == prompt_len, prompts.input_ids.shape
    trainer = PPOTrainer(model, tokenizer, word_reward, prompts, cfg)
    holder = {"state": trainer.init_state(params)}
    splits: dict[str, list[float]] = {"jax_rollout": [], "jax_update": [], "torch_rollout": [],
                                      "torch_update": []}

    def jax_step():
        state, metrics, _ = trainer.step(holder["state"])
        holder["state"] = state
        splits["jax_rollout"].append(metrics["time_rollout"])
        splits["jax_update"].append(metrics["time_update"])
        assert np.isfinite(metrics["loss"])

    def torch_step():
        metrics = peer.step()
        splits["torch_rollout"].append(metrics["time_rollout"])
        splits["torch_update"].append(metrics["time_update"])
        assert np.isfinite(metrics["loss"])

    jax_t, torch_t = common.time_pair(jax_step, torch_step, repeats)
    steady = {k: float(np.median(v[2:])) for k, v in splits.items()}  # skip first + warm-up
    new_tokens = cfg.num_rollouts * cfg.max_new_tokens
    return {
        "num_rollouts": cfg.num_rollouts, "batch_size": cfg.batch_size,
        "ppo_epochs": cfg.ppo_epochs, "max_new_tokens": cfg.max_new_tokens, "top_k": cfg.top_k,
        "prompt_len": prompt_len, "new_tokens": new_tokens,
        "jaxirl_compile_s": jax_t.first_s, "torch_warmup_s": torch_t.first_s,
        "jaxirl_s": jax_t.median_s, "torch_s": torch_t.median_s,
        "jaxirl_best_s": jax_t.best_s, "torch_best_s": torch_t.best_s,
        "jaxirl_rollout_s": steady["jax_rollout"], "jaxirl_update_s": steady["jax_update"],
        "torch_rollout_s": steady["torch_rollout"], "torch_update_s": steady["torch_update"],
        "rollout_speedup": common.ratio(1 / steady["jax_rollout"], 1 / steady["torch_rollout"]),
        "update_speedup": common.ratio(1 / steady["jax_update"], 1 / steady["torch_update"]),
        "speedup": common.ratio(1 / jax_t.median_s, 1 / torch_t.median_s),
        "jaxirl_spread": jax_t.spread, "torch_spread": torch_t.spread,
        "repeats": len(jax_t.times_s),
    }


def run(shapes=("tiny",), repeats: int = 3, prompt_len: int = 8, **overrides) -> list[dict]:
    """One row per shape; ``overrides`` replace fields of the ``default`` PPO preset."""
    return [{"benchmark": "ppo", "shape": shape,
             **ppo_pair(shape, repeats, prompt_len, **overrides)} for shape in shapes]


COLUMNS = ["shape", "num_rollouts", "batch_size", "ppo_epochs", "max_new_tokens",
           "jaxirl_compile_s", "jaxirl_rollout_s", "jaxirl_update_s", "jaxirl_s",
           "torch_rollout_s", "torch_update_s", "torch_s", "rollout_speedup", "update_speedup",
           "speedup"]

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("shapes", ["tiny"], "Model shapes: toy, tiny, pythia-70m.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")
    flags.DEFINE_bool("one_core", False, "Pin to one core and torch to one thread.")


def main(argv):
    del argv
    if FLAGS.one_core:
        common.pin_to_one_core()
    rows = run(FLAGS.shapes, FLAGS.repeats)
    print(common.markdown_table(rows, COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
