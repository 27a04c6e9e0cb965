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

import time
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Dict, Integer, Unicode

from . import bridge, kernel, notebooks, outcome, sandbox, verdicts

KERNEL_DIED, TIMED_OUT = kernel.DIED, kernel.TIMEOUT
STOPPED = {"kernel-died": KERNEL_DIED, "timeout": TIMED_OUT}


class GradeOutsideKernel(NbGraderPreprocessor):
    cell_timeout = Integer(60, help="Seconds one cell (or one test cell's checks) may run.").tag(config=True)
    notebook_timeout = Integer(900, help="Seconds the whole notebook may run.").tag(config=True)
    sandboxed = Bool(None, allow_none=True,
                     help="Run the kernel in the sandbox; None: wherever the sandbox is available.").tag(config=True)
    course_id = Unicode("attention", help="The gradebook's course id.").tag(config=True)
    test_sources = Dict(help="grade id -> source of the course's test cells; empty: read from the gradebook.")
    cwd = Unicode("", help="Unsandboxed only: the kernel's working directory (default: an empty one).")

    def preprocess(self, nb: NotebookNode, resources: dict):
        sources = dict(self.test_sources) or _gradebook_test_sources(resources, self.course_id)
        sandboxed = self.sandboxed if self.sandboxed is not None else not sandbox.unavailable()
        k = kernel.pool(sandboxed).take(Path(self.cwd) if self.cwd and not sandboxed else None)
        deadline = time.monotonic() + self.notebook_timeout
        cell_deadline = [deadline]
        peer = bridge.Peer(lambda text: k.request(text, deadline=cell_deadline[0], on_input=peer.handle))
        stopped: bridge.PeerGone | None = None
        count = 0
        try:
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                cell.outputs = []
                test = notebooks.is_autograded_test(cell) and notebooks.grade_id(cell) in sources
                if stopped is not None:
                    if test:
                        cell.outputs = [_stopped_output(stopped, ran=False)]
                    continue
                cell_deadline[0] = min(time.monotonic() + self.cell_timeout, deadline)
                try:
                    if test:
                        cell.outputs = verdicts.run(sources[notebooks.grade_id(cell)], peer)
                    else:
                        count += 1
                        cell.execution_count = count
                        cell.outputs = k.run_cell(cell.source, deadline=cell_deadline[0])
                except bridge.PeerGone as gone:
                    if gone.status not in STOPPED:        # the kernel lives but cannot be graded: this cell fails
                        cell.outputs = [verdicts.error_output("GradingError", str(gone))]
                        continue
                    stopped = gone
                    cell.outputs = getattr(gone, "outputs", []) + [_stopped_output(gone, ran=True)]
        finally:
            k.kill()
        return nb, resources


def status_of(nb: NotebookNode) -> str:
    """How the grading of a notebook this preprocessor ran ended, as the Status's name
    (course-error before kernel-died before timeout before ok)."""
    return outcome.status_of(nb).value


def _stopped_output(gone: bridge.PeerGone, *, ran: bool) -> NotebookNode:
    reason = str(gone) if ran else f"not run: an earlier cell stopped the kernel ({gone})"
    return verdicts.error_output(STOPPED[gone.status], reason)


def _gradebook_test_sources(resources: dict, course_id: str) -> dict[str, str]:
    """The course's autograded test cells of this notebook, as nbgrader stored them from the source."""
    from nbgrader.api import Gradebook
    info = resources["nbgrader"]
    with Gradebook(info["db_url"], course_id) as gb:
        nb = gb.find_notebook(info["notebook"], info["assignment"])
        graded = {c.name for c in nb.grade_cells if c.cell_type == "code"}
        return {c.name: c.source for c in nb.source_cells if c.name in graded and c.name not in
                {s.name for s in nb.solution_cells}}
