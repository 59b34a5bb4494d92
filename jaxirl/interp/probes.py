"""Linear probes from (pooled) features to rewards, and their held-out scores.

As in the paper's notebooks (``train_linear_probe``, ``train_logistic_regression``):
a ridge regression predicts a scalar reward and a logistic regression separates
preferred from rejected texts. Both standardise their inputs first (SAE codes and
raw activations live on very different scales) and ridge picks its penalty by
efficient leave-one-out cross-validation (``RidgeCV``), so one call serves SAE codes
and the raw-activation baseline alike.

The ridge probe may be fit to a monotone transform of the reward instead of the reward
itself (:func:`fit_target_transform`). Toxicity log-odds are heavy-tailed (clean texts
sit at +3..+5, toxic ones reach -27), so least squares on them is ruled by a few
extreme texts, while the IRM is judged by how it *ranks* texts. ``"rank_gauss"`` maps
each reward to the normal quantile of its mid-rank among the training rewards; the
probe's output is then a reward in those units, monotone in the original one, and
every rank statistic (Spearman, Kendall, agreement) reads the same in either scale.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from jaxirl.errors import ConfigError, DataError

# SciPy and scikit-learn are imported where they are used: the launchers read
# TARGET_TRANSFORMS at start-up, and importing both costs about 2 s.
if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
TARGET_TRANSFORMS = ("none", "rank_gauss")


@dataclasses.dataclass(frozen=True, eq=False)
class TargetTransform:
    """A fitted non-decreasing map from rewards to the ridge probe's target scale.

    Attributes:
      kind: one of :data:`TARGET_TRANSFORMS`.
      knots: sorted distinct training rewards [K] (None for ``"none"``).
      values: their images [K], strictly increasing; rewards between knots are
        interpolated linearly, rewards outside ``[knots[0], knots[-1]]`` clamp to the ends.
    """

    kind: str
    knots: np.ndarray | None = None
    values: np.ndarray | None = None

    def __call__(self, rewards: np.ndarray) -> np.ndarray:
        """Rewards [N] -> targets float64 [N] in the probe's scale."""
        rewards = np.asarray(rewards, np.float64)
        if self.knots is None:
            return rewards
        return np.interp(rewards, self.knots, self.values)


def fit_target_transform(rewards: np.ndarray, kind: str = "none") -> TargetTransform:
    """Fits the transform ``kind`` on training rewards [N].

    ``"rank_gauss"``: a reward with average rank r (1-based, ties averaged) among the N
    training rewards maps to ``Phi^-1(r / (N + 1))`` (van der Waerden scores), so the
    images lie within about +-3.2 for N = 1000 whatever the rewards' tails.
    """
    if kind not in TARGET_TRANSFORMS:
        raise ConfigError(f"target transform '{kind}' is not one of "
                          f"{', '.join(TARGET_TRANSFORMS)}")
    rewards = np.asarray(rewards, np.float64)
    if rewards.ndim != 1 or rewards.shape[0] < 2 or not np.all(np.isfinite(rewards)):
        raise DataError(f"target transform needs >= 2 finite rewards [N], got shape "
                        f"{rewards.shape}")
    if kind == "none":
        return TargetTransform(kind)
    import scipy.stats

    ranks = scipy.stats.rankdata(rewards, method="average")
    knots, first = np.unique(rewards, return_index=True)
    values = scipy.stats.norm.ppf(ranks[first] / (rewards.shape[0] + 1))
    return TargetTransform(kind, knots, values)


@dataclasses.dataclass(frozen=True)
class RegressionMetrics:
    """Agreement of predicted with true rewards: rank and linear correlations, R^2, RMSE."""

    kendall: float
    spearman: float
    pearson: float
    r2: float
    rmse: float
    n: int


@dataclasses.dataclass(frozen=True)
class ClassificationMetrics:
    """Accuracy (threshold 0.5 on P(preferred)) and ROC AUC; AUC is NaN with one class."""

    accuracy: float
    roc_auc: float
    n: int


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeEvaluation:
    """Probes fit on one feature set, scored on held-out texts.

    Attributes:
      ridge: fitted reward regressor (``predict(X) -> [N]``, in ``target``'s scale).
      target: the :class:`TargetTransform` the ridge was fit to (fitted on train rewards).
      ridge_train / ridge_test: :class:`RegressionMetrics` against the transformed
        rewards (the probe's own units; rank statistics equal those on raw rewards).
      logistic: fitted preferred-vs-rejected classifier, or None without labels.
      logistic_train / logistic_test: :class:`ClassificationMetrics` or None.
      num_features: input width.
    """

    ridge: Pipeline
    target: TargetTransform
    ridge_train: RegressionMetrics
    ridge_test: RegressionMetrics
    logistic: Pipeline | None
    logistic_train: ClassificationMetrics | None
    logistic_test: ClassificationMetrics | None
    num_features: int

    def summary(self) -> dict[str, float]:
        """Flat dict of the held-out numbers, for logs and JSON."""
        out = {f"ridge_{k}": v for k, v in dataclasses.asdict(self.ridge_test).items()}
        if self.logistic_test is not None:
            out.update({f"logistic_{k}": v
                        for k, v in dataclasses.asdict(self.logistic_test).items()})
        out["num_features"] = self.num_features
        # The penalty leave-one-out picked: at an end of DEFAULT_ALPHAS, the grid was short.
        out["ridge_alpha"] = float(self.ridge[-1].alpha_)
        return out


