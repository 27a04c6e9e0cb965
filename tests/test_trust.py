"""Grades an instructor can trust, in a copy of the course with bugs planted in its checks: the course's
failures are flagged (never a student's loss), a grading process that dies costs one row, a changed
check regrades what it affects without --force, and the mended check gives the points back."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import grade, paths, submissions

pytestmark = pytest.mark.slow
BUGGY = ("def check_qkv_attention(fn, *, device=None, seed=0):\n",
         "def check_qkv_attention(fn, *, device=None, seed=0):\n    None.shape  # planted bug\n")
KILLER = ("def check_self_attention(fn, *, device=None, seed=0):\n",
          "def check_self_attention(fn, *, device=None, seed=0):\n    import os; os._exit(3)  # planted crash\n")
CLASS = {"qkv": "03_query_key_value", "sat": "06_attention_without_rnn", "cnt": "04_time_complexity"}


def _plant(path: Path, change: tuple[str, str]) -> None:
    text = path.read_text()
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1]))


def _grade(course: Path, submitted: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(course)}
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submitted), "--out", str(out),
                          "--workers", "2"], cwd=course, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(out / "grades.csv") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def _graded_at(out: Path, student: str) -> int:
    lesson = CLASS[student]
    return (out / "autograded" / student / lesson / f"{lesson}.ipynb").stat().st_mtime_ns


def test_planted_bugs_are_flagged_then_mended_by_a_regrade(tmp_path):
    course = tmp_path / "course"
    for part in ("autograder", "lessonkit", "solutions", "lessons"):
        shutil.copytree(paths.REPO / part, course / part, ignore=shutil.ignore_patterns("__pycache__"))
    checks = course / "autograder" / "checks"
    originals = {name: (checks / name).read_text() for name in ("qkv.py", "transformer_attention.py")}
    _plant(checks / "qkv.py", BUGGY)
    _plant(checks / "transformer_attention.py", KILLER)
    submitted, out = tmp_path / "in", tmp_path / "out"
    for student, lesson in CLASS.items():
        (submitted / student).mkdir(parents=True)
        nbformat.write(submissions.answered(lesson), submitted / student / f"{lesson}.ipynb")

    rows = _grade(course, submitted, out)
    # The bug in qkv_attention's check: the course's error, loud; project_qkv's verdict (2 points) stands.
    assert rows["qkv"]["status"] == "course-error" and rows["qkv"]["score"] == "2", rows["qkv"]
    log = (out / "logs" / "qkv" / "03_query_key_value.log").read_text()
    assert "planted bug" in log and "AttributeError" in log and "Traceback" in log
    feedback = (out / "feedback" / "qkv" / "03_query_key_value" / "03_query_key_value.html").read_text()
    assert "the course failed, not your code" in feedback and "planted bug" not in feedback
    # The check that kills its grading process: tried twice, then grader-died; the class goes on.
    assert rows["sat"]["status"] == "grader-died" and rows["sat"]["score"] in ("", "0"), rows["sat"]
    assert json.loads((out / grade.STATE_FILE).read_text())["sat/06_attention_without_rnn"]["attempts"] == 2
    assert rows["cnt"]["status"] == "ok" and rows["cnt"]["score"] == rows["cnt"]["max_score"]

    # Nothing changed: a no-op, and the notebook that killed its grader is not tried a third time.
    before = {s: _graded_at(out, s) for s in ("qkv", "cnt")}
    again = _grade(course, submitted, out)
    assert again == rows
    assert {s: _graded_at(out, s) for s in before} == before
    assert json.loads((out / grade.STATE_FILE).read_text())["sat/06_attention_without_rnn"]["attempts"] == 2

    # The checks mended: without --force, the two lessons they decide are graded again, and only those.
    for name, text in originals.items():
        (checks / name).write_text(text)
    mended = _grade(course, submitted, out)
    for student in ("qkv", "sat"):
        assert mended[student]["status"] == "ok", mended[student]
        assert mended[student]["score"] == mended[student]["max_score"] != ""
    assert _graded_at(out, "cnt") == before["cnt"], "lesson 04 was regraded though nothing of it changed"
    assert _graded_at(out, "qkv") != before["qkv"]


def test_check_and_grade_agree_on_the_mistakes_catalog(tmp_path):
    """On a class built from the mistakes catalog (one wrong answer of every graded function, the rest
    right), does `check --hidden` give every notebook the per-test points `grade` records?"""
    from nbgrader.api import Gradebook

    from autograder import check, nbgrader_course
    from tests.mistakes import catalog
    picked: dict[str, list] = {}
    for answer in catalog.wrong():
        picked.setdefault(answer.function, [])
        if not picked[answer.function]:
            picked[answer.function].append(answer)
    submitted = tmp_path / "in"
    by_student = {}
    for i, answer in enumerate(a for answers in picked.values() for a in answers):
        student = f"s{i:03d}"
        (submitted / student).mkdir(parents=True)
        path = submitted / student / f"{answer.lesson}.ipynb"
        nbformat.write(submissions.answered(answer.lesson, {answer.function: answer.source}), path)
        by_student[student] = (answer, path)
    rows = grade.grade(submitted, tmp_path / "out", workers=2, progress=False)
    api = nbgrader_course.course_api(tmp_path / "out")
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        for row in rows:
            answer, path = by_student[row.student]
            report = check.check(path, hidden=True, sandboxed=True)
            recorded = {g.name: g.score for g in gb.find_submission_notebook(row.lesson, row.lesson, row.student).grades
                        if g.cell_type == "code"}
            assert (report.status, {t.name: t.points for t in report.tests}) == (row.status, recorded), answer.id
            assert report.score < report.max_score, f"{answer.id} earned full marks"
