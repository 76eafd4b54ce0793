"""The one protocol every trainable model of the course speaks (Chapter 4 teaches it).

``TrainableModel`` is an ``nn.Module`` that the training engine (``coursekit.train.fit``) asks
for what it needs, with defaults that serve the common case of one optimiser over all parameters:

- ``PHASES``: the names of the optimisation phases (a VAE: ``("vae",)``; a GAN:
  ``("discriminator", "generator")``); ``phases(step)`` returns those taken at ``step``;
- ``parameter_groups()``: ``{phase: parameters}``, one optimiser each (default: every parameter
  under the single phase);
- ``objective(batch, step)``: ``(scalar loss, {name: detached scalar to log})``, the one method a
  single-phase model must write; ``loss(phase, batch, step)`` guards the phase and calls it (a
  model of several phases overrides ``loss`` instead);
- ``evaluate(batch)`` (optional): ``{name: per-example values (B,)}`` on held-out data;
- ``ema_module()``: the part whose moving average the engine keeps (default: the whole model);
- ``check_data(data)``: validate the prepared data once, before the first step (default: no-op);
- ``config_dict()``: the constructor's config as plain data, saved in every checkpoint;
- ``sample(n, *, labels=None, generator=None)``: ``n`` new examples (generative models only);
  ``averaged(ema)`` is the model with its moving average in place, to sample from it.

Every subclass that names its ``config_class`` is registered under its class name, so that
``coursekit.train.load_model`` can rebuild any model that ``fit`` trained from its checkpoint.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import asdict, is_dataclass
from typing import ClassVar

import torch
from torch import nn

__all__ = ["TrainableModel", "MODEL_REGISTRY", "model_class"]

# class name -> (model class, config class); filled by TrainableModel.__init_subclass__.
MODEL_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {}


class TrainableModel(nn.Module):
    """Base class of the models ``fit`` trains; see the module docstring for the protocol.

    Subclasses set ``config_class`` (the dataclass their constructor takes) and ``PHASES``, and
    write ``objective``. Example:

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class LineConfig:
        ...     slope: float = 1.0   # the initial slope
        >>> class Line(TrainableModel):
        ...     config_class = LineConfig
        ...     PHASES = ("fit",)
        ...     def __init__(self, config):
        ...         super().__init__()
        ...         self.config = config
        ...         self.w = nn.Parameter(torch.tensor(config.slope))
        ...     def objective(self, batch, step):
        ...         loss = ((self.w * batch["x"] - batch["y"]) ** 2).mean()
        ...         return loss, {"mse": loss.detach()}
        >>> MODEL_REGISTRY["Line"][0] is Line
        True
        >>> Line(LineConfig()).loss("other", {}, 0)
        Traceback (most recent call last):
        ...
        ValueError: unknown phase 'other'; a Line has the phases ('fit',)
    """

    config_class: ClassVar[type | None] = None   # the dataclass the constructor takes
    PHASES: ClassVar[tuple[str, ...]] = ("train",)

    def __init__(self, config=None):
        """Keep ``config`` (the model's dataclass) as ``self.config``: a subclass calls
        ``super().__init__(config)`` and reads ``self.config``."""
        super().__init__()
        if config is not None:
            self.config = config

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("config_class") is not None:
            MODEL_REGISTRY[cls.__name__] = (cls, cls.config_class)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _recording_init(init)
        sample = cls.__dict__.get("sample")
        if sample is not None and list(inspect.signature(sample).parameters)[1:2] == ["n"]:
            cls.sample = _checked_sample(sample)  # n first, a number, as the CLI calls it

    # ----------------------------------------------------------------- the initial weights
    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.parameters())

    def is_fresh(self) -> bool:
        """True while the weights are those the constructor drew: nothing has written to a
        parameter since (no training step, no ``load_state_dict``, no in-place change)."""
        return getattr(self, "_fresh_versions", None) == self._versions()

    def reseed(self, seed: int) -> None:
        """Redraw the initial weights as the constructor draws them, under ``seed`` (``fit``
        does this for a fresh model, so that ``TrainConfig.seed`` fixes the initial weights
        whatever the random state was when the model was built). The random state is left as
        ``seed_everything(seed)`` leaves it.

        Example:
            >>> from coursekit.models import VAE, VAEConfig
            >>> a, b = VAE(VAEConfig(hidden=8)), VAE(VAEConfig(hidden=8))
            >>> a.reseed(3); b.reseed(3)
            >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
            True
        """
        from coursekit.seed import seed_everything

        args, kwargs = self._init_args
        seed_everything(seed)
        fresh = type(self)(*args, **kwargs)
        with torch.no_grad():
            for name, value in fresh.state_dict().items():
                self.state_dict()[name].copy_(value)
        seed_everything(seed)

    # ----------------------------------------------------------------- the engine's protocol
    def phases(self, step: int) -> tuple[str, ...]:
        return self.PHASES

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        if len(self.PHASES) != 1:
            raise NotImplementedError(f"{type(self).__name__} has several phases {self.PHASES}: "
                                      f"it must say which parameters each one trains")
        return {self.PHASES[0]: list(self.parameters())}

    def ema_module(self) -> nn.Module:
        return self

    def check_data(self, data: dict) -> None:
        """Validate the prepared data once, before training (default: nothing to check)."""

    def config_dict(self) -> dict:
        config = getattr(self, "config", None)
        if config is None:
            return {}
        if not is_dataclass(config):
            raise TypeError(f"{type(self).__name__}.config is a {type(config).__name__}, not a "
                            f"dataclass: override config_dict()")
        return asdict(config)

    def objective(self, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        """``(scalar loss, {name: detached scalar})`` of one training step."""
        raise NotImplementedError(f"{type(self).__name__} must define objective(batch, step)")

    def loss(self, phase: str, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        if phase not in self.PHASES:
            raise ValueError(f"unknown phase {phase!r}; a {type(self).__name__} has the phases "
                             f"{self.PHASES}")
        return self.objective(batch, step)

    def averaged(self, ema: nn.Module | None) -> "TrainableModel":
        """This model with ``ema_module()`` replaced by ``ema``, its moving average (what
        ``fit`` returns as ``result.ema``); ``self`` itself is unchanged. ``None``: ``self``.

        Example:
            >>> from coursekit.models import GAN, GANConfig
            >>> import copy
            >>> gan = GAN(GANConfig(data_shape=(1, 8, 8)))
            >>> ema = copy.deepcopy(gan.generator)
            >>> gan.averaged(ema).generator is ema, gan.generator is ema
            (True, False)
        """
        if ema is None:
            return self
        part = self.ema_module()
        if part is self:
            return ema
        model = copy.copy(self)
        model._modules = dict(self._modules)
        for name, child in self._modules.items():
            if child is part:
                model._modules[name] = ema
                return model
        raise ValueError(f"{type(self).__name__}.ema_module() is not a direct child module: "
                         f"override averaged()")

    # ------------------------------------------------------------------ generative models
    def sample(self, n: int, *, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None, **options) -> torch.Tensor:
        """``n`` new examples; ``labels`` (n,) for class-conditional models; ``generator``
        seeds the draw."""
        raise NotImplementedError(f"{type(self).__name__} is not a generative model")

    @property
    def generative(self) -> bool:
        """Whether the model draws new examples through the one signature ``sample(n, ...)``."""
        sample = type(self).sample
        return sample is not TrainableModel.sample and \
            list(inspect.signature(sample).parameters)[1:2] == ["n"]


def _recording_init(init):
    """``__init__`` that records its arguments (to rebuild the model) and, when the outermost
    constructor returns, the parameters' versions (to tell fresh weights from trained ones)."""
    import functools

    @functools.wraps(init)
    def recording(self, *args, **kwargs):
        depth = self.__dict__.get("_init_depth", 0)
        object.__setattr__(self, "_init_depth", depth + 1)
        try:
            init(self, *args, **kwargs)
        finally:
            object.__setattr__(self, "_init_depth", depth)
        if depth == 0:
            object.__setattr__(self, "_init_args", (copy.deepcopy(args), copy.deepcopy(kwargs)))
            object.__setattr__(self, "_fresh_versions", self._versions())

    return recording


def _checked_sample(sample):
    """``sample`` that first checks ``n`` is a positive whole number (not, say, labels)."""
    import functools

    @functools.wraps(sample)
    def checked(self, n, *args, **kwargs):
        if isinstance(n, bool) or not isinstance(n, int) and not (
                torch.is_tensor(n) and n.ndim == 0 and not n.is_floating_point()):
            raise TypeError(f"{type(self).__name__}.sample(n, *, labels=None, generator=None): "
                            f"n is how many to draw, got {type(n).__name__}")
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {int(n)}")
        return sample(self, int(n), *args, **kwargs)

    return checked


def model_class(name: str) -> tuple[type[nn.Module], type]:
    """``(model class, config class)`` registered under ``name``, importing every model module
    first so that a checkpoint of any model the course trains can be rebuilt."""
    import coursekit.models  # noqa: F401  (registers the package's models)
    import coursekit.fewlabels  # noqa: F401  (models still defined beside their chapter)
    import coursekit.zeroshot  # noqa: F401

    if name not in MODEL_REGISTRY:
        raise KeyError(f"no model is registered as {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name]
