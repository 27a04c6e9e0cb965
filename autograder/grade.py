"""`grade`: what an instructor runs on a class, SUBMISSIONS/<student>/<lesson>.ipynb.

Every notebook is graded by the real `nbgrader autograde` into nbgrader's SQLite gradebook in OUT,
which stays a normal nbgrader course folder (source/, submitted/, autograded/, feedback/,
gradebook.db). The HTML feedback comes from `nbgrader generate_feedback` with the hidden tests removed.
OUT/grades.csv has one row per submitted file, with a status that says why when it was not graded.
One broken submission never stops the class.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from . import notebooks, paths, sandbox
from .check import identify_lesson
from . import nbgrader_course
from .nbgrader_course import course_api
from .outcome import Status
from .preprocessors import status_of

CSV_COLUMNS = ["student", "lesson", "score", "max_score", "status"]
CELL_TIMEOUT = 60          # seconds; every lesson's test cells take well under one
STATE_FILE = ".grading-state.json"
LOCKED_RETRIES = 3


@dataclass
class Row:
    student: str
    lesson: str
    score: float | None
    max_score: float | None
    status: str  # ok, invalid-notebook, unknown-lesson, duplicate-lesson, timeout, kernel-died, autograde-failed


@dataclass
class Job:
    student: str
    lesson: str
    digest: str


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_lessons(out: Path, lessons: set[str]) -> None:
    """Copy each lesson's source notebook into the course and register it with generate_assignment."""
    api = course_api(out)
    for lesson in sorted(lessons):
        dest = out / "source" / lesson / f"{lesson}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(paths.solution_path(lesson), dest)
        result = api.generate_assignment(lesson)
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment failed for {lesson}:\n{result.get('log', '')}")


def _failure_status(log: str) -> str:
    if "DeadKernelError" in log or "Kernel died" in log or "kernel died" in log:
        return "kernel-died"
    if "CellTimeoutError" in log or "TimeoutError" in log:
        return "timeout"
    return "autograde-failed"


def autograde_one(out: Path, student: str, lesson: str, **options) -> str:
    """Run nbgrader autograde and generate_feedback for one notebook; returns its status.

    `options` go to `course_api` (cell_timeout, sandboxed)."""
    api = course_api(out, **options)
    for _ in range(LOCKED_RETRIES):
        result = api.autograde(lesson, student, force=True)
        # Workers share one SQLite gradebook: a write that found it locked is retried, never lost.
        if result["success"] or "database is locked" not in result.get("log", "") + result.get("error", ""):
            break
    if not result["success"]:
        # Never leave an older grade standing for a regrade that failed.
        from nbgrader.api import Gradebook, MissingEntry
        with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
            try:
                gb.remove_submission(lesson, student)
            except MissingEntry:
                pass
        return _failure_status(result.get("log", "") + result.get("error", ""))
    api.generate_feedback(lesson, student)
    return status_of(notebooks.read(out / "autograded" / student / lesson / f"{lesson}.ipynb"))


def autograded_scores(out: Path, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, float]]:
    """(score, max_score) of the autograded test cells for each (student, lesson), from one gradebook session."""
    from nbgrader.api import Gradebook, MissingEntry
    api = course_api(out)
    scores = {}
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        for student, lesson in keys:
            try:
                nb = gb.find_submission_notebook(lesson, lesson, student)
            except MissingEntry:         # nothing recorded: the row keeps its status, with no score
                continue
            tests = [g for g in nb.grades if g.cell_type == "code"]      # the written answers are markdown
            scores[student, lesson] = sum(g.score for g in tests), sum(g.max_score for g in tests)
    return scores


def _lessons_of(student_dir: Path) -> tuple[list[Row], dict[str, Path]]:
    """The student's notebooks by lesson, and rows for the files that cannot be graded.

    A notebook is matched to a lesson by its file name, or, renamed ("02 (1).ipynb"), by its cells.
    Where two files claim one lesson, the one with the lesson's own name wins (even if it is broken).
    """
    known = set(paths.lesson_names())
    rows, found, renamed = [], {}, {}
    for path in sorted(student_dir.glob("*.ipynb")):
        if path.is_symlink() or not path.is_file():      # a link to the solutions or a classmate: never opened
            rows.append(Row(student_dir.name, path.stem, None, None, Status.REFUSED_FILE.value))
            continue
        try:
            nb = notebooks.read(path)
        except notebooks.NotebookError:
            rows.append(Row(student_dir.name, path.stem, 0.0, None, "invalid-notebook"))
            found.setdefault(path.stem, []).append(None)          # it still claims its lesson
            continue
        try:
            lesson = path.stem if path.stem in known else identify_lesson(path, nb)
        except notebooks.NotebookError:
            rows.append(Row(student_dir.name, path.stem, None, None, "unknown-lesson"))
            continue
        (found if lesson == path.stem else renamed).setdefault(lesson, []).append(path)
    chosen = {}
    for lesson in sorted(set(found) | set(renamed)):
        first, *others = found.get(lesson, []) + renamed.get(lesson, [])
        if first is not None:
            chosen[lesson] = first
        rows += [Row(student_dir.name, p.stem, None, None, "duplicate-lesson") for p in others if p is not None]
    return rows, chosen


def collect(submissions: Path, out: Path) -> tuple[list[Row], list[Job]]:
    """Sort every submitted file into a row that needs no grading (with its status) or a job."""
    rows, jobs = [], []
    tests_digest: dict[str, str] = {}
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.is_symlink()):
        student = student_dir.name
        skipped, chosen = _lessons_of(student_dir)
        rows += skipped
        for lesson, path in chosen.items():
            dest = out / "submitted" / student / lesson / f"{lesson}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest)
            # A changed submission or changed tests (the source notebook) both call for a regrade.
            if lesson not in tests_digest:
                tests_digest[lesson] = _digest(paths.solution_path(lesson))
            jobs.append(Job(student, lesson, _digest(path) + tests_digest[lesson]))
    return rows, jobs


