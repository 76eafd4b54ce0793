"""A green-list watermark for generated text (Kirchenbauer et al. 2023), on any character
language model of Chapter 7 (Chapter 10).

Before each token, the previous ``h`` tokens and a secret key seed a pseudo-random split of the
vocabulary into a *green list* of ``gamma * V`` tokens and a red list. Generation adds ``delta``
to the logits of the green tokens, which tilts sampling towards them; detection needs only the
key and the text: with ``T`` scored tokens of which ``s`` are green,

    z = (s - gamma T) / sqrt(T gamma (1 - gamma)),

which is approximately standard normal for text written without the key, and large for
watermarked text. A text is flagged when ``z`` reaches a threshold (4 in the paper).

Characters need two changes to the paper's word-level defaults, both measured in Chapter 10.
English has few characters and very frequent pairs ("e ", "th", runs of spaces), so with ``h = 1``
the same few (previous, next) pairs fill every text, and whether the key happened to make them
green decides a human text's score: its z is no longer standard normal and false alarms soar.
Seeding by a longer context (``context_width``, default 4) makes the colourings of different
contexts independent, and scoring each (context, token) pair once (``ignore_repeats``, as
Kirchenbauer et al. 2024 recommend) stops one repeated string from counting many times.

``WatermarkedLM`` wraps a model and speaks the same protocol (``coursekit.text.lm``), so the
sampler of Chapter 7 draws watermarked text unchanged, and the watermark's cost is the increase of
the wrapped model's bits per character on real text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coursekit.text.lm import bits_per_char as _bits

__all__ = ["WatermarkConfig", "GreenLists", "WatermarkedLM", "green_count", "z_score", "detect"]


@dataclass
class WatermarkConfig:
    gamma: float = 0.25         # share of the vocabulary that is green after each context
    delta: float = 2.0          # added to the green tokens' logits when generating
    key: int = 15485863         # the secret that seeds the green lists (the paper's example prime)
    context_width: int = 4      # how many previous tokens seed the green list (the paper: 1)
    ignore_repeats: bool = True  # score each (context, token) pair of a text once
    z_threshold: float = 4.0    # flag a text as watermarked when z reaches this

    def __post_init__(self):
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must lie in (0, 1), got {self.gamma}")
        if not math.isfinite(self.delta) or self.delta < 0:
            raise ValueError(f"delta must be a finite number >= 0, got {self.delta}")
        if not isinstance(self.context_width, int) or self.context_width < 1:
            raise ValueError(f"context_width must be an integer >= 1, got {self.context_width!r}")


class GreenLists:
    """The green list after any context: ``round(gamma * V)`` tokens (at least 1, at most V - 1)
    drawn by a generator seeded with the key and the last ``context_width`` tokens, so the same key
    always gives the same lists and a detector needs nothing but the key.

    Example:
        >>> g = GreenLists(8, WatermarkConfig(gamma=0.25, context_width=1))
        >>> g([3]).sum(), bool((g([3]) == g([5, 3])).all()), bool((g([3]) == g([4])).all())
        (np.int64(2), True, False)
    """

    def __init__(self, vocab_size: int, config: WatermarkConfig):
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
        self.vocab_size, self.config = int(vocab_size), config
        self.size = min(max(int(round(config.gamma * vocab_size)), 1), vocab_size - 1)
        self._cache: dict[tuple, np.ndarray] = {}

    def __call__(self, context_ids) -> np.ndarray:
        """Boolean ``(V,)``: the green tokens after ``context_ids`` (its last ``context_width``)."""
        w = self.config.context_width
        if len(context_ids) < w:
            raise ValueError(f"a green list needs {w} previous tokens, got {len(context_ids)}")
        context = tuple(int(i) for i in context_ids[len(context_ids) - w:])
        mask = self._cache.get(context)
        if mask is None:
            rng = np.random.default_rng([self.config.key, *context])
            mask = np.zeros(self.vocab_size, dtype=bool)
            mask[rng.permutation(self.vocab_size)[:self.size]] = True
            self._cache[context] = mask
        return mask


def _check_ids(ids, vocab_size: int) -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"ids must be a 1-D sequence of integers, got shape {a.shape}, "
                         f"dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        raise ValueError(f"ids must lie in [0, {vocab_size}), got values in "
                         f"[{a.min()}, {a.max()}]")
    return a.astype(np.int64)


class WatermarkedLM:
    """``model`` with ``delta`` added to the logits of the green tokens: the distribution a
    watermarking generator samples from. Speaks the language-model protocol of Chapter 7.

    Example:
        >>> from coursekit.text.ngram import KneserNeyLM
        >>> lm = KneserNeyLM(order=2).fit([0, 1, 2, 3] * 10, vocab_size=4)
        >>> wm = WatermarkedLM(lm, WatermarkConfig(gamma=0.5, context_width=1))
        >>> round(float(np.exp(wm.logprobs([0])).sum()), 12)
        1.0
    """

    def __init__(self, model, config: WatermarkConfig | None = None):
        self.model = model
        self.config = config or WatermarkConfig()
        self.vocab_size = int(model.vocab_size)
        self.green = GreenLists(self.vocab_size, self.config)

    def logprobs(self, context_ids) -> np.ndarray:
        """Log-probabilities ``(V,)`` of the next token: the model's, tilted towards the green
        list of the context (no tilt while the context is shorter than ``context_width``)."""
        logp = np.asarray(self.model.logprobs(context_ids), dtype=np.float64)   # (V,)
        if len(context_ids) < self.config.context_width:
            return logp
        z = logp + self.config.delta * self.green(context_ids)
        return z - np.logaddexp.reduce(z)

    def token_logprobs(self, ids) -> np.ndarray:
        """``log p_w(ids[t] | ids[:t])`` for ``t >= 1``, shape ``(len(ids) - 1,)``."""
        ids = _check_ids(ids, self.vocab_size)
        return np.array([self.logprobs(ids[:t])[ids[t]] for t in range(1, len(ids))])

    def bits_per_char(self, ids) -> float:
        return _bits(self.token_logprobs(ids))


def green_count(ids, green: GreenLists) -> tuple[int, int]:
    """``(s, T)``: of the ``T`` scored tokens (each after a full context; each (context, token)
    pair once when the config says ``ignore_repeats``), how many ``s`` are green."""
    ids = _check_ids(ids, green.vocab_size)
    w = green.config.context_width
    if len(ids) <= w:
        raise ValueError(f"need more than {w} tokens to score a text, got {len(ids)}")
    seen: set[tuple] = set()
    s = t = 0
    for i in range(w, len(ids)):
        pair = (*ids[i - w:i].tolist(), int(ids[i]))
        if green.config.ignore_repeats:
            if pair in seen:
                continue
            seen.add(pair)
        s += bool(green(ids[i - w:i])[ids[i]])
        t += 1
    return s, t


def z_score(ids, green: GreenLists) -> float:
    """The one-proportion z-statistic of the green count (Kirchenbauer et al. 2023, section 2).

    Example:
        >>> config = WatermarkConfig(gamma=0.5, context_width=1, ignore_repeats=False)
        >>> g = GreenLists(4, config)
        >>> ids = [0]
        >>> for _ in range(16):                       # always pick a green token: z = sqrt(T)
        ...     ids.append(int(np.flatnonzero(g(ids))[0]))
        >>> z_score(ids, g)
        4.0
    """
    s, t = green_count(ids, green)
    gamma = green.config.gamma
    return (s - gamma * t) / math.sqrt(t * gamma * (1.0 - gamma))


def detect(ids, green: GreenLists) -> bool:
    """True when the text's z-score reaches the config's ``z_threshold``."""
    return z_score(ids, green) >= green.config.z_threshold
