"""One IRL epoch: jaxirl's jitted max-margin epoch vs the reference implementation's loop.

The reference (ai4ai-lab/irl_for_llms) trains a reward model, a GPT-NeoX backbone
plus a bias-free Linear(H, 2) head (reward = -out[-1]), with the max-margin loss
and Adam, in a Python loop over batches of 2 pairs that sends ONE text at a time
through the whole model. :func:`reference_epoch` writes that loop in PyTorch
(calling ``zero_grad`` each step, which the reference forgets). jaxirl runs the
frozen trunk once per text (``pair_data``, a one-off per training run, reported
separately) and then a whole epoch as one jitted ``lax.scan``; it is timed at
the reference's batch size and at larger ones.
Run alone with ``python -m benchmarks.bench_irl``.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import app, flags

from benchmarks import common
from benchmarks.bench_ppo import EOS, word_tokenizer


def random_texts(vocab_size: int, count: int, length: int, seed: int) -> list[str]:
    """``count`` texts of ``length`` +- 25% random words (``w1`` ..)."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(max(1, length * 3 // 4), length * 5 // 4 + 1, size=count)
    return [" ".join(f"w{i}" for i in rng.randint(1, vocab_size, size=n)) for n in lengths]


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

        order = np.random.default_rng(seed).permutation(len(expert))
        losses = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            r_e = torch.stack([self.reward(expert[i]) for i in idx])
            r_b = torch.stack([self.reward(base[i]) for i in idx])
            d = r_e - r_b
            loss = torch.where(d > 0, -d, -2 * d).mean()  # the max-margin loss, margin 0
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))


def _time_interleaved(fns: Sequence[Callable[[], Any]], repeats: int) -> list[common.Timing]:
    """:func:`common.time_pair` for any number of callables (first call, one warm-up, repeats)."""
    firsts = []
    for fn in fns:
        start = time.perf_counter()
        fn()
        firsts.append(time.perf_counter() - start)
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeats)):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return [common.Timing(f, tuple(t)) for f, t in zip(firsts, times, strict=True)]


def run(shape: str = "tiny", num_pairs: int = 200, text_len: int = 60,
        batch_sizes: Sequence[int] = (2, 8, 32), num_layers_unfrozen: int = 1, lr: float = 1e-4,
        repeats: int = 3, workdir=None) -> list[dict[str, Any]]:
    """Seconds per IRL epoch: the reference loop (batch 2) and jaxirl at each batch size."""
    import jax
    import jax.numpy as jnp
    import torch
    import transformers

    from jaxirl.irl.pairs import pair_data
    from jaxirl.irl.reward_model import RewardModelConfig, init_reward_model
    from jaxirl.irl.train import IRLTrainConfig, compile_epoch, epoch_order, init_state

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
        model = init_reward_model(RewardModelConfig(
            base_model=str(folder), head="reference", num_layers_unfrozen=num_layers_unfrozen,
            max_length=max_length))
    true = np.zeros(num_pairs)

    def features():
        return pair_data(model, expert, base, true, true)

    feature_t = common.time_fn(features, repeats=repeats)
    data = features()
    feats = jax.tree_util.tree_map(jnp.asarray, data.features)
    fns = [lambda: reference.epoch(expert, base, batch_size=2)]
    for b in batch_sizes:
        config = IRLTrainConfig(batch_size=b, epochs=1, learning_rate=lr)
        epoch_fn, state = compile_epoch(model, config), init_state(model, config)
        indices, weights = epoch_order(len(data), 0, config)

        def jax_epoch(epoch_fn=epoch_fn, state=state, indices=indices, weights=weights):
            new, stats = epoch_fn(state, feats, indices, weights)
            jax.block_until_ready((new, stats))

        fns.append(jax_epoch)
    timings = _time_interleaved(fns, repeats)
    ref_t = timings[0]
    tokens = int(data.features["expert_mask"].sum() + data.features["base_mask"].sum())
    common_row = {"benchmark": "irl", "shape": shape, "pairs": num_pairs, "tokens": tokens,
                  "num_layers_unfrozen": num_layers_unfrozen}
    rows = [{**common_row, "impl": "reference loop (torch)", "batch": 2,
             "first_s": ref_t.first_s, "epoch_s": ref_t.median_s, "best_s": ref_t.best_s,
             "features_s": 0.0, "speedup": 1.0, "speedup_with_features": 1.0,
             "spread": ref_t.spread, "repeats": len(ref_t.times_s)}]
    for b, t in zip(batch_sizes, timings[1:], strict=True):
        rows.append({**common_row, "impl": "jaxirl", "batch": b, "first_s": t.first_s,
                     "epoch_s": t.median_s, "best_s": t.best_s,
                     "features_s": feature_t.median_s,
                     "speedup": common.ratio(1 / t.median_s, 1 / ref_t.median_s),
                     "speedup_with_features": common.ratio(
                         1 / (t.median_s + feature_t.median_s), 1 / ref_t.median_s),
                     "spread": t.spread, "repeats": len(t.times_s)})
    return rows


COLUMNS = ["shape", "pairs", "impl", "batch", "first_s", "epoch_s", "features_s", "speedup",
           "speedup_with_features"]

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
               repeats=FLAGS.repeats)
    print(common.markdown_table(rows, COLUMNS))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    define_flags()
    app.run(main)