def _check_xy(x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{what}: features must be [N, D] and targets [N], got {x.shape} and "
                        f"{y.shape}")
    if x.shape[0] < 2:
        raise DataError(f"{what}: need at least 2 examples, got {x.shape[0]}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y.astype(np.float64)))):
        raise DataError(f"{what}: features or targets contain NaN or inf")
    return x, y


def fit_ridge_probe(x: np.ndarray, y: np.ndarray,
                    alphas: tuple[float, ...] = DEFAULT_ALPHAS) -> Pipeline:
    """Standardise + ridge regression of y [N] on x [N, D], penalty by leave-one-out CV."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _check_xy(x, y, "ridge probe")
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)).fit(x, y.astype(np.float64))


def fit_logistic_probe(x: np.ndarray, labels: np.ndarray, c: float = 1.0,
                       seed: int = 0) -> Pipeline:
    """Standardise + L2 logistic regression of labels [N] (1 = preferred) on x [N, D]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, labels = _check_xy(x, labels, "logistic probe")
    labels = labels.astype(int)
    if set(np.unique(labels)) != {0, 1}:
        raise DataError(f"logistic probe needs both classes 0 and 1 in its training labels, "
                        f"got {sorted(set(np.unique(labels)))}")
    if c <= 0:
        raise ConfigError(f"logistic probe C must be positive, got {c}")
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    return make_pipeline(StandardScaler(), clf).fit(x, labels)


def _corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    if a.shape[0] < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # undefined for a constant input
    return float(fn(a, b)[0])


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> RegressionMetrics:
    """Kendall tau-b, Spearman, Pearson, R^2 and RMSE of pred [N] against true [N]."""
    import scipy.stats

    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.ndim != 1:
        raise DataError(f"predictions {pred.shape} and targets {true.shape} must both be [N]")
    sst = float(np.sum(np.square(true - true.mean())))
    sse = float(np.sum(np.square(pred - true)))
    return RegressionMetrics(
        kendall=_corr(scipy.stats.kendalltau, pred, true),
        spearman=_corr(scipy.stats.spearmanr, pred, true),
        pearson=_corr(scipy.stats.pearsonr, pred, true),
        r2=1.0 - sse / sst if sst > 0 else float("nan"),
        rmse=float(np.sqrt(sse / max(len(true), 1))), n=int(len(true)))


def classification_metrics(prob: np.ndarray, labels: np.ndarray) -> ClassificationMetrics:
    """Accuracy at 0.5 and ROC AUC of P(label = 1) [N] against 0/1 labels [N]."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    prob, labels = np.asarray(prob, np.float64), np.asarray(labels).astype(int)
    if prob.shape != labels.shape or prob.ndim != 1:
        raise DataError(f"probabilities {prob.shape} and labels {labels.shape} must both be [N]")
    auc = float(roc_auc_score(labels, prob)) if len(np.unique(labels)) == 2 else float("nan")
    return ClassificationMetrics(accuracy=float(accuracy_score(labels, prob >= 0.5)),
                                 roc_auc=auc, n=int(len(labels)))


def evaluate_probes(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
    labels_train: np.ndarray | None = None, labels_test: np.ndarray | None = None,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS, c: float = 1.0,
    target_transform: str = "none",
) -> ProbeEvaluation:
    """Fits the ridge (and, given labels, logistic) probe on train rows, scores both splits.

    Args:
      x_train / x_test: features [N, D] / [M, D] (e.g. mean-pooled SAE codes).
      y_train / y_test: rewards [N] / [M] (higher = better).
      labels_train / labels_test: optional 0/1 [N] / [M], 1 = preferred.
      alphas: ridge penalties, chosen by leave-one-out CV on the train rows only.
      c: inverse L2 strength of the logistic probe.
      target_transform: what the ridge is fit to (:func:`fit_target_transform`, fitted
        on ``y_train`` only); the test rewards pass through the same fitted map.
    """
    x_train, y_train = _check_xy(x_train, y_train, "ridge probe")
    target = fit_target_transform(y_train, target_transform)
    y_train = target(y_train)
    ridge = fit_ridge_probe(x_train, y_train, alphas)
    x_test, y_test = _check_xy(x_test, y_test, "probe test set")
    y_test = target(y_test)
    logistic = ltrain = ltest = None
    if labels_train is not None:
        if labels_test is None:
            raise DataError("logistic probe: labels_train given without labels_test")
        logistic = fit_logistic_probe(x_train, labels_train, c)
        ltrain = classification_metrics(logistic.predict_proba(x_train)[:, 1], labels_train)
        ltest = classification_metrics(logistic.predict_proba(x_test)[:, 1], labels_test)
    return ProbeEvaluation(
        ridge=ridge, target=target,
        ridge_train=regression_metrics(ridge.predict(np.asarray(x_train, np.float64)), y_train),
        ridge_test=regression_metrics(ridge.predict(x_test), y_test),
        logistic=logistic, logistic_train=ltrain, logistic_test=ltest,
        num_features=int(np.asarray(x_train).shape[1]))
