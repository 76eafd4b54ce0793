"""A character n-gram language model with interpolated modified Kneser-Ney smoothing: the classical
baseline of Chapter 7 (Kneser and Ney 1995; Chen and Goodman 1999).

Interface (stable; Chapter 10's watermark builds on it; the protocol is ``coursekit.text.lm``):

* ``KneserNeyLM(order=8)``; ``.fit(ids, vocab_size=None)`` counts the training ids (a list or
  array of ints in ``[0, V)``; V defaults to ``max(ids) + 1``, pass the tokenizer's ``vocab_size``)
  and returns the model.
* ``.logprobs(context_ids) -> np.ndarray`` of shape ``(V,)``: natural-log next-token distribution
  given the ids so far (only the last ``order - 1`` matter; an empty context is allowed).
* ``.token_logprobs(ids) -> np.ndarray`` of shape ``(len(ids) - 1,)``: ``log p(ids[t] | ids[:t])``
  for ``t >= 1``, vectorised over the whole sequence.
* ``.bits_per_char(ids) -> float``: base-2 cross-entropy of those predictions.

The model. With ``h`` the last ``k - 1`` characters and ``w`` the next one, order ``k`` is
``p_k(w | h) = max(c_k(h w) - D_k(c), 0) / c_k(h .) + gamma_k(h) p_{k-1}(w | h')``, where ``h'``
drops the oldest character, ``gamma_k(h) = (D_1 N_1(h .) + D_2 N_2(h .) + D_3 N_3+(h .)) / c_k(h .)``
gives back exactly the mass the discounts removed, and ``p_0`` is uniform over the V ids (so a
character never seen still has a non-zero probability). The highest order counts occurrences;
every lower order counts *continuations* ``N_1+(. h w)``, the number of distinct characters seen
before ``h w``: a lower order is only consulted when the longer context was rare, so it should
model how many contexts a string completes, not how often it occurs. The three discounts of each
order come from its count-of-counts (Chen and Goodman's estimates). A context never seen at order
``k`` leaves ``p_{k-1}`` unchanged.

Implementation: each n-gram is one integer code in base V (so ``V ** order`` must fit in 63 bits);
``np.unique`` counts them and ``np.searchsorted`` looks them up, so fitting 420k characters at order
8 takes seconds and scoring a whole split is a few array passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coursekit.text.lm import bits_per_char as _bits

__all__ = ["KneserNeyLM", "kn_discounts", "continuation_counts"]


def kn_discounts(counts) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts ``(D_1, D_2, D_3+)`` from the counts of one order
    (Chen and Goodman 1999): with ``n_r`` the number of n-grams seen ``r`` times and
    ``Y = n_1 / (n_1 + 2 n_2)``, ``D_r = r - (r + 1) Y n_{r+1} / n_r``.
    Falls back to one discount ``Y`` (or 0.5) for each when a count-of-count is zero.

    Example:
        >>> kn_discounts([1, 1, 1, 1, 2, 2, 3, 4])
        (0.5, 1.25, 1.0)
    """
    c = np.asarray(counts)
    n = [int(np.sum(c == r)) for r in (1, 2, 3, 4)]
    if n[0] == 0 or n[1] == 0:
        return (0.5, 0.5, 0.5)
    y = n[0] / (n[0] + 2 * n[1])
    if n[2] == 0 or n[3] == 0:
        return (y, y, y)
    d = tuple(float(min(max(r - (r + 1) * y * n[r] / n[r - 1], 0.0), r))
              for r in (1, 2, 3))
    return d


def continuation_counts(ids, k: int) -> dict[tuple[int, ...], int]:
    """``N_1+(. g)`` for every k-gram ``g`` of ``ids``: how many distinct tokens precede it.
    (A readable reference for the vectorised counts inside ``KneserNeyLM``.)

    Example:
        >>> continuation_counts([1, 2, 1, 2, 3, 2], 1)   # 2 follows 1 and 3; 1 follows 2; 3: 2
        {(1,): 1, (2,): 2, (3,): 1}
    """
    seen = {tuple(ids[i:i + k + 1]) for i in range(len(ids) - k)}
    out: dict[tuple[int, ...], int] = {}
    for gram in seen:
        out[gram[1:]] = out.get(gram[1:], 0) + 1
    return dict(sorted(out.items()))


@dataclass
class _Order:
    """The tables of one order k (codes in base V)."""

    grams: np.ndarray     # (G,) int64, sorted codes of the k-grams seen
    disc: np.ndarray      # (G,) float64, max(c - D, 0) / c(h .): the discounted probability
    contexts: np.ndarray  # (H,) int64, sorted codes of the (k-1)-gram contexts seen
    gamma: np.ndarray     # (H,) float64, back-off weight of each context
    discounts: tuple[float, float, float]


def _codes(ids: np.ndarray, k: int, base: int) -> np.ndarray:
    """(L - k + 1,) int64 codes of the k-grams ``ids[i:i+k]``."""
    code = np.zeros(len(ids) - k + 1, dtype=np.int64)
    for j in range(k):
        code = code * base + ids[j:len(ids) - k + 1 + j]
    return code


