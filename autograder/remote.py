"""One gradebook writer on a Dask cluster: the workers grade, the command that started the run writes.

With `grade --scheduler ADDRESS` a Dask worker never sees the course folder OUT. It gets a `RemoteJob`
(the submission's bytes, the student's and lesson's names, the settings, the digest of what decides
the lesson's verdicts) and grades it with `grade.autograde_one`, the local path's own function, in a
private scratch course of its own process: a temporary folder with the lesson's source notebook from the
course as installed (`paths.solution_path`), released there by nbgrader's generate_assignment, and a
private SQLite gradebook. Same configuration (`nbgrader_course.configure`), same settings, same seed
handling (the main process's fixed `ATTENTION_GRADING_SEED` travels with the job; otherwise each grading
process keeps its own secret seed, as in the local pool), same statuses, same feedback, same log. It
returns what it made (`grade_job`): the autograded notebook, the feedback HTML, the log, the status and
the grades and comments of its private gradebook.

The main process alone writes OUT (`record`): the gradebook entries by nbgrader's own code, as nbgrader's
Autograde converter records a submission (the student and the submission with the timestamp of
OUT/submitted, then the tail of the course's autograde preprocessors from SaveAutoGrades on, run on the
returned notebook), then OUT/autograded/<student>/<lesson>/ (with the submission's other files, as
nbgrader copies them), OUT/feedback/... and OUT/logs/.... Paths come from the main process's job only:
nothing in a worker's reply names a file. A reply that cannot be recorded (malformed, grades that differ
from what nbgrader computes from the notebook, a write that fails) costs its row `autograde-failed`, with
the reason in its log, and leaves no grade of it in the gradebook.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import threading
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from .outcome import Status

FAILED = Status.AUTOGRADE_FAILED.value
# nbgrader's permissions for what Autograde and GenerateFeedback write, by CourseDirectory.groupshared
# (BaseConverter's and GenerateFeedback's _permissions_default).
MODES = {False: (0o444, 0o644), True: (0o664, 0o664)}
# What grading a notebook can end in (`grade.autograde_one`): any other status in a reply is not recorded.
WORKER_STATUSES = {s.value for s in Status if s.graded} | {FAILED}


@dataclass(frozen=True)
class RemoteJob:
    """What a worker needs to grade one notebook; nothing in it is a path of the main machine."""

    student: str
    lesson: str
    notebook: bytes                 # the submission, as OUT/submitted holds it
    timestamp: str | None           # OUT/submitted/<student>/<lesson>/timestamp.txt, where there is one
    verdict_key: str                # grade.verdict_key of the main process: the worker's course must agree
    settings: dict                  # Settings.to_dict()
    seed: int | None = None         # the main process's fixed ATTENTION_GRADING_SEED, if any


def job_for(out: Path, student: str, lesson: str, settings, verdict_key: str) -> RemoteJob:
    """The main process's side: read what the worker needs from OUT."""
    folder = Path(out) / "submitted" / student / lesson
    stamp = folder / "timestamp.txt"
    seed = os.environ.get("ATTENTION_GRADING_SEED")
    return RemoteJob(student, lesson, (folder / f"{lesson}.ipynb").read_bytes(),
                     stamp.read_text() if stamp.is_file() else None, verdict_key, settings.to_dict(),
                     int(seed) if seed else None)


# ---------------------------------------------------------------------------------------------- worker side

_lock = threading.Lock()        # one notebook at a time per worker process: one log handler, one kernel pool
_scratch: list[Path] = []       # this process's scratch course, made on its first job
_released: dict[str, bytes] = {}    # lesson -> the source notebook generate_assignment released in the scratch


def grade_job(job: RemoteJob) -> dict:
    """On a Dask worker: grade `job` in this process's scratch course and return what it made.

    Never raises for a notebook: a failure is the status `autograde-failed` with the reason in the log."""
    with _lock:
        try:
            return _grade(job)
        except Exception:
            return _reply(FAILED, f"the worker {_where()} failed to grade this notebook:\n{traceback.format_exc()}")


def _where() -> str:
    return f"{socket.gethostname()} (pid {os.getpid()})"


def _reply(status: str, log_text: str, *, autograded: bytes | None = None, feedback: bytes | None = None,
           grades: dict | None = None, comments: dict | None = None) -> dict:
    return {"status": status, "log": log_text, "autograded": autograded, "feedback": feedback,
            "grades": grades or {}, "comments": comments or {}, "worker": _where()}


def failure(text: str) -> dict:
    """A reply for a notebook that could not be graded: `autograde-failed`, with `text` as its log."""
    return _reply(FAILED, text)


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name and os.sep not in name


