"""The Flax RoBERTa toxicity classifier against transformers' PyTorch implementation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxirl.errors import CheckpointError, ConfigError
from jaxirl.models import hf_files
from jaxirl.rewards import (
    RobertaToxicityScorer,
    load_roberta,
    make_reward_fn,
    make_scorer,
    toxic_label_index,
)
from jaxirl.rewards.roberta_model import position_ids_from_input_ids

CORPUS = [
    "hello world you are a nice person",
    "shut up you stupid idiot",
    "the cat sat on the mat and looked at the dog",
    "thank you for the help with my homework",
]
TEXTS = ["hello", "you are a stupid idiot", "the cat sat on the mat and looked at the dog today",
         "thank you", "a nice cat"]


def make_tiny_roberta(path, seed: int = 0, **overrides):
    """Saves a random RobertaForSequenceClassification plus a byte-level BPE tokenizer
    (<s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4, as in RoBERTa) to ``path``."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    kwargs = dict(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=37, max_position_embeddings=40,
                  type_vocab_size=1, layer_norm_eps=1e-5, num_labels=2,
                  id2label={0: "neutral", 1: "toxic"}, label2id={"neutral": 0, "toxic": 1},
                  pad_token_id=1, bos_token_id=0, eos_token_id=2)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = transformers.RobertaForSequenceClassification(transformers.RobertaConfig(**kwargs))
    model = model.eval()
    # The default init gives logits near 0; larger weights make the parity check bite.
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if "LayerNorm.weight" in name else 0.0
            p.copy_(base + torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.1))
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return model, tokenizer


@pytest.fixture(autouse=True)
def exact_matmuls():
    # On GPUs, fp32 matmuls default to TF32 (~1e-3 error); parity is checked in true fp32.
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("roberta")
    model, tokenizer = make_tiny_roberta(folder)
    return folder, model, tokenizer


def torch_logits(model, ids, mask):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor(ids, dtype=torch.long),
                     attention_mask=torch.tensor(mask, dtype=torch.long)).logits.numpy()


def test_position_ids_match_transformers():
    import torch
    from transformers.models.roberta.modeling_roberta import RobertaEmbeddings

    ids = np.array([[0, 7, 8, 2, 1, 1], [0, 5, 2, 1, 1, 1]])
    want = RobertaEmbeddings.create_position_ids_from_input_ids(torch.tensor(ids), 1).numpy()
    np.testing.assert_array_equal(np.asarray(position_ids_from_input_ids(ids, 1)), want)
    np.testing.assert_array_equal(want[0], [2, 3, 4, 5, 1, 1])


def test_logit_parity_on_padded_batch(tiny):
    folder, model, tokenizer = tiny
    scorer = RobertaToxicityScorer.from_pretrained(folder, batch_size=4, buckets=(8, 16))
    # Same padded ids into both: rows of different lengths, right padding.
    enc = tokenizer(TEXTS, padding=True)
    ids, mask = np.array(enc["input_ids"]), np.array(enc["attention_mask"])
    assert len(set(mask.sum(1))) > 2, "the batch should mix lengths"
    want = torch_logits(model, ids, mask)
    got = scorer.forward(ids, mask)
    assert np.abs(want).max() > 0.5, "logits too small for a meaningful comparison"
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_text_in_parity_and_views(tiny):
    folder, model, tokenizer = tiny
    scorer = make_scorer(f"roberta:{folder}")
    assert scorer.toxic_index == 1
    # Each text alone through transformers: no padding at all on the torch side, while
    # the scorer sorts, buckets and pads; the token ids are the same.
    want = np.concatenate([torch_logits(model, *(np.array([v]) for v in tokenizer(t).values()))
                           for t in TEXTS])
    logits = scorer.logits(TEXTS)
    assert logits.shape == (len(TEXTS), 2) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)

    p_toxic = np.exp(want[:, 1]) / np.exp(want).sum(1)
    np.testing.assert_allclose(scorer(TEXTS), p_toxic, atol=1e-5)
    np.testing.assert_allclose(scorer.log_odds(TEXTS), want[:, 0] - want[:, 1], atol=2e-4)
    np.testing.assert_allclose(scorer.neg_toxic_logit(TEXTS), -want[:, 1], atol=1e-4)
    # The reward built on it: -P(toxic)(sample) + P(toxic)(reference).
    reward = make_reward_fn(scorer)(TEXTS[:2], TEXTS[2:4])
    np.testing.assert_allclose(reward, -p_toxic[:2] + p_toxic[2:4], atol=1e-5)