def _run_job(out: Path, job: Job, options: dict) -> tuple[Job, str]:
    import warnings
    warnings.simplefilter("ignore")     # nbgrader's SQLAlchemy warnings are not the instructor's business
    try:
        return job, autograde_one(out, job.student, job.lesson, **options)
    except Exception as e:  # a worker must report, never take the class down
        return job, f"autograde-failed: {type(e).__name__}"


def grade(submissions: Path, out: Path, *, workers: int = 1, force: bool = False, progress: bool = True,
          cell_timeout: int = CELL_TIMEOUT, scheduler: str | None = None, sandboxed: bool | None = None) -> list[Row]:
    """Grade every notebook under `submissions` into the nbgrader course at `out`; returns the rows of grades.csv.

    A cell that runs longer than `cell_timeout` seconds is interrupted and the notebook marked `timeout`.
    Kernels run in the sandbox where it is available (`sandboxed=None`), or as `sandboxed` says.
    With `scheduler` (a Dask scheduler's address) the notebooks are graded on that cluster's workers,
    which need this project installed and `out` on a file system they share; without it, on a local
    pool of `workers` processes. Either way only this process writes grades.csv and the state file.
    """
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions}: no such folder")
    out.mkdir(parents=True, exist_ok=True)
    rows, jobs = collect(submissions, out)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() and not force else {}
    todo = [j for j in jobs if state.get(f"{j.student}/{j.lesson}", {}).get("digest") != j.digest]
    if todo:
        prepare_lessons(out, {j.lesson for j in todo})
    options = {"cell_timeout": cell_timeout, "sandboxed": sandboxed}
    nbgrader_course.write_config(out, **options)
    _run_all(out, todo, workers, progress, state, state_path, options, scheduler)
    status = {(j.student, j.lesson): state[f"{j.student}/{j.lesson}"]["status"] for j in jobs}
    scores = autograded_scores(out, [k for k, st in status.items() if Status(st.split(":")[0]).graded])
    for key, st in status.items():
        rows.append(Row(*key, *scores.get(key, (0.0, None)), st))
    rows.sort(key=lambda r: (r.student, r.lesson))
    write_csv(out / "grades.csv", rows)
    return rows


@contextlib.contextmanager
def _executor(workers: int, scheduler: str | None):
    """Yields (submit, as_completed): a local pool of processes, or a Dask cluster at `scheduler`."""
    if scheduler:
        from dask.distributed import Client, as_completed as dask_completed
        with Client(scheduler) as client:
            # pure=False: the same job submitted again (say after --force) must run again.
            yield (lambda *args: client.submit(*args, pure=False)), dask_completed
        return
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool.submit, as_completed


def _run_all(out, todo, workers, progress, state, state_path, options, scheduler=None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress or not todo) as bar, _executor(workers, scheduler) as (submit, completed):
        task = bar.add_task("grade", total=len(todo), rate="")
        futures = [submit(_run_job, out, job, options) for job in todo]
        for done in completed(futures):
            job, status = done.result()
            state[f"{job.student}/{job.lesson}"] = {"digest": job.digest, "status": status}
            _write_atomically(state_path, json.dumps(state, indent=1, sort_keys=True))
            elapsed = bar.tasks[task].elapsed or 0
            completed_n = bar.tasks[task].completed + 1
            bar.update(task, advance=1, rate=f"{60 * completed_n / elapsed:.1f} nb/min" if elapsed else "")


def _write_atomically(path: Path, text: str) -> None:
    """A grading run killed mid-write leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _inert(cell: str) -> str:
    """A CSV cell a spreadsheet shows as text: a file name such as `=HYPERLINK(...)` must not become a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def write_csv(path: Path, rows: list[Row]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        d = asdict(row)
        d["score"] = "" if d["score"] is None else f"{d['score']:g}"
        d["max_score"] = "" if d["max_score"] is None else f"{d['max_score']:g}"
        writer.writerow({k: _inert(v) for k, v in d.items()})
    _write_atomically(path, text.getvalue())


def print_rows(rows: list[Row], out: Path) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="grades", title_justify="left")
    for col in CSV_COLUMNS:
        table.add_column(col)
    for r in rows:
        colour = "green" if r.status == "ok" else "red"
        table.add_row(escape(r.student), escape(r.lesson), "" if r.score is None else f"{r.score:g}",
                      "" if r.max_score is None else f"{r.max_score:g}", f"[{colour}]{r.status}[/]")
    console = Console()
    console.print(table)
    console.print(f"grades: {out / 'grades.csv'}")
    console.print(f"gradebook: {out / 'gradebook.db'}")
    console.print(f"feedback: {out / 'feedback'}/<student>/<lesson>/<lesson>.html")


def main(*, submissions: str, out: str, workers: int = 1, force: bool = False, scheduler: str | None = None,
         cell_timeout: int = CELL_TIMEOUT, no_sandbox: bool = False) -> int:
    reason = "--no-sandbox was given" if no_sandbox else sandbox.unavailable()
    if reason:
        print(f"warning: NOT SANDBOXED: {reason}. Students' code runs with your rights and can read and change "
              "your files: grade untrusted work as root in a disposable container or VM.", file=sys.stderr)
    try:
        rows = grade(Path(submissions), Path(out), workers=workers, force=force, scheduler=scheduler,
                     cell_timeout=cell_timeout, sandboxed=False if no_sandbox else None)
    except FileNotFoundError as e:
        print(f"error: {e}")
        return 2
    print_rows(rows, Path(out).resolve())
    return 0
