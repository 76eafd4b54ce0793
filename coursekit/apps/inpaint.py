"""Inpainting: masks, scores on the hidden pixels only, the baselines a sceptic tries first
(nearest neighbours, ridge regression, biharmonic smoothing) and completion by conditioning a
trained VAE (Chapter 8).

A mask is a boolean ``(H, W)`` tensor, ``True`` where a pixel is *hidden*. Every score compares a
completion with the ground truth on the hidden pixels alone: the visible ones are copied and
would flatter every method equally.

A VAE completes an image by sampling the hidden pixels ``x_m`` given the visible ones ``x_o``
from ``p(x_m | x_o) = integral p(x_m | z) p(z | x_o) dz``. Two samplers, both Markov chains on
``(z, x_m)`` that keep ``x_o`` fixed:

* pseudo-Gibbs (Rezende et al. 2014): ``z ~ q(z | x_o, x_m)``, then ``x_m ~ p(x_m | z)``. Simple,
  but its stationary law is only approximately ``p(x_m | x_o)``, since ``q`` is not the true
  posterior.
* Metropolis-within-Gibbs (Mattei and Frellsen 2018): the proposal ``z' ~ q(z | x_o, x_m)`` is
  accepted with probability ``min(1, [p(x_o|z') p(z') q(z|x)] / [p(x_o|z) p(z) q(z'|x)])``, which
  makes the chain exact in the limit of many steps.

A VAE trained with masks (``masked_training_data``) has an encoder ``q(z | x_o)`` of the visible
pixels: ``encoder_inpaint`` samples through it directly, and ``importance_inpaint`` reweights its
draws by ``p(x_o | z) p(z) / q(z | x_o)``, the imputation of MIWAE (Mattei and Frellsen 2019).

The mean of several sampled completions approximates the conditional mean ``E[x_m | x_o]``, the
completion of least expected squared error; one sample alone pays for its own noise (on average
twice the conditional variance), which is why a single sample loses to the mean in PSNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from coursekit.losses import log_normal, reparameterize
from coursekit.metrics.image import psnr
from coursekit.utils import eval_mode, to_numpy

__all__ = ["make_mask", "check_mask", "apply_mask", "masked_mse", "masked_psnr",
           "nearest_neighbour_inpaint", "ridge_inpaint", "biharmonic_inpaint", "InpaintConfig",
           "vae_inpaint", "masked_training_data", "encoder_inpaint", "importance_inpaint",
           "MASKED_FILL"]

MASK_KINDS = ("bottom", "top", "left", "right", "centre")


def make_mask(height: int, width: int, kind: str = "bottom",
              fraction: float = 0.5) -> torch.Tensor:
    """A boolean ``(H, W)`` mask, ``True`` on the hidden pixels.

    Args:
        height, width: the image size.
        kind: ``"bottom"``, ``"top"``, ``"left"``, ``"right"`` (that part of the image) or
            ``"centre"`` (a centred square).
        fraction: the share of rows (or columns) hidden; for ``"centre"``, the side of the square
            as a share of the image side.

    Example:
        >>> make_mask(4, 4, "bottom").sum().item(), make_mask(4, 4, "centre").nonzero().tolist()
        (8, [[1, 1], [1, 2], [2, 1], [2, 2]])
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid: {list(MASK_KINDS)}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    mask = torch.zeros(height, width, dtype=torch.bool)
    rows, cols = round(height * fraction), round(width * fraction)
    if kind == "bottom":
        mask[height - rows:] = True
    elif kind == "top":
        mask[:rows] = True
    elif kind == "left":
        mask[:, :cols] = True
    elif kind == "right":
        mask[:, width - cols:] = True
    else:
        top, left = (height - rows) // 2, (width - cols) // 2
        mask[top:top + rows, left:left + cols] = True
    check_mask(mask, (height, width))
    return mask


def check_mask(mask: torch.Tensor, image_shape) -> torch.Tensor:
    """Check that ``mask`` is a boolean ``(H, W)`` tensor matching the images' last two sides
    and hiding some but not all pixels; returns it.

    Raises:
        ValueError: a mask of the wrong shape or type, or one that hides nothing or everything
            (then there is nothing to score, or nothing to condition on).
    """
    if not torch.is_tensor(mask) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean tensor (True = hidden), got "
                         f"{mask.dtype if torch.is_tensor(mask) else type(mask).__name__}")
    side = tuple(image_shape)[-2:]
    if tuple(mask.shape) != side:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the images are "
                         f"{tuple(image_shape)}: the mask must be (H, W) = {side}")
    hidden = int(mask.sum())
    if hidden == 0:
        raise ValueError("the mask hides no pixel: there is nothing to inpaint or score")
    if hidden == mask.numel():
        raise ValueError(f"the mask hides all {hidden} pixels: nothing is left to condition on")
    return mask


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if not torch.is_tensor(x) or x.ndim != 4:
        raise ValueError(f"{name} must be a (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")


