"""The paired method comparison (``--preset methods``): every reward-recovery method on the
same seeds and demonstration draws.

Per draw (the demonstrations' ``DemoConfig.seed``; draw 0 is the study's own):
IRL with each loss of :data:`DEFAULT_METHODS` (S seeds), the white-box log-ratio
reward, and the Bayesian posterior mean on frozen base-model features (with its
sequential rounds, calibration and OOD flags). Every reward is scored on the
draw's held-out pairs with accuracy/F1 at a threshold fitted on the training
pairs; methods are compared paired over seeds and draws with a prompt bootstrap
(:mod:`jaxirl.irl.method_comparison`). Optionally, re-RLHF with several PPO
seeds for the true reward and the best black-box reward. Thin glue over library
functions; every expensive piece is cached in its own folder, so a killed run
resumes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import time
import zipfile
from typing import Any

import numpy as np
import yaml

from jaxirl import runs
from jaxirl.errors import ConfigError
from jaxirl.irl.bayes import BayesConfig, completion_features, sequential_posteriors, zscore
from jaxirl.irl.calibration import (
    brier,
    expected_calibration_error,
    platt_apply,
    platt_ece_floor,
    platt_fit,
    reliability_bins,
)
from jaxirl.irl.evaluate import fit_threshold, midpoint_threshold
from jaxirl.irl.linear_reward import LinearFeatureReward, save_linear_reward
from jaxirl.irl.log_ratio import log_ratio_rewards
from jaxirl.irl.losses import FailureConfig, IRLLossConfig
from jaxirl.irl.method_comparison import draw_summary, paired_differences

WHITE_BOX = frozenset({"log_ratio"})


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One IRL method of the comparison: a loss and its optimisation."""

    name: str
    loss: IRLLossConfig
    learning_rate: float = 3e-5
    epochs: int = 4


DEFAULT_METHODS = (
    MethodSpec("max_margin", IRLLossConfig("max_margin")),
    MethodSpec("logistic", IRLLossConfig("logistic")),
    MethodSpec("discriminator", IRLLossConfig("discriminator")),
    MethodSpec("fa_max_margin", IRLLossConfig("fa_max_margin", margin=1.0,
                                              failure=FailureConfig(weight=1.0, margin=2.0))),
    MethodSpec("fa_maxent", IRLLossConfig("fa_maxent", temperature=0.1,
                                          failure=FailureConfig(weight=1.0, temperature=0.05))),
    MethodSpec("fa_focal", IRLLossConfig("fa_focal", temperature=0.1,
                                         failure=FailureConfig(weight=1.0, focal=2.0))),
)


@dataclasses.dataclass(frozen=True)
class MethodsConfig:
    """Settings of the paired comparison.

    Attributes:
      draws: demonstration seeds (0 = the study's demonstrations).
      methods: the IRL methods (each trained with the study's seeds and batch size).
      bayes: the Bayesian posterior (Laplace is reported; VI beside it).
      calibration_fraction: share of training prompts held out to calibrate.
      marker: the string injected before and after a text for the OOD check.
      marker_fraction: share of held-out texts that get the marker.
      bootstrap: prompt-bootstrap resamples of the paired differences.
      rlhf_seeds: PPO seeds of the re-RLHF comparison (0: skip re-RLHF).
    """

    draws: tuple[int, ...] = (0, 1, 2)
    methods: tuple[MethodSpec, ...] = DEFAULT_METHODS
    bayes: BayesConfig = BayesConfig()
    calibration_fraction: float = 0.15
    marker: str = "[MARKER]"
    marker_fraction: float = 0.2
    bootstrap: int = 1000
    rlhf_seeds: int = 3


# ------------------------------------------------------------------ one draw's rewards


