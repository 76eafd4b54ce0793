"""The ``train`` and ``sample`` commands: train a reference model from the shell, then draw from it
(Chapter 4).

    python -m coursekit train vae --data digits --epochs 30 --out runs/vae
    python -m coursekit sample runs/vae --n 64 --out vae.png

``train`` writes, in the ``--out`` folder, ``checkpoint.pt`` (model, optimisers, step, RNG state),
``metrics.json`` (the history, the seed and the settings), ``samples.png`` and ``losses.png``;
``--resume`` continues an interrupted run to the same weights an uninterrupted one would reach.
Both commands train and sample through ``coursekit.train``, the engine the chapters use.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

__all__ = ["MODELS", "DATASETS", "configure", "run", "build_model"]

# model name -> (family, one line of help); the settings are in build_model
MODELS = {
    "vae": ("VAE", "MLP VAE (Kingma and Welling 2014)"),
    "conv-vae": ("VAE", "convolutional VAE"),
    "cvae": ("VAE", "class-conditional MLP VAE (Sohn et al. 2015)"),
    "gan": ("GAN", "MLP GAN, non-saturating loss (Goodfellow et al. 2014)"),
    "dcgan": ("GAN", "DCGAN-style GAN (Radford et al. 2016)"),
    "wgan-gp": ("GAN", "DCGAN-style critic with the WGAN-GP loss (Gulrajani et al. 2017)"),
    "cgan": ("GAN", "class-conditional MLP GAN with a projection critic"),
    "ddpm": ("Diffusion", "diffusion model, v-prediction, DDIM sampling (Ho et al. 2020)"),
    "flow": ("Diffusion", "flow matching / rectified flow, Euler sampling (Lipman et al. 2023)"),
}
DATASETS = ("digits", "mnist", "faces")
CHECKPOINT = "checkpoint.pt"
NUM_CLASSES = 10  # the labelled datasets (digits, mnist) are the ten digits


class _UsageError(Exception):
    """A bad combination of arguments: reported in one line with exit status 2."""


def _load_data(name: str):
    from coursekit import data

    if name == "digits":
        return data.digits("train"), data.digits("val")
    if name == "mnist":
        return data.mnist("train"), data.mnist("test")
    return data.faces("train"), data.faces("test")


def build_model(name: str, dataset, latent_dim: int | None = None, beta: float = 1.0):
    """The model ``name`` (a key of ``MODELS``) sized for ``dataset``, and its training defaults
    ``{"lr": ..., "betas": ...}``. Digits use the 17-level categorical likelihood; other data the
    Bernoulli cross-entropy on grey values."""
    from coursekit.models import GAN, VAE, GANConfig, VAEConfig

    family = MODELS[name][0]
    shape = tuple(dataset.images.shape[1:])
    if family == "Diffusion":
        from coursekit.models import Diffusion, DiffusionConfig

        config = DiffusionConfig(data_shape=shape, objective="flow" if name == "flow" else "v",
                                 num_levels=dataset.num_levels)
        return Diffusion(config), {"lr": 1e-3, "betas": (0.9, 0.999)}
    conditional = name in ("cvae", "cgan")
    if conditional and dataset.labels is None:
        raise _UsageError(f"{name} needs labelled data; {dataset.name} has no labels "
                          f"(labelled: digits, mnist)")
    # digits and MNIST both have ten classes; a split need not contain all of them
    classes = NUM_CLASSES if conditional else 0
    if family == "VAE":
        categorical = dataset.name == "digits"
        config = VAEConfig(data_shape=shape, latent_dim=latent_dim or 16,
                           arch="conv" if name == "conv-vae" else "mlp",
                           likelihood="categorical" if categorical else "bernoulli",
                           num_levels=dataset.num_levels if categorical else 17,
                           beta=beta, num_classes=classes)
        return VAE(config), {"lr": 1e-3, "betas": (0.9, 0.999)}
    config = GANConfig(data_shape=shape, latent_dim=latent_dim or 32,
                       arch="mlp" if name in ("gan", "cgan") else "dcgan", num_classes=classes)
    if name == "wgan-gp":
        config.loss, config.gradient_penalty, config.n_critic = "wgan", 10.0, 5
        return GAN(config), {"lr": 1e-4, "betas": (0.0, 0.9)}
    return GAN(config), {"lr": 2e-4, "betas": (0.5, 0.999)}


# ------------------------------------------------------------------------------- the parsers

def _refuse_unknown_options(parser: argparse.ArgumentParser) -> None:
    """Make an unknown option an error of this subcommand that lists the valid options."""
    parse_known_args = parser.parse_known_args

    def strict(args=None, namespace=None):
        namespace, extras = parse_known_args(args, namespace)
        if extras:
            options = sorted(o for a in parser._actions for o in a.option_strings)
            parser.error(f"unrecognized arguments: {' '.join(extras)} "
                         f"(valid options: {', '.join(options)})")
        return namespace, extras

    parser.parse_known_args = strict


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``train`` or ``sample`` (whichever ``parser`` is for)."""
    command = parser.prog.split()[-1]
    if command == "sample":
        parser.add_argument("run", metavar="RUN",
                            help=f"a run folder written by 'train' (or its {CHECKPOINT})")
        parser.add_argument("--n", type=int, default=64, help="how many samples (default 64)")
        parser.add_argument("--out", required=True, help="the PNG file to write")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--device", default="auto",
                            help="'auto' (CUDA, MPS, CPU), 'cpu', 'cuda', ... (default auto)")
        parser.add_argument("--mean", action="store_true",
                            help="VAEs: show the decoder's mean instead of a draw")
    else:
        parser.add_argument("model", choices=list(MODELS),
                            help="; ".join(f"{k}: {v[1]}" for k, v in MODELS.items()))
        parser.add_argument("--data", choices=DATASETS, default="digits",
                            help="training data, offline (default digits)")
        parser.add_argument("--epochs", type=int, default=20, help="passes over the data (20)")
        parser.add_argument("--out", required=True,
                            help="run folder for checkpoint.pt, metrics.json, samples.png, "
                                 "losses.png")
        parser.add_argument("--device", default="auto",
                            help="'auto' (CUDA, MPS, CPU), 'cpu', 'cuda', ... (default auto)")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--resume", action="store_true",
                            help="continue the run in --out from its checkpoint")
        parser.add_argument("--overwrite", action="store_true",
                            help="start afresh even if --out holds a checkpoint")
        parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
        parser.add_argument("--lr", type=float, default=None,
                            help="learning rate (default: 1e-3 VAEs, 2e-4 GANs, 1e-4 WGAN-GP)")
        parser.add_argument("--latent-dim", type=int, default=None,
                            help="size of z (default 16 VAEs, 32 GANs)")
        parser.add_argument("--beta", type=float, default=1.0,
                            help="VAEs: weight of the KL term (beta-VAE; default 1)")
        parser.add_argument("--ema", type=float, default=None, metavar="DECAY",
                            help="keep an EMA of the generator (or VAE) weights, e.g. 0.999")
        parser.add_argument("--no-amp", action="store_true",
                            help="GPU: train in float32 instead of mixed precision")
        parser.add_argument("--compile", action="store_true", help="torch.compile the loss")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _refuse_unknown_options(parser)


