"""A student's kernel as the grader sees it: started ahead of time, driven cell by cell, killed at the end.

`Kernel` starts an IPython kernel (in the sandbox where `sandbox.unavailable()` is empty), imports torch
and installs the bridge before any student code runs, executes the student's cells with limits on time
and output, and carries the grader's bridge requests. Every wait polls the kernel's process, so a kernel
that dies or hangs ends the wait at once or at its deadline; `kill()` ends the kernel and everything it
started. `KernelPool` keeps the next kernel starting while the current one is graded.
"""
from __future__ import annotations

import atexit
import ctypes
import inspect
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import zmq
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from . import bridge, forkserver, sandbox
from .outcome import Status
from .settings import DEFAULT

START_TIMEOUT = DEFAULT.kernel_start_timeout
log = logging.getLogger("autograder.kernel")
MAX_OUTPUT_CHARS = 1_000_000     # per cell: a flood is cut here, the rest is dropped
TRUNCATED = "\n[output truncated by the grader]\n"
TIMEOUT, DIED = "CellTimeoutError", "DeadKernelError"

_SETUP = """\
import sys as _sys, types as _types
import numpy, torch
_bridge = _types.ModuleType("__attention_bridge__")
exec(compile({source!r}, "<attention-bridge>", "exec"), _bridge.__dict__)
_sys.modules["__attention_bridge__"] = _bridge
_bridge.start_in_kernel(get_ipython())
__attention_bridge__ = _bridge
del _sys, _types, _bridge
"""


def _die_with_parent() -> None:
    """In the child, before exec: a kernel must not outlive the grader process that started it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)     # PR_SET_PDEATHSIG
    except OSError:
        pass


start_method = forkserver.start_method


class _Templates:
    """This process's warm template (one per grading process), started on first use, remade if it died."""

    def __init__(self):
        self.template: forkserver.Template | None = None
        self.scratch: Path | None = None
        self.why_not = ""           # why the last start failed: this process starts kernels fresh from then on
        self.shared_failed = False  # the template of $ATTENTION_KERNEL_TEMPLATE could not be reached

    def get(self) -> forkserver.Template | None:
        """The template, started on first use and waited for while it imports torch; None where it failed
        (`why_not`: this process starts its kernels fresh from then on)."""
        if self.why_not:
            return None
        if self.template is None or not self.template.alive():
            self.close()
            shared = os.environ.get(forkserver.SHARED_ENV)
            if shared and not self.shared_failed:
                try:
                    self.template = forkserver.Template.shared(shared)
                    return self.template
                except forkserver.TemplateError as error:
                    self.shared_failed = True
                    log.warning("%s: this process starts a template of its own", error)
            self.scratch = Path(tempfile.mkdtemp(prefix="attention-template-"))
            try:
                self.template = forkserver.Template(self.scratch)
            except (forkserver.TemplateError, OSError) as error:
                self.failed(error)
                return None
        deadline = time.monotonic() + forkserver.START_TIMEOUT
        try:
            # Waited for, not raced by a fresh kernel: both would import torch at once, on the same cores.
            while not self.template.warm():
                if time.monotonic() > deadline or not self.template.alive():
                    raise forkserver.TemplateError("the template did not finish its imports")
                time.sleep(0.02)
        except forkserver.TemplateError as error:
            self.failed(error)
            return None
        return self.template

    def warm_up(self) -> bool:
        """Start the template now and wait until it has finished its imports; False where it cannot fork."""
        return start_method() == "fork" and self.get() is not None

    def failed(self, error: Exception) -> None:
        self.why_not = str(error)
        log.warning("kernels start fresh in this process: the warm template failed (%s)", error)
        self.close()

    def close(self) -> None:
        if self.template is not None:
            self.template.close()
            self.template = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


_templates = _Templates()
atexit.register(_templates.close)
warm_up = _templates.warm_up


