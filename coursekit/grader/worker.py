"""The process that runs one notebook's code inside the sandbox (exercises part).

:mod:`coursekit.grader.sandbox` starts this file as a script (``python -I worker.py``) inside
bubblewrap, in a private tmpfs working directory. The job (the notebook's code cells, the graded
calls, the limits) arrives as JSON on standard input; records go back as JSON lines on standard
output, the only channel out (the notebook's own prints go to ``output.txt`` in the tmpfs). The
wire format, calling one case and the records' reason codes come from
:mod:`coursekit.grader.protocol`.

How it survives what a submission does:

* each code cell runs in a forked child, which carries on with the next cell when it is done;
  when a cell ends its process (``sys.exit`` is caught, but ``os._exit``, a signal or a
  segfault are not catchable), its parent, which still holds the state before that cell, notes
  it and goes on with the next cell. A cell that runs past its share of the time is killed the
  same way;
* each graded call runs in its own forked child with its own time limit, so a function that
  loops, exits or crashes loses only its own case;
* the children volunteer to the out-of-memory killer first (``oom_score_adj``), so a memory bomb
  loses its own cell or call, not the run.

Nothing here is trusted by the grader: the student's code shares this process and can change any
of it, or write anything to the channel, which can only cost the student answers: the grader
parses every record as hostile and judges it against answers the sandbox never sees.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import traceback

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
        self._dumps, self._loads = json.dumps, json.loads
        self._open, self._monotonic = open, time.monotonic
        self._exists, self._getpid, self._unlink = os.path.exists, os.getpid, os.unlink
        self._write, self._channel = os.write, int(job["channel"])
        self._tasks_fd = int(job["tasks_fd"])

    # ---- records -------------------------------------------------------------------------
    def log(self, **record) -> None:
        """One JSON line to the grader (a single write: records do not interleave)."""
        line = (self._dumps(record) + "\n").encode()
        view = memoryview(line)
        while view:
            view = view[self._write(self._channel, view):]

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
            try:  # the out-of-memory killer takes a cell or a call, not the runner
                with self._open("/proc/self/oom_score_adj", "w") as f:
                    f.write("1000")
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
            if self._exists(marker) and self._exists(os.path.join(self.workdir,
                                                                   "calls-started")):
                # the cell was done and its process went on to the calls, then ended: the
                # calls' process died (killed from inside). Re-running the cells here, in every
                # ancestor, would start the calls again and again: say so once and stop.
                try:
                    flag = os.open(os.path.join(self.workdir, "runner-died"),
                                   os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    os.close(flag)
                    self.log(event="runner-died")
                except OSError:
                    pass
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
    def _read_tasks(self, event: str) -> dict:
        """The next calls, asked for with ``event``: the public calls arrive only after the
        cells, the hidden ones only after the public calls have returned, so no code of the
        notebook had a hidden input while its messages could still reach the feedback."""
        self.log(event=event)
        os.set_blocking(self._tasks_fd, True)
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self._tasks_fd, 1 << 20)
            if not chunk:
                break
            data += chunk
        return self._loads(data) if data else {"tasks": [], "later": 0}

    def _tasks(self) -> None:
        with self._open(os.path.join(self.workdir, "calls-started"), "w"):
            pass
        self._warm(self._read_tasks("cells-done"), "public-done")

    def _warm(self, phase: dict, next_event: str | None) -> None:
        tasks = phase["tasks"]
        if any(t.get("torch") or t.get("driver") or t.get("differentiable") for t in tasks):
            try:  # once, here, rather than in every call's child (each would pay for it):
                import torch  # torch and what it imports lazily on a first optimiser step

                from coursekit.grader import drivers  # noqa: F401
                weight = torch.nn.Parameter(torch.zeros(1))
                optimiser = torch.optim.SGD([weight], lr=0.1)
                (weight * 2).sum().backward()
                optimiser.step()
            except Exception:  # noqa: BLE001 - the calls will say what is wrong
                pass
        self._calls(phase)
        if next_event is not None:
            self._calls(self._read_tasks(next_event))
        self.log(event="finished")
        with self._open(os.path.join(self.workdir, "finished"), "w"):
            pass

    def _calls(self, phase: dict) -> None:
        """Each call gets the time left in proportion to its weight (how long the reference
        took, else 1) among the calls to come, this phase's and the next's (``later``)."""
        calls = [(t, k) for t in phase["tasks"] for k, c in enumerate(t["cases"])
                 if c is not None]
        weights = [max(0.01, float(t["cases"][k].get("weight", 1.0))) for t, k in calls]
        later = float(phase.get("later", 0))
        for position, (task, k) in enumerate(calls):
            now = self._monotonic()
            share = max(0.2, (self.deadline - now) * (1.0 if self.job.get("trusted") else
                                                      weights[position]
                                                      / (sum(weights[position:]) + later)))
            marker = os.path.join(self.workdir, f"answer-{task['index']}-{k}.done")
            try:  # a file the notebook planted there earlier is not an answer
                self._unlink(marker)
            except OSError:
                pass
            pid = self._child()
            if pid == 0:
                try:
                    self._call(task, k, marker)
                finally:
                    self._exit(0)
            outcome = self._wait(pid, now + share)
            if not self._exists(marker):
                timeout = outcome == "timeout"
                self.log(answer=[task["index"], k], seconds=round(self._monotonic() - now, 4),
                         record={"code": "timeout" if timeout else "killed", "error": (
                             "ran past its time limit and was stopped" if timeout else
                             f"ended its own process ({outcome}) before returning")})

    def _call(self, task: dict, k: int, marker: str) -> None:
        started, me = self._monotonic(), self._getpid()
        function = self.namespace.get(task["function"])
        if function is None:
            record = {"code": "raised", "error": "NameError: the notebook defines no function "
                      f"named {task['function']!r}"}
        else:
            record = call_case(function, task, task["cases"][k])
        if self._getpid() != me:  # a process the student's function forked
            self._exit(0)
        self.log(answer=[task["index"], k], seconds=round(self._monotonic() - started, 4),
                 record=record)
        with self._open(marker, "w"):
            pass


def __getattr__(name: str):
    """``encode``, ``decode`` and ``EncodeError`` moved to :mod:`coursekit.grader.protocol`;
    importing them from here still works."""
    if name in ("encode", "decode", "EncodeError"):
        from coursekit.grader import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _limit(job: dict) -> None:
    """Set the job's rlimits on this process (children inherit them)."""
    import resource

    for name, value in job.get("rlimits", {}).items():
        kind = getattr(resource, name)
        _, hard = resource.getrlimit(kind)
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        resource.setrlimit(kind, (value, value))


