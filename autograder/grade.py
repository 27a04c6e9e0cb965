"""`grade`: what an instructor runs on a class, SUBMISSIONS/<student>/<lesson>.ipynb (or nbgrader's own
layout after `nbgrader collect`, SUBMISSIONS/<student>/<lesson>/<lesson>.ipynb).

Every notebook is graded by the real `nbgrader autograde` into nbgrader's SQLite gradebook in OUT,
which stays a normal nbgrader course folder (source/, submitted/, autograded/, feedback/,
gradebook.db); on a Dask cluster (`--scheduler`) the workers grade in scratch courses of their own and
this process alone records what they made in OUT (`remote.py`). The HTML feedback comes from `nbgrader generate_feedback` with the hidden tests removed.
OUT/grades.csv has one row per submitted file, with a status (`outcome.Status`) that says why when it
was not graded; OUT/logs/<student>/<lesson>.log keeps nbgrader's log, the grader's and the kernel's
stderr for each graded notebook. One broken submission never stops the class, nor does a grading
process that dies: its notebook is retried once, then reported `grader-died`.

A notebook is graded again only when something that decides its verdicts changed: the submission, the
lesson's source notebook, the checks and reference code the lesson uses, or the grader (its code, its
version, the settings that bound a kernel).
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
import logging
import re
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from . import course_init, forkserver, nbgrader_course, notebooks, paths, sandbox
from .nbgrader_course import course_api
from .notebooks import identify_lesson
from .outcome import Status, status_of
from .settings import DEFAULT, Settings

CSV_COLUMNS = ["student", "lesson", "score", "max_score", "status"]
STATE_FILE = ".grading-state.json"
LOCKED_RETRIES = 3
MAX_ATTEMPTS = 2           # a notebook whose grading process died this often is not tried again
LOG_DIR = "logs"
log = logging.getLogger("autograder")


@dataclass
class Row:
    student: str
    lesson: str
    score: float | None
    max_score: float | None
    status: str  # an outcome.Status value


@dataclass
class Job:
    student: str
    lesson: str
    digest: str


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_CHECKS_IMPORT = re.compile(r"from\s+autograder\.checks\s+import\s+(\w+)")


def verdict_key(lesson: str, settings: Settings) -> str:
    """A digest of everything besides the submission that decides a lesson's verdicts: its source notebook
    (tests and reference), the checks modules its test cells import, the grader's own code and version,
    the lessons' helpers the kernel imports, and the settings that bound the kernel."""
    from importlib import metadata
    package = Path(__file__).resolve().parent
    source = paths.solution_path(lesson)
    text = source.read_text(encoding="utf-8", errors="replace")
    checks = sorted({package / "checks" / f"{name}.py" for name in _CHECKS_IMPORT.findall(text)})
    grader = sorted(p for p in package.glob("*.py")) + [package / "checks" / "core.py", package / "checks" /
                                                        "__init__.py"]
    helpers = sorted((paths.REPO / "lessonkit").glob("*.py"))
    h = hashlib.sha256()
    try:
        h.update(metadata.version("attention-course").encode())
    except metadata.PackageNotFoundError:
        pass
    h.update(json.dumps({k: v for k, v in settings.to_dict().items() if k != "workers"}, sort_keys=True).encode())
    for path in [source, *checks, *grader, *helpers]:
        h.update(str(path.relative_to(paths.REPO) if path.is_relative_to(paths.REPO) else path.name).encode())
        h.update(path.read_bytes() if path.is_file() else b"missing")
    return h.hexdigest()


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


def autograde_one(out: Path, student: str, lesson: str, settings: Settings = DEFAULT, *,
                  log_path: Path | None = None, seed: int | None = None) -> str:
    """Run nbgrader autograde and generate_feedback for one notebook; returns its status (a Status value).

    Everything said while grading it (nbgrader's log, the grader's, the kernel's stderr) goes to its log,
    `log_path` (default OUT/logs/<student>/<lesson>.log). `seed` fixes the hidden checks' seed (None:
    this process's own)."""
    log_path = log_path or log_file(out, student, lesson)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    log.addHandler(handler)
    previous_level = log.level
    log.setLevel(logging.DEBUG)
    try:
        status, nbgrader_log = _autograde(out, student, lesson, settings, seed)
        log.info("status: %s", status)
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)
        handler.close()
    with open(log_path, "a", encoding="utf-8") as f:
        f.write("\n--- nbgrader's log ---\n" + (nbgrader_log or "(empty)\n"))
    return status


def log_file(out: Path, student: str, lesson: str) -> Path:
    return Path(out) / LOG_DIR / student / f"{lesson}.log"


