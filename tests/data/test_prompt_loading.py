"""Prompt loading: formats, column mapping, deterministic splits and one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import time

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxirl.data import (
    PromptDataConfig,
    load_prompt_dataset,
    load_prompts,
    split_prompt_dataset,
    write_jsonl,
)
from jaxirl.errors import ConfigError, DataError

ROWS = [{"text": f"prompt number {i}", "continuation": f"ending {i}", "toxic": i % 2}
        for i in range(10)]


def _write(path, rows, fmt):
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "jsonl":
        write_jsonl(rows, path)
    elif fmt == "csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _config(path, tmp_path, **kw):
    kw.setdefault("prompt_column", "text")
    kw.setdefault("reference_column", "continuation")
    return PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "hf_cache"), **kw)


def _one_line_error(exc_info, *fragments):
    msg = str(exc_info.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_each_format_maps_columns_and_splits_80_20(tmp_path, fmt):
    path = _write(tmp_path / f"prompts.{fmt}", ROWS, fmt)
    ds = load_prompt_dataset(_config(path, tmp_path))
    assert ds.column_names == ["prompt", "reference"]
    assert ds["prompt"] == [r["text"] for r in ROWS]
    assert ds["reference"] == [r["continuation"] for r in ROWS]

    splits = load_prompts(_config(path, tmp_path))
    assert (len(splits.train), len(splits.test)) == (8, 2)
    assert set(splits.train.prompts).isdisjoint(splits.test.prompts)
    assert sorted(splits.train.prompts + splits.test.prompts) == sorted(ds["prompt"])
    # Each prompt keeps its own reference through the shuffle.
    for part in (splits.train, splits.test):
        for p, r in zip(part.prompts, part.references, strict=True):
            assert p.replace("prompt number", "ending") == r


def test_split_is_deterministic_in_seed(tmp_path):
    rows = [{"prompt": f"p{i}", "original_output": f"o{i}"} for i in range(50)]
    path = write_jsonl(rows, tmp_path / "p.jsonl")
    cfg = PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c"))
    a, b = load_prompts(cfg), load_prompts(cfg)
    assert a == b
    assert len(a.test) == 10
    other = load_prompts(PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c"), seed=1))
    assert set(other.test.prompts) != set(a.test.prompts)
    quarter = load_prompts(PromptDataConfig(path=str(path), test_fraction=0.25,
                                            cache_dir=str(tmp_path / "c")))
    assert (len(quarter.train), len(quarter.test)) == (37, 13)  # ceil(0.25 * 50) = 13


def test_sklearn_split_matches_reference_code(tmp_path):
    from sklearn.model_selection import train_test_split

    rows = [{"prompt": f"p{i}", "original_output": f"o{i}"} for i in range(37)]
    path = write_jsonl(rows, tmp_path / "p.jsonl")
    for seed in (0, 3):
        cfg = PromptDataConfig(path=str(path), seed=seed, split_method="sklearn",
                               cache_dir=str(tmp_path / "c"))
        got = load_prompts(cfg)
        # What the reference irl_for_llms script does with the hub rows.
        want_train, want_test = train_test_split(rows, test_size=0.2, random_state=seed)
        assert got.train.prompts == tuple(r["prompt"] for r in want_train)
        assert got.test.prompts == tuple(r["prompt"] for r in want_test)
        assert got.test.references == tuple(r["original_output"] for r in want_test)


def test_save_to_disk_folder_limit_and_no_reference(tmp_path):
    ds = datasets.Dataset.from_list([{"q": f"question {i}", "a": str(i)} for i in range(20)])
    ds.save_to_disk(str(tmp_path / "flat"))
    cfg = _config(tmp_path / "flat", tmp_path, prompt_column="q", reference_column=None,
                  limit=5, test_fraction=0.0)
    splits = load_prompts(cfg)
    assert splits.train.prompts == tuple(f"question {i}" for i in range(5))
    assert splits.train.references is None
    assert len(splits.test) == 0

    datasets.DatasetDict(train=ds, validation=ds.select(range(3))).save_to_disk(
        str(tmp_path / "dict"))
    cfg = _config(tmp_path / "dict", tmp_path, prompt_column="q", reference_column="a",
                  split="validation", test_fraction=0.0)
    assert load_prompt_dataset(cfg)["reference"] == ["0", "1", "2"]
    with pytest.raises(DataError) as e:
        load_prompt_dataset(_config(tmp_path / "dict", tmp_path, prompt_column="q",
                                    reference_column=None, split="test"))
    _one_line_error(e, "'test'", "train, validation")


def test_a_downloaded_hub_dataset_folder_loads_and_other_folders_are_refused(tmp_path):
    """A hub dataset repository as downloaded (data/train-*.parquet) reads as the hub id
    would; a folder with no data files is a one-line error."""
    rows = [{"prompt": f"p{i}", "original_output": f"o{i}"} for i in range(12)]
    (tmp_path / "repo" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows),
                   tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    (tmp_path / "repo" / "README.md").write_text("# a dataset card\n")
    loaded = load_prompt_dataset(_config(tmp_path / "repo", tmp_path, prompt_column="prompt",
                                         reference_column="original_output"))
    assert loaded["prompt"] == [r["prompt"] for r in rows]
    assert loaded["reference"] == [r["original_output"] for r in rows]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("")
    with pytest.raises(DataError) as e:
        load_prompt_dataset(_config(tmp_path / "empty", tmp_path, prompt_column="prompt"))
    _one_line_error(e, "is neither a Dataset.save_to_disk folder", "pass a data file instead")


def test_csv_values_stay_verbatim(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,original_output\nNA,42\n"a, b",\n')
    ds = load_prompt_dataset(PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c")))
    assert ds["prompt"] == ["NA", "a, b"]
    assert ds["reference"] == ["42", ""]


def test_missing_columns_name_the_column_and_list_available(tmp_path):
    path = _write(tmp_path / "p.jsonl", ROWS, "jsonl")
    with pytest.raises(DataError) as e:
        load_prompt_dataset(_config(path, tmp_path, prompt_column="prompt"))
    _one_line_error(e, "'prompt'", "text, continuation, toxic", str(path))
    with pytest.raises(DataError) as e:
        load_prompt_dataset(_config(path, tmp_path, reference_column="original_output"))
    _one_line_error(e, "'original_output'", "text, continuation, toxic", "None")


def test_empty_and_corrupt_files_name_the_file(tmp_path):
    cases = {
        "empty.jsonl": "",
        "header_only.csv": "prompt,original_output\n",
        "empty_list.json": "[]",
        "bad.jsonl": '{"prompt": "a", "original_output": "b"}\n{not json\n',
        "bad.parquet": "this is not parquet",
        "prompts.txt": "a prompt\n",
    }
    expected = {"empty.jsonl": "is empty", "header_only.csv": "no rows",
                "empty_list.json": "no rows", "bad.jsonl": "cannot read",
                "bad.parquet": "cannot read", "prompts.txt": "unsupported extension"}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(DataError) as e:
            load_prompt_dataset(PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c")))
        _one_line_error(e, str(path), expected[name])
    with pytest.raises(DataError) as e:
        load_prompt_dataset(PromptDataConfig(path=str(tmp_path / "nope.jsonl")))
    _one_line_error(e, "nope.jsonl", "does not exist")
    (tmp_path / "plain_folder").mkdir()
    with pytest.raises(DataError) as e:
        load_prompt_dataset(PromptDataConfig(path=str(tmp_path / "plain_folder")))
    _one_line_error(e, "plain_folder", "save_to_disk")


@pytest.mark.parametrize("bad, what", [(7, "int"), (None, "NoneType"), ("   ", "empty")])
def test_bad_prompt_value_names_the_row(tmp_path, bad, what):
    rows = [{"prompt": "fine", "original_output": "x"} for _ in range(4)]
    rows[2]["prompt"] = bad
    path = write_jsonl(rows, tmp_path / "p.jsonl")
    with pytest.raises(DataError) as e:
        load_prompt_dataset(PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c")))
    _one_line_error(e, "row 2", "'prompt'", what, str(path))


def test_bad_reference_value_names_the_row(tmp_path):
    rows = [{"prompt": "fine", "original_output": "x"} for _ in range(4)]
    rows[3]["original_output"] = None
    path = write_jsonl(rows, tmp_path / "p.jsonl")
    with pytest.raises(DataError) as e:
        load_prompt_dataset(PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c")))
    _one_line_error(e, "row 3", "'original_output'")


def test_hub_id_offline_is_a_fast_one_line_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # Both libraries read the variables at import time.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    start = time.perf_counter()
    with pytest.raises(DataError) as e:
        load_prompt_dataset(PromptDataConfig(cache_dir=str(tmp_path / "c")))
    assert time.perf_counter() - start < 10
    _one_line_error(e, "'jaredjoss/jigsaw-long-2000'", "local")


def test_too_few_rows_to_split_and_config_checks(tmp_path):
    path = write_jsonl([{"prompt": "only", "original_output": ""}], tmp_path / "one.jsonl")
    cfg = PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match="only 1 prompts"):
        split_prompt_dataset(load_prompt_dataset(cfg), cfg)
    with pytest.raises(ConfigError, match="test_fraction"):
        PromptDataConfig(test_fraction=1.0)
    with pytest.raises(ConfigError, match="both 'text'"):
        PromptDataConfig(prompt_column="text", reference_column="text")
    with pytest.raises(ConfigError, match="split_method"):
        PromptDataConfig(split_method="random")
    with pytest.raises(ConfigError, match="limit"):
        PromptDataConfig(limit=0)


def test_write_jsonl_round_trip_and_errors(tmp_path):
    rows = [{"prompt": "héllo \"quoted\"\nnext line", "original_output": "ok"}]
    path = write_jsonl(rows, tmp_path / "sub" / "defaults.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
    assert not (tmp_path / "sub" / "defaults.jsonl.tmp").exists()
    cfg = PromptDataConfig(path=str(path), test_fraction=0.0, cache_dir=str(tmp_path / "c"))
    assert load_prompts(cfg).train.prompts == (rows[0]["prompt"],)
    with pytest.raises(DataError, match="no records"):
        write_jsonl([], tmp_path / "x.jsonl")
    with pytest.raises(DataError, match="record 1"):
        write_jsonl([{"a": 1}, {"a": object()}], tmp_path / "x.jsonl")
    with pytest.raises(DataError, match="record 0"):
        write_jsonl(["not a dict"], tmp_path / "x.jsonl")


@pytest.mark.parametrize("split_method", ["datasets", "sklearn"])
def test_duplicate_prompts_never_cross_the_split(tmp_path, caplog, split_method):
    # 40 rows, 10 distinct prompts: without deduplication both sides share prompts.
    rows = [{"prompt": f"p{i % 10}", "original_output": f"o{i}"} for i in range(40)]
    path = write_jsonl(rows, tmp_path / "dup.jsonl")
    cfg = PromptDataConfig(path=str(path), split_method=split_method,
                           cache_dir=str(tmp_path / "c"))
    with caplog.at_level("WARNING", logger="jaxirl.data.prompts"):
        splits = load_prompts(cfg)
    assert set(splits.train.prompts).isdisjoint(splits.test.prompts)
    assert (len(splits.train), len(splits.test)) == (8, 2)  # ceil(0.2 * 10) distinct
    assert splits.duplicates_dropped == 30
    assert "dropped 30 row(s)" in caplog.text and str(path) in caplog.text
    # The first occurrence is kept, with its own reference.
    for p, r in zip(splits.train.prompts + splits.test.prompts,
                    splits.train.references + splits.test.references, strict=True):
        assert r == "o" + p[1:]
    assert load_prompts(cfg) == splits


def test_unique_prompts_split_is_unchanged_by_deduplication(tmp_path):
    rows = [{"prompt": f"p{i}", "original_output": f"o{i}"} for i in range(30)]
    ds = datasets.Dataset.from_list(rows).rename_columns({"original_output": "reference"})
    cfg = PromptDataConfig(path="unused", seed=4)
    dd = split_prompt_dataset(ds, cfg)
    want = ds.train_test_split(test_size=0.2, seed=4)
    assert dd["train"]["prompt"] == want["train"]["prompt"]
    assert dd["test"]["prompt"] == want["test"]["prompt"]
    path = write_jsonl(rows, tmp_path / "p.jsonl")
    assert load_prompts(PromptDataConfig(path=str(path), cache_dir=str(tmp_path / "c"))
                        ).duplicates_dropped == 0


def test_paper_presets_hold_out_the_reference_prompts(tmp_path):
    """The study's paper presets and the rlhf launcher's pythia presets split the prompts
    as the reference's src/train_rlhf.py does (sklearn, test_size 0.2, random_state 0);
    the embedded default keeps the datasets split."""
    from launchers import launch
    from sklearn.model_selection import train_test_split

    from jaxirl.pipeline.study import PRESETS, _prompt_config

    def rlhf_prompts(preset):
        # The rlhf launcher's presets, read through the launcher: importing it here would
        # define its absl flags in this test process.
        out = launch("rlhf.py", "--preset", preset, "--print_config")
        assert out.returncode == 0, out.stderr[-2000:]
        return PromptDataConfig(**json.loads(out.stdout)["prompts"])

    rows = [{"prompt": f"p{i}", "original_output": f"o{i}"} for i in range(41)]
    path = write_jsonl(rows, tmp_path / "p.jsonl")
    _, want_test = train_test_split(rows, test_size=0.2, random_state=0)
    configs = [_prompt_config(PRESETS[name], str(path)) for name in ("paper70m", "paper410m")]
    configs += [dataclasses.replace(rlhf_prompts(name), path=str(path))
                for name in ("pythia70m", "pythia410m")]
    for config in configs:
        got = load_prompts(dataclasses.replace(config, cache_dir=str(tmp_path / "c")))
        assert got.test.prompts == tuple(r["prompt"] for r in want_test)
    assert _prompt_config(PRESETS["default"], str(path)).split_method == "datasets"
    assert rlhf_prompts("default").split_method == "datasets"
