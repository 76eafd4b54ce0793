"""Running one notebook's code in a sandbox built from an allowlist (exercises part).

The notebook runs in :mod:`coursekit.grader.worker` under bubblewrap (``bwrap``, packaged by
Debian and Ubuntu), which builds the process's whole filesystem from nothing: it sees

* ``/usr`` (and the ``/bin``, ``/lib`` links into it), a few files of ``/etc`` the dynamic loader
  needs, the Python install and its site-packages, and the ``coursekit`` package, all read-only;
* a private tmpfs at ``/tmp`` (``Limits.workdir_mb``), which holds its working directory
  ``/tmp/work``, and a private tmpfs ``/dev/shm``; nothing else is writable, nothing outlives
  it;
* nothing of the host's home folders, repository copies, solutions, hidden checks, other
  submissions or the grader's output: they are not hidden, they were never put there.

It runs in new IPC, PID, network, UTS (and cgroup) namespaces, in a session of its own, and dies
with the grader (``--die-with-parent``); when its first process ends, the kernel kills every
process left in its PID namespace. The job comes in on standard input, records go out on
standard output, which the grader reads with a cap on every record and on the total.

As root, bubblewrap needs no user namespace; the worker then drops to a fresh unprivileged uid
(random per run, no groups, ``no_new_privs``, no capabilities), and each run gets its own
cgroup (v2, or v1 ``memory``/``pids``/``cpu``): a memory limit on all its processes together, a
process limit, and a CPU quota, so a neighbour cannot take its CPU; at the end every process in
the cgroup is killed and the cgroup removed. Without root the same filesystem and namespaces
come from an unprivileged user namespace (``--unshare-user``, nested ones disabled); the process
limit (``RLIMIT_NPROC``) then counts per user namespace, so per run; memory over all the run's
processes (their proportional set size) and CPU time over all of them are enforced by a watchdog
in the grader that polls every 0.2 s (the largest process is killed past the memory limit, and
the whole run if it stays over through ``MEMORY_KILLS`` kills in a row; the whole run past the
CPU budget). A CPU *share* is not enforceable without cgroups: where the
user's systemd instance delegates one (``systemd-run --user --scope`` works, see
:func:`user_scope_works`), each run goes into its own transient scope with the memory, process
and CPU limits a root cgroup gets, and the watchdog stays on beside it.

Where bubblewrap cannot build the sandbox (not installed, user namespaces refused), nothing is
graded unless ``unsafe=True`` (``grade --unsafe``): then the worker runs with rlimits and a
wall-clock limit only, as the grader's user, and can read and change whatever that user can.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Limits", "RunResult", "run_notebook", "isolation", "mode", "NoIsolation"]

PACKAGE = Path(__file__).resolve().parents[1]          # the coursekit package folder
WORKER = Path(__file__).resolve().parent / "worker.py"
UID_RANGE = (2_000_000, 2**31 - 2)                    # fresh uids are drawn from here (root)
GRACE = 5.0                # seconds past the timeout before the whole run is killed
MAX_LINE = 8 * 2**20       # one record from the sandbox (an answer)
MAX_TOTAL = 48 * 2**20     # all records of one run together
ETC = ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
       "/etc/alternatives", "/etc/nsswitch.conf"]


class NoIsolation(RuntimeError):
    """The sandbox cannot be built here and ``unsafe`` was not given."""


@dataclass
class Limits:
    """The limits of one run."""

    timeout: float = 120.0        # wall-clock seconds for all cells and calls
    memory_mb: int = 4096         # memory of all the run's processes together (cgroup/watchdog)
    address_space_mb: int = 8192  # RLIMIT_AS per process (torch alone maps about 3.3 GB)
    processes: int = 96           # processes and threads of the run (pids cgroup, RLIMIT_NPROC)
    cpus: float = 1.0             # CPU quota of the run, in cores (cgroup)
    file_mb: int = 16             # RLIMIT_FSIZE: the largest file the notebook may write
    workdir_mb: int = 256         # size of the private tmpfs /tmp that holds the working folder
    open_files: int = 256         # RLIMIT_NOFILE
    cells_share: float = 0.6      # fraction of the timeout the notebook's cells may use
    trusted: bool = False         # the reference solution: each call may use all the time left


@dataclass
class RunResult:
    """What came back from one run, as plain data (records not yet judged)."""

    cells: list = field(default_factory=list)       # per cell: {"cell", "status", "message"}
    answers: dict = field(default_factory=dict)     # (task index, case) -> record dict
    call_seconds: dict = field(default_factory=dict)  # (task index, case) -> seconds it took
    problems: list = field(default_factory=list)    # things that went wrong, in words
    student_seconds: float = 0.0                    # time spent in cells and graded calls
    wall_seconds: float = 0.0                       # the whole run, start to cleanup
    timed_out: bool = False                         # killed at the wall-clock limit
    started: bool = False                           # the worker said it started
    limits: str = ""                                # which limits held, in words


# --------------------------------------------------------------------------- what the box holds

def _python_paths() -> list[str]:
    """The Python install and virtual environment the worker needs (resolved, deduplicated)."""
    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
             Path(sys.executable).resolve().parent.parent}
    return sorted(str(p) for p in paths if str(p) not in ("/", "/usr"))


def _site_paths() -> list[str]:
    """Package folders on the grader's ``sys.path`` outside the Python install (a venv's
    site-packages given through PYTHONPATH): only folders named site- or dist-packages, so a
    repository root on the path is never exposed."""
    return sorted({str(Path(p).resolve()) for p in sys.path
                   if p and Path(p).name in ("site-packages", "dist-packages")
                   and Path(p).is_dir() and not Path(p).resolve().is_relative_to("/usr")})


def _bwrap_args(limits: Limits, as_root: bool) -> list[str]:
    bwrap = shutil.which("bwrap")
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-pid",
            "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            "--clearenv"]
    if not as_root:
        args += ["--unshare-user", "--disable-userns", "--uid", "1000", "--gid", "1000"]
    args += ["--perms", "1777", "--size", str(limits.workdir_mb * 2**20), "--tmpfs", "/tmp",
             "--perms", "0777", "--dir", "/tmp/work",
             "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(64 * 2**20), "--tmpfs", "/dev/shm",
             "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--perms", "0755", "--dir", "/etc"]
    for path in ETC:
        args += ["--ro-bind-try", path, path]
    made, bound = {"/", "/tmp", "/tmp/work", "/usr", "/proc", "/dev", "/etc"}, [Path("/usr")]
    for path in [*_python_paths(), *_site_paths(), str(PACKAGE)]:
        if any(b == Path(path) or b in Path(path).parents for b in bound):
            continue  # already inside a folder bound above
        for parent in reversed(Path(path).parents):  # traversable by the sandbox's user
            if str(parent) not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        args += ["--ro-bind", path, path]
        bound.append(Path(path))
    # the root bubblewrap built is a tmpfs of its own: read-only once everything is mounted
    args += ["--remount-ro", "/", "--chdir", "/tmp/work"]
    for key, value in _environment("/tmp/work").items():
        args += ["--setenv", key, value]
    if as_root:  # bwrap itself stays root to mount; the worker drops to a fresh user
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add",
                 "CAP_SETPCAP"]
    return args


def _environment(home: str) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "COURSEKIT_OFFLINE": "1", "COURSEKIT_GRADING": "1", "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            "COURSEKIT_PATH": os.pathsep.join([str(PACKAGE.parent), *_site_paths()])}


# ----------------------------------------------------------------------------------- seccomp

# x86_64 system calls the sandbox has no use for and that widen what a run can reach: tracing
# other processes (ptrace clears bubblewrap's die-with-parent), SysV shared memory and memfd
# (memory no watchdog sees), new namespaces (a fresh uid with full capabilities in them),
# keyrings, BPF, userfaultfd, io_uring, perf, mounting and module loading.
_DENIED = {"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "shmget": 29,
           "memfd_create": 319, "unshare": 272, "setns": 308, "keyctl": 250, "add_key": 248,
           "request_key": 249, "bpf": 321, "userfaultfd": 323, "perf_event_open": 298,
           "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
           "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "swapon": 167,
           "swapoff": 168, "reboot": 169, "kexec_load": 246, "kexec_file_load": 320,
           "init_module": 175, "finit_module": 313, "delete_module": 176,
           "open_by_handle_at": 304, "open_tree": 428, "move_mount": 429, "fsopen": 430,
           "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442}
_CLONE, _CLONE3 = 56, 435
_NAMESPACE_FLAGS = 0x7E020080     # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET,TIME}
_AUDIT_ARCH_X86_64 = 0xC000003E


def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter (bytes of ``struct sock_filter``) for bubblewrap's
    ``--seccomp``: the calls of ``_DENIED`` and ``clone`` with a namespace flag fail with
    ``EPERM``, ``clone3`` with ``ENOSYS`` (the C library then uses ``clone``, whose flags a
    filter can read), x32 calls fail; another architecture kills the process. ``None`` off
    x86_64, where no filter is built (said by :func:`isolation`).

    Example:
        >>> program = seccomp_program()
        >>> program is None or len(program) % 8 == 0
        True
    """
    import errno
    import platform
    import struct

    if platform.machine() != "x86_64":
        return None
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    code = [(LD, 0, 0, 4), (JEQ, 1, 0, _AUDIT_ARCH_X86_64), (RET, 0, 0, 0x80000000),
            (LD, 0, 0, 0), (JGE, "deny", 0, 0x40000000)]
    code += [(JEQ, "deny", 0, nr) for nr in sorted(_DENIED.values())]
    code += [(JEQ, "enosys", 0, _CLONE3), (JEQ, 0, "allow", _CLONE),
             (LD, 0, 0, 16), (JSET, "deny", "allow", _NAMESPACE_FLAGS)]
    labels = {"allow": len(code), "deny": len(code) + 1, "enosys": len(code) + 2}
    code += [(RET, 0, 0, 0x7FFF0000), (RET, 0, 0, 0x00050000 | errno.EPERM),
             (RET, 0, 0, 0x00050000 | errno.ENOSYS)]
    out = b""
    for pc, (op, jt, jf, k) in enumerate(code):
        jt = labels[jt] - pc - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - pc - 1 if isinstance(jf, str) else jf
        out += struct.pack("<HBBI", op, jt, jf, k)
    return out


