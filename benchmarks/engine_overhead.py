"""What the training engine costs: ``coursekit.train.fit`` against a plain hand-written PyTorch
loop, training the same VAE on the same digits in the same process (Chapter 4).

Runs alternate (plain, engine, plain, engine, ...) so that a change in machine load hits both
alike; each run starts from the same weights and seed. Prints the median throughput of each and,
as its last line, ``engine_over_plain=<ratio>`` (target: at least 0.95).

    OMP_NUM_THREADS=1 python benchmarks/engine_overhead.py [--repeats 5] [--epochs 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from coursekit.data import digits
from coursekit.models import VAE, VAEConfig
from coursekit.seed import seed_everything
from coursekit.train import TrainConfig, as_batch_data, fit


def plain_loop(model: VAE, data: dict, epochs: int, batch_size: int, seed: int) -> float:
    """The loop a reader would write by hand; returns images per second."""
    seed_everything(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    shuffle = torch.Generator().manual_seed(seed)
    n = len(data["x"])
    seen = 0
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=shuffle)
        for i in range(0, n, batch_size):
            index = order[i:i + batch_size]
            if len(index) < 2:
                continue
            batch = {k: v[index] for k, v in data.items()}
            loss = model.negative_elbo(batch)["loss"].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(index)
    return seen / (time.perf_counter() - start)


def engine(model: VAE, data: dict, epochs: int, batch_size: int, seed: int) -> float:
    start = time.perf_counter()
    history = fit(model, data, TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed,
                                           device="cpu")).history
    seen = sum(history.images_per_second[i] * history.epoch_seconds[i]
               for i in range(history.epochs))
    return seen / (time.perf_counter() - start)  # includes the engine's setup, to be fair


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each loop (5)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (5)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    data = as_batch_data(digits("train"))
    seed_everything(0)
    initial = VAE(VAEConfig())  # the intro_dgm-sized MLP VAE, 17-level categorical likelihood
    plain_rates, engine_rates = [], []
    for repeat in range(args.repeats + 1):  # the first pair warms up and is discarded
        p = plain_loop(copy.deepcopy(initial), data, args.epochs, args.batch_size, seed=0)
        e = engine(copy.deepcopy(initial), data, args.epochs, args.batch_size, seed=0)
        if repeat:
            plain_rates.append(p)
            engine_rates.append(e)
            print(f"run {repeat}: plain {p:8.0f} img/s   engine {e:8.0f} img/s")
    plain, eng = statistics.median(plain_rates), statistics.median(engine_rates)
    print(f"median: plain {plain:.0f} img/s, engine {eng:.0f} img/s "
          f"({torch.get_num_threads()} threads, {args.epochs} epochs x {len(data['x'])} digits)")
    print(f"engine_over_plain={eng / plain:.3f}")


if __name__ == "__main__":
    main()