class Kernel:
    def __init__(self, *, sandboxed: bool, cwd: Path | None = None, limits: sandbox.Limits = DEFAULT.limits,
                 start: str | None = None):
        self.sandboxed, self.cwd = sandboxed, cwd
        self.start = start or start_method()        # "fork" or "fresh": the one that ran, once started
        self.how = ""                               # said in the notebook's log: how this kernel started
        self.base = Path(tempfile.mkdtemp(prefix="attention-kernel-"))
        self.workdir = self.base / "work"
        self.workdir.mkdir()
        self.proc: subprocess.Popen | None = None
        self.client: BlockingKernelClient | None = None
        self.context: zmq.Context | None = None
        self.cgroup: sandbox.Cgroup | None = None
        self.workdir_mounted = False
        self._setup_id = ""
        self._iopub_live = False        # has a status message come through the kernel's iopub yet?
        self._stdin_live = False        # has the stdin channel's handshake with the kernel been done?
        self._monitors: list = []
        self._launch(limits)

    # -- life and death ------------------------------------------------------------------------------

    def _launch(self, limits: sandbox.Limits) -> None:
        """Start the kernel's process and queue the setup; returns at once (`ready()` waits for it)."""
        connection = self.workdir / "kernel.json"
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.workdir),
               "LANG": "C.UTF-8", "NBGRADER_EXECUTION": "autograde", "PYTHONDONTWRITEBYTECODE": "1",
               "MPLBACKEND": "module://matplotlib_inline.backend_inline", "MPLCONFIGDIR": str(self.workdir / ".mpl"),
               "IPYTHONDIR": str(self.workdir / ".ipython"), "JUPYTER_PLATFORM_DIRS": "1",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        for name in ("LESSONKIT_QUICK", "ATTENTION_CHECK_DEVICE", "CUDA_VISIBLE_DEVICES"):
            if name in os.environ:
                env[name] = os.environ[name]
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection),
                "--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=CRITICAL"]
        preexec = _die_with_parent
        box = None
        if self.sandboxed:
            sandbox.check_hidden()      # SandboxError: the repository would be visible to the kernel
            uid = sandbox.new_uid()
            # Its working directory on a tmpfs of its own: filling it cannot fill the grader's disk.
            self.workdir_mounted = sandbox.mount_workdir(self.workdir, limits)
            self.cgroup = sandbox.Cgroup.create(limits)
            if self.cgroup is not None:
                cgroup = self.cgroup

                def preexec():
                    _die_with_parent()
                    cgroup.enter()
            write_connection_file(str(connection), transport="ipc", ip=str(self.workdir / "ipc"))
            os.chown(self.workdir, uid, uid)
            os.chown(connection, uid, uid)
            self.workdir.chmod(0o700)
            (self.base / "root").mkdir()
            cmd = sandbox.command(argv, env, root=self.base / "root", workdir=self.workdir, uid=uid, limits=limits)
            popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            box = sandbox.fork_spec(root=self.base / "root", workdir=self.workdir, uid=uid, limits=limits)
        else:
            write_connection_file(str(connection), ip="127.0.0.1")
            cmd, popen_env = argv, env
        # The kernel's own stderr (C-level writes, start-up errors) goes to a file: a pipe nobody reads would
        # block a kernel that writes much; the file is outside the sandbox, capped by its file size limit.
        stderr_path = self.base / "stderr.log"
        stderr_path.touch()
        template = _templates.get() if self.start == "fork" else None
        if template is not None:
            try:
                self.proc = template.fork(argv=["ipykernel_launcher", *argv[3:]], env=env, stderr=str(stderr_path),
                                          cwd=str(self.cwd or self.workdir), sandbox=box,
                                          cgroup=[str(p / "cgroup.procs") for p in self.cgroup.paths.values()]
                                          if self.cgroup is not None else [])
                self.how = ("forked from the warm template the grading processes share" if template.proc is None
                            else "forked from this process's warm template")
            except forkserver.TemplateError as error:
                _templates.failed(error)
                self.how = f"started fresh (the warm template failed: {error})"
        elif self.start == "fork":
            self.how = f"started fresh (the warm template failed: {_templates.why_not})"
        if self.proc is None:
            self.start = "fresh"
            self.how = self.how or "started fresh (a new interpreter)"
            with open(stderr_path, "wb") as stderr:
                self.proc = subprocess.Popen(cmd, env=popen_env, cwd=self.cwd or self.workdir,
                                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                             start_new_session=True, preexec_fn=preexec)
        # A context of the client's own, with a bound on inbound messages set before any socket exists: zmq
        # drops a larger message (and the connection) before jupyter_client could parse it in the grader.
        self.context = zmq.Context()
        self.max_message_bytes = limits.max_message_bytes
        self.context.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
        self.client = BlockingKernelClient(context=self.context)
        self.client.load_connection_file(str(connection))
        self.client.start_channels()
        # zmq drops an oversized message by closing the connection: the monitors see it, and the wait ends.
        # The stdin monitor also says when that channel's handshake is done: the kernel's stdin socket drops a
        # request to a grader it has not met yet, and the kernel would then wait for an answer forever.
        self._monitors = [self.client.iopub_channel.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED),
                          self.client.stdin_channel.socket.get_monitor_socket(
                              zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)]
        # Queued now, run as soon as the kernel is up: torch is imported while the grader does other work.
        self._setup_id = self.client.execute(_SETUP.format(source=inspect.getsource(bridge)), silent=True,
                                             store_history=False)

    def ready(self) -> "Kernel":
        """Wait until the kernel has run its setup (raises PeerGone if it died or did not finish in time)."""
        deadline = time.monotonic() + START_TIMEOUT
        while self._setup_id:
            if not self.alive():        # the grader's trouble, not the student's: not "kernel-died"
                raise bridge.PeerGone(f"the kernel did not start (exit status {self.proc.poll()}): {self._stderr()}",
                                      "autograde-failed")
            if time.monotonic() > deadline:
                raise bridge.PeerGone("the kernel did not start in time", "timeout")
            if self.client.shell_channel.msg_ready() or self.client.shell_channel.socket.poll(200):
                reply = self.client.shell_channel.get_msg(timeout=0)
                if reply["parent_header"].get("msg_id") == self._setup_id:
                    if reply["content"].get("status") != "ok":
                        raise bridge.PeerGone(f"the kernel's setup failed: {reply['content'].get('evalue')}")
                    self._setup_id = ""
        self._await_iopub(deadline)
        self._await_stdin(deadline)
        log.info("the kernel was %s", self.how)
        return self

    def _await_stdin(self, deadline: float) -> None:
        """Wait until the grader's stdin channel has met the kernel's (a forked kernel is up so fast that it
        may not have: 6 of 60 lost their first input request, and the cell then hung to its time limit)."""
        monitor = self._monitors[1]
        while not self._stdin_live:
            if not self.alive():
                raise bridge.PeerGone(f"the kernel did not start (exit status {self.proc.poll()}): {self._stderr()}",
                                      "autograde-failed")
            if time.monotonic() > deadline:
                raise bridge.PeerGone("the kernel's input channel did not connect in time", "timeout")
            if monitor.poll(250):
                self._stdin_live = zmq.EVENT_HANDSHAKE_SUCCEEDED in _events(monitor)

    def _await_iopub(self, deadline: float) -> None:
        """Wait until the kernel's outputs reach the grader. zmq's subscriber may connect after the kernel's
        first messages (a forked kernel answers within a fraction of a second): the status messages of a
        kernel_info request, sent again until one arrives, prove the subscription is in place."""
        iopub = self.client.iopub_channel
        while not self._iopub_live:
            if not self.alive():
                raise bridge.PeerGone(f"the kernel did not start (exit status {self.proc.poll()}): {self._stderr()}",
                                      "autograde-failed")
            if time.monotonic() > deadline:
                raise bridge.PeerGone("the kernel's outputs did not reach the grader in time", "timeout")
            if not (iopub.msg_ready() or iopub.socket.poll(250)):
                self.client.kernel_info()
                continue
            msg = _readable(lambda: iopub.get_msg(timeout=0))
            self._iopub_live = msg.get("msg_type") == "status"

    def _stderr(self) -> str:
        """The last line the kernel wrote to its stderr."""
        try:
            lines = (self.base / "stderr.log").read_bytes()[-4000:].decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """End the kernel and all it started: the namespace dies with its first process (unsandboxed:
        the kernel's process group)."""
        for monitor in getattr(self, "_monitors", []):
            monitor.close(linger=0)
        self._monitors = []
        if self.client is not None:
            self.client.stop_channels()
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.kill()
            self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.destroy()        # kills what is left in it, then removes it
            self.cgroup = None
        if self.context is not None:
            self.context.destroy(linger=0)
            self.context = None
        if self.workdir_mounted:
            sandbox.unmount(self.workdir)
            self.workdir_mounted = False
        try:        # the kernel's stderr goes to the notebook's log (the last 64 KiB of it)
            text = (self.base / "stderr.log").read_bytes()[-65536:].decode(errors="replace").strip()
        except OSError:
            text = ""
        if text:
            log.info("the kernel's stderr:\n%s", text)
        shutil.rmtree(self.base, ignore_errors=True)

    def why_dead(self) -> str:
        code = self.proc.poll() if self.proc else None
        if self.cgroup is not None and self.cgroup.out_of_memory():
            return "the kernel died: it used more memory than a kernel may (files in memory included)"
        if code is None:
            return "the kernel stopped answering"
        if code < 0 or code >= 128:
            sig = -code if code < 0 else code - 128
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            return f"the kernel died (killed by {name}" + (": out of memory?)" if sig == signal.SIGKILL else ")")
        return f"the kernel died (it exited with status {code})"

    # -- running code ---------------------------------------------------------------------------------

    def execute(self, code: str, *, deadline: float, on_output=None, on_input=None, store_history=False,
                silent=False) -> None:
        """Run `code`; pass its outputs to `on_output(msg)` and its stdin prompts to `on_input(prompt) -> str`.

        Raises bridge.PeerGone with status "timeout" at the deadline, "kernel-died" when the process ends.
        """
        if not self.alive():
            raise bridge.PeerGone(self.why_dead())
        client = self.client
        msg_id = client.execute(code, silent=silent, store_history=store_history, allow_stdin=on_input is not None,
                                stop_on_error=False)
        poller = zmq.Poller()
        poller.register(client.iopub_channel.socket, zmq.POLLIN)
        poller.register(client.stdin_channel.socket, zmq.POLLIN)
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise bridge.PeerGone("the time limit was reached", "timeout")
            events = dict(poller.poll(min(200, int(left * 1000) + 1)))
            if not events and not self.alive():
                raise bridge.PeerGone(self.why_dead())
            if any(monitor in events and zmq.EVENT_DISCONNECTED in _events(monitor) for monitor in self._monitors):
                for _ in range(20):         # a kernel that died closes its connections too
                    if not self.alive():
                        raise bridge.PeerGone(self.why_dead())
                    time.sleep(0.05)
                raise bridge.PeerGone(f"the kernel sent a message larger than the grader accepts "
                                      f"({self.max_message_bytes} bytes): its outputs are lost", Status.KERNEL_DIED)
            if client.stdin_channel.socket in events:
                request = self._take(client.stdin_channel, msg_id)
                if request is not None:
                    prompt = str(request["content"].get("prompt", ""))
                    client.input(on_input(prompt) if on_input else "")
            if client.iopub_channel.socket in events:
                msg = self._take(client.iopub_channel, msg_id)
                if msg is None:
                    continue
                if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                    break
                if on_output:
                    _readable(lambda: on_output(msg))
        while client.shell_channel.msg_ready():
            try:
                client.shell_channel.get_msg(timeout=0)
            except Exception:           # read (and dropped) even when it cannot be parsed
                pass

    @staticmethod
    def _take(channel, msg_id: str) -> dict | None:
        """The next message on `channel` if it answers `msg_id` (None for another's). One the grader cannot
        take apart ends the cell (PeerGone, kernel-died), never the grading process."""
        msg = _readable(lambda: channel.get_msg(timeout=0))
        parent = msg.get("parent_header")
        if not isinstance(parent, dict) or parent.get("msg_id") != msg_id:
            return None
        if not isinstance(msg.get("content"), dict):
            raise _unreadable("no content")
        return msg

    def run_cell(self, source: str, *, deadline: float) -> list:
        """A student's cell: its outputs as notebook outputs. On PeerGone, the outputs so far are in `error.outputs`."""
        collector = _Outputs()
        try:
            self.execute(source, deadline=deadline, on_output=collector.add, store_history=True)
        except bridge.PeerGone as gone:
            gone.outputs = collector.outputs
            raise
        return collector.outputs

    def request(self, text: str, *, deadline: float, on_input) -> str:
        """Send one bridge request; returns the kernel's reply (PeerGone if it sends none)."""
        replies = []

        def keep(msg):
            data = msg["content"].get("data", {}) if msg["msg_type"] == "display_data" else {}
            if bridge.MIME in data:
                replies[:] = [data[bridge.MIME]]      # only the last one counts

        # silent: no execute_input or execute_result to send; the reply is display data, which still flows.
        self.execute(f"__attention_bridge__.serve({text!r})", deadline=deadline, on_output=keep, on_input=on_input,
                     silent=True)
        if not replies:
            raise bridge.PeerGone("the grader could not reach your functions in the kernel: does a cell change how "
                                  "IPython runs code, or delete __attention_bridge__?", "autograde-failed")
        return replies[-1]