def _drop(uid: int) -> list[str]:
    return ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]


@functools.lru_cache(maxsize=1)
def mode() -> str:
    """``"root"`` or ``"user"`` (bubblewrap works, as root or in a user namespace), or
    ``"none"`` (no isolation possible here)."""
    if not shutil.which("bwrap"):
        return "none"
    as_root = os.geteuid() == 0
    if as_root and not Path("/usr/bin/setpriv").exists():
        return "none"
    command = _bwrap_args(Limits(), as_root) + ["--"] + (_drop(_fresh_uid()) if as_root else [])
    command += [sys.executable, "-I", "-c", "import os, sys; sys.exit(os.getuid() == 0)"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return ("root" if as_root else "user") if done.returncode == 0 else "none"


@functools.lru_cache(maxsize=1)
def seccomp_works() -> bool:
    """Whether bubblewrap applies :func:`seccomp_program` here (and ``unshare`` then fails)."""
    program = seccomp_program()
    if program is None or mode() == "none":
        return False
    as_root = mode() == "root"
    read, write = os.pipe()
    os.write(write, program)
    os.close(write)
    command = _bwrap_args(Limits(), as_root) + ["--seccomp", str(read), "--"]
    command += (_drop(_fresh_uid()) if as_root else []) + [
        sys.executable, "-I", "-c", "import ctypes, sys\n"
        "sys.exit(ctypes.CDLL(None).unshare(0x10000000) == 0)"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=60, pass_fds=(read,),
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        os.close(read)
    return done.returncode == 0


def isolation() -> str:
    """One line saying how submissions are isolated on this machine, and which limits hold."""
    how = mode()
    if how == "root":
        cgroup = _Cgroup.available()
        limits = (f"cgroup {cgroup}: memory and processes of the whole run, CPU quota"
                  if cgroup else "no cgroups: RLIMIT_AS per process, RLIMIT_NPROC per fresh "
                  "user, a watchdog on the run's memory and CPU time")
        return ("bubblewrap as root: allowlisted read-only filesystem, private tmpfs /tmp and "
                "/dev/shm, IPC/PID/network namespaces, a fresh uid per run, " + _filter()
                + "; " + limits)
    if how == "user":
        return ("bubblewrap in an unprivileged user namespace: allowlisted read-only "
                "filesystem, private tmpfs /tmp and /dev/shm, IPC/PID/network namespaces, "
                + _filter() + "; " + (
                    "a delegated cgroup per run (systemd-run --user --scope): memory and "
                    "processes of the whole run, CPU quota" if user_scope_works() else
                    "processes per run (RLIMIT_NPROC per namespace); best-effort: a watchdog "
                    "on the run's memory (PSS) and CPU time (children's included), no CPU "
                    "share (needs cgroups: none is delegated to this user)"))
    return ("NONE: bubblewrap cannot build a sandbox here (install bubblewrap, allow user "
            "namespaces, or run as root); --unsafe runs student code as the grader's user with "
            "rlimits and a time limit only: it can read the solutions and change the results")


def _filter() -> str:
    return ("a seccomp filter (no ptrace, SysV shared memory, memfd, namespaces, keyrings, BPF, "
            "io_uring)" if seccomp_works() else "NO seccomp filter (not x86_64, or refused)")


def _fresh_uid() -> int:
    return UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])


