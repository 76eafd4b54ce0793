"""The ``train`` and ``sample`` commands: train any model of the course by its recipe name
(``coursekit.recipes``), then draw from it (Chapter 4).

    python -m coursekit train vae --data digits --epochs 30 --out runs/vae
    python -m coursekit sample runs/vae --n 64 --out vae.png

``train`` writes, in the ``--out`` folder, ``checkpoint.pt`` (model, optimisers, step, RNG state),
``metrics.json`` (the history, the seed and the settings), ``losses.png`` (whatever the history
holds) and, for a generative model, ``samples.png`` (``samples.txt`` for the GPT); ``sample``
draws through the one signature ``model.sample(n, generator=...)``, from the moving average
when the run kept one;
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
from dataclasses import asdict
from pathlib import Path

from coursekit.recipes import RECIPES, build_model

__all__ = ["PRESETS", "configure", "run", "build_model"]

PRESETS = RECIPES  # the command line's models are the recipes (coursekit.recipes)
CHECKPOINT = "checkpoint.pt"


class _UsageError(Exception):
    """A bad combination of arguments: reported in one line with exit status 2."""


# ------------------------------------------------------------------------------- the parsers

def _per_model(field: str) -> str:
    return ", ".join(f"{name} {getattr(p, field):g}" for name, p in PRESETS.items()
                     if getattr(p, field))  # models without a latent size of their own: none


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``train`` or ``sample`` (the command is the parser's default
    ``command``, which ``coursekit.__main__`` sets)."""
    from coursekit.data.names import IMAGE_DATASETS

    device_help = "'auto' (CUDA, MPS, CPU), 'cpu', 'cuda', ... (default auto: a GPU if present)"
    if parser.get_default("command") == "sample":
        parser.add_argument("run", metavar="RUN",
                            help=f"a run folder written by 'train' (or its {CHECKPOINT})")
        parser.add_argument("--n", type=int, default=64, help="how many samples (default 64)")
        parser.add_argument("--out", required=True,
                            help="the PNG file to write (a text file for the gpt)")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--device", default="auto", help=device_help)
        parser.add_argument("--mean", action="store_true",
                            help="VAEs: show the decoder's mean instead of a draw")
        return
    parser.add_argument("model", choices=list(PRESETS),
                        help="; ".join(f"{k}: {p.help}" for k, p in PRESETS.items()))
    parser.add_argument("--data", choices=IMAGE_DATASETS, default=None,
                        help="training images, offline (default digits; the gpt trains on "
                             "the offline English text)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the data, in total when resuming (default: the "
                             "recipe's, else 20)")
    parser.add_argument("--out", required=True,
                        help="run folder for checkpoint.pt, metrics.json, samples.png, losses.png")
    parser.add_argument("--device", default="auto", help=device_help)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh even if --out holds a checkpoint")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size, over all processes under torchrun (default: the "
                             "recipe's, else 64)")
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
    from coursekit.device import get_device
    from coursekit.recipes import build
    from coursekit.train import fit, load_checkpoint

    for name in ("epochs", "batch_size", "lr", "latent_dim"):
        _positive("--" + name.replace("_", "-"), getattr(args, name, None))
    get_device(args.device)  # an unknown or missing device is a usage error, before any work
    recipe = PRESETS[args.model]
    if args.data and not recipe.images:
        raise _UsageError(f"{args.model} trains on the offline text: --data does not apply")
    if args.data and recipe.labels and args.data not in ("digits", "mnist"):
        raise _UsageError(f"{args.model} needs labelled data; {args.data} has no labels "
                          f"(labelled: digits, mnist)")
    args.data = args.data or recipe.data
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
    epochs = args.epochs or recipe.train.get("epochs", 20)
    run = build(args.model, args.seed, data=args.data, latent_dim=args.latent_dim,
                beta=args.beta, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                device=args.device, amp=not args.no_amp, compile=args.compile,
                ema_decay=args.ema, progress=not args.quiet, checkpoint=str(ckpt),
                resume=args.resume, overwrite=args.overwrite)
    args.epochs = epochs
    result = fit(run.model, run.train, run.config, val_data=run.val)
    if recipe.model == "VQVAE":  # stage 2 (Chapter 12): the GPT prior over the codes
        from coursekit.models.vqvae import train_prior

        run.model.attach_prior(train_prior(run.model, run.train, run.config, out / "prior.pt"))
    if not result.is_main:
        return 0  # under torchrun only rank 0 writes and reports
    history = result.history
    if args.resume and done >= epochs:
        print(f"{ckpt} has already trained {done} epochs (--epochs {epochs}): nothing to "
              f"train; rewriting metrics.json and the figures from it")
    elif args.resume:
        print(f"resumed from epoch {done}")
    _write_run(out, args, run.model, result, run.config, run.source, args.seed, run.extra)
    summary = {k: round(v[-1], 3) for k, v in {**history.losses, **history.metrics}.items()}
    print(f"{args.model} on {args.data}: {history.epochs} epochs, {history.steps} steps, "
          f"{history.wall_seconds:.1f} s on {history.device}; last epoch {summary}; wrote {out}")
    return 0


