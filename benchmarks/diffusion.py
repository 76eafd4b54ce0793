"""Diffusion, flow matching, the course's VAE and GAN on the digits, side by side (Chapter 9).

    OMP_NUM_THREADS=1 python benchmarks/diffusion.py --workers 4   # about 13 CPU-minutes

Every model trains on the 1,000 training digits in the same run and is scored with the same
feature network (the shipped digits classifier, ``coursekit.features``), the same N = 1,000
samples against the same 447 test digits. Over three training seeds: the v-loss diffusion model
with Min-SNR-5 weighting (Hang et al. 2023) and without it (the plain v-loss), and flow matching
(t ~ U[0, 1]); each diffusion model is sampled with 200 DDPM steps and with 10 DDIM steps on the
noise levels that the flow's 10 Euler steps visit (the two samplers are then the same ODE
solver, so the gap between them is the training weighting). The course's MLP VAE (samples and
decoder means, with its -ELBO) and MLP GAN with spectral normalisation train once, beside the
floor (the real training digits, what a model that copies its training set scores) and a
Gaussian fitted to the pixels. The variational bound (nats per image of the 17 grey levels) ends
the chain at the step ``s`` chosen on ``val`` with the snapping decoder, for the Min-SNR model of
seed 0; the test digits are read once, at the chosen ``s``. Times are CPU seconds of this process. The last line holds
the figures the issue names; ``coursekit.results`` writes them to benchmarks/results/diffusion.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from dataclasses import replace

import torch

from coursekit import results
from coursekit.copies import nn_distance_ratio
from coursekit.data import digits
from coursekit.features import extract_features, feature_net
from coursekit.metrics import fid
from coursekit.models import GAN, Diffusion, DiffusionConfig
from coursekit.runs import PRESETS, build_model
from coursekit.seed import seed_everything
from coursekit.train import TrainConfig, fit

N = 1000                       # samples per model = the training set's size
GAMMA = 5.0                    # Min-SNR-gamma (Hang et al. 2023)
ENDPOINTS = (1, 5, 10, 20, 40, 80)   # candidate last steps s of the bound, chosen on val
KINDS = {"minsnr": ("v", GAMMA), "unweighted": ("v", None), "flow": ("flow", None)}


def train_diffusion(train, objective: str, gamma, epochs: int, seed: int):
    """An unconditional diffusion (or flow) model trained through the engine: its EMA and its
    CPU seconds."""
    seed_everything(seed)
    model = Diffusion(DiffusionConfig(objective=objective, hidden=256, depth=3,
                                      min_snr_gamma=gamma))
    start = time.process_time()
    result = fit(model, train, TrainConfig(epochs=epochs, batch_size=128, lr=2e-3,
                                           ema_decay=0.99, device="cpu", seed=seed))
    return result.ema, time.process_time() - start


def mean_se(values):
    m = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return m, se


@torch.no_grad()
def bound_by_endpoint(model: Diffusion, batch: dict, endpoints) -> dict[int, float]:
    """Mean bound (nats) for each endpoint ``s``, every KL term evaluated once and shared."""
    x0 = model.to_model_space(batch["x"])
    b, T = x0.shape[0], model.config.timesteps
    lo = min(endpoints)
    kl = torch.stack([model.kl_term(x0, torch.full((b,), t)) for t in range(lo + 1, T + 1)])
    tail = kl.flip(0).cumsum(0).flip(0)            # tail[i] = sum_{t >= lo + 1 + i} KL_t
    prior = model.prior_kl(x0)
    out = {}
    for s in endpoints:
        dec = model.decoder_nll(x0, batch["levels"], endpoint=s)
        out[s] = float((prior + tail[s - lo] + dec).mean())
    return out


def _fid_of(x):
    net, test_feats = _FEATURES["net"], _FEATURES["test"]
    return fid(extract_features(net, x), test_feats)


_FEATURES: dict = {}


def _load_features() -> None:
    if not _FEATURES:
        torch.set_num_threads(1)
        _FEATURES["net"] = feature_net("digits")
        _FEATURES["test"] = extract_features(_FEATURES["net"], digits("test").images)


def bound_and_copies(model: Diffusion) -> dict:
    """The bound with its endpoint chosen on val (test read once, at that endpoint), and the
    near-copy ratio of 1,000 DDPM-200 samples."""
    val, test, train = digits("val"), digits("test"), digits("train")
    start = time.process_time()
    torch.manual_seed(0)
    val_bounds = bound_by_endpoint(model, {"x": val.images, "levels": val.levels}, ENDPOINTS)
    s = min(ENDPOINTS, key=lambda e: val_bounds[e])
    print("val bound: " + ", ".join(f"s={e} {v:.1f}" for e, v in val_bounds.items()),
          flush=True)
    torch.manual_seed(0)
    with torch.no_grad():
        bound = model.nll_bound({"x": test.images, "levels": test.levels}, t_samples=None,
                                endpoint=s)
    out = {"nll_bound": float(bound.mean()), "endpoint": s,
           "val_bounds": {str(e): v for e, v in val_bounds.items()},
           "bound_cpu_s": time.process_time() - start}
    samples = model.sample(N, steps=200, method="ddpm", generator=torch.Generator().manual_seed(7))
    ratio = nn_distance_ratio(samples, train.images)
    ratio_test = nn_distance_ratio(test.images, train.images)
    out.update(copies_min_ratio=float(ratio.min()), copies_below_third=int((ratio < 1 / 3).sum()),
               copies_median_ratio=float(ratio.median()),
               test_min_ratio=float(ratio_test.min()), test_median_ratio=float(ratio_test.median()))
    return out


def diffusion_job(kind: str, seed: int, epochs: int) -> dict:
    """Train one diffusion model (in a worker process) and score its samples; CPU seconds are
    this process's."""
    _load_features()
    objective, gamma = KINDS[kind]
    model, sec = train_diffusion(digits("train"), objective, gamma, epochs, seed)
    gen = torch.Generator().manual_seed(100 + seed)
    out = {"kind": kind, "seed": seed, "seconds": sec, "state": model.state_dict()}
    if kind == "flow":
        out["euler10"] = _fid_of(model.sample(N, steps=10, generator=gen))
        out["euler50"] = _fid_of(model.sample(N, steps=50, generator=gen))
    else:
        out["ddpm200"] = _fid_of(model.sample(N, steps=200, method="ddpm", generator=gen))
        out["ddim10_flowgrid"] = _fid_of(model.sample(N, steps=10, method="ddim", grid="flow",
                                                      generator=gen))
        out["ddim10_uniform"] = _fid_of(model.sample(N, steps=10, method="ddim", generator=gen))
    if kind == "minsnr" and seed == 0:
        out.update(bound_and_copies(model.eval()))
    print(f"seed {seed} {kind:10s} {sec:5.1f} CPU-s " + " ".join(
        f"{k} {v:.2f}" for k, v in out.items() if isinstance(v, float) and k != "seconds"),
        flush=True)
    return out


