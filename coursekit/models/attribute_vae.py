"""A VAE conditioned on an attribute code, the generative half of Chapter 6's zero-shot learning:
it learns ``p(x | z, a)`` on the seen classes and synthesises images of unseen classes from their
codes (``coursekit.zeroshot`` evaluates it beside DAP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from coursekit.data.levels import to_levels
from coursekit.losses import gaussian_kl, log_categorical, reparameterize
from coursekit.models.base import TrainableModel
from coursekit.models.layers import check_batch
from coursekit.utils import eval_mode

__all__ = ["AttributeVAEConfig", "AttributeVAE"]


@dataclass
class AttributeVAEConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W)
    num_attributes: int = 7          # length of the attribute code a
    latent_dim: int = 8              # size of z (the style: slant, thickness, position)
    hidden: int = 256                # MLP width
    num_levels: int = 17             # categorical likelihood over grey levels (digits: 0..16)
    additive: bool = True            # the code adds a learned picture per attribute to the
    #                                  decoder's logits, so unseen codes compose seen strokes

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)


class AttributeVAE(TrainableModel):
    """A VAE conditioned on an attribute code: ``q(z|x, a)``, ``p(x|z, a)``, categorical
    likelihood over grey levels. A batch holds ``x``, ``levels`` (optional) and ``a`` (B, A).

    With ``additive`` the decoder's logits are ``f(z, a) + sum_m a_m W_m``: every segment owns a
    learned picture of logits, so a code never seen in training (an unseen digit) still lights
    the strokes it names.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> vae = AttributeVAE(AttributeVAEConfig(hidden=32))
        >>> a = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0, 0]])  # codes of 0, 1
        >>> vae.sample(2, codes=a).shape
        torch.Size([4, 1, 8, 8])
    """
    config_class = AttributeVAEConfig
    PHASES = ("vae",)

    def __init__(self, config: AttributeVAEConfig | None = None):
        super().__init__()
        self.config = c = config or AttributeVAEConfig()
        d = math.prod(c.data_shape)
        self.num_pixels = d
        self.encoder = nn.Sequential(nn.Linear(d + c.num_attributes, c.hidden), nn.LeakyReLU(),
                                     nn.Linear(c.hidden, c.hidden), nn.LeakyReLU(),
                                     nn.Linear(c.hidden, 2 * c.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(c.latent_dim + c.num_attributes, c.hidden),
                                     nn.LeakyReLU(), nn.Linear(c.hidden, c.hidden),
                                     nn.LeakyReLU(), nn.Linear(c.hidden, d * c.num_levels))
        self.strokes = nn.Linear(c.num_attributes, d * c.num_levels, bias=False) \
            if c.additive else None

    def decode(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, D)`` of ``p(x|z, a)``."""
        out = self.decoder(torch.cat([z, a], 1))                              # (B, D * L)
        if self.strokes is not None:
            out = out + self.strokes(a)
        return out.view(len(z), self.num_pixels, self.config.num_levels).transpose(1, 2)

    def negative_elbo(self, batch: dict) -> torch.Tensor:
        """One-sample ``-ELBO`` per example, ``(B,)``, in nats."""
        c = self.config
        x, a = batch["x"], batch["a"].to(batch["x"].dtype)
        check_batch(x, c.data_shape, "the attribute VAE")
        if a.shape != (len(x), c.num_attributes):
            raise ValueError(f"a must be (B, {c.num_attributes}) for {len(x)} images, got "
                             f"{tuple(a.shape)}")
        levels = batch.get("levels")
        if levels is None:
            levels = to_levels(x, c.num_levels)
        mu, logvar = self.encoder(torch.cat([x.flatten(1), a], 1)).chunk(2, dim=1)
        z = reparameterize(mu, logvar)                                        # (B, latent)
        rec = -log_categorical(levels.reshape(len(x), -1), self.decode(z, a))
        return rec + gaussian_kl(mu, logvar)

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, codes: torch.Tensor | None = None,
               mean: bool = False) -> torch.Tensor:
        """``n`` images per row of ``codes`` (K, A), ``(K * n, C, H, W)`` in ``[0, 1]``: grey levels
        drawn from ``p(x|z, a)`` with ``z ~ N(0, I)``, or the decoder's mean level. Without
        ``codes``, ``n`` images of ``n`` random binary codes (drawn with ``generator``). The model
        is conditioned on attribute codes, not class labels: ``labels`` is refused."""
        c = self.config
        if labels is not None:
            raise ValueError("the attribute VAE samples from attribute codes: pass codes=(K, A), "
                             "not labels")
        device = next(self.parameters()).device
        if codes is None:
            codes = torch.randint(0, 2, (n, c.num_attributes), generator=generator).to(device)
            n = 1
        if codes.ndim != 2 or codes.shape[1] != c.num_attributes:
            raise ValueError(f"codes must be (K, {c.num_attributes}), got {tuple(codes.shape)}")
        with eval_mode(self):
            a = codes.float().repeat_interleave(n, 0)                         # (K * n, A)
            z = torch.randn(len(a), c.latent_dim, device=a.device, generator=generator)
            probs = self.decode(z, a).softmax(1)                               # (K * n, L, D)
            if mean:
                grid = torch.arange(c.num_levels, device=a.device, dtype=probs.dtype)
                levels = torch.einsum("bld,l->bd", probs, grid)
            else:
                flat = probs.transpose(1, 2).reshape(-1, c.num_levels)
                levels = torch.multinomial(flat, 1, generator=generator).view(len(a), -1)
        levels = levels.float()
        return (levels / (c.num_levels - 1)).view(len(a), *c.data_shape)

    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        value = self.negative_elbo(batch).mean()
        return value, {"neg_elbo": value.detach()}

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"neg_elbo": self.negative_elbo(batch)}
