"""Four small helpers the rest of ``coursekit`` shares: an atomic file write, "evaluate, then
restore the mode", tensor-or-array to NumPy, and the offline switch (every chapter).

Each existed in several modules before; one copy here keeps their behaviour the same everywhere.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

__all__ = ["atomic_write", "eval_mode", "to_numpy", "offline_requested"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object] | bytes | str) -> Path:
    """Write a file so that a reader sees the old content or the new, never half of it.

    The content goes to a temporary file beside ``path``, is flushed to disk, and the temporary
    file is renamed over ``path`` (atomic on POSIX and Windows); a failure mid-write removes the
    temporary file and leaves any previous ``path`` untouched.

    Args:
        path: the file to (re)write; its folder is created.
        write: the bytes or text to write, or a function that writes into a binary file object
            (for example ``lambda f: torch.save(payload, f)``).

    Returns:
        ``path`` as a ``Path``.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> atomic_write(folder / "a.txt", "hello").read_text()
        'hello'
        >>> sorted(p.name for p in folder.iterdir())  # no temporary file is left behind
        ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, str):
                f.write(write.encode())
            elif isinstance(write, (bytes, bytearray)):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def eval_mode(*modules) -> Iterator[None]:
    """Switch ``modules`` to eval mode for the block, then restore each one's previous mode.

    Example:
        >>> from torch import nn
        >>> net = nn.Dropout().train()
        >>> with eval_mode(net):
        ...     net.training
        False
        >>> net.training
        True
    """
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def to_numpy(x, dtype=None) -> np.ndarray:
    """A tensor (detached, moved to the CPU) or anything array-like, as a NumPy array.

    Example:
        >>> import torch
        >>> to_numpy(torch.ones(2, requires_grad=True)), to_numpy([1, 2], dtype=np.float64)
        (array([1., 1.], dtype=float32), array([1., 2.]))
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def offline_requested() -> bool:
    """True when ``COURSEKIT_OFFLINE`` is set to anything but ``""``, ``0``, ``false`` or ``no``:
    then nothing in ``coursekit`` tries the network (the tests and the book build set it)."""
    return os.environ.get("COURSEKIT_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")
