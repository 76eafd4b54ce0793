"""Vector quantisation and the VQ-VAE, with a GPT prior over its codes (Chapter 12).

A VQ-VAE (van den Oord et al. 2017) encodes an image into a grid of vectors ``z_e`` (B, D, h, w)
and replaces each by its nearest entry of a codebook ``e`` (K, D):

    k = argmin_j ||z_e - e_j||^2,   z_q = e_k,

so the image becomes ``h * w`` integers (a 28x28 MNIST digit: a 7x7 grid, 49 codes of
``log2 K`` bits each). The argmin has no gradient; the straight-through estimator passes the
decoder's gradient with respect to ``z_q`` unchanged to ``z_e`` (``z_e + sg(z_q - z_e)``). The
loss is the reconstruction term plus the commitment term ``beta ||z_e - sg(z_q)||^2``, which keeps
the encoder close to its codes, and, when the codebook learns by gradient
(``codebook_update="loss"``), the codebook term ``||sg(z_e) - z_q||^2``.

Two ways keep a codebook alive, as Jukebox (Dhariwal et al. 2020) and SoundStream (Zeghidour et
al. 2021) do: **EMA updates** (``codebook_update="ema"``; van den Oord et al. 2017, appendix):
each code moves to the exponential moving average of the vectors assigned to it,

    N_k <- d N_k + (1 - d) n_k,   m_k <- d m_k + (1 - d) sum_{i: k_i = k} z_i,   e_k = m_k / N_k

(with Laplace smoothing of ``N``), and **dead-code restarts** (``restart_threshold > 0``): a code
whose moving count ``N_k`` falls below the threshold is moved onto a random encoder output of
the current batch. Without either, most codes can go unused: *codebook collapse*
(``codebook_usage``, ``code_perplexity`` measure it).

``bottleneck="scalar"`` replaces the codebook by rounding one bounded channel to ``K`` levels
(straight-through): a plain autoencoder with exactly as many bits per position, the baseline.

The prior is the course's ``GPT`` (``coursekit.models.gpt``), unchanged: trained by ``fit`` on
``prior_rows`` (a class token ``K + y`` followed by the codes in raster order), sampled by
``sample_codes``, decoded by ``VQVAE.decode_codes``; ``VQVAE.sample(n, labels=..., prior=gpt)``
does both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.models.base import TrainableModel
from coursekit.models.layers import check_batch

__all__ = ["VQVAEConfig", "VQVAE", "nearest_code", "straight_through", "ema_update",
           "prior_config", "train_prior",
           "dead_codes", "code_perplexity", "codebook_usage", "prior_rows", "sample_codes",
           "BOTTLENECKS", "CODEBOOK_UPDATES"]

BOTTLENECKS = ("vq", "scalar")
CODEBOOK_UPDATES = ("ema", "loss")


@dataclass
class VQVAEConfig:
    data_shape: tuple[int, ...] = (1, 28, 28)  # one image (C, H, W), values in [0, 1]
    codebook_size: int = 64        # K: codes (vq) or levels of the scalar channel (scalar)
    code_dim: int = 16             # D: size of each code vector (vq; scalar uses 1 channel)
    hidden: int = 64               # channels of the conv stacks
    downsample: int = 2            # stride-2 convolutions: 28 -> 14 -> 7
    bottleneck: str = "vq"         # "vq" (codebook) or "scalar" (rounded channel, baseline)
    codebook_update: str = "ema"   # "ema" (moving averages) or "loss" (the codebook loss)
    beta: float = 0.25             # weight of the commitment loss (van den Oord et al. 2017)
    decay: float = 0.99            # d, the EMA decay
    eps: float = 1e-5              # Laplace smoothing of the EMA counts
    restart_threshold: float = 1.0  # restart codes whose EMA count is below this (0: never)

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        if len(self.data_shape) != 3:
            raise ValueError(f"data_shape must be (C, H, W), got {self.data_shape}")
        if self.bottleneck not in BOTTLENECKS:
            raise ValueError(f"unknown bottleneck {self.bottleneck!r}; valid: {list(BOTTLENECKS)}")
        if self.codebook_update not in CODEBOOK_UPDATES:
            raise ValueError(f"unknown codebook_update {self.codebook_update!r}; valid: "
                             f"{list(CODEBOOK_UPDATES)}")
        if min(self.codebook_size, self.code_dim, self.hidden, self.downsample) < 1:
            raise ValueError(f"sizes must be >= 1, got {self}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {self.decay}")
        if self.restart_threshold < 0 or self.beta < 0 or self.eps <= 0:
            raise ValueError(f"need restart_threshold >= 0, beta >= 0, eps > 0; got "
                             f"{self.restart_threshold}, {self.beta}, {self.eps}")
        side = min(self.data_shape[1:])
        if side < 2 ** self.downsample:
            raise ValueError(f"images of side {side} cannot be halved {self.downsample} times")


# ------------------------------------------------------------------ vector quantisation

def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code of each row: ``argmin_k ||z_i - e_k||^2``.

    Args:
        z: ``(N, D)`` vectors; codebook: ``(K, D)`` codes.

    Returns:
        ``(N,)`` int64 indices (ties go to the lowest index).

    Example:
        >>> nearest_code(torch.tensor([[0.9, 0.0], [0.0, -2.0]]),
        ...              torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0]])).tolist()
        [1, 2]
    """
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"need z (N, D) and codebook (K, D) with the same D, got "
                         f"{tuple(z.shape)} and {tuple(codebook.shape)}")
    # ||z||^2 - 2 z.e + ||e||^2 without forming the (N, K, D) differences
    d = (z.square().sum(1, keepdim=True) - 2 * z @ codebook.T
         + codebook.square().sum(1))                                       # (N, K)
    return d.argmin(dim=1)


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """``z_q`` in the forward pass; in the backward pass the gradient reaching it goes to ``z_e``
    unchanged (identity Jacobian), and none to ``z_q``: ``z_e + sg(z_q - z_e)``.

    Example:
        >>> z_e = torch.tensor([0.2, 0.7], requires_grad=True)
        >>> out = straight_through(z_e, torch.tensor([0.0, 1.0]))
        >>> (out * torch.tensor([3.0, 5.0])).sum().backward()
        >>> out.tolist(), z_e.grad.tolist()
        ([0.0, 1.0], [3.0, 5.0])
    """
    return z_e + (z_q - z_e).detach()