# ------------------------------------------------------------------------- a delegated scope

def _scope_args(limits: Limits) -> list[str]:
    """``systemd-run`` arguments that put one run in a transient scope of the user's systemd
    instance, a cgroup delegated to this user, with the limits a root cgroup gets. Scope mode
    registers the scope and then executes the command in place (same process, so bubblewrap's
    die-with-parent still refers to the grader)."""
    return ["systemd-run", "--user", "--scope", "--quiet", "--collect",
            "-p", f"MemoryMax={limits.memory_mb}M", "-p", "MemorySwapMax=0",
            "-p", f"TasksMax={limits.processes}",
            "-p", f"CPUQuota={max(1, round(limits.cpus * 100))}%", "--"]


def _scope_environment() -> dict:
    """What ``systemd-run --user`` needs to reach the user's manager (bubblewrap then clears the
    environment with ``--clearenv``, so none of it enters the sandbox)."""
    return {"PATH": "/usr/bin:/bin",
            **{key: os.environ[key] for key in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")
               if key in os.environ}}


@functools.lru_cache(maxsize=1)
def user_scope_works() -> bool:
    """Whether an ordinary user can have a delegated cgroup per run here: ``systemd-run --user
    --scope`` with the same properties as a real run succeeds (it needs a user systemd
    instance, which containers and many CI machines lack). Root uses its own cgroups."""
    if os.geteuid() == 0 or shutil.which("systemd-run") is None:
        return False
    probe = Limits(memory_mb=64, processes=8, cpus=1.0)
    try:
        done = subprocess.run(_scope_args(probe) + ["/bin/true"], capture_output=True,
                              timeout=20, stdin=subprocess.DEVNULL, env=_scope_environment())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# ------------------------------------------------------------------------------------ cgroups

