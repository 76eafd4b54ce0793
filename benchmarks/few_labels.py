"""Learning from few labels on real offline data, every method beside the scikit-learn baseline
a sceptic would try first, measured in the same run (Chapter 6).

Digits: scikit-learn's 1,797 images split by index 1000/350/447 (train/val/test); ``--draws``
draws of 1 and 10 labelled training images per class (the same draws for every method); the
other training images are unlabelled; accuracy on the 447 test images, mean +- standard
deviation over draws. The M2 semi-supervised VAE (Kingma et al. 2014; categorical likelihood over
the 17 grey levels, as the course's VAE) uses a small conv classifier q(y|x) and a consistency
term between an image and a random view of it; its alpha is chosen on the validation split
(first draw of 10 labels per class), never on the test split.

Baselines (scikit-learn): logistic regression and an RBF SVC on the labelled images; PCA (20
components fitted on all 1,000 training images) + logistic regression; LabelSpreading (kNN
graph over labelled + unlabelled images, k in 7/10/15 chosen on the validation split for each
label count); the SVC on all 1,000 labels as a reference.

Self-supervised probes: a SimCLR-style encoder and the course's VAE latent means (M1), both
trained on the 1,000 training images without labels, read by the same logistic-regression probe
as the raw pixels, on the same draws.

Zero-shot: all 120 choices of 3 unseen digits; seven-segment attributes; DAP against the
generative approach (an attribute-conditioned VAE synthesises the unseen digits, then a logistic
regression is trained on real seen + synthetic unseen images); generalised zero-shot scores
(per-class mean accuracy on seen and unseen test images, harmonic mean H).

MNIST: the 5,000 offline images (4,000 train, 1,000 test), 100 labels; M2's test error beside
the paper's 11.97 % (which used 50,000 unlabelled images, not 3,900); LabelSpreading there
uses k=10 (no validation split is set aside).

    OMP_NUM_THREADS=1 python benchmarks/few_labels.py [--draws 10] [--jobs 2] [--quick]

Last line: ``m2_acc_10=… spreading_acc_10=… m2_acc_1=… probe_gain_1=… zsl_gen_h=… zsl_dap_h=…``.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from coursekit.data import digits, mnist
from coursekit.fewlabels import (ContrastiveConfig, ContrastiveEncoder, draw_labelled,
                                 linear_probe, semi_supervised_data)
from coursekit.models import VAE, M2, M2Config, VAEConfig
from coursekit.seed import seed_everything
from coursekit.train import TrainConfig, fit
from coursekit.zeroshot import (SEVEN_SEGMENT, AttributeVAE, AttributeVAEConfig, dap_predict,
                                gzsl_scores, unseen_splits)

M2_DIGITS = M2Config(classifier="conv", consistency=3.0, dropout=0.3, alpha=10.0)
ALPHAS = (1.0, 10.0, 30.0)  # the sweep on the validation split
SPREADING_NEIGHBOURS = (7, 10, 15)  # kNN graphs for LabelSpreading, chosen on validation


def _np(t):
    return t.numpy() if torch.is_tensor(t) else np.asarray(t)


# ---------------------------------------------------------------------- digits: baselines

def _spreading(x, y, idx, xt, yt, neighbours: int = 7) -> float:
    """LabelSpreading on a kNN graph of all training images, the labelled ones clamped softly.
    An image whose component of the graph holds no label gets no class (scikit-learn divides 0
    by 0 and warns): it counts as wrong."""
    from sklearn.semi_supervised import LabelSpreading

    partial = np.full(len(y), -1)
    partial[idx] = y[idx]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = LabelSpreading(kernel="knn", n_neighbors=neighbours,
                               max_iter=100).fit(x, partial)
        return float((model.predict(xt) == yt).mean())


def baselines(per_class: int, draw: int) -> dict[str, float]:
    """scikit-learn baselines on one label draw; accuracies on the digits test split."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    tr, te = digits("train"), digits("test")
    x, y = _np(tr.images.flatten(1)), _np(tr.labels)
    xt, yt = _np(te.images.flatten(1)), _np(te.labels)
    idx = draw_labelled(y, per_class, draw)
    out = {}
    out["logreg"] = float((LogisticRegression(max_iter=2000).fit(x[idx], y[idx]).predict(xt)
                           == yt).mean())
    out["svc"] = float((SVC().fit(x[idx], y[idx]).predict(xt) == yt).mean())
    pca = PCA(20, random_state=0).fit(x)
    out["pca_logreg"] = float((LogisticRegression(max_iter=2000).fit(
        pca.transform(x[idx]), y[idx]).predict(pca.transform(xt)) == yt).mean())
    va = digits("val")
    xv, yv = _np(va.images.flatten(1)), _np(va.labels)
    for k in SPREADING_NEIGHBOURS:  # the graph's k is chosen later on the validation split
        out[f"spreading_val_{k}"] = _spreading(x, y, idx, xv, yv, k)
        out[f"spreading_{k}"] = _spreading(x, y, idx, xt, yt, k)
    return out