def ema_update(count: torch.Tensor, total: torch.Tensor, z: torch.Tensor, index: torch.Tensor,
               decay: float, eps: float = 1e-5):
    """One EMA step of the codebook (van den Oord et al. 2017, appendix A.1).

    Args:
        count: ``(K,)`` moving counts ``N``; total: ``(K, D)`` moving sums ``m``.
        z: ``(N, D)`` encoder outputs of the batch; index: ``(N,)`` their nearest codes.
        decay: ``d``; eps: Laplace smoothing of the counts.

    Returns:
        ``(count, total, codebook)``: ``N <- d N + (1 - d) n``, ``m <- d m + (1 - d) sum z``,
        ``e = m / N~`` with ``N~_k = (N_k + eps) / (sum N + K eps) * sum N``.

    Example:
        >>> c, m, e = ema_update(torch.ones(2), torch.zeros(2, 1), torch.tensor([[4.0]]),
        ...                      torch.tensor([0]), decay=0.5, eps=1e-9)
        >>> c.tolist(), m.tolist(), [round(v, 4) for v in e.flatten().tolist()]
        ([1.0, 0.5], [[2.0], [0.0]], [2.0, 0.0])
    """
    K = count.shape[0]
    onehot = F.one_hot(index, K).to(z.dtype)                                 # (N, K)
    count = decay * count + (1 - decay) * onehot.sum(0)                      # (K,)
    total = decay * total + (1 - decay) * onehot.T @ z                       # (K, D)
    n = count.sum()
    smoothed = (count + eps) / (n + K * eps) * n                             # (K,)
    return count, total, total / smoothed[:, None]


