"""One IRL epoch: jaxirl's jitted max-margin epoch vs two PyTorch peers.

The reference (ai4ai-lab/irl_for_llms) trains a reward model, a GPT-NeoX backbone
plus a bias-free Linear(H, 2) head (reward = -out[-1]), with the max-margin loss
and Adam, in a Python loop over batches of 2 pairs that sends ONE text at a time
through the whole model. :func:`ReferenceIRL` writes that loop in PyTorch
(calling ``zero_grad`` each step, which the reference forgets).

Most of jaxirl's lead over that loop is algorithmic, so a second peer,
:class:`CachedTorchIRL`, runs jaxirl's algorithm in PyTorch: the frozen trunk once
per text (cached features), then per step the 2B texts of a minibatch in one
batch, cut to that minibatch's longest text, with the top block computing the
query, attention output and MLP for the last token only, and its attention
reassociated as jaxirl's (``gpt_neox._attend_single_query``: every token's rotary
key dims, its score against the query's projected key, and the attention-weighted
input, never every token's full key and value). It checks its rewards against the
reference model's. Until the thirteenth session both sides projected every
token's key and value (``benchmarks/results/one_core_zen5_s12/``).

jaxirl runs the frozen trunk once per text (``pair_data``, a one-off per training
run, reported separately) and then a whole epoch as one jitted ``lax.scan``; its
steps run every text at the full padded width (the cached peer cuts each minibatch
to its longest text). The roofline of an epoch is the work of the
real tokens only, as :func:`epoch_work` counts it for that algorithm, forward and
backward, plus Adam's traffic per step.
Run alone with ``python -m benchmarks.bench_irl``.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags

from benchmarks import common, roofline
from benchmarks.bench_ppo import EOS, word_tokenizer


def random_texts(vocab_size: int, count: int, length: int, seed: int) -> list[str]:
    """``count`` texts of ``length`` +- 25% random words (``w1`` ..)."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(max(1, length * 3 // 4), length * 5 // 4 + 1, size=count)
    return [" ".join(f"w{i}" for i in rng.randint(1, vocab_size, size=n)) for n in lengths]


def max_margin_epoch(opt, pair_rewards, num_pairs: int, batch_size: int, seed: int) -> float:
    """One shuffled pass of optimizer steps on the max-margin loss (margin 0); the mean loss.

    ``pair_rewards(idx)`` -> (expert rewards, base rewards), torch [len(idx)] each.
    """
    import torch

    order = np.random.default_rng(seed).permutation(num_pairs)
    losses = []
    for start in range(0, num_pairs, batch_size):
        r_e, r_b = pair_rewards(order[start:start + batch_size])
        d = r_e - r_b
        loss = torch.where(d > 0, -d, -2 * d).mean()  # the reference's slopes -1 and -2
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