def _grade(job: RemoteJob) -> dict:
    from . import grade, paths
    from .settings import Settings
    settings = Settings.from_dict(job.settings)
    if not _safe_name(job.student) or job.lesson not in paths.lesson_names():
        return _reply(FAILED, f"the worker {_where()} has no lesson {job.lesson!r} for student {job.student!r}")
    if grade.verdict_key(job.lesson, settings) != job.verdict_key:
        return _reply(FAILED, f"the worker {_where()} has another version of the course (its source notebook, "
                              f"checks, grader or settings for {job.lesson} differ from those of the command that "
                              "started the run): not graded there; install the same version on every worker")
    root = _scratch_course(settings)
    _release(root, job.lesson)
    for part in ("submitted", "autograded", "feedback", "logs"):      # nothing left of the previous notebook
        shutil.rmtree(root / part, ignore_errors=True)
    folder = root / "submitted" / job.student / job.lesson
    folder.mkdir(parents=True)
    (folder / f"{job.lesson}.ipynb").write_bytes(job.notebook)
    if job.timestamp is not None:
        (folder / "timestamp.txt").write_text(job.timestamp)
    log_path = root / "logs" / f"{job.lesson}.log"
    try:
        status = grade.autograde_one(root, job.student, job.lesson, settings, log_path=log_path, seed=job.seed)
        text = f"graded on {_where()}, in a scratch course of its own\n" + log_path.read_text(errors="replace")
        made = root / "autograded" / job.student / job.lesson / f"{job.lesson}.ipynb"
        html = root / "feedback" / job.student / job.lesson / f"{job.lesson}.html"
        grades, comments = _gradebook_entries(root, job.student, job.lesson) if Status(status).graded else ({}, {})
        return _reply(status, text, autograded=made.read_bytes() if made.is_file() else None,
                      feedback=html.read_bytes() if html.is_file() else None, grades=grades, comments=comments)
    finally:
        _forget(root, job.student, job.lesson)


def _scratch_course(settings) -> Path:
    from . import sandbox
    if not _scratch:
        root = Path(tempfile.mkdtemp(prefix="attention-grading-"))
        atexit.register(shutil.rmtree, root, True)
        _scratch.append(root)
    root = _scratch[0]
    if settings.sandboxed is not False and not sandbox.unavailable():
        sandbox.check_hidden(root)        # the kernel must not see the scratch gradebook or the source notebook
    return root


def _release(root: Path, lesson: str) -> None:
    """The lesson's source notebook, as installed, released in the scratch course (again if it changed)."""
    from . import grade, paths
    source = paths.solution_path(lesson).read_bytes()
    if _released.get(lesson) != source:
        grade.prepare_lessons(root, {lesson})
        _released[lesson] = source


def _gradebook_entries(root: Path, student: str, lesson: str) -> tuple[dict, dict]:
    """grade id -> [auto_score, max_score], and grade id -> auto_comment, from the scratch gradebook."""
    from nbgrader.api import Gradebook
    from .nbgrader_course import course_api
    api = course_api(root)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        nb = gb.find_submission_notebook(lesson, lesson, student)
        return ({g.name: [g.auto_score, g.max_score] for g in nb.grades},
                {c.name: c.auto_comment for c in nb.comments})


def _forget(root: Path, student: str, lesson: str) -> None:
    """The scratch gradebook keeps nothing of a graded notebook."""
    from nbgrader.api import Gradebook, MissingEntry
    from .nbgrader_course import course_api
    api = course_api(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
            try:
                gb.remove_submission(lesson, student)
            except MissingEntry:
                pass
            try:
                gb.remove_student(student)
            except MissingEntry:
                pass


# ------------------------------------------------------------------------------------------ main side

class Unrecordable(Exception):
    """A worker's reply that cannot be recorded as it stands."""


def record(out: Path, student: str, lesson: str, reply) -> str:
    """In the main process: write what a worker made for `student`'s `lesson` into OUT; returns the row's status.

    Only `student` and `lesson`, the main process's own, name paths. Never raises."""
    from . import grade
    out = Path(out)
    notes = ""
    try:
        status, text, autograded, feedback, grades, comments = _parse(reply)
    except Unrecordable as e:
        status, text, autograded, feedback, grades, comments = FAILED, "", None, None, {}, {}
        notes = f"the worker's reply could not be recorded: {e}\n"
    try:
        if Status(status).graded:
            _record_graded(out, student, lesson, autograded, feedback, grades, comments)
        else:
            _record_failed(out, student, lesson)
    except Exception:
        status = FAILED
        notes += ("recording the worker's result in the course folder failed; no grade of it was kept:\n"
                  + traceback.format_exc())
        try:
            _record_failed(out, student, lesson)
        except Exception:
            notes += "and removing what was recorded failed too:\n" + traceback.format_exc()
    if notes:
        grade.log.error("%s/%s: %s", student, lesson, notes.splitlines()[0])
        notes = f"\n--- recording in {out} ---\n{notes}status: {status}\n"
    path = grade.log_file(out, student, lesson)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + notes, encoding="utf-8")
    except OSError as e:
        grade.log.error("%s/%s: its log could not be written: %s", student, lesson, e)
    return status