def dead_codes(count: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(K,)`` bool: the codes whose moving count has fallen below ``threshold``."""
    return count < threshold


def code_perplexity(index: torch.Tensor, K: int) -> float:
    """``exp(H)`` of the empirical code distribution: K when every code is used equally, 1 when
    one code takes everything (codebook collapse).

    Example:
        >>> code_perplexity(torch.tensor([0, 1, 2, 3]), 8), code_perplexity(torch.zeros(5).long(), 8)
        (4.0, 1.0)
    """
    p = torch.bincount(index.flatten(), minlength=K).double()
    p = p / p.sum()
    p = p[p > 0]
    return round(float(torch.exp(-(p * p.log()).sum())), 10)


def codebook_usage(index: torch.Tensor, K: int) -> float:
    """Fraction of the ``K`` codes used at least once in ``index``."""
    return float((torch.bincount(index.flatten(), minlength=K) > 0).double().mean())


# ------------------------------------------------------------------------------ the model

def _encoder(c: int, hidden: int, out: int, times: int) -> nn.Sequential:
    layers, width = [], c
    for i in range(times):
        nxt = hidden if i == times - 1 else max(hidden // 2, 1)
        layers += [nn.Conv2d(width, nxt, 4, stride=2, padding=1), nn.ReLU()]
        width = nxt
    layers += [nn.Conv2d(width, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, out, 1)]
    return nn.Sequential(*layers)


def _decoder(inp: int, hidden: int, c: int, times: int) -> nn.Sequential:
    layers, width = [nn.Conv2d(inp, hidden, 3, padding=1), nn.ReLU()], hidden
    for i in range(times):
        last = i == times - 1
        nxt = c if last else max(hidden // 2, 1)
        layers.append(nn.ConvTranspose2d(width, nxt, 4, stride=2, padding=1))
        if not last:
            layers.append(nn.ReLU())
        width = nxt
    return nn.Sequential(*layers)


class VQVAE(TrainableModel):
    """A convolutional VQ-VAE (or, with ``bottleneck="scalar"``, an autoencoder whose one latent
    channel is rounded to ``K`` levels). Images in ``[0, 1]``; the decoder gives logits, the
    reconstruction loss is the Bernoulli cross-entropy per image (nats), as Chapter 4's VAEs.

    Example:
        >>> model = VQVAE(VQVAEConfig(codebook_size=8, code_dim=4, hidden=8))
        >>> codes = model.encode(torch.rand(3, 1, 28, 28))
        >>> tuple(codes.shape), tuple(model.decode_codes(codes).shape)
        ((3, 7, 7), (3, 1, 28, 28))
    """
    config_class = VQVAEConfig
    PHASES = ("vqvae",)

    def __init__(self, config: VQVAEConfig | None = None):
        super().__init__()
        self.config = config = config or VQVAEConfig()
        c, H, W = config.data_shape
        K, D = config.codebook_size, config.code_dim
        width = D if config.bottleneck == "vq" else 1
        self.encoder = _encoder(c, config.hidden, width, config.downsample)
        self.decoder = _decoder(width, config.hidden, c, config.downsample)
        with torch.no_grad():
            h, w = self.encoder(torch.zeros(1, c, H, W)).shape[2:]
        self.grid = (int(h), int(w))
        if config.bottleneck == "vq":
            # uniform in +-1/K, the original code's initialisation: far from the encoder's
            # outputs, so that codes die unless something keeps them alive
            init = (torch.rand(K, D) * 2 - 1) / K
            # N, the moving count of each code (the restart rule reads it in both modes)
            self.register_buffer("ema_count", torch.ones(K))                 # (K,)
            if config.codebook_update == "ema":
                self.register_buffer("codebook", init)                       # (K, D)
                self.register_buffer("ema_total", init.clone())              # (K, D), m
            else:
                self.codebook = nn.Parameter(init)
            self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ quantisation
    def _levels(self, u: torch.Tensor) -> torch.Tensor:
        """Scalar bottleneck: tanh to (-1, 1), then the nearest of K evenly spaced levels."""
        K = self.config.codebook_size
        return torch.round((torch.tanh(u) + 1) / 2 * (K - 1)).long()

    def quantize(self, z_e: torch.Tensor):
        """``(z_q, index)``: the quantised grid ``(B, D, h, w)`` and codes ``(B, h, w)``."""
        B, D, h, w = z_e.shape
        if self.config.bottleneck == "scalar":
            index = self._levels(z_e)[:, 0]                                  # (B, h, w)
            z_q = (index.to(z_e.dtype) / (self.config.codebook_size - 1) * 2 - 1)[:, None]
            return z_q, index
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D).float()                # (B h w, D)
        index = nearest_code(flat, self.codebook.float())                    # (B h w,)
        z_q = self.codebook[index].view(B, h, w, D).permute(0, 3, 1, 2)      # (B, D, h, w)
        return z_q.to(z_e.dtype), index.view(B, h, w)

    @torch.no_grad()
    def _update_codebook(self, z_e: torch.Tensor, index: torch.Tensor) -> None:
        """EMA update and dead-code restarts from one training batch."""
        cfg = self.config
        flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, cfg.code_dim).float()  # (N, D)
        if cfg.codebook_update == "ema":
            count, total, codebook = ema_update(self.ema_count, self.ema_total, flat,
                                                index.flatten(), cfg.decay, cfg.eps)
            self.ema_count.copy_(count)
            self.ema_total.copy_(total)
            self.codebook.copy_(codebook)
        else:  # the codebook learns by its loss; the counts still move
            n = torch.bincount(index.flatten(), minlength=cfg.codebook_size)
            self.ema_count.mul_(cfg.decay).add_((1 - cfg.decay) * n)
        if cfg.restart_threshold > 0:
            count = self.ema_count
            dead = dead_codes(count, cfg.restart_threshold)                  # (K,)
            n_dead = int(dead.sum())
            if n_dead:
                pick = torch.randint(len(flat), (n_dead,), device=flat.device)
                self.codebook.data[dead] = flat[pick].to(self.codebook.dtype)
                count[dead] = cfg.restart_threshold
                if cfg.codebook_update == "ema":
                    self.ema_total[dead] = flat[pick] * cfg.restart_threshold
                self.restarts += n_dead

    # ---------------------------------------------------------------- encode / decode
    def _check(self, x: torch.Tensor) -> None:
        check_batch(x, self.config.data_shape, "VQVAE")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images in [0, 1] -> ``(B, h, w)`` int64 codes."""
        self._check(x)
        return self.quantize(self.encoder(x * 2 - 1))[1]

    def decode_codes(self, index: torch.Tensor) -> torch.Tensor:
        """``(B, h, w)`` codes -> ``(B, C, H, W)`` images in [0, 1]."""
        K = self.config.codebook_size
        if index.ndim != 3 or tuple(index.shape[1:]) != self.grid:
            raise ValueError(f"codes must be (B, {self.grid[0]}, {self.grid[1]}), got "
                             f"{tuple(index.shape)}")
        if index.numel() and (index.min() < 0 or index.max() >= K):
            raise ValueError(f"codes must lie in [0, {K}), got {int(index.min())} to "
                             f"{int(index.max())}")
        if self.config.bottleneck == "scalar":
            z_q = (index.float() / (K - 1) * 2 - 1)[:, None]                # (B, 1, h, w)
        else:
            z_q = self.codebook[index].permute(0, 3, 1, 2)                   # (B, D, h, w)
        return torch.sigmoid(self._decode(z_q))

    def _decode(self, z_q: torch.Tensor) -> torch.Tensor:
        _, H, W = self.config.data_shape
        return self.decoder(z_q)[:, :, :H, :W]                               # (B, C, H, W)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Images through the codes and back, in [0, 1]."""
        return self.decode_codes(self.encode(x))

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor):
        """``(logits, index, commit, codebook_loss)`` of a batch, updating the codebook (EMA,
        restarts) when training."""
        self._check(x)
        z_e = self.encoder(x * 2 - 1)                                        # (B, D, h, w)
        if self.config.bottleneck == "scalar":
            u = torch.tanh(z_e)
            z_q, index = self.quantize(z_e)
            z = straight_through(u, z_q)
            zero = z_e.new_zeros(())
            return self._decode(z), index, zero, zero
        z_q, index = self.quantize(z_e)
        commit = (z_e - z_q.detach()).square().sum(1).mean()                 # per position
        codebook_loss = z_e.new_zeros(())
        if self.config.codebook_update == "loss":
            codebook_loss = (z_e.detach() - z_q).square().sum(1).mean()
        if self.training:
            self._update_codebook(z_e, index)
        return self._decode(straight_through(z_e, z_q)), index, commit, codebook_loss

    def objective(self, batch: dict, step: int):
        x = batch["x"]
        logits, index, commit, codebook_loss = self(x)
        rec = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
        rec = rec.flatten(1).sum(1).mean()                                   # nats per image
        positions = self.grid[0] * self.grid[1]
        # the latent terms are per position: times the positions, on the scale of rec
        loss = rec + positions * (self.config.beta * commit + codebook_loss)
        K = self.config.codebook_size
        used = torch.bincount(index.flatten(), minlength=K).gt(0).float().mean()
        return loss, {"rec": rec.detach(), "commit": commit.detach(), "usage": used}

    @torch.no_grad()
    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["x"]
        logits, _, _, _ = self(x)
        rec = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
        mse = (torch.sigmoid(logits.float()) - x).square().flatten(1).mean(1)
        return {"rec": rec.flatten(1).sum(1), "psnr": -10 * torch.log10(mse)}

    # ------------------------------------------------------------------ sampling
    @property
    def bits_per_image(self) -> float:
        """What the code grid can hold: ``h * w * log2 K`` bits."""
        return self.grid[0] * self.grid[1] * math.log2(self.config.codebook_size)

    def attach_prior(self, prior: nn.Module | None) -> None:
        """Keep ``prior`` (a GPT over ``prior_rows``) for ``sample`` to use; it is not a
        submodule, so the VQ-VAE's checkpoint does not hold it (the CLI saves it beside)."""
        object.__setattr__(self, "_prior", prior)

    @property
    def generative(self) -> bool:
        """A VQ-VAE draws new images only through a prior over its codes: once one is
        attached (``attach_prior``)."""
        return getattr(self, "_prior", None) is not None

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, prior: nn.Module | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """``n`` images: codes drawn from ``prior`` (a GPT over ``prior_rows``; default: the
        attached one), decoded. ``labels`` default to the classes in turn, 0, 1, 2, ...

        Raises:
            ValueError: no prior (a VQ-VAE alone has no distribution over codes).
        """
        prior = prior if prior is not None else getattr(self, "_prior", None)
        if prior is None:
            raise ValueError("a VQ-VAE samples through a prior over its codes: pass prior=GPT "
                             "trained on prior_rows(model, data), or attach_prior(GPT)")
        K = self.config.codebook_size
        if labels is None:
            labels = torch.arange(n) % (prior.config.vocab_size - K)
        codes = sample_codes(prior, n, K, self.grid, labels=labels, generator=generator,
                             temperature=temperature)
        return self.decode_codes(codes.to(next(self.decoder.parameters()).device))


