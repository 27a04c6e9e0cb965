"""The walls around a student's kernel while it is graded (Linux, run as root).

The kernel runs in its own mount, PID, network, IPC and UTS namespaces, chrooted into a fresh root that
holds only the system directories (read-only), the Python installation, the lessons' helper package
`lessonkit`, and the kernel's own empty working directory. It runs as a user id of its own with no
capabilities, under limits on memory, processes and file size. The repository (solutions/, the hidden
checks, the tests), the course folder (gradebook, hidden tests, other students' files) and the network
are not there. When the grader kills the namespace's first process, the kernel, every process it
started dies with it, detached ones included.

Where the kernel cannot reach: its working directory is a size-limited tmpfs (filling it never fills the
grader's disk), and a cgroup of its own (v1: memory, pids, cpu) bounds the memory of all its processes,
memfd and tmpfs pages included, their number, and their CPU share (all of them together weigh as one
grader process); the cgroup is removed when the kernel is killed. Where cgroups are not writable,
`Cgroup.why_not` says so and the rlimits alone apply. The NVIDIA device nodes and /dev/dri are bound
when present, so CUDA works in the kernel. `check_hidden` refuses (SandboxError) a repository or course
folder that lies under a path the sandbox shows (a course under /usr). The source paths of what is bound
(the Python installation, the virtual environment, lessonkit) are still named in /proc/self/mountinfo:
their locations are known to the kernel, nothing else under them is mounted.

Elsewhere (not root, not Linux, no util-linux) `unavailable()` says why and the kernel runs unsandboxed.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .settings import Limits

TOOLS = ("unshare", "chroot", "setpriv", "prlimit", "env", "mount")
SYSTEM_DIRS = ("/usr", "/etc", "/sys")
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "random", "urandom", "full")
# What CUDA needs, bound when present: the NVIDIA device nodes and the render nodes.
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("memory", "pids", "cpu")


class SandboxError(RuntimeError):
    """The sandbox cannot be built safely here (the grader reports it; it does not grade unsandboxed)."""


def mount_workdir(workdir: Path, limits: Limits) -> bool:
    """Put a size-limited tmpfs on `workdir`; False (the host disk stays below it) where that fails."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0700,size={limits.workdir_bytes},nosuid,nodev",
                           "tmpfs", str(workdir)], capture_output=True)
    return done.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


class Cgroup:
    """One kernel's cgroup (v1: memory, pids and cpu), made before the kernel starts, removed when it ends.

    Memory counts every page the kernel's processes charge, memfd and tmpfs pages included, so memory
    outside RLIMIT_AS is bounded too; pids bounds its processes whatever their user; cpu.shares gives a
    burst of busy children the share of one process, not of the machine.
    """
    why_not = ""        # why the last create() returned None

    def __init__(self, paths: dict[str, Path]):
        self.paths = paths

    @classmethod
    def create(cls, limits: Limits) -> "Cgroup | None":
        """A new cgroup with `limits`, or None (and `Cgroup.why_not` says why) where cgroups v1 are not writable."""
        name = f"attention-{os.getpid()}-{secrets.token_hex(6)}"
        cls.sweep()
        paths: dict[str, Path] = {}
        settings = {"memory": {"memory.limit_in_bytes": limits.cgroup_memory_bytes,
                               "memory.memsw.limit_in_bytes": limits.cgroup_memory_bytes,
                               "memory.swappiness": 0},
                    "pids": {"pids.max": limits.processes},
                    "cpu": {"cpu.shares": limits.cpu_shares}}
        try:
            for controller in CGROUP_CONTROLLERS:
                base = CGROUP_ROOT / controller
                if not (base / "cgroup.procs").exists():
                    raise OSError(f"{base} is not a cgroup v1 hierarchy")
                path = base / name
                path.mkdir()
                paths[controller] = path
                for key, value in settings[controller].items():
                    try:
                        (path / key).write_text(str(value))
                    except OSError:
                        if key in ("memory.memsw.limit_in_bytes", "memory.swappiness"):
                            continue        # no swap accounting here: the memory limit alone
                        raise
        except OSError as error:
            cls(paths).destroy()
            Cgroup.why_not = f"no cgroup for the kernel ({error}): memory, processes and CPU bounded by rlimits only"
            return None
        return cls(paths)

    @staticmethod
    def sweep() -> None:
        """Remove the empty cgroups of grading processes that died without cleaning up."""
        for controller in CGROUP_CONTROLLERS:
            for path in (CGROUP_ROOT / controller).glob("attention-*-*"):
                try:
                    owner = int(path.name.split("-")[1])
                    os.kill(owner, 0)
                    continue            # its grader is alive: it removes it
                except (ValueError, IndexError):
                    continue
                except ProcessLookupError:
                    pass
                except OSError:
                    continue
                try:
                    path.rmdir()        # fails while processes are in it: left alone
                except OSError:
                    pass

    def enter(self) -> None:
        """In the child, before exec: this process (and all it starts) joins the cgroup."""
        pid = str(os.getpid()).encode()
        for path in self.paths.values():
            fd = os.open(path / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def out_of_memory(self) -> bool:
        """Did the memory limit kill one of its processes?"""
        try:
            text = (self.paths["memory"] / "memory.oom_control").read_text()
        except (KeyError, OSError):
            return False
        return any(line.split()[:1] == ["oom_kill"] and int(line.split()[1]) > 0 for line in text.splitlines())

    def destroy(self) -> None:
        """Kill whatever is still in the cgroup, then remove it."""
        for path in self.paths.values():
            for _ in range(50):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.paths = {}


def unavailable() -> str:
    """Why the kernel cannot be sandboxed here, or "" when it can."""
    if not sys.platform.startswith("linux"):
        return "the sandbox needs Linux"
    if os.geteuid() != 0:
        return "the sandbox needs root (to drop the kernel to a user id of its own)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"the sandbox needs util-linux and coreutils: {', '.join(missing)} not found"
    return ""


def _visible_paths() -> list[str]:
    """What the kernel needs besides the system: Python, the virtual environment, lessonkit."""
    import lessonkit
    needed = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
              str(Path(lessonkit.__file__).resolve().parent)}
    return sorted(p for p in needed if not any(p != q and p.startswith(q + os.sep) for q in needed))


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def check_hidden(*private: Path) -> None:
    """Raise SandboxError when the repository or a private folder (the course) would be visible in the sandbox.

    The sandbox shows the system directories and what the kernel needs; a course checked out under /usr
    (or a folder that holds the virtual environment) would be shown with them.
    """
    repo = os.path.realpath(Path(__file__).resolve().parents[1])
    shown = [*SYSTEM_DIRS, *_visible_paths()]
    for folder in (repo, *(os.path.realpath(p) for p in private)):
        for top in shown:
            if _under(folder, top):
                raise SandboxError(f"refusing to sandbox: {folder} lies under {top}, which the sandbox shows to the "
                                   f"kernel; move the course (or the repository) out of it")


