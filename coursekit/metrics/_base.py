"""The accumulating side of ``coursekit.metrics``: a tiny base class and input checks (Chapter 5).

Every metric in the package is a pure function; its class reuses that function batch by batch and
keeps only running sums (sufficient statistics), so memory does not grow with the number of
batches. ``higher_is_better`` tells a training loop which way is progress.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Metric", "MeanMetric"]


class Metric:
    """Base of the accumulating metrics: ``update`` with batches, ``compute``, ``reset``.

    Attributes:
        higher_is_better: ``True`` when a larger value means a better model.
    """

    higher_is_better: bool = True

    def __init__(self):
        self.reset()

    def reset(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def update(self, *args, **kwargs) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def compute(self):  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """Update with one batch and return the running value."""
        self.update(*args, **kwargs)
        return self.compute()


class MeanMetric(Metric):
    """A metric whose value is the mean of a per-item quantity (per image, per sequence).

    Subclasses set ``_function`` to the pure function that returns one value per item; the
    running state is a float64 sum and a count, so memory is constant.
    """

    def reset(self) -> None:
        self.total = 0.0  # sum of the per-item values seen so far
        self.count = 0  # number of items seen so far

    def _values(self, *args, **kwargs) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def update(self, *args, **kwargs) -> None:
        values = self._values(*args, **kwargs).detach().double().reshape(-1)
        self.total += float(values.sum())
        self.count += values.numel()

    def compute(self) -> float:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update()")
        return self.total / self.count


def check_tensor(name: str, t, *, ndim: int | None = None, floating: bool = True,
                 finite: bool = True) -> None:
    """Raise a clear error if ``t`` is not a (finite) floating tensor of the expected rank."""
    if not torch.is_tensor(t):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype} "
                        f"(convert with .float())")
    # one reduction: a NaN or an infinity anywhere makes the sum non-finite; only then count
    if finite and t.is_floating_point() and t.numel() \
            and not math.isfinite(float(t.sum(dtype=torch.float64))):
        nan = int(torch.isnan(t).sum())
        inf = int(torch.isinf(t).sum())
        if nan or inf:
            raise ValueError(f"{name} contains {nan} NaN and {inf} infinite values "
                             f"(shape {tuple(t.shape)})")


def check_positive(name: str, value) -> float:
    """Return ``value`` as a float, or raise if it is not a finite positive number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value
