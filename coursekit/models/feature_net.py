"""The small CNN classifier whose penultimate layer gives the features of FID, KID and
precision/recall on the digits and MNIST (Chapter 5), and the trainable model that teaches it to
classify randomly shifted images (``coursekit.features.train_feature_net`` trains it)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from coursekit.data.augment import random_shift
from coursekit.models.base import TrainableModel

__all__ = ["FeatureNetConfig", "FeatureNet", "FeatureClassifierConfig", "FeatureClassifier"]


@dataclass
class FeatureNetConfig:
    image_size: int = 8  # H = W of the input images (8 for digits, 28 for MNIST)
    in_channels: int = 1  # grey images
    channels: int = 32  # channels of the first conv block; the second has twice as many
    feature_dim: int = 128  # size of the penultimate layer: the features the metrics use
    num_classes: int = 10  # digits 0-9


class FeatureNet(nn.Module):
    """Two conv blocks, 2x2 average pooling of the map, a 128-d feature layer, class logits.

    Example:
        >>> net = FeatureNet(FeatureNetConfig(image_size=28))
        >>> x = torch.zeros(5, 1, 28, 28)
        >>> tuple(net.features(x).shape), tuple(net(x).shape)
        ((5, 128), (5, 10))
    """

    def __init__(self, config: FeatureNetConfig):
        super().__init__()
        self.config = config
        w = config.channels

        def block(c_in, c_out):
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.MaxPool2d(2))

        self.body = nn.Sequential(block(config.in_channels, w), block(w, 2 * w),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(2 * w * 4, config.feature_dim), nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"this feature network takes (N, {c}, {s}, {s}) images in [0, 1], "
                             f"got shape {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images in [0, 1] -> ``(N, feature_dim)`` features."""
        self._check(x)
        return self.embed(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images in [0, 1] -> ``(N, num_classes)`` logits."""
        return self.head(self.features(x))


@dataclass
class FeatureClassifierConfig(FeatureNetConfig):
    shift: int = 1  # random translation in pixels while training (augmentation), 0: none


class FeatureClassifier(TrainableModel):
    """A ``FeatureNet`` behind the training engine's protocol: one phase, the cross-entropy of
    randomly shifted images. ``net`` is the feature network the metrics use."""

    config_class = FeatureClassifierConfig
    PHASES = ("classifier",)

    def __init__(self, config: FeatureClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or FeatureClassifierConfig()
        self.net = FeatureNet(FeatureNetConfig(**{f.name: getattr(config, f.name)
                                                  for f in fields(FeatureNetConfig)}))

    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        x = random_shift(batch["x"], self.config.shift)  # (B, C, H, W)
        loss = F.cross_entropy(self.net(x), batch["y"])
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example ``error`` on held-out images (no shift)."""
        return {"error": (self.net(batch["x"]).argmax(1) != batch["y"]).float()}
