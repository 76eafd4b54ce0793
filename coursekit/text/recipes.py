"""The data splits and training recipes shared by Chapter 7 and ``benchmarks/text.py``.

* ``char_splits(dev_fraction)``: the offline English text (``coursekit.data.text``) as three
  strings. ``val`` is ``coursekit.data.text("val")`` (the last 10 % of the documentation topics);
  ``train`` and ``dev`` cut ``coursekit.data.text("train")`` at a topic boundary so that ``dev`` is
  about its last ``dev_fraction``. Models learn on ``train``; choices (a mixing weight, when to
  stop) are made on ``dev``; figures are reported on ``val``, which no choice has seen.
* ``chapter_recipe(vocab_size)`` / ``long_recipe(vocab_size)``: a ``GPTConfig`` and a
  ``TrainConfig`` each: the small run the chapter can afford (its whole notebook must run in 90 CPU
  seconds) and the benchmark's longer run of the same model (under 10 CPU minutes on one thread).

The text changes between Python versions: never hard-code a figure measured on it.
"""

from __future__ import annotations

from coursekit.models.gpt import GPTConfig
from coursekit.recipes import RECIPES
from coursekit.train import TrainConfig

__all__ = ["char_splits", "chapter_recipe", "long_recipe"]


def char_splits(dev_fraction: float = 0.05) -> dict[str, str]:
    """``{"train", "dev", "val"}`` strings of the offline English text (see the module docstring).

    Example:
        >>> s = char_splits()
        >>> 0.03 < len(s["dev"]) / (len(s["train"]) + len(s["dev"])) < 0.08
        True
    """
    from coursekit.data import text

    if not 0.0 < dev_fraction < 0.5:
        raise ValueError(f"dev_fraction must lie in (0, 0.5), got {dev_fraction}")
    full = text("train")
    cut = full.rfind("\n\n", 0, int(len(full) * (1 - dev_fraction)))
    if cut <= 0:
        raise ValueError("the training text has no topic boundary to cut at")
    return {"train": full[:cut], "dev": full[cut + 2:], "val": text("val")}


def chapter_recipe(vocab_size: int, device: str = "auto") -> tuple[GPTConfig, TrainConfig]:
    """The chapter's GPT: two blocks of width 128 on 64-character contexts, three passes over the
    training text (about 55 CPU seconds on one thread)."""
    recipe = RECIPES["gpt"]  # the one recipe table (coursekit.recipes)
    model = GPTConfig(vocab_size=vocab_size, **recipe.config)
    train = TrainConfig(**recipe.train, seed=0, device=device)
    return model, train


def long_recipe(vocab_size: int, device: str = "auto") -> tuple[GPTConfig, TrainConfig]:
    """The benchmark's GPT: the chapter's model trained for up to 30 passes, stopped early on the
    dev split (``benchmarks/text.py`` also stops it at a CPU-time budget)."""
    model, train = chapter_recipe(vocab_size, device)
    train.epochs = 30
    return model, train
