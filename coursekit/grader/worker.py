"""The process that runs one notebook's code in the sandbox, and the plain-data format it speaks.

This file is run as a script (``python -I worker.py``) by :mod:`coursekit.grader.sandbox`, inside
a fresh directory that holds ``job.json`` (the notebook's code cells and the graded calls to
make). It imports nothing from ``coursekit`` (importing the package would import torch for
notebooks that do not need it); the grader imports its :func:`encode` and :func:`decode`.

How it survives what a submission does:

* each code cell runs in a forked child, which carries on with the next cell when it is done;
  when a cell ends its process (``sys.exit`` is caught, but ``os._exit``, a signal or a
  segfault are not catchable), its parent, which still holds the state before that cell, notes
  it and goes on with the next cell. A cell that runs past its share of the time is killed the
  same way;
* each graded call runs in its own forked child with its own time limit and writes its answer to
  its own file, so a function that loops, exits or crashes loses only its own case;
* answers are written as plain data (JSON, arrays as base64 with a whitelisted dtype); the
  grader decodes them without ever unpickling or running anything the student made, and makes
  every judgement in its own process.

Nothing here is trusted by the grader: the student's code shares this process and can change any
of it, which can only cost the student answers, never forge a correct one.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import sys
import time
import traceback

_ARRAY = "__ndarray__"
_TUPLE = "__tuple__"
# dtypes an answer may carry: numbers and booleans, never objects
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"}
MAX_DEPTH = 20
MAX_ANSWER_BYTES = 32 * 2**20  # an answer file larger than this is refused unread


class EncodeError(TypeError):
    """A value that is not plain data (numbers, strings, lists, dicts, numeric arrays)."""


# ------------------------------------------------------------------------------- the data format

def encode(value, _depth: int = 0):
    """Turn plain data into JSON-ready values; numpy arrays and torch tensors become tagged dicts.

    Only exact built-in types are accepted (a subclass of ``float`` with a forged ``__eq__`` is
    refused), so what crosses the process boundary is data, never behaviour.

    Example:
        >>> import numpy as np
        >>> decode(json.loads(json.dumps(encode({"a": (1, 2.5), "x": np.arange(3)}))))["a"]
        (1, 2.5)
    """
    if _depth > MAX_DEPTH:
        raise EncodeError("the value is nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:  # JSON has no NaN or infinity: spell them out
        finite = value == value and abs(value) != float("inf")
        return value if finite else {"__float__": repr(value)}
    if kind in (list, tuple):
        items = [encode(v, _depth + 1) for v in value]
        return {_TUPLE: items} if kind is tuple else items
    if kind is dict:
        if not all(type(k) is str for k in value):
            raise EncodeError("dictionary keys must be strings")
        return {k: encode(v, _depth + 1) for k, v in value.items()}
    module = getattr(kind, "__module__", "") or ""
    if module.startswith("torch") and kind.__name__ in ("Tensor", "Parameter"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
        kind = type(value)
        module = "numpy"
    if module == "numpy":
        import numpy as np

        if kind is np.ndarray or isinstance(value, np.generic):
            # ascontiguousarray makes a 0-d array 1-d: keep the shape, so that a tuple of
            # numpy scalars compares as a tuple of numbers
            array = np.ascontiguousarray(np.asarray(value)).reshape(np.shape(value))
            if array.dtype.name not in _DTYPES:
                raise EncodeError(f"arrays of dtype {array.dtype} cannot be graded")
            return {_ARRAY: base64.b64encode(array.tobytes()).decode("ascii"),
                    "dtype": array.dtype.name, "shape": list(array.shape)}
    raise EncodeError(f"a value of type {kind.__module__}.{kind.__qualname__} is not plain data "
                      "(return numbers, lists, dicts, numpy arrays or torch tensors)")


def decode(value, _depth: int = 0):
    """The inverse of :func:`encode`: rebuild numbers, tuples and numpy arrays from JSON values."""
    if _depth > MAX_DEPTH:
        raise ValueError("the value is nested too deeply")
    if isinstance(value, list):
        return [decode(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        if _ARRAY in value:
            import numpy as np

            dtype = value.get("dtype")
            shape = value.get("shape")
            if dtype not in _DTYPES or not isinstance(shape, list) or not all(
                    type(n) is int and n >= 0 for n in shape):
                raise ValueError(f"malformed array: dtype {dtype!r}, shape {shape!r}")
            raw = base64.b64decode(value[_ARRAY], validate=True)
            array = np.frombuffer(raw, dtype=np.dtype(dtype))
            if array.size != int(np.prod(shape)):
                raise ValueError(f"array of {array.size} values cannot have shape {shape}")
            return array.reshape(shape).copy()
        if _TUPLE in value:
            return tuple(decode(v, _depth + 1) for v in value[_TUPLE])
        if "__float__" in value:
            return float(value["__float__"])
        return {str(k): decode(v, _depth + 1) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- running the notebook

def _strip_magics(source: str) -> str:
    """IPython-only lines (``%magic``, ``!shell``) become comments: they are not Python."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append(("# " + line) if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)