def _events(monitor) -> list[int]:
    """The events waiting on a zmq monitor socket (read, so they are not seen twice)."""
    from zmq.utils.monitor import recv_monitor_message
    found = []
    while monitor.poll(0):
        try:
            found.append(recv_monitor_message(monitor, flags=zmq.NOBLOCK)["event"])
        except zmq.Again:
            break
    return found


def _readable(step):
    """`step()`, which takes apart a message from the kernel. A message the grader cannot take apart (JSON nested
    past Python's recursion limit, a malformed header or output) raises bridge.PeerGone (kernel-died): like an
    oversized one, it ends the cell with the student's status, not the grader's failure."""
    try:
        return step()
    except Exception as error:
        raise _unreadable(type(error).__name__) from None


def _unreadable(why: str) -> bridge.PeerGone:
    log.warning("the kernel sent a message the grader cannot read: %s", why)
    return bridge.PeerGone(f"the kernel sent a message the grader cannot read ({why}): its outputs are lost",
                           Status.KERNEL_DIED)


class _Outputs:
    """A cell's outputs, as nbclient would record them, with a cap on their size."""

    def __init__(self):
        self.outputs: list = []
        self.chars = 0

    def add(self, msg) -> None:
        kind = msg["msg_type"]
        if kind == "clear_output":
            self.outputs.clear()
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        size = len(str(msg["content"]))
        if self.chars >= MAX_OUTPUT_CHARS:
            return
        self.chars += size
        if self.chars >= MAX_OUTPUT_CHARS:
            self.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=TRUNCATED))
            return
        out = nbformat.v4.output_from_msg(msg)
        if kind == "stream" and self.outputs and self.outputs[-1].get("name") == out.name \
                and self.outputs[-1].output_type == "stream":
            self.outputs[-1].text += out.text
        else:
            self.outputs.append(out)


