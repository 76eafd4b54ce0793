"""Augmenting a small labelled set: classic shifts versus samples of a generative model, judged
by a classifier trained on the result and tested on real held-out images (Chapter 8).

Three training sets are compared in the same run:

* the labelled images alone (``per_class`` of each class, drawn by ``sample_labelled``);
* the same plus every one-pixel shift of them (``shift_augment``, the classic trick);
* the same plus images drawn from a generative model, each with the class it was drawn for
  (``latent_class_samples``).

The generator here is a VAE trained *without labels* on a larger pool of images (the
semi-supervised setting of Kingma et al. 2014: labels are scarce, images are not). It becomes
class-conditional through the few labelled images: each class is a Gaussian in latent space
fitted to its labelled images' posterior means, and a sample of class ``c`` is the decoder's mean
at a latent point drawn from that Gaussian. Generated images enter the classifier's training set
with a smaller ``weight`` than real ones ("soft" extra data), because they are blurrier and some
carry the wrong class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from coursekit.data.labels import check_labels
from coursekit.utils import eval_mode

__all__ = ["check_labels", "sample_labelled", "shift_augment", "latent_class_samples",
           "AugmentConfig", "classifier_accuracy"]


def sample_labelled(labels: torch.Tensor, per_class: int, num_classes: int = 10,
                    seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` examples of each class, drawn without replacement, class by
    class (``(num_classes * per_class,)``, seeded).

    Example:
        >>> idx = sample_labelled(torch.tensor([0, 1, 0, 1, 0, 1]), 2, num_classes=2)
        >>> torch.tensor([0, 1, 0, 1, 0, 1])[idx].tolist()
        [0, 0, 1, 1]
    """
    check_labels(labels, num_classes, every_class=False)
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} examples, fewer than per_class="
                             f"{per_class}")
        out.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(out)


def shift_augment(x: torch.Tensor, y: torch.Tensor, shift: int = 1,
                  num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Every translation of each image by ``-shift..shift`` pixels in each direction except
    the identity (zero padding): ``((2 shift + 1)^2 - 1) N`` images, each with its source's label.

    Returns:
        ``(x_aug (K*N, C, H, W), y_aug (K*N,))``, ordered shift by shift.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")
    check_labels(y, num_classes, n=len(x), every_class=False)
    if shift < 1 or shift >= min(x.shape[2:]):
        raise ValueError(f"shift must lie in [1, {min(x.shape[2:]) - 1}], got {shift}")
    H, W = x.shape[2:]
    padded = F.pad(x, (shift, shift, shift, shift))                       # (N, C, H+2s, W+2s)
    xs, ys = [], []
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            if dy == dx == 0:
                continue
            top, left = shift - dy, shift - dx
            xs.append(padded[:, :, top:top + H, left:left + W])           # (N, C, H, W)
            ys.append(y)
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def latent_class_samples(vae, x: torch.Tensor, y: torch.Tensor, per_class: int,
                         num_classes: int = 10, scale: float = 1.0,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` generated images of each class from an unconditional VAE and a few labelled
    images: class ``c``'s latent points are drawn from ``N(m_c, scale^2 diag(s_c^2))``, where
    ``m_c`` and ``s_c`` are the mean and standard deviation of the posterior means ``mu(x)`` of
    the labelled images of class ``c``; each is decoded to the decoder's mean image.

    Returns:
        ``(x_gen (num_classes * per_class, C, H, W), y_gen)``, class by class.
    """
    check_labels(y, num_classes, n=len(x), every_class=False)
    if per_class < 1 or scale <= 0:
        raise ValueError(f"need per_class >= 1 and scale > 0, got {per_class}, {scale}")
    counts = torch.bincount(y, minlength=num_classes)
    if (counts < 2).any():
        raise ValueError(f"every class needs >= 2 labelled images to fit its spread, got counts "
                         f"{counts.tolist()}")
    device = next(vae.parameters()).device
    with eval_mode(vae):
        gen = torch.Generator().manual_seed(seed)
        mu, _ = vae.encode(x.to(device))                                      # (N, latent)
        mu = mu.cpu()
        zs = []
        for c in range(num_classes):
            m = mu[y == c]                                                    # (n_c, latent)
            eps = torch.randn(per_class, m.shape[1], generator=gen)
            zs.append(m.mean(0) + scale * m.std(0) * eps)                     # (per_class, latent)
        z = torch.cat(zs).to(device)
        images = vae.pixels(vae.decode(z), mean=True).cpu()  # (K * per_class, C, H, W)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return images, labels


@dataclass
class AugmentConfig:
    per_class: int = 10          # labelled images per class
    generated_per_class: int = 100  # generated images per class
    generated_weight: float = 0.3   # sample weight of a generated image (a real one has 1)
    latent_scale: float = 1.0    # spread of the class Gaussians in latent space
    svm_c: float = 10.0          # the RBF SVM's C (fixed, not tuned on the test split)
    draws: int = 10              # independent draws of the labelled set


def classifier_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                        y_test: torch.Tensor, weights: np.ndarray | None = None,
                        svm_c: float = 10.0) -> float:
    """Test accuracy of an RBF support vector machine (scikit-learn ``SVC``, ``gamma="scale"``)
    trained on the flattened images with optional per-example ``weights``."""
    from sklearn.svm import SVC

    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"images and labels differ in number: {len(x_train)} vs "
                         f"{len(y_train)} (train), {len(x_test)} vs {len(y_test)} (test)")
    if weights is not None and len(weights) != len(x_train):
        raise ValueError(f"{len(weights)} weights for {len(x_train)} training images")
    clf = SVC(C=svm_c, gamma="scale")
    clf.fit(x_train.flatten(1).numpy(), y_train.numpy(), sample_weight=weights)
    return float((clf.predict(x_test.flatten(1).numpy()) == y_test.numpy()).mean())
