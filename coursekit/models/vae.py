"""Variational autoencoders: MLP or convolutional encoder and decoder, Bernoulli, Gaussian or
categorical likelihood, beta-VAE, class-conditional VAE, an optional autoregressive decoder
(causal convolutions by default, or MADE), and the importance-weighted estimate of log p(x)
(Chapters 3-4).

The negative ELBO, in nats per example (Kingma and Welling 2014):

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || p(z)),   p(z) = N(0, I)

A beta-VAE (Higgins et al. 2017) trains on ``-log p(x|z) + beta * KL``; KL annealing (Bowman et
al. 2016) ramps that weight from 0 to ``beta``; a conditional VAE (Sohn et al. 2015) gives the
label to both encoder and decoder; ``iwae_log_weights`` gives the importance weights of the bound
of Burda et al. (2016), which ``coursekit.metrics.iwae_nll`` reduces and which tightens towards
``-log p(x)`` as ``k`` grows. The categorical likelihood over the 17 grey levels
of the digits makes every number here comparable with J. Tomczak's intro_dgm (nats per image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data.levels import to_levels
from coursekit.losses import gaussian_kl, log_normal, reparameterize
from coursekit.models.base import TrainableModel
from coursekit.models.layers import (ConvDecoder, ConvEncoder, MaskedLinear, check_batch,
                                     check_choice, made_masks)
from coursekit.models.likelihoods import LIKELIHOODS, likelihood
from coursekit.utils import eval_mode

__all__ = ["VAEConfig", "VAE"]

MAX_AUTOREGRESSIVE_PIXELS = 256  # 8x8 digits have 64; sampling costs one decoder pass per pixel


@dataclass
class VAEConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W); "mlp" also takes vectors (D,)
    latent_dim: int = 16           # size of z
    hidden: int = 256              # MLP width (and the conv encoder's feature size)
    arch: str = "mlp"              # "mlp" or "conv" encoder and decoder
    channels: int = 32             # conv base number of feature maps
    likelihood: str = "categorical"  # a key of models.likelihoods.LIKELIHOODS: "bernoulli",
    #                                  "gaussian", "categorical" or "logistic" (over grey levels)
    num_levels: int = 17           # grey levels of a discrete likelihood (digits: 0..16)
    autoregressive: bool = False   # decoder p(x|z) = prod_i p(x_i | x_<i, z), in raster order
    ar_decoder: str = "causal_conv"  # the autoregressive decoder: "causal_conv" or "made"
    beta: float = 1.0              # weight of the KL term in the training loss (beta-VAE)
    kl_warmup_steps: int = 0       # steps over which the KL weight ramps linearly from 0 to beta
    num_classes: int = 0           # > 0: class-conditional encoder and decoder
    dropout: float = 0.0           # dropout in the MLP encoder and decoder (a regulariser)

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        check_choice("VAE arch", self.arch, ("mlp", "conv"))
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.autoregressive and self.likelihood not in ("bernoulli", "categorical"):
            raise ValueError(f"the autoregressive decoder needs a 'bernoulli' or 'categorical' "
                             f"likelihood, got {self.likelihood!r}")
        if self.autoregressive and math.prod(self.data_shape) > MAX_AUTOREGRESSIVE_PIXELS:
            raise ValueError(f"the autoregressive decoder samples one pixel at a time and is meant "
                             f"for small images (at most {MAX_AUTOREGRESSIVE_PIXELS} pixels), got "
                             f"data_shape {self.data_shape}")
        check_choice("ar_decoder", self.ar_decoder, ("made", "causal_conv"))
        if self.beta < 0 or self.kl_warmup_steps < 0:
            raise ValueError(f"beta and kl_warmup_steps must be >= 0, got {self.beta} and "
                             f"{self.kl_warmup_steps}")

    @property
    def logits_per_pixel(self) -> int:
        return likelihood(self.likelihood, self.num_levels).outputs_per_pixel


def _mlp(in_features: int, hidden: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.LeakyReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Dropout(dropout),
        nn.Linear(hidden, out_features))


class MADEDecoder(nn.Module):
    """``p(x|z) = prod_i p(x_i | x_<i, z)``: a masked MLP (Germain et al. 2015) whose hidden
    layers also receive ``z``, so one pass gives every pixel's logits given the pixels before it.
    Pixels enter as one-hot codes of their ``in_levels`` levels (1: the grey value itself)."""

    def __init__(self, num_pixels: int, cond_features: int, hidden: int, logits_per_pixel: int,
                 in_levels: int = 1, dropout: float = 0.0):
        super().__init__()
        m_in, m_hidden, m_out = made_masks(num_pixels, [hidden, hidden], logits_per_pixel,
                                           in_levels)
        self.num_pixels, self.logits_per_pixel, self.in_levels = \
            num_pixels, logits_per_pixel, in_levels
        self.layer1, self.layer2, self.out = MaskedLinear(m_in), MaskedLinear(m_hidden), \
            MaskedLinear(m_out)
        # a direct input -> output path: output i sees pixels j < i (strictly lower triangular)
        direct = (torch.arange(num_pixels)[:, None] > torch.arange(num_pixels)[None, :]).float()
        self.direct = MaskedLinear(direct.repeat_interleave(logits_per_pixel, dim=0)
                                   .repeat_interleave(in_levels, dim=1), bias=False)
        self.cond1 = nn.Linear(cond_features, hidden)
        self.cond2 = nn.Linear(cond_features, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_flat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.in_levels > 1:  # x in [0, 1] -> one-hot levels, (B, D * levels)
            levels = to_levels(x_flat, self.in_levels)
            x_flat = F.one_hot(levels, self.in_levels).to(cond.dtype).flatten(1)
        h = self.dropout(F.leaky_relu(self.layer1(x_flat) + self.cond1(cond)))  # (B, hidden)
        h = self.dropout(F.leaky_relu(self.layer2(h) + self.cond2(cond)))       # (B, hidden)
        out = self.out(h) + self.direct(x_flat)                                  # (B, D * L)
        return out.view(-1, self.num_pixels, self.logits_per_pixel)              # (B, D, L)


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution whose output at position i sees inputs at positions <= i, or < i when
    ``strict`` (the first layer, so that a pixel never sees itself)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 strict: bool = False):
        super().__init__(in_channels, out_channels, kernel_size)
        self.left = kernel_size - 1 + int(strict)
        self.strict = strict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(F.pad(x, (self.left, 0)))       # (B, C_out, T + strict)
        return out[:, :, :-1] if self.strict else out          # (B, C_out, T)


class CausalConvDecoder(nn.Module):
    """``p(x|z) = prod_i p(x_i | x_<i, z)`` with causal 1-D convolutions over the pixels in raster
    order, the autoregressive model of Tomczak's intro_dgm with ``z`` added to every hidden layer
    (in the spirit of PixelVAE): the weights are shared across positions, unlike MADE's."""

    def __init__(self, num_pixels: int, cond_features: int, channels: int,
                 logits_per_pixel: int, kernel_size: int = 7, dropout: float = 0.0):
        super().__init__()
        self.num_pixels, self.logits_per_pixel = num_pixels, logits_per_pixel
        self.convs = nn.ModuleList([
            CausalConv1d(1, channels, kernel_size, strict=True),
            CausalConv1d(channels, channels, kernel_size),
            CausalConv1d(channels, channels, kernel_size)])
        self.conds = nn.ModuleList([nn.Linear(cond_features, channels) for _ in self.convs])
        self.out = CausalConv1d(channels, logits_per_pixel, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x_flat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = x_flat.unsqueeze(1)                                              # (B, 1, D)
        for conv, proj in zip(self.convs, self.conds):
            h = self.dropout(F.leaky_relu(conv(h) + proj(cond).unsqueeze(2)))  # (B, M, D)
        return self.out(h).transpose(1, 2)                                   # (B, D, L)


class VAE(TrainableModel):
    """A VAE with a diagonal Gaussian posterior ``q(z|x)`` and a standard normal prior.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> vae = VAE(VAEConfig(data_shape=(1, 8, 8), latent_dim=4, hidden=32))
        >>> x = torch.randint(0, 17, (3, 1, 8, 8)) / 16
        >>> vae.negative_elbo({"x": x})["neg_elbo"].shape, vae.sample(2).shape
        (torch.Size([3]), torch.Size([2, 1, 8, 8]))
    """
    config_class = VAEConfig
    PHASES = ("vae",)

    def __init__(self, config: VAEConfig | None = None):
        super().__init__(config or VAEConfig())
        c = self.config
        self.likelihood = likelihood(c.likelihood, c.num_levels)  # p(x|z), an object
        if c.arch == "conv" and len(c.data_shape) != 3:
            raise ValueError(f"the conv VAE needs images (C, H, W), got data_shape {c.data_shape}")
        self.num_pixels = math.prod(c.data_shape)
        k = c.num_classes
        if c.arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), *_mlp(self.num_pixels + k, c.hidden,
                                                             2 * c.latent_dim, c.dropout))
        else:
            self.conv = ConvEncoder(c.data_shape, c.channels, c.hidden)
            self.encoder = nn.Sequential(nn.LeakyReLU(), nn.Linear(c.hidden + k, 2 * c.latent_dim))
        out = self.num_pixels * c.logits_per_pixel
        if c.autoregressive and c.ar_decoder == "causal_conv":
            self.decoder = CausalConvDecoder(self.num_pixels, c.latent_dim + k, c.channels,
                                             c.logits_per_pixel, dropout=c.dropout)
        elif c.autoregressive:
            self.decoder = MADEDecoder(self.num_pixels, c.latent_dim + k, c.hidden,
                                       c.logits_per_pixel, in_levels=c.logits_per_pixel,
                                       dropout=c.dropout)
        elif c.arch == "mlp":
            self.decoder = _mlp(c.latent_dim + k, c.hidden, out, c.dropout)
        else:
            self.decoder = ConvDecoder(c.latent_dim + k, c.data_shape, c.channels,
                                       c.data_shape[0] * c.logits_per_pixel)
        # the Gaussian likelihood: one learned log-variance per pixel, the decoder's noise level
        self.logvar_x = nn.Parameter(torch.full(c.data_shape, -2.0)) \
            if self.likelihood.learned_variance else None

    # ------------------------------------------------------------------------------ the model
    def _one_hot(self, labels: torch.Tensor | None, device) -> torch.Tensor | None:
        """``(B,)`` labels -> ``(B, num_classes)`` one-hot codes; None for an unconditional VAE."""
        if not self.config.num_classes:
            return None
        if labels is None:
            raise ValueError("this VAE is class-conditional: the batch needs labels 'y' (B,)")
        return F.one_hot(labels.to(device), self.config.num_classes).float()

    def encode(self, x: torch.Tensor, y_onehot: torch.Tensor | None = None):
        """``q(z|x)``: returns ``mu, logvar``, each ``(B, latent_dim)``."""
        check_batch(x, self.config.data_shape, "the VAE")
        if self.config.arch == "mlp":
            h = x.flatten(1)                                              # (B, D)
            h = h if y_onehot is None else torch.cat([h, y_onehot], dim=1)
        else:
            h = self.conv(x)                                              # (B, hidden)
            h = h if y_onehot is None else torch.cat([h, y_onehot], dim=1)
        mu, logvar = self.encoder(h).chunk(2, dim=1)                      # (B, latent) each
        return mu, logvar

    def decode(self, z: torch.Tensor, y_onehot: torch.Tensor | None = None,
               x: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output given ``z``: what ``self.likelihood`` turns into probabilities.

        Returns ``(B, *data_shape)``, or ``(B, K, *data_shape)`` for a likelihood of ``K > 1``
        outputs per pixel (categorical: ``K = L`` logits).
        The autoregressive decoder also needs the image ``x`` it scores (teacher forcing).
        """
        c = self.config
        cond = z if y_onehot is None else torch.cat([z, y_onehot], dim=1)  # (B, latent + K)
        if c.autoregressive:
            if x is None:
                raise ValueError("the autoregressive decoder scores a given x: pass x")
            out = self.decoder(x.flatten(1), cond)                          # (B, D, L)
        else:
            out = self.decoder(cond).reshape(z.shape[0], -1, c.logits_per_pixel)  # (B, D, L)
        if c.logits_per_pixel > 1:
            return out.transpose(1, 2).reshape(z.shape[0], c.logits_per_pixel, *c.data_shape)
        return out.reshape(z.shape[0], *c.data_shape)

    def log_likelihood(self, batch: dict, decoded: torch.Tensor,
                       check_range: bool = True) -> torch.Tensor:
        """``log p(x|z)`` per example, shape ``(B,)``. ``check_range=False`` skips the check of
        the data (it waits for the device), for data that ``check_data`` has checked."""
        if check_range:
            self.likelihood.check(batch)
        return self.likelihood.log_prob(batch["x"], decoded, levels=batch.get("levels"),
                                        logvar=self.logvar_x)

    def pixels(self, decoded: torch.Tensor, mean: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in ``[0, 1]`` from the decoder's output: a draw from ``p(x|z)``, or its mean."""
        if mean:
            return self.likelihood.mean(decoded)
        return self.likelihood.sample(decoded, logvar=self.logvar_x, generator=generator)

    def negative_elbo(self, batch: dict, beta: float = 1.0,
                      check_range: bool = True) -> dict[str, torch.Tensor]:
        """One-sample ``-ELBO`` and its parts, each ``(B,)``: ``rec`` = -log p(x|z), ``kl``, and
        ``loss`` = rec + beta * kl (the beta-weighted objective)."""
        x = batch["x"]
        y = self._one_hot(batch.get("y"), batch["x"].device)
        mu, logvar = self.encode(x, y)
        z = reparameterize(mu, logvar)                                    # (B, latent)
        rec = -self.log_likelihood(batch, self.decode(z, y, x), check_range)  # (B,)
        kl = gaussian_kl(mu, logvar)                                      # (B,)
        return {"loss": rec + beta * kl, "neg_elbo": rec + kl, "rec": rec, "kl": kl}

    @torch.no_grad()
    def iwae_log_weights(self, batch: dict, k: int = 100, chunk: int = 16) -> torch.Tensor:
        """``(k, B)`` log importance weights ``log p(x, z_i) - log q(z_i|x)``, ``z_i ~ q(z|x)``,
        of the bound of Burda et al. (2016): ``coursekit.metrics.iwae_nll`` turns them into
        ``-log (1/k) sum_i p(x, z_i) / q(z_i|x)`` per example, never above the one-sample -ELBO
        on average. ``chunk`` samples of z per image are decoded in one batch."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        x = batch["x"]
        b = x.shape[0]
        y = self._one_hot(batch.get("y"), batch["x"].device)
        mu, logvar = self.encode(x, y)
        log_w = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            rep = {name: t.repeat(n, *([1] * (t.ndim - 1))) for name, t in batch.items()
                   if torch.is_tensor(t)}                                 # (n * B, ...)
            mu_n, logvar_n = mu.repeat(n, 1), logvar.repeat(n, 1)         # (n * B, latent)
            y_n = None if y is None else y.repeat(n, 1)
            z = reparameterize(mu_n, logvar_n)
            log_px = self.log_likelihood(rep, self.decode(z, y_n, rep["x"]))
            zeros = torch.zeros_like(z)
            log_w.append((log_px + log_normal(z, zeros, zeros)
                          - log_normal(z, mu_n, logvar_n)).view(n, b))   # (n, B)
        return torch.cat(log_w)                                           # (k, B)

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
        """``n`` images in ``[0, 1]`` from ``z ~ N(0, I)``: drawn from ``p(x|z)``, or its mean
        (``mean=True``, not available for the autoregressive decoder). A conditional VAE cycles
        through the classes unless given ``labels``; ``generator`` seeds ``z`` and the draw."""
        c = self.config
        if mean and c.autoregressive:
            raise ValueError("mean=True needs a non-autoregressive decoder: the autoregressive "
                             "one has no closed-form mean image")
        device = next(self.parameters()).device
        if c.num_classes and labels is None:
            labels = torch.arange(n, device=device) % c.num_classes
        y = self._one_hot(labels, device)
        z = torch.randn(n, c.latent_dim, device=device, generator=generator)
        with eval_mode(self):
            if c.autoregressive:
                return self._sample_autoregressive(z, y, generator)
            return self.pixels(self.decode(z, y), mean, generator)

    def _sample_autoregressive(self, z: torch.Tensor, y: torch.Tensor | None,
                               generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.config
        x = torch.zeros(z.shape[0], *c.data_shape, device=z.device)
        flat = x.view(z.shape[0], -1)                                     # (B, D), a view of x
        for i in range(self.num_pixels):
            decoded = self.decode(z, y, x)                                # (B, [K,] *shape)
            out_i = decoded.reshape(z.shape[0], c.logits_per_pixel, -1)[:, :, i]  # (B, K)
            if c.logits_per_pixel == 1:
                out_i = out_i.squeeze(1)                                  # (B,)
            flat[:, i] = self.likelihood.sample(out_i, generator=generator)
        return x

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's mean at ``z = mu(x)`` (not for the autoregressive decoder)."""
        if self.config.autoregressive:
            raise ValueError("reconstruct needs a non-autoregressive decoder")
        y = self._one_hot(labels, x.device)
        mu, _ = self.encode(x, y)
        return self.likelihood.mean(self.decode(mu, y))

    # --------------------------------------------------------------------- the engine's protocol
    def kl_weight(self, step: int) -> float:
        """``beta``, ramped linearly over the first ``kl_warmup_steps`` steps (KL annealing)."""
        c = self.config
        if c.kl_warmup_steps <= 0:
            return c.beta
        return c.beta * min(1.0, (step + 1) / c.kl_warmup_steps)

    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        parts = self.negative_elbo(batch, beta=self.kl_weight(step), check_range=False)
        logs = {name: value.detach().mean() for name, value in parts.items()}
        return parts["loss"].mean(), logs

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example ``neg_elbo``, ``rec`` and ``kl`` (one sample of z)."""
        parts = self.negative_elbo(batch, check_range=False)
        return {"neg_elbo": parts["neg_elbo"], "rec": parts["rec"], "kl": parts["kl"]}

    def check_data(self, data: dict) -> None:
        """Check prepared data once, before training (the engine calls this), so that the loss
        need not check it every step: for the Bernoulli likelihood ``x`` in [0, 1]; for a
        discrete one integer ``levels`` in ``0 .. num_levels - 1`` (it scores the levels, so
        ``x`` is only the encoder's input and may carry, say, a mask value of -1, as Chapter 8's
        inpainting VAE does)."""
        self.likelihood.check(data)
