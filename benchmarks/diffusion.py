"""Diffusion, flow matching, the course's VAE and GAN on the digits, side by side (Chapter 9).

    OMP_NUM_THREADS=1 python benchmarks/diffusion.py

Every model trains on the 1,000 training digits in the same run; each is scored with the same
feature network (the shipped digits classifier, ``coursekit.features``), the same N = 1,000
samples against the same 447 test digits: FID, KID, precision and recall. The floor is the 1,000
real training digits against the same test digits. Also: DDIM against flow matching at 10 and
20 steps, a classifier-free guidance sweep, the variational bound of the diffusion model in nats
per image (the 17 grey levels scored with a discretised last step, the scale of Chapter 4's VAE),
and the nearest-neighbour distance ratio of the samples. Times are CPU seconds of this process.
The last line holds the figures the issue names.
"""

from __future__ import annotations

import argparse
import time

import torch

from coursekit.copies import nn_distance_ratio
from coursekit.data import digits
from coursekit.features import accuracy, extract_features, feature_net
from coursekit.metrics import fid, kid, precision_recall
from coursekit.models import Diffusion, DiffusionConfig
from coursekit.runs import build_model
from coursekit.seed import seed_everything
from coursekit.train import TrainConfig, fit

N = 1000                    # samples per model = the training set's size
GUIDANCE = (0.0, 0.5, 1.0, 2.0, 4.0)


def train_diffusion(train, objective: str, epochs: int, num_classes: int = 0, seed: int = 0):
    """A diffusion (or flow) model trained through the engine, its EMA, and its CPU seconds."""
    seed_everything(seed)
    model = Diffusion(DiffusionConfig(objective=objective, hidden=256, depth=3,
                                      num_classes=num_classes))
    start = time.process_time()
    result = fit(model, train, TrainConfig(epochs=epochs, batch_size=128, lr=2e-3,
                                           ema_decay=0.99, device="cpu", seed=seed))
    return result.ema, time.process_time() - start


def scores(net, x, test_feats):
    f = extract_features(net, x)
    p, r = precision_recall(test_feats, f)
    return {"fid": fid(f, test_feats), "kid": kid(f, test_feats)[0], "precision": p, "recall": r}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=500, help="diffusion epochs (8 steps each)")
    parser.add_argument("--baseline-epochs", type=int, default=200, help="VAE and GAN epochs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train, test = digits("train"), digits("test")
    net = feature_net("digits")
    test_feats = extract_features(net, test.images)
    rows = {"floor (real train)": scores(net, train.images, test_feats)}
    fitted = torch.distributions.MultivariateNormal(
        train.images.flatten(1).mean(0), torch.cov(train.images.flatten(1).T)
        + 1e-4 * torch.eye(64))
    seed_everything(0)
    rows["fitted Gaussian"] = scores(net, fitted.sample((N,)).clamp(0, 1).view(N, 1, 8, 8),
                                     test_feats)

    seconds = {}
    diffusion, seconds["diffusion"] = train_diffusion(train, "v", args.epochs)
    flow, seconds["flow"] = train_diffusion(train, "flow", args.epochs)
    gen = torch.Generator().manual_seed(1)
    samples = diffusion.sample(N, steps=50, method="ddim", generator=gen)
    rows["diffusion, DDIM 50"] = scores(net, samples, test_feats)
    rows["diffusion, DDPM 200"] = scores(
        net, diffusion.sample(N, steps=200, method="ddpm", generator=gen), test_feats)
    steps_fid = {}
    for steps in (10, 20, 50):
        steps_fid[("ddim", steps)] = fid(extract_features(
            net, diffusion.sample(N, steps=steps, method="ddim", generator=gen)), test_feats)
        x = flow.sample(N, steps=steps, method="flow", generator=gen)
        steps_fid[("flow", steps)] = fid(extract_features(net, x), test_feats)
        if steps == 50:
            rows["flow matching, Euler 50"] = scores(net, x, test_feats)

    for name, epochs in (("vae", args.baseline_epochs), ("gan", args.baseline_epochs)):
        seed_everything(0)
        model, defaults = build_model(name, train)
        start = time.process_time()
        result = fit(model, train, TrainConfig(epochs=epochs, device="cpu", seed=0, **defaults))
        seconds[name] = time.process_time() - start
        seed_everything(1)
        x = (result.model.sample(N) if name == "vae" else result.model.sample(N)).clamp(0, 1)
        rows[f"course {name.upper()}"] = scores(net, x, test_feats)

    print(f"{'model':26s} {'FID':>7s} {'KID':>7s} {'prec':>5s} {'rec':>5s}   (N = {N} vs the "
          f"{len(test)} test digits)")
    for name, s in rows.items():
        print(f"{name:26s} {s['fid']:7.2f} {s['kid']:7.4f} {s['precision']:5.2f} "
              f"{s['recall']:5.2f}")
    print("steps   DDIM FID   flow FID")
    for steps in (10, 20, 50):
        print(f"{steps:5d} {steps_fid[('ddim', steps)]:10.2f} {steps_fid[('flow', steps)]:10.2f}")

    cond, seconds["conditional"] = train_diffusion(train, "v", args.epochs, num_classes=10)
    labels = torch.arange(N) % 10
    print("guidance  accuracy   FID")
    for w in GUIDANCE:
        x = cond.sample(N, steps=50, guidance=w, labels=labels,
                        generator=torch.Generator().manual_seed(2))
        print(f"{w:8.1f} {accuracy(net, x, labels):9.3f} "
              f"{fid(extract_features(net, x), test_feats):6.2f}")

    start = time.process_time()
    torch.manual_seed(0)
    with torch.no_grad():
        bound = diffusion.nll_bound({"x": test.images, "levels": test.levels}, t_samples=None)
        raw = Diffusion(DiffusionConfig(**{**diffusion.config_dict(), "snap": False}))
        raw.load_state_dict(diffusion.state_dict())
        torch.manual_seed(0)
        bound_raw = raw.nll_bound({"x": test.images, "levels": test.levels}, t_samples=None)
    nll = float(bound.mean())
    print(f"variational bound on the test digits: {nll:.1f} nats per image with the levels "
          f"snapped, {float(bound_raw.mean()):.1f} with the raw x0 ({time.process_time() - start:.0f} "
          f"CPU-s); the course's VAEs: 94.0 (MLP), 83.2 (best)")

    ratio = nn_distance_ratio(samples, train.images)
    ratio_test = nn_distance_ratio(test.images, train.images)
    print(f"nearest-neighbour distance ratio d1/d2: samples min {float(ratio.min()):.2f}, "
          f"median {float(ratio.median()):.2f}; test digits min {float(ratio_test.min()):.2f}, "
          f"median {float(ratio_test.median()):.2f}; samples below 1/3: "
          f"{int((ratio < 1 / 3).sum())}")
    print("CPU seconds of training: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"fid_diffusion={rows['diffusion, DDPM 200']['fid']:.2f} "
          f"fid_vae={rows['course VAE']['fid']:.2f} fid_gan={rows['course GAN']['fid']:.2f} "
          f"fid_floor={rows['floor (real train)']['fid']:.2f} "
          f"fm_fid_10={steps_fid[('flow', 10)]:.2f} ddim_fid_10={steps_fid[('ddim', 10)]:.2f} "
          f"fm_fid_20={steps_fid[('flow', 20)]:.2f} ddim_fid_20={steps_fid[('ddim', 20)]:.2f} "
          f"nll_bound_nats={nll:.2f} train_seconds={seconds['diffusion']:.1f}")


if __name__ == "__main__":
    main()
