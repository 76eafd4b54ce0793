"""A normalizing flow with affine coupling layers (RealNVP, Dinh et al. 2017) and uniform or
variational dequantisation (Theis et al. 2016; Ho et al. 2019, Flow++), Chapter 11.

A flow is an invertible map ``z = f(v)`` onto a standard normal base; by the change of variables

    log p(v) = log N(f(v); 0, I) + log |det df/dv|,

and an affine coupling layer keeps the determinant cheap: with a fixed binary mask ``b``,

    y = b * v + (1 - b) * (v * exp(s(b * v)) + t(b * v)),   log |det| = sum (1 - b) * s,

whatever the networks ``s`` and ``t`` compute. Images alternate checkerboard masks at full
resolution and channel masks after a 2x2 squeeze; vectors (the 2-D examples) alternate the even
and odd coordinates. Each network's last layer starts at zero (so a new flow is the identity) and
the log-scale is bounded, ``s = s_max * tanh(raw / s_max)``.

Discrete images (the digits' 17 grey levels) need dequantisation: the flow models the continuous
``w = levels + u`` with ``u`` in ``[0, 1)^D``, and

    log P(levels) >= E_q(u|levels) [log p(levels + u) - log q(u | levels)]

for any ``q``; uniform noise (``q = 1``) gives Theis et al.'s bound, a learned ``q`` (a conditional
coupling flow squashed by a sigmoid) the variational one of Flow++. ``w`` is scaled to ``(0, 1)``
and logit-transformed before the couplings (RealNVP's preprocessing); every Jacobian is counted, so
the figures are nats per image on the same scale as Chapter 4's VAEs. With ``alpha > 0`` the
logit's domain is a little wider than ``[0, L)``: the mass the flow puts outside is lost, so the
discrete model sums to at most 1 and the bound stays a bound (``alpha = 0``: exactly 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.data.levels import batch_levels, check_levels
from coursekit.models.base import TrainableModel
from coursekit.models.layers import check_batch

__all__ = ["FlowConfig", "Flow", "AffineCoupling", "checkerboard_mask", "channel_mask",
           "squeeze", "unsqueeze", "DEQUANTIZATIONS"]

DEQUANTIZATIONS = ("uniform", "variational", "none")
_LOG_2PI = math.log(2 * math.pi)


@dataclass
class FlowConfig:
    data_shape: tuple[int, ...] = (1, 8, 8)  # (C, H, W) images (H, W even), or (D,) vectors
    num_levels: int = 17           # grey levels of discrete data (digits: 0..16); 0: continuous
    dequantization: str = "uniform"  # "uniform", "variational" or "none" (continuous data)
    num_couplings: int = 8         # coupling layers; images: half checkerboard, half channel
    hidden: int = 64               # channels (images) or width (vectors) of each coupling network
    max_log_scale: float = 3.0     # bound on each log-scale: s = s_max * tanh(raw / s_max)
    dequant_couplings: int = 4     # coupling layers of the variational dequantiser q(u | levels)
    alpha: float = 1e-5            # logit preprocessing: logit(alpha + (1 - 2 alpha) w / L)

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        if self.dequantization not in DEQUANTIZATIONS:
            raise ValueError(f"unknown dequantization {self.dequantization!r}; valid: "
                             f"{list(DEQUANTIZATIONS)}")
        if len(self.data_shape) not in (1, 3):
            raise ValueError(f"data_shape must be (C, H, W) or (D,), got {self.data_shape}")
        if len(self.data_shape) == 3 and (self.data_shape[1] % 2 or self.data_shape[2] % 2):
            raise ValueError(f"the channel masks squeeze 2x2 blocks: H and W must be even, got "
                             f"data_shape {self.data_shape}")
        if math.prod(self.data_shape) < 2:
            raise ValueError(f"a coupling flow needs at least 2 dimensions, got {self.data_shape}")
        if (self.num_levels == 0) != (self.dequantization == "none"):
            raise ValueError(f"dequantization 'none' is for continuous data (num_levels=0) and "
                             f"discrete data needs 'uniform' or 'variational'; got num_levels="
                             f"{self.num_levels} with {self.dequantization!r}")
        if self.num_levels == 1 or self.num_levels < 0:
            raise ValueError(f"num_levels must be 0 (continuous) or >= 2, got {self.num_levels}")
        if self.num_couplings < 1 or self.hidden < 1 or self.max_log_scale <= 0:
            raise ValueError(f"num_couplings, hidden and max_log_scale must be positive, got "
                             f"{self.num_couplings}, {self.hidden}, {self.max_log_scale}")
        if not 0 <= self.alpha < 0.5:
            raise ValueError(f"alpha must lie in [0, 0.5), got {self.alpha}")


# ----------------------------------------------------------------------------- masks and shapes

def checkerboard_mask(h: int, w: int, parity: int = 0) -> torch.Tensor:
    """``(1, h, w)`` 0/1 mask, 1 where ``(row + col) % 2 == parity`` (the pixels kept fixed).

    Example:
        >>> checkerboard_mask(2, 3).int().tolist()
        [[[1, 0, 1], [0, 1, 0]]]
    """
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    return ((rows + cols) % 2 == parity).float().unsqueeze(0)


def channel_mask(channels: int, parity: int = 0) -> torch.Tensor:
    """``(channels, 1, 1)`` 0/1 mask keeping the first half of the channels (parity 0) or the
    second half (parity 1) fixed."""
    keep = torch.arange(channels) < channels // 2
    return (keep if parity == 0 else ~keep).float().view(channels, 1, 1)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, 4C, H/2, W/2)``: each 2x2 block becomes four channels."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2)                                 # (B, C, h, 2, w, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``squeeze``."""
    b, c4, h, w = x.shape
    x = x.view(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)           # (B, C, h, 2, w, 2)
    return x.reshape(b, c4 // 4, 2 * h, 2 * w)


def _sum_per_example(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(dim=1)


def _log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * _sum_per_example(z.pow(2) + _LOG_2PI)                   # (B,)


# ------------------------------------------------------------------------------ coupling layer

class AffineCoupling(nn.Module):
    """``y = b * v + (1 - b) * (v * exp(s) + t)`` with ``(s, t) = net(b * v, b, cond)``.

    Args:
        mask: the fixed 0/1 mask ``b``, shaped like one example (after the squeeze, if any).
        hidden: channels (images) or width (vectors) of the network.
        max_log_scale: ``s = max_log_scale * tanh(raw / max_log_scale)``.
        squeeze: images only: apply the layer to the 2x2-squeezed image (channel masks).
        cond_channels: extra inputs the network sees (the levels, for the dequantiser).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = AffineCoupling(torch.tensor([1.0, 0.0]), hidden=8)
        >>> v = torch.randn(3, 2)
        >>> y, logdet = layer(v)       # a new layer is the identity (zero-initialised output)
        >>> bool(torch.equal(y, v)), logdet.tolist()
        (True, [0.0, 0.0, 0.0])
    """

    def __init__(self, mask: torch.Tensor, hidden: int, max_log_scale: float = 3.0,
                 squeeze: bool = False, cond_channels: int = 0):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.max_log_scale, self.squeeze = max_log_scale, squeeze
        image = mask.ndim == 3
        n_in = mask.shape[0]                    # channels (images) or features (vectors)
        if image:
            c_in = 2 * n_in + cond_channels * (4 if squeeze else 1)
            self.net = nn.Sequential(
                nn.Conv2d(c_in, hidden, 3, padding=1), nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
                nn.Conv2d(hidden, 2 * n_in, 3, padding=1))
        else:
            self.net = nn.Sequential(
                nn.Linear(2 * n_in + cond_channels, hidden), nn.ReLU(),
                nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, 2 * n_in))
        # zero-initialised last layer: s = t = 0, the layer starts as the identity (Glow's habit)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, v_fixed: torch.Tensor, cond: torch.Tensor | None):
        b = self.mask.expand_as(v_fixed)
        inputs = [v_fixed, b] + ([] if cond is None else [cond])
        raw_s, t = self.net(torch.cat(inputs, dim=1)).chunk(2, dim=1)
        s = self.max_log_scale * torch.tanh(raw_s / self.max_log_scale)    # |s| < s_max
        return s * (1 - self.mask), t * (1 - self.mask)

    def forward(self, v: torch.Tensor, cond: torch.Tensor | None = None):
        """``(y, log |det dy/dv|)``, the log-determinant per example ``(B,)``."""
        if self.squeeze:
            v, cond = squeeze(v), None if cond is None else squeeze(cond)
        s, t = self._scale_shift(v * self.mask, cond)
        y = v * self.mask + (1 - self.mask) * (v * torch.exp(s) + t)
        y = unsqueeze(y) if self.squeeze else y
        return y, _sum_per_example(s)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``v`` such that ``forward(v)[0] == y``: the fixed part gives ``s`` and ``t`` again."""
        if self.squeeze:
            y, cond = squeeze(y), None if cond is None else squeeze(cond)
        s, t = self._scale_shift(y * self.mask, cond)
        v = y * self.mask + (1 - self.mask) * (y - t) * torch.exp(-s)
        return unsqueeze(v) if self.squeeze else v


def _couplings(shape: tuple[int, ...], count: int, hidden: int, max_log_scale: float,
               cond_channels: int = 0) -> nn.ModuleList:
    """``count`` couplings with alternating masks: vectors alternate even/odd coordinates;
    images use checkerboards for the first half and channel masks (squeezed) for the rest."""
    layers = []
    for i in range(count):
        if len(shape) == 1:
            mask = (torch.arange(shape[0]) % 2 == i % 2).float()
            layers.append(AffineCoupling(mask, hidden, max_log_scale, cond_channels=cond_channels))
        elif i < (count + 1) // 2:
            mask = checkerboard_mask(shape[1], shape[2], i % 2).expand(shape[0], -1, -1)
            layers.append(AffineCoupling(mask.clone(), hidden, max_log_scale,
                                         cond_channels=cond_channels))
        else:
            mask = channel_mask(4 * shape[0], i % 2).expand(-1, shape[1] // 2, shape[2] // 2)
            layers.append(AffineCoupling(mask.clone(), hidden, max_log_scale, squeeze=True,
                                         cond_channels=cond_channels))
    return nn.ModuleList(layers)


# ---------------------------------------------------------------------------------- the flow

class Flow(TrainableModel):
    """RealNVP on vectors or images, with dequantisation for discrete images.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> flow = Flow(FlowConfig(data_shape=(1, 4, 4), num_levels=17, hidden=8))
        >>> levels = torch.randint(0, 17, (3, 1, 4, 4))
        >>> nats = flow.nll_bound({"levels": levels})       # (3,) nats per image, a bound
        >>> nats.shape, flow.sample(2).shape
        (torch.Size([3]), torch.Size([2, 1, 4, 4]))
    """
    config_class = FlowConfig
    PHASES = ("flow",)

    def __init__(self, config: FlowConfig | None = None):
        super().__init__()
        self.config = c = config or FlowConfig()
        self.couplings = _couplings(c.data_shape, c.num_couplings, c.hidden, c.max_log_scale)
        if c.dequantization == "variational":
            # q(u | levels): a coupling flow on Gaussian noise that also sees the levels
            self.dequantizer = _couplings(c.data_shape, c.dequant_couplings, c.hidden,
                                          c.max_log_scale, cond_channels=c.data_shape[0])

    # ------------------------------------------------------------------ the invertible map
    def forward_flow(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z = f(v)`` through every coupling, with ``log |det df/dv|`` per example."""
        logdet = v.new_zeros(v.shape[0])
        for layer in self.couplings:
            v, ld = layer(v)
            logdet = logdet + ld
        return v, logdet

    def inverse_flow(self, z: torch.Tensor) -> torch.Tensor:
        """``v = f^{-1}(z)``: the couplings inverted in reverse order."""
        for layer in reversed(self.couplings):
            z = layer.inverse(z)
        return z

    def log_prob_continuous(self, v: torch.Tensor) -> torch.Tensor:
        """``log p(v)`` per example of the flow's density on its input space (exact)."""
        z, logdet = self.forward_flow(v)
        return _log_standard_normal(z) + logdet

    # ---------------------------------------------------------------- discrete data
    def _preprocess(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``w`` in ``[0, L)`` (level units) -> ``v = logit(alpha + (1 - 2 alpha) w / L)`` and
        ``log |dv/dw|`` per example."""
        c = self.config
        # the clamp only guards u = 0 exactly (a float32 draw of probability ~2^-24 per pixel)
        p = (c.alpha + (1 - 2 * c.alpha) * w / c.num_levels).clamp(1e-7, 1 - 1e-7)
        v = torch.log(p) - torch.log1p(-p)
        log_jac = math.log(1 - 2 * c.alpha) - math.log(c.num_levels) - torch.log(p) \
            - torch.log1p(-p)
        return v, _sum_per_example(log_jac)

    def log_prob_dequantized(self, w: torch.Tensor) -> torch.Tensor:
        """``log p(w)`` of the continuous ``w = levels + u`` (a density on ``[0, L)^D``)."""
        v, log_jac = self._preprocess(w)
        return self.log_prob_continuous(v) + log_jac

    def dequantize(self, levels: torch.Tensor, generator: torch.Generator | None = None):
        """``(u, log q(u | levels))``: uniform noise (``log q = 0``), or the variational
        dequantiser's draw ``u = sigmoid(g(eps; levels))``, ``eps ~ N(0, I)``."""
        c = self.config
        shape, like = levels.shape, {"device": levels.device, "dtype": self._dtype()}
        if c.dequantization == "uniform":
            u = torch.rand(shape, generator=generator, **like)
            return u, torch.zeros(shape[0], **like)
        eps = torch.randn(shape, generator=generator, **like)                # (B, *shape)
        log_q = _log_standard_normal(eps)
        cond = levels.to(eps.dtype) / (c.num_levels - 1) - 0.5
        h = eps
        for layer in self.dequantizer:
            h, ld = layer(h, cond)
            log_q = log_q - ld
        u = torch.sigmoid(h)
        # d sigmoid(h) / dh = sigmoid(h) sigmoid(-h)
        log_q = log_q - _sum_per_example(F.logsigmoid(h) + F.logsigmoid(-h))
        return u, log_q

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _levels(self, batch: dict) -> torch.Tensor:
        return batch_levels(batch, self.config.num_levels)

    def nll_bound(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Nats per example: exactly ``-log p(x)`` for continuous data; for discrete data one
        draw of ``-[log p(levels + u) - log q(u | levels)]``, whose mean over draws bounds
        ``-log P(levels)`` from above (the dequantisation bound)."""
        c = self.config
        if c.dequantization == "none":
            x = batch["x"]
            check_batch(x, c.data_shape, "the flow")
            return -self.log_prob_continuous(x)
        levels = self._levels(batch)
        check_batch(levels, c.data_shape, "the flow")
        u, log_q = self.dequantize(levels, generator)
        return -(self.log_prob_dequantized(levels.to(u.dtype) + u) - log_q)

    # ---------------------------------------------------------------- the engine's protocol
    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        nats = self.nll_bound(batch)
        return nats.mean(), {"nats": nats.detach().mean()}

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example ``nats`` (one draw of the dequantisation noise for discrete data)."""
        return {"nats": self.nll_bound(batch)}

    def check_data(self, data: dict) -> None:
        """Discrete data: integer ``levels`` (or ``x`` = levels / (L - 1)) in ``0 .. L-1``."""
        c = self.config
        if c.dequantization == "none":
            return
        check_levels(self._levels(data), c.num_levels)

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, temperature: float = 1.0
               ) -> torch.Tensor:
        """``n`` draws: ``z ~ N(0, temperature^2 I)`` pushed through ``f^{-1}``. Discrete data
        come back as images in ``[0, 1]`` (``floor(w) / (L - 1)``), continuous data as is."""
        if labels is not None:
            raise ValueError("this flow is unconditional: it takes no labels")
        c = self.config
        device = next(self.parameters()).device
        z = temperature * torch.randn(n, *c.data_shape, generator=generator, device=device,
                                      dtype=self._dtype())
        v = self.inverse_flow(z)
        if c.dequantization == "none":
            return v
        p = torch.sigmoid(v)
        w = (p - c.alpha) / (1 - 2 * c.alpha) * c.num_levels              # (n, *shape) in ~[0, L)
        levels = torch.floor(w).clamp(0, c.num_levels - 1)
        return levels / (c.num_levels - 1)