# --------------------------------------------------------------------------- the prior

@torch.no_grad()
def prior_rows(model: VQVAE, images: torch.Tensor, labels: torch.Tensor,
               batch_size: int = 500) -> torch.Tensor:
    """``(N, 1 + h w)`` int64 rows for the GPT: the class token ``K + y``, then the codes in raster
    order. ``fit(GPT(GPTConfig(vocab_size=K + classes, block_size=h w)), {"x": rows})`` trains
    the class-conditional prior: every code is predicted, the class token never.
    """
    if labels is None or len(labels) != len(images):
        raise ValueError("prior_rows needs one label per image (the class token)")
    was = model.training
    model.eval()
    codes = torch.cat([model.encode(images[i:i + batch_size]).flatten(1)
                       for i in range(0, len(images), batch_size)])             # (N, h w)
    model.train(was)
    return torch.cat([(labels + model.config.codebook_size)[:, None], codes], dim=1)


@torch.no_grad()
def sample_codes(prior: nn.Module, n: int, K: int, grid: tuple[int, int], *,
                 labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 temperature: float = 1.0) -> torch.Tensor:
    """``(n, h, w)`` codes drawn one position at a time from the GPT ``prior``, given the class
    token of each label; only the ``K`` code tokens are allowed at code positions."""
    if labels is None:
        raise ValueError("the prior is class-conditional: pass labels (n,)")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    device = next(prior.parameters()).device
    was = prior.training
    prior.eval()
    ids = (labels + K)[:, None].to(device)                                   # (n, 1)
    for _ in range(grid[0] * grid[1]):
        logits = prior(ids)[:, -1, :K].float() / temperature                 # (n, K)
        probs = logits.softmax(-1)
        if generator is not None:  # draw where the generator lives
            probs = probs.to(generator.device)
        nxt = torch.multinomial(probs, 1, generator=generator).to(device)    # (n, 1)
        ids = torch.cat([ids, nxt], dim=1)
    prior.train(was)
    return ids[:, 1:].view(n, *grid).cpu()


