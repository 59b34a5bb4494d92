"""Linear probes from (pooled) features to rewards, and their held-out scores.

As in the paper's notebooks (``train_linear_probe``, ``train_logistic_regression``):
a ridge regression predicts a scalar reward and a logistic regression separates
preferred from rejected texts. Both standardise their inputs first (SAE codes and
raw activations live on very different scales) and ridge picks its penalty by
efficient leave-one-out cross-validation (``RidgeCV``), so one call serves SAE codes
and the raw-activation baseline alike.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from jaxirl.errors import ConfigError, DataError

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))


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
      ridge: fitted reward regressor (``predict(X) -> [N]``).
      ridge_train / ridge_test: :class:`RegressionMetrics`.
      logistic: fitted preferred-vs-rejected classifier, or None without labels.
      logistic_train / logistic_test: :class:`ClassificationMetrics` or None.
      num_features: input width.
    """

    ridge: Pipeline
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
    x, y = _check_xy(x, y, "ridge probe")
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)).fit(x, y.astype(np.float64))


def fit_logistic_probe(x: np.ndarray, labels: np.ndarray, c: float = 1.0,
                       seed: int = 0) -> Pipeline:
    """Standardise + L2 logistic regression of labels [N] (1 = preferred) on x [N, D]."""
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
) -> ProbeEvaluation:
    """Fits the ridge (and, given labels, logistic) probe on train rows, scores both splits.

    Args:
      x_train / x_test: features [N, D] / [M, D] (e.g. mean-pooled SAE codes).
      y_train / y_test: rewards [N] / [M] (higher = better).
      labels_train / labels_test: optional 0/1 [N] / [M], 1 = preferred.
    """
    ridge = fit_ridge_probe(x_train, y_train, alphas)
    x_test, y_test = _check_xy(x_test, y_test, "probe test set")
    logistic = ltrain = ltest = None
    if labels_train is not None:
        if labels_test is None:
            raise DataError("logistic probe: labels_train given without labels_test")
        logistic = fit_logistic_probe(x_train, labels_train, c)
        ltrain = classification_metrics(logistic.predict_proba(x_train)[:, 1], labels_train)
        ltest = classification_metrics(logistic.predict_proba(x_test)[:, 1], labels_test)
    return ProbeEvaluation(
        ridge=ridge,
        ridge_train=regression_metrics(ridge.predict(np.asarray(x_train, np.float64)), y_train),
        ridge_test=regression_metrics(ridge.predict(x_test), y_test),
        logistic=logistic, logistic_train=ltrain, logistic_test=ltest,
        num_features=int(np.asarray(x_train).shape[1]))
