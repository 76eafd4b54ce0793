"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed and Welling (2014): the class is a
latent variable, observed for the few labelled images and inferred for the rest (Chapter 6).

The generative model is ``p(y) p(z) p(x|y,z)`` with ``p(y)`` uniform over ``K`` classes and
``p(z) = N(0, I)``; inference uses a classifier ``q(y|x)`` and an encoder ``q(z|x,y)``. For a
labelled pair the bound is the conditional VAE's, for an unlabelled image the class is summed out
under ``q(y|x)`` (Kingma et al. 2014, eqs. 6-7, written here as *negative* bounds, in nats):

    L(x, y) = E_q(z|x,y)[-log p(x|y,z)] + KL(q(z|x,y) || p(z)) - log p(y)
    U(x)    = sum_y q(y|x) L(x, y) - H(q(y|x))

so ``-U(x) = E_q(y|x)[-L(x, y)] + H(q(y|x))``, and ``-U(x) <= log sum_y exp(-L(x, y))`` with
equality when ``q(y|x)`` is the posterior the bounds imply. The training objective adds the
classifier's cross-entropy on the labelled images, weighted by ``alpha`` (eq. 9), because
otherwise ``q(y|x)`` learns only from the unlabelled term.

A batch is a dict with ``x`` (B, C, H, W) in [0, 1], ``levels`` (optional, for the categorical
likelihood), ``y`` (B,): the class, or ``-1`` where the image is unlabelled, and optionally
``prior`` (B, K): a per-image prior on ``y`` that replaces the uniform ``p(y)`` in both bounds (an
empirical-Bayes prior, e.g. label spreading's class probabilities; with it the unlabelled bound
holds ``KL(q(y|x) || prior)`` in place of the entropy bonus).

With ``generative=False`` there is no encoder or decoder: the model is the classifier alone,
trained on ``alpha`` times the labelled cross-entropy plus the consistency term. It is the
ablation that says what M2's generative part adds. Build such data
with ``coursekit.fewlabels.semi_supervised_data``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from coursekit.losses import gaussian_kl, log_bernoulli, log_categorical, log_normal
from coursekit.models.layers import check_batch
from coursekit.models.base import TrainableModel

__all__ = ["M2Config", "M2", "UNLABELLED"]

UNLABELLED = -1  # the value of ``y`` for an image without a label


@dataclass
class M2Config:
    data_shape: tuple[int, ...] = (1, 8, 8)  # one image (C, H, W)
    num_classes: int = 10            # K, the number of classes y can take
    latent_dim: int = 16             # size of z
    hidden: int = 256                # width of every MLP (classifier, encoder, decoder)
    likelihood: str = "categorical"  # p(x|y,z): "categorical" over grey levels, "bernoulli", or
    #                                  "gaussian" (learned variance per feature: for M1 features)
    num_levels: int = 17             # grey levels of the categorical likelihood (digits: 0..16)
    alpha: float = 1.0               # weight of the classifier's cross-entropy on labelled images
    dropout: float = 0.0             # dropout in the classifier (a regulariser for few labels)
    input_dropout: float = 0.0       # dropout on the classifier's input pixels
    augment: bool = False            # random shifts of at most ``shift`` pixels while training
    shift: int = 1                   # largest shift of the augmentation, in pixels
    consistency: float = 0.0         # weight of KL(q(y|x) || q(y|x')), x' a random view of x
    classifier: str = "mlp"          # q(y|x): "mlp", or "conv" (two 3x3 conv layers, then MLP)
    channels: int = 32               # feature maps of the conv classifier's first layer
    generative: bool = True          # False: no encoder or decoder, the classifier alone with
    #                                  its cross-entropy and consistency (the ablation of M2)

    def __post_init__(self):
        self.data_shape = tuple(int(s) for s in self.data_shape)
        if self.likelihood not in ("categorical", "bernoulli", "gaussian"):
            raise ValueError(f"unknown likelihood {self.likelihood!r}; valid: ['categorical', "
                             f"'bernoulli', 'gaussian']")
        if (self.augment or self.consistency > 0 or self.classifier == "conv") \
                and len(self.data_shape) != 3:
            raise ValueError(f"augment, consistency and the conv classifier need images "
                             f"(C, H, W), got "
                             f"data_shape {self.data_shape}")
        if self.classifier not in ("mlp", "conv"):
            raise ValueError(f"unknown classifier {self.classifier!r}; valid: ['mlp', 'conv']")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.alpha < 0 or not 0 <= self.dropout < 1 or not 0 <= self.input_dropout < 1:
            raise ValueError(f"need alpha >= 0 and dropouts in [0, 1), got alpha={self.alpha}, "
                             f"dropout={self.dropout}, input_dropout={self.input_dropout}")

    @property
    def logits_per_pixel(self) -> int:
        return self.num_levels if self.likelihood == "categorical" else 1


