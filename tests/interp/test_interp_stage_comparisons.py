"""The interpretability stage's reward comparisons cut the truth at its boundary, log-odds 0."""

import jax
import numpy as np
import pytest
from interp_texts import WORDS, synthetic_texts, word_tokenizer

from jaxirl.errors import DataError
from jaxirl.interp.compare import compare_rewards, share_threshold
from jaxirl.interp.config import InterpConfig
from jaxirl.interp.sae import SAEConfig
from jaxirl.models import GPTNeoXConfig, init_params, save_pretrained
from jaxirl.pipeline.interp_stage import reward_comparisons, run_interp
from jaxirl.rewards import make_scorer

TRUE = np.linspace(-3.0, 5.0, 17)  # 6 of 17 texts toxic (below 0)


def test_a_shifted_probe_is_scored_against_the_true_labels():
    # Perfectly ranked but shifted by +2: it calls only the texts below -2 toxic.
    shifted = TRUE + 2.0
    out = reward_comparisons(shifted, TRUE, TRUE, 0.0, 0.0)
    irm = out["irm_vs_true"]
    assert irm.threshold_b == 0.0 and irm.toxic_fraction_b == pytest.approx(6 / 17)
    assert irm.toxic_fraction_a == pytest.approx(2 / 17)
    assert irm.agreement == pytest.approx(np.mean((shifted < 0) == (TRUE < 0))) == 13 / 17
    # The truth refitted to the probe's toxic share would have called it perfect.
    assert compare_rewards(shifted, TRUE, 0.0).agreement == 1.0
    raw = out["raw_vs_true"]
    assert raw.agreement == 1.0 and raw.threshold_b == 0.0
    assert set(out) == {"irm_vs_true", "raw_vs_true"}


def test_the_irl_reward_is_cut_at_the_truths_toxic_share():
    # The IRL reward's offset and scale mean nothing: a rescaled, shifted copy of the
    # truth agrees on every text, with the truth still cut at 0.
    irl = 3.0 * TRUE + 40.0
    probe = TRUE - 1.0  # calls 8 texts toxic at its zero
    out = reward_comparisons(probe, probe, TRUE, 0.0, 0.0, irl)
    vs_true = out["irl_vs_true"]
    assert vs_true.agreement == 1.0 and vs_true.threshold_b == 0.0
    assert vs_true.toxic_fraction_a == vs_true.toxic_fraction_b == pytest.approx(6 / 17)
    assert vs_true.threshold_a == pytest.approx(irl[6])
    # IRM vs IRL: the IRL reward takes the IRM's share (no truth in it).
    vs_irm = out["irm_vs_irl"]
    assert vs_irm.threshold_a == 0.0 and vs_irm.toxic_fraction_b == pytest.approx(8 / 17)
    assert vs_irm.agreement == 1.0


def test_share_threshold_hand_cases():
    r = np.array([5.0, -1.0, 2.0, 0.5])
    assert [share_threshold(r, k) for k in range(5)] == [-1.0, 0.5, 2.0, 5.0, 6.0]
    with pytest.raises(DataError, match="num_toxic must lie in \\[0, 4\\], got 5"):
        share_threshold(r, 5)


def test_the_stage_writes_comparisons_at_the_truths_boundary(tmp_path):
    """The whole stage on a tiny random GPT-NeoX: every comparison against the truth cuts
    it at log-odds 0 (the share the truth calls toxic), not at the other reward's share."""
    cfg = GPTNeoXConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=32)
    base = jax.jit(init_params, static_argnums=0)(cfg, jax.random.PRNGKey(0))
    tuned = {**base, "layers_1": jax.tree_util.tree_map(lambda p: p + 0.05, base["layers_1"])}
    save_pretrained(tmp_path / "base", cfg, base, tokenizer=word_tokenizer())
    save_pretrained(tmp_path / "tuned", cfg, tuned, tokenizer=word_tokenizer())
    scorer = make_scorer("profanity")
    train, test = synthetic_texts(96, 0), synthetic_texts(40, 1)
    true = scorer.log_odds(test)
    assert 0 < np.mean(true < 0) < 1
    config = InterpConfig(num_layers=1, dict_multiples=(1,), max_tokens=16, top_k_contexts=5,
                          sae=SAEConfig(num_epochs=2, batch_size=64))
    irl = 2.0 * true + 7.0  # perfectly ranked, arbitrary offset
    res = run_interp(config, tmp_path / "out", str(tmp_path / "base"), str(tmp_path / "tuned"),
                     train, test, scorer, irl_test_rewards=irl, progress=False)
    share = float(np.mean(true < 0))
    for key in ("irm_vs_true", "raw_vs_true", "irl_vs_true"):
        assert res[key]["threshold_b"] == 0.0, key
        assert res[key]["toxic_fraction_b"] == pytest.approx(share), key
    assert res["irl_vs_true"]["agreement"] == 1.0
    assert "log-odds 0" in (tmp_path / "out" / "interp_tables.md").read_text()
