"""The losses of GANs and VAEs, written once and tested against torch's own (Chapters 2-4).

GAN losses take *logits*: the discriminator's output before the sigmoid, ``D(x) = sigmoid(t)``
(for WGAN and hinge, the critic's unbounded score). Working with logits and ``softplus`` keeps the
logarithms finite where ``log(sigmoid(t))`` would underflow:

    -log sigmoid(t)     = softplus(-t)
    -log(1 - sigmoid(t)) = softplus(t)

VAE terms are log-densities and a KL divergence *per example*: each is summed over every
non-batch dimension and returned with shape ``(B,)``, so that ``-ELBO = -log p(x|z) + KL`` is in
nats per image and a mean over the batch is the caller's choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "GAN_LOSSES", "discriminator_loss", "generator_loss", "gradient_penalty", "gaussian_kl",
    "log_normal", "log_bernoulli", "log_categorical", "reparameterize",
]

GAN_LOSSES = ("minimax", "nonsaturating", "wgan", "hinge")

_LOG_2PI = math.log(2.0 * math.pi)


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss kind {kind!r}; valid kinds: {list(GAN_LOSSES)}")


def _sum_per_example(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the first: ``(B, ...) -> (B,)``."""
    if t.ndim == 0:
        raise ValueError("expected a batch (B, ...), got a scalar tensor")
    return t.reshape(t.shape[0], -1).sum(dim=1)


# ------------------------------------------------------------------------------------------- GANs

def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       kind: str = "nonsaturating") -> torch.Tensor:
    """The loss the discriminator (or critic) minimises, a scalar mean over the batch.

    ``minimax`` and ``nonsaturating`` share the discriminator loss of Goodfellow et al. (2014),
    ``-E_x[log D(x)] - E_z[log(1 - D(G(z)))]``; they differ only for the generator. ``wgan`` is
    the critic loss of Arjovsky et al. (2017), ``E[f(G(z))] - E[f(x)]`` (add ``gradient_penalty``
    for WGAN-GP); ``hinge`` is ``E[relu(1 - f(x))] + E[relu(1 + f(G(z)))]`` (Miyato et al. 2018).

    Args:
        real_logits: discriminator outputs on real data, any shape (usually ``(B,)`` or ``(B, 1)``).
        fake_logits: outputs on generated data.
        kind: one of ``GAN_LOSSES``.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: unknown ``kind``.

    Example:
        >>> t = torch.zeros(4)  # D = 1/2 everywhere: the loss is 2 log 2
        >>> round(discriminator_loss(t, t).item(), 4), round(2 * math.log(2), 4)
        (1.3863, 1.3863)
    """
    _check_kind(kind)
    if kind in ("minimax", "nonsaturating"):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "wgan":
        return fake_logits.mean() - real_logits.mean()
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The loss the generator minimises, a scalar mean over the batch.

    ``minimax`` is the original game's ``E_z[log(1 - D(G(z)))] = -E[softplus(t)]``, whose gradient
    vanishes when the discriminator confidently rejects fakes (``t`` very negative), which is
    exactly the state early in training. ``nonsaturating`` is ``-E_z[log D(G(z))] =
    E[softplus(-t)]``, the fix proposed in the same paper. ``wgan`` and ``hinge`` both use
    ``-E[f(G(z))]``. ``fake_logits`` are the discriminator's outputs on generated data; ``kind``
    is one of ``GAN_LOSSES`` (any other raises a ``ValueError``); the result is a scalar tensor.

    Example:
        >>> t = torch.full((3,), -5.0)  # the discriminator is sure these are fake
        >>> round(generator_loss(t, "minimax").item(), 4)  # log(1 - sigmoid(-5)), nearly flat
        -0.0067
        >>> round(generator_loss(t, "nonsaturating").item(), 4)  # -log sigmoid(-5), steep
        5.0067
    """
    _check_kind(kind)
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "nonsaturating":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor) -> torch.Tensor:
    """The WGAN-GP penalty ``E[(||grad f(x_hat)|| - 1)^2]`` of Gulrajani et al. (2017).

    ``x_hat`` lies on the straight line between a real and a fake example, at a uniformly random
    point drawn per example; the gradient norm is taken over all non-batch dimensions. The
    penalty is differentiable with respect to the critic's parameters (``create_graph=True``);
    multiply it by the paper's ``lambda = 10`` and add it to the critic loss.

    Args:
        critic: maps a batch ``(B, ...)`` to scores (any shape with ``B`` first).
        real: real examples ``(B, ...)``.
        fake: generated examples with the same shape (detached here).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: ``real`` and ``fake`` differ in shape.

    Example:
        >>> w = torch.tensor([3.0, 4.0])  # a linear critic with ||grad|| = 5: penalty (5-1)^2
        >>> gradient_penalty(lambda x: x @ w, torch.randn(8, 2), torch.randn(8, 2)).item()
        16.0
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    real = real.detach()
    fake = fake.detach()
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device,
                       dtype=real.dtype)  # (B, 1, ..., 1)
    x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)  # (B, ...)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norm = grad.reshape(grad.shape[0], -1).norm(2, dim=1)  # (B,)
    return ((norm - 1.0) ** 2).mean()


