"""The walls around a student's kernel while it is graded (Linux, run as root).

The kernel runs in its own mount, PID, network, IPC and UTS namespaces, chrooted into a fresh root that
holds only the system directories (read-only), the Python installation, the lessons' helper package
`lessonkit`, and the kernel's own empty working directory. It runs as a user id of its own with no
capabilities, under limits on memory, processes and file size. The repository (solutions/, the hidden
checks, the tests), the course folder (gradebook, hidden tests, other students' files) and the network
are not there. When the grader kills the namespace's first process, the kernel, every process it
started dies with it, detached ones included.

Elsewhere (not root, not Linux, no util-linux) `unavailable()` says why and the kernel runs unsandboxed.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from .settings import Limits

TOOLS = ("unshare", "chroot", "setpriv", "prlimit", "env", "mount")
SYSTEM_DIRS = ("/usr", "/etc", "/sys")
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
DEVICES = ("null", "zero", "random", "urandom", "full")


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


UID_SPAN = 2**24


def new_uid() -> int:
    """A user id no other kernel uses: it owns the kernel's files and caps its processes.

    Drawn from [base, base + 2^24), base 200000 or $ATTENTION_SANDBOX_UID_BASE (a test tells its kernels apart).
    """
    return int(os.environ.get("ATTENTION_SANDBOX_UID_BASE", 200_000)) + secrets.randbelow(UID_SPAN)


_SCRIPT = r"""
set -eu
R=$1 W=$2 U=$3; shift 3
mount -t tmpfs -o mode=0755,size=16m tmpfs "$R"
# The empty scratch folders first: what is bound next may live under /tmp (a clone of the course there).
mkdir -p "$R/dev" "$R/proc" "$R/tmp"
mount -t tmpfs -o mode=1777,size=@TMP_BYTES@ tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755,size=1m tmpfs "$R/dev"
for n in @DEVICES@; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
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
# Not exec: this root shell stays the namespace's first process, so the kernel cannot kill it, and when it
# dies (its parent, unshare, takes it down with the grader) every process of the namespace dies with it.
chroot "$R" setpriv --reuid="$U" --regid="$U" --clear-groups --no-new-privs --inh-caps=-all \
  --bounding-set=-all prlimit --as=@MEMORY@ --nproc=@PROCESSES@ --fsize=@FILE_BYTES@ --core=0 -- \
  env -i -C "$W" "$@"
"""


def command(argv: list[str], env: dict[str, str], *, root: Path, workdir: Path, uid: int,
            limits: Limits = Limits()) -> list[str]:
    """The command line that runs `argv` with `env` inside the sandbox (`root` and `workdir` must exist)."""
    values = {"SYSTEM_DIRS": " ".join(SYSTEM_DIRS), "VISIBLE": " ".join(_visible_paths()),
              "ROOT_LINKS": " ".join(ROOT_LINKS), "DEVICES": " ".join(DEVICES), "TMP_BYTES": limits.tmp_bytes,
              "MEMORY": limits.memory_bytes, "PROCESSES": limits.processes, "FILE_BYTES": limits.file_bytes}
    script = _SCRIPT
    for name, value in values.items():
        script = script.replace(f"@{name}@", str(value))
    return ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--ipc", "--uts",
            "sh", "-c", script, "sandbox", str(root), str(workdir), str(uid),
            *[f"{k}={v}" for k, v in env.items()], *argv]

