"""Benchmark results: the one place a benchmark writes its figures and a chapter reads them.

Every figure the book quotes from a benchmark lives in ``benchmarks/results/NAME.json``. A
benchmark calls :func:`write` at its end (the ``key=value`` figures of its last line, plus the
machine, the date, the seeds and the budget); a chapter calls :func:`load` and :func:`check`,
which asserts that each figure its prose quotes is the committed one, to the rounding quoted.

The prose marks what it quotes with a MyST comment line (invisible in the book) right after the
paragraph, for example::

    % bench few_labels m2_acc_1=0.81 spreading_acc_1=0.80

``tests/test_quoted_figures.py`` reads those lines in every chapter and fails when a quoted figure
is missing from its results file or differs from it (see CONTRIBUTING.md).
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
_NAME = re.compile(r"^[a-z0-9_]+$")
_MARK = re.compile(r"^%\s*bench\s+([a-z0-9_]+)\s+(.+?)\s*$")


def _path(name: str, root: Path | None) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"results name must be lower_snake_case, got {name!r}")
    return (root or RESULTS_DIR) / f"{name}.json"


def machine() -> dict[str, Any]:
    """Where a figure was measured: CPU model, cores, torch threads and version, OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "os": platform.system()}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:  # a benchmark that does not use torch
        pass
    return info


def write(
    name: str,
    figures: Mapping[str, float | int],
    *,
    seeds: list[int] | int,
    budget: str,
    extra: Mapping[str, Any] | None = None,
    root: Path | None = None,
) -> Path:
    """Write ``benchmarks/results/NAME.json`` atomically and return its path.

    Args:
        name: the benchmark's name (``few_labels`` for ``benchmarks/few_labels.py``).
        figures: the figures of the benchmark's last ``key=value`` line, numbers only.
        seeds: the seeds (draws) the figures were measured over.
        budget: the training budget in words (``"40 epochs, 10 draws"``).
        extra: anything else worth keeping (per-draw values, tables for a figure).
        root: another folder than ``benchmarks/results`` (tests).
    """
    bad = {k: v for k, v in figures.items() if not isinstance(v, (int, float)) or v != v}
    if bad:
        raise ValueError(f"figures must be finite numbers, got {bad}")
    record = {
        "name": name,
        "figures": dict(figures),
        "seeds": list(seeds) if isinstance(seeds, (list, tuple)) else [seeds],
        "budget": budget,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "extra": dict(extra or {}),
    }
    path = _path(name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load(name: str, root: Path | None = None) -> dict[str, Any]:
    """The committed record of benchmark ``name``; its figures are under ``"figures"``."""
    path = _path(name, root)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run benchmarks/{name}.py and commit its results file"
        )
    return json.loads(path.read_text())


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def matches(value: float, quoted: str) -> bool:
    """Does ``value`` round to the figure as quoted (``"0.81"``, ``"82.4"``, ``"17"``)?"""
    q = float(quoted)
    d = _decimals(quoted)
    # half a unit of the last quoted digit, with a hair for the float round trip
    return abs(value - q) <= 0.5 * 10.0**-d + 1e-9


def check(record: Mapping[str, Any], **quoted: str) -> None:
    """Assert that each quoted figure (``key="0.81"``) is the record's figure at that rounding."""
    figures = record["figures"]
    for key, text in quoted.items():
        if key not in figures:
            raise AssertionError(f"{record['name']}.json has no figure {key!r}")
        if not matches(figures[key], text):
            raise AssertionError(
                f"the text quotes {key} = {text}, {record['name']}.json holds {figures[key]}"
            )


@dataclass(frozen=True)
class Quote:
    """One ``% bench NAME key=value ...`` line of a chapter's source."""

    source: Path
    line: int
    name: str
    figures: dict[str, str]


def quotes(markdown: Path) -> list[Quote]:
    """Every ``% bench`` line of a MyST Markdown file."""
    found = []
    for i, line in enumerate(markdown.read_text().splitlines(), 1):
        m = _MARK.match(line.strip())
        if m:
            pairs = dict(p.split("=", 1) for p in m.group(2).split())
            found.append(Quote(markdown, i, m.group(1), pairs))
    return found