def check_draws(study: Any, config: MethodsConfig) -> None:
    """ConfigError (one line, naming the field) unless ``config.draws`` are distinct draws.

    Draw 0 is the study's demonstrations (generated with ``study.demos.seed``) and draw
    d > 0 regenerates them with seed d, so a draw equal to a nonzero ``demos.seed``
    would repeat draw 0.
    """
    draws = list(config.draws)
    if not draws:
        raise ConfigError("MethodsConfig.draws is empty: give at least one draw (0: the "
                          "study's demonstrations)")
    for d in draws:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ConfigError(f"MethodsConfig.draws must hold seeds >= 0, got {d!r}")
    repeated = sorted({d for d in draws if draws.count(d) > 1})
    if repeated:
        raise ConfigError(f"MethodsConfig.draws repeats draw {repeated[0]}: {tuple(draws)}")
    seed = study.demos.seed
    if seed != 0 and 0 in draws and seed in draws:
        raise ConfigError(f"MethodsConfig.draws holds both 0 (the study's demonstrations) and "
                          f"{seed}, which regenerates them with the same seed (demos.seed = "
                          f"{seed}): drop draw {seed} or change demos.seed")


def _cached(path: pathlib.Path, compute) -> dict[str, np.ndarray]:
    """The arrays saved at ``path`` (an ``.npz``), else ``compute()``'s, saved there.

    The file is written under a temporary name in the same folder and renamed into place,
    so a kill mid-write leaves no partial file; one that cannot be read (truncated by an
    older version) is recomputed.
    """
    if path.is_file():
        try:
            with np.load(path) as f:
                return dict(f)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            pass  # unreadable: recomputed and replaced below
    out = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **out)
    runs.write_bytes_atomic(path, buffer.getvalue())
    return out


def _texts(split) -> tuple[list[str], np.ndarray]:
    """Full texts (experts then bases) and their true rewards."""
    return (list(split["expert_text"]) + list(split["base_text"]),
            np.concatenate([np.asarray(split["expert_true_reward"]),
                            np.asarray(split["base_true_reward"])]))


def check_one_process() -> None:
    """ConfigError (one line) when this job runs several processes: the methods stage
    writes its caches, demonstrations and rewards from every process (not guarded to
    process 0), so it runs on one process only (its mesh may span that process's devices)."""
    import jax

    if jax.process_count() > 1:
        raise ConfigError(f"the methods stage (StudyConfig.methods, --preset methods) runs on "
                          f"one process, but this job has {jax.process_count()} "
                          f"(--num_processes): run it on one process (--num_devices/--mesh "
                          f"may span its devices) or drop it (--config.methods=none)")


def _train_method(spec: MethodSpec, reward_model_config, irl_config, data,
                  folder: pathlib.Path, progress: bool, save_models: bool, mesh=None):
    """(model, train pairs, IRL result, ``time.time()`` when training began) of one
    method's seeds, resumed from ``folder``; on ``mesh`` (None: one device)."""
    from jaxirl.irl.pairs import demo_pairs
    from jaxirl.irl.reward_model import init_reward_model
    from jaxirl.irl.train import train_irl

    model = init_reward_model(reward_model_config, seed=irl_config.seed)
    train = demo_pairs(model, data["train"], mesh=mesh)
    test = demo_pairs(model, data["test"], mesh=mesh)
    config = dataclasses.replace(irl_config, loss=spec.loss, learning_rate=spec.learning_rate,
                                 epochs=spec.epochs)
    start = time.time()
    result = train_irl(model, train, test, config, workdir=folder, resume=True,
                       progress=progress, save_models=save_models, mesh=mesh)
    return model, train, result, start


