"""Diffusion models and flow matching: noise schedules, a time- and class-conditioned denoiser,
the training losses, the DDPM / DDIM / flow samplers, classifier-free guidance and the
variational bound in nats (Chapter 9).

DDPM (Ho et al. 2020) adds Gaussian noise in ``T`` steps, ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t)
x_{t-1}, beta_t I)``, so that in closed form

    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),  alpha_bar_t = prod_s (1 - beta_s),

and trains a network to predict the noise ``eps`` of ``x_t = sqrt(alpha_bar_t) x_0 +
sqrt(1 - alpha_bar_t) eps`` (``objective="eps"``), or the velocity ``v = sqrt(alpha_bar_t) eps -
sqrt(1 - alpha_bar_t) x_0`` (``"v"``, Salimans and Ho 2022). Flow matching / rectified flow
(Lipman et al. 2023; Liu et al. 2023) uses the straight path ``x_t = (1 - t) x_0 + t eps``,
``t`` in [0, 1], and regresses the velocity ``eps - x_0`` (``objective="flow"``); it samples by
integrating the ODE ``dx/dt = u(x, t)`` from ``t = 1`` to 0 with Euler steps. DDIM (Song et al.
2021) samples the diffusion models on a subsequence of the ``T`` steps, deterministically at
``eta = 0``; ``eta = 1`` is DDPM's ancestral sampler on that subsequence. Classifier-free guidance
(Ho and Salimans 2022) trains one network with and without the label (label dropout) and mixes
the two predictions at sampling, ``eps_c + w (eps_c - eps_u)``.

Images live in ``[0, 1]`` outside this module (as ``coursekit.data`` gives them) and in
``[-1, 1]`` inside. For data with ``num_levels`` grey levels (the digits: 17), ``nll_bound``
scores the levels themselves, on the same scale as the categorical VAE of Chapter 4: the last
step ``p(x_0 | x_1)`` is a Gaussian discretised into one bin per level (Ho et al. 2020, eq. 13),
so no dequantisation noise is involved and the bound is on ``-log P(levels)`` in nats.
The schedules are computed in float64 and stored as float32 buffers (with ``1 - alpha_bar``
computed in float64 too, so that small noise levels keep their precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data.levels import to_levels
from coursekit.models.layers import check_batch
from coursekit.models.base import TrainableModel
from coursekit.utils import eval_mode

__all__ = ["DiffusionConfig", "Denoiser", "Diffusion", "make_betas", "timestep_embedding",
           "discretized_gaussian_log_likelihood", "SCHEDULES", "OBJECTIVES", "METHODS"]

SCHEDULES = ("linear", "cosine")
OBJECTIVES = ("eps", "v", "flow")
METHODS = ("ddpm", "ddim", "flow")


@dataclass
class DiffusionConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W), values in [0, 1]
    timesteps: int = 1000          # T, the number of noising steps (diffusion objectives)
    schedule: str = "cosine"       # "linear" (Ho et al. 2020) or "cosine" (Nichol, Dhariwal 2021)
    objective: str = "eps"         # the network predicts "eps", "v", or the "flow" velocity
    hidden: int = 512              # width of the denoiser's residual MLP
    depth: int = 3                 # residual blocks of the denoiser
    time_features: int = 128       # sinusoidal features of the time
    num_classes: int = 0           # > 0: class-conditional, with classifier-free guidance
    label_dropout: float = 0.1     # probability of dropping the label in training (guidance)
    num_levels: int | None = 17    # grey levels of the data (digits 17), for nll_bound and snap
    snap: bool = True              # nll_bound: combine the net's x0 with the levels (see predict)
    x0_error: float = 0.1          # the std of the net's x0 error that ``snap`` assumes
    clip_x0: bool = True           # clamp the predicted x0 to [-1, 1] (sampling and bound)
    # Min-SNR-gamma weighting (Hang et al. 2023): the loss is the x0 error weighted by
    # min(SNR_t, gamma), written for the chosen target; None trains on the plain target MSE
    min_snr_gamma: float | None = None

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {list(SCHEDULES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid: {list(OBJECTIVES)}")
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, got {self.timesteps}")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.num_levels is not None and self.num_levels < 2:
            raise ValueError(f"num_levels must be >= 2 or None, got {self.num_levels}")
        if self.x0_error <= 0:
            raise ValueError(f"x0_error must be positive, got {self.x0_error}")
        if self.min_snr_gamma is not None and not self.min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be positive or None, got {self.min_snr_gamma}")


def make_betas(schedule: str, timesteps: int) -> torch.Tensor:
    """The noise schedule ``beta_1 .. beta_T`` in float64, shape ``(T,)``.

    ``"linear"``: Ho et al. (2020), 1e-4 to 0.02 for T = 1000 (scaled by 1000 / T so that other
    T keep the same total noise). ``"cosine"``: Nichol and Dhariwal (2021), ``alpha_bar_t =
    cos^2((t/T + s) / (1 + s) * pi / 2)`` with s = 0.008, beta clipped at 0.999.

    Example:
        >>> b = make_betas("linear", 1000)
        >>> b.dtype, round(float(b[0]), 6), round(float(b[-1]), 6)
        (torch.float64, 0.0001, 0.02)
    """
    if schedule == "linear":
        scale = 1000 / timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    if schedule == "cosine":
        s = 0.008
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")


def discretized_gaussian_log_likelihood(levels: torch.Tensor, mean: torch.Tensor, std,
                                        num_levels: int) -> torch.Tensor:
    """``log P(level)`` per pixel under ``N(mean, std^2)`` integrated over the level's bin.

    Level ``k`` of ``L`` sits at ``c_k = -1 + 2k / (L - 1)`` in [-1, 1] with the bin
    ``[c_k - 1/(L-1), c_k + 1/(L-1)]``; the first and last bins reach to -inf and +inf, so the
    ``L`` probabilities sum to one (Ho et al. 2020, eq. 13). Computed in float64, on the side of
    the smaller tail, so that a narrow Gaussian far in a tail stays finite.

    Example:
        >>> levels = torch.arange(17)
        >>> p = discretized_gaussian_log_likelihood(levels, torch.full((17,), 0.3), 0.2, 17).exp()
        >>> round(float(p.sum()), 6)
        1.0
    """
    if levels.is_floating_point():
        raise ValueError(f"levels must be integers, got dtype {levels.dtype}")
    if levels.numel() and (int(levels.min()) < 0 or int(levels.max()) >= num_levels):
        raise ValueError(f"levels must lie in 0..{num_levels - 1}, got values from "
                         f"{int(levels.min())} to {int(levels.max())}")
    half = 1.0 / (num_levels - 1)                                          # half a bin in [-1, 1]
    std = torch.as_tensor(std, dtype=torch.float64, device=mean.device)
    centre = -1 + 2 * levels.double() / (num_levels - 1) - mean.double()
    upper = torch.where(levels == num_levels - 1, torch.inf, centre + half) / std
    lower = torch.where(levels == 0, -torch.inf, centre - half) / std
    flip = lower > 0     # both bounds in the upper tail: use the mirror image
    a, b = torch.where(flip, -upper, lower), torch.where(flip, -lower, upper)
    log_ratio = torch.special.log_ndtr(a) - torch.special.log_ndtr(b)     # <= 0
    return torch.special.log_ndtr(b) + torch.log((-torch.expm1(log_ratio)).clamp(min=1e-300))


def timestep_embedding(s: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of times ``s`` in [0, 1] (Vaswani et al. 2017), ``(B,) -> (B, dim)``.

    The time is scaled by 1000 first, as for the integer steps of DDPM, so that both the
    diffusion steps ``t / T`` and the flow's continuous ``t`` use the same frequencies.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=s.device) / half)  # (dim/2,)
    angles = 1000.0 * s.float()[:, None] * freqs[None, :]                                # (B, dim/2)
    emb = torch.cat([angles.cos(), angles.sin()], dim=1)                                 # (B, 2*half)
    return F.pad(emb, (0, dim - 2 * half))


class _Block(nn.Module):
    """A pre-norm residual MLP block whose hidden layer is shifted by the time/label embedding."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1, self.fc2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.emb = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        r = F.silu(self.fc1(self.norm(h)) + self.emb(emb))   # (B, hidden)
        return h + self.fc2(r)                                # (B, hidden)