def _parse(reply) -> tuple[str, str, bytes | None, bytes | None, dict, dict]:
    if not isinstance(reply, dict):
        raise Unrecordable(f"not a reply ({type(reply).__name__})")
    status = reply.get("status")
    if status not in WORKER_STATUSES:
        raise Unrecordable(f"a status no grading worker gives ({status!r})")
    text = reply.get("log")
    autograded, feedback = reply.get("autograded"), reply.get("feedback")
    grades, comments = reply.get("grades"), reply.get("comments")
    if not isinstance(text, str):
        raise Unrecordable("no log")
    for name, value in (("autograded notebook", autograded), ("feedback", feedback)):
        if value is not None and not isinstance(value, bytes):
            raise Unrecordable(f"the {name} is not bytes")
    if not isinstance(grades, dict) or not isinstance(comments, dict):
        raise Unrecordable("no grades or comments")
    if Status(status).graded and autograded is None:
        raise Unrecordable(f"status {status} without an autograded notebook")
    return status, text, autograded, feedback, grades, comments


def _record_graded(out: Path, student: str, lesson: str, autograded: bytes, feedback: bytes | None,
                   grades: dict, comments: dict) -> None:
    """What nbgrader's `autograde --force` and `generate_feedback --force` of one submission write in OUT."""
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import SaveAutoGrades
    from .nbgrader_course import course_api
    api = course_api(out)
    coursedir = api.coursedir
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(autograded.decode("utf-8"), as_version=4)
            nbformat.validate(nb)
    except Exception as e:
        raise Unrecordable(f"the autograded notebook is not a valid notebook ({str(e).splitlines()[0] if str(e) else e!r})")
    submitted = Path(coursedir.format_path(coursedir.submitted_directory, student, lesson))
    timestamp = coursedir.get_existing_timestamp(str(submitted))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # As Autograde.init_assignment: the student, then the submission with its timestamp.
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            gb.update_or_create_student(student)
            if timestamp:
                gb.update_or_create_submission(lesson, student, timestamp=timestamp)
            else:
                gb.update_or_create_submission(lesson, student)
        # The course's autograde preprocessors from SaveAutoGrades on: the grades, the late penalty, the
        # metadata check, each by nbgrader's own code on the notebook the worker autograded.
        chain = list(api.config.Autograde.autograde_preprocessors)
        resources = {"nbgrader": {"student": student, "assignment": lesson, "notebook": lesson,
                                  "db_url": coursedir.db_url}}
        for cls in chain[chain.index(SaveAutoGrades):]:
            nb, resources = cls(config=api.config)(nb, resources)
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            entry = gb.find_submission_notebook(lesson, lesson, student)
            recorded = ({g.name: [g.auto_score, g.max_score] for g in entry.grades},
                        {c.name: c.auto_comment for c in entry.comments})
    theirs = ({k: list(v) if isinstance(v, (list, tuple)) else v for k, v in grades.items()}, comments)
    if recorded != theirs:
        raise Unrecordable(f"what nbgrader records from the autograded notebook (grades, comments: {recorded}) "
                           f"differs from the worker's gradebook ({theirs})")
    # As nbgrader's converters with --force: the folder made anew, the submission's other files copied in.
    modes = MODES[bool(coursedir.groupshared)]
    dest = Path(coursedir.format_path(coursedir.autograded_directory, student, lesson))
    _write_folder(dest, submitted, f"{lesson}.ipynb", autograded, modes[0], coursedir.ignore)
    fb = Path(coursedir.format_path(coursedir.feedback_directory, student, lesson))
    if feedback is None:            # generate_feedback failed: nbgrader removes what it would have replaced
        shutil.rmtree(fb, ignore_errors=True)
    else:
        _write_folder(fb, dest, f"{lesson}.html", feedback, modes[1], coursedir.ignore)


def _write_folder(dest: Path, source: Path, name: str, data: bytes, mode: int, ignore: list[str]) -> None:
    from nbgrader.utils import find_all_files
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if source.is_dir():
        for filename in find_all_files(str(source), list(ignore) + ["*.ipynb"]):
            path = dest / os.path.relpath(filename, source)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(filename, path)
            os.chmod(path, mode)
    tmp = dest / f".{name}.tmp"
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, dest / name)


def _record_failed(out: Path, student: str, lesson: str) -> None:
    """A notebook the worker could not grade: as the local path leaves it, no grade of it in the gradebook
    (never an older one standing) and no autograded notebook (nbgrader removes a failed one)."""
    from nbgrader.api import Gradebook, MissingEntry
    from .nbgrader_course import course_api
    api = course_api(out)
    coursedir = api.coursedir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            try:
                gb.remove_submission(lesson, student)
            except MissingEntry:
                pass
    shutil.rmtree(coursedir.format_path(coursedir.autograded_directory, student, lesson), ignore_errors=True)
