"""One PPO iteration: jaxirl's ``PPOTrainer.step`` vs the same step written in PyTorch.

An iteration is trlx's schedule: sample ``num_rollouts`` continuations (top-k),
score them on the host, one forward for log-probs / values / reference log-probs,
per-token KL penalty, GAE, whitening; then ``ppo_epochs`` passes over
``batch_size`` minibatches of the clipped policy + value loss with AdamW.

There is no off-the-shelf PyTorch peer: TRL 1.x dropped its PPO trainer and trl
is not installed here, so :class:`TorchPPO` is a faithful PyTorch implementation
of the same step on transformers' ``GPTNeoXForCausalLM`` (HF ``generate`` for the
rollout, a trlx value head, a frozen deep-copied reference model). Like jaxirl it
computes logits for the response positions only and steps a fused AdamW. Both
sides use the same weights, prompts, hyperparameters and a trivial word-count
reward, so both pay the same (negligible) host reward cost. jaxirl runs in
float32 and in bf16 (``--dtype bfloat16``: bf16 matmuls, float32 master weights).

The roofline adds up the iteration's phases: decoding (bandwidth-bound), the
experience forwards, each minibatch's forward and backward (3x the forward's
FLOPs), and AdamW's traffic over every parameter per optimizer step.
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

from benchmarks import common, roofline

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
    """The ``default`` preset as it is, adaptive KL controller included (target 4.0).

    jaxirl adapts β with that controller; the torch peer keeps β at ``init_kl_coef``. The
    controller's update is one scalar per iteration, so the work compared is the same.
    """
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
        if config.num_layers_unfrozen >= 0:
            # trlx's freeze_bottom_causal_layers: the embedding and the bottom blocks stop
            # training, and every minibatch's forward pass still runs through them.
            layers = self.policy.gpt_neox.layers
            frozen = [self.policy.gpt_neox.embed_in,
                      *layers[:max(len(layers) - config.num_layers_unfrozen, 0)]]
            for module in frozen:
                module.requires_grad_(False)
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.params += list(self.value_head.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, betas=config.adam_betas,
                                     eps=config.adam_eps, weight_decay=config.weight_decay,
                                     fused=True)
        self.prompts = torch.from_numpy(prompt_ids.astype(np.int64))
        self.position = 0
        self.kl_coef = config.init_kl_coef

    def _forward(self, model, seqs, mask, prompt_len, with_values: bool):
        """Log-probs [R, N] of the response tokens (and values [R, N]).

        The LM head runs on the response positions only, as jaxirl's ``output_span``.
        """
        import torch

        hidden = model.gpt_neox(input_ids=seqs, attention_mask=mask).last_hidden_state
        hidden = hidden[:, prompt_len - 1:-1]
        logits = model.get_output_embeddings()(hidden).float()
        logp = torch.log_softmax(logits, dim=-1)
        lp = torch.gather(logp, 2, seqs[:, prompt_len:, None])[..., 0]
        values = self.value_head(hidden)[..., 0] if with_values else None
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


def iteration_work(config, cfg, prompt_len: int, num_params: int, itemsize: int = 4,
                   cache_bytes: int = 0) -> roofline.Work:
    """The least work of one PPO iteration (see the module docstring); the optimizer
    state's traffic counts only beyond ``cache_bytes`` of last-level cache."""
    seq = prompt_len + cfg.max_new_tokens
    rollout = roofline.decode_work(config, cfg.num_rollouts, prompt_len, cfg.max_new_tokens,
                                   itemsize)
    responses = cfg.num_rollouts * cfg.max_new_tokens
    experience = roofline.forward_work(config, cfg.num_rollouts, seq, logits=responses,
                                       itemsize=itemsize) * 2
    minibatch = roofline.forward_work(config, cfg.batch_size, seq,
                                      logits=cfg.batch_size * cfg.max_new_tokens,
                                      itemsize=itemsize)
    train_step = roofline.Work(3 * minibatch.flops, 3 * minibatch.bytes)
    steps = cfg.ppo_epochs * (cfg.num_rollouts // cfg.batch_size)
    return rollout + experience + (train_step + roofline.adam_work(num_params, cache_bytes)) * steps


def ppo_pair(shape: str, repeats: int = 3, prompt_len: int = 8, num_prompts: int = 256,
             workdir=None, machine: roofline.Machine | None = None, **overrides) -> dict[str, Any]:
    """Times one PPO iteration on every side; returns a result row (times in s)."""
    import jax.numpy as jnp
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
    sides = {"jax": model, "bf16": model.clone(dtype=jnp.bfloat16)}
    trainers = {k: PPOTrainer(m, tokenizer, word_reward, prompts, cfg) for k, m in sides.items()}
    holders = {k: {"state": t.init_state(params)} for k, t in trainers.items()}
    splits: dict[str, list[float]] = {f"{k}_{phase}": [] for k in ("jax", "bf16", "torch")
                                      for phase in ("rollout", "update")}

    def jax_step(side):
        state, metrics, _ = trainers[side].step(holders[side]["state"])
        holders[side]["state"] = state
        splits[f"{side}_rollout"].append(metrics["time_rollout"])
        splits[f"{side}_update"].append(metrics["time_update"])
        assert np.isfinite(metrics["loss"])

    def torch_step():
        metrics = peer.step()
        splits["torch_rollout"].append(metrics["time_rollout"])
        splits["torch_update"].append(metrics["time_update"])
        assert np.isfinite(metrics["loss"])

    jax_t, bf16_t, torch_t = common.time_interleaved(
        [lambda: jax_step("jax"), lambda: jax_step("bf16"), torch_step], repeats)
    trunk = trunk_ablation(trainers["jax"], holders["jax"]["state"], repeats)
    steady = {k: float(np.median(v[2:])) for k, v in splits.items()}  # skip first + warm-up
    new_tokens = cfg.num_rollouts * cfg.max_new_tokens
    row = {
        "num_rollouts": cfg.num_rollouts, "batch_size": cfg.batch_size,
        "ppo_epochs": cfg.ppo_epochs, "max_new_tokens": cfg.max_new_tokens, "top_k": cfg.top_k,
        "prompt_len": prompt_len, "new_tokens": new_tokens,
        "jaxirl_compile_s": jax_t.first_s, "torch_warmup_s": torch_t.first_s,
        "jaxirl_s": jax_t.median_s, "bf16_s": bf16_t.median_s, "torch_s": torch_t.median_s,
        "jaxirl_best_s": jax_t.best_s, "torch_best_s": torch_t.best_s,
        "jaxirl_rollout_s": steady["jax_rollout"], "jaxirl_update_s": steady["jax_update"],
        "bf16_rollout_s": steady["bf16_rollout"], "bf16_update_s": steady["bf16_update"],
        "torch_rollout_s": steady["torch_rollout"], "torch_update_s": steady["torch_update"],
        "rollout_speedup": common.ratio(1 / steady["jax_rollout"], 1 / steady["torch_rollout"]),
        "update_speedup": common.ratio(1 / steady["jax_update"], 1 / steady["torch_update"]),
        "speedup": common.ratio(1 / jax_t.median_s, 1 / torch_t.median_s),
        "bf16_speedup": common.ratio(1 / bf16_t.median_s, 1 / torch_t.median_s),
        "jaxirl_spread": jax_t.spread, "torch_spread": torch_t.spread,
        "repeats": len(jax_t.times_s), "num_layers_unfrozen": cfg.num_layers_unfrozen, **trunk,
    }
    if machine is not None:
        num_params = roofline.count_params(model.config, with_value_head=True)
        for dtype, prefix, t in (("float32", "", jax_t), ("bfloat16", "bf16_", bf16_t)):
            work = iteration_work(model.config, cfg, prompt_len, num_params,
                                  2 if prefix else 4, machine.llc_bytes)
            row.update(roofline.roofline_columns(work, machine, t.median_s, dtype, prefix))
    return row


def trunk_ablation(trainer, state, repeats: int) -> dict[str, Any]:
    """One update from the rollout's frozen trunk against the same update recomputing it.

    With frozen bottom blocks the rollout carries their output (``Rollout.trunk``), so
    each minibatch runs only the trainable blocks; trlx (and the torch peer) rerun the
    frozen ones in every minibatch. Both updates start from the same state and rollout
    and must end at the same params; empty when every block trains.
    """
    import jax

    from jaxirl.ppo.state import frozen_trunk_depth
    from jaxirl.ppo.update import make_update

    if not frozen_trunk_depth(state.trainable, trainer.model.config.num_hidden_layers):
        return {}  # before the rollout: the lead table's default runs need none
    state, rollout = trainer.rollout(state, jax.random.PRNGKey(1))[0]
    update = jax.jit(make_update(trainer.model, trainer.config, trainer.prompt_len))
    key = jax.random.PRNGKey(2)
    outs = {}

    def timed(name, batch):
        def fn():
            outs[name] = jax.block_until_ready(update(state, batch, key)[0].params)
        return fn

    trunk_t, recompute_t = common.time_pair(timed("trunk", rollout),
                                            timed("recompute", rollout.replace(trunk=None)),
                                            repeats)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
        jax.tree_util.tree_leaves(outs["trunk"]), jax.tree_util.tree_leaves(outs["recompute"]),
        strict=True))
    return {"update_trunk_s": trunk_t.median_s, "update_recompute_s": recompute_t.median_s,
            "trunk_speedup": common.ratio(1 / trunk_t.median_s, 1 / recompute_t.median_s),
            "trunk_max_param_diff": diff}


