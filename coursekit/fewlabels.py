"""Learning from few labels: label draws, semi-supervised data for M2, augmentations for 8x8
digits, SimCLR-style contrastive pretraining and linear probes (Chapter 6).

Self-supervised learning trains a representation on a task made from the data alone (here:
recognise two augmented views of the same image among the views of other images, the InfoNCE
loss of van den Oord et al. 2018 as used by SimCLR, Chen et al. 2020). A representation is judged
by a *linear probe*: a logistic regression trained on the few labelled examples, scored on the
test split; the pretext loss says nothing about that by itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data.labels import check_labels, draw_labelled
from coursekit.models.layers import check_batch
from coursekit.utils import eval_mode, to_numpy
from coursekit.models.m2 import UNLABELLED
from coursekit.models.base import TrainableModel

__all__ = ["draw_labelled", "check_labels", "semi_supervised_data", "augment_digits",
           "info_nce", "ContrastiveConfig", "ContrastiveEncoder", "linear_probe"]


# ------------------------------------------------------------------------------------ labels
# check_labels and draw_labelled live in coursekit.data.labels (re-exported here)

def semi_supervised_data(images: torch.Tensor, labels, labelled_index, num_classes: int,
                         levels: torch.Tensor | None = None,
                         balance: bool = True) -> dict[str, torch.Tensor]:
    """The training data of M2: every image once with ``y = -1`` except the labelled ones.

    With ``balance`` the labelled rows are repeated until they are about as many as the
    unlabelled rows, so a shuffled batch holds both kinds in similar numbers (the usual
    practice; with 100 labels in 1,000 images a batch of 100 would otherwise hold about 10).

    Args:
        images: ``(N, C, H, W)`` in ``[0, 1]``.
        labels: ``(N,)`` integer classes (only the rows in ``labelled_index`` are used).
        labelled_index: the rows whose label the learner may see.
        num_classes: K.
        levels: ``(N, C, H, W)`` grey levels for the categorical likelihood, optional.

    Returns:
        ``{"x", "y"}`` (and ``"levels"``) with the repeated rows appended.

    Raises:
        ValueError: lengths differ, labels outside ``0..K-1``, or a class has no labelled row.
    """
    labels = torch.as_tensor(to_numpy(labels))
    if len(labels) != len(images) or (levels is not None and len(levels) != len(images)):
        raise ValueError(f"images, labels and levels must have the same length, got "
                         f"{len(images)}, {len(labels)} and "
                         f"{None if levels is None else len(levels)}")
    index = np.asarray(labelled_index, dtype=np.int64)
    check_labels(labels, num_classes, index)
    y = torch.full((len(images),), UNLABELLED, dtype=torch.int64)
    y[index] = labels[index].long()
    repeat = max(1, (len(images) - len(index)) // len(index)) if balance else 1
    rows = torch.from_numpy(np.concatenate([np.arange(len(images))] + [index] * (repeat - 1)))
    data = {"x": images[rows], "y": y[rows]}
    if levels is not None:
        data["levels"] = levels[rows]
    return data


# ------------------------------------------------------------------------------ augmentation

def augment_digits(x: torch.Tensor, max_degrees: float = 15.0, max_shift: float = 1.0,
                   scale: tuple[float, float] = (0.85, 1.15), noise: float = 0.05,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A random view of each small digit image, ``(B, C, H, W) -> (B, C, H, W)`` in ``[0, 1]``.

    What keeps a digit's identity at 8x8: a small rotation (``max_degrees``; not 180, which turns
    6 into 9), a shift of about a pixel, a zoom in ``scale``, and a little pixel noise. No flips
    (a mirrored 2 or 3 is not a digit) and no colour changes (there is one channel). One random
    affine map per image, applied by bilinear resampling.

    Example:
        >>> x = torch.rand(4, 1, 8, 8)
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_digits(x, generator=g).shape
        torch.Size([4, 1, 8, 8])
    """
    if x.ndim != 4:
        raise ValueError(f"augment_digits expects images (B, C, H, W), got {tuple(x.shape)}")
    b, _, h, w = x.shape

    def uniform(low, high):
        return low + (high - low) * torch.rand(b, generator=generator).to(x.device)

    angle = uniform(-max_degrees, max_degrees) * math.pi / 180.0          # (B,)
    zoom = uniform(*scale)                                                 # (B,)
    # translations in the normalised coordinates of affine_grid: 2 / side per pixel
    tx, ty = uniform(-max_shift, max_shift) * 2 / w, uniform(-max_shift, max_shift) * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1),
                         torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if noise > 0:
        out = out + noise * torch.randn(out.shape, generator=generator).to(x.device)
    return out.clamp(0, 1)


# ------------------------------------------------------------------------ contrastive learning

