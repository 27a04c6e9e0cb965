"""Warm template kernels: each notebook's kernel is a fork of a process that has already imported torch.

A template (`Template`) is a fresh interpreter, started with a clean environment, that imports torch,
numpy, matplotlib, ipykernel and lessonkit, starts no thread, and then only forks. `grade` starts one for
all its local workers (`Shared`: they reach it through a Unix socket only root can open); any other
grading process (`check`, nbgrader's commands, a Dask worker) starts one of its own on first use.
It holds nothing of the grader's: no hidden check, no solution, no seed (it imports nothing else of this
package and never sees the grader's environment), so the memory a kernel inherits from it is public.

Each fork (`_child`) becomes one kernel. It joins the kernel's cgroup, closes every descriptor it
inherited, and, sandboxed, enters new mount, PID, network, IPC and UTS namespaces, builds the same root as
`sandbox.command` with the same script, becomes PID 1 of its namespace (a root reaper the kernel cannot
signal, whose death takes every process of the namespace down), and forks the kernel, which chroots,
drops to its own user id with no capabilities and no new privileges, takes the rlimits, replaces its
environment, reseeds every random generator, and starts ipykernel in the same interpreter. Memory pages
stay shared copy-on-write with the template; what one kernel writes, no other kernel sees.

The template speaks JSON lines with its owner (stdin/stdout) and with each process connected to its socket:
{"op": "fork", ...} -> {"pid": N} (the template keeps the child unreaped, so its pid cannot be reused until
the grader asks {"op": "wait", "pid": N} -> {"status": wait status}); when a connected process hangs up,
the kernels it did not reap are killed; when the owner hangs up, the template ends. This module imports
only the standard library at the top: the grading processes import it too.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

# Imported once in the template, shared by every kernel forked from it.
WARM_MODULES = ("numpy", "torch", "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
                "IPython", "ipykernel.kernelapp", "ipykernel.ipkernel", "zmq", "jupyter_client",
                "matplotlib_inline.backend_inline", "lessonkit", "lessonkit.guards", "tqdm.auto")
# The template's own environment: no grader's variable reaches it (nor, through /proc/self/environ, a kernel).
# One thread each for the math libraries: a thread pool started in the template would not survive a fork.
TEMPLATE_ENV = {"LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "JUPYTER_PLATFORM_DIRS": "1",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"}

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (0x00020000, 0x04000000, 0x08000000,
                                                                     0x20000000, 0x40000000)
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
_libc = ctypes.CDLL(None, use_errno=True)
START_TIMEOUT = 120         # seconds the template may take for its imports
SHARED_ENV = "ATTENTION_KERNEL_TEMPLATE"    # the address of a template the grading processes share


class TemplateError(RuntimeError):
    """The template cannot fork a kernel (the grader starts one afresh instead, and says so)."""


def start_method() -> str:
    """How kernels start in this process: "fork" (from a warm template, where `unavailable()` is empty) or
    "fresh" (a new interpreter each); $ATTENTION_KERNEL_START chooses, `Settings.kernel_start` else."""
    from .settings import DEFAULT
    wanted = os.environ.get("ATTENTION_KERNEL_START", DEFAULT.kernel_start)
    if wanted not in ("fork", "fresh"):
        raise ValueError(f"ATTENTION_KERNEL_START must be fork or fresh, not {wanted!r}")
    return "fork" if wanted == "fork" and not unavailable() else "fresh"


def unavailable() -> str:
    """Why kernels cannot be forked from a template here, or "" when they can."""
    if not sys.platform.startswith("linux"):
        return "forking a warm kernel needs Linux (macOS forbids fork after its frameworks start threads)"
    if not hasattr(os, "pidfd_open"):
        return "forking a warm kernel needs os.pidfd_open (Linux 5.3 and Python 3.9 or newer)"
    return ""


# -- the grader's side -----------------------------------------------------------------------------------

class Template:
    """A grading process's link to a template: its own (`Template(scratch)`, started now, with a Unix socket in
    `scratch` that other grading processes may use) or one another process owns (`Template.shared(path)`)."""

    def __init__(self, scratch: Path | None = None, *, _socket: str | None = None):
        self._lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self._conn = None
        if _socket is not None:          # the owner published the address once its template was warm
            import socket
            self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._conn.connect(_socket)
            except OSError as error:
                self._conn.close()
                raise TemplateError(f"the shared template at {_socket} cannot be reached ({error})") from None
            self._reader, self._writer = self._conn.makefile("rb"), self._conn.makefile("wb")
            self.socket_path, self._warming = _socket, False
            return
        env = {**TEMPLATE_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch),
               "MPLCONFIGDIR": str(scratch / ".mpl"), "IPYTHONDIR": str(scratch / ".ipython")}
        self.socket_path = str(scratch / "template.sock")
        self.proc = subprocess.Popen([sys.executable, "-m", "autograder.forkserver", self.socket_path], env=env,
                                     cwd=scratch, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        self._reader, self._writer = self.proc.stdout, self.proc.stdin
        # Asked now, answered once its imports are done: the grader does other work meanwhile.
        self._send({"op": "ready"})
        self._warming = True

    @classmethod
    def shared(cls, path: str) -> "Template":
        return cls(_socket=path)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self._conn is not None and self._conn.fileno() >= 0

    def warm(self) -> bool:
        """Has it finished its imports? Never waits; raises TemplateError when they failed."""
        with self._lock:
            if self._warming and select.select([self._reader], [], [], 0)[0]:
                self._warming = False
                self._answer(0)
            return not self._warming

    def _send(self, request: dict) -> None:
        try:
            self._writer.write((json.dumps(request) + "\n").encode())
            self._writer.flush()
        except OSError as error:
            raise TemplateError(f"the template process is gone ({error})") from None

    def _answer(self, timeout: float) -> dict:
        try:
            if not select.select([self._reader], [], [], timeout)[0]:
                raise TemplateError(f"the template process did not answer in {timeout:.0f} s")
            line = self._reader.readline()
        except (OSError, ValueError) as error:
            raise TemplateError(f"the template process is gone ({error})") from None
        if not line:
            raise TemplateError("the template process ended" +
                                (f" (status {self.proc.wait()})" if self.proc is not None else ""))
        reply = json.loads(line)
        if "error" in reply:
            raise TemplateError(reply["error"])
        return reply

    def _ask(self, request: dict, timeout: float = 60) -> dict:
        with self._lock:
            if not self.alive():
                raise TemplateError("the template process ended")
            if self._warming:           # its answer to "ready": TemplateError when it could not import
                self._warming = False
                self._answer(START_TIMEOUT)
            self._send(request)
            return self._answer(timeout)

    def fork(self, *, argv: list[str], env: dict, cwd: str, stderr: str, cgroup: list[str],
             sandbox: dict | None) -> "ForkedProcess":
        """A new kernel process (see the module's docstring); `sandbox` holds the root, workdir, uid, script and
        rlimits of `sandbox.fork_spec`, None to run unsandboxed in `cwd`."""
        reply = self._ask({"op": "fork", "argv": argv, "env": env, "cwd": cwd, "stderr": stderr,
                           "cgroup": cgroup, "sandbox": sandbox})
        return ForkedProcess(self, reply["pid"])

    def reap(self, pid: int) -> int:
        return self._ask({"op": "wait", "pid": pid})["status"]

    def close(self) -> None:
        """The owner ends the template (and every kernel it forked); another process only hangs up, and the
        template kills the kernels it forked for that process and did not reap."""
        if self.proc is not None:
            if self.alive():
                self.proc.kill()
            self.proc.wait()
        for stream in (self._reader, self._writer, self._conn):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


class Shared:
    """In a process that starts local grading processes: one template for all of them (their kernels share its
    pages), started on entry, its address published in $ATTENTION_KERNEL_TEMPLATE (which they inherit) by
    `publish()` once warm, ended on exit. Where kernels are not forked, or it fails, nothing is published and
    each grading process keeps a template of its own (or starts its kernels fresh)."""

    def __init__(self):
        self.template: Template | None = None
        self.scratch: Path | None = None
        self.why_not = ""
        self._previous = os.environ.get(SHARED_ENV)

    def __enter__(self) -> "Shared":
        if start_method() == "fork":
            import tempfile
            self.scratch = Path(tempfile.mkdtemp(prefix="attention-template-"))
            try:
                self.template = Template(self.scratch)
            except (TemplateError, OSError) as error:
                self.why_not = str(error)
        return self

    def publish(self) -> str | None:
        """Wait until the template is warm, then tell the processes started from now on where it is."""
        if self.template is None:
            return None
        import time
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not self.template.warm():
                if time.monotonic() > deadline or not self.template.alive():
                    raise TemplateError("the shared template did not finish its imports")
                time.sleep(0.02)
        except TemplateError as error:
            self.why_not = str(error)
            return None
        os.environ[SHARED_ENV] = self.template.socket_path
        return self.template.socket_path

    def __exit__(self, *exc) -> None:
        if self._previous is None:
            os.environ.pop(SHARED_ENV, None)
        else:
            os.environ[SHARED_ENV] = self._previous
        if self.template is not None:
            self.template.close()
        if self.scratch is not None:
            import shutil
            shutil.rmtree(self.scratch, ignore_errors=True)


class ForkedProcess:
    """A kernel forked by the template, seen from the grader as a `subprocess.Popen` is: pid, poll, kill, wait.

    The template does not reap it until asked, so the pid (and the pidfd that watches it) stays its own."""

    def __init__(self, template: Template, pid: int):
        self.template, self.pid, self.returncode = template, pid, None
        self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            self._collect()
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _collect(self) -> None:
        try:
            status = self.template.reap(self.pid)
            self.returncode = os.waitstatus_to_exitcode(status)
        except TemplateError:            # the template died and took its children with it
            self.returncode = -signal.SIGKILL
        os.close(self._pidfd)

    def __del__(self):
        if self.returncode is None:
            try:
                os.close(self._pidfd)
            except OSError:
                pass


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


# -- the template's side ---------------------------------------------------------------------------------

def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def serve(socket_path: str | None = None) -> None:
    """The template's loop: answer its owner on stdin/stdout, and any grading process that connects to
    `socket_path`; leave when the owner hangs up."""
    import gc
    import importlib
    import selectors
    import socket
    ready: dict = {}
    try:
        for name in WARM_MODULES:
            importlib.import_module(name)
    except Exception as error:          # said on the first request
        ready = {"error": f"the template could not import {name}: {error!r}"}
    if not ready and _threads() != 1:
        ready = {"error": f"the template runs {_threads()} threads after its imports: forking it is unsafe"}
    # What the imports made is never collected: the kernels' garbage collector then leaves those pages alone,
    # and they stay shared with the template instead of being copied into every kernel.
    gc.collect()
    gc.freeze()
    owner = (sys.stdin.buffer, sys.stdout.buffer)
    links = selectors.DefaultSelector()
    links.register(owner[0], selectors.EVENT_READ, owner)
    if socket_path and not ready:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)           # only root, the owner's user, may connect
        try:
            listener.bind(socket_path)
        finally:
            os.umask(old)
        listener.listen(64)
        links.register(listener, selectors.EVENT_READ, None)
    forked: dict[int, tuple] = {}       # unreaped kernel -> the link that asked for it
    while True:
        for key, _ in links.select():
            if key.data is None:        # a grading process connects
                conn, _ = key.fileobj.accept()
                links.register(conn, selectors.EVENT_READ, (conn.makefile("rb"), conn.makefile("wb"), conn))
                continue
            link = key.data
            line = link[0].readline()
            if not line:
                if link is owner:
                    return
                links.unregister(key.fileobj)
                for pid in [p for p, by in forked.items() if by is link]:
                    _kill_and_reap(pid)         # its grading process died: its kernels go with it
                    del forked[pid]
                for stream in link:
                    stream.close()
                continue
            reply = _answer(json.loads(line), ready)
            if "pid" in reply:
                forked[reply["pid"]] = link
            elif "status" in reply:
                forked.pop(reply.pop("reaped"), None)
            try:
                link[1].write((json.dumps(reply) + "\n").encode())
                link[1].flush()
            except OSError:
                pass


def _answer(request: dict, ready: dict) -> dict:
    try:
        if request["op"] == "ready":
            return ready or {"ok": True}
        if request["op"] == "fork":
            if ready:
                raise TemplateError(ready["error"])
            return {"pid": _fork(request)}
        if request["op"] == "wait":
            pid = int(request["pid"])
            return {"status": os.waitpid(pid, 0)[1], "reaped": pid}
        return {"error": f"unknown request {request['op']!r}"}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _fork(request: dict) -> int:
    if _threads() != 1:
        raise TemplateError("the template runs more than one thread: forking it is unsafe")
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        code = _child(request)
    except BaseException as error:
        try:
            os.write(2, f"the forked kernel could not start: {type(error).__name__}: {error}\n".encode())
        except OSError:
            pass
    os._exit(code)


def _child(request: dict) -> int:
    """In the fork: become the kernel (unsandboxed) or the sandbox's reaper and its kernel. Returns an exit code."""
    os.setsid()
    _die_with_parent()
    # Only 0, 1 and 2 survive, none of them the template's pipes: a kernel must not reach the template.
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    os.closerange(3, 1 << 16)
    for procs in request["cgroup"]:     # before any namespace: the cgroup bounds everything below
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    box = request["sandbox"]
    if box is None:
        os.chdir(request["cwd"])
        _become_kernel(request)
        return 0
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    reaper = os.fork()              # the first process of the new PID namespace
    if reaper:
        return _wait_for(reaper)
    _die_with_parent()
    done = subprocess.run(["sh", "-c", box["script"], "sandbox", box["root"], box["workdir"]],
                          stdin=subprocess.DEVNULL, stdout=2, stderr=2, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    if done.returncode != 0:
        os._exit(71)
    kernel = os.fork()
    if kernel:
        os._exit(_reap_all_until(kernel))
    _die_with_parent()
    _drop_privileges(box)
    _become_kernel(request)
    return 0


def _wait_for(pid: int) -> int:
    while True:
        try:
            return _exit_code(os.waitpid(pid, 0)[1])
        except InterruptedError:
            continue


def _reap_all_until(kernel: int) -> int:
    """PID 1's work: reap every orphan of the namespace; leave, with the kernel's status, when the kernel ends."""
    while True:
        pid, status = os.wait()
        if pid == kernel:
            return _exit_code(status)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code         # killed by signal N: 128 + N, as a shell says it


def _drop_privileges(box: dict) -> None:
    import resource
    os.chroot(box["root"])
    os.chdir(box["workdir"])
    for cap in range(64):           # the bounding set, emptied while still root
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    uid = int(box["uid"])
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)     # every uid non-zero: the capabilities go with root
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    # A process that changed its user id without exec is not dumpable: its /proc/self would belong to root.
    # As after exec, it owns its own /proc entries again (nothing of the grader's is in its memory).
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    for name, value in (("RLIMIT_AS", box["memory_bytes"]), ("RLIMIT_NPROC", box["processes"]),
                        ("RLIMIT_FSIZE", box["file_bytes"]), ("RLIMIT_CORE", 0)):
        limit = getattr(resource, name)
        resource.setrlimit(limit, (int(value), int(value)))


def _become_kernel(request: dict) -> None:
    """Replace the environment, reseed, and run ipykernel in this interpreter (returns when the kernel ends)."""
    import random
    import numpy
    import torch
    os.environ.clear()
    os.environ.update(request["env"])
    # Every fork starts from the template's generators: each kernel draws its own state.
    random.seed()
    numpy.random.seed()
    torch.seed()
    threads = int(request["env"].get("OMP_NUM_THREADS", "1") or 1)
    if threads > 1:
        torch.set_num_threads(threads)
    for name in [m for m in sys.modules if m == "autograder" or m.startswith("autograder.")]:
        del sys.modules[name]       # as in a fresh kernel, where the grader's package is not imported
    sys.argv = list(request["argv"])
    sys.path[0] = os.getcwd()
    from ipykernel import kernelapp
    kernelapp.IPKernelApp.launch_instance(argv=sys.argv[1:])


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else None)
