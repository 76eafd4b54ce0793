"""The reference solution's answers, kept per solutions hash so that grading one more
submission does not run the reference again (exercises part).

``grade`` keeps them in ``OUT/.references/<exercise>.json``. The key is a SHA-256 over the
solution notebook, the hidden checks file (if any) and the package's own code (``coursekit``'s
Python files, which the solutions import): any change to one of them runs the reference again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["digest", "load", "store"]

PACKAGE = Path(__file__).resolve().parents[1]


def digest(solution: Path, checks: Path | None = None, seed: int | None = None) -> str:
    """The key of a reference: what its answers depend on (and the variant's seed)."""
    h = hashlib.sha256(f"variant {seed}".encode())
    files = [Path(solution)] + ([Path(checks)] if checks and Path(checks).exists() else [])
    files += sorted(PACKAGE.rglob("*.py"))
    for path in files:
        h.update(str(path.relative_to(PACKAGE) if PACKAGE in path.parents else path.name)
                 .encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def load(folder: Path | None, name: str, key: str) -> dict | None:
    """``{(task index, case index): (encoded answer, call weight)}`` kept under ``key``, else
    ``None``."""
    if folder is None:
        return None
    try:
        data = json.loads((Path(folder) / f"{name}.json").read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        return {(int(i), int(k)): (value, weight) for i, k, value, weight in data["answers"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(folder: Path | None, name: str, key: str, answers: dict) -> None:
    """Keep ``answers``, ``{(task, case): (encoded answer, call weight)}``, under ``key``
    (atomically). The weight is the time a student's call gets, from the reference's."""
    if folder is None:
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    part = path.with_suffix(".json.part")
    part.write_text(json.dumps({"key": key, "answers": [[i, k, v, w] for (i, k), (v, w) in
                                                        sorted(answers.items())]},
                               allow_nan=False), encoding="utf-8")
    os.replace(part, path)
