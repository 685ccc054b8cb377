"""Fit and measure a calibration map: raw confidence -> P(the task's answer agrees with ground truth).

:func:`confidence_sample` pairs each ground-truth task's raw confidence with whether the version's
prediction was right (every control's agreement at least ``min_score``, default 1: exactly the
ground truth); :func:`calibrate` fits the map and measures it:

* **map**: isotonic regression (scikit-learn, monotone, no shape assumed) from
  :data:`MIN_ISOTONIC` tasks on; a logistic (Platt) curve on logit(confidence) from :data:`MIN_FIT`;
  below that, or when every task is right (or every one wrong), the identity, with a warning;
* **AUROC** of the raw confidence for correctness (0.5 = no better than chance);
* **ECE** (expected calibration error, 10 equal-width bins) and **Brier score**, before (raw) and after
  calibration; "after" is measured on held-out folds (5-fold cross-validation: each task's calibrated
  value comes from a map fitted without it), so it is not flattered by fitting;
* the **reliability diagram** (per bin: mean confidence, share right, tasks) before and after, and the
  **coverage-accuracy curve** (accepting the most confident x% of tasks: their accuracy).

>>> conf = [0.9, 0.8, 0.3, 0.2]; right = [1, 1, 0, 1]
>>> round(expected_calibration_error(conf, right), 3), round(auroc(conf, right), 3)
(0.35, 0.667)
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from backend.calibration import CalibrationMap
from backend.confidence import task_confidence
from scoring.engine import GROUND_TRUTH, evaluate
from scoring.export import prediction_of

MIN_ISOTONIC = 50   # ground-truth tasks from which the isotonic map is fitted
MIN_FIT = 20        # below this: the identity map, with a warning
BINS = 10
FOLDS = 5


def confidence_sample(tasks: list[dict], label_config: str, version: str, raw: dict | None = None,
                      min_score: float = 1.0) -> tuple[list, np.ndarray, np.ndarray]:
    """(task ids, raw confidence, right 0/1) over the ground-truth tasks with a scored prediction of ``version``.

    ``raw`` maps task id -> raw task confidence (from the usage ledger, before calibration); a task
    missing there uses its prediction's ``score``.  Tasks without either are left out.
    """
    report = evaluate(tasks, label_config, version, GROUND_TRUTH)
    by_id = {t.get("id"): t for t in tasks}
    ids, conf, right = [], [], []
    for row in report["tasks"]:
        value = (raw or {}).get(row["id"])
        if value is None:
            pred = prediction_of(by_id.get(row["id"]) or {}, version) or {}
            value = pred.get("score")
        if value is None:
            continue
        ids.append(row["id"])
        conf.append(float(value))
        right.append(float(all(s >= min_score - 1e-9 for s in row["per_control"].values())))
    return ids, np.asarray(conf, float), np.asarray(right, float)


def raw_from_ledger(records: list) -> dict:
    """task id -> raw task confidence of its latest ``ok`` record that has one (ledger ``confidence``)."""
    out: dict = {}
    for rec in records:
        if rec.status == "ok" and rec.confidence:
            out[rec.task_id] = task_confidence(rec.confidence)
    return out


# ----------------------------------------------------------------------------------- metrics
def auroc(conf: ArrayLike, right: ArrayLike) -> float | None:
    """Area under the ROC curve of ``conf`` for ``right`` (None when all are right or all wrong)."""
    from sklearn.metrics import roc_auc_score

    r = np.asarray(right)
    if r.min(initial=1) == r.max(initial=0):
        return None
    return float(roc_auc_score(r, conf))


def reliability(conf: ArrayLike, right: ArrayLike, bins: int = BINS) -> list[dict]:
    """Per non-empty equal-width bin: ``{"lo", "hi", "confidence", "accuracy", "n"}``."""
    c, r = np.asarray(conf, float), np.asarray(right, float)
    idx = np.minimum((c * bins).astype(int), bins - 1)
    return [{"lo": b / bins, "hi": (b + 1) / bins, "confidence": float(c[idx == b].mean()),
             "accuracy": float(r[idx == b].mean()), "n": int((idx == b).sum())}
            for b in range(bins) if (idx == b).any()]


def expected_calibration_error(conf: ArrayLike, right: ArrayLike, bins: int = BINS) -> float:
    """Sum over bins of (share of tasks) x |mean confidence - accuracy|."""
    n = np.size(conf)
    return float(sum(b["n"] / n * abs(b["confidence"] - b["accuracy"]) for b in reliability(conf, right, bins)))


def brier(conf: ArrayLike, right: ArrayLike) -> float:
    return float(np.mean((np.asarray(conf, float) - np.asarray(right, float)) ** 2))


def coverage_accuracy(conf: ArrayLike, right: ArrayLike, points: int = 20) -> list[dict]:
    """Accepting the most confident tasks: ``{"coverage", "accuracy", "threshold"}`` at ~``points`` coverages."""
    order = np.argsort(-np.asarray(conf, float), kind="stable")
    c, r = np.asarray(conf, float)[order], np.asarray(right, float)[order]
    n, out = len(c), []
    for k in sorted({max(1, round(n * (i + 1) / points)) for i in range(points)}):
        out.append({"coverage": k / n, "accuracy": float(r[:k].mean()), "threshold": float(c[k - 1])})
    return out


# ----------------------------------------------------------------------------------- fitting
def fit_map(conf: np.ndarray, right: np.ndarray) -> tuple[CalibrationMap, str | None]:
    """The map for these tasks and a warning (None when the fit is the intended one)."""
    n = len(conf)
    if n < MIN_FIT or right.min(initial=1) == right.max(initial=0):
        why = f"only {n} ground-truth tasks (at least {MIN_FIT} needed)" if n < MIN_FIT else \
            "every ground-truth task is " + ("right" if n and right[0] else "wrong")
        return CalibrationMap([], [], "identity", n), f"{why}: the identity map is kept (raw confidence)"
    if n < MIN_ISOTONIC:
        return _logistic(conf, right), f"{n} ground-truth tasks: a logistic (Platt) map; isotonic from {MIN_ISOTONIC}"
    return _isotonic(conf, right), None


def _isotonic(conf: np.ndarray, right: np.ndarray) -> CalibrationMap:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf, right)
    return CalibrationMap([float(x) for x in iso.X_thresholds_], [float(y) for y in iso.y_thresholds_],
                          "isotonic", len(conf))


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 1e-6, 1 - 1e-6)
    return np.log(x / (1 - x))


def _logistic(conf: np.ndarray, right: np.ndarray) -> CalibrationMap:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6).fit(_logit(conf).reshape(-1, 1), right.astype(int))
    grid = np.linspace(0.0, 1.0, 101)
    ys = model.predict_proba(_logit(grid).reshape(-1, 1))[:, 1]
    return CalibrationMap([float(x) for x in grid], [float(y) for y in ys], "logistic", len(conf))


def held_out(conf: np.ndarray, right: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Each task's calibrated confidence from a map fitted on the other folds."""
    from sklearn.model_selection import KFold

    out = np.empty_like(conf)
    for train, test in KFold(n_splits=min(folds, len(conf)), shuffle=True, random_state=seed).split(conf):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmap, _ = fit_map(conf[train], right[train])
        out[test] = [cmap(x) for x in conf[test]]
    return out


def calibrate(conf: np.ndarray, right: np.ndarray) -> tuple[CalibrationMap, dict]:
    """The map fitted on every task and the report (the module doc says what it holds)."""
    cmap, warning = fit_map(conf, right)
    after = held_out(conf, right) if len(conf) >= 2 * FOLDS and cmap.method != "identity" else conf
    report: dict[str, Any] = {
        "n": int(len(conf)), "accuracy": float(right.mean()) if len(right) else None, "method": cmap.method,
        "warning": warning, "auroc": auroc(conf, right),
        "ece_before": expected_calibration_error(conf, right) if len(conf) else None,
        "ece_after": expected_calibration_error(after, right) if len(conf) else None,
        "brier_before": brier(conf, right) if len(conf) else None,
        "brier_after": brier(after, right) if len(conf) else None,
        "reliability_before": reliability(conf, right) if len(conf) else [],
        "reliability_after": reliability(after, right) if len(conf) else [],
        "coverage_accuracy": coverage_accuracy(conf, right) if len(conf) else [],
    }
    cmap.report = {k: v for k, v in report.items() if not isinstance(v, list)}
    return cmap, report


def fmt(value: Any) -> str:
    """A figure for the one-line summary: 3 decimals, or "n/a"."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
