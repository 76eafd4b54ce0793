"""Chapter 10's risks, measured: near-copies, membership inference and a text watermark.

* Near-copies: chapter 9's diffusion model (``DiffusionConfig(hidden=256, depth=3)``, batch 50,
  lr 2e-3, EMA 0.99) trained for the SAME number of optimisation steps (``--steps``) on the first
  50 and on all 1,000 training digits; 200 DDIM-50 samples each; a sample is a near-copy when its
  nearest-neighbour distance ratio d1/d2 to its training set is below 1/3. Baseline: the ratio of
  held-out real digits (test split) to the same training set, which should give ~0 copies.
* Membership inference (loss threshold, Yeom et al. 2018): disjoint sets from the digits splits —
  members A = a random 500 of the 1,000 training digits (seed 0), non-members B = the other 500
  (no model here ever sees them; a random split, because train[:500] and train[500:] differ:
  the digits are stored in writer order, which alone gives AUROC ~0.68 to a tiny model).
  Overfitted: a VAE (latent 16, hidden 512) trained on A for 300 epochs. Regularised: the same
  VAE trained on A + val (850 digits) with early stopping on the test split (patience 10).
  The attack scores A against B by the -ELBO (mean of 8 draws). Baseline: the attack on two halves
  of B (AUROC 0.5 by construction, shows the estimator's noise).
* Watermark: KN order-6 character model of chapter 7, 200 prompts of 20 characters from the val
  text, 200 watermarked and 200 plain characters after each; false alarms are the plain model's
  samples and the human continuations. Cost: bits per character of the watermarked distribution
  on 3,000 val characters minus the plain model's.

Run: ``python benchmarks/risks.py [--steps 16000] [--width 3]``. CPU seconds are printed per part.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from coursekit import seed_everything
from coursekit.copies import nn_distance_ratio
from coursekit.data import digits
from coursekit.risks.membership import loss_threshold_auroc
from coursekit.risks.watermark import WatermarkConfig, WatermarkedLM, green_count, z_score
from coursekit.train import EarlyStopping, TrainConfig, as_batch_data, fit


def memorisation(steps: int, n_samples: int = 200, sizes=(50, 1000)) -> dict[str, float]:
    from coursekit.models.diffusion import Diffusion, DiffusionConfig

    train = digits("train").images
    held_out = digits("test").images
    out = {}
    for n in sizes:
        seed_everything(0)
        t0 = time.process_time()
        subset = train[:n]
        epochs = max(1, round(steps * 50 / n))           # batch 50: n / 50 steps per epoch
        model = Diffusion(DiffusionConfig(hidden=256, depth=3))
        result = fit(model, subset, TrainConfig(epochs=epochs, batch_size=50, lr=2e-3, seed=0,
                                                device="auto", ema_decay=0.99))
        x = result.ema.sample(n_samples, steps=50, method="ddim",
                              generator=torch.Generator(result.ema._device()).manual_seed(0))
        ratio = nn_distance_ratio(x.cpu(), subset)
        real = nn_distance_ratio(held_out[:n_samples], subset)
        out[f"copies_{n}"] = float((ratio < 1 / 3).float().mean())
        print(f"diffusion on {n:4d} digits, {epochs} epochs ({steps} steps): near-copies "
              f"{out[f'copies_{n}']:.3f}, median ratio {float(ratio.median()):.3f}; held-out "
              f"real digits: copies {float((real < 1 / 3).float().mean()):.3f}, median ratio "
              f"{float(real.median()):.3f}  [{time.process_time() - t0:.0f} CPU-s]", flush=True)
    return out


def _neg_elbo(model, batch, draws: int = 8) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.mean([model.negative_elbo(batch)["neg_elbo"].cpu().numpy()
                        for _ in range(draws)], axis=0)


def membership(epochs: int = 300) -> dict[str, float]:
    from coursekit.models import VAE, VAEConfig

    full = as_batch_data(digits("train"))
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    members = {k: v[order[:500]] for k, v in full.items()}   # a random half of train
    others = {k: v[order[500:]] for k, v in full.items()}    # the other half: never trained on
    val, test = as_batch_data(digits("val")), as_batch_data(digits("test"))
    out = {}
    seed_everything(0)
    t0 = time.process_time()
    model = VAE(VAEConfig(latent_dim=16, hidden=512))
    fit(model, members, TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, seed=0, device="cpu"))
    lm, lo = _neg_elbo(model, members), _neg_elbo(model, others)
    out["mia_auroc_overfit"] = loss_threshold_auroc(lm, lo)
    print(f"overfitted VAE (500 digits, {epochs} epochs): -ELBO members {lm.mean():.1f}, "
          f"non-members {lo.mean():.1f} nats; AUROC {out['mia_auroc_overfit']:.3f}  "
          f"[{time.process_time() - t0:.0f} CPU-s]", flush=True)
    print(f"baseline, two halves of the non-members: AUROC "
          f"{loss_threshold_auroc(lo[:250], lo[250:]):.3f}")

    seed_everything(0)
    t0 = time.process_time()
    bigger = {k: torch.cat([members[k], val[k]]) for k in members}
    model = VAE(VAEConfig(latent_dim=16, hidden=512))
    stop = EarlyStopping("val_neg_elbo", patience=10)
    history = fit(model, bigger, TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, seed=0,
                                             device="cpu"), val_data=test,
                  callbacks=[stop]).history
    stop.restore(model)
    lm, lo = _neg_elbo(model, members), _neg_elbo(model, others)
    out["mia_auroc_reg"] = loss_threshold_auroc(lm, lo)
    print(f"regularised VAE (850 digits, early stop at epoch {stop.best_epoch} of "
          f"{history.epochs}): -ELBO members {lm.mean():.1f}, non-members {lo.mean():.1f} nats;"
          f" AUROC {out['mia_auroc_reg']:.3f}  [{time.process_time() - t0:.0f} CPU-s]",
          flush=True)
    return out


def watermark(width: int, n: int = 200, length: int = 200) -> dict[str, float]:
    from coursekit.text.ngram import KneserNeyLM
    from coursekit.text.recipes import char_splits
    from coursekit.text.sampling import sample
    from coursekit.text.tokenize import CharTokenizer

    t0 = time.process_time()
    splits = char_splits()
    tok = CharTokenizer.from_text(splits["train"])
    lm = KneserNeyLM(order=6).fit(tok.encode(splits["train"]), vocab_size=tok.vocab_size)
    val = tok.encode(splits["val"])
    wm = WatermarkedLM(lm, WatermarkConfig(context_width=width))
    rng = np.random.default_rng(0)
    z_wm, z_plain, z_human, scored = [], [], [], []
    for i in range(n):
        start = int(rng.integers(0, len(val) - length - 40))
        ctx = val[start:start + 20]
        marked = ctx[-width:] + sample(wm, ctx, length, seed=i)
        plain = ctx[-width:] + sample(lm, ctx, length, seed=i)
        z_wm.append(z_score(marked, wm.green))
        scored.append(green_count(marked, wm.green)[1])
        z_plain.append(z_score(plain, wm.green))
        z_human.append(z_score(val[start + 20 - width:start + 20 + length], wm.green))
    z_wm, z_plain, z_human, scored = map(np.array, (z_wm, z_plain, z_human, scored))
    thr = wm.config.z_threshold
    tpr = float((z_wm >= thr).mean())
    fpr = float(np.r_[z_plain >= thr, z_human >= thr].mean())
    varied = scored >= 50
    text = val[:3000]
    cost = wm.bits_per_char(text) - lm.bits_per_char(text)
    print(f"watermark h={width}: TPR {tpr:.3f} ({int(varied.sum())} samples with >= 50 scored "
          f"pairs: {float((z_wm[varied] >= thr).mean()):.3f}); false alarms: model samples "
          f"{float((z_plain >= thr).mean()):.3f}, human text {float((z_human >= thr).mean()):.3f}")
    print(f"  z: watermarked {z_wm.mean():.2f}; plain {z_plain.mean():.2f} +- "
          f"{z_plain.std():.2f}; human {z_human.mean():.2f} +- {z_human.std():.2f}; "
          f"bits/char {lm.bits_per_char(text):.3f} -> {lm.bits_per_char(text) + cost:.3f}  "
          f"[{time.process_time() - t0:.0f} CPU-s]", flush=True)
    return {"watermark_tpr": tpr, "watermark_fpr": fpr, "watermark_bpc_cost": float(cost)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16000, help="diffusion optimisation steps")
    parser.add_argument("--width", type=int, default=3, help="watermark context width h")
    parser.add_argument("--parts", default="wm,mia,mem", help="which parts to run")
    parser.add_argument("--sizes", default="50,1000", help="training-set sizes for near-copies")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, float] = {}
    parts = args.parts.split(",")
    if "wm" in parts:
        results.update(watermark(args.width))
    if "mia" in parts:
        results.update(membership())
    if "mem" in parts:
        results.update(memorisation(args.steps, sizes=[int(n) for n in args.sizes.split(",")]))
    keys = ["copies_50", "copies_1000", "mia_auroc_overfit", "mia_auroc_reg", "watermark_tpr",
            "watermark_fpr", "watermark_bpc_cost"]
    print(" ".join(f"{k}={results[k]:.3f}" for k in keys if k in results))


if __name__ == "__main__":
    main()
