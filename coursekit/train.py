"""One training engine for every model of the course, used by the chapters and the command line
(Chapter 4).

``fit(model, data, TrainConfig(...))`` trains any model that speaks a small protocol:

- ``phases(step)``: the names of the optimisation phases of this step (a VAE: ``("vae",)``; a GAN:
  ``("discriminator", "generator")``, the generator only every ``n_critic``-th step);
- ``parameter_groups()``: ``{phase: parameters}``, one optimiser each;
- ``loss(phase, batch, step)``: ``(scalar loss, {name: detached scalar to log})``;
- ``evaluate(batch)`` (optional): ``{name: per-example values (B,)}`` on held-out data;
- ``ema_module()`` (optional): the part whose moving average ``ema_decay`` keeps;
- ``check_data(data)`` (optional): validate the prepared data once, before the first step, so
  that ``loss`` need not check it on every step.

The pieces, in reading order: ``TrainConfig`` (the settings), ``Engine`` (optimisers, schedules,
loss scaler, EMA, RNG and the step counter: everything a checkpoint holds, with ``state_dict`` /
``load_state_dict``), ``_train_epoch`` (the step loop), ``_end_epoch`` (logging, validation,
callbacks, checkpoint) and ``fit``, which strings them together.

What the engine guarantees: the same seed on the CPU gives the same weights; ``device="auto"``
runs the same code on a GPU, where it autocasts to bfloat16 (or float16 with a loss scaler) and
can ``torch.compile`` the loss; nothing in the step loop waits for the device (logged values stay
on the device and are read once per epoch; only float16's loss scaler checks for overflow on the
host each step, which bfloat16 does not need); a returned ``History`` and callbacks replace prints;
checkpoints are written atomically, and a resumed run ends with exactly the weights of an
uninterrupted one. Started by ``torchrun`` with several processes, ``fit`` trains with
``DistributedDataParallel`` (see ``coursekit.distributed``): ``batch_size`` stays the *global*
batch, each process takes its share, and only rank 0 writes the checkpoint.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from tqdm import tqdm  # the text bar: tqdm.auto warns in Jupyter without ipywidgets

from coursekit import distributed
from coursekit.device import amp_dtype, get_device
from coursekit.models.base import TrainableModel
from coursekit.seed import seed_everything
from coursekit.utils import atomic_write, eval_mode

__all__ = ["TrainConfig", "History", "TrainState", "TrainResult", "CheckpointError", "fit",
           "Engine", "as_batch_data", "save_checkpoint", "load_checkpoint", "load_model",
           "EarlyStopping", "LR_SCHEDULES"]

CHECKPOINT_FORMAT = "coursekit-checkpoint"
CHECKPOINT_VERSION = 2  # 2: one RNG state per process, the number of processes
LR_SCHEDULES = ("constant", "cosine")
# Settings that may change when a run is resumed; any other difference means a different run.
_RESUMABLE_CHANGES = {"epochs", "progress", "checkpoint", "checkpoint_every", "resume",
                      "overwrite", "device", "compile"}


class CheckpointError(ValueError):
    """A checkpoint is unreadable, not a coursekit checkpoint, or belongs to a different run."""


@dataclass
class TrainConfig:
    epochs: int = 10                  # passes over the training data (in total, when resuming)
    batch_size: int = 64              # examples per step (over all processes under torchrun)
    lr: float = 1e-3                  # learning rate of every optimiser (its peak, with a schedule)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's betas (GANs: (0.5, 0.999), Radford et al.)
    optimizer: str = "adam"           # "adam", "adamw" or "adamax"
    weight_decay: float = 0.0         # L2 (adam, adamax) or decoupled (adamw) weight decay
    grad_clip: float | None = None    # clip each phase's gradient norm to this value
    seed: int = 0                     # seeds the initial weights (of a model not trained or
    #                                   loaded yet), torch, NumPy, random and the data order
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
    lr_schedule: str = "constant"     # "constant", or "cosine": to 0 over all ``epochs``' steps
    warmup_steps: int = 0             # steps of linear warm-up from 0 to ``lr`` before that

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        if self.optimizer not in ("adam", "adamw", "adamax"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: adam, adamw, adamax")
        if self.epochs < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError(f"need epochs >= 0, batch_size >= 1, checkpoint_every >= 1; got "
                             f"{self.epochs}, {self.batch_size}, {self.checkpoint_every}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; valid: "
                             f"{', '.join(LR_SCHEDULES)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


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
    is_main: bool = True     # False in the processes of a torchrun run other than rank 0


class EarlyStopping:
    """A callback that stops when ``metric`` has not improved for ``patience`` epochs and keeps
    the best weights; call ``restore(model)`` after ``fit``.

    Args:
        metric: a key of ``history.metrics`` (``"val_neg_elbo"``, or one a callback records).
        patience: epochs without improvement before stopping.
        mode: ``"min"`` (lower is better, a loss) or ``"max"`` (higher is better); a metric
            class's ``higher_is_better`` says which, e.g. ``mode="max" if PSNR.higher_is_better
            else "min"``.
    """

    def __init__(self, metric: str = "val_neg_elbo", patience: int = 10, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.patience, self.mode = metric, patience, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch, self.best_state = 0, None

    def _better(self, value: float) -> bool:
        return value < self.best if self.mode == "min" else value > self.best

    def __call__(self, state: TrainState) -> bool:
        values = state.history.metrics.get(self.metric)
        if not values:
            raise ValueError(f"EarlyStopping watches {self.metric!r}, but the history has "
                             f"{sorted(state.history.metrics)}")
        if self._better(values[-1]):
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

    Example:
        >>> data = as_batch_data({"x": torch.zeros(5, 2), "y": torch.arange(5)})
        >>> {name: tuple(t.shape) for name, t in data.items()}
        {'x': (5, 2), 'y': (5,)}
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


def _batch_indices(order: torch.Tensor, batch_size: int, drop_last: bool,
                   dist: distributed.Dist = distributed.Dist()):
    """The index of each batch, in order. Under torchrun each process takes every
    ``world_size``-th example of the global batch, from its ``rank`` on: the union over processes
    is the batch a single process would take (the scheme of ``DistributedSampler``), and a batch
    is cut to a multiple of ``world_size`` so that every process holds the same number."""
    n = len(order)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        index = index[:len(index) - len(index) % dist.world_size]
        if len(index) < 2 * dist.world_size or (drop_last and len(index) < batch_size):
            return  # a batch of one breaks batch norm and says little
        yield index[dist.rank::dist.world_size]


def _steps_per_epoch(n: int, config: TrainConfig, dist: distributed.Dist) -> int:
    return sum(1 for _ in _batch_indices(torch.arange(n), config.batch_size, config.drop_last,
                                         dist))


# --------------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write ``payload`` with ``torch.save`` atomically (``coursekit.utils.atomic_write``): a crash
    mid-write leaves the previous checkpoint intact."""
    atomic_write(path, lambda f: torch.save(payload, f))


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
    from coursekit.models.base import model_class

    device = get_device(device)
    payload = load_checkpoint(path, map_location=device)
    try:
        cls, config_cls = model_class(payload["model_class"])
    except KeyError as err:
        raise CheckpointError(f"{path}: {err.args[0]}") from None
    model = cls(config_cls(**payload["model_config"])).to(device)
    model.load_state_dict(payload["model"])
    model.eval()
    ema = None
    if payload.get("ema") is not None:
        ema = copy.deepcopy(model.ema_module())
        ema.load_state_dict(payload["ema"])
        ema.eval()
    return model, ema, payload


