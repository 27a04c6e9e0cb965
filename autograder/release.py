"""`release`: regenerate the student notebooks in lessons/ from solutions/ with nbgrader generate_assignment."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import nbformat

from . import notebooks, paths
from .nbgrader_course import course_api


def release(lessons: list[str] | None = None, out: Path = paths.LESSONS) -> list[Path]:
    """Write the student version of each lesson to `out`; returns the paths written."""
    lessons = lessons or sorted(p.stem for p in paths.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="attention-release-") as tmp:
        api = course_api(Path(tmp))
        for lesson in lessons:
            src = Path(tmp, "source", lesson)
            src.mkdir(parents=True)
            shutil.copy(paths.solution_path(lesson), src / f"{lesson}.ipynb")
            result = api.generate_assignment(lesson)
            if not result["success"]:
                raise RuntimeError(f"nbgrader generate_assignment failed for {lesson}:\n{result.get('log', '')}")
            nb = notebooks.read(Path(tmp, "release", lesson, f"{lesson}.ipynb"))
            target = out / f"{lesson}.ipynb"
            nbformat.write(nb, target)
            written.append(target)
    return written


def main(*, lessons: list[str] | None = None) -> int:
    for path in release(lessons):
        print(f"released {path.relative_to(paths.REPO) if path.is_relative_to(paths.REPO) else path}")
    return 0