def prior_config(model: VQVAE, num_classes: int = 10):
    """The GPT prior of Chapter 12 for ``model``'s codes: ``K`` code tokens and one class token
    per class, a context of ``h * w`` tokens, 4 layers of width 64."""
    from coursekit.models.gpt import GPTConfig

    return GPTConfig(vocab_size=model.config.codebook_size + num_classes,
                     block_size=model.grid[0] * model.grid[1], n_layer=4, n_head=4, n_embd=64)


def train_prior(model: VQVAE, data, config, checkpoint=None, num_classes: int = 10):
    """Stage 2: a GPT (``prior_config``) trained by ``fit`` on ``prior_rows`` of ``data`` (an
    ``ImageDataset`` or ``{"x", "y"}``) with the ``TrainConfig`` ``config`` (its checkpoint
    replaced by ``checkpoint``); returns the trained GPT."""
    from dataclasses import replace

    from coursekit.models.gpt import GPT
    from coursekit.train import fit

    images = data.images if hasattr(data, "images") else data["x"]
    labels = data.labels if hasattr(data, "labels") else data.get("y")
    prior = GPT(prior_config(model, num_classes))
    rows = prior_rows(model, images, labels)
    ckpt = None if checkpoint is None else str(checkpoint)
    return fit(prior, {"x": rows}, replace(config, checkpoint=ckpt)).model