def main() -> int:
    job = json.loads(sys.stdin.buffer.readline())  # the cells; the calls come after them
    workdir = os.getcwd()
    # the channel to the grader is our standard output; the notebook's prints go to a file in
    # the tmpfs (its size limit turns a flood of output into "File too large")
    channel = os.dup(1)
    output = os.open(os.path.join(workdir, "output.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    job["tasks_fd"] = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    job["channel"] = channel
    os.environ["COURSEKIT_GRADING"] = "1"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a flood of output fails a write, not us
    sys.setrecursionlimit(10_000)
    _limit(job)
    try:  # orphans of the notebook's processes come to us, not to the system's init
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass
    runner_pid = os.fork()
    if runner_pid:
        os.close(channel)
        _reap_until(runner_pid)
        # the runner has ended; stragglers die with the PID namespace (or the grader's kill)
        return 0
    runner = _Runner(job, workdir)
    runner.log(event="start")
    try:
        runner.run()
    except BaseException:  # noqa: BLE001 - report the harness's own failure and go
        runner.log(event="harness-error", message=traceback.format_exc()[-2000:])
    os._exit(0)


if __name__ == "__main__":
    sys.path[:0] = [p for p in os.environ.get("COURSEKIT_PATH", "").split(os.pathsep) if p]
    from coursekit.grader.protocol import call_case  # noqa: E402 - the path is set just above

    os._exit(main())
