"""Running a notebook's code in a separate, limited process (the grader's sandbox).

:func:`run_notebook` starts ``worker.py`` in a fresh temporary directory that holds only the job
(the notebook's code cells and the calls to make), under these limits:

==================  ==========================================================================
wall clock          the whole process tree is killed ``timeout`` (+ 5 s grace) after the start
memory              ``RLIMIT_AS`` (address space; importing torch needs about 3.3 GB of it)
processes           ``RLIMIT_NPROC`` (per user: each parallel slot runs as its own user)
CPU, files          ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (a flood of output fails), ``RLIMIT_NOFILE``
==================  ==========================================================================

When the grader runs as root (as in CI) the worker also gets new mount, network and PID
namespaces (``unshare``): ``/tmp`` is replaced by an empty tmpfs holding only its directory; the
repository's other folders (``solutions/``, ``.git``, ``_build``, ``tests`` ...) and every folder
named in ``hide`` (the submissions, the hidden checks, the output) are covered by empty tmpfs
mounts; there is no network; and when the worker's first process ends, every process it left
behind dies with the namespace. It then drops to an unprivileged user (``slot_uid(slot)``, one
per slot and grader process, no groups, ``no_new_privs``, no capabilities) with ``setpriv``: a user per parallel slot rather
than one shared ``nobody``, because ``RLIMIT_NPROC`` counts all processes of a user, so a fork
bomb in one submission would otherwise starve the submission graded beside it.

Without root none of the namespaces are available: the worker runs as the grader's own user, with
the same rlimits, in its own session (killed as a group) and a private temporary directory. It
could then read any file that user can read (the solutions included), and a process it starts in
the background may outlive the run. Grade untrusted work as root, or in a container.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "RunResult", "run_notebook", "isolation"]

WORKER = Path(__file__).resolve().parent / "worker.py"
DRIVERS = Path(__file__).resolve().parent / "drivers.py"
ROOT = Path(__file__).resolve().parents[2]
BASE_UID = 1_000_000      # sandbox users start here (no passwd entry needed)
SLOTS_PER_GRADER = 64     # the most parallel slots one grader process uses


def slot_uid(slot: int) -> int:
    """The user a slot's worker runs as: unique per slot *and* per grader process (two graders
    running at once, as in the tests, must not share a user and so a process limit)."""
    if not 0 <= slot < SLOTS_PER_GRADER:
        raise ValueError(f"slot must be in [0, {SLOTS_PER_GRADER}), got {slot}")
    return BASE_UID + os.getpid() * SLOTS_PER_GRADER + slot  # pid <= 2**22: stays below 2**32
GRACE = 5.0               # seconds past the timeout before the whole tree is killed
MAX_LOG_BYTES = 4 * 2**20


@dataclass
class Limits:
    """The limits of one run."""

    timeout: float = 120.0        # wall-clock seconds for all cells and calls
    memory_mb: int = 6144         # RLIMIT_AS in MiB (torch alone maps about 3.3 GB)
    processes: int = 96           # RLIMIT_NPROC: processes and threads of the sandbox user
    file_mb: int = 16             # RLIMIT_FSIZE: the largest file the notebook may write
    open_files: int = 256         # RLIMIT_NOFILE
    cells_share: float = 0.6      # fraction of the timeout the notebook's cells may use


@dataclass
class RunResult:
    """What came back from one run, as plain data."""

    cells: list = field(default_factory=list)       # per cell: {"cell", "status", "message"}
    answers: dict = field(default_factory=dict)     # (task index, case) -> record dict
    problems: list = field(default_factory=list)    # things that went wrong, in words
    student_seconds: float = 0.0                    # time spent in cells and graded calls
    wall_seconds: float = 0.0                       # the whole run, start to cleanup
    timed_out: bool = False                         # killed at the wall-clock limit


@functools.lru_cache(maxsize=1)
def _namespaces_work() -> bool:
    """Whether this (root) process can make the worker's namespaces (not in every container)."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    try:
        done = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc",
                               "--", "/bin/sh", "-c", "mount --make-rprivate / && "
                               "mount -t tmpfs tmpfs /mnt"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def isolation() -> str:
    """One line saying how submissions are isolated on this machine."""
    if _namespaces_work():
        return ("namespaces (mount, network, PID), unprivileged user, rlimits, wall-clock limit")
    return ("NO NAMESPACES (not root, or not allowed here): rlimits, own session and temporary "
            "directory, wall-clock limit only; the submission could read files the grader's "
            "user can read")


