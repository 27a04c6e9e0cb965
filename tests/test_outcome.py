"""Errors keep their origin: the student's failures count against the student, the course's never silently."""
from __future__ import annotations

import json
import sys
import types

import nbformat
import pytest

from autograder import bridge, outcome, verdicts
from tests.test_bridge import pair


@pytest.fixture
def planted_checks(monkeypatch):
    """A checks module of the course with a bug in one check and a correct one beside it."""
    module = types.ModuleType("autograder.checks.planted")

    def check_buggy(fn):
        fn(1)
        raise TypeError("a bug in the course's check")

    def check_fine(fn):
        from autograder.checks.core import Student
        if Student(fn, "f")(2) != 4:
            Student(fn, "f").fail("wrong")

    module.check_buggy, module.check_fine = check_buggy, check_fine
    monkeypatch.setitem(sys.modules, "autograder.checks.planted", module)
    return "from autograder.checks import planted as checks\n"


def test_a_bug_in_a_check_is_the_courses_not_the_students(planted_checks):
    """Does a check that raises mark its test `course-error` (never a silent failure of the student)?"""
    grader, _ = pair({"f": lambda x: x * x})
    outputs = verdicts.run(planted_checks + "checks.check_buggy(f)\n", grader)
    assert outputs[-1]["ename"] == outcome.COURSE_FAILURE
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=outputs)])
    assert outcome.status_of(nb) is outcome.Status.COURSE_ERROR


def test_a_missing_reference_and_a_malformed_test_cell_are_the_courses(planted_checks, monkeypatch, tmp_path):
    """Does a hidden check without its reference (a worker without solutions/), or a test cell the grader
    cannot run, give the course's error, not the student's?"""
    from autograder import paths, reference
    grader, _ = pair({"qkv_attention": lambda *a: None, "f": lambda x: x * x})
    monkeypatch.setattr(paths, "SOLUTIONS", tmp_path)       # nothing there
    reference.load.cache_clear()
    try:
        outputs = verdicts.run("from autograder.checks import qkv as checks\ncheckscheck = 1\n", grader)
        assert outputs[-1]["ename"] == outcome.COURSE_FAILURE           # malformed: an assignment
        outputs = verdicts.run("from autograder.checks import qkv as checks\nchecks.check_qkv_attention(qkv_attention)\n",
                               grader)
        assert outputs[-1]["ename"] == outcome.COURSE_FAILURE           # ReferenceUnavailable
    finally:
        reference.load.cache_clear()


def test_the_students_errors_stay_the_students(planted_checks):
    """Do a failed check, a missing function and an error raised in the kernel stay the student's (no course-error)?"""
    grader, _ = pair({"f": lambda x: x + 1, "g": lambda x: 1 / 0})
    for source in ("checks.check_fine(f)\n", "checks.check_fine(missing)\n", "checks.check_fine(g)\n"):
        outputs = verdicts.run(planted_checks + source, grader)
        assert outputs and outputs[-1]["output_type"] == "error"
        assert outputs[-1]["ename"] != outcome.COURSE_FAILURE, source


def test_kernel_errors_are_student_errors_that_keep_their_type_and_line():
    """Does an error raised in the kernel come back as a StudentError that is still a ZeroDivisionError,
    with the line of the code that raised it?"""
    def f(x):
        return x / 0
    grader, _ = pair({"f": f})
    with pytest.raises(ZeroDivisionError) as e:
        grader.request({"op": "lookup", "name": "f"})(1)
    assert isinstance(e.value, bridge.StudentError)
    assert "return x / 0" in e.value.location


@pytest.mark.parametrize("reply", [
    json.dumps({"value": {"dict": [[{"list": [i]}, 1] for i in range(2000)]}}),     # too many entries
    "[" * 10 + "]" * 10 + " " + "[]," * 300_000,                                    # too many containers
    json.dumps({"value": {"list": list(range(2_000_000))}}),                          # too many values
])
def test_replies_built_to_exhaust_the_grader_are_refused_before_parsing(reply):
    """Is a reply of too many dict entries, containers or values refused (the test fails for the student),
    instead of being parsed for minutes or into gigabytes?"""
    grader = bridge.Peer(lambda text: reply)
    with pytest.raises((bridge.PeerGone, bridge.BadMessage)):
        grader.request({"op": "lookup", "name": "f"})


def test_status_precedence_puts_the_course_first():
    """When a notebook has a timeout and a course error, is the row the course's error?"""
    cells = [nbformat.v4.new_code_cell(outputs=[verdicts.error_output(e, "x")])
             for e in (outcome.TIMED_OUT, outcome.COURSE_FAILURE)]
    assert outcome.status_of(nbformat.v4.new_notebook(cells=cells)) is outcome.Status.COURSE_ERROR


def test_csv_cells_never_become_spreadsheet_formulas(tmp_path):
    """Is a student's file name like `=HYPERLINK(...)` written to grades.csv as inert text?"""
    from autograder import grade
    rows = [grade.Row("=cmd|' /C calc'!A0", '=HYPERLINK("http://x","y")', None, None, "unknown-lesson"),
            grade.Row("ada", "+1", 1.0, 2.0, "ok")]
    grade.write_csv(tmp_path / "g.csv", rows)
    import csv
    with open(tmp_path / "g.csv") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not any(c[:1] in ("=", "+", "-", "@", "\t", "\r") for c in cells)


def test_symlinked_submissions_are_refused_unopened(tmp_path):
    """Is a submission that is a symbolic link (to the solutions, or a classmate's file) refused, never read?"""
    from autograder import grade, paths
    (tmp_path / "mallory").mkdir()
    (tmp_path / "mallory" / "02_bahdanau_attention.ipynb").symlink_to(paths.solution_path("02_bahdanau_attention"))
    rows, chosen = grade._lessons_of(tmp_path / "mallory")
    assert chosen == {} and [r.status for r in rows] == ["refused-file"]


def test_the_check_table_keeps_brackets(capsys, monkeypatch):
    """Does `check`'s table print a message with [..] as written (not eaten as rich markup)?"""
    from autograder import check
    monkeypatch.setenv("COLUMNS", "300")
    message = "it looks like the concatenation is [c_{i-1}; x_i] instead of [x_i; c_{i-1}] (the [red] order)."
    report = check.Report(notebook="/x/[me].ipynb", lesson="05_self_attention_rnn", tests=[
        check.TestResult(name="test_f", function="f[0]", points=0.0, max_points=2.0, passed=False, message=message)])
    check.print_table(report)
    printed = capsys.readouterr().out
    assert message in printed and "f[0]" in printed and "[me].ipynb" in printed
