"""Differentially private training: DP-SGD with per-example clipping and its RDP accountant
(Chapter 10).

DP-SGD (Abadi et al. 2016) bounds what one training example can do to the model. Each step
draws a batch by Poisson sampling (every example joins with probability ``q``), computes each
example's gradient separately (``torch.func``: ``grad`` of the one-example loss, ``vmap`` over the
batch), clips each to norm at most ``C``, sums them, adds Gaussian noise of standard deviation
``sigma C`` and divides by the expected batch size ``q N``. What the optimiser then does with the
noisy gradient (Adam here) is post-processing and costs no privacy.

The privacy loss is tracked in Renyi differential privacy (Mironov 2017). One step is the sampled
Gaussian mechanism; for an integer order ``a >= 2`` its RDP is (Mironov, Talwar and Zhang 2019,
Sec. 3.3)

    eps_a = log A_a / (a - 1),   A_a = sum_{k=0}^{a} C(a, k) (1 - q)^(a - k) q^k exp((k^2 - k) / (2 sigma^2)),

RDP adds up over steps, and ``T`` steps give ``(eps, delta)``-DP with
``eps = min_a [T eps_a + log(1 / delta) / (a - 1)]`` (Mironov 2017, Prop. 3). With ``q = 1``
``A_a = exp(a (a - 1) / (2 sigma^2))``, the Gaussian mechanism's ``eps_a = a / (2 sigma^2)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

__all__ = ["DPConfig", "rdp_sampled_gaussian", "dp_epsilon", "noise_for_epsilon",
           "per_example_grads", "dp_sgd", "auroc_bound"]

ORDERS = tuple(range(2, 257))   # integer Renyi orders searched by the accountant


@dataclass
class DPConfig:
    clip: float = 1.0              # C: each example's gradient is clipped to norm <= C
    noise_multiplier: float = 1.0  # sigma: the noise added to the summed gradient is N(0, sigma^2 C^2)
    sample_rate: float = 0.1       # q: each example joins a step's batch with probability q
    steps: int = 1000              # T: optimisation steps
    lr: float = 1e-3               # Adam's learning rate
    delta: float = 1e-5            # the delta of the (eps, delta) guarantee reported
    seed: int = 0                  # batches and noise

    def __post_init__(self):
        if not self.clip > 0 or self.noise_multiplier < 0 or self.steps < 0:
            raise ValueError(f"need clip > 0, noise_multiplier >= 0, steps >= 0; got "
                             f"{self.clip}, {self.noise_multiplier}, {self.steps}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must lie in (0, 1], got {self.sample_rate}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must lie in (0, 1), got {self.delta}")


def rdp_sampled_gaussian(q: float, sigma: float, order: int) -> float:
    """RDP ``eps_a`` of one step of the sampled Gaussian mechanism at integer order ``a >= 2``.

    Example:
        >>> round(rdp_sampled_gaussian(1.0, 2.0, 8), 6)     # q = 1: a / (2 sigma^2)
        1.0
        >>> rdp_sampled_gaussian(0.01, 2.0, 8) < rdp_sampled_gaussian(0.1, 2.0, 8)
        True
    """
    if not (isinstance(order, int) and order >= 2):
        raise ValueError(f"order must be an integer >= 2, got {order!r}")
    if not 0 < q <= 1 or not sigma > 0:
        raise ValueError(f"need 0 < q <= 1 and sigma > 0, got q={q}, sigma={sigma}")
    if q == 1.0:
        return order / (2 * sigma ** 2)
    terms = [math.lgamma(order + 1) - math.lgamma(k + 1) - math.lgamma(order - k + 1)
             + (order - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma ** 2)
             for k in range(order + 1)]
    top = max(terms)
    log_a = top + math.log(sum(math.exp(t - top) for t in terms))
    return log_a / (order - 1)


def dp_epsilon(q: float, sigma: float, steps: int, delta: float) -> tuple[float, int]:
    """``(eps, order)``: the ``eps`` of ``(eps, delta)``-DP after ``steps`` steps, and the Renyi
    order that gave it. ``sigma = 0`` (no noise) is ``inf``.

    Example:
        >>> eps, order = dp_epsilon(1.0, 10.0, 1, 1e-5)    # one Gaussian mechanism
        >>> round(eps, 3), order
        (0.485, 49)
    """
    if sigma == 0 or steps == 0:
        return (math.inf, 0) if sigma == 0 and steps > 0 else (0.0, 0)
    best = min((steps * rdp_sampled_gaussian(q, sigma, a) + math.log(1 / delta) / (a - 1), a)
               for a in ORDERS)
    return best


def noise_for_epsilon(eps: float, q: float, steps: int, delta: float) -> float:
    """The smallest noise multiplier ``sigma`` (to 1e-3) whose ``steps`` steps stay within
    ``(eps, delta)``, by bisection (``eps`` falls as ``sigma`` grows)."""
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    lo, hi = 0.05, 100.0
    if dp_epsilon(q, hi, steps, delta)[0] > eps:
        raise ValueError(f"even sigma = {hi} gives eps above {eps} for {steps} steps at q = {q}")
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if dp_epsilon(q, mid, steps, delta)[0] > eps else (lo, mid)
    return hi


def auroc_bound(eps: float) -> float:
    """The largest AUROC any membership test can reach against an ``(eps, 0)``-DP mechanism,
    ``e^eps / (1 + e^eps)``: DP forces ``TPR <= e^eps FPR`` and ``1 - FPR <= e^eps (1 - TPR)``,
    and the area under the lower of the two lines is this number.

    Example:
        >>> auroc_bound(0.0), round(auroc_bound(1.0), 4)
        (0.5, 0.7311)
    """
    return 1 / (1 + math.exp(-eps))


class _Objective(nn.Module):
    """Wraps ``objective(model, batch) -> (B,)`` as a module, so that ``functional_call`` can
    swap the model's parameters."""

    def __init__(self, model: nn.Module, objective: Callable):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: dict) -> torch.Tensor:
        return self.objective(self.model, batch)