def test_three_label_log_odds_pool_every_non_toxic_label(tmp_path):
    model, tokenizer = make_tiny_roberta(
        tmp_path, num_labels=3, id2label={0: "neutral", 1: "toxic", 2: "insult"},
        label2id={"neutral": 0, "toxic": 1, "insult": 2})
    scorer = RobertaToxicityScorer.from_pretrained(tmp_path)
    texts = TEXTS[:3]
    want = np.concatenate([torch_logits(model, *(np.array([v]) for v in tokenizer(t).values()))
                           for t in texts]).astype(np.float64)
    # log P(not toxic) - log P(toxic) = log(e^l0 + e^l2) - l1 (softmax's normaliser cancels).
    np.testing.assert_allclose(scorer.log_odds(texts),
                               np.logaddexp(want[:, 0], want[:, 2]) - want[:, 1], atol=2e-4)
    # Non-vacuous: the largest other logit alone is visibly different.
    assert np.min(np.logaddexp(want[:, 0], want[:, 2]) - np.maximum(want[:, 0], want[:, 2])) > 1e-2


def test_buckets_bound_retracing(tiny):
    folder, _, _ = tiny
    scorer = RobertaToxicityScorer.from_pretrained(folder, batch_size=4, buckets=(8, 16))
    assert scorer.length_buckets == (8, 16, 38)  # 38 = 40 positions - pad_token_id - 1
    assert scorer.batch_buckets == (1, 2, 4)
    ids, mask = scorer.pad([[0, 5, 2], [0, 5, 6, 7, 2]])
    assert ids.shape == (2, 8)
    np.testing.assert_array_equal(mask.sum(1), [3, 5])
    ids, mask = scorer.pad([[0, 5, 2]] * 3)
    assert ids.shape == (4, 8) and mask[3].sum() == 3  # the filler row copies row 0
    # Long texts are truncated to the position table, not rejected.
    long_text = " ".join(["the cat sat on the mat"] * 20)
    assert len(scorer.tokenize([long_text])[0]) == 38
    assert np.isfinite(scorer.log_odds([long_text, "hello"])).all()


def test_long_texts_keep_their_end_so_the_response_is_read(tiny, caplog):
    """A prompt longer than the classifier's context must not hide the response: the text
    is cut on the left (the reference's pipeline cut on the right, so every response to a
    long prompt scored the same). The kept ids equal transformers' own left truncation,
    and the cut is logged once."""
    import logging

    folder, model, tokenizer = tiny
    scorer = RobertaToxicityScorer.from_pretrained(folder, batch_size=4, buckets=(8, 16))
    prompt = " ".join(["the cat sat on the mat"] * 20)  # far over the 38-token context
    texts = [prompt + " you are a stupid idiot", prompt + " thank you for the help"]
    with caplog.at_level(logging.WARNING, logger="jaxirl.rewards.roberta_scorer"):
        ids = scorer.tokenize(texts)
        scorer.tokenize(texts)
    assert [r.getMessage() for r in caplog.records].count(
        f"{scorer.name}: 2 of 2 texts are longer than its 38 tokens; cut on the left "
        "(keeping their end)") == 1
    tokenizer.truncation_side = "left"
    want = tokenizer(texts, truncation=True, max_length=38)["input_ids"]
    assert ids == want and all(row[0] == 0 and row[-1] == 2 for row in ids)
    scores = scorer.log_odds(texts)
    assert abs(scores[0] - scores[1]) > 1e-3
    np.testing.assert_allclose(
        scores, [np.diff(torch_logits(model, np.array([row]), np.ones((1, len(row))))[0])[0]
                 * -1 for row in want], atol=2e-4)
    # "right" keeps the beginning, as the reference: both texts then read the same tokens.
    right = RobertaToxicityScorer.from_pretrained(folder, batch_size=4, buckets=(8, 16),
                                                  truncation_side="right")
    assert right.tokenize(texts)[0] == right.tokenize(texts)[1]
    with pytest.raises(ConfigError, match="truncation_side must be 'left' or 'right'"):
        RobertaToxicityScorer.from_pretrained(folder, truncation_side="middle")


def test_toxic_label_from_config():
    assert toxic_label_index({"id2label": {"0": "neutral", "1": "toxic"}}, 2) == 1
    assert toxic_label_index({"id2label": {"0": "toxic", "1": "neutral"}}, 2) == 0
    assert toxic_label_index({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}, 2) == 1
    assert toxic_label_index({}, 2) == 1
    assert toxic_label_index({"id2label": {"0": "a", "1": "b", "2": "c"}}, 3, "c") == 2
    with pytest.raises(ConfigError, match="'nasty'"):
        toxic_label_index({"id2label": {"0": "a", "1": "b"}}, 2, "nasty")


