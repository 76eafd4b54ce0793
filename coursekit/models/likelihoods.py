"""The pixel distribution ``p(x | z)`` of a decoder, as an object (Chapters 3-4, 6 and 8).

A decoder outputs ``outputs_per_pixel`` numbers per pixel; the likelihood object turns them into
a log-probability, a draw or a mean image, so that no model compares likelihood names:

==================  =================  ==========================================================
name                outputs per pixel  decoder output ``out``
==================  =================  ==========================================================
``categorical``     ``L``              ``(B, L, *shape)`` logits over the grey levels ``0..L-1``
``bernoulli``       1                  ``(B, *shape)`` logits of ``x`` (binary, or grey values as
                                       the usual cross-entropy)
``gaussian``        1                  ``(B, *shape)`` means; the log-variance is a learned
                                       parameter per pixel that the model passes as ``logvar``
``logistic``        2                  ``(B, 2, *shape)``: mean and log-scale of a logistic
                                       discretised to ``L`` levels (Salimans et al. 2017)
==================  =================  ==========================================================

``log_prob(x, out)`` is ``log p(x | z)`` per example ``(B,)`` (``reduce=False``: per pixel);
``sample(out)`` and ``mean(out)`` give images in ``[0, 1]``; ``check(data)`` validates prepared
data once, before training, so that the loss need not read the data back every step.

Example:
    >>> lik = likelihood("categorical", num_levels=17)
    >>> out = torch.zeros(2, 17, 1, 8, 8)                  # uniform over the 17 levels
    >>> x = torch.zeros(2, 1, 8, 8)
    >>> round(lik.log_prob(x, out)[0].item(), 2)          # 64 log(1/17)
    -181.33
    >>> lik.mean(out).unique().tolist(), lik.outputs_per_pixel
    ([0.5], 17)
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from coursekit.data.levels import check_levels, from_levels, to_levels

__all__ = ["PixelLikelihood", "Categorical", "Bernoulli", "Gaussian", "DiscretisedLogistic",
           "LIKELIHOODS", "likelihood"]

_LOG_2PI = math.log(2.0 * math.pi)


def _reduce(per_pixel: torch.Tensor, reduce: bool) -> torch.Tensor:
    return per_pixel.flatten(1).sum(1) if reduce else per_pixel


class PixelLikelihood:
    """The protocol: ``outputs_per_pixel``, ``log_prob``, ``sample``, ``mean`` and ``check``."""

    name = ""
    outputs_per_pixel = 1
    discrete = False     # scores integer grey levels (``levels`` in the batch, or rounded x)
    learned_variance = False  # the model holds a learned log-variance per pixel (``logvar``)

    def __init__(self, num_levels: int = 17, bounded: bool = True):
        self.num_levels = int(num_levels)
        self.bounded = bounded   # values in [0, 1] (images); False: any real (features)

    def log_prob(self, x: torch.Tensor, out: torch.Tensor, *, levels: torch.Tensor | None = None,
                 logvar: torch.Tensor | None = None, reduce: bool = True) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, out: torch.Tensor, *, logvar: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def levels(self, x: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
        """The grey levels ``p(x|z)`` scores: the batch's ``levels``, else ``x`` rounded."""
        return levels if levels is not None else to_levels(x, self.num_levels)

    def check(self, data: dict) -> None:
        """Validate prepared data (``x``, optional ``levels``) once, naming what is wrong."""
        x = data["x"]
        if self.discrete:
            check_levels(self.levels(x, data.get("levels")), self.num_levels)
        elif self.name == "bernoulli" and x.numel() and (float(x.min()) < 0
                                                         or float(x.max()) > 1):
            raise ValueError(f"the bernoulli likelihood needs x in [0, 1], got values from "
                             f"{float(x.min()):.4g} to {float(x.max()):.4g}")

    def __repr__(self) -> str:
        extra = f"num_levels={self.num_levels}" if self.discrete else ""
        return f"{type(self).__name__}({extra})"


class Categorical(PixelLikelihood):
    """One probability per grey level: the digits' 17-level likelihood (exact nats)."""

    name, discrete = "categorical", True

    @property
    def outputs_per_pixel(self) -> int:
        return self.num_levels

    def log_prob(self, x, out, *, levels=None, logvar=None, reduce=True):
        levels = self.levels(x, levels)                                   # (B, *shape)
        per_pixel = -F.cross_entropy(out, levels.long(), reduction="none")
        return _reduce(per_pixel, reduce)

    def sample(self, out, *, logvar=None, generator=None):
        probs = out.softmax(dim=1).movedim(1, -1)                         # (B, *shape, L)
        levels = torch.multinomial(probs.reshape(-1, self.num_levels), 1, generator=generator)
        return from_levels(levels.view(probs.shape[:-1]), self.num_levels)

    def mean(self, out):
        probs = out.softmax(dim=1)                                        # (B, L, *shape)
        grid = torch.arange(self.num_levels, device=out.device, dtype=probs.dtype)
        return torch.tensordot(grid, probs, dims=([0], [1])) / (self.num_levels - 1)


