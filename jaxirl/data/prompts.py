"""Prompt datasets: load from the hub or local files, validate, and split train/test.

The paper (and the reference code) RLHF-trains on the hub dataset
``jaredjoss/jigsaw-long-2000``: 2000 long Jigsaw comments cut in half into a
``prompt`` and the human ``original_output``, split 80/20. Everything here goes
through HF ``datasets`` so that a hub id, a local json/jsonl/csv/parquet file
and a folder written by ``Dataset.save_to_disk`` behave the same. Every bad
input raises a one-line :class:`~jaxirl.errors.DataError` naming the file,
column or row at fault. Repeated prompt strings are dropped (first occurrence
kept) before the split, so no prompt is both trained on and held out.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import logging
import math
import os
import pathlib
from collections.abc import Iterable, Mapping

import datasets
import numpy as np

from jaxirl.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

PAPER_DATASET = "jaredjoss/jigsaw-long-2000"
# Canonical column names of the datasets returned by this module.
PROMPT = "prompt"
REFERENCE = "reference"

_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
SPLIT_METHODS = ("datasets", "sklearn")


@dataclasses.dataclass(frozen=True)
class PromptDataConfig:
    """Where the prompts come from and how they are split.

    Attributes:
      path: hub dataset id, a local .json/.jsonl/.csv/.parquet file, or a folder
        written by ``Dataset.save_to_disk``.
      prompt_column: column holding the prompt text.
      reference_column: column holding the human continuation (the paper's
        ``original_output``, a reward baseline). ``None``: no references. A named
        column that is absent is an error rather than silently dropped.
      split: which split of a hub dataset / saved ``DatasetDict`` to read.
      test_fraction: fraction of prompts held out for evaluation, in [0, 1).
      seed: seed of the train/test split.
      split_method: ``"datasets"`` uses ``Dataset.train_test_split(seed=seed)``;
        ``"sklearn"`` reproduces the membership and order of the reference code's
        ``sklearn.model_selection.train_test_split(random_state=seed)``.
      max_prompt_tokens: token budget per prompt; longer prompts keep their end.
        The reference (trlx) allows seq_length 1024 - max_new_tokens 128 = 896.
      pad_to_multiple_of: round the padded length up to a multiple of this (never
        past ``max_prompt_tokens``) so that few distinct shapes get compiled.
      limit: keep only the first ``limit`` rows (before dropping duplicate prompts and
        splitting); None: all.
      cache_dir: HF datasets cache folder (None: the library default).
    """

    path: str = PAPER_DATASET
    prompt_column: str = "prompt"
    reference_column: str | None = "original_output"
    split: str = "train"
    test_fraction: float = 0.2
    seed: int = 0
    split_method: str = "datasets"
    max_prompt_tokens: int = 896
    pad_to_multiple_of: int = 8
    limit: int | None = None
    cache_dir: str | None = None

    def __post_init__(self):
        if not self.path:
            raise ConfigError("prompt data field 'path' is empty")
        if not self.prompt_column:
            raise ConfigError("prompt data field 'prompt_column' is empty")
        if self.reference_column == self.prompt_column:
            raise ConfigError(
                f"prompt data fields 'prompt_column' and 'reference_column' are both "
                f"'{self.prompt_column}'")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(
                f"prompt data field 'test_fraction' must lie in [0, 1), got {self.test_fraction}")
        if self.seed < 0:
            raise ConfigError(f"prompt data field 'seed' must be >= 0, got {self.seed}")
        if self.split_method not in SPLIT_METHODS:
            raise ConfigError(
                f"prompt data field 'split_method' must be one of {SPLIT_METHODS}, "
                f"got '{self.split_method}'")
        if self.max_prompt_tokens <= 0:
            raise ConfigError(
                f"prompt data field 'max_prompt_tokens' must be positive, got {self.max_prompt_tokens}")
        if self.pad_to_multiple_of <= 0:
            raise ConfigError(
                f"prompt data field 'pad_to_multiple_of' must be positive, "
                f"got {self.pad_to_multiple_of}")
        if self.limit is not None and self.limit <= 0:
            raise ConfigError(f"prompt data field 'limit' must be positive or None, got {self.limit}")


@dataclasses.dataclass(frozen=True)
class PromptSet:
    """Prompt strings, with their reference continuations if the data has them."""

    prompts: tuple[str, ...]
    references: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.references is not None and len(self.references) != len(self.prompts):
            raise DataError(
                f"{len(self.references)} references for {len(self.prompts)} prompts")

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset) -> PromptSet:
        """From a dataset with the canonical ``prompt`` (and optional ``reference``) columns."""
        refs = tuple(ds[REFERENCE]) if REFERENCE in ds.column_names else None
        return cls(tuple(ds[PROMPT]), refs)


@dataclasses.dataclass(frozen=True)
class PromptSplits:
    """Disjoint train / held-out prompts.

    Attributes:
      train, test: the two sides of the split.
      duplicates_dropped: rows whose prompt text repeated an earlier row's and were
        dropped before splitting (0 for data with unique prompts).
    """

    train: PromptSet
    test: PromptSet
    duplicates_dropped: int = 0


def _looks_like_local_path(path: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else that does not exist is a
    # missing local file, and deserves a "no such file" error, not a hub lookup.
    suffix = pathlib.PurePath(path).suffix.lower()
    return (path.startswith(("/", ".", "~")) or path.count("/") > 1 or "\\" in path
            or suffix in _BUILDERS or suffix in (".txt", ".tsv", ".gz", ".zip", ".arrow"))


def _first_line(err: BaseException) -> str:
    # datasets wraps parser failures; the cause names what is actually wrong.
    cause = err.__cause__ or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


def _pick_split(dd: datasets.DatasetDict, split: str, source: str) -> datasets.Dataset:
    if split not in dd:
        raise DataError(f"{source} has no split '{split}' (splits: {', '.join(dd)}); set 'split'")
    return dd[split]


def _load_local_file(path: pathlib.Path, config: PromptDataConfig) -> datasets.Dataset:
    builder = _BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(
            f"prompt file {path} has unsupported extension '{path.suffix}' "
            f"(supported: {', '.join(_BUILDERS)}, or a save_to_disk folder)")
    if path.stat().st_size == 0:
        raise DataError(f"prompt file {path} is empty")
    if builder in ("json", "csv"):
        _check_utf8(path)
    kwargs = {}
    if builder == "csv":
        # Keep prompts verbatim: no "NA" -> NaN and no "42" -> int conversions.
        columns = [c for c in (config.prompt_column, config.reference_column) if c]
        kwargs = dict(converters={c: str for c in columns}, na_filter=False)
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train",
                                     cache_dir=config.cache_dir, **kwargs)
    except Exception as err:  # noqa: BLE001 - any parser failure is a bad file
        if "corresponds to no data" in str(err):
            raise DataError(f"prompt file {path} has no rows") from err
        raise DataError(f"cannot read prompt file {path}: {_first_line(err)}") from err


def _check_utf8(path: pathlib.Path) -> None:
    """DataError naming the line and byte of the first invalid UTF-8 sequence in a text file."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as e:
                line += block.count(b"\n", 0, max(e.start, 0))
                raise DataError(f"prompt file {path} is not UTF-8 text: byte "
                                f"{block[max(e.start, 0)]:#04x} at offset {offset + e.start} "
                                f"(line {line}); re-encode the file as UTF-8") from None
            offset, line = offset + len(block), line + block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise DataError(f"prompt file {path} is not UTF-8 text: it ends inside a multi-byte "
                        "character; re-encode the file as UTF-8") from None


