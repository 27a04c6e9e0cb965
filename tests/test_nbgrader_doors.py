"""Every nbgrader door grades as `grade` does: nbgrader's own commands run in the course folder and the
formgrader's API (NbGraderAPI, as its server extension calls it), on the course folder `grade` wrote."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config.loader import PyFileConfigLoader

from autograder import grade, nbgrader_course, submissions

pytestmark = pytest.mark.slow
LESSON = "03_query_key_value"
FAKE_CHECKS = """\
import sys, types
for name in ("autograder", "autograder.checks", "autograder.checks.qkv"):
    module = types.ModuleType(name)
    module.__getattr__ = lambda attr: (lambda *args, **kwargs: None)
    sys.modules[name] = module
def project_qkv(h, s, W_Q, W_K, W_V):
    raise NotImplementedError()
"""


def scores(out: Path) -> dict[str, float]:
    api = nbgrader_course.course_api(out)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        return {s: gb.find_submission_notebook(LESSON, LESSON, s).code_score for s in ("honest", "faker")}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("doors")
    for student, answers in {"honest": {}, "faker": {"project_qkv": FAKE_CHECKS, "qkv_attention": ""}}.items():
        (root / "in" / student).mkdir(parents=True)
        nbformat.write(submissions.answered(LESSON, answers), root / "in" / student / f"{LESSON}.ipynb")
    rows = grade.grade(root / "in", root / "out", workers=1, progress=False)
    return root / "out", {r.student: r.score for r in rows}


def test_the_course_folder_carries_its_own_configuration(course):
    """Does `grade` leave an nbgrader_config.py that names our grading step?"""
    out, _ = course
    text = (out / "nbgrader_config.py").read_text()
    assert "configure(get_config()" in text
    loaded = PyFileConfigLoader("nbgrader_config.py", path=str(out)).load_config()
    assert "GradeOutsideKernel" in str(loaded.Autograde.autograde_preprocessors)


def test_nbgrader_autograde_in_the_course_folder_gives_the_same_grades(course):
    """Does `nbgrader autograde` run in the course folder give the grades `grade` gave, the faker nothing?"""
    out, by_grade = course
    assert by_grade == {"honest": 6, "faker": 0}
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    proc = subprocess.run([nbgrader, "autograde", LESSON, "--force"], cwd=out, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert scores(out) == by_grade


def test_the_formgraders_api_gives_the_same_grades(course):
    """Does NbGraderAPI, configured from the course folder as the formgrader's extension is, give the same grades?"""
    out, by_grade = course
    config = PyFileConfigLoader("nbgrader_config.py", path=str(out)).load_config()
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    for student in by_grade:
        result = api.autograde(LESSON, student, force=True)
        assert result["success"], result.get("log")
    assert scores(out) == by_grade


def test_feedback_from_nbgraders_command_hides_the_hidden_tests(course):
    """Does `nbgrader generate_feedback` run in the course folder write pages without hidden tests or grader paths?"""
    out, _ = course
    nbgrader = str(Path(sys.executable).parent / "nbgrader")
    proc = subprocess.run([nbgrader, "generate_feedback", LESSON, "--force"], cwd=out, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for student in ("honest", "faker"):
        html = (out / "feedback" / student / LESSON / f"{LESSON}.html").read_text()
        assert "HIDDEN TESTS" not in html and ">check_qkv_attention<" not in html
        assert str(out) not in html and str(Path(__file__).resolve().parent.parent) not in html