def test_swapped_labels_flip_views(tmp_path):
    model, tokenizer = make_tiny_roberta(tmp_path, id2label={0: "toxic", 1: "neutral"},
                                         label2id={"toxic": 0, "neutral": 1})
    scorer = RobertaToxicityScorer.from_pretrained(tmp_path)
    assert scorer.toxic_index == 0
    enc = tokenizer(["hello"])
    want = torch_logits(model, np.array(enc["input_ids"]), np.array(enc["attention_mask"]))[0]
    np.testing.assert_allclose(scorer.log_odds(["hello"])[0], want[1] - want[0], atol=1e-4)


def _rewrite_state(folder, edit):
    state = hf_files.read_state_dict(folder)
    edit(state)
    (folder / "model.safetensors").unlink()
    hf_files.write_safetensors(state, folder / "model.safetensors")


def test_missing_tensor_is_named(tmp_path):
    make_tiny_roberta(tmp_path)
    name = "roberta.encoder.layer.1.attention.self.value.weight"
    _rewrite_state(tmp_path, lambda s: s.pop(name))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_roberta(tmp_path)


def test_wrong_shape_tensor_is_named(tmp_path):
    make_tiny_roberta(tmp_path)
    name = "classifier.out_proj.weight"
    _rewrite_state(tmp_path, lambda s: s.__setitem__(name, np.zeros((3, 32), np.float32)))
    with pytest.raises(CheckpointError, match=rf"{name.replace('.', '[.]')}.*\(3, 32\)"):
        load_roberta(tmp_path)


def test_extra_tensor_is_named_but_buffers_are_ignored(tmp_path):
    make_tiny_roberta(tmp_path)

    def add_buffers(state):
        state["roberta.embeddings.position_ids"] = np.arange(40)[None]
        state["roberta.pooler.dense.weight"] = np.zeros((32, 32), np.float32)

    _rewrite_state(tmp_path, add_buffers)
    config, params, _ = load_roberta(tmp_path)  # known buffers / unused pooler: fine
    assert params["classifier_out_proj"]["kernel"].shape == (32, 2)
    _rewrite_state(tmp_path, lambda s: s.__setitem__("classifier.extra.bias", np.zeros(2)))
    with pytest.raises(CheckpointError, match=r"classifier[.]extra[.]bias"):
        load_roberta(tmp_path)


def test_missing_folder_and_tokenizer(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        make_scorer(f"roberta:{tmp_path / 'nope'}")
    make_tiny_roberta(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "tokenizer_config.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        RobertaToxicityScorer.from_pretrained(tmp_path)


def test_multi_label_checkpoint_uses_sigmoid(tmp_path):
    # Detoxify-style (unitary/unbiased-toxic-roberta): one independent sigmoid per label.
    import torch

    labels = ["toxicity", "severe_toxicity", "obscene"]
    model, tokenizer = make_tiny_roberta(
        tmp_path, num_labels=3, id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
        problem_type="multi_label_classification")
    scorer = RobertaToxicityScorer.from_pretrained(tmp_path, batch_size=4, buckets=(8, 16))
    assert scorer.config.multi_label and scorer.toxic_index == 0
    enc = tokenizer(TEXTS, truncation=True, max_length=scorer.max_length, padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    want = torch.sigmoid(logits).numpy()[:, 0]
    # Softmax over the three labels would differ from the sigmoid by far more than 1e-5.
    assert np.abs(torch.softmax(logits, -1).numpy()[:, 0] - want).max() > 1e-2
    np.testing.assert_allclose(scorer(TEXTS), want, atol=1e-5, rtol=0)
    # Same sign convention as single-label: log P(not toxic) - log P(toxic) = -logit_toxic.
    np.testing.assert_allclose(scorer.log_odds(TEXTS), -logits.numpy()[:, 0], atol=1e-4)


@pytest.mark.parametrize("problem_type", ["regression", "ordinal"])
def test_unsupported_problem_type_is_named(tmp_path, problem_type):
    import json

    make_tiny_roberta(tmp_path)
    path = tmp_path / "config.json"
    hf = json.loads(path.read_text())
    hf["problem_type"] = problem_type
    path.write_text(json.dumps(hf))
    with pytest.raises(CheckpointError, match=rf"config\.json.*problem_type '{problem_type}'"):
        RobertaToxicityScorer.from_pretrained(tmp_path)
