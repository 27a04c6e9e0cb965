"""Kernels forked from a warm template: each starts clean, none reaches the template or the next student.

The attacks are students: one kernel tries to leave something behind (patched functions, fixed seeds,
files, environment, threads, modules) and the next kernel of the same template looks for it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from autograder import forkserver, kernel, sandbox

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fork"),
              pytest.mark.skipif(bool(forkserver.unavailable()), reason=forkserver.unavailable() or "fork available")]
SANDBOXED = not sandbox.unavailable()


def run(k: kernel.Kernel, source: str, seconds: float = 30) -> str:
    outputs = k.run_cell(source, deadline=time.monotonic() + seconds)
    return "".join(o.get("text", "") or f"{o.get('ename')}: {o.get('evalue')}\n" for o in outputs)


def forked(**kwargs) -> kernel.Kernel:
    assert kernel.warm_up(), kernel._templates.why_not
    k = kernel.Kernel(sandboxed=SANDBOXED, start="fork", **kwargs).ready()
    assert k.start == "fork" and k.how.startswith("forked"), k.how
    return k


LEAVE = r"""
import os, sys, random, threading, builtins, time
import numpy, torch, torch.nn.functional as F
torch.softmax = F.softmax = lambda *a, **k: "patched"
os.environ["LEFT_BEHIND"] = "yes"
for folder in (".", "/tmp", "/dev/shm", os.path.expanduser("~")):
    try:
        open(os.path.join(folder, "left_behind"), "w").write("x")
    except OSError as e:
        print("could not write in", folder, e)
sys.modules["left_behind"] = type(sys)("left_behind")
builtins.left_behind = True
threading.Thread(target=time.sleep, args=(3600,), name="left_behind", daemon=False).start()
torch.manual_seed(0); numpy.random.seed(0); random.seed(0)
torch.set_default_dtype(torch.float64)
torch.set_num_threads(2)
import atexit; atexit.register(lambda: open("/tmp/at_exit", "w").write("x"))
for pid in (1, os.getppid()):
    try:
        os.kill(pid, 9)
    except OSError as e:
        print("kill", pid, type(e).__name__)
print("left")
"""

LOOK = r"""
import os, sys, json, random, threading, builtins
import numpy, torch, torch.nn.functional as F
def patched(softmax):
    out = softmax(torch.zeros(2), 0)
    return not isinstance(out, torch.Tensor) or out.tolist() != [0.5, 0.5]
found = {
    "softmax": patched(torch.softmax),
    "F.softmax": patched(F.softmax),
    "environment": "LEFT_BEHIND" in os.environ,
    "files": [f for f in ("left_behind", "/tmp/left_behind", "/dev/shm/left_behind", "/tmp/at_exit",
                          os.path.expanduser("~/left_behind")) if os.path.exists(f)],
    "module": "left_behind" in sys.modules,
    "builtin": hasattr(builtins, "left_behind"),
    "threads": [t.name for t in threading.enumerate() if t.name == "left_behind"],
    "dtype": str(torch.get_default_dtype()),
    "torch threads": torch.get_num_threads(),
    "grader modules": sorted(m for m in sys.modules if m.startswith("autograder")),
}
draws = [torch.rand(3).tolist(), numpy.random.rand(3).tolist(), random.random()]
print(json.dumps({"found": found, "draws": draws}))
"""


def look(k: kernel.Kernel) -> dict:
    return json.loads(run(k, LOOK).strip().splitlines()[-1])


def test_a_student_leaves_nothing_for_the_next():
    first = forked()
    try:
        out = run(first, LEAVE)
        assert out.rstrip().endswith("left"), out
        if SANDBOXED:       # PID 1 of its namespace is the root reaper: a kernel cannot kill it
            assert "kill 1 PermissionError" in out and "kill 0" not in out, out
        seeded = look(first)["draws"]
    finally:
        first.kill()
    second, third = forked(), forked()
    try:
        a, b = look(second), look(third)
    finally:
        second.kill(), third.kill()
    clean = {"softmax": False, "F.softmax": False, "environment": False, "files": [], "module": False,
             "builtin": False, "threads": [], "dtype": "torch.float32", "torch threads": 1, "grader modules": []}
    assert a["found"] == clean and b["found"] == clean, (a, b)
    # Every kernel draws its own random state: not the template's, not the seed the last student fixed.
    for x in (a["draws"], b["draws"]):
        assert x != seeded
        assert all(u != v for u, v in zip(x, seeded))
    assert all(u != v for u, v in zip(a["draws"], b["draws"]))


def test_a_kernel_reaches_neither_its_template_nor_the_grader(monkeypatch):
    """No descriptor of the template's pipes, none of the grader's environment, one thread in the template."""
    monkeypatch.setenv("ATTENTION_GRADING_SEED", "4242424242")
    kernel._templates.close()           # a template started after the grader's secret was set
    k = forked()
    try:
        template = kernel._templates.template
        pipes = {os.fstat(f.fileno()).st_ino for f in (template.proc.stdin, template.proc.stdout)}
        out = run(k, "import os, json\n"
                     "fds = {}\n"
                     "for fd in os.listdir('/proc/self/fd'):\n"
                     "    try:\n        fds[fd] = os.readlink('/proc/self/fd/' + fd)\n"
                     "    except OSError:\n        pass\n"
                     "print(json.dumps({'fds': fds, 'environ': open('/proc/self/environ', 'rb').read().decode(),\n"
                     "                  'env': dict(os.environ), 'cmdline': open('/proc/self/cmdline').read()}))")
        seen = json.loads(out.strip().splitlines()[-1])
        held = {int(t.split("[")[1].rstrip("]")) for t in seen["fds"].values() if t.startswith("pipe:[")}
        assert not held & pipes, (held, pipes)
        assert "4242424242" not in json.dumps(seen), seen["environ"]
        assert "ATTENTION_GRADING_SEED" not in seen["env"]
        assert len(os.listdir(f"/proc/{template.proc.pid}/task")) == 1
    finally:
        k.kill()
    # Killed kernels are reaped: the template holds no zombie.
    children = Path(f"/proc/{template.proc.pid}/task/{template.proc.pid}/children").read_text().split()
    assert children == [], children


def test_a_failed_template_falls_back_to_fresh_kernels_and_says_so(monkeypatch, tmp_path):
    """A template that cannot import torch: the process's kernels start fresh, and each says why."""
    (tmp_path / "torch.py").write_text("raise ImportError('no torch in this template')\n")
    monkeypatch.setitem(forkserver.TEMPLATE_ENV, "PYTHONPATH", str(tmp_path))
    templates = kernel._Templates()
    monkeypatch.setattr(kernel, "_templates", templates)
    assert not templates.warm_up()
    assert "no torch in this template" in templates.why_not
    k = kernel.Kernel(sandboxed=SANDBOXED).ready()
    try:
        assert k.start == "fresh" and "the warm template failed" in k.how, k.how
        assert run(k, "print(6 * 7)").strip() == "42"
    finally:
        k.kill()
        templates.close()


