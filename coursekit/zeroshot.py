"""Zero-shot learning on the digits with seven-segment attributes: direct attribute prediction
(DAP) against a generative approach, scored the way generalised zero-shot learning is (Chapter 6).

Zero-shot: some classes have *no* training image; each class, seen or not, is described by side
information, here which of the seven segments of a calculator display it lights::

     aaa
    f   b
     ggg
    e   c
     ddd

* DAP (Lampert, Nickisch and Harmeling 2009): one probabilistic classifier per attribute, trained
  on the seen classes; a test image goes to the class whose attribute code is most probable,
  ``argmax_c sum_m log p(a_m = a_m^c | x)``.
* The generative approach (in the spirit of feature-generating zero-shot methods, e.g. Xian et al.
  2018, Mishra et al. 2018): a VAE conditioned on the attribute code learns ``p(x | z, a)`` from
  the seen classes; images of the unseen classes are then *synthesised* from their codes, and an
  ordinary classifier is trained on real seen images plus synthetic unseen ones.

Generalised zero-shot evaluation (Xian et al. 2018) predicts among *all* classes and reports the
per-class mean accuracy on seen-class and on unseen-class test images and their harmonic mean
``H = 2 s u / (s + u)``, which is high only when both are.

The attribute VAE (``AttributeVAE``) lives in ``coursekit.models.attribute_vae`` with the other
models ``fit`` trains; it is re-exported here.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from coursekit.metrics.classification import gzsl_scores, harmonic_mean
from coursekit.models.attribute_vae import AttributeVAE, AttributeVAEConfig

__all__ = ["SEGMENTS", "SEVEN_SEGMENT", "unseen_splits", "harmonic_mean", "gzsl_scores",
           "dap_scores", "dap_predict", "stacking_gamma", "calibrated_stacking",
           "AttributeVAEConfig", "AttributeVAE"]

SEGMENTS = ("a", "b", "c", "d", "e", "f", "g")  # top, upper right, lower right, bottom,
#                                                  lower left, upper left, middle
# Row c: which segments digit c lights on a seven-segment display (7 with three segments, 9 with
# the bottom segment, the common calculator forms). All ten codes differ.
SEVEN_SEGMENT = np.array([
    [1, 1, 1, 1, 1, 1, 0],  # 0
    [0, 1, 1, 0, 0, 0, 0],  # 1
    [1, 1, 0, 1, 1, 0, 1],  # 2
    [1, 1, 1, 1, 0, 0, 1],  # 3
    [0, 1, 1, 0, 0, 1, 1],  # 4
    [1, 0, 1, 1, 0, 1, 1],  # 5
    [1, 0, 1, 1, 1, 1, 1],  # 6
    [1, 1, 1, 0, 0, 0, 0],  # 7
    [1, 1, 1, 1, 1, 1, 1],  # 8
    [1, 1, 1, 1, 0, 1, 1],  # 9
], dtype=np.int64)


def unseen_splits(num_classes: int = 10, num_unseen: int = 3) -> list[tuple[int, ...]]:
    """Every choice of ``num_unseen`` unseen classes, in lexicographic order (10 choose 3 = 120).

    Example:
        >>> len(unseen_splits()), unseen_splits()[0]
        (120, (0, 1, 2))
    """
    if not 0 < num_unseen < num_classes:
        raise ValueError(f"need 0 < num_unseen < num_classes, got {num_unseen} and {num_classes}")
    return list(itertools.combinations(range(num_classes), num_unseen))


def _check_zsl(labels: np.ndarray, unseen, attributes: np.ndarray) -> None:
    k = len(attributes)
    bad = [c for c in unseen if not 0 <= c < k]
    if bad:
        raise ValueError(f"unseen classes must lie in 0..{k - 1}, got {bad}")
    leaked = sorted(set(labels.tolist()) & set(unseen))
    if leaked:
        raise ValueError(f"the training labels contain unseen class(es) {leaked}: zero-shot "
                         f"training sees only the seen classes")


def dap_scores(train_x, train_labels, test_x, unseen, attributes=SEVEN_SEGMENT,
               C: float = 1.0, priors: bool = True) -> np.ndarray:
    """Direct attribute prediction (Lampert et al. 2009): the log score of every class, ``(M, K)``.

    One logistic regression per attribute on the seen classes' images. Lampert et al.'s rule is
    ``p(c | x) ∝ prod_m p(a_m^c | x) / p(a_m^c)``: each attribute posterior is divided by the
    attribute's prior, estimated here as its frequency over the training images (clipped to
    ``[0.01, 0.99]``). Without the division (``priors=False``) a class whose code agrees with
    the common values of the seen classes is favoured. An attribute that is constant over the
    seen classes cannot be learned; its probability is that constant, softened to ``0.99``.

    Args:
        train_x: ``(N, D)`` features of seen-class images. train_labels: ``(N,)`` their classes.
        test_x: ``(M, D)``. unseen: the classes without training images.
        attributes: ``(K, A)`` binary codes, one row per class.
        priors: divide by the attribute priors (Lampert et al.), or not.
    """
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    train_labels = np.asarray(train_labels)
    if len(train_x) != len(train_labels):
        raise ValueError(f"train_x has {len(train_x)} rows but train_labels {len(train_labels)}")
    _check_zsl(train_labels, unseen, attributes)
    targets = attributes[train_labels]                                    # (N, A)
    log_p1 = np.empty((len(test_x), attributes.shape[1]))                 # (M, A)
    for m in range(attributes.shape[1]):
        if len(np.unique(targets[:, m])) == 1:
            p = 0.99 if targets[0, m] == 1 else 0.01
            log_p1[:, m] = math.log(p)
            continue
        clf = LogisticRegression(C=C, max_iter=2000).fit(train_x, targets[:, m])
        log_p1[:, m] = clf.predict_log_proba(test_x)[:, 1]
    p1 = np.clip(np.exp(log_p1), 1e-6, 1 - 1e-6)
    scores = np.log(p1) @ attributes.T + np.log1p(-p1) @ (1 - attributes).T  # (M, K)
    if priors:
        prior1 = np.clip(targets.mean(0), 0.01, 0.99)                     # (A,) p(a_m = 1)
        scores = scores - (np.log(prior1) @ attributes.T + np.log1p(-prior1) @ (1 - attributes).T)
    return scores


def dap_predict(train_x, train_labels, test_x, unseen, attributes=SEVEN_SEGMENT,
                C: float = 1.0, priors: bool = True) -> np.ndarray:
    """The class of highest DAP score (``dap_scores``) for every test row, ``(M,)``."""
    return dap_scores(train_x, train_labels, test_x, unseen, attributes, C, priors).argmax(1)


def stacking_gamma(scores, unseen, unseen_share: float) -> float:
    """The calibration constant of calibrated stacking (Chao et al. 2016), chosen without labels.

    Subtracting ``gamma`` from every seen class's score moves predictions to unseen classes;
    ``gamma`` is the smallest value for which a share ``unseen_share`` of the rows of ``scores``
    (unlabelled images, e.g. the validation split) is predicted unseen: the
    ``unseen_share``-quantile of (best seen score - best unseen score).

    Example:
        >>> s = np.array([[2.0, 0.0], [1.0, 0.5], [3.0, 0.0], [0.0, 1.0]])
        >>> stacking_gamma(s, unseen=[1], unseen_share=0.5)
        1.25
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (M, K), got shape {scores.shape}")
    if not 0.0 < unseen_share < 1.0:
        raise ValueError(f"unseen_share must lie in (0, 1), got {unseen_share}")
    is_unseen = np.isin(np.arange(scores.shape[1]), list(unseen))
    if is_unseen.all() or not is_unseen.any():
        raise ValueError(f"unseen must name some but not all of the {scores.shape[1]} classes")
    margin = scores[:, ~is_unseen].max(1) - scores[:, is_unseen].max(1)   # (M,)
    return float(np.quantile(margin, unseen_share))


def calibrated_stacking(scores, unseen, gamma: float) -> np.ndarray:
    """Predictions after subtracting ``gamma`` from the seen classes' scores, ``(M,)``."""
    scores = np.asarray(scores, np.float64)
    is_unseen = np.isin(np.arange(scores.shape[1]), list(unseen))
    return (scores - gamma * ~is_unseen).argmax(1)