def irl_rewards(spec: MethodSpec, reward_model_config, irl_config, data, folder: pathlib.Path,
                progress: bool = False, mesh=None) -> dict[str, np.ndarray]:
    """Held-out and training rewards [S, 2P] of one IRL method (trained in ``folder`` on
    ``mesh``, the study's; None: one device)."""
    from jaxirl.irl.pairs import score_features

    def compute():
        model, train, result, start = _train_method(spec, reward_model_config, irl_config,
                                                    data, folder, progress,
                                                    save_models=spec.name == "discriminator",
                                                    mesh=mesh)
        f = train.features
        tr = np.concatenate([score_features(model, result.state.params, f[k], f[f"{k}_mask"],
                                            mesh=mesh)
                             for k in ("expert", "base")], axis=1)
        return {"test": result.test_rewards, "train": tr,
                "seconds": np.array(time.time() - start)}

    return _cached(folder / "rewards.npz", compute)


def irl_reward_models(spec: MethodSpec, reward_model_config, irl_config, data,
                      folder: pathlib.Path, progress: bool = False,
                      mesh=None) -> list[pathlib.Path]:
    """One saved reward model folder per seed of a method trained in ``folder``.

    The comparison keeps only the discriminator's models; another method's are written
    here from its last checkpoint (no epoch reruns: training resumes after the last one).
    """
    seeds = [irl_config.seed + s for s in range(irl_config.num_seeds)]
    paths = [folder / "reward_models" / f"seed_{s}" for s in seeds]
    if not all((p / "reward_model.json").is_file() for p in paths):
        _train_method(spec, reward_model_config, irl_config, data, folder, progress,
                      save_models=True, mesh=mesh)
    return paths


def log_ratio_for_draw(policy_path: str, base_path: str, data, beta: float,
                       folder: pathlib.Path, max_prompt_tokens: int,
                       splits: tuple[str, ...] = ("train", "test")) -> dict[str, np.ndarray]:
    """β·[log π_RLHF − log π_base] of every completion, [1, 2P] per split in ``splits``."""
    from jaxirl.models.hf_io import load_pretrained, load_tokenizer

    def compute():
        policy, base = load_pretrained(policy_path), load_pretrained(base_path)
        tokenizer = load_tokenizer(base_path)
        out = {}
        for split in splits:
            d = data[split]
            prompts = list(d["prompt"]) * 2
            completions = list(d["expert_response"]) + list(d["base_response"])
            out[split] = log_ratio_rewards(policy, base, tokenizer, prompts, completions, beta,
                                           max_prompt_tokens)[None]
        return out

    return _cached(folder / "log_ratio.npz", compute)


def other_source_texts(max_words: int = 40) -> list[str]:
    """OOD texts of another source: chatterbot's ``coding.yml`` turns, which the default
    corpus leaves out (code blocks), cut to their first ``max_words`` words."""
    from jaxirl.default.corpus import chatterbot_dir

    data = yaml.load((chatterbot_dir() / "coding.yml").read_text(encoding="utf-8"),
                     Loader=yaml.CSafeLoader)
    turns = [" ".join(str(t).split()[:max_words]) for conv in data["conversations"] for t in conv]
    return [" " + t for t in dict.fromkeys(turns) if t.strip()]


def _prompt_split(prompts: list[str], fraction: float, seed: int) -> np.ndarray:
    """Boolean [N]: the pairs whose prompt falls in a seeded ``fraction`` of distinct prompts."""
    unique = list(dict.fromkeys(prompts))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(len(unique))[: max(1, int(round(fraction * len(unique))))].tolist())
    index = {p: i for i, p in enumerate(unique)}
    return np.array([index[p] in held for p in prompts])


