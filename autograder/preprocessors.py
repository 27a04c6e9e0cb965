"""The grading step, plugged into nbgrader in place of its `Execute` preprocessor.

`GradeOutsideKernel` runs the student's cells in a fresh kernel (sandboxed where possible, started ahead
of time with torch imported) and computes every test cell's verdict in this process (`verdicts.py`).
It writes outputs exactly where nbgrader's Execute would, so nbgrader's SaveAutoGrades scores them,
keeps the gradebook and writes the feedback as usual. Unlike Execute:
  - a kernel that dies or runs past its time keeps the points already proven, and every test that
    did not run gets an error output (no points) that says why;
  - a test cell's source comes from the course (nbgrader's gradebook, or the given source notebook),
    never from the student's file.
"""
from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Dict, Integer, Unicode

from . import bridge, kernel, notebooks, outcome, sandbox, verdicts
from .settings import DEFAULT

KERNEL_DIED, TIMED_OUT = kernel.DIED, kernel.TIMEOUT
STOPPED = {"kernel-died": KERNEL_DIED, "timeout": TIMED_OUT}
log = logging.getLogger("autograder.grading")
# One secret seed per grading process; ATTENTION_GRADING_SEED fixes it (tests, reproducing a verdict).
RUN_SEED = int(os.environ.get("ATTENTION_GRADING_SEED") or secrets.randbelow(2**31))


class GradeOutsideKernel(NbGraderPreprocessor):
    cell_timeout = Integer(DEFAULT.cell_timeout, help="Seconds one cell (or one test cell's checks) may run.").tag(config=True)
    notebook_timeout = Integer(DEFAULT.notebook_timeout, help="Seconds the whole notebook may run.").tag(config=True)
    sandboxed = Bool(None, allow_none=True,
                     help="Run the kernel in the sandbox; None: wherever the sandbox is available.").tag(config=True)
    course_id = Unicode(DEFAULT.course_id, help="The gradebook's course id.").tag(config=True)
    test_sources = Dict(help="grade id -> source of the course's test cells, in the course's order; empty: read "
                             "from the gradebook (in the order of the course folder's source notebook).")
    seed = Integer(None, allow_none=True, help="The hidden checks' seed; None: this process's secret one.")
    cwd = Unicode("", help="Unsandboxed only: the kernel's working directory (default: an empty one).")

    def preprocess(self, nb: NotebookNode, resources: dict):
        sources = dict(self.test_sources) or _gradebook_test_sources(resources, self.course_id, self.config)
        sandboxed = self.sandboxed if self.sandboxed is not None else not sandbox.unavailable()
        try:
            k = kernel.pool(sandboxed).take(Path(self.cwd) if self.cwd and not sandboxed else None)
        except (bridge.PeerGone, Exception) as e:     # no student code has run: the grader's failure
            log.error("the kernel could not start: %s", e)
            for cell in nb.cells:
                if notebooks.is_autograded_test(cell):
                    cell.outputs = [_course_failure(f"the grader could not start a kernel ({e})")]
            return nb, resources
        seed = RUN_SEED if self.seed is None else self.seed
        deadline = time.monotonic() + self.notebook_timeout
        cell_deadline = [deadline]
        peer = bridge.Peer(lambda text: k.request(text, deadline=cell_deadline[0], on_input=peer.handle))
        course_order = list(sources)
        tests: dict[str, NotebookNode] = {}           # grade id -> its first test cell in the notebook
        for c in nb.cells:
            if notebooks.is_autograded_test(c) and notebooks.grade_id(c) in sources:
                tests.setdefault(notebooks.grade_id(c), c)
        done: set[str] = set()

        def run_test(gid: str) -> bridge.PeerGone | None:
            """One test cell's verdict; returns why the kernel stopped, if it did."""
            done.add(gid)
            cell_deadline[0] = min(time.monotonic() + self.cell_timeout, deadline)
            try:
                tests[gid].outputs = verdicts.run(sources[gid], peer, seed=seed)
            except bridge.PeerGone as gone:
                if gone.status not in STOPPED:        # the kernel lives but cannot be graded: this test fails
                    tests[gid].outputs = [verdicts.error_output("GradingError", str(gone))]
                    return None
                tests[gid].outputs = [_stopped_output(gone, ran=True)]
                return gone
            return None

        stopped: bridge.PeerGone | None = None
        count = 0
        try:
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                gid = notebooks.grade_id(cell)
                if notebooks.is_autograded_test(cell) and gid in sources and tests[gid] is not cell:
                    cell.outputs = []               # a copy of a test cell: never run, never scored twice
                    continue
                if tests.get(gid) is cell:
                    # Every test the course puts before this one runs first (once), then this one.
                    for earlier in course_order[:course_order.index(gid) + 1]:
                        if stopped is None and earlier in tests and earlier not in done:
                            stopped = run_test(earlier)
                    continue
                cell.outputs = []
                if stopped is not None:
                    continue
                count += 1
                cell.execution_count = count
                cell_deadline[0] = min(time.monotonic() + self.cell_timeout, deadline)
                try:
                    cell.outputs = k.run_cell(cell.source, deadline=cell_deadline[0])
                except bridge.PeerGone as gone:
                    if gone.status not in STOPPED:
                        cell.outputs = [verdicts.error_output("GradingError", str(gone))]
                        continue
                    stopped = gone
                    cell.outputs = getattr(gone, "outputs", []) + [_stopped_output(gone, ran=True)]
        finally:
            k.kill()
        for gid, cell in tests.items():
            if gid not in done and stopped is not None:      # never ran: an earlier cell stopped the kernel
                cell.outputs = [_stopped_output(stopped, ran=False)]
        return nb, resources