def _write_run(out: Path, args, model, result, config, source: str, seed: int,
               extra: dict) -> None:
    """metrics.json (atomically), samples.png (samples.txt for text) and losses.png."""
    import torch

    from coursekit.plotting import save_figure, show_images
    from coursekit.utils import atomic_write

    history = result.history
    metrics = {"model": args.model, "data": args.data, "data_source": source, "seed": seed,
               "processes": int(os.environ.get("WORLD_SIZE", "1")),
               "train_config": asdict(config), "model_config": model.config_dict(),
               "history": history.to_dict()}
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=1))
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    if model.generative and "tokenizer" in extra:
        ids = _draw(model, result.ema, 8, mean=False, generator=generator)
        atomic_write(out / "samples.txt", _as_text(ids, extra["tokenizer"]))
    elif model.generative:
        samples = _draw(model, result.ema, 64, mean=False, generator=generator)
        save_figure(show_images(samples, title=f"{args.model} on {args.data}: 64 samples"),
                    out / "samples.png")
    save_figure(_loss_figure(history, args.model, args.data), out / "losses.png")


def _as_text(ids, tokenizer) -> str:
    return "".join(f"--- sample {i}\n{tokenizer.decode(row.tolist())}\n"
                   for i, row in enumerate(ids))


def _loss_figure(history, model: str, dataset: str):
    """Every logged loss: per-step values (faint) and per-epoch means, and every ``val_*``
    metric (dashed), against the epoch; one line style and marker per curve."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3.8))
    epochs = np.arange(1, history.epochs + 1)
    markers = "osd^v<>ph*"
    curves = [(name, values, False) for name, values in history.losses.items()]
    curves += [(name, values, True) for name, values in history.metrics.items()
               if name.startswith("val_")]
    if not curves or not history.epochs:
        raise ValueError("the run's history holds no losses to plot")
    for i, (name, values, held_out) in enumerate(curves):
        color = "k" if held_out else f"C{i % 10}"
        steps = np.asarray(history.step_losses.get(name, []), dtype=float)
        if len(steps) and not held_out:  # each logged step at its fraction of the epochs
            ax.plot(np.linspace(0, history.epochs, len(steps) + 1)[1:], steps, color=color,
                    alpha=0.25, linewidth=0.8)
        ax.plot(epochs[:len(values)], values, color=color, marker=markers[i % len(markers)],
                markevery=max(1, len(values) // 15), linestyle="--" if held_out else "-",
                label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("loss (per-epoch mean)")
    ax.set_title(f"{model} on {dataset}: per-step (faint) and per-epoch losses")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _draw(model, ema, n: int, mean: bool, generator=None):
    """``n`` samples of any generative model (its moving average when the run kept one)."""
    if not model.generative:
        raise _UsageError(f"{type(model).__name__} is not a generative model: nothing to sample")
    options = {"mean": True} if mean else {}
    try:
        return model.averaged(ema).sample(n, generator=generator, **options)
    except TypeError as err:
        if mean and "mean" in str(err):
            raise _UsageError(f"--mean: {type(model).__name__} has no mean image to show") from err
        raise


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
    if payload["model_class"] == "VQVAE":  # its GPT prior, saved beside it (Chapter 12)
        model.attach_prior(load_model(path.parent / "prior.pt", args.device)[0])
    seed_everything(args.seed)
    if payload["model_class"] == "GPT":
        from coursekit.recipes import prepare_data
        from coursekit.utils import atomic_write

        tokenizer = prepare_data("gpt")[3]["tokenizer"]
        if tokenizer.vocab_size != model.config.vocab_size:
            raise _UsageError(f"the run's GPT has {model.config.vocab_size} tokens but the "
                              f"offline text gives {tokenizer.vocab_size}: another Python?")
        atomic_write(args.out, _as_text(_draw(model, ema, args.n, False), tokenizer))
        print(f"wrote {args.out} ({args.n} samples, seed {args.seed})")
        return 0
    with torch.no_grad():
        images = _draw(model, ema, args.n, args.mean)
    title = f"{payload['model_class']} after {payload['epoch']} epochs: {args.n} samples"
    # at least 2 screen pixels per image pixel (3 across the figure, less its margins), at 120
    # dpi; from 4 inches up to 16
    side = 3 * math.ceil(math.sqrt(args.n)) * (images.shape[-1] + 1) / 120
    side = min(16.0, max(4.0, side))
    save_figure(show_images(images, title=title, figsize=(side, side)), args.out)
    print(f"wrote {args.out} ({args.n} samples, seed {args.seed})")
    return 0