def _autograde(out: Path, student: str, lesson: str, settings: Settings, seed: int | None = None) -> tuple[str, str]:
    api = course_api(out, cell_timeout=settings.cell_timeout, sandboxed=settings.sandboxed, seed=seed)
    # nbgrader's SQLAlchemy and traitlets warnings are not the instructor's business: kept out of the
    # terminal for this call only (they still reach the log through nbgrader's own log).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(LOCKED_RETRIES):
            result = api.autograde(lesson, student, force=True)
            # The local pool's workers share one SQLite gradebook: a write that found it locked is retried,
            # never lost.
            if result["success"] or "database is locked" not in result.get("log", "") + result.get("error", ""):
                break
        text = result.get("log", "") + (f"\n{result['error']}" if result.get("error") else "")
        if not result["success"]:
            # Never leave an older grade standing for a regrade that failed.
            from nbgrader.api import Gradebook, MissingEntry
            with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
                try:
                    gb.remove_submission(lesson, student)
                except MissingEntry:
                    pass
            log.error("nbgrader autograde failed (see nbgrader's log below)")
            return Status.AUTOGRADE_FAILED.value, text
        feedback = api.generate_feedback(lesson, student)
        text += feedback.get("log", "")
    return status_of(notebooks.read(out / "autograded" / student / lesson / f"{lesson}.ipynb")).value, text


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
    # nbgrader's layout after `nbgrader collect`: <student>/<lesson>/<lesson>.ipynb (a folder is not a link)
    nested = [p for d in sorted(student_dir.iterdir()) if d.is_dir() and not d.is_symlink()
              for p in sorted(d.glob("*.ipynb"))]
    for path in sorted(student_dir.glob("*.ipynb")) + nested:
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


def collect(submissions: Path, out: Path, settings: Settings = DEFAULT) -> tuple[list[Row], list[Job]]:
    """Sort every submitted file into a row that needs no grading (with its status) or a job."""
    rows, jobs = [], []
    keys: dict[str, str] = {}
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.is_symlink()):
        student = student_dir.name
        skipped, chosen = _lessons_of(student_dir)
        rows += skipped
        for lesson, path in chosen.items():
            dest = out / "submitted" / student / lesson / f"{lesson}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not (dest.exists() and dest.samefile(path)):     # grading OUT/submitted itself: already there
                shutil.copy(path, dest)
            # A changed submission, or a change in what decides the lesson's verdicts, calls for a regrade.
            if lesson not in keys:
                keys[lesson] = verdict_key(lesson, settings)
            jobs.append(Job(student, lesson, hashlib.sha256((_digest(path) + keys[lesson]).encode()).hexdigest()))
    return rows, jobs


def _run_job(out: Path, job: Job, settings: Settings) -> tuple[Job, str]:
    try:
        return job, autograde_one(out, job.student, job.lesson, settings)
    except Exception as e:  # a worker must report, never take the class down
        log.exception("grading %s/%s failed", job.student, job.lesson)
        return job, Status.AUTOGRADE_FAILED.value


def _limit_worker_memory(limit: int) -> None:
    """In each grading worker: an address-space limit, so a submission that makes the grader allocate
    without end costs its own notebook (MemoryError, or this worker), never the machine. Not where CUDA
    runs in the grader: its driver maps far more address space than it uses."""
    import resource
    import torch
    if limit and not torch.cuda.is_available():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def grade(submissions: Path, out: Path, *, settings: Settings = DEFAULT, workers: int | None = None,
          force: bool = False, progress: bool = True, cell_timeout: int | None = None, scheduler: str | None = None,
          sandboxed: bool | None = None, verbose: bool = False) -> list[Row]:
    """Grade every notebook under `submissions` into the nbgrader course at `out`; returns the rows of grades.csv.

    `settings` bound the run; `workers`, `cell_timeout` and `sandboxed` given here replace theirs. A cell
    that runs longer than the cell timeout is interrupted and the notebook marked `timeout`. Kernels run
    in the sandbox where it is available (`sandboxed=None`). With `scheduler` (a Dask scheduler's
    address) the notebooks are graded on that cluster's workers, which need this project installed, not
    `out`: they return what they made and this process alone writes `out` (`remote`). Without it, on a
    local pool of worker processes that grade into `out`. Either way only this process writes grades.csv
    and the state file. `verbose` prints each notebook's status and log.
    """
    settings = settings.replace(workers=workers, cell_timeout=cell_timeout, sandboxed=sandboxed)
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions}: no such folder")
    out.mkdir(parents=True, exist_ok=True)
    rows, jobs = collect(submissions, out, settings)
    state_path = out / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() and not force else {}
    todo = [j for j in jobs if _needs_grading(state.get(f"{j.student}/{j.lesson}", {}), j)]
    # Local workers fork their kernels from one warm template, started now: it imports torch while the
    # lessons are released.
    with forkserver.Shared() if todo and not scheduler else contextlib.nullcontext() as shared:
        if todo:
            prepare_lessons(out, {j.lesson for j in todo})
        if course_init.grade_may_write_config(out):     # never over an instructor's own configuration
            nbgrader_course.write_config(out, cell_timeout=settings.cell_timeout, sandboxed=settings.sandboxed)
        if shared is not None and not shared.publish() and shared.why_not:
            log.warning("no shared kernel template (%s): each worker keeps its own", shared.why_not)
        _run_all(out, todo, settings, progress, state, state_path, scheduler, verbose)
    # A notebook left "attempted" by runs whose grading process died on it: not tried again.
    status = {(j.student, j.lesson): state[f"{j.student}/{j.lesson}"]["status"] or Status.GRADER_DIED.value
              for j in jobs}
    scores = autograded_scores(out, [k for k, st in status.items() if Status(st).graded])
    for key, st in status.items():
        rows.append(Row(*key, *scores.get(key, (0.0, None)), st))
    rows.sort(key=lambda r: (r.student, r.lesson))
    write_csv(out / "grades.csv", rows)
    return rows