def test_fresh_kernels_when_asked(monkeypatch):
    monkeypatch.setenv("ATTENTION_KERNEL_START", "fresh")
    assert kernel.start_method() == "fresh"
    monkeypatch.setenv("ATTENTION_KERNEL_START", "sometimes")
    with pytest.raises(ValueError, match="fork or fresh"):
        kernel.start_method()


def test_an_unsandboxed_fork_runs_in_the_folder_it_is_given(tmp_path):
    (tmp_path / "data.txt").write_text("here")
    assert kernel.warm_up()
    k = kernel.Kernel(sandboxed=False, cwd=tmp_path, start="fork").ready()
    try:
        assert k.start == "fork"
        assert run(k, "import os\nprint(os.getcwd(), open('data.txt').read())").split() == [str(tmp_path), "here"]
    finally:
        k.kill()


def test_grading_processes_share_one_template_and_a_dead_one_takes_its_kernels_along(tmp_path):
    """Two grading processes fork their kernels from one template; when one of them dies with a kernel
    running, the template kills that kernel; the other keeps grading."""
    import subprocess
    import sys
    script = (
        "import sys, time\n"
        "from autograder import kernel\n"
        f"k = kernel.Kernel(sandboxed={SANDBOXED}).ready()\n"
        "print(k.how, k.proc.pid, flush=True)\n"
        "k.run_cell('print(1)', deadline=time.monotonic() + 30)\n"
        "if sys.argv[1] == 'die':\n"
        "    import os; os._exit(3)\n"
        "k.kill()\n")
    with forkserver.Shared() as shared:
        assert shared.publish(), shared.why_not
        template = shared.template.proc.pid
        survivor = subprocess.run([sys.executable, "-c", script, "live"], capture_output=True, text=True, timeout=120)
        dying = subprocess.run([sys.executable, "-c", script, "die"], capture_output=True, text=True, timeout=120)
        assert survivor.stdout.startswith("forked from the warm template the grading processes share"), survivor
        assert dying.returncode == 3 and "grading processes share" in dying.stdout, dying
        orphan = int(dying.stdout.split()[-1])
        deadline = time.monotonic() + 10
        while Path(f"/proc/{orphan}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{orphan}").exists(), "the dead process's kernel outlived it"
        assert Path(f"/proc/{template}/task/{template}/children").read_text().split() == []
    assert not Path(f"/proc/{template}").exists() or "Z" in Path(f"/proc/{template}/stat").read_text().split()[2]