def run(shapes=("tiny",), repeats: int = 3, prompt_len: int = 8,
        machine: roofline.Machine | None = None, **overrides) -> list[dict]:
    """One row per shape, plus headline rows; ``overrides`` replace ``default`` preset fields."""
    rows = [{"benchmark": "ppo", "shape": shape,
             **ppo_pair(shape, repeats, prompt_len, machine=machine, **overrides)}
            for shape in shapes]
    if machine is not None:
        for row in list(rows):
            what = f"PPO iteration, {row['shape']}"
            rows.append(common.headline(f"{what}, float32", "s", "torch (fused AdamW)",
                                        row["torch_s"], row["jaxirl_s"], row["roofline_s"], True))
            rows.append(common.headline(f"{what}, bf16", "s", "torch (fused AdamW)",
                                        row["torch_s"], row["bf16_s"], row["bf16_roofline_s"],
                                        True))
    return rows


COLUMNS = ["shape", "num_rollouts", "batch_size", "ppo_epochs", "max_new_tokens",
           "jaxirl_compile_s", "jaxirl_rollout_s", "jaxirl_update_s", "jaxirl_s",
           "bf16_rollout_s", "bf16_update_s", "bf16_s",
           "torch_rollout_s", "torch_update_s", "torch_s", "rollout_speedup", "update_speedup",
           "speedup", "bf16_speedup", "gflop", "mbytes", "roofline_s", "share", "bf16_roofline_s",
           "bf16_share"]
