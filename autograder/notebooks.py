"""Reading notebooks safely and finding their nbgrader cells.

Conventions of this course: a graded answer cell has grade_id `<function>` and defines exactly that
function; its test cell has grade_id `test_<function>`; a written answer has grade_id `written_*`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from . import paths
from .settings import DEFAULT


class NotebookError(Exception):
    """A notebook that cannot be read or graded; the message is one line for the user."""


def read(path: str | Path, *, max_bytes: int = DEFAULT.max_notebook_bytes,
         max_containers: int = DEFAULT.max_notebook_containers) -> NotebookNode:
    """Read and validate a notebook, or raise NotebookError with a one-line reason.

    Its size and its number of JSON lists and objects are bounded before it is parsed: a valid notebook
    built to exhaust the grader's memory (say 10^8 empty lists in a cell's metadata) is refused unread."""
    path = Path(path)
    if not path.is_file():
        raise NotebookError(f"{path}: no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise NotebookError(f"{path}: too large to be a lesson's notebook ({size} bytes, at most {max_bytes})")
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise NotebookError(f"{path}: too large to be a lesson's notebook (more than {max_bytes} bytes)")
    if raw.count(b"[") + raw.count(b"{") > max_containers:
        raise NotebookError(f"{path}: too many lists and objects to be a lesson's notebook (at most {max_containers})")
    if not raw.strip():
        raise NotebookError(f"{path}: the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotebookError(f"{path}: not a text file (is it a notebook?)") from None
    try:
        with warnings.catch_warnings():      # duplicate cell ids are repaired on reading: nothing to report
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # JSON errors, unknown nbformat versions, ...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NotebookError(f"{path}: not a valid notebook ({reason})") from None
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        raise NotebookError(f"{path}: not a valid notebook ({e.message})") from None
    return nb


def nbgrader_meta(cell: NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_id(cell: NotebookNode) -> str | None:
    return nbgrader_meta(cell).get("grade_id")


def is_autograded_test(cell: NotebookNode) -> bool:
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_answer(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(nbgrader_meta(cell).get("solution"))


def tested_function(cell: NotebookNode) -> str:
    """The graded function a test cell is about: its grade_id without the `test_` prefix."""
    gid = grade_id(cell) or ""
    return gid.removeprefix("test_")


def cells_by_id(nb: NotebookNode) -> dict[str, NotebookNode]:
    return {grade_id(c): c for c in nb.cells if grade_id(c)}


def identify_lesson(path: Path, nb: NotebookNode) -> str:
    """The lesson a notebook belongs to: by file name, else by the grade ids its cells carry."""
    lessons = paths.lesson_names()
    if path.stem in lessons:
        return path.stem
    ids = set(cells_by_id(nb))
    overlap = {lesson: len(ids & set(cells_by_id(read(paths.lesson_path(lesson))))) for lesson in lessons}
    best = max(overlap, key=overlap.get, default=None)
    if not best or overlap[best] == 0:
        raise NotebookError(f"{path}: cannot tell which lesson this is (no cell of any lesson found)")
    return best
