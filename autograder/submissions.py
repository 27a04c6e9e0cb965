"""Student notebooks made from the released lessons: the demo class and the test suite's scenarios."""
from __future__ import annotations

import re

from nbformat import NotebookNode

from . import notebooks, paths

_MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*(\n|\Z)", re.MULTILINE)


def solution_sources(lesson: str) -> dict[str, str]:
    """The instructor's answer for every answer cell, as a student would type it (markers removed)."""
    nb = notebooks.read(paths.solution_path(lesson))
    return {notebooks.grade_id(c): _MARKERS.sub("", c.source) for c in nb.cells if notebooks.is_answer(c)}


def answered(lesson: str, answers: dict[str, str] | None = None) -> NotebookNode:
    """The released lesson with its answer cells filled in.

    `answers` maps an answer cell's grade id (the function name, or a written question's id) to the
    source typed there; code cells it does not name get the reference answer, written ones stay blank. Pass an empty answer ("") to leave a cell as released.
    """
    nb = notebooks.read(paths.lesson_path(lesson))
    filled = {**solution_sources(lesson), **(answers or {})}
    for cell in nb.cells:
        gid = notebooks.grade_id(cell)
        if notebooks.nbgrader_meta(cell).get("solution") and filled.get(gid):
            cell.source = filled[gid]
    return nb