def _hidden_dirs(extra) -> list[str]:
    """Folders to cover in the worker's mount namespace."""
    keep = {ROOT / "coursekit"}
    prefix = Path(sys.prefix).resolve()
    hide = []
    for entry in sorted(ROOT.iterdir()):
        if not entry.is_dir() or entry.is_symlink() or entry in keep:
            continue
        if Path("/tmp") in entry.resolve().parents:
            continue  # a clone under /tmp: the worker's fresh /tmp holds only what it needs
        if prefix == entry or entry in prefix.parents:
            continue  # the virtual environment the worker's Python runs from
        hide.append(entry)
    for path in extra:
        path = Path(path).resolve()
        if Path("/tmp") in path.parents or path == Path("/tmp"):
            continue  # the worker gets an empty /tmp of its own
        if path.is_dir() and path != Path("/") and path not in hide:
            if path == prefix or path in prefix.parents or path in (ROOT / "coursekit").parents:
                continue  # hiding it would hide the Python or the package the worker needs
            hide.append(path)
    return [str(p) for p in hide]


def _needed_under_tmp() -> list[str]:
    """What the worker must still see after /tmp is replaced: the package and the Python prefix,
    where they live under /tmp (a clone there: the other folders of the repository stay hidden)."""
    tmp = Path("/tmp")
    needed = [ROOT / "coursekit", Path(sys.prefix).resolve(),
              Path(sys.executable).resolve().parent.parent]
    kept = []
    for path in needed:
        if tmp in path.parents and not any(k == path or k in path.parents for k in kept):
            kept = [k for k in kept if path not in k.parents] + [path]
    return [str(p) for p in kept]


def _user_task_count(uid: int) -> int:
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


def _command(workdir: str, limits: Limits, slot: int, hide) -> tuple[list[str], bool]:
    python = sys.executable
    as_root = _namespaces_work()
    nproc = limits.processes if as_root else _user_task_count(os.getuid()) + limits.processes
    rlimits = [f"--as={limits.memory_mb * 2**20}", f"--nproc={nproc}",
               f"--cpu={int(limits.timeout * 2 + 10)}", f"--fsize={limits.file_mb * 2**20}",
               f"--nofile={limits.open_files}", "--core=0"]
    uid = slot_uid(slot)
    if not as_root:
        drop = []
        if os.geteuid() == 0 and shutil.which("setpriv"):  # root in a box without namespaces
            drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--no-new-privs", "--"]
        return ["prlimit", *rlimits, "--", *drop, python, "-I", str(WORKER)], False
    # /mnt becomes a private staging area: the submission's folder, and whatever the worker needs
    # that lives under /tmp (a repository or virtual environment cloned there), are parked in it
    # while /tmp is replaced by an empty tmpfs, then moved back to their own paths.
    keep = _needed_under_tmp()
    mounts = ["mount --make-rprivate /", "mount -t tmpfs -o size=1m,mode=755 tmpfs /mnt",
              "mkdir /mnt/work", f"mount --bind {_q(workdir)} /mnt/work"]
    for i, path in enumerate(keep):
        mounts += [f"mkdir /mnt/keep{i}", f"mount --bind {_q(path)} /mnt/keep{i}"]
    mounts += ["mount -t tmpfs -o size=256m,mode=1777 tmpfs /tmp"]
    for i, path in enumerate(keep):
        mounts += [f"mkdir -p {_q(path)}", f"mount --move /mnt/keep{i} {_q(path)}"]
    mounts += [f"mount -t tmpfs -o size=1m,mode=755 tmpfs {_q(d)}" for d in _hidden_dirs(hide)]
    mounts += ["mkdir /tmp/work", "mount --move /mnt/work /tmp/work", "cd /tmp/work"]
    script = " && ".join(mounts) + " && exec " + " ".join(_q(a) for a in [
        "prlimit", *rlimits, "--", "setpriv", f"--reuid={uid}", f"--regid={uid}",
        "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
        python, "-I", str(WORKER)])
    return ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--", "/bin/sh", "-c", script], True


def _q(text: str) -> str:
    import shlex

    return shlex.quote(str(text))