def _gpu_devices() -> list[str]:
    import glob
    found = []
    for pattern in GPU_DEVICES:
        found += sorted(glob.glob(pattern))
    return found


UID_SPAN = 2**24


def new_uid() -> int:
    """A user id no other kernel uses: it owns the kernel's files and caps its processes.

    Drawn from [base, base + 2^24), base 200000 or $ATTENTION_SANDBOX_UID_BASE (a test tells its kernels apart).
    """
    return int(os.environ.get("ATTENTION_SANDBOX_UID_BASE", 200_000)) + secrets.randbelow(UID_SPAN)


# The root: run as the namespace's first process (or its child) with the root folder and the working
# directory as $1 and $2. Shared by the started kernel (`command`) and the forked one (`fork_spec`).
_ROOT_SCRIPT = r"""
set -eu
R=$1 W=$2
mount -t tmpfs -o mode=0755,size=16m tmpfs "$R"
# The empty scratch folders first: what is bound next may live under /tmp (a clone of the course there).
mkdir -p "$R/dev" "$R/proc" "$R/tmp"
mount -t tmpfs -o mode=1777,size=@TMP_BYTES@ tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755,size=1m tmpfs "$R/dev"
for n in @DEVICES@; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
for d in @GPU@; do
  if [ -d "$d" ]; then mkdir -p "$R$d"; else touch "$R$d"; fi; mount --bind "$d" "$R$d"
done
ln -s /proc/self/fd "$R/dev/fd"
mkdir -p "$R/dev/shm"
mount -t tmpfs -o mode=1777,size=@TMP_BYTES@ tmpfs "$R/dev/shm"
ro() { mkdir -p "$R$1"; mount --bind "$1" "$R$1"; mount -o remount,bind,ro,nosuid,nodev "$R$1"; }
for d in @SYSTEM_DIRS@ @VISIBLE@; do [ -e "$d" ] && ro "$d"; done
for l in @ROOT_LINKS@; do
  if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; elif [ -d "/$l" ]; then ro "/$l"; fi
done
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mkdir -p "$R$W"; mount --bind "$W" "$R$W"
"""

_SCRIPT = _ROOT_SCRIPT + r"""
U=$3; shift 3
# Not exec: this root shell stays the namespace's first process, so the kernel cannot kill it, and when it
# dies (its parent, unshare, takes it down with the grader) every process of the namespace dies with it.
chroot "$R" setpriv --reuid="$U" --regid="$U" --clear-groups --no-new-privs --inh-caps=-all \
  --bounding-set=-all prlimit --as=@MEMORY@ --nproc=@PROCESSES@ --fsize=@FILE_BYTES@ --core=0 -- \
  env -i -C "$W" "$@"
"""


def command(argv: list[str], env: dict[str, str], *, root: Path, workdir: Path, uid: int,
            limits: Limits = Limits()) -> list[str]:
    """The command line that runs `argv` with `env` inside the sandbox (`root` and `workdir` must exist)."""
    return ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--ipc", "--uts",
            "sh", "-c", _filled(_SCRIPT, limits), "sandbox", str(root), str(workdir), str(uid),
            *[f"{k}={v}" for k, v in env.items()], *argv]


def fork_spec(*, root: Path, workdir: Path, uid: int, limits: Limits = Limits()) -> dict:
    """The same walls for a kernel forked from a warm template (`forkserver`): the script that builds the
    root, and what the kernel process itself takes (chroot, user id, rlimits)."""
    return {"script": _filled(_ROOT_SCRIPT, limits), "root": str(root), "workdir": str(workdir), "uid": uid,
            "memory_bytes": limits.memory_bytes, "processes": limits.processes, "file_bytes": limits.file_bytes}


def _filled(script: str, limits: Limits) -> str:
    values = {"SYSTEM_DIRS": " ".join(SYSTEM_DIRS), "VISIBLE": " ".join(_visible_paths()),
              "ROOT_LINKS": " ".join(ROOT_LINKS), "DEVICES": " ".join(DEVICES),
              "GPU": " ".join(_gpu_devices()), "TMP_BYTES": limits.tmp_bytes,
              "MEMORY": limits.memory_bytes, "PROCESSES": limits.processes, "FILE_BYTES": limits.file_bytes}
    for name, value in values.items():
        script = script.replace(f"@{name}@", str(value))
    return script
