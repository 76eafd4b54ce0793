"""The ``train`` and ``sample`` commands: train a reference model from the shell, then draw from it
(Chapter 4).

    python -m coursekit train vae --data digits --epochs 30 --out runs/vae
    python -m coursekit sample runs/vae --n 64 --out vae.png

``train`` writes, in the ``--out`` folder, ``checkpoint.pt`` (model, optimisers, step, RNG state),
``metrics.json`` (the history, the seed and the settings), ``samples.png`` and ``losses.png``;
``--resume`` continues an interrupted run to the same weights an uninterrupted one would reach.
Both commands train and sample through ``coursekit.train``, the engine the chapters use. Under
``torchrun`` (``torchrun --standalone --nproc_per_node=2 -m coursekit train ...``) ``train``
trains with ``DistributedDataParallel``, and only rank 0 writes the run's files and reports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["PRESETS", "Preset", "configure", "run", "build_model"]


@dataclass(frozen=True)
class Preset:
    family: str                    # "VAE", "GAN", "Diffusion" or "VQVAE"
    help: str                      # one line for --help
    lr: float                      # learning rate
    betas: tuple[float, float]     # Adam's betas
    latent_dim: int                # size of z (0: the model has no latent code of its own)


# One table of the models and their defaults; --help and build_model both read it.
PRESETS = {
    "vae": Preset("VAE", "MLP VAE (Kingma and Welling 2014)", 1e-3, (0.9, 0.999), 16),
    "conv-vae": Preset("VAE", "convolutional VAE", 1e-3, (0.9, 0.999), 16),
    "cvae": Preset("VAE", "class-conditional MLP VAE (Sohn et al. 2015)", 1e-3, (0.9, 0.999), 16),
    "gan": Preset("GAN", "MLP GAN, non-saturating loss (Goodfellow et al. 2014)", 2e-4,
                  (0.5, 0.999), 32),
    "dcgan": Preset("GAN", "DCGAN-style GAN (Radford et al. 2016)", 2e-4, (0.5, 0.999), 32),
    "wgan-gp": Preset("GAN", "DCGAN-style critic with the WGAN-GP loss (Gulrajani et al. 2017)",
                      1e-4, (0.0, 0.9), 32),
    "cgan": Preset("GAN", "class-conditional MLP GAN with a projection critic", 2e-4,
                   (0.5, 0.999), 32),
    "ddpm": Preset("Diffusion", "diffusion model, v-prediction, DDIM sampling (Ho et al. 2020)",
                   2e-3, (0.9, 0.999), 0),
    "flow": Preset("Diffusion", "flow matching / rectified flow, Euler sampling (Lipman et al. "
                   "2023)", 2e-3, (0.9, 0.999), 0),
    "vqvae": Preset("VQVAE", "VQ-VAE, then a class-conditional GPT prior over its codes "
                    "(van den Oord et al. 2017)", 2e-3, (0.9, 0.999), 0),
}
PRIOR_CHECKPOINT = "prior.pt"  # vqvae runs: the GPT prior beside the VQ-VAE's checkpoint
CHECKPOINT = "checkpoint.pt"
NUM_CLASSES = 10  # the labelled datasets (digits, mnist) are the ten digits


class _UsageError(Exception):
    """A bad combination of arguments: reported in one line with exit status 2."""


def build_model(name: str, dataset, latent_dim: int | None = None, beta: float = 1.0):
    """The model ``name`` (a key of ``PRESETS``) sized for ``dataset``. Digits use the 17-level
    categorical likelihood; other data the Bernoulli cross-entropy on grey values."""
    from coursekit.models import GAN, VAE, GANConfig, VAEConfig

    preset = PRESETS[name]
    shape = tuple(dataset.images.shape[1:])
    if preset.family == "VQVAE":
        from coursekit.models.vqvae import VQVAE, VQVAEConfig

        if dataset.labels is None:
            raise _UsageError(f"{name}'s prior is class-conditional: {dataset.name} has no "
                              f"labels (labelled: digits, mnist)")
        # Chapter 12's sizes: 28x28 -> a 7x7 grid of 64 codes; 8x8 digits -> 4x4
        return VQVAE(VQVAEConfig(data_shape=shape, downsample=2 if min(shape[1:]) >= 16 else 1))
    if preset.family == "Diffusion":
        from coursekit.models import Diffusion, DiffusionConfig

        # the width and rate of Chapter 9's runs (hidden 256, lr 2e-3 in PRESETS)
        config = DiffusionConfig(data_shape=shape, objective="flow" if name == "flow" else "v",
                                 hidden=256, num_levels=dataset.num_levels)
        return Diffusion(config)
    conditional = name in ("cvae", "cgan")
    if conditional and dataset.labels is None:
        raise _UsageError(f"{name} needs labelled data; {dataset.name} has no labels "
                          f"(labelled: digits, mnist)")
    # digits and MNIST both have ten classes; a split need not contain all of them
    classes = NUM_CLASSES if conditional else 0
    latent_dim = latent_dim or preset.latent_dim
    if preset.family == "VAE":
        categorical = dataset.name == "digits"
        return VAE(VAEConfig(data_shape=shape, latent_dim=latent_dim,
                             arch="conv" if name == "conv-vae" else "mlp",
                             likelihood="categorical" if categorical else "bernoulli",
                             num_levels=dataset.num_levels if categorical else 17,
                             beta=beta, num_classes=classes))
    config = GANConfig(data_shape=shape, latent_dim=latent_dim,
                       arch="mlp" if name in ("gan", "cgan") else "dcgan", num_classes=classes)
    if name == "wgan-gp":
        config.loss, config.gradient_penalty, config.n_critic = "wgan", 10.0, 5
    return GAN(config)


# ------------------------------------------------------------------------------- the parsers

def _per_model(field: str) -> str:
    return ", ".join(f"{name} {getattr(p, field):g}" for name, p in PRESETS.items()
                     if getattr(p, field))  # diffusion models have no latent size of their own


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``train`` or ``sample`` (the command is the parser's default
    ``command``, which ``coursekit.__main__`` sets)."""
    from coursekit.data import IMAGE_DATASETS

    device_help = "'auto' (CUDA, MPS, CPU), 'cpu', 'cuda', ... (default auto: a GPU if present)"
    if parser.get_default("command") == "sample":
        parser.add_argument("run", metavar="RUN",
                            help=f"a run folder written by 'train' (or its {CHECKPOINT})")
        parser.add_argument("--n", type=int, default=64, help="how many samples (default 64)")
        parser.add_argument("--out", required=True, help="the PNG file to write")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--device", default="auto", help=device_help)
        parser.add_argument("--mean", action="store_true",
                            help="VAEs: show the decoder's mean instead of a draw")
        return
    parser.add_argument("model", choices=list(PRESETS),
                        help="; ".join(f"{k}: {p.help}" for k, p in PRESETS.items()))
    parser.add_argument("--data", choices=IMAGE_DATASETS, default="digits",
                        help="training data, offline (default digits)")
    parser.add_argument("--epochs", type=int, default=20,
                        help="passes over the data, in total when resuming (default 20)")
    parser.add_argument("--out", required=True,
                        help="run folder for checkpoint.pt, metrics.json, samples.png, losses.png")
    parser.add_argument("--device", default="auto", help=device_help)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh even if --out holds a checkpoint")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="batch size, over all processes under torchrun (default 64)")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"learning rate (default per model: {_per_model('lr')})")
    parser.add_argument("--latent-dim", type=int, default=None,
                        help=f"size of z (default per model: {_per_model('latent_dim')})")
    parser.add_argument("--beta", type=float, default=1.0,
                        help="VAEs: weight of the KL term (beta-VAE; default 1)")
    parser.add_argument("--ema", type=float, default=None, metavar="DECAY",
                        help="keep an EMA of the generator (or VAE) weights, e.g. 0.999")
    parser.add_argument("--no-amp", action="store_true",
                        help="GPU: train in float32 instead of mixed precision")
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fail(message: str, status: int) -> int:
    print(f"python -m coursekit: error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``train`` or ``sample``; returns the exit status (2: bad usage, 1: failure)."""
    from coursekit.device import DeviceUnavailableError
    from coursekit.train import CheckpointError

    try:
        return _sample(args) if args.command == "sample" else _train(args)
    except (_UsageError, DeviceUnavailableError) as err:
        return _fail(str(err), 2)
    except (CheckpointError, FileNotFoundError, ValueError, FloatingPointError) as err:
        return _fail(str(err).splitlines()[0], 1)


def _positive(name: str, value) -> None:
    if value is not None and value <= 0:
        raise _UsageError(f"{name} must be positive, got {value}")


def _train(args) -> int:
    from coursekit import data
    from coursekit.device import get_device
    from coursekit.seed import seed_everything
    from coursekit.train import TrainConfig, fit, load_checkpoint

    for name in ("epochs", "batch_size", "lr", "latent_dim"):
        _positive("--" + name.replace("_", "-"), getattr(args, name, None))
    get_device(args.device)  # an unknown or missing device is a usage error, before any work
    out = Path(args.out)
    ckpt = out / CHECKPOINT
    done = 0
    if ckpt.exists() and not (args.resume or args.overwrite):
        raise _UsageError(f"{ckpt} exists: pass --resume to continue it or --overwrite to "
                          f"start again")
    if args.resume:
        if not ckpt.exists():
            raise _UsageError(f"--resume: there is no checkpoint at {ckpt} to continue (start the "
                              f"run without --resume)")
        done = load_checkpoint(ckpt)["epoch"]
    train = data.load(args.data, "train")
    val = data.load(args.data, data.HELD_OUT_SPLIT[args.data])
    seed = seed_everything(args.seed)  # the initial weights depend on it too
    model = build_model(args.model, train, args.latent_dim, args.beta)
    preset = PRESETS[args.model]
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr or preset.lr, betas=preset.betas, seed=seed,
                         device=args.device, amp=not args.no_amp, compile=args.compile,
                         ema_decay=args.ema, progress=not args.quiet, checkpoint=str(ckpt),
                         resume=args.resume, overwrite=args.overwrite)
    result = fit(model, train, config, val_data=val)
    if preset.family == "VQVAE":
        _train_prior(model, train, config, out)
    if not result.is_main:
        return 0  # under torchrun only rank 0 writes and reports
    history = result.history
    if args.resume and done >= args.epochs:
        print(f"{ckpt} has already trained {done} epochs (--epochs {args.epochs}): nothing to "
              f"train; rewriting metrics.json and the figures from it")
    elif args.resume:
        print(f"resumed from epoch {done}")
    _write_run(out, args, model, result, config, train.source, seed)
    summary = {k: round(v[-1], 3) for k, v in {**history.losses, **history.metrics}.items()}
    print(f"{args.model} on {args.data}: {history.epochs} epochs, {history.steps} steps, "
          f"{history.wall_seconds:.1f} s on {history.device}; last epoch {summary}; wrote {out}")
    return 0


