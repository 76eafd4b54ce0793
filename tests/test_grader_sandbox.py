"""The sandbox against each attack class of the grader's issue, one test per class
(exercises part).

Every test runs the worker through :func:`coursekit.grader.sandbox.run_notebook` with a few
cells, so it holds the same way as root (bubblewrap as root, a fresh uid and a cgroup per run)
and as an ordinary user (bubblewrap in an unprivileged user namespace, the watchdog): `.ci/run`
runs this file both ways. Network tests only ever use 127.0.0.1. Every name a test creates on
the host carries a random token, so the tests can run in parallel with each other.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coursekit.grader import protocol, sandbox
from coursekit.grader.tasks import ROOT

# under CI a missing sandbox fails the tests instead of skipping them
NO_SANDBOX = sandbox.mode() == "none" and os.environ.get("CI", "") not in ("1", "true")
pytestmark = pytest.mark.skipif(NO_SANDBOX,
                                reason="no sandbox can be built here: " + sandbox.isolation())
AS_ROOT = os.geteuid() == 0


def task(function="f", *cases):
    return {"id": function, "function": function, "torch": False, "driver": None,
            "cases": [{"args": protocol.encode(tuple(c)), "kwargs": {}} for c in cases]}


def run(cells, tasks=(), **limits):
    return sandbox.run_notebook(cells, list(tasks), sandbox.Limits(**{"timeout": 60, **limits}))


def answer(result, i=0, k=0):
    record = result.answers[(i, k)]
    assert "output" in record, (record, result.problems, result.cells)
    return protocol.decode(record["output"])


@pytest.fixture
def planted(tmp_path_factory):
    """A world-readable copy of the course's solutions outside the repository, like another
    clone or a download on the same machine."""
    base = Path(f"/var/tmp/coursekit-copy-{secrets.token_hex(6)}")
    shutil.copytree(ROOT / "solutions", base / "solutions")
    for path in [base, *base.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------- reading the answers

def test_the_filesystem_is_an_allowlist(planted):
    targets = [str(ROOT / "solutions" / "01_background.md"),
               str(planted / "solutions" / "01_background.md"), str(Path.home()),
               "/etc/passwd", "/etc/shadow", str(ROOT / "README.md"), "/var/tmp", "/root",
               "/home", str(ROOT / "tests")]
    cells = [f"import os\nTARGETS = {targets!r}\n"
             "def f():\n    seen = {}\n    for path in TARGETS:\n        try:\n"
             "            seen[path] = (os.listdir(path) if os.path.isdir(path) else\n"
             "                          open(path).read(100))\n"
             "        except OSError as error:\n            seen[path] = None\n"
             "    return {'seen': {p: v for p, v in seen.items() if v is not None},\n"
             "            'root': sorted(os.listdir('/'))}"]
    got = answer(run(cells, [task("f", ())]))
    mounted = [Path(p) for p in [*sandbox._python_paths(), str(sandbox.PACKAGE),
                                 *sandbox._site_paths()]]
    for path, seen in got["seen"].items():
        # a folder on the way to the Python install (say /root/.pyenv) shows only that way
        assert isinstance(seen, list), (path, "was read")
        for entry in seen:
            assert any(Path(path) / entry == m or Path(path) / entry in m.parents
                       for m in mounted), (path, entry)
    allowed = {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp",
               "usr"} | {m.parts[1] for m in mounted}
    assert set(got["root"]) <= allowed, got["root"]


# ------------------------------------------------------------------- tampering

def test_nothing_of_the_grader_can_be_changed(tmp_path):
    results = tmp_path / "grades.csv"
    results.write_text("honest\n")
    results.chmod(0o666)
    tmp_path.chmod(0o777)
    package = sorted((sandbox.PACKAGE / "grader").glob("*.py"))
    before = {p: p.read_bytes() for p in package}
    cells = [f"import os\nfor path in {[str(results), *map(str, package)]!r}:\n"
             "    try:\n        open(path, 'a').write('x = 1\\n')\n    except OSError:\n"
             "        pass\n"
             "import signal\nfor pid in range(2, 1 << 16):\n    try:\n"
             "        if 'coursekit' in open(f'/proc/{pid}/cmdline').read() and "
             "'worker' not in open(f'/proc/{pid}/cmdline').read():\n"
             "            os.kill(pid, signal.SIGKILL)\n"
             "    except (OSError, ValueError):\n        pass"]
    result = run(cells)
    assert [c["status"] for c in result.cells] == ["ok"]
    assert results.read_text() == "honest\n"
    assert {p: p.read_bytes() for p in package} == before


def test_killing_everything_it_can_only_ends_its_own_run():
    result = run(["def f(x):\n    return x", "import os, signal\nos.kill(-1, signal.SIGKILL)"],
                 [task("f", (1,))])
    # whatever it killed was its own: its answer may or may not come back; we are still here
    assert result.answers[(0, 0)].get("output", 1) == 1 and result.wall_seconds < 20


def test_the_network_is_unreachable():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    cells = [f"import socket\ndef f():\n    try:\n"
             f"        socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
             "        return 'connected'\n    except OSError as error:\n"
             "        return type(error).__name__"]
    try:
        got = answer(run(cells, [task("f", ())]))
        with pytest.raises(OSError):  # nobody knocked
            server.accept()
    finally:
        server.close()
    assert got != "connected"


# ------------------------------------------------------------------- leftovers and shared state

def test_nothing_outlives_a_run_or_reaches_the_next():
    token = secrets.token_hex(8)
    key = int(token[:7], 16)
    writer = [
        "import ctypes, os, subprocess\n"
        f"for path in ['/tmp/{token}', '/dev/shm/{token}', '/var/tmp/{token}',\n"
        f"             '/run/lock/{token}', os.path.expanduser('~/{token}')]:\n"
        "    try:\n        open(path, 'w').write('job')\n    except OSError:\n        pass\n"
        "libc = ctypes.CDLL(None)\n"
        f"libc.shmget({key}, 4096, 0o1666)\n"
        f"subprocess.Popen(['/bin/sh', '-c', 'sleep 300; echo {token}'],\n"
        "                 start_new_session=True)"]
    assert run(writer).cells[0]["status"] == "ok"
    reader = ["import ctypes, os\ndef f():\n    found = []\n"
              f"    for path in ['/tmp/{token}', '/dev/shm/{token}', '/var/tmp/{token}',\n"
              f"                 '/run/lock/{token}']:\n"
              "        found += [path] if os.path.exists(path) else []\n"
              f"    if ctypes.CDLL(None).shmget({key}, 0, 0) != -1:\n"
              "        found.append('shm')\n    return found"]
    assert answer(run(reader, [task("f", ())])) == []
    for path in (f"/dev/shm/{token}", f"/var/tmp/{token}", f"/run/lock/{token}",
                 f"/tmp/{token}"):
        assert not os.path.exists(path), path
    time.sleep(0.5)
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline")
            if _read(p).find(token.encode()) >= 0 and int(p.parent.name) != os.getpid()]
    assert left == [], "a process of the run outlived it"
    ipcs = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout \
        if shutil.which("ipcs") else ""
    assert f"0x{key:08x}" not in ipcs


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_the_working_folder_is_a_capped_tmpfs():
    cells = ["import os\ndef f():\n    written = 0\n    try:\n        for i in range(100):\n"
             "            with open(f'big-{i}', 'wb') as out:\n"
             "                out.write(b'x' * (8 << 20))\n            written += 8\n"
             "    except OSError as error:\n        pass\n"
             "    files = 0\n    try:\n        for i in range(100_000):\n"
             "            open(f'small-{i}', 'w').close()\n            files += 1\n"
             "    except OSError:\n        pass\n"
             "    s = os.statvfs('.')\n"
             "    return [written, s.f_blocks * s.f_frsize >> 20, os.getcwd()]"]
    written, size_mb, cwd = answer(run(cells, [task("f", ())], workdir_mb=64, timeout=60))
    assert written <= 64 and size_mb <= 64 and cwd == "/tmp/work"


# ------------------------------------------------------------------- limits that add up

def test_memory_counts_every_process_of_a_run():
    cells = ["import os, time\npids = []\nfor _ in range(3):\n    pid = os.fork()\n"
             "    if pid == 0:\n        hog = bytearray(300 << 20)\n"
             "        for i in range(0, len(hog), 4096):\n            hog[i] = 1\n"
             "        time.sleep(3)\n        os._exit(0)\n    pids.append(pid)\n"
             "states = [os.waitpid(p, 0)[1] for p in pids]",
             "def f():\n    return states"]
    result = run(cells, [task("f", ())], memory_mb=700)
    states = answer(result)
    assert any(os.WIFSIGNALED(s) and os.WTERMSIG(s) == 9 for s in states), states
    assert any("memory limit" in p for p in result.problems), result.problems


def test_the_process_limit_is_per_run():
    bomb = ["import os, time\nn = 0\nwhile True:\n    try:\n        if os.fork() == 0:\n"
            "            time.sleep(6)\n            os._exit(0)\n        n += 1\n"
            "    except OSError:\n        break\n"
            "for _ in range(n):\n    os.wait()\n"
            "def f():\n    return n"]
    honest = ["import os\ndef f():\n    pids = []\n    for _ in range(20):\n"
              "        pid = os.fork()\n        if pid == 0:\n            os._exit(0)\n"
              "        pids.append(pid)\n    return len(pids)"]
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(bomb=run(bomb, [task("f", ())],
                                                                     processes=40)))
    thread.start()
    time.sleep(1.5)
    assert answer(run(honest, [task("f", ())], processes=40)) == 20  # not starved
    thread.join()
    assert answer(outcome["bomb"]) < 40


def test_a_fresh_unprivileged_user_per_run():
    cells = ["import os\ndef f():\n    return [os.getuid(), os.geteuid(), os.getgroups()]"]
    first = answer(run(cells, [task("f", ())]))
    second = answer(run(cells, [task("f", ())]))
    if AS_ROOT:
        assert first[0] == first[1] != 0 and second[0] != first[0]
        assert first[2] == []
    else:  # a user namespace: whoever it claims to be inside, it is us outside
        assert first[0] != 0


@pytest.mark.skipif(not sandbox._Cgroup.available(), reason="cgroups need root here")
def test_a_cgroup_per_run_with_the_limits():
    limits = sandbox.Limits(memory_mb=512, processes=33, cpus=0.5)
    group = sandbox._Cgroup(limits)
    try:
        texts = {p.name if group.available() == "v2" else p.parts[-3]: p for p in group.paths}
        if group.available() == "v1":
            assert int((texts["memory"] / "memory.limit_in_bytes").read_text()) == 512 << 20
            assert (texts["pids"] / "pids.max").read_text().strip() == "33"
            assert (texts["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
    finally:
        group.kill_and_remove()
    assert not any(p.exists() for p in group.paths)


# ------------------------------------------------------------------- returned data is hostile

def test_forged_records_are_refused_and_reports_stay_strict_json():
    forge = ("import os\nlines = [b'{\"cell\": 0, \"status\": \"ok\", \"seconds\": NaN}',\n"
             "         b'[' * 100000, b'{\"answer\": [0, 0], \"record\": {\"output\": 1'\n"
             "         + b'0' * 400 + b'}}', b'{\"answer\": [7, 7], \"record\": {}}',\n"
             "         b'{\"cell\": 1, \"status\": \"ok\", '\n"
             "         b'\"message\": \"\\\\nnot graded: x\", '\n"
             "         b'\"seconds\": 1e999}', b'x' * (9 << 20)]\n"
             "for fd in range(3, 12):\n    for line in lines:\n        try:\n"
             "            os.write(fd, line + b'\\n')\n        except OSError:\n"
             "            pass\n"
             "def f():\n    return 10 ** 400\n"
             "def g():\n    return " + "[" * 24 + "1" + "]" * 24)
    result = run([forge], [task("f", ()), task("g", ())])
    assert result.cells[0]["status"] == "ok", result.cells
    json.dumps(result.cells, allow_nan=False)
    assert 0 <= result.student_seconds < 100
    assert all("\n" not in c["message"] for c in result.cells)
    assert "output" not in result.answers[(0, 0)]  # 10**400 never reaches the judge
    outcome = protocol.judge(1, result.answers[(1, 0)])
    assert not outcome.passed
    assert any("malformed" in p or "dropped" in p for p in result.problems)


def test_hidden_inputs_reach_the_sandbox_only_after_its_messages_are_done():
    cells = ["import json, os\ndef f(x):\n"
             "    os.write(3, (json.dumps({'cell': 0, 'status': 'error',\n"
             "                             'message': f'LEAK {x}'}) + '\\n').encode())\n"
             "    return x",
             "import os, select\nsnooped = []\nfor fd in range(10):\n    try:\n"
             "        if select.select([fd], [], [], 0)[0]:\n"
             "            snooped.append(os.read(fd, 1 << 16))\n    except OSError:\n"
             "        pass\nraise RuntimeError(f'SNOOP {snooped}')"]
    result = run(cells, [task("f", (424242,))])
    assert answer(result) == 424242
    assert "SNOOP" in json.dumps(result.cells) and "424242" not in json.dumps(result.cells)
    assert "424242" not in json.dumps(result.problems)


@pytest.mark.parametrize("text", [b"[" * 10**6, b'{"a": NaN}', b'{"a": 1e999}',
                                  b"1" * 500, b'{"a": -Infinity}', b"x" * (9 << 20)])
def test_hostile_json_is_refused_before_it_is_parsed(text):
    with pytest.raises(protocol.HostileData):
        protocol.loads(text)


# ------------------------------------------------------------------- no isolation: refuse

def test_without_a_sandbox_it_refuses_unless_unsafe(monkeypatch):
    monkeypatch.setattr(sandbox, "mode", lambda: "none")
    with pytest.raises(sandbox.NoIsolation, match="unsafe"):
        run(["x = 1"])
    result = sandbox.run_notebook(["def f():\n    return 3"], [task("f", ())],
                                  sandbox.Limits(timeout=20), unsafe=True)
    assert answer(result) == 3 and "UNSAFE" in result.limits


def test_the_command_refuses_without_bubblewrap(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "COURSEKIT_OFFLINE": "1"}
    notebook = tmp_path / "a-01_background.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}}')
    done = subprocess.run([sys.executable, "-m", "coursekit", "grade", str(notebook), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    assert done.returncode == 2 and "--unsafe" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_the_reader_keeps_bounded_lines_and_what_is_dropped_costs_nothing():
    import io

    data = b"a" * 20 + b"\nbbbbb\nccccccc\nddd\n" + b"e" * 4
    reader = sandbox._Reader(io.BufferedReader(io.BytesIO(data)), max_line=10, max_total=12)
    reader.run()
    assert reader.lines == [b"bbbbb", b"ccccccc"] and reader.kept == 12
    assert reader.dropped == 3  # too long, past the total, and an unfinished last line


def test_a_delegated_scope_gets_the_runs_limits_and_is_probed_with_them(monkeypatch):
    """As an ordinary user, a run goes into a transient systemd scope (a delegated cgroup) only
    where one with the very same properties was created in a probe; otherwise the watchdog."""
    args = sandbox._scope_args(sandbox.Limits(memory_mb=512, processes=32, cpus=0.5))
    assert args[:3] == ["systemd-run", "--user", "--scope"] and args[-1] == "--"
    assert dict(a.split("=", 1) for a in args if "=" in a) == {
        "MemoryMax": "512M", "MemorySwapMax": "0", "TasksMax": "32", "CPUQuota": "50%"}
    assert not set(sandbox._scope_environment()) - {"PATH", "XDG_RUNTIME_DIR",
                                                   "DBUS_SESSION_BUS_ADDRESS"}
    calls = []

    def fake_run(command, returncode, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, returncode)

    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: f"/usr/bin/{name}")
    try:
        for returncode in (0, 1):
            sandbox.user_scope_works.cache_clear()
            monkeypatch.setattr(sandbox.subprocess, "run",
                                lambda command, **kw: fake_run(command, returncode, **kw))
            assert sandbox.user_scope_works() is (returncode == 0)
            probe = sandbox._scope_args(sandbox.Limits(memory_mb=64, processes=8, cpus=1.0))
            assert calls[-1] == probe + ["/bin/true"]
        sandbox.user_scope_works.cache_clear()
        monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)  # no systemd at all
        assert sandbox.user_scope_works() is False
    finally:
        sandbox.user_scope_works.cache_clear()
