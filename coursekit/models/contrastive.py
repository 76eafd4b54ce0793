"""SimCLR-style contrastive learning on small images: the InfoNCE (NT-Xent) loss and an encoder
trained with it through ``coursekit.train.fit`` (Chapter 6).

The pretext task: two random views of each image (``coursekit.data.augment.augment_digits``), and
each view must pick out its partner among all views of the batch by cosine similarity (van den
Oord et al. 2018; Chen et al. 2020). The representation a probe reads is the encoder's output
``h``, not the projection ``g(h)`` the loss sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data.augment import augment_digits
from coursekit.models.base import TrainableModel
from coursekit.models.layers import check_batch
from coursekit.utils import eval_mode

__all__ = ["info_nce", "ContrastiveConfig", "ContrastiveEncoder"]


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
    PHASES = ("contrastive",)     # one optimiser over encoder and head
    config_class = ContrastiveConfig

    def __init__(self, config: ContrastiveConfig | None = None):
        super().__init__()
        self.config = c = config or ContrastiveConfig()
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(c.data_shape), c.hidden), nn.BatchNorm1d(c.hidden), nn.ReLU(),
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
            return torch.cat([self.encoder(x[i:i + batch_size])
                              for i in range(0, len(x), batch_size)])

    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        x = batch["x"]
        check_batch(x, self.config.data_shape, "the contrastive encoder")
        z1 = self.head(self.encoder(self._view(x)))                           # (B, projection)
        z2 = self.head(self.encoder(self._view(x)))                           # (B, projection)
        value = info_nce(z1, z2, self.config.temperature)
        return value, {"info_nce": value.detach()}