class _Runner:
    """The notebook's code cells, then the graded calls, each in a forked child (see above)."""

    def __init__(self, job: dict, workdir: str):
        self.job, self.workdir = job, workdir
        self.start = time.monotonic()
        budget = float(job["timeout"])
        self.cells_deadline = self.start + budget * float(job.get("cells_share", 0.6))
        self.deadline = self.start + budget
        # Keep our own handles on what we need: the student may replace os.fork and friends.
        self._fork, self._exit, self._waitpid = os.fork, os._exit, os.waitpid
        self._kill, self._killpg, self._setpgid = os.kill, os.killpg, os.setpgid
        self._pidfd_open, self._select = os.pidfd_open, select.select
        self._dumps, self._open, self._monotonic = json.dumps, open, time.monotonic
        self._exists, self._getpid, self._unlink = os.path.exists, os.getpid, os.unlink
        self.log_path = os.path.join(workdir, "log.jsonl")

    # ---- records -------------------------------------------------------------------------
    def log(self, **record) -> None:
        line = (self._dumps(record) + "\n").encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line[:65536])
        finally:
            os.close(fd)

    def _wait(self, pid: int, deadline: float, done_marker: str | None = None) -> str:
        """Wait for ``pid``; kill its process group at ``deadline`` unless ``done_marker`` exists.

        Returns ``"exited"``, ``"signal N"``, ``"exit N"`` or ``"timeout"``.
        """
        fd = self._pidfd_open(pid)
        try:
            while True:
                marker_seen = done_marker is not None and self._exists(done_marker)
                wait_for = None if marker_seen else max(0.0, deadline - self._monotonic())
                if done_marker is not None and not marker_seen:
                    wait_for = min(wait_for, 0.05)
                ready, _, _ = self._select([fd], [], [], wait_for)
                if ready:
                    break
                if not marker_seen and self._monotonic() >= deadline:
                    for kill in (lambda: self._killpg(pid, signal.SIGKILL),
                                 lambda: self._kill(pid, signal.SIGKILL)):
                        try:
                            kill()
                        except OSError:
                            pass
                    self._waitpid(pid, 0)
                    return "timeout"
        finally:
            os.close(fd)
        _, status = self._waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return f"signal {os.WTERMSIG(status)}"
        return f"exit {os.WEXITSTATUS(status)}"

    def _child(self) -> int:
        pid = self._fork()
        if pid == 0:
            try:
                self._setpgid(0, 0)
            except OSError:
                pass
        return pid

    # ---- the cells -----------------------------------------------------------------------
    def run(self) -> None:
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        self._cells(0)

    def _cells(self, first: int) -> None:
        cells = self.job["cells"]
        index = first
        while index < len(cells):
            if self._monotonic() >= self.cells_deadline:
                self.log(cell=index, status="skipped", message="no time was left for this cell")
                index += 1
                continue
            marker = os.path.join(self.workdir, f"cell-{index}.done")
            started = self._monotonic()
            pid = self._child()
            if pid == 0:
                try:
                    self._run_cell(index, cells[index], marker)
                    self._cells(index + 1)  # this child carries the state on
                finally:
                    self._exit(0)
            outcome = self._wait(pid, self.cells_deadline, marker)
            if self._exists(os.path.join(self.workdir, "finished")):
                return
            if self._exists(marker + ".oom"):
                self.log(cell=index, status="killed", message="ran out of memory (MemoryError); "
                         "the state before it was kept",
                         seconds=round(self._monotonic() - started, 4))
            elif not self._exists(marker):
                message = ("ran past its share of the time limit and was stopped"
                           if outcome == "timeout" else
                           f"ended its own process ({outcome}: os._exit, a signal, a crash or "
                           "running out of memory); the state before it was kept")
                self.log(cell=index, status="killed", message=message,
                         seconds=round(self._monotonic() - started, 4))
            index += 1
        self._tasks()

    def _run_cell(self, index: int, source: str, marker: str) -> None:
        started, me = self._monotonic(), self._getpid()
        try:
            code = compile(_strip_magics(source), f"<cell {index}>", "exec")
            exec(code, self.namespace)  # noqa: S102 - this is the sandboxed student process
            status, message = "ok", ""
        except SystemExit:
            status, message = "error", "called sys.exit() (ignored: the next cell still runs)"
        except MemoryError:
            # what the cell allocated may still be referenced: go on from the state before it
            if self._getpid() == me:
                with self._open(marker + ".oom", "w"):
                    pass
            self._exit(0)
        except BaseException as error:  # the student's error is feedback, not our failure
            status = "error"
            message = "".join(traceback.format_exception_only(type(error), error)).strip()[-500:]
        if self._getpid() != me:  # a process the cell forked got here: it must not carry on
            self._exit(0)
        self.log(cell=index, status=status, message=message,
                 seconds=round(self._monotonic() - started, 4))
        with self._open(marker, "w"):
            pass

    # ---- the graded calls ----------------------------------------------------------------
    def _tasks(self) -> None:
        calls = [(t, k) for t in self.job["tasks"] for k in range(len(t["cases"]))]
        for position, (task, k) in enumerate(calls):
            now = self._monotonic()
            share = max(0.2, (self.deadline - now) / (len(calls) - position))
            name = f"answer-{task['index']}-{k}.json"
            try:  # a file the notebook planted there earlier is not an answer
                self._unlink(os.path.join(self.workdir, name))
            except OSError:
                pass
            pid = self._child()
            if pid == 0:
                try:
                    self._call(task, k, os.path.join(self.workdir, name))
                finally:
                    self._exit(0)
            outcome = self._wait(pid, now + share)
            if not self._exists(os.path.join(self.workdir, name)):
                self.log(task=task["id"], case=k, status="killed",
                         seconds=round(self._monotonic() - now, 4), message=(
                    "ran past its time limit and was stopped" if outcome == "timeout" else
                    f"ended its own process ({outcome}) before returning"))
        with self._open(os.path.join(self.workdir, "finished"), "w"):
            pass

    def _call(self, task: dict, k: int, path: str) -> None:
        started, me = self._monotonic(), self._getpid()
        case = task["cases"][k]
        try:
            function = self.namespace.get(task["function"])
            if function is None:
                raise NameError(f"the notebook defines no function named {task['function']!r}")
            args, kwargs = decode(case["args"]), decode(case["kwargs"])
            if task.get("torch"):
                args, kwargs = _to_torch(args), _to_torch(kwargs)
            if task.get("driver"):
                driver = _load_drivers(self.job["drivers"])
                answer = getattr(driver, task["driver"])(function, *args, **kwargs)
            else:
                answer = function(*args, **kwargs)
            record = {"output": encode(answer)}
        except NotImplementedError:
            record = {"error": "not attempted (the function still raises NotImplementedError)",
                      "not_attempted": True}
        except SystemExit:
            record = {"error": "called sys.exit() instead of returning"}
        except BaseException as error:
            text = "".join(traceback.format_exception_only(type(error), error)).strip()
            record = {"error": text[-500:]}
        if self._getpid() != me:  # a process the student's function forked
            self._exit(0)
        record["seconds"] = round(self._monotonic() - started, 4)
        with self._open(path + ".part", "w") as f:
            f.write(self._dumps(record))
        os.replace(path + ".part", path)