class ReferenceIRL:
    """The reference's reward model and training loop, in PyTorch (one text per forward)."""

    def __init__(self, folder, tokenizer, num_layers_unfrozen: int, lr: float, max_length: int,
                 seed: int = 0):
        import torch
        import transformers

        torch.manual_seed(seed)
        self.backbone = transformers.GPTNeoXForCausalLM.from_pretrained(str(folder)).gpt_neox
        self.backbone.requires_grad_(False)
        trainable = list(self.backbone.layers[-num_layers_unfrozen:]) + [
            self.backbone.final_layer_norm]
        for module in trainable:
            module.requires_grad_(True)
        self.head = torch.nn.Linear(self.backbone.config.hidden_size, 2, bias=False)
        params = [p for p in self.backbone.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(params + list(self.head.parameters()), lr=lr)
        self.tokenizer, self.max_length = tokenizer, max_length

    def reward(self, text: str):
        ids = self.tokenizer(text, return_tensors="pt", truncation=True,
                             max_length=self.max_length)["input_ids"]
        hidden = self.backbone(input_ids=ids).last_hidden_state[0, -1]
        return -self.head(hidden)[-1]

    def epoch(self, expert: Sequence[str], base: Sequence[str], batch_size: int = 2,
              seed: int = 0) -> float:
        """One pass over the pairs; returns the mean loss."""
        import torch

        def pair_rewards(idx):
            return (torch.stack([self.reward(expert[i]) for i in idx]),
                    torch.stack([self.reward(base[i]) for i in idx]))

        return max_margin_epoch(self.opt, pair_rewards, len(expert), batch_size, seed)


class CachedTorchIRL:
    """jaxirl's IRL algorithm in PyTorch: cached trunk features, a last-query top block.

    Args:
      reference: a :class:`ReferenceIRL` whose backbone weights (and head) it copies.
      texts: every text the epochs will see; their trunk features are computed here, once.
    """

    def __init__(self, reference: ReferenceIRL, texts: Sequence[str], num_layers_unfrozen: int,
                 lr: float):
        import copy

        import torch

        backbone = copy.deepcopy(reference.backbone)
        self.first = backbone.config.num_hidden_layers - num_layers_unfrozen
        self.top = backbone.layers[self.first:]
        self.norm = backbone.final_layer_norm
        self.head = copy.deepcopy(reference.head)
        cfg = backbone.config
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        rope = cfg.rope_parameters  # transformers 5
        self.rot = int(self.head_dim * rope["partial_rotary_factor"])
        base = rope["rope_theta"]
        self.inv_freq = 1.0 / (base ** (torch.arange(0, self.rot, 2).float() / self.rot))
        ids = [reference.tokenizer(t, truncation=True, max_length=reference.max_length)["input_ids"]
               for t in texts]
        width = max(len(x) for x in ids)
        self.index = {t: i for i, t in enumerate(texts)}
        self.lengths = torch.tensor([len(x) for x in ids])
        padded = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros_like(padded)
        for i, x in enumerate(ids):
            padded[i, width - len(x):] = torch.tensor(x)
            mask[i, width - len(x):] = 1
        with torch.no_grad():
            out = backbone(input_ids=padded, attention_mask=mask, output_hidden_states=True)
            self.features = out.hidden_states[self.first].detach()
        params = [p for m in (*self.top, self.norm, self.head) for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        self.opt = torch.optim.Adam(params, lr=lr, fused=True)

    def _rotate(self, x, positions):
        import torch

        freqs = positions[..., None].float() * self.inv_freq
        emb = torch.cat([freqs, freqs], -1)[..., None, :]  # [..., 1, rot] over heads
        x_rot, x_pass = x[..., :self.rot], x[..., self.rot:]
        half = self.rot // 2
        rotated = torch.cat([-x_rot[..., half:], x_rot[..., :half]], -1)
        return torch.cat([x_rot * emb.cos() + rotated * emb.sin(), x_pass], -1)

    def _attend_last(self, qkv, ln, mask, positions):
        """The last token's attention [B, H] without every token's keys and values:
        jaxirl's reassociation (``gpt_neox._attend_single_query``), in torch."""
        import torch

        heads, d, rot = self.heads, self.head_dim, self.rot
        w = qkv.weight.view(heads, 3, d, -1)  # HF's per-head [q | k | v] output rows
        b = qkv.bias.view(heads, 3, d)
        q = torch.einsum("bh,ndh->bnd", ln[:, -1], w[:, 0]) + b[:, 0]
        q = self._rotate(q[:, None], positions[:, -1:])[:, 0]  # the last token: left padding
        k_rot = torch.einsum("bth,nrh->btnr", ln, w[:, 1, :rot]) + b[:, 1, :rot]
        k_rot = self._rotate(k_rot, positions)
        scores = torch.einsum("btnr,bnr->bnt", k_rot, q[..., :rot])
        k_query = torch.einsum("ndh,bnd->bnh", w[:, 1, rot:], q[..., rot:])
        scores = scores + torch.einsum("bth,bnh->bnt", ln, k_query) + \
            (q[..., rot:] * b[:, 1, rot:]).sum(-1)[..., None]
        scores = (scores / d ** 0.5).masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        mean_input = torch.einsum("bnt,bth->bnh", scores.softmax(-1), ln)
        out = torch.einsum("bnh,ndh->bnd", mean_input, w[:, 2]) + b[:, 2]
        return out.reshape(len(ln), -1)

    def rewards(self, rows):
        """Rewards [len(rows)] of texts ``rows``, padded to their longest."""
        import torch

        width = int(self.lengths[rows].max())
        x = self.features[rows, -width:]
        mask = torch.arange(width)[None] >= width - self.lengths[rows][:, None]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        for i, layer in enumerate(self.top):
            if i < len(self.top) - 1:
                raise NotImplementedError("one trainable block (num_layers_unfrozen=1) only")
            ln = layer.input_layernorm(x)
            attn = self._attend_last(layer.attention.query_key_value, ln, mask, positions)
            last = x[:, -1]
            attn = layer.attention.dense(attn)
            x = last + attn + layer.mlp(layer.post_attention_layernorm(last))
        return -self.head(self.norm(x))[..., -1]

    def epoch(self, expert: Sequence[str], base: Sequence[str], batch_size: int = 2,
              seed: int = 0) -> float:
        """One pass over the pairs, all 2B texts of a step in one batch; the mean loss."""
        import torch

        def pair_rewards(idx):
            r = self.rewards(torch.tensor([self.index[expert[i]] for i in idx]
                                          + [self.index[base[i]] for i in idx]))
            return r[:len(idx)], r[len(idx):]

        return max_margin_epoch(self.opt, pair_rewards, len(expert), batch_size, seed)


def epoch_work(config, lengths: np.ndarray, order_pairs: int, batch: int,
               trainable: int, cache_bytes: int = 0) -> roofline.Work:
    """The least work of one epoch over pairs of texts with ``lengths`` [2, P] (real tokens).

    Per text, as jaxirl computes it (``gpt_neox._attend_single_query``): for every token
    its rotary key dims, its score against the query's projected key and its share of
    the attention-weighted input; for the last token the query, the value and output
    projections and the MLP; forward and backward (3x); Adam over ``trainable`` params
    per step (its state's traffic only beyond ``cache_bytes`` of last-level cache).
    """
    h, inter = config.hidden_size, config.intermediate_size
    heads = config.num_attention_heads
    rot = config.rotary_ndims
    tokens = lengths.sum()
    texts = lengths.size
    per_token = 2.0 * h * (heads * rot + 2 * heads)
    per_text = 2.0 * (3 * h * h + h * (h - heads * rot) + 2 * h * inter)
    forward = per_token * tokens + per_text * texts + 4.0 * h * tokens
    steps = -(-order_pairs // batch)
    work = roofline.Work(3 * forward, 4.0 * h * tokens)
    return work + roofline.adam_work(trainable, cache_bytes) * steps


def run(shape: str = "tiny", num_pairs: int = 200, text_len: int = 60,
        batch_sizes: Sequence[int] = (2, 8, 32), num_layers_unfrozen: int = 1, lr: float = 1e-4,
        repeats: int = 3, workdir=None, machine: roofline.Machine | None = None,
        peer_batch_sizes: Sequence[int] = (2, 8), bf16_batch_sizes: Sequence[int] = (8,)
        ) -> list[dict[str, Any]]:
    """Seconds per IRL epoch: the reference loop (batch 2), the cached torch peer and jaxirl."""
    import jax
    import jax.numpy as jnp
    import torch
    import transformers

    from jaxirl.irl.pairs import pair_data
    from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
    from jaxirl.irl.train import IRLTrainConfig, compile_epoch, epoch_minibatches, init_state

    kwargs = common.hf_config_kwargs(shape, pad_token_id=EOS)
    vocab = kwargs["vocab_size"]
    tokenizer = word_tokenizer(vocab)
    expert = random_texts(vocab, num_pairs, text_len, seed=1)
    base = random_texts(vocab, num_pairs, text_len, seed=2)
    max_length = text_len * 5 // 4 + 1
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = pathlib.Path(tmp) / shape
        torch.manual_seed(0)
        transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**kwargs)).save_pretrained(
            str(folder))
        tokenizer.save_pretrained(str(folder))
        reference = ReferenceIRL(folder, tokenizer, num_layers_unfrozen, lr, max_length)
        rm_config = RewardModelConfig(base_model=str(folder), head="reference",
                                      num_layers_unfrozen=num_layers_unfrozen,
                                      max_length=max_length)
        models = {"float32": init_reward_model(rm_config),
                  "bfloat16": init_reward_model(rm_config, dtype=jnp.bfloat16)}
    peers = {b: CachedTorchIRL(reference, list(expert) + list(base), num_layers_unfrozen, lr)
             for b in peer_batch_sizes}
    with torch.no_grad():  # the same algorithm: the same rewards as the reference's model
        check = list(expert[:3])
        got = next(iter(peers.values())).rewards(torch.tensor([0, 1, 2])).numpy()
        want = np.array([float(reference.reward(t)) for t in check])
    np.testing.assert_allclose(got, want, atol=1e-4)
    true = np.zeros(num_pairs)
    model = models["float32"]

    def features():
        return pair_data(model, expert, base, true, true)

    feature_t = common.time_fn(features, repeats=repeats)
    data = features()
    feats = jax.tree_util.tree_map(jnp.asarray, data.features)
    sides = [("reference loop (torch)", 2, lambda: reference.epoch(expert, base, batch_size=2))]
    for b, peer in peers.items():
        sides.append(("cached torch (same algorithm)", b,
                      lambda peer=peer, b=b: peer.epoch(expert, base, batch_size=b)))
    runs = [("float32", b) for b in batch_sizes] + [("bfloat16", b) for b in bf16_batch_sizes]
    for dtype, b in runs:
        config = IRLTrainConfig(batch_size=b, epochs=1, learning_rate=lr)
        epoch_fn, state = compile_epoch(models[dtype], config), init_state(models[dtype], config)
        indices, weights = epoch_minibatches(len(data), 0, config)

        def jax_epoch(epoch_fn=epoch_fn, state=state, indices=indices, weights=weights):
            new, stats = epoch_fn(state, feats, indices, weights)
            jax.block_until_ready((new, stats))

        sides.append((f"jaxirl {dtype}", b, jax_epoch))
    timings = common.time_interleaved([fn for _, _, fn in sides], repeats)
    ref_t = timings[0]
    lengths = np.stack([data.features["expert_mask"].sum(1), data.features["base_mask"].sum(1)])
    common_row = {"benchmark": "irl", "shape": shape, "pairs": num_pairs,
                  "tokens": int(lengths.sum()), "num_layers_unfrozen": num_layers_unfrozen}
    peer_s = {b: t.median_s for (name, b, _), t in zip(sides, timings, strict=True)
              if name.startswith("cached")}
    rows = []
    for (name, b, _), t in zip(sides, timings, strict=True):
        row = {**common_row, "impl": name, "batch": b, "first_s": t.first_s,
               "epoch_s": t.median_s, "best_s": t.best_s,
               "features_s": feature_t.median_s if name.startswith("jaxirl") else 0.0,
               "speedup": common.ratio(1 / t.median_s, 1 / ref_t.median_s),
               "speedup_vs_cached": (common.ratio(1 / t.median_s, 1 / peer_s[b])
                                     if b in peer_s else float("nan")),
               "spread": t.spread, "repeats": len(t.times_s)}
        if machine is not None:
            dtype = "bfloat16" if "bfloat16" in name else "float32"
            work = epoch_work(model.lm_config, lengths, num_pairs, b,
                              common.count_params(model.params), machine.llc_bytes)
            row.update(roofline.roofline_columns(work, machine, t.median_s, dtype))
        rows.append(row)
    if machine is not None:
        for row in list(rows):
            if not row["impl"].startswith("jaxirl"):
                continue
            what = f"IRL epoch, {shape}, batch {row['batch']}, {row['impl'].split()[-1]}"
            if row["batch"] in peer_s:
                rows.append(common.headline(what, "s", "cached torch (same algorithm)",
                                            peer_s[row["batch"]], row["epoch_s"],
                                            row["roofline_s"], True))
            if row["batch"] == 2 and row["impl"] == "jaxirl float32":
                rows.append(common.headline(what, "s", "reference loop (torch, batch 2)",
                                            ref_t.median_s, row["epoch_s"], row["roofline_s"],
                                            True))
    return rows


COLUMNS = ["shape", "pairs", "impl", "batch", "first_s", "epoch_s", "features_s", "speedup",
           "speedup_vs_cached", "gflop", "mbytes", "roofline_s", "share"]

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("shape", "tiny", "Model shape: toy, tiny, pythia-70m.")
    flags.DEFINE_integer("num_pairs", 200, "Synthetic (expert, base) pairs.")
    flags.DEFINE_integer("text_len", 60, "Words (= tokens) per text, +- 25%.")
    flags.DEFINE_list("batch_sizes", ["2", "8", "32"], "jaxirl batch sizes.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")
    flags.DEFINE_bool("one_core", False, "Pin to one core and torch to one thread.")


def main(argv):
    del argv
    if FLAGS.one_core:
        common.pin_to_one_core()
    rows = run(FLAGS.shape, FLAGS.num_pairs, FLAGS.text_len, [int(b) for b in FLAGS.batch_sizes],
               repeats=FLAGS.repeats, machine=roofline.measure_machine())
    print(common.markdown_table([r for r in rows if r["benchmark"] == "irl"], COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