def _needs_grading(entry: dict, job: Job) -> bool:
    """Not graded yet, or graded from something that changed; a notebook whose grading process died
    MAX_ATTEMPTS times on the same inputs is not tried again (it would die again)."""
    if entry.get("digest") != job.digest:
        return True
    return entry.get("status") is None and entry.get("attempts", 0) < MAX_ATTEMPTS


@contextlib.contextmanager
def _executor(settings: Settings, scheduler: str | None):
    """Yields a function that submits a job and returns its future: a local pool of processes (made anew
    by `renew()` after a worker died), or a Dask cluster at `scheduler`."""
    if scheduler:
        from dask.distributed import Client, wait as dask_wait
        with Client(scheduler) as client:
            # pure=False: the same job submitted again (say after --force) must run again. At most two
            # notebooks per worker thread wait on the cluster: a class's submissions are not all in memory.
            yield _Pool(lambda *args: client.submit(*args, pure=False), lambda: None,
                        lambda fs: dask_wait(fs, return_when="FIRST_COMPLETED").done,
                        lambda: max(2, 2 * sum(client.nthreads().values())))
        return
    pools: list[ProcessPoolExecutor] = []

    def renew():
        if pools:
            pools.pop().shutdown(wait=False, cancel_futures=True)
        pools.append(ProcessPoolExecutor(max_workers=max(1, settings.workers),
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_limit_worker_memory, initargs=(settings.worker_memory_bytes,)))
    renew()
    try:
        yield _Pool(lambda *args: pools[-1].submit(*args), renew,
                    lambda fs: wait(fs, return_when=FIRST_COMPLETED).done, lambda: max(1, settings.workers))
    finally:
        if pools:
            pools[-1].shutdown(wait=True, cancel_futures=True)


@dataclass
class _Pool:
    submit: object          # (fn, *args) -> future
    renew: object           # () -> None: a new pool after a worker died
    first_done: object      # (futures) -> the set of those done (waits for one at least)
    capacity: object        # () -> how many jobs may be in flight now