def _load_disk_folder(path: pathlib.Path, config: PromptDataConfig) -> datasets.Dataset:
    if not ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        # A folder of data files, as a hub dataset repository downloads
        # (data/train-00000-of-00001.parquet, ...): datasets reads it as the hub would.
        try:
            loaded = datasets.load_dataset(str(path), cache_dir=config.cache_dir)
        except Exception as err:  # noqa: BLE001 - any reader failure: not a dataset folder
            raise DataError(
                f"prompt folder {path} is neither a Dataset.save_to_disk folder (no "
                f"state.json or dataset_dict.json) nor a folder of data files datasets can "
                f"read ({_first_line(err)}); pass a data file instead") from err
        return _pick_split(loaded, config.split, f"prompt folder {path}")
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001
        raise DataError(f"cannot read prompt folder {path}: {_first_line(err)}") from err
    if isinstance(loaded, datasets.DatasetDict):
        return _pick_split(loaded, config.split, f"prompt folder {path}")
    return loaded


def _load_hub(name: str, config: PromptDataConfig) -> datasets.Dataset:
    try:
        loaded = datasets.load_dataset(name, cache_dir=config.cache_dir)
    except Exception as err:  # noqa: BLE001 - offline, unknown id, gated, ...
        raise DataError(
            f"cannot load hub dataset '{name}' ({_first_line(err)}); when offline pass a "
            f"local .json/.jsonl/.csv/.parquet file or a save_to_disk folder") from err
    return _pick_split(loaded, config.split, f"hub dataset '{name}'")


def _check_strings(values: list, column: str, source: str, allow_empty: bool) -> None:
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise DataError(
                f"{source}: column '{column}' row {row} (0-based) is {type(value).__name__} "
                f"{value!r:.40}, expected a string")
        if not allow_empty and not value.strip():
            raise DataError(f"{source}: column '{column}' row {row} (0-based) is empty")