def m2_digits(per_class: int, draw: int, config: M2Config, epochs: int) -> dict[str, float]:
    """Train M2 on one label draw; accuracy of q(y|x) on the validation and test splits."""
    torch.set_num_threads(1)
    tr, va, te = digits("train"), digits("val"), digits("test")
    idx = draw_labelled(tr.labels, per_class, draw)
    data = semi_supervised_data(tr.images, tr.labels, idx, 10, tr.levels)
    seed_everything(draw)
    model = M2(config)
    fit(model, data, TrainConfig(epochs=epochs, batch_size=100, seed=draw, device="cpu"))
    return {"val": float((model.predict(va.images) == va.labels).float().mean()),
            "test": float((model.predict(te.images) == te.labels).float().mean())}


# ----------------------------------------------------------------------- digits: probes

def probes(draws: int, simclr_epochs: int, vae_epochs: int) -> dict[str, list[float]]:
    """Probe accuracies at 1 and 10 labels per class: raw pixels, SimCLR, M1 (VAE means)."""
    torch.set_num_threads(1)
    tr, te = digits("train"), digits("test")
    seed_everything(0)
    simclr = ContrastiveEncoder(ContrastiveConfig())
    fit(simclr, tr.images, TrainConfig(epochs=simclr_epochs, batch_size=256, seed=0,
                                       device="cpu"))
    seed_everything(0)
    vae = VAE(VAEConfig(latent_dim=16, hidden=256))
    fit(vae, tr, TrainConfig(epochs=vae_epochs, batch_size=64, seed=0, device="cpu"))
    with torch.no_grad():
        m1_tr, m1_te = vae.eval().encode(tr.images)[0], vae.encode(te.images)[0]
    features = {"raw": (tr.images.flatten(1), te.images.flatten(1)),
                "simclr": (simclr.represent(tr.images), simclr.represent(te.images)),
                "m1": (m1_tr, m1_te)}
    out: dict[str, list[float]] = {}
    for per_class in (1, 10):
        for draw in range(draws):
            idx = draw_labelled(tr.labels, per_class, draw)
            for name, (ftr, fte) in features.items():
                acc = linear_probe(ftr[idx], tr.labels[idx], fte, te.labels,
                                   unlabelled_features=ftr)
                out.setdefault(f"{name}_{per_class}", []).append(acc)
    return out


# ---------------------------------------------------------------------------- zero-shot

def zero_shot(unseen: tuple[int, ...], epochs: int, per_class: int = 100) -> dict[str, float]:
    """DAP and the generative approach on one split; generalised zero-shot scores of each."""
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(1)
    tr, te = digits("train"), digits("test")
    x, y = _np(tr.images.flatten(1)), _np(tr.labels)
    xt, yt = _np(te.images.flatten(1)), _np(te.labels)
    seen = ~np.isin(y, unseen)
    dap = gzsl_scores(dap_predict(x[seen], y[seen], xt, unseen), yt, unseen)
    codes = torch.tensor(SEVEN_SEGMENT, dtype=torch.float32)
    seed_everything(0)
    vae = AttributeVAE(AttributeVAEConfig())
    fit(vae, {"x": tr.images[seen], "levels": tr.levels[seen], "a": codes[y[seen]]},
        TrainConfig(epochs=epochs, batch_size=64, seed=0, device="cpu"))
    synthetic = _np(vae.sample(codes[list(unseen)], per_class).flatten(1))
    clf = LogisticRegression(max_iter=2000).fit(
        np.concatenate([x[seen], synthetic]),
        np.concatenate([y[seen], np.repeat(unseen, per_class)]))
    gen = gzsl_scores(clf.predict(xt), yt, unseen)
    return {**{f"dap_{k}": v for k, v in dap.items()}, **{f"gen_{k}": v for k, v in gen.items()}}