def _run_all(out, todo, settings, progress, state, state_path, scheduler=None, verbose=False):
    """Grade `todo` with at most `settings.workers` notebooks in flight, each recorded as attempted before
    it starts: a worker that dies costs only the notebooks it was grading a retry (then `grader-died`).

    On a Dask cluster (`scheduler`) a worker gets the submission itself and returns what it made
    (`remote.grade_job`); this process alone writes it into OUT (`remote.record`)."""
    from . import remote
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    queue = list(todo)
    in_flight: dict = {}
    suspects: list[Job] = []
    keys: dict[str, str] = {}

    def record(job, **entry):
        state[f"{job.student}/{job.lesson}"] = {"digest": job.digest, **entry}
        _write_atomically(state_path, json.dumps(state, indent=1, sort_keys=True))

    with Progress(*columns, disable=not progress or not todo) as bar, _executor(settings, scheduler) as pool:
        task = bar.add_task("grade", total=len(todo), rate="")

        def finish(job, status):
            record(job, status=status, attempts=state.get(f"{job.student}/{job.lesson}", {}).get("attempts", 1))
            elapsed = bar.tasks[task].elapsed or 0
            n = bar.tasks[task].completed + 1
            bar.update(task, advance=1, rate=f"{60 * n / elapsed:.1f} nb/min" if elapsed else "")
            if verbose or Status(status).courses_fault:
                colour = "green" if status == Status.OK.value else "red"
                bar.console.print(f"{escape(job.student)}/{escape(job.lesson)}: [{colour}]{status}[/] "
                                  f"(log: {escape(str(log_file(out, job.student, job.lesson)))})")

        while queue or in_flight:
            # A job retried after its pool died runs alone: a neighbour that killed the pool must not
            # take it down twice.
            while queue and len(in_flight) < pool.capacity() and not (in_flight and queue[0] in suspects) \
                    and not any(j in suspects for j in in_flight.values()):
                job = queue.pop(0)
                entry = state.get(f"{job.student}/{job.lesson}", {})
                attempts = entry.get("attempts", 0) + 1 if entry.get("digest") == job.digest else 1
                record(job, status=None, attempts=attempts)          # attempted, before it starts
                if not scheduler:
                    in_flight[pool.submit(_run_job, out, job, settings)] = job
                    continue
                try:
                    if job.lesson not in keys:
                        keys[job.lesson] = verdict_key(job.lesson, settings)
                    remote_job = remote.job_for(out, job.student, job.lesson, settings, keys[job.lesson])
                except OSError as e:          # the submission vanished from OUT/submitted: this row's problem
                    finish(job, remote.record(out, job.student, job.lesson, remote.failure(f"not sent to a worker: {e}")))
                    continue
                in_flight[pool.submit(remote.grade_job, remote_job)] = job
            if not in_flight:
                continue
            done = pool.first_done(list(in_flight))
            broken = False
            for future in done:
                job = in_flight.pop(future)
                try:
                    result = future.result()
                    status = remote.record(out, job.student, job.lesson, result) if scheduler else result[1]
                except BrokenProcessPool:
                    broken = True
                    _retry_or_give_up(job, state, queue, suspects, finish)
                except Exception as e:        # a Dask worker lost with its job, say
                    log.error("grading %s/%s: the grading process failed: %r", job.student, job.lesson, e)
                    _retry_or_give_up(job, state, queue, suspects, finish)
                else:
                    finish(job, status)
            if broken:
                for future, job in list(in_flight.items()):     # they died with the pool
                    in_flight.pop(future)
                    _retry_or_give_up(job, state, queue, suspects, finish)
                pool.renew()


def _retry_or_give_up(job: Job, state: dict, queue: list, suspects: list, finish) -> None:
    """A job whose grading process died: queued again (to run alone), or `grader-died` once it has used
    its attempts."""
    if state[f"{job.student}/{job.lesson}"].get("attempts", 0) >= MAX_ATTEMPTS:
        finish(job, Status.GRADER_DIED.value)
    else:
        suspects.append(job)
        queue.insert(0, job)


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


def kernel_starts(out: Path, rows: list[Row]) -> "collections.Counter[str]":
    """How the kernels of these rows' last gradings started, as their logs say ("forked from ...", "started
    fresh (why)")."""
    import collections
    said = collections.Counter()
    for r in rows:
        try:
            with open(log_file(out, r.student, r.lesson), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if "the kernel was " in line:
                        said[line.split("the kernel was ", 1)[1].strip()] += 1
                        break
        except OSError:
            continue
    return said


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
    console.print(f"logs: {out / LOG_DIR}/<student>/<lesson>.log")
    starts = kernel_starts(out, rows)
    if starts:
        console.print("kernels: " + "; ".join(f"{n} {escape(how)}" for how, n in starts.most_common()))
    faults = [r for r in rows if Status(r.status).courses_fault]
    if faults:
        console.print(f"[red]{len(faults)} notebook(s) were not graded because of the course or the grader, "
                      "not the student: see their logs.[/]")


def main(*, submissions: str, out: str, workers: int | None = None, force: bool = False,
         scheduler: str | None = None, cell_timeout: int | None = None, no_sandbox: bool = False,
         verbose: bool = False) -> int:
    reason = "--no-sandbox was given" if no_sandbox else sandbox.unavailable()
    if reason:
        print(f"warning: NOT SANDBOXED: {reason}. Students' code runs with your rights and can read and change "
              "your files: grade untrusted work as root in a disposable container or VM.", file=sys.stderr)
    else:
        try:
            sandbox.check_hidden()
        except sandbox.SandboxError as e:       # before any notebook: every kernel would see the course
            print(f"error: {e}", file=sys.stderr)
            return 2
    if verbose:         # the grader's own log on the terminal (each notebook's is in its log file too)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        rows = grade(Path(submissions), Path(out), workers=workers, force=force, scheduler=scheduler,
                     cell_timeout=cell_timeout, sandboxed=False if no_sandbox else None, verbose=verbose)
    except FileNotFoundError as e:
        print(f"error: {e}")
        return 2
    print_rows(rows, Path(out).resolve())
    return 0
