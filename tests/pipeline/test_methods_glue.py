"""Pieces of the method comparison and the size sweep that need no training."""

import jax
import numpy as np
import pytest

from jaxirl.default.build import DefaultModelSpec
from jaxirl.models.gpt_neox import init_params
from jaxirl.pipeline.methods import (
    _prompt_split,
    ensemble_rewards,
    other_source_texts,
    thresholds_from_training,
)
from jaxirl.pipeline.methods_stage import _seed_ensemble, best_black_box
from jaxirl.pipeline.size_sweep import SIZES, parameter_count


@pytest.mark.parametrize("name", sorted(SIZES))
def test_parameter_count_matches_the_built_model(name):
    spec = SIZES[name]
    params = jax.eval_shape(lambda: init_params(spec.model_config(0), jax.random.PRNGKey(0)))
    assert parameter_count(spec) == sum(int(np.prod(x.shape))
                                        for x in jax.tree_util.tree_leaves(params))
    # Same recipe: only width and depth differ from the default.
    assert spec.train == DefaultModelSpec().train and spec.vocab_size == 2048


def test_size_axis_spans_the_issue_range():
    counts = sorted(parameter_count(s) for s in SIZES.values())
    assert 0.25e6 < counts[0] < 0.45e6 and 1.2e6 < counts[1] < 1.4e6 and 4.5e6 < counts[2] < 5.5e6


def test_seed_ensembles_use_training_statistics():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(3, 50)) * [[1], [5], [0.2]], rng.normal(size=(3, 20))
    tr, te = _seed_ensemble(train, test)
    want = ((test - train.mean(1, keepdims=True)) / train.std(1, keepdims=True)).mean(0)
    np.testing.assert_allclose(te[0], want)
    assert tr.shape == (1, 50) and abs(tr.mean()) < 1e-12
    assert ensemble_rewards(test).shape == (1, 20)


def test_thresholds_are_fitted_on_training_texts_only():
    true = np.array([-1.0, -0.5, 0.5, 1.0])
    rewards = np.array([[0.0, 1.0, 2.0, 3.0], [10.0, 11.0, 12.0, 13.0]])
    np.testing.assert_allclose(thresholds_from_training(rewards, true), [1.5, 11.5])


def test_calibration_split_keeps_prompts_whole():
    prompts = [f"p{i % 7}" for i in range(70)]
    held = _prompt_split(prompts, 0.3, seed=1)
    for p in set(prompts):
        rows = [held[i] for i, q in enumerate(prompts) if q == p]
        assert len(set(rows)) == 1
    assert held.sum() == 20  # round(0.3 * 7) = 2 prompts of 10 pairs


def test_other_source_texts_are_the_left_out_coding_dialogs():
    texts = other_source_texts()
    assert len(texts) > 20 and all(t.startswith(" ") and len(t.split()) <= 40 for t in texts)
    assert any("python" in t.lower() for t in texts)


def test_best_black_box_skips_white_box_methods():
    comparison = {"per_draw": [{"a": {"pearson": 0.5}, "log_ratio": {"pearson": 0.9},
                                "b_ensemble": {"pearson": 0.6}}]}
    assert best_black_box(comparison, ["a", "log_ratio", "b_ensemble"]) == "b_ensemble"


def test_word_probe_table_reads_each_draw_and_skips_old_records():
    from jaxirl.report.methods import _word_probe_lines

    probes = {"learning_curve": [{"fraction": 0.5, "pairs": 10, "pearson": 0.61},
                                 {"fraction": 1.0, "pairs": 20, "pearson": 0.66}],
              "oracle_pearson": 0.92, "oracle_strong_weights_pearson": 0.86,
              "strong_words": 346, "strong_weight_slope": 0.05}
    blob = {"config": {"draws": [0, 1]},
            "draws": {"0": {"word_probes": probes}, "1": {"word_probes": probes}}}
    text = "\n".join(_word_probe_lines(blob))
    assert "| discriminator, 10 pairs | discriminator, 20 pairs | oracle |" in text
    assert text.count("| 0.660 | 0.920 | 0.860 | 346 | 0.050 |") == 2
    # methods.json written before the probes existed: no section, no error.
    assert _word_probe_lines({"config": {"draws": [0]}, "draws": {"0": {}}}) == []


def test_log_ratio_threshold_follows_the_irl_rule():
    """Numbers and held-out rules pass through; train_midpoint is computed by hand."""
    from jaxirl.errors import ConfigError
    from jaxirl.pipeline.methods import log_ratio_threshold

    assert log_ratio_threshold("match_rate", None) == "match_rate"
    assert log_ratio_threshold(0.25, None) == 0.25
    train = np.array([[1.0, 3.0, -2.0, 0.0]])  # experts 1, 3 (mean 2); bases -2, 0 (mean -1)
    assert log_ratio_threshold("train_midpoint", train) == 0.5
    with pytest.raises(ConfigError, match="train_midpoint"):
        log_ratio_threshold("train_midpoint", None)