# ------------------------------------------------------------------------------------------- VAEs

def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` per example, in nats, shape ``(B,)``.

    The closed form of Kingma and Welling (2014), appendix B:
    ``0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)``.

    Example:
        >>> gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).tolist()  # q equals the prior
        [0.0, 0.0]
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    return 0.5 * _sum_per_example(mu.pow(2) + logvar.exp() - 1.0 - logvar)


def log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(x; mu, diag exp(logvar))`` per example, shape ``(B,)``.

    ``mu`` and ``logvar`` broadcast against ``x`` (a shared scalar variance is allowed).

    Example:
        >>> round(log_normal(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1)).item(), 4)
        -0.9189
    """
    try:
        shape = torch.broadcast_shapes(x.shape, mu.shape, logvar.shape)
    except RuntimeError as err:
        raise ValueError(f"x {tuple(x.shape)}, mu {tuple(mu.shape)} and logvar "
                         f"{tuple(logvar.shape)} do not broadcast") from err
    if shape != x.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must broadcast "
                         f"to the shape of x {tuple(x.shape)}")
    log_density = -0.5 * (_LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar))
    return _sum_per_example(log_density)


def log_bernoulli(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``log Bernoulli(x; sigmoid(logits))`` per example, shape ``(B,)``.

    ``x`` is usually binary; values in ``[0, 1]`` give the cross-entropy often used with grey
    images (not a normalised density for non-binary ``x``).

    Example:
        >>> round(log_bernoulli(torch.ones(1, 2), torch.zeros(1, 2)).item(), 4)  # 2 log(1/2)
        -1.3863
    """
    if x.shape != logits.shape:
        raise ValueError(f"x and logits must have the same shape, got {tuple(x.shape)} and "
                         f"{tuple(logits.shape)}")
    return -_sum_per_example(
        F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none"))


def log_categorical(levels: torch.Tensor, logits: torch.Tensor,
                    check_range: bool = True) -> torch.Tensor:
    """``log Categorical(levels; softmax(logits))`` per example, shape ``(B,)``.

    Args:
        levels: integer grey levels ``(B, ...)`` in ``0 .. L-1`` (digits: ``(B, 1, 8, 8)``, L=17).
        logits: ``(B, L, ...)``: one unnormalised log-probability per level, on dimension 1.
        check_range: check that every level lies in ``0 .. L-1``. The check reads the levels
            back to the host, which makes a GPU wait: a training loop checks its data once
            (``VAE.check_data``) and passes ``False``.

    Raises:
        ValueError: shapes disagree, or a level lies outside ``0 .. L-1``.

    Example:
        >>> levels = torch.zeros(1, 1, 8, 8, dtype=torch.long)
        >>> round(log_categorical(levels, torch.zeros(1, 17, 1, 8, 8)).item(), 2)  # 64 log(1/17)
        -181.33
    """
    if levels.is_floating_point():
        raise ValueError(f"levels must be integers, got dtype {levels.dtype}")
    if logits.ndim != levels.ndim + 1 or logits.shape[0] != levels.shape[0] \
            or logits.shape[2:] != levels.shape[1:]:
        raise ValueError(f"logits must be (B, L, ...) for levels (B, ...), got logits "
                         f"{tuple(logits.shape)} and levels {tuple(levels.shape)}")
    num_levels = logits.shape[1]
    if check_range and levels.numel() and (int(levels.min()) < 0
                                           or int(levels.max()) >= num_levels):
        raise ValueError(f"levels must lie in 0..{num_levels - 1}, got values from "
                         f"{int(levels.min())} to {int(levels.max())}")
    return -_sum_per_example(F.cross_entropy(logits, levels.long(), reduction="none"))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``, differentiably.

    The reparameterisation trick of Kingma and Welling (2014): the randomness is in ``eps``,
    so gradients flow to ``mu`` and ``logvar``. Pass ``eps`` to reuse a draw, or a
    ``generator`` to seed it.

    Example:
        >>> z = reparameterize(torch.zeros(10000, 1), torch.full((10000, 1), math.log(4.0)))
        >>> abs(z.std().item() - 2.0) < 0.1
        True
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    if eps is None:
        eps = (torch.randn_like(mu) if generator is None else
               torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype))
    return mu + torch.exp(0.5 * logvar) * eps