def run_notebook(cells: list[str], tasks: list[dict], limits: Limits | None = None, *,
                 slot: int = 0, hide=()) -> RunResult:
    """Run ``cells`` then every case of ``tasks`` (``Task.spec()`` dicts) in the sandbox.

    Args:
        cells: the code cells' sources, in order.
        tasks: what to call: ``[{"id", "function", "torch", "driver", "cases": [...]}]``.
        limits: the limits (defaults: :class:`Limits`).
        slot: which parallel slot this is (each slot has its own user when root).
        hide: folders the worker must not see (when root).

    Returns:
        A :class:`RunResult`; its ``answers`` hold the raw records (``{"output": ...}`` still
        encoded, or ``{"error": ...}``), to be decoded and judged by the caller.
    """
    limits = limits or Limits()
    started = time.monotonic()
    result = RunResult()
    # under /tmp, which the worker's mount namespace replaces: no worker sees another's files
    base = tempfile.mkdtemp(prefix="coursekit-grade-", dir="/tmp")
    os.chmod(base, 0o711)
    workdir = os.path.join(base, "work")
    os.mkdir(workdir, 0o700)
    job = {"cells": list(cells), "timeout": limits.timeout, "cells_share": limits.cells_share,
           "drivers": str(DRIVERS),
           "tasks": [dict(task, index=i) for i, task in enumerate(tasks)]}
    with open(os.path.join(workdir, "job.json"), "w", encoding="utf-8") as f:
        json.dump(job, f)
    command, as_root = _command(workdir, limits, slot, hide)
    if os.geteuid() == 0:  # the worker runs as the slot's user
        uid = slot_uid(slot)
        for path in (workdir, os.path.join(workdir, "job.json")):
            os.chown(path, uid, uid)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp/work" if as_root else workdir,
           "TMPDIR": "/tmp/work" if as_root else workdir, "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "COURSEKIT_OFFLINE": "1", "COURSEKIT_GRADING": "1", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
    output = open(os.path.join(base, "output.txt"), "wb")
    try:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            process.wait(timeout=limits.timeout + GRACE)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        if not as_root:  # anything left in the session (no PID namespace to take it away)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _collect(workdir, tasks, result)
        if not result.cells and not os.path.exists(os.path.join(workdir, "log.jsonl")):
            output.flush()
            tail = (_read_limited(os.path.join(base, "output.txt"), 2**20) or b"")[-500:]
            result.problems.append("the sandbox did not start: "
                                   + tail.decode("utf-8", "replace").strip())
        if result.timed_out:
            result.problems.append(f"the notebook ran past the {limits.timeout:g} s time limit "
                                   "and was stopped")
    finally:
        output.close()
        shutil.rmtree(base, ignore_errors=True)
    result.wall_seconds = time.monotonic() - started
    return result


def _read_limited(path: str, limit: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        return os.read(fd, limit + 1)[:limit]
    finally:
        os.close(fd)


def _collect(workdir: str, tasks: list[dict], result: RunResult) -> None:
    from coursekit.grader.worker import MAX_ANSWER_BYTES

    log = _read_limited(os.path.join(workdir, "log.jsonl"), MAX_LOG_BYTES) or b""
    killed = {}
    for line in log.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "cell" in record:
            result.cells.append(record)
            if isinstance(record.get("seconds"), (int, float)):
                result.student_seconds += float(record["seconds"])
        elif "task" in record and "case" in record:
            killed[(str(record["task"]), record["case"])] = str(record.get("message", ""))
            if isinstance(record.get("seconds"), (int, float)):
                result.student_seconds += float(record["seconds"])
        elif record.get("event") == "harness-error":
            result.problems.append("the grading process failed: "
                                   + str(record.get("message", ""))[-300:])
    for i, task in enumerate(tasks):
        for k in range(len(task["cases"])):
            raw = _read_limited(os.path.join(workdir, f"answer-{i}-{k}.json"), MAX_ANSWER_BYTES)
            record = None
            if raw is not None:
                try:
                    record = json.loads(raw)
                except ValueError:
                    record = None
            if not isinstance(record, dict) or not ("output" in record or "error" in record):
                message = killed.get((task["id"], k)) or (
                    "no answer came back (the process was stopped or ended before this call)")
                record = {"error": message}
            elif isinstance(record.get("seconds"), (int, float)):
                result.student_seconds += float(record["seconds"])
            result.answers[(i, k)] = record
