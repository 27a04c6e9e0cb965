"""Where the course lives on disk: the repository, its solutions and its released lessons."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Instructors may keep the solutions outside the repository they hand to students.
SOLUTIONS = Path(os.environ.get("ATTENTION_COURSE_SOLUTIONS", REPO / "solutions"))
LESSONS = REPO / "lessons"


def lesson_names() -> list[str]:
    """The lessons of the course, in order: the stems of the released notebooks."""
    return sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))


def solution_path(lesson: str) -> Path:
    return SOLUTIONS / f"{lesson}.ipynb"


def lesson_path(lesson: str) -> Path:
    return LESSONS / f"{lesson}.ipynb"