def _train_prior(model, train, config, out: Path) -> None:
    """Stage 2 of a vqvae run: the GPT prior over a class token and the codes (Chapter 12),
    trained by the same engine for as many epochs, checkpointed in ``prior.pt``."""
    from dataclasses import replace

    from coursekit.models import GPT, GPTConfig
    from coursekit.models.vqvae import prior_rows
    from coursekit.train import fit

    rows = prior_rows(model, train.images, train.labels)
    grid = model.grid[0] * model.grid[1]
    prior = GPT(GPTConfig(vocab_size=model.config.codebook_size + NUM_CLASSES, block_size=grid,
                          n_layer=4, n_head=4, n_embd=64))
    fit(prior, {"x": rows}, replace(config, checkpoint=str(out / PRIOR_CHECKPOINT)))


def _write_run(out: Path, args, model, result, config, source: str, seed: int) -> None:
    """metrics.json (atomically), samples.png and losses.png of a finished run."""
    import torch

    from coursekit.plotting import plot_curves, save_figure, show_images
    from coursekit.utils import atomic_write

    history = result.history
    metrics = {"model": args.model, "data": args.data, "data_source": source, "seed": seed,
               "processes": int(os.environ.get("WORLD_SIZE", "1")),
               "train_config": asdict(config), "model_config": model.config_dict(),
               "history": history.to_dict()}
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=1))
    torch.manual_seed(seed)
    samples = _draw(model, result.ema, 64, mean=False, folder=out)
    save_figure(show_images(samples, title=f"{args.model} on {args.data}: 64 samples"),
                out / "samples.png")
    save_figure(_loss_figure(history, args.model, args.data, PRESETS[args.model].family),
                out / "losses.png")


