"""Scores of classifiers and detectors: the area under the ROC curve (Chapters 8 and 10) and
the generalised zero-shot scores (Chapter 6), each a pure function on NumPy arrays or tensors.
"""

from __future__ import annotations

import math

import numpy as np

from coursekit.utils import to_numpy

__all__ = ["auroc", "harmonic_mean", "gzsl_scores"]


def _as_numpy(values, name: str) -> np.ndarray:
    arr = to_numpy(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def auroc(scores, is_positive) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2 (the
    anomalies of Chapter 8, the training members of Chapter 10's membership attack).

    Computed from ranks (the Mann-Whitney U statistic), so it equals
    ``sklearn.metrics.roc_auc_score(is_anomaly, scores)``.

    Args:
        scores: ``(N,)`` real numbers, higher = more likely positive.
        is_positive: ``(N,)`` booleans (or 0/1), with both values present.

    Example:
        >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    from scipy.stats import rankdata

    s = _as_numpy(scores, "scores").astype(np.float64)
    y = _as_numpy(is_positive, "is_positive")
    if len(s) != len(y):
        raise ValueError(f"scores has {len(s)} entries but is_positive has {len(y)}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores has {int((~np.isfinite(s)).sum())} non-finite values")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"is_positive must hold booleans or 0/1, got values {np.unique(y)[:5]}")
    y = y.astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both positives and negatives, got {n_pos} and {n_neg}")
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def harmonic_mean(seen: float, unseen: float) -> float:
    """``H = 2 s u / (s + u)``, 0 when both are 0.

    Example:
        >>> harmonic_mean(0.9, 0.0), round(harmonic_mean(0.9, 0.5), 4)
        (0.0, 0.6429)
    """
    for name, v in (("seen", seen), ("unseen", unseen)):
        if not 0.0 <= v <= 1.0 or math.isnan(v):
            raise ValueError(f"{name} accuracy must lie in [0, 1], got {v}")
    return 0.0 if seen + unseen == 0 else 2.0 * seen * unseen / (seen + unseen)


def _per_class_accuracy(pred: np.ndarray, true: np.ndarray, classes) -> float:
    accs = [float((pred[true == c] == c).mean()) for c in classes if (true == c).any()]
    if not accs:
        raise ValueError(f"no test example of any of the classes {list(classes)}")
    return float(np.mean(accs))


def gzsl_scores(pred, true, unseen) -> dict[str, float]:
    """Generalised zero-shot scores of predictions among all classes.

    Returns:
        ``{"seen", "unseen", "h"}``: the per-class mean accuracy over test images of seen classes,
        over those of unseen classes, and their harmonic mean.

    Raises:
        ValueError: ``pred`` and ``true`` differ in length, or a group has no test image.

    Example:
        >>> gzsl_scores([0, 1, 2, 0], [0, 1, 2, 2], unseen=[2])
        {'seen': 1.0, 'unseen': 0.5, 'h': 0.6666666666666666}
    """
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same length, got {pred.shape} and "
                         f"{true.shape}")
    unseen = sorted(set(int(c) for c in unseen))
    seen = sorted(set(true.tolist()) - set(unseen))
    s = _per_class_accuracy(pred, true, seen)
    u = _per_class_accuracy(pred, true, unseen)
    return {"seen": s, "unseen": u, "h": harmonic_mean(s, u)}
