"""The whole interpretability stage on a tiny random GPT-NeoX and synthetic texts."""

import jax
import numpy as np
import pytest
from interp_texts import WORDS, synthetic_texts, word_tokenizer

from jaxirl import interp
from jaxirl.errors import DataError
from jaxirl.interp import plots
from jaxirl.interp.probes import DEFAULT_ALPHAS
from jaxirl.models import GPTNeoXConfig, GPTNeoXForCausalLM, init_params
from jaxirl.rewards import make_scorer


def test_stage_runs_and_returns_finite_numbers(tmp_path):
    cfg = GPTNeoXConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
    model = GPTNeoXForCausalLM(cfg)
    base = jax.jit(init_params, static_argnums=0)(cfg, jax.random.PRNGKey(0))  # one compile
    noise = jax.tree_util.tree_map(lambda p: 0.05 * np.ones_like(p), base["layers_1"])
    tuned = {**base, "layers_1": jax.tree_util.tree_map(lambda p, e: p + e, base["layers_1"],
                                                        noise)}
    layers = interp.select_divergent_layers(base, tuned, 1)
    assert layers == [1]

    tok, scorer = word_tokenizer(), make_scorer("profanity")
    train, test = synthetic_texts(160, 0), synthetic_texts(60, 1)
    r_train, r_test = scorer.log_odds(train), scorer.log_odds(test)
    y_train, y_test = scorer(train) < 0.5, scorer(test) < 0.5
    assert 0 < y_train.mean() < 1 and 0 < y_test.mean() < 1

    ids, mask = interp.tokenize_texts(train, tok, 16)
    cap = interp.capture_mlp_activations(model, tuned, ids, mask, layers, batch_size=32)
    acts = cap.activations[1]
    assert acts.shape == (int(mask.sum()), 32)
    cut = int(0.8 * len(acts))
    sae, hist = interp.train_sae(acts[:cut], interp.SAEConfig(batch_size=64, num_epochs=5),
                                 acts[cut:])
    saes = {1: sae}
    assert np.isfinite(hist["eval"].fve) and hist["eval"].num_features == 64

    fit = interp.fit_implicit_reward_model(model, tuned, tok, layers, saes, train, r_train, test,
                                           r_test, y_train, y_test, max_tokens=16)
    pred, pred_raw = fit.irm(test), fit.baseline(test)
    assert pred.shape == (60,) and np.all(np.isfinite(pred)) and np.all(np.isfinite(pred_raw))
    np.testing.assert_allclose(pred, fit.sae_probes.ridge.predict(fit.irm.features(test)))
    summary = fit.summary()
    assert np.isfinite(summary["sae"]["ridge_kendall"]) and summary["raw"]["num_features"] == 32
    assert summary["sae"]["ridge_alpha"] in DEFAULT_ALPHAS  # the penalty LOO picked
    # Rude words carry the reward and the model sees tokens: the probe must beat chance.
    assert summary["sae"]["ridge_kendall"] > 0.3 and summary["sae"]["logistic_accuracy"] > 0.7
    cmp = interp.compare_rewards(pred, r_test)
    assert np.isfinite(cmp.spearman) and 0.0 <= cmp.agreement <= 1.0

    # Per-token probe: which tokens are listed offensive words ("shit", "damn", ...).
    tok_x = interp.token_features(cap, layers, saes)
    tok_y = interp.offensive_token_labels(cap.token_ids, tok).astype(float)
    assert 0 < tok_y.mean() < 0.5
    tok_eval = interp.evaluate_probes(tok_x[:cut], tok_y[:cut], tok_x[cut:], tok_y[cut:])
    assert tok_eval.ridge_test.pearson > 0.4  # binary targets: tau-b is tie-bound

    labels = interp.label_features(cap, saes, tok, scorer, top_k=5, num_random_features=8)
    assert labels.layer.shape == (64,) and 0 < labels.base_rate < 1
    ids_t, mask_t = interp.tokenize_texts(test, tok, 16)
    cap_t = interp.capture_mlp_activations(model, tuned, ids_t, mask_t, layers, batch_size=32)

    # The stage hands its own captures to the fit: the same probes and predictions, bit
    # for bit, as the fit that runs the model itself.
    given = interp.fit_implicit_reward_model(model, tuned, tok, layers, saes, train, r_train,
                                             test, r_test, y_train, y_test, max_tokens=16,
                                             train_activations=cap, test_activations=cap_t)
    assert given.summary() == summary
    np.testing.assert_array_equal(given.irm.predict(cap_t), pred)
    np.testing.assert_array_equal(given.baseline.predict(cap_t), pred_raw)
    with pytest.raises(DataError, match="test_activations holds 160 texts but 60"):
        interp.fit_implicit_reward_model(model, tuned, tok, layers, saes, train, r_train, test,
                                         r_test, max_tokens=16, train_activations=cap,
                                         test_activations=cap)
    firing = interp.firing_rate_test(cap_t, saes, labels, ~y_test)
    assert np.all(np.isfinite(firing.rate_on_toxic)) and firing.num_toxic_texts > 0

    paths = [plots.plot_sae_metrics({(1, 2): hist["eval"]}, tmp_path / "sae.png"),
             plots.plot_irm_scatter(pred, r_test, tmp_path / "irm.png", baseline=pred_raw),
             plots.plot_firing_rates(firing, tmp_path / "firing.png")]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_irm_rejects_blank_texts():
    from jaxirl.errors import ConfigError, RewardError

    cfg = GPTNeoXConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32)
    params = jax.jit(init_params, static_argnums=0)(cfg, jax.random.PRNGKey(0))
    irm = interp.ImplicitRewardModel(GPTNeoXForCausalLM(cfg), params, word_tokenizer(), [0],
                                     probe=None)
    with pytest.raises(ConfigError, match="no fitted probe"):
        irm(["the cat"])
    irm.probe = object()  # never reached: the texts are checked first
    with pytest.raises(RewardError, match="text 1"):
        irm(["the cat", "  "])