def apply_mask(x: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``x`` with its hidden pixels set to ``fill`` (what a method is allowed to see)."""
    _check_images(x)
    check_mask(mask, x.shape)
    return x.masked_fill(mask.to(x.device), fill)


def masked_mse(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden pixels of each image, ``(N,)`` float64."""
    _check_images(x_hat, "x_hat")
    _check_images(x)
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and "
                         f"{tuple(x.shape)}")
    check_mask(mask, x.shape)
    m = mask.to(x.device).expand_as(x)                                   # (N, C, H, W)
    sq = (x_hat.double() - x.double()).square() * m                      # (N, C, H, W)
    return sq.flatten(1).sum(1) / m[0].sum()


def masked_psnr(x_hat: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB on the hidden pixels only, per image ``(N,)`` float64 (``inf`` if exact):
    ``coursekit.metrics.psnr`` with ``mask=``.

    Example:
        >>> x = torch.zeros(1, 1, 2, 2); x_hat = x.clone(); x_hat[0, 0, 1] = 0.1
        >>> m = make_mask(2, 2, "bottom")
        >>> round(float(masked_psnr(x_hat, x, m)[0]), 6)  # the hidden row is off by 0.1
        20.0
    """
    _check_images(x_hat, "x_hat")
    _check_images(x)
    check_mask(mask, x.shape)
    return psnr(x_hat, x, data_range, mask=mask)


def _visible_hidden(x: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    flat = x.flatten(2)                                                   # (N, C, H*W)
    m = mask.flatten()
    return (flat[:, :, ~m].flatten(1).cpu().double().numpy(),             # (N, C * visible)
            flat[:, :, m].flatten(1).cpu().double().numpy())              # (N, C * hidden)


def _fill(x: torch.Tensor, mask: torch.Tensor, hidden_values: np.ndarray) -> torch.Tensor:
    out = x.clone()
    flat = out.view(x.shape[0], x.shape[1], -1)                           # (N, C, H*W), a view
    n_hidden = int(mask.sum())
    values = torch.as_tensor(hidden_values, dtype=x.dtype).view(x.shape[0], x.shape[1], n_hidden)
    flat[:, :, mask.flatten()] = values.clamp(0, 1).to(x.device)
    return out


def nearest_neighbour_inpaint(x: torch.Tensor, mask: torch.Tensor, train: torch.Tensor,
                              k: int = 1) -> torch.Tensor:
    """Fill the hidden pixels with the mean of the ``k`` training images closest on the visible
    pixels (Euclidean): the first baseline, which needs no model.

    Args:
        x: ``(N, C, H, W)`` images to complete (their hidden pixels are never read).
        mask: ``(H, W)`` boolean, True = hidden.
        train: ``(M, C, H, W)`` complete images to copy from.
        k: neighbours averaged (1: copy one real image's pixels).

    Returns:
        ``(N, C, H, W)``: ``x`` with its hidden pixels filled.
    """
    from sklearn.neighbors import KNeighborsRegressor

    _check_images(x)
    _check_images(train, "train")
    check_mask(mask, x.shape)
    if x.shape[1:] != train.shape[1:]:
        raise ValueError(f"x and train must hold images of the same shape, got "
                         f"{tuple(x.shape[1:])} and {tuple(train.shape[1:])}")
    if not 1 <= k <= len(train):
        raise ValueError(f"k must lie in [1, {len(train)}] (the training images), got {k}")
    visible, _ = _visible_hidden(x, mask)
    train_visible, train_hidden = _visible_hidden(train, mask)
    knn = KNeighborsRegressor(n_neighbors=k).fit(train_visible, train_hidden)
    return _fill(x, mask, knn.predict(visible))


def ridge_inpaint(x: torch.Tensor, mask: torch.Tensor, train: torch.Tensor,
                  alpha: float = 1.0) -> torch.Tensor:
    """Fill the hidden pixels by ridge regression from the visible ones, fitted on ``train``:
    the best *linear* guess of the conditional mean."""
    from sklearn.linear_model import Ridge

    _check_images(x)
    _check_images(train, "train")
    check_mask(mask, x.shape)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    visible, _ = _visible_hidden(x, mask)
    train_visible, train_hidden = _visible_hidden(train, mask)
    ridge = Ridge(alpha=alpha).fit(train_visible, train_hidden)
    return _fill(x, mask, ridge.predict(visible))


def biharmonic_inpaint(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scikit-image's biharmonic inpainting (smooth continuation of the visible pixels; it knows
    nothing about digits or faces), image by image."""
    from skimage.restoration import inpaint_biharmonic

    _check_images(x)
    check_mask(mask, x.shape)
    m = to_numpy(mask)
    out = x.clone()
    for i, image in enumerate(x.cpu().double().numpy()):                  # image: (C, H, W)
        filled = inpaint_biharmonic(np.moveaxis(image, 0, -1), m, channel_axis=-1)
        out[i] = torch.as_tensor(np.moveaxis(filled, -1, 0)).clamp(0, 1).to(out)
    return out


@dataclass
class InpaintConfig:
    num_samples: int = 8        # completions drawn per image (their mean estimates E[x_m | x_o])
    steps: int = 50             # Markov-chain steps per sample
    method: str = "mwg"         # "mwg" (Metropolis-within-Gibbs) or "pseudo_gibbs"
    init: str = "mean"          # start of x_m: "mean" (training mean) or "zeros"
    seed: int = 0               # seeds the chain's random numbers


def _pixel_log_lik(vae, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
    """``log p(x_i | z)`` per pixel, ``(B, *data_shape)``, for the non-autoregressive VAE."""
    return vae.likelihood.log_prob(x, decoded, logvar=vae.logvar_x, reduce=False)


@torch.no_grad()
def vae_inpaint(vae, x: torch.Tensor, mask: torch.Tensor, config: InpaintConfig | None = None,
                fill: torch.Tensor | None = None) -> torch.Tensor:
    """Sample completions of ``x``'s hidden pixels from a trained (unconditional) VAE.

    Args:
        vae: a ``coursekit.models.VAE`` without autoregressive decoder or classes.
        x: ``(N, C, H, W)`` images; only their visible pixels are read.
        mask: ``(H, W)`` boolean, True = hidden.
        config: sampler settings.
        fill: ``(C, H, W)`` start values of the hidden pixels (``init="mean"``: pass the training
            mean; default zeros).

    Returns:
        ``(S, N, C, H, W)``: ``S = num_samples`` completions; visible pixels equal ``x``'s.
        ``samples.mean(0)`` approximates the conditional mean.

    Example:
        >>> from coursekit.models import VAE, VAEConfig
        >>> vae = VAE(VAEConfig(latent_dim=2, hidden=16))
        >>> x = torch.rand(3, 1, 8, 8); m = make_mask(8, 8)
        >>> s = vae_inpaint(vae, x, m, InpaintConfig(num_samples=2, steps=3))
        >>> s.shape, bool((s[:, :, :, ~m] == x[:, :, ~m]).all())
        (torch.Size([2, 3, 1, 8, 8]), True)
    """
    c = config or InpaintConfig()
    if vae.config.autoregressive or vae.config.num_classes:
        raise ValueError("vae_inpaint needs an unconditional VAE without autoregressive decoder")
    if c.method not in ("mwg", "pseudo_gibbs"):
        raise ValueError(f"unknown method {c.method!r}; valid: ['mwg', 'pseudo_gibbs']")
    if c.num_samples < 1 or c.steps < 1:
        raise ValueError(f"num_samples and steps must be >= 1, got {c.num_samples}, {c.steps}")
    _check_images(x)
    check_mask(mask, x.shape)
    device = next(vae.parameters()).device
    with eval_mode(vae):
        gen = torch.Generator(device=device).manual_seed(c.seed)
        S, N = c.num_samples, x.shape[0]
        hidden = mask.to(device).expand(S * N, *x.shape[1:])                  # (S*N, C, H, W)
        x_obs = x.to(device).repeat(S, 1, 1, 1)                               # (S*N, C, H, W)
        start = torch.zeros(x.shape[1:], device=device) if fill is None else fill.to(device)
        cur = torch.where(hidden, start.expand_as(x_obs), x_obs)              # (S*N, C, H, W)
        latent = vae.config.latent_dim
        zero = torch.zeros(1, device=device)
        z = log_target = None
        for _ in range(c.steps):
            mu, logvar = vae.encode(cur)                                      # (S*N, latent) each
            eps = torch.randn(mu.shape, generator=gen, device=device)
            z_new = reparameterize(mu, logvar, eps)                     # z' ~ q(z | x)
            decoded_new = vae.decode(z_new)
            log_obs_new = (_pixel_log_lik(vae, cur, decoded_new) * ~hidden).flatten(1).sum(1)
            log_target_new = log_obs_new + log_normal(z_new, zero.expand(latent),
                                                      zero.expand(latent))
            if c.method == "mwg" and z is not None:
                # log acceptance ratio: target(z') q(z | x) / (target(z) q(z' | x)), with q given by
                # the current completion x (Mattei and Frellsen 2018, Algorithm 1)
                log_q_old = log_normal(z, mu, logvar)
                log_q_new = log_normal(z_new, mu, logvar)
                log_alpha = log_target_new - log_target + log_q_old - log_q_new  # (S*N,)
                u = torch.rand(log_alpha.shape, generator=gen, device=device)
                accept = torch.log(u) < log_alpha                             # (S*N,)
                z = torch.where(accept[:, None], z_new, z)
                log_target = torch.where(accept, log_target_new, log_target)
                decoded = vae.decode(z)
            else:
                z, log_target, decoded = z_new, log_target_new, decoded_new
            x_m = _sample_pixels(vae, decoded, gen)                           # (S*N, C, H, W)
            cur = torch.where(hidden, x_m, x_obs)
    return cur.view(S, N, *x.shape[1:]).cpu()


def _sample_pixels(vae, decoded: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One draw of every pixel from ``p(x | z)`` given the decoder's output, seeded by ``gen``."""
    return vae.pixels(decoded, generator=gen)


# the value a hidden pixel takes in a mask-trained VAE's input: never a grey level
MASKED_FILL = -1.0


def masked_training_data(images: torch.Tensor, masks: list[torch.Tensor],
                         levels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Training data for a VAE that learns to complete images: every image once with each mask
    (hidden pixels set to ``MASKED_FILL``) and once complete, each paired with the *complete*
    image as the target of ``p(x | z)``.

    The course's VAE with the categorical likelihood scores ``batch["levels"]`` and encodes
    ``batch["x"]``: so the encoder sees the visible pixels only, and the ELBO asks it to explain
    the whole image (the idea of training with masks, e.g. Ivanov et al. 2019, without their
    learned prior). Train with ``coursekit.train.fit`` as any VAE. (The Bernoulli and Gaussian
    likelihoods score ``batch["x"]`` itself, the masked input: they cannot be trained this way.)

    Args:
        images: ``(N, C, H, W)`` in [0, 1]; masks: ``(H, W)`` booleans; levels: ``(N, C, H, W)``
            integer grey levels of the complete images (the targets).

    Returns:
        ``{"x": ((len(masks) + 1) N, C, H, W), "levels": ((len(masks) + 1) N, C, H, W)}``.
    """
    _check_images(images, "images")
    if not torch.is_tensor(levels) or levels.shape != images.shape or levels.is_floating_point():
        got = (levels.dtype, tuple(levels.shape)) if torch.is_tensor(levels) else levels
        raise ValueError(f"levels must be an integer tensor of the images' shape "
                         f"{tuple(images.shape)}, got {got}")
    xs = [images] + [apply_mask(images, m, MASKED_FILL) for m in masks]
    return {"x": torch.cat(xs), "levels": levels.repeat(len(xs), *([1] * (levels.ndim - 1)))}


@torch.no_grad()
def encoder_inpaint(vae, x: torch.Tensor, mask: torch.Tensor, num_samples: int = 8,
                    seed: int = 0, pixel_mean: bool = False) -> torch.Tensor:
    """Complete ``x`` with a VAE trained on ``masked_training_data``: ``z ~ q(z | x_o)``, then
    the hidden pixels ``~ p(x_m | z)``; one encoder and one decoder pass per sample.

    With ``pixel_mean=True`` each completion is ``E[x_m | z]`` instead of a draw from
    ``p(x_m | z)``: the average over samples then estimates the same conditional mean
    ``E[x_m | x_o]`` without the pixel noise (Rao-Blackwellisation), so it needs fewer samples.

    Returns:
        ``(S, N, C, H, W)`` completions; visible pixels equal ``x``'s.
    """
    if vae.config.autoregressive or vae.config.num_classes or \
            vae.config.likelihood != "categorical":
        raise ValueError("encoder_inpaint needs an unconditional, categorical-likelihood VAE "
                         "without autoregressive decoder, trained on masked_training_data")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    visible = apply_mask(x, mask, MASKED_FILL)
    device = next(vae.parameters()).device
    with eval_mode(vae):
        gen = torch.Generator(device=device).manual_seed(seed)
        mu, logvar = vae.encode(visible.to(device))                           # (N, latent) each
        out = []
        for _ in range(num_samples):
            eps = torch.randn(mu.shape, generator=gen, device=device)
            z = reparameterize(mu, logvar, eps)                         # z ~ q(z | x_o)
            decoded = vae.decode(z)
            x_m = (vae.pixels(decoded, mean=True) if pixel_mean
                   else _sample_pixels(vae, decoded, gen)).cpu()               # (N, C, H, W)
            out.append(torch.where(mask, x_m, x))
    return torch.stack(out)                                               # (S, N, C, H, W)


@torch.no_grad()
def importance_inpaint(vae, x: torch.Tensor, mask: torch.Tensor, k: int = 64, seed: int = 0,
                       draws: int = 0) -> torch.Tensor:
    """Importance-weighted completion of ``x``'s hidden pixels by a VAE trained on
    ``masked_training_data``: MIWAE's imputation (Mattei and Frellsen 2019, section 3).

    ``k`` latent points ``z_l ~ q(z | x_o)`` are weighted by
    ``w_l ∝ p(x_o | z_l) p(z_l) / q(z_l | x_o)`` (self-normalised importance sampling, the
    visible pixels alone scored), which corrects the encoder towards the true posterior
    ``p(z | x_o)``. With ``draws=0`` the completion is ``sum_l w_l E[x_m | z_l]``, an estimate
    of the conditional mean ``E[x_m | x_o]`` (the least-squares completion). With ``draws > 0``
    it returns that many completions drawn by sampling-importance-resampling: pick ``z_l`` with
    probability ``w_l``, then ``x_m ~ p(x_m | z_l)`` (approximate draws from ``p(x_m | x_o)``).

    Returns:
        ``(N, C, H, W)`` for ``draws=0``, else ``(draws, N, C, H, W)``; visible pixels equal
        ``x``'s.

    Example:
        >>> from coursekit.models import VAE, VAEConfig
        >>> vae = VAE(VAEConfig(latent_dim=2, hidden=16))
        >>> x = torch.randint(0, 17, (3, 1, 8, 8)) / 16; m = make_mask(8, 8)
        >>> mean = importance_inpaint(vae, x, m, k=4)
        >>> s = importance_inpaint(vae, x, m, k=4, draws=2)
        >>> mean.shape, s.shape, bool((s[:, :, :, ~m] == x[:, :, ~m]).all())
        (torch.Size([3, 1, 8, 8]), torch.Size([2, 3, 1, 8, 8]), True)
    """
    if vae.config.autoregressive or vae.config.num_classes:
        raise ValueError("importance_inpaint needs an unconditional VAE without autoregressive "
                         "decoder, trained on masked_training_data")
    if k < 1 or draws < 0:
        raise ValueError(f"need k >= 1 and draws >= 0, got k={k}, draws={draws}")
    _check_images(x)
    check_mask(mask, x.shape)
    device = next(vae.parameters()).device
    visible = apply_mask(x, mask, MASKED_FILL).to(device)
    levels = vae.likelihood.levels(x).to(device)                          # (N, C, H, W)
    seen = (~mask).to(device)                                             # (H, W)
    N = x.shape[0]
    with eval_mode(vae):
        gen = torch.Generator(device=device).manual_seed(seed)
        mu, logvar = vae.encode(visible)                                  # (N, latent) each
        zero = torch.zeros_like(mu)
        log_w, means, decoded_all = [], [], []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=gen, device=device)
            z = reparameterize(mu, logvar, eps)                           # z_l ~ q(z | x_o)
            decoded = vae.decode(z)
            log_obs = vae.likelihood.log_prob(x.to(device), decoded, levels=levels,
                                              logvar=vae.logvar_x, reduce=False)
            log_obs = (log_obs * seen).flatten(1).sum(1)                  # log p(x_o | z), (N,)
            log_w.append(log_obs + log_normal(z, zero, zero) - log_normal(z, mu, logvar))
            means.append(vae.pixels(decoded, mean=True))                  # E[x | z_l]
            if draws:
                decoded_all.append(decoded)
        w = torch.stack(log_w).softmax(0)                                 # (k, N), normalised
        if not draws:
            x_m = torch.einsum("kn,knchw->nchw", w, torch.stack(means))   # (N, C, H, W)
            return torch.where(mask.to(device), x_m, x.to(device)).cpu()
        out = []
        for _ in range(draws):
            pick = torch.multinomial(w.T, 1, generator=gen).squeeze(1)    # (N,) an index l each
            decoded = torch.stack(decoded_all)[pick, torch.arange(N, device=device)]
            x_m = vae.pixels(decoded, generator=gen)                      # x_m ~ p(x_m | z_l)
            out.append(torch.where(mask.to(device), x_m, x.to(device)).cpu())
    return torch.stack(out)                                               # (draws, N, C, H, W)