def _fail(message: str, status: int) -> int:
    print(f"python -m coursekit: error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``train`` or ``sample``; returns the exit status (2: bad usage, 1: failure)."""
    from coursekit.train import CheckpointError

    try:
        return _sample(args) if args.command == "sample" else _train(args)
    except _UsageError as err:
        return _fail(str(err), 2)
    except (CheckpointError, FileNotFoundError, ValueError, FloatingPointError) as err:
        return _fail(str(err).splitlines()[0], 1)


def _positive(name: str, value) -> None:
    if value is not None and value <= 0:
        raise _UsageError(f"{name} must be positive, got {value}")


def _train(args) -> int:
    import torch

    from coursekit.device import get_device
    from coursekit.plotting import plot_curves, save_figure, show_images
    from coursekit.seed import seed_everything
    from coursekit.train import TrainConfig, fit

    for name in ("epochs", "batch_size", "lr", "latent_dim", "n"):
        _positive("--" + name.replace("_", "-"), getattr(args, name, None))
    try:
        get_device(args.device)
    except ValueError as err:
        raise _UsageError(str(err)) from err
    out = Path(args.out)
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not (args.resume or args.overwrite):
        raise _UsageError(f"{ckpt} exists: pass --resume to continue it or --overwrite to "
                          f"start again")
    train, val = _load_data(args.data)
    seed = seed_everything(args.seed)  # the initial weights depend on it too
    model, defaults = build_model(args.model, train, args.latent_dim, args.beta)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr or defaults["lr"], betas=defaults["betas"], seed=seed,
                         device=args.device, amp=not args.no_amp, compile=args.compile,
                         ema_decay=args.ema, progress=not args.quiet, checkpoint=str(ckpt),
                         resume=args.resume, overwrite=args.overwrite)
    result = fit(model, train, config, val_data=val)
    history = result.history

    out.mkdir(parents=True, exist_ok=True)
    metrics = {"model": args.model, "data": args.data, "seed": seed,
               "train_config": asdict(config), "model_config": model.config_dict(),
               "history": history.to_dict()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    torch.manual_seed(seed)
    samples = _draw(model, result.ema, 64, mean=False)
    save_figure(show_images(samples, title=f"{args.model} on {args.data}: 64 samples"),
                out / "samples.png")
    curves = {k: v for k, v in history.losses.items() if k in ("loss", "neg_elbo", "d_loss",
                                                                "g_loss", "rec", "kl")}
    curves.update({k: v for k, v in history.metrics.items() if k == "val_neg_elbo"})
    save_figure(plot_curves(curves, "epoch", "loss (VAE: nats per image)",
                            f"{args.model} on {args.data}: training curves"), out / "losses.png")
    summary = {k: round(v[-1], 3) for k, v in {**history.losses, **history.metrics}.items()}
    print(f"{args.model} on {args.data}: {history.epochs} epochs, {history.steps} steps, "
          f"{history.wall_seconds:.1f} s on {history.device}; last epoch {summary}; wrote {out}")
    return 0


def _draw(model, ema, n: int, mean: bool):
    from coursekit.models import GAN, Diffusion

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

    _positive("--n", args.n)
    path = Path(args.run)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise _UsageError(f"no checkpoint at {path}: RUN is a folder written by "
                          f"'python -m coursekit train'")
    try:
        model, ema, payload = load_model(path, args.device)
    except ValueError as err:
        if "device" in str(err):
            raise _UsageError(str(err)) from err
        raise
    seed_everything(args.seed)
    with torch.no_grad():
        images = _draw(model, ema, args.n, args.mean)
    title = f"{payload['model_class']} after {payload['epoch']} epochs: {args.n} samples"
    save_figure(show_images(images, title=title), args.out)
    print(f"wrote {args.out} ({args.n} samples, seed {args.seed})")
    return 0