class Bernoulli(PixelLikelihood):
    """``x ~ Bernoulli(sigmoid(out))``; on grey values the binary cross-entropy."""

    name = "bernoulli"

    def log_prob(self, x, out, *, levels=None, logvar=None, reduce=True):
        per_pixel = -F.binary_cross_entropy_with_logits(out, x.to(out.dtype), reduction="none")
        return _reduce(per_pixel, reduce)

    def sample(self, out, *, logvar=None, generator=None):
        return torch.bernoulli(torch.sigmoid(out), generator=generator)

    def mean(self, out):
        return torch.sigmoid(out)


class Gaussian(PixelLikelihood):
    """``x ~ N(out, exp(logvar))``, the log-variance a learned parameter of the model."""

    name, learned_variance = "gaussian", True

    def log_prob(self, x, out, *, levels=None, logvar=None, reduce=True):
        if logvar is None:
            raise ValueError("the gaussian likelihood needs the model's logvar")
        logvar = logvar.expand_as(out)
        per_pixel = -0.5 * (_LOG_2PI + logvar + (x - out).square() * torch.exp(-logvar))
        return _reduce(per_pixel, reduce)

    def sample(self, out, *, logvar=None, generator=None):
        if logvar is None:
            raise ValueError("the gaussian likelihood needs the model's logvar")
        noise = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        x = out + torch.exp(0.5 * logvar) * noise
        return x.clamp(0, 1) if self.bounded else x

    def mean(self, out):
        return out.clamp(0, 1) if self.bounded else out


class DiscretisedLogistic(PixelLikelihood):
    """A logistic of mean ``out[:, 0]`` and log-scale ``out[:, 1]`` on ``[0, 1]``, integrated
    over each grey level's bin of width ``1 / (L - 1)``; the end bins reach to infinity, so the
    ``L`` probabilities sum to one (PixelCNN++, Salimans et al. 2017, one component).

    Example:
        >>> lik = DiscretisedLogistic(num_levels=5)
        >>> out = torch.tensor([0.3, -1.0]).view(1, 2, 1)
        >>> x = torch.arange(5.0).view(5, 1) / 4
        >>> p = lik.log_prob(x, out.expand(5, 2, 1)).exp()
        >>> round(p.sum().item(), 6)
        1.0
    """

    name, discrete, outputs_per_pixel = "logistic", True, 2

    def _split(self, out):
        if out.shape[1] != 2:
            raise ValueError(f"the logistic likelihood needs (B, 2, ...) outputs, got "
                             f"{tuple(out.shape)}")
        return out[:, 0], out[:, 1].clamp(min=-7.0)                      # (B, *shape) each

    def log_prob(self, x, out, *, levels=None, logvar=None, reduce=True):
        mu, log_s = self._split(out)
        levels = self.levels(x, levels)
        centre = from_levels(levels, self.num_levels, out.dtype)          # (B, *shape)
        half, inv_s = 0.5 / (self.num_levels - 1), torch.exp(-log_s)
        upper, lower = inv_s * (centre + half - mu), inv_s * (centre - half - mu)
        # log(sigmoid(u) - sigmoid(l)) = log sigmoid(u) + log(1 - exp(-(softplus... ))):
        # written as log sigmoid(u) + log1p(-exp(log sigmoid(l) - log sigmoid(u)))
        log_cdf_upper, log_cdf_lower = F.logsigmoid(upper), F.logsigmoid(lower)
        interior = log_cdf_upper + torch.log1p(-torch.exp(log_cdf_lower - log_cdf_upper)
                                               .clamp(max=1 - 1e-7))
        first = log_cdf_upper                                             # P(X <= half)
        last = F.logsigmoid(-lower)                                       # P(X > 1 - half)
        per_pixel = torch.where(levels == 0, first,
                                torch.where(levels == self.num_levels - 1, last, interior))
        return _reduce(per_pixel, reduce)

    def sample(self, out, *, logvar=None, generator=None):
        mu, log_s = self._split(out)
        u = torch.rand(mu.shape, generator=generator, device=out.device,
                       dtype=out.dtype).clamp(1e-5, 1 - 1e-5)
        x = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))      # inverse CDF
        return from_levels(to_levels(x.clamp(0, 1), self.num_levels), self.num_levels)

    def mean(self, out):
        return self._split(out)[0].clamp(0, 1)


LIKELIHOODS: dict[str, type[PixelLikelihood]] = {
    cls.name: cls for cls in (Bernoulli, Gaussian, Categorical, DiscretisedLogistic)}


def likelihood(name: str, num_levels: int = 17, bounded: bool = True) -> PixelLikelihood:
    """The likelihood object named ``name`` (a key of ``LIKELIHOODS``); ``bounded=False`` for
    a Gaussian over real features rather than images in ``[0, 1]``."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; valid: {list(LIKELIHOODS)}")
    return LIKELIHOODS[name](num_levels, bounded)