class KneserNeyLM:
    """Character n-gram model with interpolated modified Kneser-Ney smoothing (Chapter 7).

    Args:
        order: n, the number of characters in the longest n-gram (context = n - 1 characters).

    Example:
        >>> from coursekit.text.tokenize import CharTokenizer
        >>> tok = CharTokenizer.from_text("abracadabra " * 20)
        >>> lm = KneserNeyLM(order=4).fit(tok.encode("abracadabra " * 20), tok.vocab_size)
        >>> p = np.exp(lm.logprobs(tok.encode("abr")))
        >>> round(float(p.sum()), 6), tok.decode([int(p.argmax())])
        (1.0, 'a')
    """

    def __init__(self, order: int = 8):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        self.order = order
        self.vocab_size: int | None = None
        self._orders: list[_Order] = []

    # ------------------------------------------------------------------------------- fitting
    def _check_ids(self, ids, name: str = "ids") -> np.ndarray:
        a = np.asarray(ids)
        if a.ndim != 1:
            raise ValueError(f"{name} must be a 1-D sequence of token ids, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name} must hold integer token ids, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if self.vocab_size is not None and a.size and (a.min() < 0 or a.max() >= self.vocab_size):
            raise ValueError(f"{name} has ids outside [0, {self.vocab_size}): "
                             f"min {a.min()}, max {a.max()}")
        return a

    def fit(self, ids, vocab_size: int | None = None) -> "KneserNeyLM":
        """Count the n-grams of ``ids`` (the training split). Returns ``self``."""
        a = np.asarray(ids)
        if a.ndim != 1 or a.size <= self.order:
            raise ValueError(f"need a 1-D sequence longer than order={self.order}, got shape "
                             f"{a.shape}")
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0:
            raise ValueError("ids must be non-negative integers")
        V = int(vocab_size) if vocab_size is not None else int(a.max()) + 1
        if a.max() >= V:
            raise ValueError(f"ids go up to {a.max()} but vocab_size is {V}")
        if V ** self.order >= 2 ** 62:
            raise ValueError(f"vocab_size**order = {V}**{self.order} does not fit in 63-bit codes;"
                             f" lower the order")
        self.vocab_size = V
        a = a.astype(np.int64)
        self._orders = []
        for k in range(1, self.order + 1):
            if k == self.order:      # the highest order counts occurrences
                grams, counts = np.unique(_codes(a, k, V), return_counts=True)
            else:                    # lower orders count distinct left neighbours
                longer = np.unique(_codes(a, k + 1, V))
                grams, counts = np.unique(longer % V ** k, return_counts=True)
            counts = counts.astype(np.float64)
            d = kn_discounts(counts)
            discount = np.where(counts == 1, d[0], np.where(counts == 2, d[1], d[2]))
            contexts, inverse = np.unique(grams // V, return_inverse=True)
            total = np.bincount(inverse, weights=counts)                     # c(h .)
            removed = np.bincount(inverse, weights=discount)                 # sum of D(c)
            self._orders.append(_Order(grams=grams, disc=(counts - discount) / total[inverse],
                                       contexts=contexts, gamma=removed / total, discounts=d))
        return self

    def _check_fitted(self) -> None:
        if self.vocab_size is None:
            raise RuntimeError("this KneserNeyLM is not fitted yet: call fit(ids) first")

    # ------------------------------------------------------------------------------- querying
    def logprobs(self, context_ids) -> np.ndarray:
        """(V,) natural-log distribution of the next id after ``context_ids``."""
        self._check_fitted()
        ctx = self._check_ids(context_ids, "context_ids")
        V = self.vocab_size
        p = np.full(V, 1.0 / V)
        for k, table in enumerate(self._orders, start=1):
            m = k - 1
            if len(ctx) < m:
                break
            h = 0
            for i in ctx[len(ctx) - m:]:
                h = h * V + int(i)
            j = np.searchsorted(table.contexts, h)
            if j == len(table.contexts) or table.contexts[j] != h:
                continue                 # an unseen context leaves p_{k-1} unchanged
            lo, hi = np.searchsorted(table.grams, [h * V, h * V + V])
            p = table.gamma[j] * p
            p[table.grams[lo:hi] % V] += table.disc[lo:hi]
        return np.log(p)

    def token_logprobs(self, ids) -> np.ndarray:
        """(len(ids) - 1,) ``log p(ids[t] | ids[:t])`` for ``t = 1 .. len(ids) - 1``."""
        self._check_fitted()
        a = self._check_ids(ids)
        if a.size < 2:
            raise ValueError(f"need at least 2 ids to score one prediction, got {a.size}")
        V, L = self.vocab_size, len(a)
        t = np.arange(1, L)                       # the positions predicted
        p = np.full(L - 1, 1.0 / V)
        context = np.zeros(L - 1, dtype=np.int64)  # code of the last m ids before t
        for k, table in enumerate(self._orders, start=1):
            m = k - 1
            if m > 0:
                # extend every context by one older id: code += ids[t - m] * V^(m - 1)
                older = np.where(t - m >= 0, a[np.clip(t - m, 0, None)], 0)
                context = context + older * V ** (m - 1)
            valid = t - m >= 0
            j = np.searchsorted(table.contexts, context)
            jc = np.minimum(j, len(table.contexts) - 1)
            seen = valid & (table.contexts[jc] == context)
            gram = context * V + a[t]
            g = np.minimum(np.searchsorted(table.grams, gram), len(table.grams) - 1)
            disc = np.where(table.grams[g] == gram, table.disc[g], 0.0)
            p = np.where(seen, disc + table.gamma[jc] * p, p)
        return np.log(p)

    def bits_per_char(self, ids) -> float:
        """Base-2 cross-entropy of ``token_logprobs(ids)``: bits per character."""
        return _bits(self.token_logprobs(ids))

    def __repr__(self) -> str:
        return f"KneserNeyLM(order={self.order}, vocab_size={self.vocab_size})"
