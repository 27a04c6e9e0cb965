"""The walls around a graded kernel, tested from inside a real sandboxed kernel (Linux, as root)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from autograder import bridge, kernel, paths, sandbox

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.unavailable()), reason=sandbox.unavailable() or "sandbox available")]


@pytest.fixture
def sandboxed():
    k = kernel.Kernel(sandboxed=True).ready()
    yield k
    k.kill()


def run(k: kernel.Kernel, source: str, seconds: float = 30) -> str:
    """The cell's text output (stdout, results and errors together)."""
    outputs = k.run_cell(source, deadline=time.monotonic() + seconds)
    return "\n".join(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")) or
                     f"{o.get('ename')}: {o.get('evalue')}" for o in outputs)


def processes_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                pass
    return pids


def test_kernel_sees_no_course_files_and_runs_as_its_own_user(sandboxed, tmp_path):
    """Can the kernel read nothing of the repository but lessonkit, nothing of another folder, and is it
    neither root nor able to become root?"""
    secret = tmp_path / "gradebook.db"
    secret.write_text("grades")
    probes = {"solutions": paths.SOLUTIONS, "checks": paths.REPO / "autograder" / "checks",
              "tests": paths.REPO / "tests", "the README": paths.REPO / "README.md", "other folder": secret}
    code = "import os\n" + "".join(f"print({name!r}, os.path.exists({str(p)!r}))\n" for name, p in probes.items())
    code += "print('uid', os.getuid(), os.geteuid())\nimport lessonkit\nprint('lessonkit ok')\n"
    out = run(sandboxed, code)
    for name in probes:
        assert f"{name} False" in out, out
    assert "uid 0" not in out and "lessonkit ok" in out, out
    assert "PermissionError" in run(sandboxed, "import os\nos.setuid(0)")


def test_no_network_and_no_writes_outside_its_folders(sandboxed):
    """Is every network address unreachable, and the system read-only to the kernel?"""
    out = run(sandboxed, "import socket\n"
                         "for host in [('1.1.1.1', 53), ('127.0.0.1', 22)]:\n"
                         "    s = socket.socket(); s.settimeout(2)\n"
                         "    try:\n        s.connect(host); print('connected', host)\n"
                         "    except OSError as e:\n        print('refused', host)\n")
    assert "connected" not in out and out.count("refused") == 2, out
    out = run(sandboxed, "import sys\nopen(sys.prefix + '/pwned', 'w')")
    assert "Error" in out and not Path(os.path.realpath(os.sys.prefix), "pwned").exists()


def test_memory_limit_raises_memory_error_in_the_kernel(sandboxed):
    """Does a 40 GiB allocation fail inside the kernel (MemoryError) instead of taking the machine down?"""
    out = run(sandboxed, "import torch\nx = torch.empty(40 * 2**30, dtype=torch.uint8)")
    assert "memory" in out.lower() or "RuntimeError" in out, out
    assert "ok" in run(sandboxed, "print('ok')")


def test_time_limit_stops_a_loop_that_ignores_signals(sandboxed):
    """Does a loop that ignores SIGINT, SIGTERM and SIGALRM still end at its deadline, and the kernel die?"""
    with pytest.raises(bridge.PeerGone) as gone:
        run(sandboxed, "import signal\nfor s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):\n"
                       "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n", seconds=3)
    assert gone.value.status == "timeout"
    sandboxed.kill()
    assert not sandboxed.alive()


def test_kill_ends_detached_processes_too():
    """Does killing the kernel end a process it started in a new session (double fork), which a process
    group kill would miss?"""
    k = kernel.Kernel(sandboxed=True).ready()
    try:
        uid = k.workdir.stat().st_uid
        run(k, "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               "        time.sleep(600)\n    os._exit(0)\ntime.sleep(0.5)\n")
        assert len(processes_of(uid)) >= 2          # the kernel and the detached sleeper
    finally:
        k.kill()
    for _ in range(50):
        if not processes_of(uid):
            break
        time.sleep(0.1)
    assert processes_of(uid) == []


def test_kernel_dies_with_the_grading_process_that_started_it():
    """When a grading worker dies without cleaning up (os._exit, SIGKILL, a crash), does its kernel,
    prestarted or running, die with it instead of lingering?"""
    import subprocess
    import sys
    code = ("import os\nfrom autograder import kernel\nk = kernel.Kernel(sandboxed=True).ready()\n"
            "print(k.workdir.stat().st_uid, flush=True)\nos._exit(0)\n")
    uid = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout)
    for _ in range(50):
        if not processes_of(uid):
            break
        time.sleep(0.1)
    assert processes_of(uid) == []


def test_python_and_lessonkit_are_visible_wherever_they_live(monkeypatch):
    """Does the kernel still see what it needs when that lives under /tmp (a clone of the course there),
    although the sandbox gives it a /tmp of its own (where another file of the real /tmp is not)?"""
    import tempfile
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp, tempfile.NamedTemporaryFile(dir="/tmp") as other:
        (Path(tmp) / "marker.txt").write_text("visible")
        Path(tmp).chmod(0o755)
        needed = sandbox._visible_paths()
        monkeypatch.setattr(sandbox, "_visible_paths", lambda: needed + [tmp])
        k = kernel.Kernel(sandboxed=True).ready()
        try:
            assert "visible" in run(k, f"print(open({str(Path(tmp) / 'marker.txt')!r}).read())")
            assert "False" in run(k, f"import os\nprint(os.path.exists({other.name!r}))")
        finally:
            k.kill()