class _Cgroup:
    """A cgroup per run (v2, or v1 memory/pids/cpu), as root: created, filled, killed, removed."""

    V1 = Path("/sys/fs/cgroup")

    def __init__(self, limits: Limits):
        self.paths: list[Path] = []
        name = f"coursekit-grade/{os.getpid()}-{secrets.token_hex(6)}"
        kind = self.available()
        self._sweep()
        if kind == "v2":
            path = self.V1 / name
            path.mkdir(parents=True)
            self.paths = [path]
            parent = path.parent
            (parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            self._set(path, "memory.max", limits.memory_mb * 2**20)
            self._set(path, "memory.swap.max", 0, optional=True)
            self._set(path, "pids.max", limits.processes)
            self._set(path, "cpu.max", f"{int(limits.cpus * 100000)} 100000")
        elif kind == "v1":
            for controller in ("memory", "pids", "cpu"):
                path = self.V1 / controller / name
                path.mkdir(parents=True)
                self.paths.append(path)
            memory, pids, cpu = self.paths
            self._set(memory, "memory.limit_in_bytes", limits.memory_mb * 2**20)
            self._set(memory, "memory.memsw.limit_in_bytes", limits.memory_mb * 2**20,
                      optional=True)
            self._set(pids, "pids.max", limits.processes)
            self._set(cpu, "cpu.cfs_period_us", 100000)
            self._set(cpu, "cpu.cfs_quota_us", int(limits.cpus * 100000))

    @staticmethod
    @functools.lru_cache(maxsize=1)
    def available() -> str | None:
        """``"v2"``, ``"v1"`` or ``None``: the cgroups this (root) process can make."""
        if os.geteuid() != 0:
            return None
        root = _Cgroup.V1
        if (root / "cgroup.controllers").exists():
            controllers = (root / "cgroup.controllers").read_text().split()
            ok = {"memory", "pids", "cpu"} <= set(controllers) and os.access(root, os.W_OK)
            return "v2" if ok else None
        if all(os.access(root / c, os.W_OK) for c in ("memory", "pids", "cpu")):
            return "v1"
        return None

    @staticmethod
    def _set(path: Path, key: str, value, optional: bool = False) -> None:
        try:
            (path / key).write_text(str(value))
        except OSError:
            if not optional:
                raise

    @classmethod
    def _sweep(cls) -> None:
        """Remove the cgroups of graders that died without cleaning up (killed by a signal)."""
        parents = [cls.V1 / "coursekit-grade"] + [cls.V1 / c / "coursekit-grade"
                                                  for c in ("memory", "pids", "cpu")]
        for parent in parents:
            if not parent.is_dir():
                continue
            for group in parent.iterdir():
                owner = group.name.split("-", 1)[0]
                if group.is_dir() and owner.isdigit() and not Path(f"/proc/{owner}").exists():
                    stale = cls.__new__(cls)
                    stale.paths = [group]
                    stale.kill_and_remove()

    @property
    def procs(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in self.paths]

    def pids(self) -> set[int]:
        found = set()
        for path in self.paths:
            try:
                found |= {int(x) for x in (path / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def kill_and_remove(self) -> None:
        for _ in range(200):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
        for path in self.paths:
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)

    def oom_kills(self) -> int:
        for path in self.paths:
            for name in ("memory.oom_control", "memory.events"):
                try:
                    text = (path / name).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0


# ----------------------------------------------------------------------------------- watchdog

def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                text = f.read()
        except OSError:
            continue
        ppid = int(text.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    children, out, todo = _children_map(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _pss_and_cpu(pid: int) -> tuple[int, float, float]:
    """Proportional set size (bytes), CPU seconds of ``pid`` and CPU seconds of its children
    that it waited for (0 when it is gone)."""
    pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / tick
        children = (int(fields[13]) + int(fields[14])) / tick
    except (OSError, IndexError, ValueError):
        return 0, 0.0, 0.0
    return pss, cpu, children


# Past the memory limit the watchdog kills the largest process, as a cgroup's OOM killer does;
# a run that stays over the limit through this many kills in a row, never coming back under
# it (processes spawned to replace the killed ones), is stopped whole. A graded function that
# blows up on each of its cases, one case after another, loses those cases only.
MEMORY_KILLS = 3


class _Watchdog(threading.Thread):
    """Memory (PSS) over all of a run's processes, and their CPU time, where no cgroup counts.

    CPU time is the larger of two counts that never count a second twice: every process seen,
    at the most it was seen using; and, at one instant, the processes alive with the time of
    the children they waited for (short-lived processes that no poll sees land there). A
    process that ignores ``SIGCHLD`` loses its children's time from the second: best-effort.
    """

    def __init__(self, root_pid: int, limits: Limits):
        super().__init__(daemon=True)
        self.root_pid, self.limits = root_pid, limits
        self.stop = threading.Event()
        self.memory_kills, self.memory_stopped, self.cpu_exceeded = 0, False, False
        self.over_streak = 0  # kills since the run was last under its memory limit
        self.cpu_budget = limits.timeout * limits.cpus + 5.0
        self.dead_cpu: dict[int, float] = {}
        self.cpu_used = 0.0

    def run(self) -> None:
        limit = self.limits.memory_mb * 2**20
        while not self.stop.wait(0.2):
            pids = _descendants(self.root_pid)
            usage = {pid: _pss_and_cpu(pid) for pid in [self.root_pid, *pids]}
            for pid, (_, cpu, _) in usage.items():
                self.dead_cpu[pid] = max(self.dead_cpu.get(pid, 0.0), cpu)
            self.cpu_used = max(self.cpu_used, sum(self.dead_cpu.values()),
                                sum(cpu + waited for _, cpu, waited in usage.values()))
            if self.cpu_used > self.cpu_budget:
                self.cpu_exceeded = True
                for pid in [*pids, self.root_pid]:  # the whole run
                    _kill(pid)
                return
            if sum(u[0] for u in usage.values()) <= limit:
                self.over_streak = 0
            elif pids:
                if self.over_streak >= MEMORY_KILLS:  # a farm of processes: the whole run
                    self.memory_stopped = True
                    for pid in [*pids, self.root_pid]:
                        _kill(pid)
                    return
                # the largest process first, as the kernel does in a cgroup over its limit
                _kill(max(pids, key=lambda p: usage[p][0]))
                self.memory_kills += 1
                self.over_streak += 1


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# ----------------------------------------------------------------------------------- one run

class _Reader(threading.Thread):
    """Reads a stream into bounded lines: a line longer than ``max_line``, or one that would
    take the lines kept past ``max_total``, is dropped unread (what is dropped costs nothing)."""

    def __init__(self, stream, max_line: int, max_total: int):
        super().__init__(daemon=True)
        self.stream, self.max_line, self.max_total = stream, max_line, max_total
        self.lines: list[bytes] = []
        self.dropped, self.kept = 0, 0
        self.cells_done = threading.Event()   # the worker asked for the public calls
        self.public_done = threading.Event()  # ... and then for the hidden ones

    def run(self) -> None:
        buffer, skipping = bytearray(), False
        while True:
            chunk = self.stream.read1(1 << 16)
            if not chunk:
                break
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                piece = chunk[start:] if end < 0 else chunk[start:end]
                if not skipping:
                    buffer += piece
                    if len(buffer) > min(self.max_line, self.max_total - self.kept):
                        buffer, skipping = bytearray(), True
                        self.dropped += 1
                if end < 0:
                    break
                if not skipping and buffer:
                    self.lines.append(bytes(buffer))
                    self.kept += len(buffer)
                    if buffer.startswith(b'{"event": "cells-done"'):
                        self.cells_done.set()
                    elif buffer.startswith(b'{"event": "public-done"'):
                        self.public_done.set()
                buffer, skipping, start = bytearray(), False, end + 1
        self.stream.close()


@dataclass
class _Launch:
    """How one run starts: its command, folder and environment, and what holds it."""

    command: list
    cwd: str
    env: dict
    limits: str                        # what holds the run, in words (RunResult.limits)
    cgroup: _Cgroup | None = None      # as root: the run's cgroup (no watchdog then)
    tmp: str | None = None             # the unsafe mode's private folder, removed at the end
    filter_fd: int | None = None       # the seccomp program, which bubblewrap reads


def _job(cells: list[str], limits: Limits) -> dict:
    """What the worker is told first: the cells, the time limits and its rlimits."""
    rlimits = {"RLIMIT_AS": limits.address_space_mb * 2**20, "RLIMIT_NPROC": limits.processes,
               "RLIMIT_CPU": int(limits.timeout * 2 + 10), "RLIMIT_FSIZE": limits.file_mb * 2**20,
               "RLIMIT_NOFILE": limits.open_files, "RLIMIT_CORE": 0}
    return {"cells": list(cells), "timeout": limits.timeout, "cells_share": limits.cells_share,
            "rlimits": rlimits, "trusted": bool(limits.trusted)}


def _launch(how: str, limits: Limits, job: dict) -> _Launch:
    """The command that runs the worker in mode ``how`` (``mode()``), with what holds it."""
    python = [sys.executable, "-I", str(WORKER)]
    if how == "none":  # --unsafe: a private folder and rlimits, nothing more
        import tempfile

        tmp = tempfile.mkdtemp(prefix="coursekit-unsafe-")
        os.makedirs(os.path.join(tmp, "work"))
        job["rlimits"]["RLIMIT_NPROC"] = limits.processes + _user_tasks(os.getuid())
        return _Launch(python, os.path.join(tmp, "work"), _environment(tmp),
                       "UNSAFE: rlimits per process and a wall-clock limit only", tmp=tmp)
    as_root = how == "root"
    command, filter_fd = _bwrap_args(limits, as_root), None
    if seccomp_works():
        filter_fd, write = os.pipe()
        os.write(write, seccomp_program())
        os.close(write)
        command += ["--seccomp", str(filter_fd)]
    command += ["--"] + (_drop(_fresh_uid()) if as_root else []) + python
    launch = _Launch(command, "/", {"PATH": "/usr/bin:/bin"},
                     "watchdog (memory, CPU time), RLIMIT_NPROC per namespace",
                     filter_fd=filter_fd)
    if as_root and _Cgroup.available():
        launch.cgroup = _Cgroup(limits)
        launch.command = ["/bin/sh", "-c", 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; '
                          'shift; done; shift; exec "$@"', "sh", *launch.cgroup.procs, "--",
                          *command]
        launch.limits = f"cgroup {_Cgroup.available()} (memory, processes, CPU quota)"
    elif not as_root and user_scope_works():
        # the delegated cgroup enforces memory, processes and a CPU quota; the watchdog stays on
        # as a second line (CPU time, and memory the scope may not see)
        launch.command = _scope_args(limits) + command
        launch.env = _scope_environment()
        launch.limits = ("delegated cgroup (systemd-run --user --scope: memory, processes, CPU "
                         "quota) and the watchdog")
    return launch


def _sweep(process, watchdog: _Watchdog | None, cgroup: _Cgroup | None, limits: Limits,
           result: RunResult) -> None:
    """Kill whatever is left of a run: the PID namespace dies with bwrap's init; the run's
    processes, its cgroup and its session are swept as well (the unsafe mode has only these)."""
    if watchdog is not None:
        watchdog.stop.set()
        for pid in _descendants(process.pid):
            _kill(pid)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
    if cgroup is not None:
        oom = cgroup.oom_kills()
        cgroup.kill_and_remove()
        if oom:
            result.problems.append(f"the run's processes went over the {limits.memory_mb} "
                                   f"MiB memory limit ({oom} killed)")


def _report(result: RunResult, tasks: list[dict], out: _Reader, err: _Reader,
            watchdog: _Watchdog | None, limits: Limits) -> None:
    """The run's records into ``result``, and each limit it hit, in words."""
    if watchdog is not None:
        if watchdog.memory_stopped:
            result.problems.append(f"the run's processes stayed over the {limits.memory_mb} MiB "
                                   f"memory limit after {watchdog.memory_kills} were killed, and "
                                   "the run was stopped")
        elif watchdog.memory_kills:
            result.problems.append(f"the run's processes went over the {limits.memory_mb} "
                                   f"MiB memory limit ({watchdog.memory_kills} killed)")
        if watchdog.cpu_exceeded:
            result.problems.append("the run used more than its CPU time budget "
                                   f"({watchdog.cpu_budget:g} s) and was stopped")
    _collect(out.lines, tasks, result)
    if out.dropped:
        result.problems.append(f"{out.dropped} record(s) over {MAX_LINE >> 20} MiB, or past "
                               f"{MAX_TOTAL >> 20} MiB in all, were dropped unread")
    if not result.started:
        tail = b"\n".join(err.lines)[-500:].decode("utf-8", "replace")
        result.problems.append("the sandbox did not start: " + _clean(tail))
    if result.timed_out:
        result.problems.append(f"the notebook ran past the {limits.timeout:g} s time limit "
                               "and was stopped")


def run_notebook(cells: list[str], tasks: list[dict], limits: Limits | None = None, *,
                 unsafe: bool = False) -> RunResult:
    """Run ``cells`` then every case of ``tasks`` (``protocol.task_spec`` dicts) in the sandbox.

    Args:
        cells: the code cells' sources, in order.
        tasks: what to call: ``[{"id", "function", "torch", "driver", "cases": [...]}]``.
        limits: the limits (defaults: :class:`Limits`).
        unsafe: run without a sandbox where none can be built (see the module docstring).

    Returns:
        A :class:`RunResult`; its ``answers`` hold the raw records (``{"output": ...}`` still
        encoded, or ``{"code", "error"}``), to be judged by the caller as hostile data.

    Raises:
        NoIsolation: no sandbox can be built here and ``unsafe`` is false.
    """
    limits = limits or Limits()
    how = mode()
    if how == "none" and not unsafe:
        raise NoIsolation(isolation())
    started, result = time.monotonic(), RunResult()
    job = _job(cells, limits)
    calls = [dict(task, index=i) for i, task in enumerate(tasks)]
    launch = _launch(how, limits, job)
    result.limits = launch.limits
    watchdog = None
    try:
        try:
            process = subprocess.Popen(launch.command, cwd=launch.cwd, env=launch.env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True,
                                       pass_fds=(() if launch.filter_fd is None
                                                 else (launch.filter_fd,)))
        finally:
            if launch.filter_fd is not None:
                os.close(launch.filter_fd)
        out = _Reader(process.stdout, MAX_LINE, MAX_TOTAL)
        err = _Reader(process.stderr, 4096, 2**16)
        out.start()
        err.start()
        if launch.cgroup is None:
            watchdog = _Watchdog(process.pid, limits)
            watchdog.start()
        threading.Thread(target=_feed, args=(process, job, calls, out), daemon=True).start()
        try:
            process.wait(timeout=limits.timeout + GRACE)
        except subprocess.TimeoutExpired:
            result.timed_out = True
        _sweep(process, watchdog, launch.cgroup, limits, result)
        process.wait()
        out.join(10)
        err.join(10)
        _report(result, tasks, out, err, watchdog, limits)
    finally:
        if watchdog is not None:
            watchdog.stop.set()
        if launch.tmp:
            shutil.rmtree(launch.tmp, ignore_errors=True)
    result.wall_seconds = time.monotonic() - started
    return result


def _phase(calls: list, public: bool) -> list:
    """The calls with only the public (or only the hidden) cases; the others ``None``."""
    return [dict(task, cases=[c if bool(c.get("public")) == public else None
                              for c in task["cases"]]) for task in calls]


def _feed(process, job: dict, calls: list, reader: _Reader) -> None:
    """Send the cells now, the public calls once the cells are done, and the calls with hidden
    inputs only once the public calls have returned (each when the worker asks for them)."""
    hidden = sum(float(c.get("weight", 1.0)) for task in calls for c in task["cases"]
                 if not c.get("public"))
    try:
        process.stdin.write(json.dumps(job).encode() + b"\n")
        process.stdin.flush()
        for event, phase in ((reader.cells_done, {"tasks": _phase(calls, True),
                                                  "later": hidden}),
                             (reader.public_done, {"tasks": _phase(calls, False), "later": 0})):
            while not event.wait(0.1):
                if process.poll() is not None:
                    return
            process.stdin.write(json.dumps(phase).encode() + b"\n")
            process.stdin.flush()
        process.stdin.close()
    except (OSError, ValueError):
        pass


def _user_tasks(uid: int) -> int:
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


def _clean(text: str, limit: int = 300) -> str:
    from coursekit.grader.protocol import _one_line

    return _one_line(text, limit)


def _seconds(value) -> float:
    """A record's ``seconds``, if it is a sane number (student data: anything else is 0)."""
    if type(value) in (int, float) and 0 <= value < 1e6:
        return float(value)
    return 0.0


def _collect(lines: list[bytes], tasks: list[dict], result: RunResult) -> None:
    """Turn the records into cells and answers; every record is hostile data."""
    from coursekit.grader.protocol import HostileData, loads

    calls = {(i, k) for i, task in enumerate(tasks) for k in range(len(task["cases"]))}
    public = {(i, k) for i, task in enumerate(tasks) for k, c in enumerate(task["cases"])
              if c.get("public")}
    refused, calls_sent, hidden_sent = 0, False, False
    for line in lines:
        try:
            record = loads(line, max_bytes=MAX_LINE)
        except HostileData:
            refused += 1
            continue
        if not isinstance(record, dict):
            refused += 1
            continue
        if record.get("event") == "start":
            result.started = True
        elif record.get("event") == "finished":
            pass
        elif record.get("event") == "cells-done":
            calls_sent = True
        elif record.get("event") == "public-done":
            calls_sent = hidden_sent = True
        elif record.get("event") == "runner-died":
            result.problems.append("the process making the graded calls was ended from inside "
                                   "(the calls left got no answer)")
        elif calls_sent and ("cell" in record or "event" in record):
            # once the hidden inputs were in the sandbox, no more text of it reaches the report
            refused += 1
        elif record.get("event") == "harness-error":
            result.problems.append("the grading process failed: "
                                   + _clean(record.get("message", "")))
        elif "cell" in record and type(record["cell"]) is int and 0 <= record["cell"] < 10**6:
            status = record.get("status")
            result.cells.append({"cell": record["cell"],
                                 "status": status if status in ("ok", "error", "killed",
                                                                "skipped") else "error",
                                 "message": _clean(record.get("message", ""))})
            result.student_seconds += _seconds(record.get("seconds"))
        elif "answer" in record:
            where = record["answer"]
            if not (isinstance(where, list) and len(where) == 2
                    and all(type(x) is int for x in where)) or tuple(where) not in calls or (
                        hidden_sent and tuple(where) in public):
                # a public answer that comes once the hidden inputs were sent may carry them
                refused += 1
                continue
            answer = record.get("record")
            if not isinstance(answer, dict):
                refused += 1
                continue
            # the last record of a call wins: the call's own comes after anything planted
            result.answers[tuple(where)] = answer
            result.call_seconds[tuple(where)] = _seconds(record.get("seconds"))
            result.student_seconds += _seconds(record.get("seconds"))
        else:
            refused += 1
    if refused:
        result.problems.append(f"{refused} malformed record(s) from the sandbox were ignored")
    for key in calls - set(result.answers):
        result.answers[key] = {"code": "no_answer", "error": "no answer came back (the process "
                               "was stopped or ended before this call)"}
