"""One training engine for every model of the course, used by the chapters and the command line
(Chapter 4).

``fit(model, data, TrainConfig(...))`` trains any model that speaks a four-method protocol:

- ``phases(step)``: the names of the optimisation phases of this step (a VAE: ``("vae",)``; a GAN:
  ``("discriminator", "generator")``, the generator only every ``n_critic``-th step);
- ``parameter_groups()``: ``{phase: parameters}``, one optimiser each;
- ``loss(phase, batch, step)``: ``(scalar loss, {name: detached scalar to log})``;
- ``evaluate(batch)`` (optional): ``{name: per-example values (B,)}`` on held-out data.

What the engine guarantees: the same seed on the CPU gives the same weights; ``device="auto"``
runs the same code on a GPU, where it autocasts to bfloat16 (or float16 with a loss scaler) and
can ``torch.compile`` the loss; nothing in the step loop waits for the device (logged values stay
on the device and are read once per epoch; only float16's loss scaler checks for overflow on the
host each step, which bfloat16 does not need); a returned ``History`` and callbacks replace prints;
checkpoints hold model, optimisers, step and RNG states, are written atomically, and a resumed
run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm  # the text bar: tqdm.auto warns in Jupyter without ipywidgets

from coursekit.device import amp_dtype, get_device
from coursekit.seed import seed_everything

__all__ = ["TrainConfig", "History", "TrainState", "TrainResult", "CheckpointError", "fit",
           "as_batch_data", "save_checkpoint", "load_checkpoint", "load_model", "EarlyStopping"]

CHECKPOINT_FORMAT = "coursekit-checkpoint"
CHECKPOINT_VERSION = 1
# Settings that may change when a run is resumed; any other difference means a different run.
_RESUMABLE_CHANGES = {"epochs", "progress", "checkpoint", "checkpoint_every", "resume",
                      "overwrite", "device", "compile"}


class CheckpointError(ValueError):
    """A checkpoint is unreadable, not a coursekit checkpoint, or belongs to a different run."""


@dataclass
class TrainConfig:
    epochs: int = 10                  # passes over the training data (in total, when resuming)
    batch_size: int = 64              # examples per step
    lr: float = 1e-3                  # learning rate of every optimiser
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's betas (GANs: (0.5, 0.999), Radford et al.)
    optimizer: str = "adam"           # "adam", "adamw" or "adamax"
    weight_decay: float = 0.0         # L2 (adam, adamax) or decoupled (adamw) weight decay
    grad_clip: float | None = None    # clip each phase's gradient norm to this value
    seed: int = 0                     # seeds torch, NumPy, random and the data order
    device: str = "auto"              # "auto" (CUDA, MPS, CPU), or an explicit device
    amp: bool = True                  # mixed precision on a GPU (ignored on the CPU)
    compile: bool = False             # torch.compile the loss (worth it on a GPU)
    ema_decay: float | None = None    # keep an exponential moving average of model.ema_module()
    drop_last: bool = False           # drop the last incomplete batch (a batch of 1 always is)
    progress: bool = False            # show a tqdm progress bar
    checkpoint: str | None = None     # where to keep the checkpoint (None: no checkpoint)
    checkpoint_every: int = 1         # epochs between checkpoints (the last epoch always saves)
    resume: bool = False              # continue from ``checkpoint`` if it exists
    overwrite: bool = False           # allow starting afresh over an existing checkpoint

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if self.optimizer not in ("adam", "adamw", "adamax"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: adam, adamw, adamax")
        if self.epochs < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError(f"need epochs >= 0, batch_size >= 1, checkpoint_every >= 1; got "
                             f"{self.epochs}, {self.batch_size}, {self.checkpoint_every}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")


@dataclass
class History:
    """What a run measured. Per-epoch lists have one entry per completed epoch."""

    losses: dict[str, list[float]] = field(default_factory=dict)       # training means per epoch
    step_losses: dict[str, list[float]] = field(default_factory=dict)  # every logged step
    metrics: dict[str, list[float]] = field(default_factory=dict)      # "val_*", and callbacks'
    epoch_seconds: list[float] = field(default_factory=list)           # training time per epoch
    images_per_second: list[float] = field(default_factory=list)       # training throughput
    wall_seconds: float = 0.0        # training and evaluation time, summed over epochs
    steps: int = 0                   # optimisation steps taken (each may hold several phases)
    epochs: int = 0                  # completed epochs
    seed: int = 0
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    """What a callback sees at the end of each epoch."""

    model: nn.Module
    ema: nn.Module | None
    epoch: int          # the epoch just completed, counting from 1
    step: int
    history: History
    device: torch.device


@dataclass
class TrainResult:
    model: nn.Module         # the trained model (in place: the same object that was passed)
    history: History
    ema: nn.Module | None    # the moving average of ``model.ema_module()``, or None


class EarlyStopping:
    """A callback that stops when ``metric`` (lower is better) has not improved for ``patience``
    epochs and keeps the best weights; call ``restore(model)`` after ``fit``."""

    def __init__(self, metric: str = "val_neg_elbo", patience: int = 10):
        self.metric, self.patience = metric, patience
        self.best, self.best_epoch, self.best_state = math.inf, 0, None

    def __call__(self, state: TrainState) -> bool:
        values = state.history.metrics.get(self.metric)
        if not values:
            raise ValueError(f"EarlyStopping watches {self.metric!r}, but the history has "
                             f"{sorted(state.history.metrics)}")
        if values[-1] < self.best:
            self.best, self.best_epoch = values[-1], state.epoch
            self.best_state = copy.deepcopy(state.model.state_dict())
        return state.epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


# ---------------------------------------------------------------------------------------- data

def as_batch_data(data, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Turn a dataset into ``{"x": (N, ...), "y": (N,), "levels": (N, ...)}`` tensors on ``device``.

    Accepts a ``coursekit.data.ImageDataset`` (its images, labels and levels), a tensor of
    examples, or a dict of tensors with key ``"x"``. Refuses non-finite values, naming where.
    """
    if torch.is_tensor(data):
        tensors = {"x": data}
    elif isinstance(data, dict):
        tensors = dict(data)
    elif hasattr(data, "images"):
        tensors = {"x": data.images}
        if getattr(data, "labels", None) is not None:
            tensors["y"] = data.labels
        if getattr(data, "levels", None) is not None:
            tensors["levels"] = data.levels
    else:
        raise TypeError(f"data must be a tensor, a dict of tensors or an ImageDataset, got "
                        f"{type(data).__name__}")
    if "x" not in tensors:
        raise ValueError(f"data needs the examples under key 'x', got keys {sorted(tensors)}")
    n = len(tensors["x"])
    for name, t in tensors.items():
        if len(t) != n:
            raise ValueError(f"data[{name!r}] has {len(t)} rows but data['x'] has {n}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).reshape(n, -1).any(dim=1).nonzero().flatten()
            raise ValueError(f"data[{name!r}] has non-finite values (NaN or inf) in {len(bad)} "
                             f"example(s), the first at index {int(bad[0])}")
    return {name: t.to(device) for name, t in tensors.items()}


def _batches(data: dict[str, torch.Tensor], order: torch.Tensor, batch_size: int, drop_last: bool):
    n = len(order)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        if len(index) < 2 or (drop_last and len(index) < batch_size):
            return  # a batch of one breaks batch norm and says little
        yield {name: t[index] for name, t in data.items()}


# --------------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file beside ``path``, then rename it
    over ``path``: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read and validate a checkpoint written by ``fit``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CheckpointError: the file is corrupt, truncated, or not a coursekit checkpoint of a
            version this code reads.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path} is corrupt or not a coursekit checkpoint "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a coursekit checkpoint (no format marker)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')}; this "
                              f"code reads version {CHECKPOINT_VERSION}")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild a trained model from its checkpoint: returns ``(model, ema, payload)``, the model in
    eval mode and ``ema`` (the averaged ``ema_module()``) or None."""
    from coursekit.models import MODEL_CLASSES

    device = get_device(device)
    payload = load_checkpoint(path, map_location=device)
    name = payload["model_class"]
    if name not in MODEL_CLASSES:
        raise CheckpointError(f"{path} holds a {name!r}; known models: {sorted(MODEL_CLASSES)}")
    cls, config_cls = MODEL_CLASSES[name]
    model = cls(config_cls(**payload["model_config"])).to(device)
    model.load_state_dict(payload["model"])
    model.eval()
    ema = None
    if payload.get("ema") is not None:
        ema = copy.deepcopy(model.ema_module())
        ema.load_state_dict(payload["ema"])
        ema.eval()
    return model, ema, payload


def _rng_state(shuffle: torch.Generator, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, shuffle: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    shuffle.set_state(state["shuffle"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _fork_rng(device: torch.device):
    """Evaluation and callbacks draw from a copy of the RNG, so they never change training."""
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda")


# ------------------------------------------------------------------------------------- training

def _make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "adamax": torch.optim.Adamax}[config.optimizer]
    return cls(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def _check_protocol(model: nn.Module) -> None:
    missing = [m for m in ("phases", "parameter_groups", "loss") if not hasattr(model, m)]
    if missing:
        raise TypeError(f"{type(model).__name__} cannot be trained by coursekit.train: it lacks "
                        f"{missing} (see the module docstring for the protocol)")


@torch.no_grad()
def _evaluate(model: nn.Module, data: dict, batch_size: int, autocast) -> dict[str, float]:
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    n = len(data["x"])
    for start in range(0, n, batch_size):
        batch = {name: t[start:start + batch_size] for name, t in data.items()}
        with autocast():
            values = model.evaluate(batch)
        for name, v in values.items():
            sums[name] = sums.get(name, 0.0) + v.float().sum()
    model.train(was_training)
    return {f"val_{name}": float(total) / n for name, total in sums.items()}


def fit(model: nn.Module, data, config: TrainConfig | None = None, val_data=None,
        callbacks: Sequence[Callable[[TrainState], bool | None]] = ()) -> TrainResult:
    """Train ``model`` on ``data`` as ``config`` says; returns the model, history and EMA.

    Args:
        model: a model with the engine's protocol (see the module docstring).
        data: training examples (an ``ImageDataset``, a tensor, or a dict of tensors).
        config: the run's settings (default ``TrainConfig()``).
        val_data: held-out examples; each epoch records ``val_<name>`` for every value of
            ``model.evaluate`` (for a VAE: ``val_neg_elbo``, nats per example).
        callbacks: called with a ``TrainState`` after each epoch (under a forked RNG, so they
            cannot change the run); returning True stops training.

    Raises:
        CheckpointError: resuming from a corrupt checkpoint or one of a different run, or
            starting afresh where a checkpoint exists without ``overwrite=True``.
        FloatingPointError: a training loss became NaN or infinite.

    Example:
        >>> from coursekit.models import VAE, VAEConfig
        >>> from coursekit.data import digits
        >>> model = VAE(VAEConfig(latent_dim=4, hidden=32))
        >>> result = fit(model, digits("val"), TrainConfig(epochs=2, device="cpu", seed=0))
        >>> result.history.epochs, result.history.losses["neg_elbo"][1] < result.history.losses[
        ...     "neg_elbo"][0]
        (2, True)
    """
    config = config or TrainConfig()
    _check_protocol(model)
    seed_everything(config.seed)
    device = get_device(config.device)
    model.to(device)
    train = as_batch_data(data, device)
    val = as_batch_data(val_data, device) if val_data is not None else None
    if val is not None and not hasattr(model, "evaluate"):
        raise TypeError(f"val_data was given but {type(model).__name__} has no evaluate()")

    groups = model.parameter_groups()
    optimizers = {name: _make_optimizer(params, config) for name, params in groups.items()}
    dtype = amp_dtype(device) if config.amp else None

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ema = None
    if config.ema_decay is not None:
        ema = copy.deepcopy(model.ema_module()).requires_grad_(False)
        ema_pairs = [(e, p) for e, p in zip(ema.parameters(), model.ema_module().parameters())]
        ema_buffers = list(zip(ema.buffers(), model.ema_module().buffers()))
    loss_fn = torch.compile(model.loss) if config.compile else model.loss
    shuffle = torch.Generator().manual_seed(config.seed)
    history = History(seed=config.seed, device=str(device))
    epoch, step = 0, 0

    ckpt = Path(config.checkpoint) if config.checkpoint else None
    model_name, model_config = type(model).__name__, _model_config(model)
    if ckpt is not None and ckpt.exists():
        if config.resume:
            payload = load_checkpoint(ckpt, map_location=device)
            _check_same_run(payload, ckpt, model_name, model_config, config)
            model.load_state_dict(payload["model"])
            for name, opt in optimizers.items():
                opt.load_state_dict(payload["optimizers"][name])
            scaler.load_state_dict(payload["scaler"])
            if ema is not None:
                ema.load_state_dict(payload["ema"])
            epoch, step = payload["epoch"], payload["step"]
            history = History(**payload["history"])
            history.device = str(device)
            _set_rng_state(payload["rng"], shuffle, device)
        elif not config.overwrite:
            raise CheckpointError(f"{ckpt} already exists: pass resume=True to continue that run "
                                  f"or overwrite=True to start a new one over it")

    def save(epoch_done: int) -> None:
        save_checkpoint(ckpt, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "model_class": model_name, "model_config": model_config,
            "train_config": asdict(config), "model": model.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "scaler": scaler.state_dict(), "ema": None if ema is None else ema.state_dict(),
            "epoch": epoch_done, "step": step, "rng": _rng_state(shuffle, device),
            "history": history.to_dict()})

    n = len(train["x"])
    steps_per_epoch = sum(1 for _ in _batches({"i": torch.arange(n)}, torch.arange(n),
                                              config.batch_size, config.drop_last))
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=epoch * steps_per_epoch,
               disable=not config.progress, desc=model_name, leave=False)
    try:
        while epoch < config.epochs:
            model.train()
            start = time.perf_counter()
            order = torch.randperm(n, generator=shuffle).to(device)
            logged: dict[str, list[torch.Tensor]] = {}
            seen = 0
            for batch in _batches(train, order, config.batch_size, config.drop_last):
                for phase in model.phases(step):
                    opt = optimizers[phase]
                    opt.zero_grad(set_to_none=True)
                    with autocast():
                        loss, logs = loss_fn(phase, batch, step)
                    scaler.scale(loss).backward()
                    if config.grad_clip is not None:
                        scaler.unscale_(opt)
                        nn.utils.clip_grad_norm_(groups[phase], config.grad_clip)
                    scaler.step(opt)
                    for name, value in logs.items():
                        logged.setdefault(name, []).append(value.float())
                scaler.update()
                if ema is not None:
                    # ema <- decay * ema + (1 - decay) * weights, on the device, no host sync
                    torch._foreach_lerp_([e for e, _ in ema_pairs], [p.detach() for _, p in
                                                                    ema_pairs], 1 - config.ema_decay)
                    for e, b in ema_buffers:
                        e.copy_(b)
                seen += len(batch["x"])
                step += 1
                bar.update(1)
            # one read from the device per epoch
            for name, values in logged.items():
                values = torch.stack(values).cpu()
                history.step_losses.setdefault(name, []).extend(values.tolist())
                history.losses.setdefault(name, []).append(float(values.mean()))
                if not torch.isfinite(values).all():
                    raise FloatingPointError(f"{name} became non-finite in epoch {epoch + 1} "
                                             f"(step {step}); lower the learning rate or check "
                                             f"the data")
            seconds = time.perf_counter() - start
            history.epoch_seconds.append(seconds)
            history.images_per_second.append(seen / max(seconds, 1e-9))
            epoch += 1
            history.epochs, history.steps = epoch, step
            if val is not None:
                with _fork_rng(device):
                    for name, value in _evaluate(model, val, max(256, config.batch_size),
                                                 autocast).items():
                        history.metrics.setdefault(name, []).append(value)
            history.wall_seconds += time.perf_counter() - start
            state = TrainState(model, ema, epoch, step, history, device)
            stop = False
            with _fork_rng(device):
                for callback in callbacks:
                    stop = bool(callback(state)) or stop
            if ckpt is not None and (stop or epoch % config.checkpoint_every == 0
                                     or epoch == config.epochs):
                save(epoch)
            bar.set_postfix({k: f"{v[-1]:.3g}" for k, v in history.losses.items()})
            if stop:
                break
    finally:
        bar.close()
    model.eval()
    return TrainResult(model, history, ema)


def _model_config(model: nn.Module) -> dict:
    if hasattr(model, "config_dict"):
        return model.config_dict()
    config = getattr(model, "config", None)
    return asdict(config) if config is not None else {}


def _check_same_run(payload: dict, path: Path, model_name: str, model_config: dict,
                    config: TrainConfig) -> None:
    if payload["model_class"] != model_name:
        raise CheckpointError(f"{path} holds a {payload['model_class']}, not a {model_name}")
    if _normalise(payload["model_config"]) != _normalise(model_config):
        diff = sorted(k for k in set(model_config) | set(payload["model_config"])
                      if _normalise(model_config.get(k)) != _normalise(payload["model_config"].get(k)))
        raise CheckpointError(f"{path} was trained with a different model config (fields {diff}); "
                              f"refusing to resume")
    saved, now = payload["train_config"], asdict(config)
    diff = sorted(k for k in now if k not in _RESUMABLE_CHANGES
                  and _normalise(saved.get(k)) != _normalise(now[k]))
    if diff:
        raise CheckpointError(f"{path} was trained with different settings {diff} "
                              f"(saved {[saved.get(k) for k in diff]}, now {[now[k] for k in diff]}); "
                              f"refusing to resume")


def _normalise(value):
    """Tuples and lists compare equal (a checkpoint may store either)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value
