"""Generative adversarial networks: an MLP GAN and a DCGAN-style GAN, optionally class-conditional,
with the minimax, non-saturating, WGAN-GP and hinge losses and optional spectral norm (Ch. 2, 4).

The generator is a deterministic map of noise, ``x = G(z)`` with ``z ~ N(0, I)`` (Goodfellow et al.
2014): not a reparameterised Gaussian. The discriminator returns logits; the losses live in
``coursekit.losses``. Conditioning follows Mirza and Osindero (2014) in the generator (the label's
embedding joins ``z``) and the projection discriminator of Miyato and Koyama (2018) in the critic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from coursekit.losses import GAN_LOSSES, discriminator_loss, generator_loss, gradient_penalty
from coursekit.models.layers import ConvDecoder, ConvEncoder, check_batch, check_choice
from coursekit.utils import eval_mode
from coursekit.models.base import TrainableModel

__all__ = ["GANConfig", "Generator", "Discriminator", "GAN"]


@dataclass
class GANConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one example: (C, H, W) for images, (D,) for vectors
    latent_dim: int = 32         # size of the noise z
    arch: str = "mlp"            # "mlp" (any data) or "dcgan" (images, Radford et al. 2016)
    hidden: int = 256            # MLP width
    channels: int = 32           # DCGAN base number of feature maps
    loss: str = "nonsaturating"  # one of coursekit.losses.GAN_LOSSES
    gradient_penalty: float = 0.0  # weight of the WGAN-GP penalty (Gulrajani et al. use 10)
    spectral_norm: bool = False  # spectral normalisation of every critic layer (Miyato et al. 2018)
    n_critic: int = 1            # discriminator steps per generator step (WGAN-GP uses 5)
    num_classes: int = 0         # > 0: class-conditional generator and critic
    output: str = "sigmoid"      # generator output: "sigmoid" for images in [0, 1], "identity"

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        check_choice("GAN arch", self.arch, ("mlp", "dcgan"))
        check_choice("GAN loss", self.loss, GAN_LOSSES)
        check_choice("output", self.output, ("sigmoid", "identity"))
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")


class Generator(nn.Module):
    """``G: (B, latent_dim) [+ labels (B,)] -> (B, *data_shape)``."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        c = config
        in_features = c.latent_dim + (c.num_classes if c.num_classes else 0)
        out_features = math.prod(c.data_shape)
        if c.arch == "mlp":
            self.net = nn.Sequential(
                nn.Linear(in_features, c.hidden), nn.LeakyReLU(0.2),
                nn.Linear(c.hidden, c.hidden), nn.LeakyReLU(0.2),
                nn.Linear(c.hidden, out_features))
        else:
            self.net = ConvDecoder(in_features, c.data_shape, c.channels, c.data_shape[0])

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if z.ndim != 2 or z.shape[1] != c.latent_dim:
            raise ValueError(f"the generator expects z of shape (B, {c.latent_dim}), got "
                             f"{tuple(z.shape)}")
        if c.num_classes:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels (B,)")
            z = torch.cat([z, nn.functional.one_hot(labels, c.num_classes).to(z.dtype)], dim=1)
        x = self.net(z).reshape(z.shape[0], *c.data_shape)  # (B, *data_shape)
        return torch.sigmoid(x) if c.output == "sigmoid" else x


