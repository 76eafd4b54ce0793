"""A green-list watermark for generated text (Kirchenbauer et al. 2023), on any character
language model of Chapter 7 (Chapter 10).

Before each token, the previous token and a secret key seed a pseudo-random split of the
vocabulary into a *green list* of ``gamma * V`` tokens and a red list. Generation adds ``delta``
to the logits of the green tokens, which tilts sampling towards them; detection needs only the
key and the text: with ``T`` scored tokens of which ``s`` are green,

    z = (s - gamma T) / sqrt(T gamma (1 - gamma)),

which is approximately standard normal for text written without the key (each token is green
with probability ``gamma``), and large for watermarked text. A text is flagged when ``z``
reaches a threshold (4 in the paper: a false-alarm rate of about 3e-5 under the normal
approximation).

``WatermarkedLM`` wraps a model and speaks the same protocol (``coursekit.text.lm``), so the
sampler of Chapter 7 draws watermarked text unchanged, and the watermark's cost is the increase of
the wrapped model's bits per character on real text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coursekit.text.lm import bits_per_char as _bits

__all__ = ["WatermarkConfig", "green_lists", "WatermarkedLM", "green_count", "z_score", "detect"]


@dataclass
class WatermarkConfig:
    gamma: float = 0.25      # share of the vocabulary that is green after each token
    delta: float = 2.0       # added to the green tokens' logits when generating
    key: int = 15485863      # the secret that seeds the green lists (the paper's example prime)
    z_threshold: float = 4.0  # flag a text as watermarked when z reaches this

    def __post_init__(self):
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must lie in (0, 1), got {self.gamma}")
        if not math.isfinite(self.delta) or self.delta < 0:
            raise ValueError(f"delta must be a finite number >= 0, got {self.delta}")


def green_lists(vocab_size: int, config: WatermarkConfig) -> np.ndarray:
    """The green list after every possible previous token: a boolean matrix ``(V, V)`` whose row
    ``prev`` marks the ``round(gamma * V)`` green next tokens (at least 1, at most V - 1).

    Row ``prev`` is a permutation drawn from a generator seeded by ``(key, prev)``, so the same key
    always gives the same lists and a detector needs nothing but the key.

    Example:
        >>> g = green_lists(8, WatermarkConfig(gamma=0.25))
        >>> g.shape, g.sum(axis=1).tolist()
        ((8, 8), [2, 2, 2, 2, 2, 2, 2, 2])
    """
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    size = min(max(int(round(config.gamma * vocab_size)), 1), vocab_size - 1)
    mask = np.zeros((vocab_size, vocab_size), dtype=bool)
    for prev in range(vocab_size):
        rng = np.random.default_rng([config.key, prev])
        mask[prev, rng.permutation(vocab_size)[:size]] = True
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
        >>> wm = WatermarkedLM(lm, WatermarkConfig(gamma=0.5, delta=2.0))
        >>> round(float(np.exp(wm.logprobs([0])).sum()), 12)
        1.0
    """

    def __init__(self, model, config: WatermarkConfig | None = None):
        self.model = model
        self.config = config or WatermarkConfig()
        self.vocab_size = int(model.vocab_size)
        self.green = green_lists(self.vocab_size, self.config)   # (V, V)

    def logprobs(self, context_ids) -> np.ndarray:
        """Log-probabilities ``(V,)`` of the next token: the model's, tilted towards the green
        list of the last token (no tilt before the first token, which has no predecessor)."""
        logp = np.asarray(self.model.logprobs(context_ids), dtype=np.float64)   # (V,)
        if len(context_ids) == 0:
            return logp
        z = logp + self.config.delta * self.green[int(context_ids[-1])]
        return z - np.logaddexp.reduce(z)

    def token_logprobs(self, ids) -> np.ndarray:
        """``log p_w(ids[t] | ids[:t])`` for ``t >= 1``, shape ``(len(ids) - 1,)``."""
        ids = _check_ids(ids, self.vocab_size)
        return np.array([self.logprobs(ids[:t])[ids[t]] for t in range(1, len(ids))])

    def bits_per_char(self, ids) -> float:
        return _bits(self.token_logprobs(ids))


def green_count(ids, green: np.ndarray) -> tuple[int, int]:
    """``(s, T)``: how many of the ``T = len(ids) - 1`` scored tokens are green after their
    predecessor."""
    ids = _check_ids(ids, len(green))
    if len(ids) < 2:
        raise ValueError(f"need at least 2 tokens to score a text, got {len(ids)}")
    return int(green[ids[:-1], ids[1:]].sum()), len(ids) - 1


def z_score(ids, green: np.ndarray, gamma: float) -> float:
    """The one-proportion z-statistic of the green count (Kirchenbauer et al. 2023, eq. 2).

    Example:
        >>> g = green_lists(4, WatermarkConfig(gamma=0.5))
        >>> ids = [0]
        >>> for _ in range(16):                       # always pick a green token: z = sqrt(T)
        ...     ids.append(int(np.flatnonzero(g[ids[-1]])[0]))
        >>> z_score(ids, g, 0.5)
        4.0
    """
    s, t = green_count(ids, green)
    return (s - gamma * t) / math.sqrt(t * gamma * (1.0 - gamma))


def detect(ids, green: np.ndarray, config: WatermarkConfig) -> bool:
    """True when the text's z-score reaches ``config.z_threshold``."""
    return z_score(ids, green, config.gamma) >= config.z_threshold