class KernelPool:
    """Kernels started ahead of time: the next one boots (and imports torch) while the current one is graded.

    A kernel is used for one notebook only, then killed.
    """

    def __init__(self, *, sandboxed: bool):
        self.sandboxed = sandboxed
        self._next: Kernel | None = None

    def take(self, cwd: Path | None = None) -> Kernel:
        """A ready kernel; with `cwd` (unsandboxed only), one started there, not a prestarted one."""
        if cwd is not None:
            return Kernel(sandboxed=False, cwd=cwd).ready()
        k = self._next if self._next is not None and self._next.alive() else Kernel(sandboxed=self.sandboxed)
        # A fresh kernel takes seconds to start: the next one starts now, while this one is graded. A fork
        # takes a fraction of a second: none is kept waiting, with the memory it would hold.
        self._next = Kernel(sandboxed=self.sandboxed) if k.start == "fresh" else None
        try:
            return k.ready()
        except bridge.PeerGone as error:
            k.kill()
            if k.start != "fork" or error.status != Status.AUTOGRADE_FAILED.value:
                raise
            # A fork that could not become a kernel is the template's fault: the process starts its kernels
            # fresh from now on, beginning with this one.
            _templates.failed(error)
        except BaseException:
            k.kill()
            raise
        k = Kernel(sandboxed=self.sandboxed, start="fresh")
        k.how = f"started fresh (a kernel forked from the warm template did not start: {_templates.why_not})"
        try:
            return k.ready()
        except BaseException:
            k.kill()
            raise

    def close(self) -> None:
        if self._next is not None:
            self._next.kill()
            self._next = None


_pools: dict[bool, KernelPool] = {}


def pool(sandboxed: bool) -> KernelPool:
    """This process's pool (one per process: a grading worker keeps it across notebooks)."""
    if sandboxed not in _pools:
        _pools[sandboxed] = KernelPool(sandboxed=sandboxed)
        atexit.register(_pools[sandboxed].close)
    return _pools[sandboxed]