class Discriminator(nn.Module):
    """``D: (B, *data_shape) [+ labels (B,)] -> logits (B,)``."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        c = config
        sn = nn.utils.parametrizations.spectral_norm if c.spectral_norm else (lambda layer: layer)
        if c.arch == "mlp":
            self.features = nn.Sequential(
                nn.Flatten(),
                sn(nn.Linear(math.prod(c.data_shape), c.hidden)), nn.LeakyReLU(0.2),
                sn(nn.Linear(c.hidden, c.hidden)), nn.LeakyReLU(0.2))
        else:
            self.features = nn.Sequential(
                ConvEncoder(c.data_shape, c.channels, c.hidden, norm=sn), nn.LeakyReLU(0.2))
        self.head = sn(nn.Linear(c.hidden, 1))
        # projection discriminator: logit += <embed(y), features(x)>
        self.embed = sn(nn.Embedding(c.num_classes, c.hidden)) if c.num_classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_batch(x, self.config.data_shape, "the discriminator")
        h = self.features(x)                 # (B, hidden)
        logits = self.head(h).squeeze(1)     # (B,)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels (B,)")
            logits = logits + (self.embed(labels) * h).sum(dim=1)
        return logits


class GAN(TrainableModel):
    """A generator and a discriminator trained against each other by ``coursekit.train``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> gan = GAN(GANConfig(data_shape=(1, 8, 8)))
        >>> gan.sample(5).shape
        torch.Size([5, 1, 8, 8])
    """
    config_class = GANConfig
    PHASES = ('discriminator', 'generator')

    def __init__(self, config: GANConfig | None = None):
        super().__init__(config or GANConfig())
        self.generator = Generator(self.config)
        self.discriminator = Discriminator(self.config)

    # --------------------------------------------------------------------------------- sampling
    def _labels(self, n: int, labels: torch.Tensor | None, device) -> torch.Tensor | None:
        if not self.config.num_classes:
            return None
        if labels is None:
            return torch.arange(n, device=device) % self.config.num_classes
        return labels.to(device)

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``G(z)``; a conditional GAN cycles through the classes unless given
        ``labels``; ``generator`` seeds ``z``. To sample from the moving average of the
        generator's weights, call ``gan.averaged(result.ema).sample(n)``."""
        if isinstance(generator, nn.Module):
            raise TypeError("generator is a torch.Generator that seeds z; to sample from an "
                            "EMA copy of the generator call gan.averaged(ema).sample(n)")
        g = self.generator
        device = next(g.parameters()).device
        z = torch.randn(n, self.config.latent_dim, device=device, generator=generator)
        with eval_mode(g):
            return g(z, self._labels(n, labels, device))

    # --------------------------------------------------------------------- the engine's protocol
    def phases(self, step: int) -> tuple[str, ...]:
        """The discriminator every step; the generator every ``n_critic``-th step."""
        if (step + 1) % self.config.n_critic == 0:
            return ("discriminator", "generator")
        return ("discriminator",)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.discriminator.parameters()),
                "generator": list(self.generator.parameters())}

    def ema_module(self) -> nn.Module:
        """What an exponential moving average should track: the generator."""
        return self.generator

    def loss(self, phase: str, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        """The loss of one phase on one batch and the detached values to log.

        ``batch`` holds ``"x"`` (B, *data_shape) and, for a conditional GAN, ``"y"`` (B,).
        """
        c = self.config
        x = batch["x"]
        check_batch(x, c.data_shape, "the GAN")
        y = batch.get("y") if c.num_classes else None
        z = torch.randn(x.shape[0], c.latent_dim, device=x.device)
        if phase == "discriminator":
            with torch.no_grad():
                fake = self.generator(z, y)
            real_logits = self.discriminator(x, y)
            fake_logits = self.discriminator(fake, y)
            loss = discriminator_loss(real_logits, fake_logits, c.loss)
            logs = {"d_loss": loss.detach(), "d_real": real_logits.detach().mean(),
                    "d_fake": fake_logits.detach().mean()}
            if c.gradient_penalty:
                gp = gradient_penalty(lambda t: self.discriminator(t, y), x, fake)
                loss = loss + c.gradient_penalty * gp
                logs["gp"] = gp.detach()
            return loss, logs
        if phase == "generator":
            fake_logits = self.discriminator(self.generator(z, y), y)
            loss = generator_loss(fake_logits, c.loss)
            return loss, {"g_loss": loss.detach()}
        raise ValueError(f"unknown phase {phase!r}; a GAN has 'discriminator' and 'generator'")

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example discriminator outputs on held-out real data, ``{"d_real": (B,)}``."""
        y = batch.get("y") if self.config.num_classes else None
        return {"d_real": self.discriminator(batch["x"], y)}