def status_of(nb: NotebookNode) -> str:
    """How the grading of a notebook this preprocessor ran ended, as the Status's name
    (course-error before kernel-died before timeout before ok)."""
    return outcome.status_of(nb).value


def _stopped_output(gone: bridge.PeerGone, *, ran: bool) -> NotebookNode:
    reason = str(gone) if ran else f"not run: an earlier cell stopped the kernel ({gone})"
    return verdicts.error_output(STOPPED[gone.status], reason)


def _course_failure(reason: str) -> NotebookNode:
    return verdicts.error_output(outcome.COURSE_FAILURE, f"the course failed, not your code: {reason}")


def _gradebook_test_sources(resources: dict, course_id: str, config=None) -> dict[str, str]:
    """The course's autograded test cells of this notebook, as nbgrader stored them from the source, in the
    order of the course folder's source notebook (the gradebook keeps no order)."""
    from nbgrader.api import Gradebook
    info = resources["nbgrader"]
    with Gradebook(info["db_url"], course_id) as gb:
        nb = gb.find_notebook(info["notebook"], info["assignment"])
        graded = {c.name for c in nb.grade_cells if c.cell_type == "code"}
        sources = {c.name: c.source for c in nb.source_cells if c.name in graded and c.name not in
                   {s.name for s in nb.solution_cells}}
    order = _source_order(info["assignment"], info["notebook"], config)
    return dict(sorted(sources.items(), key=lambda item: order.get(item[0], len(order))))


def _source_order(assignment: str, notebook: str, config) -> dict[str, int]:
    """grade id -> position in the course folder's source notebook (else the course's own solutions)."""
    from nbgrader.coursedir import CourseDirectory
    from . import paths
    candidates = [paths.solution_path(notebook)]
    if config is not None:
        coursedir = CourseDirectory(config=config)
        candidates.insert(0, Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) /
                          f"{notebook}.ipynb")
    for path in candidates:
        try:
            cells = notebooks.read(path).cells
        except notebooks.NotebookError:
            continue
        return {notebooks.grade_id(c): i for i, c in enumerate(cells) if notebooks.grade_id(c)}
    return {}