# --------------------------------------------------------------------------------- MNIST

def mnist_100(epochs: int) -> dict[str, float]:
    """M2 and baselines on the offline MNIST (4,000 train, 1,000 test), 100 labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    torch.set_num_threads(1)
    tr, te = mnist("train", source="offline"), mnist("test", source="offline")
    idx = draw_labelled(tr.labels, 10, 0)
    x, y = _np(tr.images.flatten(1)), _np(tr.labels)
    xt, yt = _np(te.images.flatten(1)), _np(te.labels)
    out = {"logreg": float((LogisticRegression(max_iter=2000).fit(x[idx], y[idx]).predict(xt)
                            == yt).mean()),
           "svc": float((SVC().fit(x[idx], y[idx]).predict(xt) == yt).mean())}
    out["spreading"] = _spreading(x, y, idx, xt, yt, 10)
    data = semi_supervised_data(tr.images, tr.labels, idx, 10)
    seed_everything(0)
    model = M2(M2Config(data_shape=(1, 28, 28), likelihood="bernoulli", latent_dim=32,
                        hidden=256, classifier="conv", channels=16, consistency=3.0,
                        dropout=0.3, alpha=10.0))
    start = time.process_time()
    fit(model, data, TrainConfig(epochs=epochs, batch_size=100, seed=0, device="cpu"))
    out["m2_cpu_seconds"] = time.process_time() - start
    out["m2"] = float((model.predict(te.images) == te.labels).float().mean())
    return out


# ---------------------------------------------------------------------------------- main

def _mean_sd(values) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values):.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10, help="label draws per setting")
    parser.add_argument("--epochs", type=int, default=40, help="M2 epochs on the digits")
    parser.add_argument("--zsl-splits", type=int, default=120, help="unseen triples (<= 120)")
    parser.add_argument("--zsl-epochs", type=int, default=15)
    parser.add_argument("--mnist-epochs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=6, help="worker processes")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny settings")
    args = parser.parse_args(argv)
    if args.quick:
        args.draws, args.epochs, args.zsl_splits, args.zsl_epochs, args.mnist_epochs = 2, 2, 2, 2, 1
    start = time.perf_counter()
    splits = unseen_splits()[:args.zsl_splits] if args.zsl_splits < 120 else unseen_splits()
    with ProcessPoolExecutor(args.jobs) as pool:
        mnist_job = pool.submit(mnist_100, args.mnist_epochs)
        probe_job = pool.submit(probes, args.draws, 2 if args.quick else 100,
                                2 if args.quick else 60)
        sweep = {a: pool.submit(m2_digits, 10, 0, replace(M2_DIGITS, alpha=a), args.epochs)
                 for a in ALPHAS}
        base = {(p, d): pool.submit(baselines, p, d) for p in (1, 10) for d in range(args.draws)}
        zsl = [pool.submit(zero_shot, s, args.zsl_epochs) for s in splits]
        val = {a: job.result()["val"] for a, job in sweep.items()}
        alpha = max(ALPHAS, key=lambda a: (val[a], -a))  # ties: the smaller alpha
        config = replace(M2_DIGITS, alpha=alpha)
        m2 = {(p, d): (sweep[alpha] if (p, d) == (10, 0) else
                       pool.submit(m2_digits, p, d, config, args.epochs))
              for p in (1, 10) for d in range(args.draws)}
        m2 = {key: job.result() for key, job in m2.items()}
        base = {key: job.result() for key, job in base.items()}
        zsl = [job.result() for job in zsl]
        probe = probe_job.result()
        mn = mnist_job.result()

    print(f"digits (train 1000 / val 350 / test 447), {args.draws} label draws, test accuracy "
          f"mean +- sd over draws")
    print("M2 alpha sweep on the validation split (10 labels/class, draw 0): "
          + ", ".join(f"alpha={a:g}: val {v:.3f}" for a, v in val.items())
          + f" -> alpha={alpha:g}")
    results = {}
    for p in (1, 10):
        val_k = {k: np.mean([base[p, d][f"spreading_val_{k}"] for d in range(args.draws)])
                 for k in SPREADING_NEIGHBOURS}
        best_k = max(SPREADING_NEIGHBOURS, key=lambda k: (val_k[k], -k))
        for d in range(args.draws):
            base[p, d]["spreading"] = base[p, d][f"spreading_{best_k}"]
        print(f"-- {p} label(s) per class (LabelSpreading k={best_k}, chosen on validation: "
              + ", ".join(f"k={k} {v:.3f}" for k, v in val_k.items()) + ")")
        rows = {"M2 (semi-supervised VAE)": [m2[p, d]["test"] for d in range(args.draws)]}
        for name, label in (("spreading", "LabelSpreading (kNN, + unlabelled)"),
                            ("logreg", "logistic regression (labelled only)"),
                            ("svc", "SVC (labelled only)"),
                            ("pca_logreg", "PCA(20) + logistic regression")):
            rows[label] = [base[p, d][name] for d in range(args.draws)]
        for label, values in rows.items():
            print(f"  {label:40s} {_mean_sd(values)}")
        results[p] = rows
    print("-- linear probes (logistic regression on the same draws)")
    for p in (1, 10):
        for name in ("raw", "simclr", "m1"):
            print(f"  {p:2d}/class {name:8s} {_mean_sd(probe[f'{name}_{p}'])}")
    gain = 100 * (np.array(probe["simclr_1"]) - np.array(probe["raw_1"]))
    print(f"  SimCLR probe gain over raw pixels at 1/class: {gain.mean():.1f} +- "
          f"{gain.std():.1f} points")
    print(f"-- zero-shot, {len(splits)} unseen triples, generalised (predict among all 10)")
    for kind, label in (("dap", "DAP"), ("gen", "generative (attribute VAE)")):
        print(f"  {label:28s} seen {_mean_sd([z[f'{kind}_seen'] for z in zsl])}  unseen "
              f"{_mean_sd([z[f'{kind}_unseen'] for z in zsl])}  H "
              f"{_mean_sd([z[f'{kind}_h'] for z in zsl])}")
    wins = np.mean([z["gen_h"] > z["dap_h"] for z in zsl])
    print(f"  the generative H is higher on {100 * wins:.0f} % of the triples")
    print("-- MNIST offline (4,000 train incl. 100 labelled, 1,000 test), one draw")
    print(f"  M2 test error {100 * (1 - mn['m2']):.2f} %  (paper, 50,000 unlabelled: 11.97 %; "
          f"{args.mnist_epochs} epochs, {mn['m2_cpu_seconds']:.0f} CPU s)")
    for name in ("spreading", "logreg", "svc"):
        print(f"  {name:10s} test error {100 * (1 - mn[name]):.2f} %")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"wall {time.perf_counter() - start:.0f} s, CPU of the {args.jobs} workers "
          f"{children.ru_utime + children.ru_stime:.0f} s")
    print(f"m2_acc_10={np.mean(results[10]['M2 (semi-supervised VAE)']):.4f} "
          f"spreading_acc_10={np.mean(results[10]['LabelSpreading (kNN, + unlabelled)']):.4f} "
          f"m2_acc_1={np.mean(results[1]['M2 (semi-supervised VAE)']):.4f} "
          f"probe_gain_1={gain.mean():.2f} "
          f"zsl_gen_h={np.mean([z['gen_h'] for z in zsl]):.4f} "
          f"zsl_dap_h={np.mean([z['dap_h'] for z in zsl]):.4f}")


if __name__ == "__main__":
    main()