def _loss_figure(history, model: str, dataset: str, family: str):
    """Per-step losses (faint) and per-epoch means (markers when few) against the epoch."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = [k for k in ("neg_elbo", "rec", "kl", "d_loss", "g_loss") if k in history.losses]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    epochs = np.arange(1, history.epochs + 1)
    marker = "o" if history.epochs <= 30 else None
    for i, name in enumerate(names):
        color = f"C{i}"
        steps = np.asarray(history.step_losses.get(name, []), dtype=float)
        if len(steps):  # each logged step at its fraction of the epochs
            ax.plot(np.linspace(0, history.epochs, len(steps) + 1)[1:], steps, color=color,
                    alpha=0.25, linewidth=0.8)
        ax.plot(epochs, history.losses[name], color=color, marker=marker, label=name)
    if "val_neg_elbo" in history.metrics:
        ax.plot(epochs, history.metrics["val_neg_elbo"], color="k", marker=marker,
                linestyle="--", label="val_neg_elbo")
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("nats per image" if family == "VAE" else "loss (per batch mean)")
    ax.set_title(f"{model} on {dataset}: per-step (faint) and per-epoch losses")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _draw(model, ema, n: int, mean: bool, folder: Path | None = None):
    from coursekit.models import GAN, VQVAE, Diffusion

    if isinstance(model, VQVAE):  # through the prior trained beside it, ten classes in turn
        import torch

        from coursekit.train import load_model

        device = next(model.parameters()).device
        prior = load_model(Path(folder) / PRIOR_CHECKPOINT, device)[0]
        return model.sample(n, labels=torch.arange(n) % NUM_CLASSES, prior=prior)
    if isinstance(model, GAN):
        return model.sample(n, generator=ema)
    model = ema if ema is not None else model
    if isinstance(model, Diffusion):
        return model.sample(n)
    if mean and not model.config.autoregressive:
        return model.sample(n, mean=True)
    return model.sample(n)


def _sample(args) -> int:
    import torch

    from coursekit.plotting import save_figure, show_images
    from coursekit.seed import seed_everything
    from coursekit.train import load_model

    from coursekit.device import get_device

    _positive("--n", args.n)
    get_device(args.device)
    path = Path(args.run)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise _UsageError(f"no checkpoint at {path}: RUN is a folder written by "
                          f"'python -m coursekit train'")
    model, ema, payload = load_model(path, args.device)
    seed_everything(args.seed)
    with torch.no_grad():
        images = _draw(model, ema, args.n, args.mean, folder=path.parent)
    title = f"{payload['model_class']} after {payload['epoch']} epochs: {args.n} samples"
    # at least 2 screen pixels per image pixel (3 across the figure, less its margins), at 120
    # dpi; from 4 inches up to 16
    side = 3 * math.ceil(math.sqrt(args.n)) * (images.shape[-1] + 1) / 120
    side = min(16.0, max(4.0, side))
    save_figure(show_images(images, title=title, figsize=(side, side)), args.out)
    print(f"wrote {args.out} ({args.n} samples, seed {args.seed})")
    return 0