def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """The NT-Xent (normalised-temperature InfoNCE) loss of SimCLR for ``B`` positive pairs.

    Each of the ``2B`` views must pick out its partner among the other ``2B - 1`` views by
    cosine similarity divided by ``temperature``; the loss is the mean cross-entropy.

    Example:
        >>> z = torch.eye(4)  # four orthogonal pairs, each view identical to its partner
        >>> round(info_nce(z, z, temperature=0.1).item(), 4)
        0.0003
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D), got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)                            # (2B, D)
    sim = z @ z.t() / temperature                                          # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)  # (2B,)
    return F.cross_entropy(sim, partner)


@dataclass
class ContrastiveConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W)
    hidden: int = 256                # width of the encoder's hidden layers
    features: int = 64               # size of the representation h a probe reads
    projection: int = 32             # size of the projection g(h) the loss sees
    temperature: float = 0.5         # InfoNCE temperature
    max_degrees: float = 15.0        # augmentation: largest rotation
    max_shift: float = 1.0           # augmentation: largest shift, pixels
    noise: float = 0.05              # augmentation: pixel noise

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)


class ContrastiveEncoder(TrainableModel):
    """SimCLR on small images: an MLP encoder ``h = f(x)``, a projection head ``g``, and the
    InfoNCE loss between two augmented views; the probe reads ``h``, not ``g(h)`` (Chen et al.
    2020 found the layer before the head the better representation).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = ContrastiveEncoder(ContrastiveConfig(hidden=32, features=8))
        >>> model.represent(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 8])
    """
    config_class = ContrastiveConfig
    PHASES = ("contrastive",)

    def __init__(self, config: ContrastiveConfig | None = None):
        super().__init__()
        self.config = c = config or ContrastiveConfig()
        d = math.prod(c.data_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(d, c.hidden), nn.BatchNorm1d(c.hidden), nn.ReLU(),
            nn.Linear(c.hidden, c.hidden), nn.BatchNorm1d(c.hidden), nn.ReLU(),
            nn.Linear(c.hidden, c.features))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(c.features, c.hidden), nn.ReLU(),
                                  nn.Linear(c.hidden, c.projection))

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return augment_digits(x, c.max_degrees, c.max_shift, noise=c.noise)

    @torch.no_grad()
    def represent(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The representation ``h`` of each image, ``(B, features)``, in eval mode."""
        check_batch(x, self.config.data_shape, "the contrastive encoder")
        with eval_mode(self):
            h = torch.cat([self.encoder(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        return h

    def phases(self, step: int) -> tuple[str, ...]:
        return ("contrastive",)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"contrastive": list(self.parameters())}

    def ema_module(self) -> nn.Module:
        return self

    def loss(self, phase: str, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        if phase != "contrastive":
            raise ValueError(f"unknown phase {phase!r}; the contrastive encoder has one phase, "
                             f"'contrastive'")
        x = batch["x"]
        check_batch(x, self.config.data_shape, "the contrastive encoder")
        z1 = self.head(self.encoder(self._view(x)))                           # (B, projection)
        z2 = self.head(self.encoder(self._view(x)))                           # (B, projection)
        value = info_nce(z1, z2, self.config.temperature)
        return value, {"info_nce": value.detach()}

    def config_dict(self) -> dict:
        return asdict(self.config)


# ------------------------------------------------------------------------------- linear probes

def linear_probe(train_features, train_labels, test_features, test_labels,
                 unlabelled_features=None, C: float = 1.0) -> float:
    """Accuracy of a logistic regression trained on a few labelled representations.

    Features are standardised with the mean and spread of ``unlabelled_features`` (all training
    images, labels unused) when given, else of ``train_features``: with 10 labelled images the
    spread of those 10 alone is too noisy. scikit-learn's ``LogisticRegression`` does the fit.

    Raises:
        ValueError: lengths differ or the labelled set lacks a class that the test set has.
    """
    from sklearn.linear_model import LogisticRegression

    xtr, xte = to_numpy(train_features, np.float64), to_numpy(test_features, np.float64)
    ytr, yte = to_numpy(train_labels), to_numpy(test_labels)
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"features and labels must have the same length, got {len(xtr)} and "
                         f"{len(ytr)} (train), {len(xte)} and {len(yte)} (test)")
    missing = sorted(set(yte.tolist()) - set(ytr.tolist()))
    if missing:
        raise ValueError(f"no labelled example of class(es) {missing} that the test set has")
    ref = xtr if unlabelled_features is None else to_numpy(unlabelled_features, np.float64)
    mean, std = ref.mean(0), ref.std(0) + 1e-6
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit((xtr - mean) / std, ytr)
    return float((clf.predict((xte - mean) / std) == yte).mean())
