"""The walls around a graded kernel, tested from inside a real sandboxed kernel (Linux, as root)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from autograder import bridge, kernel, paths, sandbox

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.unavailable()), reason=sandbox.unavailable() or "sandbox available")]


@pytest.fixture(autouse=True, params=["fork", "fresh"])
def start(request, monkeypatch):
    """Every wall holds for both kinds of kernel: forked from the warm template, and started afresh."""
    monkeypatch.setenv("ATTENTION_KERNEL_START", request.param)
    if request.param == "fork":
        assert kernel.warm_up(), kernel._templates.why_not
    return request.param


@pytest.fixture
def sandboxed(start):
    k = kernel.Kernel(sandboxed=True).ready()
    assert k.start == start, k.how
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


def test_working_directory_is_a_small_tmpfs_not_the_host_disk(sandboxed):
    """Does filling the kernel's working directory with fallocate stop at its tmpfs's size, leaving the
    grader's disk as it was?"""
    if not sandboxed.workdir_mounted:
        pytest.skip("no tmpfs for the working directory here")
    before = os.statvfs(sandboxed.base).f_bavail
    out = run(sandboxed, "import os, subprocess\n"
                         "r = subprocess.run(['fallocate', '-l', '1G', 'big'], capture_output=True, text=True)\n"
                         "print('code', r.returncode)\n"
                         "st = os.statvfs('.')\nprint('size', st.f_blocks * st.f_frsize)\n")
    assert "code 0" not in out and f"size {sandbox.Limits().workdir_bytes}" in out, out
    assert os.statvfs(sandboxed.base).f_bavail >= before - 2**20


def test_memory_in_files_is_bounded_by_the_kernels_cgroup():
    """Do memfd files, which RLIMIT_AS and the kernel's RSS do not count, kill the kernel (and only it) at
    its cgroup's memory limit, with a status that says so?"""
    k = kernel.Kernel(sandboxed=True, limits=sandbox.Limits(cgroup_memory_bytes=2**30)).ready()
    try:
        if k.cgroup is None:
            pytest.skip(sandbox.Cgroup.why_not)
        with pytest.raises(bridge.PeerGone) as gone:
            run(k, "import os\nfds = []\nfor i in range(40):\n    fd = os.memfd_create('x')\n"
                   "    os.posix_fallocate(fd, 0, 60 * 2**20)\n    fds.append(fd)\nprint('allocated', len(fds))\n")
        assert gone.value.status == "kernel-died" and "memory" in str(gone.value), gone.value
    finally:
        k.kill()


def test_cgroup_holds_every_process_and_is_removed_with_the_kernel():
    """Is the kernel in a cgroup of its own with a bounded number of processes and a CPU share, and is the
    cgroup gone once the kernel is killed?"""
    k = kernel.Kernel(sandboxed=True).ready()
    try:
        if k.cgroup is None:
            pytest.skip(sandbox.Cgroup.why_not)
        paths = dict(k.cgroup.paths)
        out = run(k, "print(open('/proc/self/cgroup').read())")
        for controller, path in paths.items():
            assert f"{controller}:/{path.name}" in out, out
        assert int((paths["pids"] / "pids.max").read_text()) == sandbox.Limits().processes
        assert int((paths["cpu"] / "cpu.shares").read_text()) == sandbox.Limits().cpu_shares
    finally:
        k.kill()
    assert not any(p.exists() for p in paths.values())


def test_an_oversized_message_is_dropped_before_the_grader_parses_it():
    """Does a message larger than the bound end the cell with a clear status instead of being parsed
    (about 24 bytes of grader memory per byte sent) in the grader?"""
    k = kernel.Kernel(sandboxed=True, limits=sandbox.Limits(max_message_bytes=8 * 2**20)).ready()
    try:
        with pytest.raises(bridge.PeerGone) as gone:
            run(k, "import sys\nsys.stdout.write('[],' * (4 * 2**20))\nsys.stdout.flush()\n", seconds=20)
        assert "larger than the grader accepts" in str(gone.value), gone.value
    finally:
        k.kill()


def test_refuses_a_repository_the_sandbox_would_show(monkeypatch):
    """Is a course (or repository) under a folder the sandbox shows, such as /usr, refused with a clear error
    instead of being graded where the kernel can read it?"""
    with pytest.raises(sandbox.SandboxError, match="refusing to sandbox"):
        sandbox.check_hidden(Path("/usr/share/course"))
    sandbox.check_hidden(Path("/nonexistent-course-folder"))       # elsewhere: no error


@pytest.mark.gpu
def test_cuda_works_inside_the_sandbox():
    """On a machine with a GPU, does a sandboxed kernel see it and run a CUDA matmul?"""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA here")
    k = kernel.Kernel(sandboxed=True).ready()
    try:
        out = run(k, "import torch\nprint('cuda', torch.cuda.is_available())\n"
                     "a = torch.ones(64, 64, device='cuda')\nprint('sum', float((a @ a).sum().cpu()))\n", seconds=120)
        assert "cuda True" in out and "sum 262144.0" in out, out
    finally:
        k.kill()


def test_a_burst_of_busy_children_does_not_starve_an_honest_neighbour():
    """With a neighbour kernel running 16 busy processes, does an honest kernel's fixed loop take at most
    about three times as long as without it (not 13x)?"""
    honest, attacker = kernel.Kernel(sandboxed=True).ready(), kernel.Kernel(sandboxed=True).ready()
    try:
        if honest.cgroup is None:
            pytest.skip(sandbox.Cgroup.why_not)
        loop = "import time\nt = time.perf_counter()\nsum(i * i for i in range(3_000_000))\n" \
               "print('took', time.perf_counter() - t)\n"
        alone = float(run(honest, loop).split()[-1])
        run(attacker, "import os\nfor _ in range(16):\n    if os.fork() == 0:\n        while True:\n"
                      "            pass\n")
        time.sleep(1)
        beside = float(run(honest, loop, seconds=60).split()[-1])
        assert beside < 3 * alone + 0.5, (alone, beside)
    finally:
        attacker.kill()
        honest.kill()
