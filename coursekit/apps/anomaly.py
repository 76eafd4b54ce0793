"""Anomaly detection with a generative model's likelihood, beside the baselines a sceptic tries
first: PCA reconstruction error, distance to the nearest training images and a one-class SVM
(Chapter 8).

The one-class protocol: train on "normal" examples only (one digit), score held-out examples of
every class, and report the area under the ROC curve (AUROC) of "anomaly versus normal": the
probability that a random anomaly scores higher than a random normal example (ties count half).

Every score here is "higher = more anomalous". A VAE gives ``-log p(x)`` through the IWAE bound.
Likelihood is not automatically a good anomaly score: Nalisnick et al. (2019) showed deep
generative models giving *higher* likelihood to out-of-distribution data, because ``log p(x)``
is dominated by how simple an image is (how much of it is flat background), not by what it
shows. ``complexity_bits`` is the correction of Serra et al. (2020): the length of the image
losslessly compressed by a generic compressor (PNG), an estimate of ``-log2`` of a likelihood
under a model that knows nothing about digits; subtracting it leaves the part of the likelihood
the trained model explains beyond generic image statistics (a likelihood ratio).
"""

from __future__ import annotations

import io

import numpy as np
import torch

from coursekit.metrics.classification import auroc
from coursekit.utils import to_numpy

__all__ = ["auroc", "one_class_split", "pca_score", "knn_score", "ocsvm_score", "vae_score",
           "complexity_bits"]


def one_class_split(images: torch.Tensor, labels: torch.Tensor, normal: int,
                    num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of class ``normal`` (to train on) and ``is_anomaly`` for all of ``labels``.

    Returns:
        ``(normal_images (M, ...), is_anomaly (N,) bool)``.
    """
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"labels must be (N,) for {len(images)} images, got "
                         f"{tuple(labels.shape)}")
    if not 0 <= normal < num_classes:
        raise ValueError(f"normal class {normal} out of range [0, {num_classes})")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return images[labels == normal], labels != normal


def _flat(x) -> np.ndarray:
    return to_numpy(x, np.float64).reshape(len(x), -1)


def pca_score(train, test, n_components: int = 20) -> np.ndarray:
    """Squared reconstruction error of ``test`` through the top principal components of
    ``train``: large where an example leaves the normal data's linear subspace."""
    from sklearn.decomposition import PCA

    a, b = _flat(train), _flat(test)
    if not 1 <= n_components <= min(a.shape):
        raise ValueError(f"n_components must lie in [1, {min(a.shape)}], got {n_components}")
    pca = PCA(n_components=n_components, random_state=0).fit(a)
    return ((b - pca.inverse_transform(pca.transform(b))) ** 2).sum(1)


def knn_score(train, test, k: int = 1) -> np.ndarray:
    """Mean Euclidean distance from each test example to its ``k`` nearest training examples.

    Example:
        >>> knn_score(np.zeros((3, 2)), np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
        [5.0, 0.0]
    """
    from sklearn.neighbors import NearestNeighbors

    a, b = _flat(train), _flat(test)
    if not 1 <= k <= len(a):
        raise ValueError(f"k must lie in [1, {len(a)}], got {k}")
    dist, _ = NearestNeighbors(n_neighbors=k).fit(a).kneighbors(b)
    return dist.mean(1)


def ocsvm_score(train, test, nu: float = 0.1, gamma: str | float = "scale") -> np.ndarray:
    """Minus the decision function of scikit-learn's one-class SVM (RBF kernel)."""
    from sklearn.svm import OneClassSVM

    return -OneClassSVM(nu=nu, gamma=gamma).fit(_flat(train)).decision_function(_flat(test))


def complexity_bits(images: torch.Tensor) -> np.ndarray:
    """PNG-compressed length in bits of each ``(N, 1, H, W)`` image in [0, 1] (8-bit grey),
    the complexity estimate of Serra et al. (2020)."""
    from PIL import Image

    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images)}")
    out = []
    for image in (to_numpy(images[:, 0]) * 255).round().astype(np.uint8):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", optimize=True)
        out.append(8 * len(buffer.getvalue()))
    return np.asarray(out, dtype=np.float64)


@torch.no_grad()
def vae_score(vae, images: torch.Tensor, k: int = 32, batch_size: int = 500,
              seed: int = 0) -> np.ndarray:
    """``-log p(x)`` in nats by the IWAE bound with ``k`` samples (Burda et al. 2016), per image.

    Seeded (``seed``), so the same model and images give the same scores.
    """
    from coursekit.metrics import iwae_nll
    from coursekit.utils import eval_mode

    device = next(vae.parameters()).device
    with eval_mode(vae), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = [iwae_nll(vae.iwae_log_weights({"x": images[i:i + batch_size].to(device)}, k=k))
               .cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()
