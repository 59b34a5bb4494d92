"""The default-model build: an HF folder that transformers loads with jaxirl's logits."""

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from jaxirl.default.build import DefaultModelSpec, default_model_dir, ensure_default_model
from jaxirl.default.evaluate import default_prompts
from jaxirl.metrics_log import read_metrics
from jaxirl.models import load_pretrained, load_tokenizer

# The real recipe trains for minutes; these tests check the build path on a few steps.
QUICK = dataclasses.replace(
    DefaultModelSpec(), train=dataclasses.replace(DefaultModelSpec().train, total_steps=3,
                                                  warmup_steps=1))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXIRL_CACHE", str(cache))
    folder = ensure_default_model(QUICK, progress=False)
    yield folder
    mp.undo()


def test_build_writes_a_standard_hf_folder(built):
    names = {p.name for p in built.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "prompts.jsonl",
            "build_summary.json"} <= names
    summary = json.loads((built / "build_summary.json").read_text())
    assert summary["steps"] == 3 and np.isfinite(summary["heldout_perplexity"])
    rows = read_metrics(built / "train_metrics.jsonl")  # streamed: one line per step
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["time"] > 0 for r in rows)
    assert built == default_model_dir(QUICK)


def test_default_model_matches_transformers_pytorch(built):
    model, params = load_pretrained(built)
    tokenizer = load_tokenizer(built)
    torch_model = transformers.GPTNeoXForCausalLM.from_pretrained(str(built)).eval()
    batch = tokenizer(["What is your name?", "Shut up"], padding=True, return_tensors="np")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pos = np.clip(mask.cumsum(-1) - 1, 0, None)
    with torch.no_grad():
        ref = torch_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                          position_ids=torch.tensor(pos)).logits.numpy()
    out = np.asarray(model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask)).logits)
    assert np.max(np.abs(out - ref) * mask[..., None]) <= 1e-4
    assert model.config.num_hidden_layers == 4 and model.config.rotary_pct == 0.25


def test_cached_build_is_reused_and_prompts_load_through_datasets(built):
    stamp = (built / "model.safetensors").stat().st_mtime_ns
    assert ensure_default_model(QUICK, progress=False) == built
    assert (built / "model.safetensors").stat().st_mtime_ns == stamp
    test = default_prompts(built, "test")
    train = default_prompts(built, "train")
    assert len(test) > 50 and len(train) > 4 * len(test) * 0.9
    assert not set(test.prompts) & set(train.prompts)
    assert test.references is not None


def test_recipe_change_changes_the_cache_key():
    other = dataclasses.replace(QUICK, hidden_size=64)
    assert default_model_dir(other) != default_model_dir(QUICK)


def test_build_into_a_folder_keeps_a_finished_build_and_replaces_only_its_own_files(tmp_path):
    from jaxirl.default.build import build_default_model
    from jaxirl.errors import RunFolderError

    out = tmp_path / "model"
    folder, built = build_default_model(QUICK, out, progress=False)
    assert built and folder == out and (out / "jaxirl_run.json").is_file()
    assert build_default_model(QUICK, out, progress=False) == (out, False)
    (out / "notes.txt").write_text("keep")
    one_step = dataclasses.replace(QUICK, train=dataclasses.replace(QUICK.train, total_steps=1))
    with pytest.raises(RunFolderError, match=r"train.total_steps 3 → 1"):
        build_default_model(one_step, out, progress=False)
    # One step used to be an optax error (an empty cosine phase).
    build_default_model(one_step, out, overwrite=True, progress=False)
    assert json.loads((out / "build_summary.json").read_text())["steps"] == 1
    assert (out / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with pytest.raises(RunFolderError, match="was not written by jaxirl"):
        build_default_model(QUICK, tmp_path, progress=False)


def test_unknown_default_prompt_split_is_named(tmp_path):
    from jaxirl.data import write_jsonl
    from jaxirl.errors import ConfigError

    write_jsonl([{"prompt": f"p{i}", "original_output": f"o{i}"} for i in range(10)],
                tmp_path / "prompts.jsonl")
    with pytest.raises(ConfigError, match=r"'heldout'.*train, test, all"):
        default_prompts(tmp_path, "heldout")
    assert len(default_prompts(tmp_path, "all")) == 10


def test_a_sequence_past_the_context_is_refused_and_the_fingerprint_kept():
    from jaxirl.errors import ConfigError

    spec = DefaultModelSpec()
    with pytest.raises(ConfigError, match=r"^default model field 'train.seq_len' is 512 but "
                                          r"'max_position_embeddings' is 256"):
        dataclasses.replace(spec, train=dataclasses.replace(spec.train, seq_len=512))
    with pytest.raises(ConfigError, match="'train.seq_len' is 96 but 'max_position_embeddings' "
                                          "is 64"):
        dataclasses.replace(spec, max_position_embeddings=64)
    edge = dataclasses.replace(spec, train=dataclasses.replace(spec.train, seq_len=256))
    assert edge.train.seq_len == edge.max_position_embeddings
    assert spec.fingerprint() == "150004bd8a"  # the cached default's folder name


def test_an_int_for_a_float_training_setting_is_the_same_recipe():
    """max_grad_norm=1 and 1.0 (likewise the learning rate and weight decay) are one recipe:
    one fingerprint, so one cache folder."""
    spec = DefaultModelSpec()
    for field, value in (("max_grad_norm", 1), ("learning_rate", 1), ("weight_decay", 0)):
        as_int = dataclasses.replace(spec, train=dataclasses.replace(spec.train, **{field: value}))
        as_float = dataclasses.replace(spec, train=dataclasses.replace(spec.train,
                                                                       **{field: float(value)}))
        assert type(getattr(as_int.train, field)) is float, field
        assert as_int.fingerprint() == as_float.fingerprint(), field
    assert spec.fingerprint() == "150004bd8a"  # the default's folder is kept