def _to_torch(value):
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, list):
        return [_to_torch(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_torch(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_torch(v) for k, v in value.items()}
    return value


def _load_drivers(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_coursekit_drivers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reap_until(pid: int) -> None:
    """Collect every process that ends (orphans come to us) until ``pid`` has ended.

    Processes that nobody waits for stay as zombies and keep counting against the process limit,
    so this first process does nothing else: it runs no student code.
    """
    while True:
        try:
            ended, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if ended == pid:
            return


def main() -> int:
    workdir = os.getcwd()
    with open(os.path.join(workdir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    os.environ["COURSEKIT_GRADING"] = "1"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a flood of output fails a write, not us
    sys.setrecursionlimit(10_000)
    try:  # orphans of the notebook's processes come to us, not to the system's init
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass
    runner_pid = os.fork()
    if runner_pid:
        _reap_until(runner_pid)
        # the runner has ended; give stragglers no time (the PID namespace, where there is
        # one, ends with this process and takes them along)
        return 0
    runner = _Runner(job, workdir)
    runner.log(event="start", pid=os.getpid())
    try:
        runner.run()
    except BaseException:  # noqa: BLE001 - report the harness's own failure and go
        runner.log(event="harness-error", message=traceback.format_exc()[-2000:])
    os._exit(0)


if __name__ == "__main__":
    os._exit(main())
