"""Launcher configs: every setting is a --config.<field> flag; saved configs load back.

The default study must resolve to exactly the config it had before these flags existed:
``study_config_default.json`` is the ``study_config.json`` that the report of a default
study wrote then (``{"preset": "default", **dataclasses.asdict(PRESETS["default"])}``).
Each launcher's command lines run in one process (``launch_many``) with ``--print_config``,
which prints the resolved config and runs nothing.
"""

import dataclasses
import json
import pathlib

import pytest
from launchers import launch_many

from jaxirl.pipeline.study import PRESETS

SNAPSHOT = pathlib.Path(__file__).with_name("study_config_default.json")
PRINT = "--print_config"

# (id, argv, substring of the one error line); each runs with its own --workdir.
BAD_PIPELINE = [
    ("unknown_field", ["--config.irl.lerning_rate=1e-5"],
     "error: --config.irl.lerning_rate: irl (IRLTrainConfig) has no setting 'lerning_rate'"),
    ("unknown_group", ["--config.sae.num_epochs=5"],
     "error: --config.sae.num_epochs: the config (StudyConfig) has no setting 'sae'"),
    ("not_a_group", ["--config.dtype.x=1"], "error: --config.dtype.x: 'dtype' is a str, not a "
     "group of settings"),
    ("wrong_type", ["--config.irl.epochs=two"],
     "--config.irl.epochs=two: invalid literal for int() with base 10: 'two'"),
    ("failed_validation", ["--config.interp.sae.num_epochs=0"],
     "error: --config.interp.sae.num_epochs=0: SAEConfig.num_epochs must be"),
    ("cross_field_validation", ["--config.rlhf_seeds=0"],
     "error: --config.rlhf_seeds=0: StudyConfig.rlhf_seeds must be a positive integer, got 0"),
    ("enumeration", ["--config.irl.loss.name=cubic"],
     "--config.irl.loss.name=cubic: value should be one of <discriminator|"),
    ("spec", ["--config.ground_truth=toxicity"],
     "--config.ground_truth=toxicity: value should be one of <profanity[:ARG]|roberta[:ARG]>"),
    ("short_and_override", ["--irl_epochs", "2", "--config.irl.epochs=3"],
     "error: --irl_epochs and --config.irl.epochs both set 'irl.epochs'; pass one of them"),
    ("short_and_override_group", ["--num_devices", "1", "--config.mesh.data=1"],
     "error: --num_devices and --config.mesh.data both set 'mesh'"),
    ("preset_and_file", ["--preset", "smoke", "--config_file", str(SNAPSHOT)],
     "error: pass --preset or --config_file, not both"),
    ("bad_file_value", ["--config_file", "{root}/bad_value.json"],
     "error: --config_file '{root}/bad_value.json': irl.epochs: expected an int, got 'x'"),
    ("unknown_file_field", ["--config_file", "{root}/unknown_field.json"],
     "error: --config_file '{root}/unknown_field.json': reward: StudyConfig has no setting "
     "'reward'"),
    ("tuple_of_groups", ["--config.methods.methods=a"], "--config.methods.methods: a tuple"),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("config_flags")
    (root / "methods.json").write_text(json.dumps(dataclasses.asdict(PRESETS["methods"])))
    (root / "bad_value.json").write_text(json.dumps({"irl": {"epochs": "x"}}))
    (root / "unknown_field.json").write_text(json.dumps({"reward": "profanity"}))
    cases = {
        "default": [PRINT],
        "snapshot": [PRINT, "--config_file", str(SNAPSHOT)],
        "methods": [PRINT, "--config_file", str(root / "methods.json")],
        "overrides": [PRINT, "--config.irl.learning_rate=1e-5", "--config.interp.sae.num_epochs=5",
                      "--config.interp.dict_multiples=1,4", "--config.interp_train_pairs=none",
                      "--config.irl.threshold=median", "--config.reference_column=none",
                      "--config.ppo.lr=2e-5", "--irl_seeds", "2", "--config.methods.bootstrap",
                      "10", "--noconfig.demos.do_sample", "--dtype", "bfloat16"],
        "file_then_flags": [PRINT, "--config_file", str(SNAPSHOT), "--config.rlhf_iterations=3",
                            "--rlhf_seeds", "1"],
        "preset_then_ppo": [PRINT, "--preset", "smoke", "--config.ppo.max_new_tokens=4"],
        "group_none": [PRINT, "--preset", "methods", "--config.methods=none"],
        "group_build": [PRINT, "--config.methods=build", "--config.methods.draws=0,1"],
        **{name: [*(a.format(root=root) for a in argv), "--workdir", str(root / name)]
           for name, argv, _ in BAD_PIPELINE}}
    return root, launch_many("pipeline.py", cases)


def _config(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_the_default_study_resolves_to_the_same_config_as_before(pipeline):
    _, outs = pipeline
    before = json.loads(SNAPSHOT.read_text())
    assert before.pop("preset") == "default"
    now = _config(outs["default"])
    # New fields at values that keep the old behaviour: ppo None (the PPO preset's
    # hyperparameters), irl.adam_eps optax's default and the datasets split.
    assert now.pop("ppo") is None
    assert now["irl"].pop("adam_eps") == 1e-8
    assert now.pop("split_method") == "datasets"
    assert now.pop("tokenizer") == ""  # the model folder's own
    assert now.pop("demos_split") == "own"
    assert now == before
    # A saved study_config.json (its "preset" is provenance) loads back unchanged.
    snapshot = _config(outs["snapshot"])
    assert snapshot["irl"].pop("adam_eps") == 1e-8
    assert snapshot.pop("split_method") == "datasets"
    assert snapshot.pop("tokenizer") == ""
    assert snapshot.pop("demos_split") == "own"
    assert snapshot == {**before, "ppo": None}


def test_a_saved_config_with_every_kind_of_field_loads_back(pipeline):
    # Nested, optional groups, tuples of ints and of dataclasses, float | str.
    _, outs = pipeline
    saved = json.loads(json.dumps(dataclasses.asdict(PRESETS["methods"])))
    assert saved["methods"]["methods"] and _config(outs["methods"]) == saved


def test_overrides_set_nested_optional_tuple_and_union_fields(pipeline):
    _, outs = pipeline
    config = _config(outs["overrides"])
    default = _config(outs["default"])
    assert config["irl"]["learning_rate"] == 1e-5 and config["irl"]["num_seeds"] == 2
    assert config["irl"]["threshold"] == "median" and config["irl"]["epochs"] == 4
    assert config["interp"]["sae"] == {**default["interp"]["sae"], "num_epochs": 5}
    assert config["interp"]["dict_multiples"] == [1, 4]
    assert config["interp_train_pairs"] is None and config["reference_column"] is None
    assert config["demos"]["do_sample"] is False and config["dtype"] == "bfloat16"
    # An override of one PPO field starts from the preset's values.
    from jaxirl.ppo.config import get_preset

    assert config["ppo"] == {**json.loads(json.dumps(dataclasses.asdict(get_preset("default")))),
                             "lr": 2e-5}
    # An unset optional group is built from its defaults.
    assert config["methods"]["bootstrap"] == 10 and config["methods"]["rlhf_seeds"] == 3
    changed = {k for k in default if config[k] != default[k]}
    assert changed == {"irl", "interp", "interp_train_pairs", "reference_column", "ppo",
                       "methods", "demos", "dtype"}


def test_flags_apply_on_top_of_a_saved_config_and_of_a_preset(pipeline):
    _, outs = pipeline
    before = json.loads(SNAPSHOT.read_text())
    config = _config(outs["file_then_flags"])
    assert config["irl"].pop("adam_eps") == 1e-8  # a field newer than the snapshot
    assert config.pop("split_method") == "datasets"  # so is this one
    assert config.pop("tokenizer") == ""  # and this one
    assert config.pop("demos_split") == "own"
    assert (config["rlhf_iterations"], config["rlhf_seeds"]) == (3, 1)
    assert {k: v for k, v in config.items() if k not in ("rlhf_iterations", "rlhf_seeds", "ppo")} \
        == {k: v for k, v in before.items() if k not in ("rlhf_iterations", "rlhf_seeds", "preset")}
    smoke = _config(outs["preset_then_ppo"])
    assert smoke["rlhf_iterations"] == 2 and smoke["ppo"]["max_new_tokens"] == 4
    assert smoke["ppo"]["num_rollouts"] == 16  # the smoke PPO preset's


def test_an_optional_group_is_removed_with_none_and_built_from_its_defaults(pipeline):
    from jaxirl.pipeline.methods import MethodsConfig

    _, outs = pipeline
    assert _config(outs["group_none"])["methods"] is None
    defaults = json.loads(json.dumps(dataclasses.asdict(MethodsConfig())))
    assert _config(outs["group_build"])["methods"] == {**defaults, "draws": [0, 1]}


@pytest.mark.parametrize("name,message", [(n, m) for n, _, m in BAD_PIPELINE],
                         ids=[n for n, _, _ in BAD_PIPELINE])
def test_bad_overrides_are_one_line_errors_that_create_nothing(pipeline, name, message):
    root, outs = pipeline
    proc = outs[name]
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message.format(root=root) in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (root / name).exists()


def test_pretrain_default_config_and_its_deprecated_out_flag(tmp_path):
    outs = launch_many("pretrain_default.py", {
        "old_name": [PRINT, "--out", str(tmp_path / "m"), "--steps", "3",
                     "--config.default_model.hidden_size=64"],
        "both_names": ["--out", str(tmp_path / "a"), "--workdir", str(tmp_path / "b")],
        "bad": ["--config.default_model.train.warmup_steps=x", "--workdir", str(tmp_path / "c")],
        # It trained on sequences past the model's 256-token context.
        "past_context": ["--config.default_model.train.seq_len=512", "--workdir",
                         str(tmp_path / "d")]})
    config = _config(outs["old_name"])
    assert outs["old_name"].stderr.strip() == "warning: --out is deprecated; use --workdir"
    assert config["default_model"]["train"]["total_steps"] == 3
    assert config["default_model"]["hidden_size"] == 64 and config["evaluate"] is True
    assert outs["both_names"].returncode == 2 and "error: --out and --workdir are one flag" in \
        outs["both_names"].stderr
    assert outs["bad"].returncode == 2 and \
        "--config.default_model.train.warmup_steps=x: invalid literal" in outs["bad"].stderr
    assert outs["past_context"].returncode == 2 and outs["past_context"].stderr.strip() == \
        "error: --config.default_model.train.seq_len=512: default model field 'train.seq_len' " \
        "is 512 but 'max_position_embeddings' is 256: it would train on sequences past the " \
        "model's context; lower one or raise the other"
    assert not any(tmp_path.iterdir())
