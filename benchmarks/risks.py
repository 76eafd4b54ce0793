"""Chapter 10's risks, measured: near-copies, membership inference and a text watermark.

* Near-copies: chapter 9's diffusion model (``DiffusionConfig(hidden=256, depth=3)``, batch 50,
  lr 2e-3, EMA 0.99) trained for the SAME number of optimisation steps (``--steps``) on the first
  50 and on all 1,000 training digits; 200 DDIM-50 samples each; a sample is a near-copy when its
  nearest-neighbour distance ratio d1/d2 to its training set is below 1/3. Baseline: the ratio of
  held-out real digits (test split) to the same training set, which should give ~0 copies.
* Membership inference (loss threshold, Yeom et al. 2018), reported as AUROC and as the TPR at
  1 % and 5 % FPR (Carlini et al. 2022): members A = a random 500 of the 1,000 training digits
  (seed 0), non-members B = the other 500 (no model here sees them; a random split, because the
  digits are stored in writer order). Four non-private VAEs (latent 16, ``--hidden``), one change
  at a time: trained on A, or on A + the 447 test digits (more data); for ``--epochs``, or with
  early stopping on ``val`` (patience 10). The regularised model of the figures is A with early
  stopping. The attack scores A against B by the -ELBO (mean of 8 draws). Baseline: the attack
  on two halves of B. Defence: DP-SGD (``coursekit.risks.privacy``: per-example clipping at
  C = 1, Poisson sampling q = 0.1, noise for (``--dp-eps``, 1e-5)-DP by the RDP accountant) on A
  with the same architecture; ``dp_nll_cost`` is its held-out (B) -ELBO minus the regularised
  model's.
* Watermark: KN order-6 character model of chapter 7, 200 prompts of 20 characters from the val
  text, 200 watermarked and 200 plain characters after each; false alarms are the plain model's
  samples and the human continuations. Cost: bits per character of the watermarked distribution
  on 3,000 val characters minus the plain model's.

Run: ``python benchmarks/risks.py --workers 8 [--steps 16000] [--width 3]``. The parts run in
separate processes; CPU seconds are printed per part. The watermark's null is also measured on
every 20th overlapping 200-character window of the val text (``watermark_windows`` of them), its
tail beside the normal's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np
import torch

from coursekit import results, seed_everything
from coursekit.copies import nn_distance_ratio
from coursekit.data import digits
from coursekit.risks.membership import loss_threshold_auroc, tpr_at_fpr
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


def _vae(hidden: int):
    from coursekit.models import VAE, VAEConfig

    return VAE(VAEConfig(latent_dim=16, hidden=hidden))


def _attack(name: str, model, members, others, t0) -> dict[str, float]:
    lm, lo = _neg_elbo(model, members), _neg_elbo(model, others)
    out = {"auroc": loss_threshold_auroc(lm, lo), "tpr1": tpr_at_fpr(lm, lo, 0.01),
           "tpr5": tpr_at_fpr(lm, lo, 0.05), "nll_members": float(lm.mean()),
           "nll_others": float(lo.mean()), "cpu_s": time.process_time() - t0}
    print(f"{name:38s} -ELBO members {lm.mean():6.1f}, non-members {lo.mean():6.1f}; AUROC "
          f"{out['auroc']:.3f}, TPR@1% {out['tpr1']:.3f}, TPR@5% {out['tpr5']:.3f}  "
          f"[{out['cpu_s']:.0f} CPU-s]", flush=True)
    return out


def _halves():
    full = as_batch_data(digits("train"))
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    members = {k: v[order[:500]] for k, v in full.items()}   # a random half of train
    others = {k: v[order[500:]] for k, v in full.items()}    # the other half: never trained on
    return members, others


VARIANTS = {  # one change at a time: more data (the test digits), early stopping on val
    "members, no early stopping": (False, False),
    "members, early stopping on val": (False, True),
    "members + test, no early stopping": (True, False),
    "members + test, early stopping on val": (True, True),
}


def mia_variant(name: str, epochs: int, hidden: int) -> dict:
    """The loss attack on one non-private VAE of ``VARIANTS``."""
    members, others = _halves()
    val, test = as_batch_data(digits("val")), as_batch_data(digits("test"))
    more, stop_early = VARIANTS[name]
    data = {k: torch.cat([members[k], test[k]]) for k in members} if more else members
    seed_everything(0)
    t0 = time.process_time()
    model = _vae(hidden)
    callbacks = [EarlyStopping("val_neg_elbo", patience=10)] if stop_early else []
    fit(model, data, TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, seed=0, device="cpu"),
        val_data=val, callbacks=callbacks)
    if stop_early:
        callbacks[0].restore(model)
    out = _attack(name, model, members, others, t0)
    if stop_early:
        out["best_epoch"] = callbacks[0].best_epoch
    if name == "members, no early stopping":
        lo = _neg_elbo(model, others)
        out["halves_auroc"] = loss_threshold_auroc(lo[:250], lo[250:])
    return out


def dp_variant(hidden: int, steps: int, eps: float) -> dict:
    """DP-SGD on the members alone, with the same architecture."""
    from coursekit.risks.privacy import DPConfig, dp_sgd, noise_for_epsilon

    members, others = _halves()
    q, delta = 0.1, 1e-5                       # batches of about 50; delta well below 1 / 500
    sigma = noise_for_epsilon(eps, q, steps, delta)
    seed_everything(0)
    t0 = time.process_time()
    model = _vae(hidden)

    def objective(m, batch):
        return m.negative_elbo(batch, check_range=False)["neg_elbo"]

    info = dp_sgd(model, objective, members, DPConfig(clip=1.0, noise_multiplier=sigma,
                                                       sample_rate=q, steps=steps, lr=1e-3,
                                                       delta=delta))
    out = _attack(f"DP-SGD, eps = {info['epsilon']:.2f}", model, members, others, t0)
    out.update(sigma=sigma, epsilon=info["epsilon"], order=info["order"], delta=delta, q=q,
               steps=steps, clipped=info["clipped"])
    print(f"DP-SGD: sigma {sigma:.3f}, q {q}, {steps} steps, delta {delta:g}: eps "
          f"{info['epsilon']:.2f} (RDP order {info['order']}); clipped share "
          f"{info['clipped']:.2f}", flush=True)
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
    # the null where it matters: every overlapping window of human val text
    windows = [val[s:s + width + length] for s in range(0, len(val) - width - length, 20)]
    z_null = np.array([z_score(w, wm.green) for w in windows])
    fpr_null = float((z_null >= thr).mean())
    tails = {str(c): float((z_null >= c).mean()) for c in (1.0, 2.0, 3.0)}
    print(f"  null on {len(windows)} overlapping val windows: z mean {z_null.mean():.3f}, std "
          f"{z_null.std():.3f}; P(z >= 1, 2, 3) = {tails['1.0']:.4f}, {tails['2.0']:.4f}, "
          f"{tails['3.0']:.4f} (normal: 0.1587, 0.0228, 0.0013); z >= {thr}: {fpr_null:.5f}")
    print(f"watermark h={width}: TPR {tpr:.3f} ({int(varied.sum())} samples with >= 50 scored "
          f"pairs: {float((z_wm[varied] >= thr).mean()):.3f}); false alarms: model samples "
          f"{float((z_plain >= thr).mean()):.3f}, human text {float((z_human >= thr).mean()):.3f}")
    print(f"  z: watermarked {z_wm.mean():.2f}; plain {z_plain.mean():.2f} +- "
          f"{z_plain.std():.2f}; human {z_human.mean():.2f} +- {z_human.std():.2f}; "
          f"bits/char {lm.bits_per_char(text):.3f} -> {lm.bits_per_char(text) + cost:.3f}  "
          f"[{time.process_time() - t0:.0f} CPU-s]", flush=True)
    return {"watermark_tpr": tpr, "watermark_fpr": fpr, "watermark_bpc_cost": float(cost),
            "watermark_windows": len(windows), "watermark_null_fpr": fpr_null,
            "watermark_null_mean": float(z_null.mean()), "watermark_null_std": float(z_null.std()),
            "watermark_null_tail2": tails["2.0"], "watermark_null_tail3": tails["3.0"]}


def _run(job):
    fn, args = job
    return fn(*args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16000, help="diffusion optimisation steps")
    parser.add_argument("--width", type=int, default=3, help="watermark context width h")
    parser.add_argument("--sizes", default="50,1000", help="training-set sizes for near-copies")
    parser.add_argument("--epochs", type=int, default=300, help="non-private VAE epochs (max)")
    parser.add_argument("--hidden", type=int, default=256, help="the VAEs' hidden width")
    parser.add_argument("--dp-steps", type=int, default=1500, help="DP-SGD steps")
    parser.add_argument("--dp-eps", type=float, default=8.0, help="DP-SGD's epsilon")
    parser.add_argument("--workers", type=int, default=1, help="processes (one thread each)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [int(n) for n in args.sizes.split(",")]
    jobs = [(watermark, (args.width,)), (dp_variant, (args.hidden, args.dp_steps, args.dp_eps))]
    jobs += [(mia_variant, (name, args.epochs, args.hidden)) for name in VARIANTS]
    jobs += [(memorisation, (args.steps, 200, [n])) for n in sizes]
    if args.workers > 1:  # one process per part: a shared machine gives each its share
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            done = pool.map(_run, jobs, chunksize=1)
    else:
        done = [_run(job) for job in jobs]
    wm, dp, rows = done[0], done[1], dict(zip(VARIANTS, done[2:2 + len(VARIANTS)]))
    figures: dict[str, float] = dict(wm)
    for out in done[2 + len(VARIANTS):]:
        figures.update(out)
    reg = rows["members, early stopping on val"]
    figures.update(mia_auroc_reg=reg["auroc"], mia_tpr1_reg=reg["tpr1"], mia_tpr5_reg=reg["tpr5"],
                   mia_auroc_dp=dp["auroc"], mia_tpr1_dp=dp["tpr1"], dp_epsilon=dp["epsilon"],
                   dp_nll_cost=dp["nll_others"] - reg["nll_others"],
                   mia_auroc_overfit=rows["members, no early stopping"]["auroc"])
    print(f"baseline, two halves of the non-members: AUROC "
          f"{rows['members, no early stopping']['halves_auroc']:.3f}; DP-SGD's held-out -ELBO "
          f"cost {figures['dp_nll_cost']:.1f} nats at eps {dp['epsilon']:.2f}")
    keys = ["mia_auroc_reg", "mia_tpr1_reg", "mia_auroc_dp", "dp_nll_cost", "watermark_tpr",
            "watermark_fpr", "watermark_windows", "copies_50", "copies_1000"]
    results.write("risks", {k: round(float(v), 5) for k, v in figures.items()}, seeds=[0],
                  budget=f"VAEs (hidden {args.hidden}) up to {args.epochs} epochs; DP-SGD "
                         f"{args.dp_steps} steps at eps {args.dp_eps}; diffusion {args.steps} "
                         f"steps per training-set size",
                  extra={"membership": rows, "dp": dp})
    print(" ".join(f"{k}={figures[k]:.4g}" for k in keys))


if __name__ == "__main__":
    main()
