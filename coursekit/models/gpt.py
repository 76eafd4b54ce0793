"""A small decoder-only transformer (GPT) for characters, sized for a CPU (Chapter 7).

It follows nanoGPT (Karpathy; Radford et al. 2019): token and position embeddings, ``n_layer``
pre-norm blocks of causal multi-head self-attention and an MLP, a final LayerNorm, and an output
layer tied to the token embedding. *Causal* means position ``t`` attends to positions ``<= t``
only, so the logits at ``t`` are a function of ``ids[:t + 1]`` and a future token can never change
them (a unit test checks exactly that).

Interface (the protocol of ``coursekit.text.lm``, shared with ``coursekit.text.ngram``):

* ``GPT(GPTConfig(vocab_size=V, ...))``; ``forward(ids (B, T)) -> logits (B, T, V)``.
* ``logprobs(context_ids) -> np.ndarray (V,)``: natural-log next-token distribution given the last
  ``block_size`` ids (uniform for an empty context: the model has no start token).
* ``token_logprobs(ids) -> np.ndarray (len(ids) - 1,)`` and ``bits_per_char(ids)``: every position
  is scored with up to ``block_size`` ids of context, by overlapping windows whose first half (the
  short-context predictions) is not counted, except in the first window.
* Trained by ``coursekit.train.fit`` on ``make_windows(ids, block_size)``, rows of
  ``block_size + 1`` ids: ``phases`` = ``("lm",)``, ``loss`` = mean cross-entropy of the next id
  (nats; also logged as ``bpc``), ``evaluate`` = bits per character of each window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from coursekit.models.base import TrainableModel
from coursekit.utils import eval_mode, to_numpy

__all__ = ["GPTConfig", "GPT", "CausalSelfAttention", "make_windows"]


@dataclass
class GPTConfig:
    vocab_size: int = 104         # V: number of token ids (the tokenizer's vocab_size)
    block_size: int = 128         # longest context, in tokens
    n_layer: int = 4              # transformer blocks
    n_head: int = 4               # attention heads per block
    n_embd: int = 128             # width of the residual stream
    dropout: float = 0.0          # dropout on attention weights and residual branches

    def __post_init__(self):
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head, self.n_embd) < 1:
            raise ValueError(f"every size must be >= 1, got {self}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                              # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in (q, k, v))                                       # (B, nh, T, hs)
        # softmax(q k^T / sqrt(hs) + M) v with M = -inf above the diagonal (is_causal)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)                               # (B, T, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """x + attn(LN(x)), then x + MLP(LN(x)) (pre-norm, as GPT-2)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd),
                                 nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def make_windows(ids, block_size: int, stride: int | None = None) -> torch.Tensor:
    """(N, block_size + 1) int64 training rows: ``ids[s : s + block_size + 1]`` every ``stride``
    ids (default ``block_size // 2``, so each id is seen in two contexts per epoch).

    Example:
        >>> make_windows(list(range(10)), block_size=3, stride=3).tolist()
        [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    """
    a = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    stride = stride or max(block_size // 2, 1)
    if a.ndim != 1 or len(a) < block_size + 1:
        raise ValueError(f"need a 1-D sequence of at least block_size + 1 = {block_size + 1} ids, "
                         f"got shape {tuple(a.shape)}")
    return a.unfold(0, block_size + 1, stride).contiguous()                 # (N, T + 1)


class GPT(TrainableModel):
    """A character GPT that speaks the training engine's protocol and the LM protocol.

    Example:
        >>> import torch
        >>> model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16))
        >>> model(torch.zeros(2, 5, dtype=torch.long)).shape
        torch.Size([2, 5, 10])
        >>> round(float(np.exp(model.logprobs([1, 2, 3])).sum()), 5)
        1.0
    """
    config_class = GPTConfig
    PHASES = ("lm",)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight       # weight tying (Press and Wolf 2017)
        self.apply(self._init)
        for name, p in self.named_parameters():      # GPT-2: residual projections / sqrt(2L)
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def _check_ids(self, ids: torch.Tensor) -> None:
        if ids.dtype != torch.long or ids.ndim != 2:
            raise ValueError(f"ids must be a (B, T) int64 tensor, got {tuple(ids.shape)} "
                             f"{ids.dtype}")
        if ids.shape[1] > self.config.block_size:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds block_size "
                             f"{self.config.block_size}")
        # the range check reads values, which would make a GPU wait at every step: CPU only
        # (an out-of-range id on a GPU still fails, inside the embedding)
        if ids.device.type == "cpu" and ids.numel() and (
                ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.config.vocab_size}), got "
                             f"min {int(ids.min())}, max {int(ids.max())}")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self._check_ids(ids)
        T = ids.shape[1]
        pos = torch.arange(T, device=ids.device)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(pos))               # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))                                       # (B, T, V)

    # ------------------------------------------------------------------ training protocol
    def check_data(self, data: dict) -> None:
        """The windows ``x`` (N, T + 1) must be int64 ids in ``[0, vocab_size)``: checked once,
        before training, instead of at every step."""
        x = data["x"]
        if x.dtype != torch.long or x.ndim != 2:
            raise ValueError(f"x must be (N, T + 1) int64 windows, got {tuple(x.shape)} "
                             f"{x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.config.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.config.vocab_size}), got min "
                             f"{int(x.min())}, max {int(x.max())}")

    def objective(self, batch: dict, step: int):
        x = batch["x"]                                                       # (B, T + 1)
        logits = self(x[:, :-1])                                             # (B, T, V)
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        return nll, {"nll": nll.detach(), "bpc": nll.detach() / math.log(2)}

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, length: int | None = None,
               context: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` sequences of ``length`` ids (default ``block_size``) drawn one id at a time,
        ``(n, length)`` int64, after ``context`` ids (T0,) if given (not returned). A GPT has no
        classes: ``labels`` must be None."""
        if labels is not None:
            raise ValueError("a GPT is not class-conditional: labels must be None")
        if n < 1 or temperature <= 0:
            raise ValueError(f"need n >= 1 and temperature > 0, got {n} and {temperature}")
        length = self.config.block_size if length is None else int(length)
        device = self._device()
        ids = torch.zeros(n, 0, dtype=torch.long, device=device)
        if context is not None:
            ids = torch.as_tensor(context, dtype=torch.long, device=device).view(1, -1)
            ids = ids.expand(n, -1)                                          # (n, T0)
        start = ids.shape[1]
        with eval_mode(self):
            for _ in range(length):
                window = ids[:, -self.config.block_size:]
                if window.shape[1] == 0:  # no context: the first id from a uniform draw
                    probs = torch.full((n, self.vocab_size), 1.0 / self.vocab_size,
                                       device=device)
                else:
                    probs = (self(window)[:, -1].float() / temperature).softmax(-1)  # (n, V)
                nxt = torch.multinomial(probs, 1, generator=generator)      # (n, 1)
                ids = torch.cat([ids, nxt], dim=1)
        return ids[:, start:]

    @torch.no_grad()
    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["x"]
        logits = self(x[:, :-1]).float()
        nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")  # (B, T)
        return {"bpc": nll.mean(dim=1) / math.log(2)}

    # ------------------------------------------------------------------------ LM protocol
    def _device(self) -> torch.device:
        return self.tok_emb.weight.device

    @torch.no_grad()
    def logprobs(self, context_ids) -> np.ndarray:
        """(V,) natural-log next-token distribution given the last ``block_size`` ids."""
        ids = [int(i) for i in context_ids][-self.config.block_size:]
        if not ids:
            return np.full(self.vocab_size, -math.log(self.vocab_size))
        with eval_mode(self):
            x = torch.tensor([ids], dtype=torch.long, device=self._device())
            out = to_numpy(F.log_softmax(self(x)[0, -1].double(), dim=-1))
        return out

    @torch.no_grad()
    def token_logprobs(self, ids, batch_size: int = 64) -> np.ndarray:
        """(len(ids) - 1,) ``log p(ids[t] | ids[t - block_size : t])`` for ``t >= 1``."""
        a = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        if a.ndim != 1 or len(a) < 2:
            raise ValueError(f"need a 1-D sequence of at least 2 ids, got shape {tuple(a.shape)}")
        T, L = self.config.block_size, len(a)
        n = min(T, L - 1)                      # inputs per window
        keep = max(n // 2, 1)                  # new predictions per window after the first
        starts = list(range(0, L - 1 - n, keep)) + [L - 1 - n]
        out = torch.empty(L - 1, dtype=torch.float64)
        done = 0                               # predictions 0 .. done - 1 are written
        with eval_mode(self):
            for i in range(0, len(starts), batch_size):
                chunk = starts[i:i + batch_size]
                x = torch.stack([a[s:s + n + 1] for s in chunk]).to(self._device())  # (b, n + 1)
                logp = F.log_softmax(self(x[:, :-1]).double(), dim=-1)           # (b, n, V)
                lp = logp.gather(2, x[:, 1:, None])[..., 0].cpu()                # (b, n)
                for row, s in zip(lp, chunk):
                    # row[j] predicts ids[s + 1 + j], i.e. out[s + j]; keep only the new ones, each
                    # of which (after the first window) has at least n - keep ids of context
                    out[done:s + n] = row[done - s:]
                    done = s + n
        return out.numpy()

    def bits_per_char(self, ids) -> float:
        from coursekit.metrics.likelihood import bits_per_char
        return bits_per_char(self.token_logprobs(ids))