def bayes_for_draw(base_path: str, data, config: MethodsConfig, folder: pathlib.Path,
                   draw: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The Bayesian posterior of one draw: rewards, rounds, calibration, OOD, linear reward."""
    from jaxirl.models.hf_io import load_pretrained, load_tokenizer

    module, params = load_pretrained(base_path)
    tokenizer = load_tokenizer(base_path)

    def feats(texts):
        return completion_features(module, params, tokenizer, texts)

    tr, te = data["train"], data["test"]
    phi = _cached(folder / "features.npz", lambda: {
        "train": feats(list(tr["expert_response"]) + list(tr["base_response"])),
        "test": feats(list(te["expert_response"]) + list(te["base_response"]))})
    pt, ptest = len(tr), len(te)
    cal = _prompt_split(list(tr["prompt"]), config.calibration_fraction, draw)
    pool_texts = np.concatenate([~cal, ~cal])
    _, mean, std = zscore(phi["train"][pool_texts])
    z_train, z_test = zscore(phi["train"], mean, std)[0], zscore(phi["test"], mean, std)[0]
    x = z_train[:pt] - z_train[pt:]
    pool = np.flatnonzero(~cal)
    # Folds of whole prompts: a prompt's pairs stay in one round.
    prompt_ids = np.unique(np.asarray(tr["prompt"])[pool], return_inverse=True)[1]
    order = np.random.default_rng(draw).permutation(prompt_ids.max() + 1)
    fold_of = np.empty_like(order)
    fold_of[order] = np.arange(len(order)) % config.bayes.rounds
    folds = [x[pool[fold_of[prompt_ids] == k]] for k in range(config.bayes.rounds)]
    record: dict[str, Any] = {}
    posts = {}
    for method in ("laplace", "vi"):
        start = time.time()
        p, stats = sequential_posteriors(folds, dataclasses.replace(config.bayes, method=method))
        posts[method] = p[-1]
        record[method] = {"rounds": stats, "seconds": time.time() - start}
    post = posts[config.bayes.method]
    theta = np.asarray(post.mean, np.float64)
    true_tr, true_te = _texts(tr)[1], _texts(te)[1]
    r_train, r_test = z_train @ theta, z_test @ theta
    record["calibration"] = _calibration(post, x, z_test[:ptest] - z_test[ptest:], cal,
                                         r_train, r_test, true_tr, true_te, pt)
    record["ood"] = _ood(post, z_test, z_train[pool_texts], feats, mean, std,
                         list(te["expert_response"]) + list(te["base_response"]), config, draw)
    reward = LinearFeatureReward(base_path, theta, mean, std)
    save_linear_reward(folder / "posterior_mean", reward, extra={"draw": draw,
                                                                  "method": config.bayes.method})
    record["linear_reward"] = str(folder / "posterior_mean")
    return {"test": r_test[None], "train": r_train[None]}, record


def _calibration(post, x_train, x_test, cal, r_train, r_test, true_tr, true_te, pt):
    """Pairwise (soft targets σ(r★_e − r★_b)) and per-text (label r★ > 0) Platt calibration."""
    from jaxirl.irl.bayes import pairwise_probability

    def soft(true, p):
        return 1 / (1 + np.exp(-(true[:p] - true[p:])))

    p_cal = np.clip(pairwise_probability(x_train[cal], post), 1e-12, 1 - 1e-12)
    p_test = np.clip(pairwise_probability(x_test, post), 1e-12, 1 - 1e-12)
    logit_cal, logit_test = (np.log(p / (1 - p)) for p in (p_cal, p_test))
    a, b = platt_fit(logit_cal, soft(true_tr, pt)[cal])
    calibrated = platt_apply(logit_test, a, b)
    target = soft(true_te, len(x_test))
    # A diagnostic, not a calibration: the least ECE found for any Platt map on the test
    # pairs (searched from the calibration's own map too, so it is never above its ECE).
    floor = platt_ece_floor(logit_test, target, starts=((a, b),))
    cal_texts = np.concatenate([cal, cal])
    ta, tb = platt_fit(r_train[cal_texts], (true_tr[cal_texts] > 0).astype(float))
    text_p = platt_apply(r_test, ta, tb)
    labels = (true_te > 0).astype(float)
    conf, acc, count = reliability_bins(calibrated, target)
    tconf, tacc, tcount = reliability_bins(text_p, labels)
    return {"pairwise": {"platt": [a, b], "brier_raw": brier(p_test, target),
                         "ece_raw": expected_calibration_error(p_test, target),
                         "brier": brier(calibrated, target),
                         "ece": expected_calibration_error(calibrated, target),
                         "ece_platt_floor": floor[0],
                         "reliability": [conf.tolist(), acc.tolist(), count.tolist()]},
            "per_text": {"platt": [ta, tb], "brier": brier(text_p, labels),
                         "ece": expected_calibration_error(text_p, labels),
                         "reliability": [tconf.tolist(), tacc.tolist(), tcount.tolist()]},
            "calibration_pairs": int(cal.sum()), "test_pairs": len(x_test)}


def _ood(post, z_test, z_pool, feats, mean, std, test_texts, config: MethodsConfig, draw: int):
    """AUROC of Var[R] = φᵀΣφ for OOD texts against the held-out completions, and of the
    features' Mahalanobis distance from the training pool ``z_pool`` (no reward)."""
    from sklearn.metrics import roc_auc_score

    from jaxirl.irl.bayes import mahalanobis_distance, predictive_variance

    def auroc(score_in, score_out):
        labels = np.concatenate([np.zeros(len(score_in)), np.ones(len(score_out))])
        return float(roc_auc_score(labels, np.concatenate([score_in, score_out])))

    var_in, dist_in = predictive_variance(z_test, post), mahalanobis_distance(z_test, z_pool)
    rng = np.random.default_rng(1000 + draw)
    pick = rng.permutation(len(test_texts))[: max(1, int(config.marker_fraction * len(test_texts)))]
    marked = [f" {config.marker}{test_texts[i]} {config.marker}" for i in pick]
    other = other_source_texts()
    out = {}
    for name, texts in (("marker", marked), ("other_source", other)):
        z_out = zscore(feats(texts), mean, std)[0]
        var_out = predictive_variance(z_out, post)
        out[name] = {"auroc": auroc(var_in, var_out),
                     "mahalanobis_auroc": auroc(dist_in, mahalanobis_distance(z_out, z_pool)),
                     "num_texts": len(texts), "mean_var_ood": float(var_out.mean()),
                     "mean_var_in": float(var_in.mean())}
    return out


# ------------------------------------------------------------------ the comparison


def thresholds_from_training(train_rewards: np.ndarray, train_true: np.ndarray) -> np.ndarray:
    """Per-run accuracy threshold fitted on the training texts only, [S]."""
    return np.array([fit_threshold(r, train_true) for r in train_rewards])


def ensemble_rewards(rewards: np.ndarray) -> np.ndarray:
    """Seed ensemble as one run [1, N]: mean of z-scored seeds."""
    z = (rewards - rewards.mean(1, keepdims=True)) / rewards.std(1, keepdims=True)
    return z.mean(0, keepdims=True)


def compare(draws: list[dict], methods: list[str], references: tuple[str, ...],
            n_resamples: int) -> dict[str, Any]:
    """Per-draw seed means and paired differences against each reference method."""
    refs = [r for r in references if r in methods]
    return {"per_draw": [draw_summary(d, methods) for d in draws],
            "paired": paired_differences(draws, methods, refs, n_resamples)}


def ceiling_pearson(draws: list[dict]) -> list[float]:
    """Pearson of the RLHF reward's own scale (−P(toxic) = −σ(−r★)) with r★ on held-out texts:
    what a perfect recovery of the PPO reward would score against the log-odds ground truth."""
    out = []
    for d in draws:
        true = d["true"]
        out.append(float(np.corrcoef(-1 / (1 + np.exp(true)), true)[0, 1]))
    return out


def evaluation_extras(summary: dict, test_rewards: np.ndarray, demos_path: str,
                      expert_model: str, base_model: str, rlhf_folder: pathlib.Path,
                      max_prompt_tokens: int) -> dict[str, Any]:
    """The default study's cheap additions to ``evaluation.json``: EPIC/STARC distances of
    every seed [S, 2P] and of the ensemble, their coverage set, and the white-box log-ratio
    reward scored like the IRL seeds."""
    from jaxirl.irl.demos import load_demos
    from jaxirl.irl.distances import coverage_record, pair_distances
    from jaxirl.irl.ensemble import seed_spread
    from jaxirl.irl.evaluate import evaluate_pairs

    true = np.asarray(summary["true_rewards"])
    p = len(true) // 2
    rewards = np.asarray(test_rewards)
    per_seed = [pair_distances(r[:p], r[p:], true[:p], true[p:]) for r in rewards]
    out: dict[str, Any] = {
        "coverage": coverage_record(p),
        "distances": {"per_seed": per_seed,
                      "spread": {k: v._asdict() for k, v in seed_spread(per_seed).items()},
                      "epic_minus_starc_a_max": float(max(abs(d["epic"] - d["starc_a"])
                                                          for d in per_seed))}}
    if "ensemble_mean" in summary:
        ens = np.asarray(summary["ensemble_mean"])
        out["distances"]["ensemble"] = pair_distances(ens[:p], ens[p:], true[:p], true[p:])
    data = load_demos(demos_path)
    beta = final_kl_coef(rlhf_folder)
    # The IRL seeds' own threshold rule, so that the report's gaps compare like with like;
    # only "train_midpoint" reads the training split (4x larger than the held-out one).
    rule = summary.get("irl_threshold", 0.0)
    splits = ("train", "test") if rule == "train_midpoint" else ("test",)
    with _tempdir() as tmp:
        scored = log_ratio_for_draw(expert_model, base_model, data, beta, pathlib.Path(tmp),
                                    max_prompt_tokens, splits=splits)
    lr = scored["test"][0]
    metrics = evaluate_pairs(lr[:p], lr[p:], true[:p], true[p:],
                             threshold=log_ratio_threshold(rule, scored.get("train")))
    out["log_ratio"] = {"beta": beta, "threshold_rule": rule, "metrics": metrics.as_dict(),
                        "distances": pair_distances(lr[:p], lr[p:], true[:p], true[p:]),
                        "rewards": lr.tolist()}
    return out


def log_ratio_threshold(rule: float | str, train: np.ndarray | None) -> float | str:
    """The threshold argument of :func:`jaxirl.irl.evaluate.evaluate_pairs` for the
    log-ratio reward under the IRL run's rule (``IRLTrainConfig.threshold``): a number,
    "median" and "match_rate" pass through; "train_midpoint" is the midpoint of the mean
    expert and mean base reward of the training pairs, ``train`` [1, 2P] (experts first).
    """
    if rule != "train_midpoint":
        return rule
    if train is None:
        raise ConfigError("IRLTrainConfig.threshold 'train_midpoint' needs the log-ratio "
                          "rewards of the training split")
    train = np.asarray(train)[0]
    half = len(train) // 2
    return float(midpoint_threshold(train[:half], train[half:]))


def final_kl_coef(rlhf_folder: pathlib.Path) -> float:
    """β of the RLHF run's last iteration (the adaptive KL coefficient)."""
    lines = [json.loads(x) for x in (pathlib.Path(rlhf_folder) / "metrics.jsonl").read_text()
             .splitlines() if x]
    return float(lines[-1].get("kl_coef", 1.0)) if lines else 1.0


def _tempdir():
    import tempfile

    return tempfile.TemporaryDirectory()


def write_json(path: pathlib.Path, blob: dict) -> None:
    path.write_text(json.dumps(blob, indent=1, default=float) + "\n")


__all__ = ["DEFAULT_METHODS", "MethodSpec", "MethodsConfig", "bayes_for_draw", "ceiling_pearson",
           "check_draws", "check_one_process",
           "compare", "ensemble_rewards", "evaluation_extras", "final_kl_coef", "irl_reward_models",
           "irl_rewards", "log_ratio_for_draw", "log_ratio_threshold",
           "other_source_texts", "thresholds_from_training"]
