"""What a correct student sees in their graded notebook: no error anywhere, and nothing of the grading machine."""
import json
import os
import subprocess
import sys

import nbformat
import pytest

from autograder import paths, submissions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A correct student's notebook of every lesson, graded through the real `grade` (sandboxed as root)."""
    root = tmp_path_factory.mktemp("graded")
    for lesson in paths.lesson_names():
        (root / "submissions" / "ada").mkdir(parents=True, exist_ok=True)
        nbformat.write(submissions.answered(lesson), root / "submissions" / "ada" / f"{lesson}.ipynb")
    env = {k: v for k, v in os.environ.items() if k not in ("NBGRADER_EXECUTION", "LESSONKIT_QUICK")}
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(root / "submissions"),
                          "--out", str(root / "course"), "--workers", "1"],
                         cwd=paths.REPO, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return root


@pytest.mark.parametrize("lesson", paths.lesson_names())
def test_correct_students_graded_notebook_has_no_error_output(graded, lesson):
    """Does every cell of a correct student's graded notebook run without an error output (the import
    cell, and the training, demo and plot cells, which say they were skipped while grading)?"""
    nb = nbformat.read(graded / "course" / "autograded" / "ada" / lesson / f"{lesson}.ipynb", as_version=4)
    errors = [(cell.get("id"), out.get("ename"), out.get("evalue"))
              for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"error outputs in the graded {lesson}: {errors}"
    skipped = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
               if "skipped" in str(out.get("text", "")).lower() and "while grading" in str(out.get("text", ""))]
    if any("run_demo(" in cell.source for cell in nb.cells if cell.cell_type == "code"):
        assert skipped, "no cell says it was skipped while grading"


@pytest.mark.parametrize("lesson", paths.lesson_names())
def test_graded_notebook_shows_no_path_of_the_grading_machine(graded, lesson):
    """Does a graded notebook keep the repository's path and the grader's temporary folders out of sight?"""
    text = json.dumps(nbformat.read(graded / "course" / "autograded" / "ada" / lesson / f"{lesson}.ipynb",
                                    as_version=4))
    for path in {str(paths.REPO), str(graded), "/tmp/"}:
        assert path not in text, f"{path} appears in the graded {lesson}"
