"""Membership inference by a loss threshold (Yeom et al. 2018), and near-copy rates (Chapter 10).

An attacker who can compute the model's loss on an example guesses "it was in the training set"
when the loss is below a threshold. Sweeping the threshold gives an ROC curve; its area (AUROC) is
0.5 when the model treats its training examples like any others, and approaches 1 when it has
memorised them. The attack needs nothing but the losses, so it is the baseline every stronger
attack (shadow models, Shokri et al. 2017; calibrated likelihood ratios, Carlini et al. 2022)
is measured against.
"""

from __future__ import annotations

import numpy as np

__all__ = ["loss_threshold_auroc", "tpr_at_fpr", "best_threshold_accuracy", "copy_fraction"]


def _losses(name: str, values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of losses, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds {int((~np.isfinite(a)).sum())} NaN or infinite losses")
    return a


def loss_threshold_auroc(member_losses, nonmember_losses) -> float:
    """AUROC of the attack "member when the loss is low": the probability that a random member has
    a lower loss than a random non-member, ties counting one half (scikit-learn's
    ``roc_auc_score`` with the negated loss as the score; ``coursekit.metrics.auroc``).

    Example:
        >>> loss_threshold_auroc([0.1, 0.2], [0.3, 0.4]), loss_threshold_auroc([1, 2], [1, 2])
        (1.0, 0.5)
    """
    from coursekit.metrics.classification import auroc

    members = _losses("member_losses", member_losses)
    others = _losses("nonmember_losses", nonmember_losses)
    labels = np.r_[np.ones(members.size), np.zeros(others.size)]
    return auroc(-np.r_[members, others], labels)


def tpr_at_fpr(member_losses, nonmember_losses, fpr: float) -> float:
    """The attack's true-positive rate when at most a share ``fpr`` of non-members is flagged:
    the threshold is the largest loss that flags at most ``floor(fpr * n)`` non-members (ties
    flag together). The low-FPR end of the ROC curve is what matters for privacy: an attack
    that picks out a few members with confidence does harm that AUROC averages away (Carlini
    et al. 2022). With ``n`` non-members, ``fpr`` below ``1 / n`` can only give a TPR of what
    the threshold below every non-member catches.

    Example:
        >>> members, others = [0.1, 0.2, 0.5, 0.9], [0.3, 0.6, 0.7, 0.8]
        >>> tpr_at_fpr(members, others, 0.25), tpr_at_fpr(members, others, 0.0)
        (0.75, 0.5)
    """
    members = _losses("member_losses", member_losses)
    others = np.sort(_losses("nonmember_losses", nonmember_losses))
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must lie in [0, 1), got {fpr}")
    allowed = int(np.floor(fpr * others.size + 1e-9))    # non-members we may flag
    # flag "loss < threshold": the threshold is the (allowed + 1)-th smallest non-member loss
    threshold = others[allowed]
    return float((members < threshold).mean())


def best_threshold_accuracy(member_losses, nonmember_losses) -> tuple[float, float]:
    """``(accuracy, threshold)`` of the best single threshold on balanced sets (an optimistic
    figure: the attacker would not know the best threshold in advance)."""
    members = _losses("member_losses", member_losses)
    others = _losses("nonmember_losses", nonmember_losses)
    best = (0.5, float("inf"))
    for t in np.unique(np.concatenate([members, others])):
        acc = 0.5 * ((members <= t).mean() + (others > t).mean())
        if acc > best[0]:
            best = (float(acc), float(t))
    return best


def copy_fraction(samples, train, threshold: float = 1 / 3) -> float:
    """Share of ``samples`` that are near-copies of a training example: nearest-neighbour distance
    ratio ``d_1 / d_2`` below ``threshold`` (``coursekit.copies.nn_distance_ratio``)."""
    import torch

    from coursekit.copies import nn_distance_ratio

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    ratio = nn_distance_ratio(torch.as_tensor(samples), torch.as_tensor(train))
    return float((ratio < threshold).double().mean())