def _fork_rng(device: torch.device):
    """Evaluation and callbacks draw from a copy of the RNG, so they never change training."""
    devices = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda")


# ------------------------------------------------------------------------------- the engine

def _make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "adamax": torch.optim.Adamax}[config.optimizer]
    return cls(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def _lr_factor(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The learning rate as a fraction of ``lr`` after ``step`` steps: a linear warm-up, then
    constant or a cosine to 0 at the last step (Loshchilov and Hutter 2017). The cosine spans
    ``epochs``: resuming with more epochs stretches what is left of it."""
    warmup = config.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _LossModule(nn.Module):
    """Routes ``model.loss`` through ``forward``, so that ``DistributedDataParallel`` (which
    hooks ``forward``) averages the gradients of whichever phase ran."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, phase: str, batch: dict, step: int):
        return self.model.loss(phase, batch, step)


class Engine:
    """Everything a run changes besides the model's weights: optimisers (one per phase) and
    their learning-rate schedule, the float16 loss scaler, the EMA copy, the data-order generator,
    the torch RNG and the step and epoch counters. ``state_dict()`` / ``load_state_dict()`` are
    what a checkpoint stores and restores; ``step(batch)`` is one optimisation step."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device,
                 total_steps: int, dist: distributed.Dist = distributed.Dist()):
        self.model, self.config, self.device, self.dist = model, config, device, dist
        self.groups = model.parameter_groups()
        self.optimizers = {name: _make_optimizer(p, config) for name, p in self.groups.items()}
        # the learning rate is a function of the step alone, so a resumed run needs no state
        self.lr_factor = None
        if config.lr_schedule != "constant" or config.warmup_steps:
            self.lr_factor = _lr_factor(config, total_steps)
        self.amp = amp_dtype(device) if config.amp else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.ema = None
        if config.ema_decay is not None:
            # torch's EMA update (a foreach lerp); not AveragedModel, which reads its counter on
            # the host every step and so would make the loop wait for the device
            self.ema = copy.deepcopy(model.ema_module()).requires_grad_(False)
            self._ema_update = get_ema_multi_avg_fn(config.ema_decay)
            self._ema_params = (list(self.ema.parameters()),
                                list(model.ema_module().parameters()))
            self._ema_buffers = list(zip(self.ema.buffers(), model.ema_module().buffers()))
        loss = model.loss
        if dist.active:
            # a phase of a multi-phase model (a GAN's discriminator step) leaves the other
            # phases' parameters out of its graph: DDP must then look for unused parameters
            ids = [device.index] if device.type == "cuda" else None
            loss = nn.parallel.DistributedDataParallel(
                _LossModule(model), device_ids=ids, find_unused_parameters=len(self.groups) > 1)
        self.loss = torch.compile(loss) if config.compile else loss
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.step_count, self.epoch = 0, 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None)

    def step(self, batch: dict, logged: dict[str, list[torch.Tensor]]) -> None:
        """One optimisation step: every phase of ``model.phases(step)`` in turn; appends the
        logged values (still on the device) to ``logged``."""
        if self.lr_factor is not None:
            lr = self.config.lr * self.lr_factor(self.step_count)
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = lr
        for phase in self.model.phases(self.step_count):
            opt = self.optimizers[phase]
            opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss, logs = self.loss(phase, batch, self.step_count)
            self.scaler.scale(loss).backward()
            if self.config.grad_clip is not None:
                self.scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(self.groups[phase], self.config.grad_clip)
            self.scaler.step(opt)
            for name, value in logs.items():
                logged.setdefault(name, []).append(value.float())
        self.scaler.update()
        if self.ema is not None:
            # ema <- decay * ema + (1 - decay) * weights, on the device; buffers are copied
            self._ema_update(*self._ema_params, None)
            for e, b in self._ema_buffers:
                e.copy_(b)
        self.step_count += 1

    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "shuffle": self.shuffle.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def state_dict(self) -> dict:
        """Model, optimisers, schedules, scaler, EMA, counters, and the RNG state of every
        process (a collective call under torchrun: every process must make it)."""
        return {"model": self.model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "scaler": self.scaler.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "epoch": self.epoch, "step": self.step_count,
                "rng": self.dist.gather(self._rng_state())}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step_count = state["epoch"], state["step"]
        rng = state["rng"][self.dist.rank]
        torch.set_rng_state(rng["torch"].cpu())
        self.shuffle.set_state(rng["shuffle"].cpu())
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)


# ------------------------------------------------------------------------------------- training

def _check_protocol(model: nn.Module) -> None:
    missing = [m for m in ("phases", "parameter_groups", "loss") if not hasattr(model, m)]
    if missing:
        raise TypeError(f"{type(model).__name__} cannot be trained by coursekit.train: it lacks "
                        f"{missing} (see the module docstring for the protocol)")


@torch.no_grad()
def _evaluate(engine: Engine, data: dict, batch_size: int) -> dict[str, float]:
    """Mean of each value of ``model.evaluate`` over ``data``; under torchrun each process
    evaluates every ``world_size``-th example and the sums are added up."""
    dist = engine.dist
    data = {name: t[dist.rank::dist.world_size] for name, t in data.items()}
    sums: dict[str, torch.Tensor] = {}
    with eval_mode(engine.model):
        for start in range(0, len(data["x"]), batch_size):
            batch = {name: t[start:start + batch_size] for name, t in data.items()}
            with engine.autocast():
                values = engine.model.evaluate(batch)
            for name, v in values.items():
                sums[name] = sums.get(name, 0.0) + v.float().sum()
    n = dist.sum(torch.tensor(float(len(data["x"])), device=engine.device))
    return {f"val_{name}": float(dist.sum(total) / n) for name, total in sums.items()}


def _train_epoch(engine: Engine, train: dict, bar) -> tuple[dict, int, float]:
    """One pass over ``train`` in a fresh random order; returns the logged values (on the
    device), the examples seen by this process and the seconds taken."""
    engine.model.train()
    start = time.perf_counter()
    n = len(train["x"])
    order = torch.randperm(n, generator=engine.shuffle).to(engine.device)
    logged: dict[str, list[torch.Tensor]] = {}
    seen = 0
    for index in _batch_indices(order, engine.config.batch_size, engine.config.drop_last,
                                engine.dist):
        engine.step({name: t[index] for name, t in train.items()}, logged)
        seen += len(index)
        bar.update(1)
    return logged, seen, time.perf_counter() - start


def _end_epoch(engine: Engine, history: History, logged: dict, seen: int, seconds: float,
               val: dict | None, callbacks) -> bool:
    """Record the epoch (one read from the device), validate, run the callbacks; returns
    whether to stop (rank 0's decision, on every process)."""
    start = time.perf_counter()
    config, dist = engine.config, engine.dist
    for name, values in logged.items():
        values = dist.mean(torch.stack(values)).cpu()  # (steps,), averaged over processes
        history.step_losses.setdefault(name, []).extend(values.tolist())
        history.losses.setdefault(name, []).append(float(values.mean()))
        if not torch.isfinite(values).all():
            raise FloatingPointError(f"{name} became non-finite in epoch {engine.epoch + 1} "
                                     f"(step {engine.step_count}); lower the learning rate or "
                                     f"check the data")
    history.epoch_seconds.append(seconds)
    history.images_per_second.append(seen * dist.world_size / max(seconds, 1e-9))
    engine.epoch += 1
    history.epochs, history.steps = engine.epoch, engine.step_count
    if val is not None:
        with _fork_rng(engine.device):
            for name, value in _evaluate(engine, val, max(256, config.batch_size)).items():
                history.metrics.setdefault(name, []).append(value)
    state = TrainState(engine.model, engine.ema, engine.epoch, engine.step_count, history,
                       engine.device)
    stop = False
    with _fork_rng(engine.device):
        for callback in callbacks:
            stop = bool(callback(state)) or stop
    history.wall_seconds += seconds + time.perf_counter() - start
    return dist.decide(stop)


def _save(engine: Engine, history: History, path: Path, header: dict) -> None:
    payload = {**header, **engine.state_dict(), "history": history.to_dict(),
               "world_size": engine.dist.world_size}
    if engine.dist.is_main:
        save_checkpoint(path, payload)


def _restore(engine: Engine, path: Path, header: dict) -> History:
    payload = load_checkpoint(path, map_location=engine.device)
    _check_same_run(payload, path, header, engine.config, engine.dist.world_size)
    engine.load_state_dict(payload)
    history = History(**payload["history"])
    history.device = str(engine.device)
    return history


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
        FloatingPointError: a training loss became non-finite.

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
    with distributed.session(get_device(config.device)) as (dist, device):
        seed_everything(config.seed)  # the same initial weights and data order in every process
        if isinstance(model, TrainableModel) and model.is_fresh():
            model.reseed(config.seed)  # the initial weights follow config.seed, however built
        train = as_batch_data(data, device)
        val = as_batch_data(val_data, device) if val_data is not None else None
        if val is not None and not hasattr(model, "evaluate"):
            raise TypeError(f"val_data was given but {type(model).__name__} has no evaluate()")
        if hasattr(model, "check_data"):
            for part in (train, val):
                if part is not None:
                    model.check_data(part)
        model.to(device)
        steps = _steps_per_epoch(len(train["x"]), config, dist)
        engine = Engine(model, config, device, config.epochs * steps, dist)
        if dist.active:
            torch.manual_seed(config.seed + dist.rank)  # each process its own noise (z, dropout)
        header = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                  "model_class": type(model).__name__, "model_config": _model_config(model),
                  "train_config": asdict(config)}
        history = History(seed=config.seed, device=str(device))
        ckpt = Path(config.checkpoint) if config.checkpoint else None
        if ckpt is not None and ckpt.exists():
            if not (config.resume or config.overwrite):
                raise CheckpointError(f"{ckpt} already exists: pass resume=True to continue that "
                                      f"run or overwrite=True to start a new one over it")
            if config.resume:
                history = _restore(engine, ckpt, header)

        bar = tqdm(total=config.epochs * steps, initial=engine.epoch * steps,
                   disable=not (config.progress and dist.is_main), desc=header["model_class"],
                   leave=False)
        try:
            while engine.epoch < config.epochs:
                logged, seen, seconds = _train_epoch(engine, train, bar)
                stop = _end_epoch(engine, history, logged, seen, seconds, val, callbacks)
                if ckpt is not None and (stop or engine.epoch % config.checkpoint_every == 0
                                         or engine.epoch == config.epochs):
                    _save(engine, history, ckpt, header)
                bar.set_postfix({k: f"{v[-1]:.3g}" for k, v in history.losses.items()})
                if stop:
                    break
        finally:
            bar.close()
        model.eval()
        return TrainResult(model, history, engine.ema, dist.is_main)


def _model_config(model: nn.Module) -> dict:
    if hasattr(model, "config_dict"):
        return model.config_dict()
    config = getattr(model, "config", None)
    return asdict(config) if config is not None else {}


def _check_same_run(payload: dict, path: Path, header: dict, config: TrainConfig,
                    world_size: int) -> None:
    model_name, model_config = header["model_class"], header["model_config"]
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
    if payload.get("world_size", 1) != world_size:
        raise CheckpointError(f"{path} was written by {payload.get('world_size', 1)} process(es), "
                              f"this run has {world_size}; resume with the same number")


def _normalise(value):
    """Tuples and lists compare equal (a checkpoint may store either)."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value