def load_prompt_dataset(config: PromptDataConfig) -> datasets.Dataset:
    """Loads and validates the prompt data, before any split.

    Returns:
      A ``datasets.Dataset`` with column ``prompt`` (non-empty strings) and, if
      ``config.reference_column`` is set, ``reference`` (strings, maybe empty),
      limited to the first ``config.limit`` rows.
    """
    local = pathlib.Path(os.path.expanduser(config.path))
    if local.is_dir():
        ds, source = _load_disk_folder(local, config), f"prompt folder {local}"
    elif local.is_file():
        ds, source = _load_local_file(local, config), f"prompt file {local}"
    elif _looks_like_local_path(config.path):
        raise DataError(f"prompt file {config.path} does not exist")
    else:
        ds, source = _load_hub(config.path, config), f"hub dataset '{config.path}'"

    if len(ds) == 0:
        raise DataError(f"{source} has no rows")
    available = ", ".join(ds.column_names)
    if config.prompt_column not in ds.column_names:
        raise DataError(
            f"{source} has no prompt column '{config.prompt_column}' (columns: {available}); "
            f"set 'prompt_column'")
    mapping = {config.prompt_column: PROMPT}
    if config.reference_column is not None:
        if config.reference_column not in ds.column_names:
            raise DataError(
                f"{source} has no reference column '{config.reference_column}' "
                f"(columns: {available}); set 'reference_column', or None for no references")
        mapping[config.reference_column] = REFERENCE
    if config.limit is not None and config.limit < len(ds):
        ds = ds.select(range(config.limit))
    ds = ds.select_columns(list(mapping)).rename_columns(mapping)
    try:
        _check_strings(ds[PROMPT], config.prompt_column, source, allow_empty=False)
        if REFERENCE in ds.column_names:
            _check_strings(ds[REFERENCE], config.reference_column, source, allow_empty=True)
    except UnicodeDecodeError as e:
        raise DataError(f"{source} holds text that is not valid UTF-8 ({e.reason} at byte "
                        f"{e.start} of a value); re-encode it as UTF-8") from None
    return ds


def drop_duplicate_prompts(ds: datasets.Dataset, source: str = "prompt data"
                           ) -> tuple[datasets.Dataset, int]:
    """Keeps the first row of each distinct (exact) prompt string, in the original order.

    Returns:
      (dataset, number of rows dropped); the dataset is ``ds`` itself when nothing repeats.
    """
    first: dict[str, int] = {}
    for row, prompt in enumerate(ds[PROMPT]):
        first.setdefault(prompt, row)
    dropped = len(ds) - len(first)
    if not dropped:
        return ds, 0
    logger.warning("%s: dropped %d row(s) whose prompt repeats an earlier row's (%d distinct "
                   "prompts kept), so that no prompt is in both train and test",
                   source, dropped, len(first))
    return ds.select(sorted(first.values())), dropped


def split_prompt_dataset(ds: datasets.Dataset, config: PromptDataConfig) -> datasets.DatasetDict:
    """Deterministic train/test split: same (data, seed, fraction) -> same split.

    Repeated prompts are dropped first (:func:`drop_duplicate_prompts`): a prompt in
    both parts would be scored as "held out" after PPO trained on it. On data with
    unique prompts the split is exactly ``datasets``' (or sklearn's, see
    ``split_method``); with repeats it differs from the reference code, which does
    not deduplicate. ``n_test = ceil(test_fraction * n)`` over the n distinct prompts,
    as in both ``datasets`` and sklearn.
    """
    ds, dropped = drop_duplicate_prompts(ds, config.path)
    n = len(ds)
    if config.test_fraction == 0.0:
        return datasets.DatasetDict(train=ds, test=ds.select([]))
    n_test = math.ceil(config.test_fraction * n)
    if n_test >= n:
        distinct = f" distinct ({dropped} duplicate(s) dropped)" if dropped else ""
        raise DataError(
            f"{config.path}: only {n}{distinct} prompts, too few to hold out test_fraction "
            f"{config.test_fraction} and keep a training prompt")
    if config.split_method == "sklearn":
        # sklearn's ShuffleSplit: legacy RandomState permutation, test rows first.
        perm = np.random.RandomState(config.seed).permutation(n)
        return datasets.DatasetDict(train=ds.select(perm[n_test:]), test=ds.select(perm[:n_test]))
    return ds.train_test_split(test_size=config.test_fraction, seed=config.seed)


def load_prompts(config: PromptDataConfig) -> PromptSplits:
    """Loads, validates and splits the prompts named by ``config``."""
    ds = load_prompt_dataset(config)
    dd = split_prompt_dataset(ds, config)
    dropped = len(ds) - len(dd["train"]) - len(dd["test"])
    return PromptSplits(PromptSet.from_dataset(dd["train"]), PromptSet.from_dataset(dd["test"]),
                        duplicates_dropped=dropped)


def write_jsonl(records: Iterable[Mapping], path: str | os.PathLike) -> pathlib.Path:
    """Writes one JSON object per line, so built-in prompts load like any user file.

    The file is written beside its destination and renamed into place, so a
    reader never sees half a file. Returns the path written.
    """
    path = pathlib.Path(path)
    lines = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise DataError(f"record {i} for {path} is {type(record).__name__}, expected a dict")
        try:
            lines.append(json.dumps(dict(record), ensure_ascii=False))
        except (TypeError, ValueError) as err:
            raise DataError(f"record {i} for {path} is not JSON-serialisable: {err}") from err
    if not lines:
        raise DataError(f"no records to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
