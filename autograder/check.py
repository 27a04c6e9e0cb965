"""`check`: what a self-learner runs on a notebook anywhere on disk.

The notebook runs in a fresh kernel with its test cells replaced by the course's own (the released
ones, or with `--hidden` the instructor's, hidden checks included), as nbgrader does when it grades.
Each test cell is scored by nbgrader's own rule.
"""
from __future__ import annotations

import copy
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.utils import determine_grade

from . import notebooks, paths
from .notebooks import NotebookError, identify_lesson
from .preprocessors import GradeOutsideKernel, status_of
from .settings import DEFAULT

CELL_TIMEOUT = DEFAULT.cell_timeout


@dataclass
class TestResult:
    name: str
    function: str
    points: float
    max_points: float
    passed: bool
    message: str = ""


@dataclass
class Report:
    notebook: str
    lesson: str
    tests: list[TestResult] = field(default_factory=list)
    status: str = "ok"

    @property
    def score(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.max_points for t in self.tests)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "lesson": self.lesson, "status": self.status, "score": self.score,
                "max_score": self.max_score, "tests": [asdict(t) for t in self.tests]}


def with_course_tests(student: NotebookNode, source: NotebookNode) -> NotebookNode:
    """The student's notebook with every test cell taken from `source`, as nbgrader's OverwriteCells does.

    Test cells the student edited are overwritten, deleted ones come back after the answer they test,
    and a copied grade id is stripped so a duplicate cannot count twice.
    """
    nb = copy.deepcopy(student)
    tests = {notebooks.grade_id(c): c for c in source.cells if notebooks.is_autograded_test(c)}
    seen: set[str] = set()
    for cell in nb.cells:
        gid = notebooks.grade_id(cell)
        if gid in seen or (gid and notebooks.is_autograded_test(cell) and gid not in tests):
            cell.metadata.pop("nbgrader", None)
        elif gid in tests:
            cell.update(cell_type="code", source=tests[gid].source, metadata=copy.deepcopy(tests[gid].metadata))
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
            seen.add(gid)
    for gid, test in tests.items():
        if gid not in seen:
            ids = [notebooks.grade_id(c) for c in nb.cells]
            answer = notebooks.tested_function(test)
            at = ids.index(answer) + 1 if answer in ids else len(nb.cells)
            nb.cells.insert(at, copy.deepcopy(test))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _message(cell: NotebookNode) -> str:
    for out in cell.outputs:
        if out.output_type == "error":
            return out.evalue if out.ename == "CheckFailed" else f"{out.ename}: {out.evalue}".strip().rstrip(":")
        if out.output_type == "stream" and out.name == "stderr":
            return "wrote to stderr: " + out.text.strip().splitlines()[-1][:200] if out.text.strip() else "wrote to stderr"
    return ""


def score_tests(executed: NotebookNode, source: NotebookNode) -> list[TestResult]:
    """One result per autograded test cell of the source, scored as nbgrader scores it."""
    by_id = notebooks.cells_by_id(executed)
    results = []
    for test in source.cells:
        if not notebooks.is_autograded_test(test):
            continue
        gid = notebooks.grade_id(test)
        cell = by_id[gid]
        points, max_points = determine_grade(cell)
        results.append(TestResult(name=gid, function=notebooks.tested_function(test), points=points or 0.0,
                                  max_points=max_points, passed=points == max_points, message=_message(cell)))
    return results


def execute(nb: NotebookNode, source: NotebookNode, cwd: Path, *, timeout: int = CELL_TIMEOUT,
            sandboxed: bool = False) -> str:
    """Run the student's cells in a fresh kernel and the course's tests outside it, as the grader does:
    unsandboxed in `cwd` by default (this is the student's own code, on the student's own machine), or
    sandboxed as `grade` runs it.

    Returns the notebook's Status value.
    """
    tests = {notebooks.grade_id(c): c.source for c in source.cells if notebooks.is_autograded_test(c)}
    GradeOutsideKernel(cell_timeout=timeout, test_sources=tests, sandboxed=sandboxed,
                       cwd="" if sandboxed else str(cwd)).preprocess(nb, {})
    return status_of(nb)


def check(path: str | Path, *, hidden: bool = False, device: str | None = None, timeout: int = CELL_TIMEOUT,
          sandboxed: bool = False) -> Report:
    """Execute a notebook with the course's tests and score it. Raises NotebookError if it cannot be read."""
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise NotebookError("--device cuda was asked for, but CUDA is not available on this machine")
    path = Path(path).resolve()
    student = notebooks.read(path)
    lesson = identify_lesson(path, student)
    if hidden:
        if not paths.solution_path(lesson).is_file():
            raise NotebookError(f"--hidden needs the instructor's solutions/{lesson}.ipynb, which is not here")
        source = notebooks.read(paths.solution_path(lesson))
    else:
        source = notebooks.read(paths.lesson_path(lesson))
    nb = with_course_tests(student, source)
    if device:
        os.environ["ATTENTION_CHECK_DEVICE"] = device
    status = execute(nb, source, path.parent, timeout=timeout, sandboxed=sandboxed)
    return Report(notebook=str(path), lesson=lesson, tests=score_tests(nb, source), status=status)


def print_table(report: Report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Messages hold code such as `[x_i; c_{i-1}]`: printed as text, never read as rich markup.
    table = Table(title=escape(f"{Path(report.notebook).name}  ({report.lesson})"), title_justify="left")
    for col in ("function", "points", "result", "message"):
        table.add_column(col, overflow="fold")
    for t in report.tests:
        result = "[green]pass[/]" if t.passed else "[red]FAIL[/]"
        table.add_row(escape(t.function), f"{t.points:g} / {t.max_points:g}", result, escape(t.message))
    console = Console()
    console.print(table)
    if report.status != "ok":
        console.print(f"[red]status: {report.status}[/]")
    console.print(f"score: {report.score:g} / {report.max_score:g} (autograded tests; written answers are graded by hand)")


def main(*, notebook: str, hidden: bool = False, as_json: bool = False, device: str | None = None) -> int:
    try:
        report = check(notebook, hidden=hidden, device=device)
    except NotebookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_table(report)
    return 0 if report.status == "ok" and all(t.passed for t in report.tests) else 1
