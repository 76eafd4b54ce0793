"""Exact likelihoods on the digits, in nats per test image: a coupling flow with uniform and with
variational dequantisation, an autoregressive model, the MLP VAE and independent pixel histograms,
each with its training CPU-seconds and (for the generative models) FID (Chapter 11).

Data: scikit-learn's digits split by index 1000/350/447 (train/val/test), 17 grey levels, the
split of Chapter 4 and J. Tomczak's intro_dgm. Every model is trained by ``coursekit.train.fit``
on the training part with early stopping on the validation part, and stops once its training has
used ``--budget`` CPU-seconds (``time.process_time`` of the process that trains it: the wall clock
on a shared machine says little). Scored once on the test part:

- ``histogram_nats``: independent per-pixel histograms (add-one counts), the sceptic's baseline;
- ``flow_uniform_nats`` / ``flow_variational_nats``: RealNVP (Dinh et al. 2017), 8 couplings, the
  dequantisation bound ``-E_q[log p(x + u) - log q(u|x)]`` averaged over ``--draws`` draws of u,
  with ``q`` uniform (Theis et al. 2016) or a learned conditional flow (Ho et al. 2019);
- ``ar_nats``: the autoregressive model, Chapter 4's causal-conv decoder without the latent
  (exact ``-log p(x)``; intro_dgm's ARM reports about 88.7 on this split);
- ``vae_iwae_nats``: the MLP VAE of Chapter 4 (intro_dgm's 64-256-256-16), importance-weighted
  bound with ``--k`` samples;
- ``fid_flow`` / ``fid_ar``: FID of 1,000 samples against the 447 test digits, with the digits
  classifier's features (Chapter 5's protocol; the variationally dequantised flow samples).

The four models train in parallel processes (``--jobs``), each timed on its own CPU clock.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/exact_likelihood.py

Last line: ``histogram_nats=.. flow_uniform_nats=.. flow_variational_nats=.. ar_nats=..
vae_iwae_nats=.. fid_flow=.. fid_ar=.. train_seconds_flow=.. train_seconds_ar=..``; the figures
go to ``benchmarks/results/exact_likelihood.json`` (``coursekit.results.write``), with sixteen
test-set samples of each model for the chapter's figure.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time

import torch

N_FID = 1000     # samples per model for FID, as in Chapters 5 and 9
N_SHOWN = 16     # samples per model kept in the results file for the chapter's figure


class CPUBudget:
    """A callback that stops training once this process has used ``seconds`` of CPU time."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.process_time()

    def __call__(self, state) -> bool:
        return time.process_time() - self.start > self.seconds


def _train(model, args, metric: str, epochs: int, lr: float, optimizer: str = "adam"):
    """Fit ``model`` with early stopping on ``metric``; returns (CPU-seconds, epochs, best)."""
    from coursekit.train import EarlyStopping, TrainConfig, fit

    from coursekit.data import digits

    stopper = EarlyStopping(metric, patience=args.patience)
    start = time.process_time()
    result = fit(model, digits("train"),
                 TrainConfig(epochs=epochs, lr=lr, seed=args.seed, device="cpu",
                             optimizer=optimizer),
                 val_data=digits("val"), callbacks=[stopper, CPUBudget(args.budget)])
    seconds = time.process_time() - start
    stopper.restore(model)
    model.eval()
    return seconds, result.history.epochs, stopper.best_epoch


def run_model(job: tuple[str, argparse.Namespace]) -> dict:
    """Train and score one model (in its own process); returns its figures and samples."""
    name, args = job
    from coursekit.data import digits
    from coursekit.features import extract_features, feature_net
    from coursekit.metrics import fid, iwae_nll
    from coursekit.models import (VAE, Autoregressive, AutoregressiveConfig, Flow, FlowConfig,
                                  VAEConfig)
    from coursekit.seed import seed_everything
    from coursekit.train import as_batch_data

    torch.set_num_threads(1)
    test = as_batch_data(digits("test"))
    seed_everything(args.seed)
    out: dict = {"name": name}
    if name.startswith("flow"):
        model = Flow(FlowConfig(hidden=args.flow_hidden, num_couplings=args.couplings,
                                dequantization=name.split("_")[1]))
        out["cpu"], out["epochs"], out["best_epoch"] = _train(model, args, "val_nats",
                                                              args.epochs, args.lr)
        g = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            draws = torch.stack([model.nll_bound(test, generator=g) for _ in range(args.draws)])
        out["per_image"] = draws.mean(0)
        out["nats"] = out["per_image"].mean().item()
        # the importance-weighted bound over the same draws: log (1/K) sum_k p(x+u_k)/q(u_k|x)
        out["nats_iw"] = -(torch.logsumexp(-draws, 0) - math.log(args.draws)).mean().item()
    elif name == "ar":
        model = Autoregressive(AutoregressiveConfig(channels=args.ar_channels))
        out["cpu"], out["epochs"], out["best_epoch"] = _train(model, args, "val_nats",
                                                              args.epochs, args.lr)
        with torch.no_grad():
            out["per_image"] = -model.log_prob(test)
        out["nats"] = out["per_image"].mean().item()
    else:  # the MLP VAE of Chapter 4's baseline (benchmarks/vae_digits.py --baseline)
        model = VAE(VAEConfig(latent_dim=16, hidden=256))
        out["cpu"], out["epochs"], out["best_epoch"] = _train(
            model, args, "val_neg_elbo", 1000, 1e-3, optimizer="adamax")
        torch.manual_seed(args.seed)
        with torch.no_grad():
            out["neg_elbo"] = model.evaluate(test)["neg_elbo"].mean().item()
        out["per_image"] = iwae_nll(model.iwae_log_weights(test, k=args.k))
        out["nats"] = out["per_image"].mean().item()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    samples = model.sample(N_FID) if name == "vae" else model.sample(N_FID, generator=g)
    net = feature_net("digits")
    out["fid"] = fid(extract_features(net, samples), extract_features(net, test["x"]))
    out["samples"] = torch.round(samples[:N_SHOWN] * 16).long().flatten(1).tolist()
    out["per_image"] = out["per_image"].double()
    return out


def paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean and standard error of the per-image difference ``a - b`` on the same test images."""
    d = (a - b).double()
    return {"mean": round(d.mean().item(), 3),
            "se": round(d.std().item() / math.sqrt(len(d)), 3)}


def main(argv: list[str] | None = None) -> None:
    from coursekit import results
    from coursekit.data import digits
    from coursekit.models.autoregressive import histogram_nats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=110.0,
                        help="CPU-seconds after which each model stops training (default 110)")
    parser.add_argument("--epochs", type=int, default=200, help="most epochs (flows, AR)")
    parser.add_argument("--patience", type=int, default=15, help="early-stopping patience")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--flow-hidden", type=int, default=64, help="coupling channels")
    parser.add_argument("--couplings", type=int, default=8)
    parser.add_argument("--ar-channels", type=int, default=64)
    parser.add_argument("--draws", type=int, default=10, help="dequantisation draws per image")
    parser.add_argument("--k", type=int, default=1000, help="importance samples of the VAE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=4, help="models trained in parallel")
    parser.add_argument("--no-write", action="store_true", help="print, write no JSON")
    args = parser.parse_args(argv)

    train, test = digits("train"), digits("test")
    per_histogram = histogram_nats(train.levels, test.levels, train.num_levels)
    histogram = per_histogram.mean().item()
    names = ["flow_uniform", "flow_variational", "ar", "vae"]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        runs = {r["name"]: r for r in pool.map(run_model, [(n, args) for n in names])}
    print(f"{'model':18s} {'test nats':>9s} {'CPU-s':>6s} {'epochs':>6s} {'best':>5s} "
          f"{'FID':>6s}")
    print(f"{'pixel histograms':18s} {histogram:9.2f}")
    for name, r in runs.items():
        print(f"{name:18s} {r['nats']:9.2f} {r['cpu']:6.1f} {r['epochs']:6d} "
              f"{r['best_epoch']:5d} {r['fid']:6.2f}")
    figures = {
        "histogram_nats": round(histogram, 2),
        "flow_uniform_nats": round(runs["flow_uniform"]["nats"], 2),
        "flow_variational_nats": round(runs["flow_variational"]["nats"], 2),
        "ar_nats": round(runs["ar"]["nats"], 2),
        "vae_iwae_nats": round(runs["vae"]["nats"], 2),
        "fid_flow": round(runs["flow_variational"]["fid"], 2),
        "fid_ar": round(runs["ar"]["fid"], 2),
        "train_seconds_flow": round(max(runs["flow_uniform"]["cpu"],
                                        runs["flow_variational"]["cpu"]), 1),
        "train_seconds_ar": round(runs["ar"]["cpu"], 1),
    }
    per = {name: r.pop("per_image") for name, r in runs.items()}
    differences = {  # paired over the 447 test images: A - B, mean and standard error
        "histogram_minus_flow_uniform": paired(per_histogram, per["flow_uniform"]),
        "flow_uniform_minus_flow_variational": paired(per["flow_uniform"],
                                                      per["flow_variational"]),
        "flow_variational_minus_ar": paired(per["flow_variational"], per["ar"]),
        "vae_minus_ar": paired(per["vae"], per["ar"])}
    for name, d in differences.items():
        print(f"{name}: {d['mean']:.2f} +- {d['se']:.2f} nats (paired, test images)")
    if not args.no_write:
        extra = {name: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                 for name, r in runs.items()}
        extra["paired_differences"] = differences
        extra["settings"] = {k: v for k, v in vars(args).items() if k != "no_write"}
        extra["command"] = "OMP_NUM_THREADS=1 nice -n 5 python benchmarks/exact_likelihood.py"
        results.write("exact_likelihood", figures, seeds=[args.seed],
                      budget=f"{args.budget:g} CPU-s per model, early stopping on val "
                             f"(patience {args.patience})", extra=extra)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