def baseline_job(name: str, epochs: int) -> dict:
    """The course's VAE or GAN (Chapter 4 presets), trained in a worker process."""
    _load_features()
    train, test = digits("train"), digits("test")
    seed_everything(0)
    model, preset = build_model(name, train), PRESETS[name]
    if name == "gan":  # the stronger of Chapter 4's two GANs: spectral normalisation
        model = GAN(replace(model.config, spectral_norm=True))
    start = time.process_time()
    result = fit(model, train, TrainConfig(epochs=epochs, device="cpu", seed=0, lr=preset.lr,
                                           betas=preset.betas))
    out = {"name": name, "seconds": time.process_time() - start}
    seed_everything(1)
    out["fid"] = _fid_of(result.model.sample(N).clamp(0, 1))
    if name == "vae":
        vae = result.model.eval()
        out["fid_means"] = _fid_of(vae.sample(N, mean=True))
        with torch.no_grad():
            batch = {"x": test.images, "levels": test.levels}
            out["neg_elbo"] = float(torch.stack(
                [vae.negative_elbo(batch)["neg_elbo"] for _ in range(20)]).mean())
    print(f"{name}: " + " ".join(f"{k} {v:.2f}" for k, v in out.items() if k != "name"),
          flush=True)
    return out


def _run(job):
    fn, args = job
    return fn(*args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=500, help="diffusion epochs (8 steps each)")
    parser.add_argument("--baseline-epochs", type=int, default=200, help="VAE and GAN epochs")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per diffusion model")
    parser.add_argument("--workers", type=int, default=1, help="processes (one thread each)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train, val, test = digits("train"), digits("val"), digits("test")
    _load_features()
    fid_of = _fid_of

    fig = {"fid_floor": fid_of(train.images)}
    fitted = torch.distributions.MultivariateNormal(
        train.images.flatten(1).mean(0), torch.cov(train.images.flatten(1).T)
        + 1e-4 * torch.eye(64))
    seed_everything(0)
    gauss_fid = fid_of(fitted.sample((N,)).clamp(0, 1).view(N, 1, 8, 8))
    print(f"floor (real training digits) {fig['fid_floor']:.2f}; fitted Gaussian {gauss_fid:.2f}",
          flush=True)

    seeds = list(range(args.seeds))
    jobs = [(diffusion_job, (kind, seed, args.epochs)) for seed in seeds for kind in KINDS]
    jobs += [(baseline_job, (name, args.baseline_epochs)) for name in ("vae", "gan")]
    if args.workers > 1:  # one process per job: a shared machine gives each its share
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            done = pool.map(_run, jobs, chunksize=1)
    else:
        done = [_run(job) for job in jobs]
    per = {k: {"ddpm200": [], "ddim10_flowgrid": [], "ddim10_uniform": [], "seconds": []}
           for k in KINDS}
    per["flow"] = {"euler10": [], "euler50": [], "seconds": []}
    base = {}
    for out in done:
        if "kind" not in out:
            base[out["name"]] = out
            continue
        kind, seed = out["kind"], out["seed"]
        for key in per[kind]:
            per[kind][key].append(out[key])
        out.pop("state")

    def paired(a, b):
        return mean_se([x - y for x, y in zip(a, b)])

    gain = paired(per["unweighted"]["ddpm200"], per["minsnr"]["ddpm200"])
    gap = paired(per["unweighted"]["ddim10_flowgrid"], per["flow"]["euler10"])
    gap_w = paired(per["minsnr"]["ddim10_flowgrid"], per["flow"]["euler10"])
    print(f"Min-SNR gain (unweighted - weighted, DDPM 200): {gain[0]:.2f} +- {gain[1]:.2f} SE")
    print(f"DDIM 10 (flow grid) - flow Euler 10: plain v-loss {gap[0]:.2f} +- {gap[1]:.2f}, "
          f"Min-SNR v-loss {gap_w[0]:.2f} +- {gap_w[1]:.2f} SE", flush=True)

    seconds = {name: base[name]["seconds"] for name in base}
    fig["fid_vae"], fig["fid_gan"] = base["vae"]["fid"], base["gan"]["fid"]
    fig["fid_vae_means"] = base["vae"]["fid_means"]
    extra_fid = {"vae_neg_elbo": base["vae"]["neg_elbo"]}
    print(f"VAE FID {fig['fid_vae']:.2f} (samples), {fig['fid_vae_means']:.2f} (decoder means), "
          f"-ELBO {extra_fid['vae_neg_elbo']:.2f} nats, {seconds['vae']:.0f} CPU-s; "
          f"GAN FID {fig['fid_gan']:.2f}, {seconds['gan']:.0f} CPU-s", flush=True)

    first = next(out for out in done if out.get("kind") == "minsnr" and out["seed"] == 0)
    fig["nll_bound_nats"] = first["nll_bound"]
    print(f"test bound: {first['nll_bound']:.2f} nats per image (Min-SNR model, seed 0, endpoint "
          f"s = {first['endpoint']} chosen on val; {first['bound_cpu_s']:.0f} CPU-s)")
    print(f"d1/d2: samples min {first['copies_min_ratio']:.2f}, median "
          f"{first['copies_median_ratio']:.2f}; test digits min {first['test_min_ratio']:.2f}, "
          f"median {first['test_median_ratio']:.2f}")

    fig["fid_diffusion"] = statistics.fmean(per["minsnr"]["ddpm200"])
    fig["fid_unweighted"] = statistics.fmean(per["unweighted"]["ddpm200"])
    fig["fm_fid_10"] = statistics.fmean(per["flow"]["euler10"])
    fig["ddim_fid_10"] = statistics.fmean(per["unweighted"]["ddim10_flowgrid"])
    fig["train_seconds"] = statistics.fmean(per["minsnr"]["seconds"])
    extra = {"per_seed": per, "fid_gaussian": gauss_fid, "vae_neg_elbo": extra_fid["vae_neg_elbo"],
             "seconds_vae": seconds["vae"], "seconds_gan": seconds["gan"],
             "minsnr_gain_mean": gain[0], "minsnr_gain_se": gain[1],
             "ddim_minus_flow_mean": gap[0], "ddim_minus_flow_se": gap[1],
             "ddim_minsnr_minus_flow_mean": gap_w[0], "ddim_minsnr_minus_flow_se": gap_w[1],
             "ddim_minsnr_fid_10": statistics.fmean(per["minsnr"]["ddim10_flowgrid"]),
             "fm_fid_50": statistics.fmean(per["flow"]["euler50"]),
             "bound_endpoint": first["endpoint"], "val_bounds": first["val_bounds"],
             "copies_min_ratio": first["copies_min_ratio"],
             "copies_below_third": first["copies_below_third"],
             "seconds_flow": statistics.fmean(per["flow"]["seconds"]),
             "seconds_unweighted": statistics.fmean(per["unweighted"]["seconds"])}
    results.write("diffusion", {k: round(v, 3) for k, v in fig.items()}, seeds=seeds,
                  budget=f"{args.epochs} diffusion epochs (8 steps of 128) per model and seed, "
                         f"{args.baseline_epochs} VAE/GAN epochs; N = {N} samples",
                  extra=extra)
    keys = ("fid_diffusion fid_unweighted fid_vae fid_vae_means fid_gan fid_floor fm_fid_10 "
            "ddim_fid_10 nll_bound_nats train_seconds").split()
    print(" ".join(f"{k}={fig[k]:.2f}" for k in keys))


if __name__ == "__main__":
    main()
