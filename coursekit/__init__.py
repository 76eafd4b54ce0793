"""coursekit: the companion package of the course "Generative models, properly".

Small, readable, tested pieces that the chapters import instead of repeating. The layout:

- ``models/``: every network ``train.fit`` trains, on one base (``models.base.TrainableModel``),
  with the pixel likelihoods as objects (``models.likelihoods``);
- ``data/``: the offline datasets, grey levels, labels and augmentation;
- ``metrics/``: image, distribution, likelihood, text and classification scores (Chapter 5);
- ``train.py`` (the one training engine), ``recipes.py`` (every named configuration),
  ``runs.py`` and ``__main__.py`` (the command line), ``losses.py``, ``utils.py``, ``device.py``,
  ``seed.py``, ``distributed.py``, ``plotting.py``, ``results.py`` (benchmark figures);
- per chapter, procedures and baselines: ``cleaning`` and ``mixture`` (1), ``features`` (5),
  ``fewlabels`` and ``zeroshot`` (6), ``text/`` (7), ``apps/`` (8), ``copies`` (9-10),
  ``risks/`` (10);
- ``grader/``: exercises from solutions and their grading; ``notebooks.py``: the notebooks'
  pairing and install cell, which ``coursekit assign`` needs (the book's own build tools are in
  the repository's ``tools/``).

Importing does nothing but define names: the top-level helpers below are loaded on first use, so
``import coursekit`` does not import torch.
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