class Denoiser(nn.Module):
    """``f(x_t, s, y) -> (B, *data_shape)``: a residual MLP on the flattened image, conditioned on
    the time ``s`` in [0, 1] and, optionally, a label (``num_classes`` means "no label", the
    unconditional model of classifier-free guidance)."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        c = self.config = config
        d = math.prod(c.data_shape)
        self.inp = nn.Linear(d, c.hidden)
        self.time = nn.Sequential(nn.Linear(c.time_features, c.hidden), nn.SiLU(),
                                  nn.Linear(c.hidden, c.hidden))
        self.label = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes else None
        self.blocks = nn.ModuleList([_Block(c.hidden) for _ in range(c.depth)])
        self.out_norm = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, d)

    def forward(self, x: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None = None):
        c = self.config
        emb = self.time(timestep_embedding(s, c.time_features))       # (B, hidden)
        if self.label is not None:
            if y is None:
                y = torch.full((x.shape[0],), c.num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.label(y)
        emb = F.silu(emb)
        h = self.inp(x.flatten(1))                                     # (B, hidden)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.out_norm(h))).view(x.shape)       # (B, *data_shape)


class Diffusion(TrainableModel):
    """A diffusion (or flow matching) model that the engine ``coursekit.train.fit`` trains.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = Diffusion(DiffusionConfig(hidden=32, depth=1, timesteps=100))
        >>> x = torch.randint(0, 17, (4, 1, 8, 8)) / 16
        >>> loss, logs = model.loss("diffusion", {"x": x}, step=0)
        >>> loss.shape, model.sample(3, steps=5).shape
        (torch.Size([]), torch.Size([3, 1, 8, 8]))
        >>> float(model.alpha_bar[1:].diff().max()) < 0   # alpha_bar falls with t
        True
    """
    config_class = DiffusionConfig
    PHASES = ("diffusion",)

    def __init__(self, config: DiffusionConfig | None = None):
        super().__init__()
        c = self.config = config or DiffusionConfig()
        self.net = Denoiser(c)
        betas = make_betas(c.schedule, c.timesteps)                       # (T,) float64
        # index 0 is t = 0 (no noise), so alpha_bar[t] for t = 0..T
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        one_minus = torch.cat([torch.zeros(1, dtype=torch.float64),
                               -torch.expm1(torch.cumsum(torch.log1p(-betas), 0))])
        self.register_buffer("betas", torch.cat([torch.zeros(1, dtype=torch.float64), betas])
                             .float())                                     # (T+1,), beta_0 = 0
        self.register_buffer("alpha_bar", alpha_bar.float())               # (T+1,)
        self.register_buffer("one_minus_alpha_bar", one_minus.float())     # (T+1,)
        # the posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta_tilde_t I), t >= 1
        prev, prev_om = alpha_bar[:-1], one_minus[:-1]
        coef1 = prev.sqrt() * betas / one_minus[1:]
        coef2 = (1 - betas).sqrt() * prev_om / one_minus[1:]
        beta_tilde = betas * prev_om / one_minus[1:]
        zero = torch.zeros(1, dtype=torch.float64)
        self.register_buffer("posterior_coef1", torch.cat([zero, coef1]).float())
        self.register_buffer("posterior_coef2", torch.cat([zero, coef2]).float())
        self.register_buffer("posterior_variance", torch.cat([zero, beta_tilde]).float())
        if c.num_levels:
            levels = torch.linspace(-1, 1, c.num_levels, dtype=torch.float64)
            self.register_buffer("level_values", levels.float())          # (L,) in [-1, 1]

    # ------------------------------------------------------------------------------ helpers
    @property
    def is_flow(self) -> bool:
        return self.config.objective == "flow"

    def _device(self) -> torch.device:
        return self.betas.device

    def _scales(self, t: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha, sigma)`` of ``x_t = alpha x_0 + sigma eps``, each ``(B, 1, ..., 1)``: integer
        steps for diffusion, times in [0, 1] for flow."""
        shape = (-1,) + (1,) * (ndim - 1)
        if self.is_flow:
            t = t.float().view(shape)
            return 1 - t, t
        return (self.alpha_bar[t].sqrt().view(shape),
                self.one_minus_alpha_bar[t].sqrt().view(shape))

    def _net_time(self, t: torch.Tensor) -> torch.Tensor:
        return t.float() if self.is_flow else t.float() / self.config.timesteps

    def _check_labels(self, y: torch.Tensor | None, n: int) -> None:
        k = self.config.num_classes
        if y is None:
            return
        if not k:
            raise ValueError("this model is unconditional (num_classes=0) but labels were given")
        if y.shape != (n,) or y.is_floating_point():
            raise ValueError(f"labels must be an integer tensor of shape ({n},), got "
                             f"{tuple(y.shape)} {y.dtype}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ValueError(f"labels must lie in 0..{k - 1}, got {int(y.min())}..{int(y.max())}")

    def to_model_space(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> [-1, 1], checking the shape."""
        check_batch(x01, self.config.data_shape, "the diffusion model")
        return 2 * x01 - 1

    # ---------------------------------------------------------------------- the forward process
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` in closed form: ``alpha x_0 + sigma eps`` (``x0`` in
        [-1, 1], ``t`` integer steps ``(B,)`` in 0..T, or flow times in [0, 1])."""
        alpha, sigma = self._scales(t, x0.ndim)
        return alpha * x0 + sigma * noise

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """``q(x_{t-1} | x_t, x_0)``: its mean ``(B, ...)`` and variance ``(B, 1, ...)``, t >= 1."""
        shape = (-1,) + (1,) * (x0.ndim - 1)
        mean = self.posterior_coef1[t].view(shape) * x0 + self.posterior_coef2[t].view(shape) * x_t
        return mean, self.posterior_variance[t].view(shape)

    # ------------------------------------------------------------------------- the prediction
    def _raw(self, x_t, t, y, guidance: float = 0.0):
        """The network's output, with classifier-free guidance when ``guidance != 0``."""
        s = self._net_time(t)
        if guidance == 0.0 or not self.config.num_classes or y is None:
            return self.net(x_t, s, y)
        null = torch.full_like(y, self.config.num_classes)
        both = self.net(torch.cat([x_t, x_t]), torch.cat([s, s]), torch.cat([y, null]))
        cond, uncond = both.chunk(2)
        return cond + guidance * (cond - uncond)  # Ho and Salimans (2022), eq. 6

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                guidance: float = 0.0, snap: bool | None = None):
        """The model's ``(x0_hat, eps_hat)`` at ``x_t`` (in [-1, 1] space).

        With ``snap`` (default ``config.snap``, for data with ``num_levels``) the network's
        ``x0`` is combined, per pixel, with the exact likelihood of ``x_t`` under each grey level:
        ``w_k ~ exp(-(x_t - alpha c_k)^2 / (2 sigma^2) - (x0_net - c_k)^2 / (2 x0_error^2))``,
        ``x0_hat = sum_k w_k c_k``. At large noise this is the network's guess; at small noise,
        where the levels are far apart compared with ``sigma``, it is the level that ``x_t``
        came from, which a network only approximates.
        """
        alpha, sigma = self._scales(t, x_t.ndim)
        out = self._raw(x_t, t, y, guidance)
        objective = self.config.objective
        if objective == "eps":
            x0 = (x_t - sigma * out) / alpha.clamp(min=1e-4)
        elif objective == "v":
            x0 = alpha * x_t - sigma * out
        else:  # flow: u = eps - x0 and x_t = (1 - t) x0 + t eps
            x0 = x_t - sigma * out
        if self.config.clip_x0:
            x0 = x0.clamp(-1, 1)
        snap = self.config.snap if snap is None else snap
        if snap and self.config.num_levels:
            c = self.level_values.view(-1, *([1] * x_t.ndim))             # (L, 1, ..., 1)
            x0 = (self.snap_logits(x_t, x0, alpha, sigma).softmax(dim=0) * c).sum(dim=0)
        eps = (x_t - alpha * x0) / sigma.clamp(min=1e-6)
        return x0, eps

    def snap_logits(self, x_t, x0_net, alpha, sigma) -> torch.Tensor:
        """``(L, B, ...)`` log-weights of the grey levels ``c_k`` per pixel: the exact
        ``log q(x_t | x_0 = c_k)`` plus a Gaussian of width ``x0_error`` around the net's guess
        (up to a constant per pixel). Their softmax is a categorical ``p(level | x_t)``."""
        c = self.level_values.view(-1, *([1] * x_t.ndim))                 # (L, 1, ..., 1)
        return (-(x_t - alpha * c) ** 2 / (2 * sigma.clamp(min=1e-6) ** 2)
                - (x0_net - c) ** 2 / (2 * self.config.x0_error ** 2))     # (L, B, ...)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """The signal-to-noise ratio ``alpha^2 / sigma^2`` at steps (or flow times) ``t``, (B,)."""
        alpha, sigma = self._scales(t, 1)
        return (alpha ** 2 / sigma.clamp(min=1e-12) ** 2).view(-1)

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """The Min-SNR-gamma weight ``(B,)`` on the MSE of the network's target (ones without it).

        Every target's error is a multiple of the ``x0`` error: ``x0 - x0_hat = c (out - target)``
        with ``c = sigma / alpha`` (eps), ``sigma`` (v, and the flow velocity), so weighting the
        ``x0`` error by ``min(SNR, gamma)`` (Hang et al. 2023) weights the target's MSE by
        ``min(SNR, gamma) c^2``: ``min(SNR, gamma) / SNR`` for eps, ``min(SNR, gamma) /
        (SNR + 1)`` for v on a variance-preserving schedule.

        Example:
            >>> m = Diffusion(DiffusionConfig(objective="v", hidden=8, depth=1, min_snr_gamma=5))
            >>> t = torch.tensor([1, 500, 1000])
            >>> snr = m.snr(t)
            >>> bool(torch.allclose(m.loss_weight(t), snr.clamp(max=5) / (snr + 1)))
            True
        """
        gamma = self.config.min_snr_gamma
        if gamma is None:
            return torch.ones(t.shape[0], device=t.device)
        alpha, sigma = self._scales(t, 1)
        alpha, sigma = alpha.view(-1), sigma.view(-1)
        snr = self.snr(t)
        c = sigma / alpha.clamp(min=1e-6) if self.config.objective == "eps" else sigma
        return snr.clamp(max=gamma) * c ** 2

    # -------------------------------------------------------------------------------- losses
    def losses(self, batch: dict, t: torch.Tensor | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """The per-example training loss ``(B,)``: the mean squared error of the network's
        target (``eps``, ``v`` or the flow velocity ``eps - x_0``) at random times, weighted by
        ``loss_weight`` when ``min_snr_gamma`` is set."""
        x0 = self.to_model_space(batch["x"])
        b = x0.shape[0]
        y = batch.get("y") if self.config.num_classes else None
        if y is not None:
            if not self.training:  # training data was checked once, by check_data
                self._check_labels(y, b)
            if self.training and self.config.label_dropout > 0:
                drop = torch.rand(b, device=x0.device) < self.config.label_dropout
                y = torch.where(drop, torch.full_like(y, self.config.num_classes), y)
        if t is None:
            t = (torch.rand(b, device=x0.device) if self.is_flow else
                 torch.randint(1, self.config.timesteps + 1, (b,), device=x0.device))
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.q_sample(x0, t, noise)
        alpha, sigma = self._scales(t, x0.ndim)
        target = {"eps": noise, "v": alpha * noise - sigma * x0,
                  "flow": noise - x0}[self.config.objective]
        out = self.net(x_t, self._net_time(t), y)
        mse = (out - target).pow(2).flatten(1).mean(dim=1)                 # (B,)
        return mse * self.loss_weight(t) if self.config.min_snr_gamma else mse

    # ------------------------------------------------------------------ the variational bound
    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """``L_T = KL(q(x_T | x_0) || N(0, I))`` per example, nats ``(B,)``."""
        T = self.config.timesteps
        ab, om = self.alpha_bar[T], self.one_minus_alpha_bar[T]
        return 0.5 * (ab * x0.pow(2) + om - 1 - torch.log(om)).flatten(1).sum(dim=1)

    def kl_term(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """``L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))`` at ``x_t ~ q(x_t | x_0)``,
        per example ``(B,)`` for ``t >= 2``. Both have variance ``beta_tilde_t``, so the KL is
        ``coef1_t^2 ||x_0 - x0_hat||^2 / (2 beta_tilde_t)``."""
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.q_sample(x0, t, noise)
        x0_hat, _ = self.predict(x_t, t, y)
        shape = (-1,) + (1,) * (x0.ndim - 1)
        coef1, var = self.posterior_coef1[t].view(shape), self.posterior_variance[t].view(shape)
        return (coef1 ** 2 * (x0 - x0_hat) ** 2 / (2 * var)).flatten(1).sum(dim=1)

    def decoder_nll(self, x0: torch.Tensor, levels: torch.Tensor, noise: torch.Tensor | None = None,
                    y: torch.Tensor | None = None, endpoint: int = 1) -> torch.Tensor:
        """``L_0 = -log p(levels | x_s)`` at the chain's last latent ``x_s`` (``s = endpoint``),
        ``(B,)`` nats. With ``snap`` the decoder is the categorical over the grey levels whose
        log-weights are ``snap_logits`` (the exact ``q(x_s | c_k)`` times the net's guess);
        without it, a Gaussian with mean ``x0_hat(x_s)`` and std ``sqrt(1 - alpha_bar_s)``
        integrated over each level's bin (Ho et al. 2020, eq. 13, for ``s = 1``)."""
        noise = torch.randn_like(x0) if noise is None else noise
        t = torch.full((x0.shape[0],), endpoint, dtype=torch.long, device=x0.device)
        x_s = self.q_sample(x0, t, noise)
        if self.config.snap:
            alpha, sigma = self._scales(t, x0.ndim)
            x0_net, _ = self.predict(x_s, t, y, snap=False)
            log_p = self.snap_logits(x_s, x0_net, alpha, sigma).log_softmax(dim=0)  # (L, B, ...)
            nll = -log_p.gather(0, levels.unsqueeze(0)).squeeze(0)
        else:
            x0_hat, _ = self.predict(x_s, t, y)
            nll = -discretized_gaussian_log_likelihood(
                levels, x0_hat, self.one_minus_alpha_bar[endpoint].sqrt(), self.config.num_levels)
        return nll.flatten(1).sum(dim=1).float()

    def _levels(self, batch: dict) -> torch.Tensor:
        if not self.config.num_levels:
            raise ValueError("nll_bound needs discrete data: set num_levels in the config")
        levels = batch.get("levels")
        return to_levels(batch["x"], self.config.num_levels) if levels is None else levels

    def nll_bound(self, batch: dict, t_samples: int | None = 1, endpoint: int = 1) -> torch.Tensor:
        """The variational bound on ``-log P(levels)``, nats per example ``(B,)``:

            L_T + sum_{t=s+1}^T L_{t-1} + L_0,   L_0 = -log p(levels | x_s),  s = endpoint.

        Ending the chain at ``s > 1`` (the idea of VDM's learned endpoint, Kingma et al. 2021)
        drops the steps of tiny noise, whose KL weights are huge, and lets the decoder read the
        levels off ``x_s``; it is the bound of the same forward process observed only at steps
        ``s..T``, so it stays a bound. ``t_samples`` random steps (uniform on ``s+1..T``, with
        replacement) estimate the sum without bias; ``None`` evaluates every step.
        """
        if self.is_flow:
            raise ValueError("nll_bound is for the diffusion objectives ('eps', 'v'); a flow "
                             "model's likelihood needs the ODE's divergence")
        T = self.config.timesteps
        if not 1 <= endpoint < T:
            raise ValueError(f"endpoint must lie in 1..{T - 1}, got {endpoint}")
        x0 = self.to_model_space(batch["x"])
        levels = self._levels(batch)
        y = batch.get("y") if self.config.num_classes else None
        b = x0.shape[0]
        total = self.prior_kl(x0) + self.decoder_nll(x0, levels, y=y, endpoint=endpoint)
        if t_samples is None:
            for t in range(endpoint + 1, T + 1):
                total = total + self.kl_term(x0, torch.full((b,), t, device=x0.device), y=y)
            return total
        kls = torch.zeros_like(total)
        for _ in range(t_samples):
            t = torch.randint(endpoint + 1, T + 1, (b,), device=x0.device)
            kls = kls + self.kl_term(x0, t, y=y)
        return total + (T - endpoint) * kls / t_samples

    # ------------------------------------------------------------------------------ sampling
    def timesteps_for(self, steps: int, grid: str = "uniform") -> list[int]:
        """``steps`` integer steps from T down to 1 (DDIM's subsequence): evenly spaced
        (``grid="uniform"``), or (``"flow"``) the steps whose SNR is closest to that of the flow
        times ``1, 1 - 1/steps, ..., 1/steps`` that a flow model's Euler sampler visits, with
        ``SNR = ((1 - t) / t)^2`` (duplicates merged).

        Example:
            >>> m = Diffusion(DiffusionConfig(hidden=8, depth=1))
            >>> m.timesteps_for(4), m.timesteps_for(4, grid="flow")
            ([1000, 667, 334, 1], [1000, 794, 496, 199])
        """
        T = self.config.timesteps
        if not 1 <= steps <= T:
            raise ValueError(f"steps must lie in 1..{T} (the model's timesteps), got {steps}")
        if grid == "uniform":
            return sorted({int(round(v)) for v in torch.linspace(1, T, steps).tolist()},
                          reverse=True)
        if grid != "flow":
            raise ValueError(f"unknown grid {grid!r}; valid: ['uniform', 'flow']")
        log_snr = (self.alpha_bar[1:].double().log()
                   - self.one_minus_alpha_bar[1:].double().log())          # (T,), falls with t
        chosen = {T}
        for i in range(1, steps):
            t = 1 - i / steps
            target = 2 * math.log((1 - t) / t)
            chosen.add(int((log_snr - target).abs().argmin()) + 1)
        return sorted(chosen, reverse=True)

    @torch.no_grad()
    def sample(self, n: int, *, steps: int = 50, method: str | None = None,
               eta: float | None = None,
               guidance: float = 0.0, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, snap: bool = False,
               x_T: torch.Tensor | None = None, unconditional: bool = False,
               grid: str = "uniform") -> torch.Tensor:
        """``n`` images in [0, 1], ``(n, *data_shape)``.

        Args:
            steps: network evaluations (per guidance branch).
            method: ``"ddpm"`` (ancestral, eta = 1), ``"ddim"`` (eta = 0 unless given) or
                ``"flow"`` (Euler steps of the ODE); default: ``"flow"`` for a flow model,
                else ``"ddim"``.
            guidance: classifier-free guidance scale ``w`` (0: the plain conditional model).
            labels: ``(n,)`` classes for a conditional model; default: cycle through them.
            unconditional: a conditional model samples with the "no label" input (the model
                that label dropout trained), ignoring ``labels`` and ``guidance``.
            generator: a ``torch.Generator`` for the noise (on the model's device).
            snap: combine the net's x0 with the grey levels, as ``nll_bound`` does (off by
                default: it sharpens the bound but not the samples).
            x_T: the starting noise ``(n, *data_shape)`` (default: drawn with ``generator``).
            grid: the diffusion samplers' steps, ``"uniform"`` or ``"flow"`` (see
                ``timesteps_for``); with ``"flow"`` DDIM visits the noise levels that the flow
                sampler with as many steps visits.
        """
        method = method or ("flow" if self.is_flow else "ddim")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")
        if (method == "flow") != self.is_flow:
            raise ValueError(f"method {method!r} does not fit a model trained with objective "
                             f"{self.config.objective!r} (flow models sample with 'flow')")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        device = self._device()
        if unconditional:
            labels, guidance = None, 0.0
        elif self.config.num_classes and labels is None:
            labels = torch.arange(n, device=device) % self.config.num_classes
        self._check_labels(labels, n)
        with eval_mode(self):
            x = self._sample_loop(n, steps, method, eta, guidance, labels, generator, snap, x_T,
                                  grid)
        return ((x + 1) / 2).clamp(0, 1)

    def _sample_loop(self, n, steps, method, eta, guidance, labels, generator, snap, x_T, grid):
        device = self._device()
        if x_T is None:
            x = torch.randn(n, *self.config.data_shape, generator=generator, device=device)
        else:
            check_batch(x_T, self.config.data_shape, "x_T")
            if len(x_T) != n:
                raise ValueError(f"x_T has {len(x_T)} rows but n is {n}")
            x = x_T.to(device)
        if method == "flow":
            if steps < 1:
                raise ValueError(f"steps must be >= 1, got {steps}")
            times = torch.linspace(1, 0, steps + 1).tolist()
            for t, t_next in zip(times[:-1], times[1:]):
                x0, eps = self.predict(x, torch.full((n,), t, device=device), labels, guidance,
                                       snap)
                x = (1 - t_next) * x0 + t_next * eps   # = x + (t_next - t) u: one Euler step
        else:
            eta = (1.0 if method == "ddpm" else 0.0) if eta is None else eta
            ts = self.timesteps_for(steps, grid)
            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else 0
                x0, eps = self.predict(x, torch.full((n,), t, device=device), labels, guidance,
                                       snap)
                x = self._ddim_step(x0, eps, t, t_prev, eta, generator)
        return x

    def _ddim_step(self, x0, eps, t: int, t_prev: int, eta: float, generator=None):
        """Song et al. (2021), eq. 12: ``x_{t'} = sqrt(ab') x0 + sqrt(1 - ab' - s^2) eps + s z``,
        ``s = eta sqrt((1 - ab') / (1 - ab)) sqrt(1 - ab / ab')``."""
        ab, ab_prev = self.alpha_bar[t], self.alpha_bar[t_prev]
        om, om_prev = self.one_minus_alpha_bar[t], self.one_minus_alpha_bar[t_prev]
        sigma = eta * torch.sqrt(om_prev / om * (1 - ab / ab_prev))
        x = ab_prev.sqrt() * x0 + (om_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0 and t_prev > 0:
            x = x + sigma * torch.randn(x0.shape, generator=generator, device=x0.device)
        return x

    # --------------------------------------------------------------------- the engine's protocol
    def check_data(self, data: dict) -> None:
        """The labels, once before training, instead of at every step (which syncs a GPU)."""
        check_batch(data["x"], self.config.data_shape, "the diffusion model")
        if self.config.num_classes:
            self._check_labels(data.get("y"), len(data["x"]))

    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        loss = self.losses(batch).mean()
        return loss, {"loss": loss.detach()}

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example ``loss`` (the training objective) and, for the diffusion objectives on
        discrete data, a one-step unbiased estimate of ``nll_bound`` (nats)."""
        out = {"loss": self.losses(batch)}
        if not self.is_flow and self.config.num_levels:
            out["nll_bound"] = self.nll_bound(batch, t_samples=1)
        return out
