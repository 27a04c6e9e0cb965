"""`release`: regenerate the student notebooks in lessons/ from solutions/ with nbgrader generate_assignment.

A student works in lessons/, so release never overwrites their work silently: it records the SHA-256
of every notebook it writes (in `.released.json` beside them) and refuses to replace a notebook whose
bytes changed since, unless forced.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import nbformat

from . import notebooks, paths
from .nbgrader_course import course_api

DIGESTS = ".released.json"


class EditedLessonError(RuntimeError):
    """A lesson in the output folder was edited since release wrote it."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recorded(out: Path) -> dict[str, str]:
    try:
        return json.loads((out / DIGESTS).read_text())
    except (OSError, ValueError):
        return {}


def edited(out: Path, lessons: list[str]) -> list[Path]:
    """The notebooks in `out` that release would overwrite and that differ from what it last wrote there.

    A notebook with no recorded digest (written before digests were kept, or by hand) counts as edited.
    """
    recorded = _recorded(out)
    return [out / f"{lesson}.ipynb" for lesson in lessons
            if (out / f"{lesson}.ipynb").exists() and recorded.get(f"{lesson}.ipynb") != digest(out / f"{lesson}.ipynb")]


def release(lessons: list[str] | None = None, out: Path = paths.LESSONS, *, force: bool = False) -> list[Path]:
    """Write the student version of each lesson to `out`; returns the paths written.

    Raises EditedLessonError, writing nothing, when a notebook there was edited since it was released
    (unless `force`).
    """
    lessons = lessons or sorted(p.stem for p in paths.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    changed = [] if force else edited(out, lessons)
    if changed:
        raise EditedLessonError(
            "these lessons were edited since they were released; release would overwrite the edits:\n"
            + "\n".join(f"  {p}" for p in changed)
            + "\nCopy your work elsewhere, or release with --force to overwrite it.")
    recorded = _recorded(out)
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
            recorded[target.name] = digest(target)
            written.append(target)
    (out / DIGESTS).write_text(json.dumps(dict(sorted(recorded.items())), indent=1) + "\n")
    return written


def main(*, lessons: list[str] | None = None, force: bool = False, out: Path | str = paths.LESSONS) -> int:
    try:
        written = release(lessons, Path(out), force=force)
    except EditedLessonError as error:
        print(f"release refused: {error}")
        return 1
    for path in written:
        print(f"released {path.relative_to(paths.REPO) if path.is_relative_to(paths.REPO) else path}")
    return 0
