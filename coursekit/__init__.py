"""coursekit: the companion package of the course "Generative models, properly".

Small, readable, tested pieces that the chapters import instead of repeating: device and seed
helpers (intro), offline datasets and a cleaning pipeline (Chapter 1), losses (Chapters 2-3),
reference models and one training engine (Chapter 4), evaluation metrics (Chapter 5), plotting
helpers, and the exercises' grader. Importing does nothing but define names: the top-level helpers
below are loaded on first use, so ``import coursekit`` does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it (loaded on first access, PEP 562)
_LAZY = {
    "amp_dtype": "coursekit.device",
    "available_devices": "coursekit.device",
    "get_device": "coursekit.device",
    "seed_everything": "coursekit.seed",
}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coursekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
