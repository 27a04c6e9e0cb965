"""`demo`: release the lessons, then grade a small bundled class with nbgrader and print the table.

The class is made from the released lessons, so it always matches them:
  ada   answers every lesson correctly;
  ben   hands in every lesson untouched;
  cleo  gets one function per lesson wrong (a classic mistake) and leaves another one unanswered;
  dev   hands in a notebook whose JSON is broken, and one for a lesson that does not exist.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from . import grade, paths, release, submissions

# One classic mistake per lesson, as a student would type it.
MISTAKES = {
    "02_bahdanau_attention": {
        "attention_weights": "def attention_weights(scores, mask=None):\n"
                             "    # softmax over the wrong axis: the batch instead of the source positions\n"
                             "    return torch.softmax(scores, dim=0)\n",
    },
}


def build_class(root: Path) -> Path:
    """Write the demo class's notebooks under root/<student>/<lesson>.ipynb; returns root."""
    if root.exists():
        shutil.rmtree(root)
    lessons = paths.lesson_names()
    for lesson in lessons:
        graded = [fn for fn in submissions.solution_sources(lesson)]
        wrong = MISTAKES.get(lesson, {})
        unanswered = next(fn for fn in graded if fn not in wrong)
        notebooks_by_student = {
            "ada": submissions.answered(lesson),
            "ben": submissions.answered(lesson, {fn: "" for fn in graded}),
            "cleo": submissions.answered(lesson, {**wrong, unanswered: ""}),
        }
        for student, nb in notebooks_by_student.items():
            (root / student).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, root / student / f"{lesson}.ipynb")
    (root / "dev").mkdir(parents=True, exist_ok=True)
    text = paths.lesson_path(lessons[0]).read_text()
    (root / "dev" / f"{lessons[0]}.ipynb").write_text(text[: len(text) // 2])       # cut off mid-file
    (root / "dev" / "lesson_seven.ipynb").write_text(text)
    return root


def main(*, out: str = "demo-out", workers: int = 1) -> int:
    out_dir = Path(out).resolve()
    release.main()
    class_dir = build_class(out_dir / "class")
    print(f"demo class: {class_dir}")
    rows = grade.grade(class_dir, out_dir / "course", workers=workers, force=True)
    grade.print_rows(rows, out_dir / "course")
    return 0
