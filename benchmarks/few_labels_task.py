"""Exercise 6's training task measured (Chapter 6; Task 7 of ``solutions/06_few_labels.md``): the
reference solution against the same MLP trained on the 100 labels alone, and label spreading.

The reference ``train_few_labels`` is the solution's own cell (read from the solution file, not
copied), trained on the task's cases exactly as the grader calls it: 1,000 training digits of
which 100 carry a label (10 per class, draw 0), seed 0 for the public case (judged on ``val``)
and seed 1 for the hidden one (judged on ``test``). Beside it, on the same seeds, the same MLP,
optimiser, augmentation and steps with the cross-entropy on the 100 labelled images alone; and
label spreading on a 7-nearest-neighbour graph of the 1,000 images (the chapter's baseline) on
the same draw. Every accuracy is the grader's judge (``held_out_accuracy``) on the task's
held-out split, against the task's limits.

The solution notebook loads ``benchmarks/results/few_labels_task.json`` and asserts its three
claims (the reference above each limit, labels alone at least 2 points below, the reference above
label spreading), so that nbval does not train the two MLPs again (about 40 CPU-s a run).

    OMP_NUM_THREADS=1 python benchmarks/few_labels_task.py [--no-write]

Last line: ``reference_val=… reference_test=… labels_only_val=… labels_only_test=…
spreading_val=… spreading_test=… limit_val=… limit_test=…``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from coursekit import results as results_file
from coursekit.apps.augment import spread_labels
from coursekit.fewlabels import augment_digits

EXERCISE, TASK = "06_few_labels", "fl_train_few_labels"
SPLITS = ("val", "test")  # the held-out split of the task's first and second case


def reference_function():
    """``train_few_labels`` as the solution file defines it (the cell that defines it, run)."""
    from coursekit.grader.tasks import load_exercise

    exercise = load_exercise(EXERCISE)
    source = next(c for c in exercise.cells if "def train_few_labels(" in c)
    namespace = {"torch": torch, "F": F, "np": np}
    exec(compile(source, f"{exercise.path}:train_few_labels", "exec"), namespace)  # noqa: S102
    task = next(t for t in exercise.tasks if t.id == TASK)
    return namespace["train_few_labels"], task


def labels_only(images: torch.Tensor, labels: torch.Tensor, seed: int,
                steps: int = 3000) -> torch.nn.Sequential:
    """The reference's MLP, optimiser, augmentation and steps, with the cross-entropy on the
    labelled images alone (``labels >= 0``) and no term on the others."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    known = labels >= 0
    x, y = images[known], labels[known]  # (100, 64), (100,)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        view = augment_digits(x.view(-1, 1, 8, 8), generator=generator).flatten(1)  # (100, 64)
        loss = F.cross_entropy(model(view), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model


def spreading(images: np.ndarray, partial: np.ndarray, held_images: np.ndarray,
              held_labels: np.ndarray) -> float:
    """Label spreading (7-nearest-neighbour graph of the training images, the chapter's
    baseline) on the held-out images: its accuracy."""
    index = np.flatnonzero(partial >= 0)
    labels = torch.as_tensor(partial).clamp(min=0)  # only the rows of index are read
    predicted = spread_labels(images, labels, index, neighbours=7, queries=held_images)
    return float((predicted.numpy() == held_labels).mean())


def main(argv: list[str] | None = None) -> None:
    from coursekit.grader.drivers import network
    from coursekit.grader.judges import forward, held_out_accuracy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train_few_labels, task = reference_function()
    cases = dict(zip(SPLITS, task.cases))
    seeds = {split: int(case.args[2]) for split, case in cases.items()}
    start = time.process_time()
    figures, extra = {}, {"seeds": seeds, "messages": {}}
    for split, case in cases.items():
        images, partial, seed = case.args
        held = case.held_out
        x, y = torch.as_tensor(images), torch.as_tensor(partial)
        models = {"reference": train_few_labels(x, y, seed),
                  "labels_only": labels_only(x, y, seed)}
        for name, model in models.items():
            artefact = network(model)
            verdict = held_out_accuracy(artefact, **held)
            figures[f"{name}_{split}"] = float(
                (forward(artefact, held["images"]).argmax(1) == held["labels"]).mean())
            extra["messages"][f"{name}_{split}"] = verdict.message
            print(f"{split:4s} seed {seed} {name:12s} {verdict.message}")
        figures[f"spreading_{split}"] = spreading(images, partial, held["images"], held["labels"])
        figures[f"limit_{split}"] = float(held["limit"])
        print(f"{split:4s}        label spreading {figures[f'spreading_{split}']:.4f}")
    cpu = time.process_time() - start
    extra["cpu_seconds"] = cpu
    print(f"CPU {cpu:.0f} s for {2 * len(cases)} trainings")
    if not args.no_write:
        results_file.write(
            "few_labels_task", figures, seeds=sorted(set(seeds.values())),
            budget=(f"the task's cases: seed {seeds['val']} judged on val, seed "
                    f"{seeds['test']} on test; 3000 steps of each MLP per seed; one CPU thread"),
            extra=extra)
    print(" ".join(f"{k}={v:.4f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
