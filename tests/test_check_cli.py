"""`python -m autograder check`, run as a self-learner runs it: a real kernel, the real lessons."""

import nbformat
import pytest

from autograder import paths, submissions
from tests.conftest import LESSONS, check_json, points_by_function, run_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("lesson", LESSONS)
def test_solution_gets_full_marks_with_hidden_checks(lesson):
    """Does the instructor's own notebook pass every visible and hidden check, exit code 0?"""
    rc, report = check_json(paths.solution_path(lesson), "--hidden")
    assert rc == 0, report
    assert report["score"] == report["max_score"] > 0
    assert all(t["passed"] and t["function"] for t in report["tests"])


@pytest.mark.parametrize("lesson", LESSONS)
def test_untouched_lesson_gets_zero(lesson):
    """Does the released lesson, untouched, score zero autograded points, exit code 1?"""
    rc, report = check_json(paths.lesson_path(lesson), "--hidden")
    assert rc == 1
    assert report["score"] == 0 and report["max_score"] > 0
    assert all("not implemented" in t["message"] for t in report["tests"])


def test_one_wrong_function_loses_only_its_points(tmp_path):
    """Does a softmax over the batch axis cost attention_weights' points, and nothing else's?"""
    lesson = "02_bahdanau_attention"
    nb = submissions.answered(lesson, {"attention_weights":
                                       "def attention_weights(scores, mask=None):\n    return torch.softmax(scores, dim=0)\n"})
    path = tmp_path / "my_work.ipynb"                  # renamed: the lesson is found from its cells
    nbformat.write(nb, path)
    rc, report = check_json(path, "--hidden")
    assert rc == 1 and report["lesson"] == lesson
    points = points_by_function(report)
    assert points.pop("attention_weights")[0] == 0
    assert all(got == full for got, full in points.values()), points
    message = next(t["message"] for t in report["tests"] if t["function"] == "attention_weights")
    # The student sees the diagnosis only: no traceback, no hidden check's name or source.
    assert "batch axis" in message
    assert "Traceback" not in message and "check_attention_weights" not in message


def test_visible_checks_without_hidden(tmp_path):
    """Without --hidden, are only the visible checks run, and do they still pass a correct answer?"""
    path = tmp_path / "02_bahdanau_attention.ipynb"
    nbformat.write(submissions.answered("02_bahdanau_attention"), path)
    rc, report = check_json(path)
    assert rc == 0 and report["score"] == report["max_score"]


def test_deleted_and_edited_test_cells_are_restored(tmp_path):
    """Can a student escape a failing test by deleting its cell or editing it into `pass`?"""
    lesson = "02_bahdanau_attention"
    nb = submissions.answered(lesson, {"dot_scores": "def dot_scores(h, s, W_K, W_Q):\n    return (h * 0).sum(-1)\n",
                                       "context_vector": "def context_vector(alpha, h):\n    return h.mean(1)\n"})
    nb.cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "test_dot_scores"]
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "test_context_vector":
            cell.source = "pass"
    path = tmp_path / f"{lesson}.ipynb"
    nbformat.write(nb, path)
    rc, report = check_json(path, "--hidden")
    points = points_by_function(report)
    assert points["dot_scores"][0] == 0 and points["context_vector"][0] == 0
    assert points["attention_decode"][0] == points["attention_decode"][1]


@pytest.mark.parametrize("content, reason", [
    ('{"cells": [', "not a valid notebook"),
    ("", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text file"),
])
def test_unreadable_notebook_exits_2_with_one_line(tmp_path, content, reason):
    """Does a broken file give exit code 2 and a one-line reason, not a traceback?"""
    path = tmp_path / "02_bahdanau_attention.ipynb"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = run_cli("check", str(path))
    assert proc.returncode == 2
    assert reason in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_table_output_names_functions_and_points():
    """Does the plain (non-JSON) output show each function with its points and result?"""
    proc = run_cli("check", str(paths.lesson_path("02_bahdanau_attention")))
    assert proc.returncode == 1
    for fn in ("additive_scores", "attention_decode", "0 / 4", "FAIL"):
        assert fn in proc.stdout


def test_visible_checks_work_without_the_solutions(tmp_path):
    """Can a student who has the package and lessons/ but no solutions/ run the visible checks, and does
    --hidden then say clearly that it needs the instructor's notebooks?"""
    import os
    import subprocess
    import sys
    path = tmp_path / "02_bahdanau_attention.ipynb"
    nbformat.write(submissions.answered("02_bahdanau_attention"), path)
    env = {**os.environ, "ATTENTION_COURSE_SOLUTIONS": str(tmp_path / "nowhere")}
    visible = subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--json"],
                             capture_output=True, text=True, env=env, cwd=paths.REPO)
    assert visible.returncode == 0, visible.stdout + visible.stderr
    hidden = subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--hidden"],
                            capture_output=True, text=True, env=env, cwd=paths.REPO)
    assert hidden.returncode == 2 and "solutions/02_bahdanau_attention.ipynb" in hidden.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_exits_2():
    """Does asking for CUDA where there is none give exit code 2 and one clear line?"""
    proc = run_cli("check", str(paths.lesson_path("02_bahdanau_attention")), "--device", "cuda")
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr


def test_dead_kernel_keeps_proven_points_and_fails_the_rest(tmp_path):
    """When a student's cell kills the kernel, do the tests before it keep their points, every test after
    it score zero (not full marks for a test that never ran), and the report say kernel-died?"""
    lesson = "02_bahdanau_attention"
    path = tmp_path / f"{lesson}.ipynb"
    nbformat.write(submissions.answered(lesson, {"context_vector": "import os\nos._exit(1)\n"}), path)
    rc, report = check_json(path, "--hidden")
    assert rc == 1 and report["status"] == "kernel-died"
    points = points_by_function(report)
    assert [points[f][0] for f in ("additive_scores", "dot_scores", "attention_weights")] == [2, 2, 3]
    assert all(points[f][0] == 0 for f in ("context_vector", "attention_decoder_step", "attention_decode"))
    assert "kernel died" in next(t["message"] for t in report["tests"] if t["function"] == "attention_decode")


def test_error_in_the_kernel_names_the_students_line(tmp_path):
    """Does an exception raised in the student's kernel come back with the student's line and the input shapes?"""
    lesson = "02_bahdanau_attention"
    nb = submissions.answered(lesson, {"context_vector":
                                       "def context_vector(alpha, h):\n    total = alpha.sum(dim=7)\n    return total\n"})
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    rc, report = check_json(path, "--hidden")
    message = next(t["message"] for t in report["tests"] if t["function"] == "context_vector")
    assert rc == 1 and "line 2: total = alpha.sum(dim=7)" in message, message
    assert "GradingError" not in message