def _mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.LeakyReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def random_shift(levels: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each image of ``(B, C, H, W)`` by a random whole number of pixels in
    ``-max_shift..max_shift`` along each axis, filling with zeros (the background). Integer
    shifts keep grey levels exact, so the categorical likelihood still applies."""
    b, _, h, w = levels.shape
    padded = F.pad(levels, (max_shift,) * 4)                        # (B, C, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), device=levels.device)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), device=levels.device)
    rows = (dy[:, None] + torch.arange(h, device=levels.device))     # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=levels.device))     # (B, W)
    index = torch.arange(b, device=levels.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()                     # (B, C, H, W)


class M2(TrainableModel):
    """The M2 model: a classifier ``q(y|x)``, an encoder ``q(z|x,y)`` and a decoder ``p(x|y,z)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m2 = M2(M2Config(latent_dim=4, hidden=32))
        >>> levels = torch.randint(0, 17, (3, 1, 8, 8))
        >>> batch = {"x": levels / 16, "levels": levels, "y": torch.tensor([2, -1, -1])}
        >>> m2.classify(batch["x"]).shape, m2.unlabelled_bound(batch).shape
        (torch.Size([3, 10]), torch.Size([3]))
        >>> loss, logs = m2.loss("m2", batch, 0); loss.ndim
        0
    """
    config_class = M2Config
    PHASES = ("m2",)

    def __init__(self, config: M2Config | None = None):
        super().__init__()
        self.config = c = config or M2Config()
        d, k = math.prod(c.data_shape), c.num_classes
        self.num_pixels = d
        if c.classifier == "mlp":
            self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(c.input_dropout),
                                            _mlp([d, c.hidden, c.hidden, k], c.dropout))
        else:
            ch, (h, w) = c.channels, c.data_shape[1:]
            self.classifier = nn.Sequential(
                nn.Dropout(c.input_dropout),
                nn.Conv2d(c.data_shape[0], ch, 3, padding=1), nn.LeakyReLU(),   # (B, 32, H, W)
                nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.LeakyReLU(),            # (B, 64, H, W)
                nn.MaxPool2d(2), nn.Flatten(),                                  # (B, 64 H W / 4)
                _mlp([2 * ch * (h // 2) * (w // 2), c.hidden, k], c.dropout))
        if not c.generative:
            self.encoder = self.decoder = None
            return
        self.encoder = _mlp([d + k, c.hidden, c.hidden, 2 * c.latent_dim])
        self.decoder = _mlp([c.latent_dim + k, c.hidden, c.hidden, d * c.logits_per_pixel])
        if c.likelihood == "gaussian":
            self.logvar_x = nn.Parameter(torch.zeros(d))  # the decoder's noise, per feature

    # ------------------------------------------------------------------------------ checks
    def _check(self, batch: dict) -> None:
        check_batch(batch["x"], self.config.data_shape, "M2")
        y = batch.get("y")
        if y is not None:
            if y.shape != batch["x"].shape[:1]:
                raise ValueError(f"y must have one entry per image: x has {len(batch['x'])} "
                                 f"images, y has shape {tuple(y.shape)}")
            bad = (y < UNLABELLED) | (y >= self.config.num_classes)
            if bad.any():
                raise ValueError(f"labels must lie in 0..{self.config.num_classes - 1} (or "
                                 f"{UNLABELLED} for unlabelled), got {sorted(set(y[bad].tolist()))}")

    # --------------------------------------------------------------------------- the model
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of ``q(y|x)``, ``(B, K)``."""
        check_batch(x, self.config.data_shape, "M2")
        return self.classifier(x)

    def _levels(self, batch: dict) -> torch.Tensor:
        levels = batch.get("levels")
        if levels is None:
            levels = torch.round(batch["x"] * (self.config.num_levels - 1)).long()
        return levels

    def labelled_bound(self, batch: dict, y: torch.Tensor,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
        """``L(x, y)``, the negative labelled bound in nats, ``(B,)``, with one sample of
        ``z = mu + sigma * eps`` (``eps`` ``(B, latent_dim)``; drawn when not given)."""
        self._require_generative("the labelled bound")
        c = self.config
        x = batch["x"]
        y_onehot = F.one_hot(y, c.num_classes).to(x.dtype)                   # (B, K)
        mu, logvar = self.encoder(torch.cat([x.flatten(1), y_onehot], 1)).chunk(2, dim=1)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * logvar) * eps                                 # (B, latent)
        log_px = self._log_px(batch, y_onehot, z)
        prior = batch.get("prior")
        if prior is None:
            log_py = -math.log(c.num_classes)                                 # uniform p(y)
        else:                                                                 # per-image p(y)
            log_py = prior.clamp_min(1e-12).log().gather(1, y[:, None])[:, 0]
        return -log_px + gaussian_kl(mu, logvar) - log_py

    def _log_px(self, batch: dict, y_onehot: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | y, z)`` in nats, ``(B,)``."""
        c, x = self.config, batch["x"]
        b = x.shape[0]
        out = self.decoder(torch.cat([z, y_onehot], 1))                        # (B, D * L)
        if c.likelihood == "categorical":
            logits = out.view(b, self.num_pixels, c.num_levels).transpose(1, 2)  # (B, L, D)
            return log_categorical(self._levels(batch).reshape(b, -1), logits)
        if c.likelihood == "bernoulli":
            return log_bernoulli(x.flatten(1), out)
        return log_normal(x.flatten(1), out, self.logvar_x.expand_as(out))

    @torch.no_grad()
    def log_marginal(self, batch: dict, samples: int = 64) -> torch.Tensor:
        """An importance-sampled estimate of ``log p(x)`` in nats, ``(B,)``: the class is summed
        out exactly and ``z`` is drawn ``samples`` times from ``q(z|x, y)`` for every class,
        ``log sum_y p(y) mean_s p(x|y,z_s) p(z_s) / q(z_s|x,y)`` (Burda et al. 2016's estimator
        per class). Its expectation is at most ``log p(x)`` and at least
        ``log sum_y exp(-L(x, y)) >= -U(x)`` (Jensen twice), and it tightens as ``samples``
        grows. Uniform ``p(y)``."""
        self._require_generative("log_marginal")
        c, x = self.config, batch["x"]
        b, k = x.shape[0], c.num_classes
        out = torch.empty(b, k, device=x.device)
        for y in range(k):
            y_onehot = F.one_hot(torch.full((b,), y, device=x.device), k).to(x.dtype)
            mu, logvar = self.encoder(torch.cat([x.flatten(1), y_onehot], 1)).chunk(2, dim=1)
            std = torch.exp(0.5 * logvar)
            logw = []
            for _ in range(samples):
                eps = torch.randn_like(mu)
                z = mu + std * eps
                log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
                log_qz = log_normal(z, mu, logvar)
                logw.append(self._log_px(batch, y_onehot, z) + log_pz - log_qz)
            out[:, y] = torch.logsumexp(torch.stack(logw), 0) - math.log(samples)
        return torch.logsumexp(out - math.log(k), dim=1)

    def _require_generative(self, what: str) -> None:
        if not self.config.generative:
            raise ValueError(f"{what} needs the generative model; this M2 was built with "
                             f"generative=False (a classifier alone)")

    def labelled_bounds_all(self, batch: dict, eps: torch.Tensor | None = None) -> torch.Tensor:
        """``L(x, y)`` for every class ``y``, ``(B, K)``, the same ``eps`` for every class."""
        k, b = self.config.num_classes, batch["x"].shape[0]
        rep = {name: t.repeat(k, *([1] * (t.ndim - 1))) for name, t in batch.items()
               if name in ("x", "levels", "prior")}                            # (K * B, ...)
        y = torch.arange(k, device=batch["x"].device).repeat_interleave(b)     # (K * B,)
        eps_k = None if eps is None else eps.repeat(k, 1)
        return self.labelled_bound(rep, y, eps_k).view(k, b).t()               # (B, K)

    def unlabelled_bound(self, batch: dict, eps: torch.Tensor | None = None,
                         logits: torch.Tensor | None = None) -> torch.Tensor:
        """``U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))``, the negative unlabelled bound, ``(B,)``.

        ``logits`` of ``q(y|x)`` may be passed in (computed from ``x`` when not given)."""
        logits = self.classify(batch["x"]) if logits is None else logits      # (B, K)
        log_q = logits.log_softmax(dim=1)
        q = log_q.exp()
        entropy = -(q * log_q).sum(dim=1)                                      # (B,)
        return (q * self.labelled_bounds_all(batch, eps)).sum(dim=1) - entropy

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The most probable class under ``q(y|x)``, ``(B,)``, in eval mode."""
        was_training = self.training
        self.eval()
        out = torch.cat([self.classify(x[i:i + batch_size]).argmax(1)
                         for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out

    @torch.no_grad()
    def sample(self, labels: torch.Tensor) -> torch.Tensor:
        """Images in ``[0, 1]`` of the given classes, the decoder's mean at ``z ~ N(0, I)``."""
        self._require_generative("sampling")
        c = self.config
        z = torch.randn(len(labels), c.latent_dim, device=labels.device)
        out = self.decoder(torch.cat([z, F.one_hot(labels, c.num_classes).float()], 1))
        if c.likelihood == "categorical":
            probs = out.view(len(labels), self.num_pixels, c.num_levels).softmax(-1)
            grid = torch.arange(c.num_levels, device=out.device, dtype=probs.dtype)
            return (probs @ grid / (c.num_levels - 1)).view(len(labels), *c.data_shape)
        if c.likelihood == "gaussian":
            return out.view(len(labels), *c.data_shape)
        return torch.sigmoid(out).view(len(labels), *c.data_shape)

    # --------------------------------------------------------------------- the engine's protocol
    def phases(self, step: int) -> tuple[str, ...]:
        return ("m2",)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"m2": list(self.parameters())}

    def ema_module(self) -> nn.Module:
        return self

    def loss(self, phase: str, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        """``mean_l L(x, y) + mean_u U(x) + alpha * mean_l CE(q(y|x), y)`` over the batch's
        labelled (l) and unlabelled (u) images (Kingma et al. 2014, eq. 9, per-example means)."""
        if phase != "m2":
            raise ValueError(f"unknown phase {phase!r}; M2 has one phase, 'm2'")
        self._check(batch)
        c = self.config
        if c.augment and self.training:
            levels = random_shift(self._levels(batch), c.shift)
            batch = {**batch, "levels": levels, "x": levels.float() / (c.num_levels - 1)}
        y = batch.get("y")
        if y is None:
            y = torch.full(batch["x"].shape[:1], UNLABELLED, device=batch["x"].device)
        lab, unl = y >= 0, y < 0
        logits = self.classify(batch["x"])                                     # (B, K)
        zero = logits.sum() * 0.0
        logs = {}
        loss = zero
        if lab.any():
            ce = F.cross_entropy(logits[lab], y[lab])
            loss = loss + c.alpha * ce
            logs.update(ce=ce.detach())
            if c.generative:
                part = {n: t[lab] for n, t in batch.items() if n in ("x", "levels")}
                bound_l = self.labelled_bound(part, y[lab]).mean()
                loss = loss + bound_l
                logs.update(labelled_bound=bound_l.detach())
        if unl.any() and c.generative:
            part = {n: t[unl] for n, t in batch.items() if n in ("x", "levels", "prior")}
            bound_u = self.unlabelled_bound(part, logits=logits[unl]).mean()
            loss = loss + bound_u
            logs.update(unlabelled_bound=bound_u.detach())
        if c.consistency > 0:
            # the prediction on a random view should match the (fixed) prediction on the image
            from coursekit.fewlabels import augment_digits

            target = logits.detach().softmax(1)                               # (B, K)
            log_view = self.classify(augment_digits(batch["x"])).log_softmax(1)
            kl = (target * (target.clamp_min(1e-8).log() - log_view)).sum(1).mean()
            loss = loss + c.consistency * kl
            logs.update(consistency=kl.detach())
        return loss, logs

    def evaluate(self, batch: dict) -> dict[str, torch.Tensor]:
        """Per-example ``error`` of ``q(y|x)`` (needs labels) and the unlabelled bound ``U``."""
        self._check(batch)
        logits = self.classify(batch["x"])
        out = {}
        if self.config.generative:
            out["neg_elbo_unlabelled"] = self.unlabelled_bound(batch, logits=logits)
        if batch.get("y") is not None:
            out["error"] = (logits.argmax(1) != batch["y"]).float()
        return out

    def config_dict(self) -> dict:
        return asdict(self.config)