def per_example_grads(model: nn.Module, objective: Callable, batch: dict) -> dict:
    """Each example's gradient of ``objective(model, batch)`` (a ``(B,)`` loss), as
    ``{name: (B, *param.shape)}``; random draws inside the objective differ per example.

    Example:
        >>> lin = nn.Linear(3, 1)
        >>> batch = {"x": torch.randn(4, 3), "y": torch.randn(4, 1)}
        >>> obj = lambda m, b: (m(b["x"]) - b["y"]).pow(2).sum(1)
        >>> g = per_example_grads(lin, obj, batch)
        >>> lin.zero_grad(); obj(lin, {k: v[2:3] for k, v in batch.items()}).sum().backward()
        >>> bool(torch.allclose(g["weight"][2], lin.weight.grad))
        True
    """
    wrapper = _Objective(model, objective)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one(p, example):
        single = {k: v.unsqueeze(0) for k, v in example.items()}
        full = {f"model.{k}": v for k, v in p.items()}
        return functional_call(wrapper, full, (single,)).sum()

    return vmap(grad(one), in_dims=(None, 0), randomness="different")(params, batch)


def dp_sgd(model: nn.Module, objective: Callable, data: dict, config: DPConfig,
           callback: Callable | None = None) -> dict:
    """Train ``model`` in place with DP-SGD; returns ``{"epsilon", "order", "steps",
    "cpu_seconds", "clipped"}`` (``clipped``: the share of per-example gradients the clip
    shortened, averaged over steps).

    Args:
        objective: ``objective(model, batch) -> (B,)`` per-example loss.
        data: ``{"x": (N, ...), ...}`` tensors (``coursekit.train.as_batch_data``).
        callback: called as ``callback(step, model)`` after each step.
    """
    n = len(data["x"])
    c = config
    gen = torch.Generator().manual_seed(c.seed)
    torch.manual_seed(c.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=c.lr)
    start, clipped = time.process_time(), []
    model.train()
    for step in range(c.steps):
        mask = torch.rand(n, generator=gen) < c.sample_rate                # Poisson sampling
        summed = [torch.zeros_like(p) for p in params]
        if bool(mask.any()):
            batch = {k: v[mask] for k, v in data.items()}
            g = per_example_grads(model, objective, batch)
            flat = torch.cat([g[name].flatten(1) for name in names], dim=1)  # (B, P)
            norms = flat.norm(dim=1)                                         # (B,)
            factor = (c.clip / norms.clamp(min=1e-12)).clamp(max=1.0)        # (B,)
            clipped.append(float((factor < 1).float().mean()))
            summed = [(g[name] * factor.view(-1, *[1] * (g[name].ndim - 1))).sum(0)
                      for name in names]
        expected = c.sample_rate * n
        for p, s in zip(params, summed):
            noise = torch.randn(p.shape, generator=gen) * c.noise_multiplier * c.clip
            p.grad = (s + noise) / expected
        opt.step()
        if callback is not None:
            callback(step, model)
    eps, order = dp_epsilon(c.sample_rate, c.noise_multiplier, c.steps, c.delta)
    return {"epsilon": eps, "order": order, "steps": c.steps,
            "cpu_seconds": time.process_time() - start,
            "clipped": sum(clipped) / max(1, len(clipped))}