TRUNK_COLUMNS = ["shape", "num_layers_unfrozen", "jaxirl_update_s", "torch_update_s",
                 "update_speedup", "update_trunk_s", "update_recompute_s", "trunk_speedup",
                 "trunk_max_param_diff"]

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("shapes", ["tiny"], "Model shapes: toy, tiny, pythia-70m.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")
    flags.DEFINE_bool("one_core", False, "Pin to one core and torch to one thread.")
    flags.DEFINE_integer("num_layers_unfrozen", None,
                         "Trainable top blocks (default: the default preset's -1, all); with "
                         "frozen blocks the table adds the frozen-trunk ablation.")


def main(argv):
    del argv
    if FLAGS.one_core:
        common.pin_to_one_core()
    overrides = ({} if FLAGS.num_layers_unfrozen is None
                 else {"num_layers_unfrozen": FLAGS.num_layers_unfrozen})
    rows = run(FLAGS.shapes, FLAGS.repeats, machine=roofline.measure_machine(), **overrides)
    ppo_rows = [r for r in rows if r["benchmark"] == "ppo"]
    print(common.markdown_table(ppo_rows, COLUMNS))
    if any("trunk_speedup" in r for r in ppo_rows):
        print(common.markdown_table(ppo_rows, TRUNK_COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
