"""`grade` end to end: a real class, the real nbgrader, a real SQLite gradebook, real feedback."""
import csv

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder import grade, nbgrader_course, submissions

pytestmark = pytest.mark.slow
LESSON = "02_bahdanau_attention"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    students = {
        "ada": submissions.answered(LESSON),
        "ben": submissions.answered(LESSON, {fn: "" for fn in submissions.solution_sources(LESSON)}),
        "cleo": submissions.answered(LESSON, {"written_heatmap": "Step j reads position m - j.", "dot_scores": "def dot_scores(h, s, W_K, W_Q):\n"
                                                            "    return ((h @ W_K.T) @ (s @ W_Q.T)[..., None]).squeeze(-1) / W_K.shape[0] ** 0.5\n"}),
    }
    for student, nb in students.items():
        (root / "submitted" / student).mkdir(parents=True)
        nbformat.write(nb, root / "submitted" / student / f"{LESSON}.ipynb")
    (root / "submitted" / "dev").mkdir()
    (root / "submitted" / "eve").mkdir()
    nbformat.write(submissions.answered(LESSON), root / "submitted" / "eve" / "Copy of lesson 2.ipynb")
    (root / "submitted" / "dev" / f"{LESSON}.ipynb").write_text('{"cells": [}')
    nbformat.write(nbformat.v4.new_notebook(), root / "submitted" / "dev" / "07_transformers.ipynb")
    nbformat.write(submissions.answered(LESSON), root / "submitted" / "dev" / "my work (1).ipynb")
    nbformat.write(submissions.answered(LESSON), root / "submitted" / "dev" / "copy of my work.ipynb")
    out = root / "out"
    rows = grade.grade(root / "submitted", out, workers=2, progress=False)
    return root, out, rows


def test_every_submission_has_a_row_with_a_status(graded):
    """Does every submitted file get a CSV row, with the broken and unknown ones labelled, not dropped?"""
    _, out, _ = graded
    with open(out / "grades.csv") as f:
        rows = {(r["student"], r["lesson"]): r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values()))) == ["student", "lesson", "score", "max_score", "status"]
    assert rows[("ada", LESSON)]["score"] == rows[("ada", LESSON)]["max_score"] == "14"
    assert rows[("eve", LESSON)]["score"] == "14"          # renamed, found by its cells
    assert rows[("ben", LESSON)]["score"] == "0"
    assert rows[("cleo", LESSON)]["score"] == "12"
    assert rows[("dev", LESSON)]["status"] == "invalid-notebook"
    assert rows[("dev", "07_transformers")]["status"] == "unknown-lesson"
    assert {r["status"] for k, r in rows.items() if k[0] != "dev"} == {"ok"}
    # dev's lesson 02 comes three times: the broken file with the lesson's name claims it, and both
    # copies under other names, recognized by their cells, are reported as duplicates.
    assert rows[("dev", "my work (1)")]["status"] == rows[("dev", "copy of my work")]["status"] == "duplicate-lesson"


def test_grades_are_in_nbgrader_gradebook(graded):
    """Are the scores recorded in nbgrader's own SQLite gradebook, per test cell?"""
    _, out, _ = graded
    api = nbgrader_course.course_api(out)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        ada = gb.find_submission_notebook(LESSON, LESSON, "ada")
        cleo = gb.find_submission_notebook(LESSON, LESSON, "cleo")
        assert ada.code_score == ada.max_code_score == 14
        assert gb.find_grade("test_dot_scores", LESSON, LESSON, "cleo").score == 0
        assert gb.find_grade("test_attention_decode", LESSON, LESSON, "cleo").score == 4
        assert cleo.needs_manual_grade          # the written answer waits for the instructor
        assert {s.id for s in gb.students} == {"ada", "ben", "cleo", "eve"}


def test_feedback_is_written_without_hidden_tests(graded):
    """Does each graded student get nbgrader's HTML feedback, with the failure message and no hidden test?"""
    _, out, _ = graded
    for student in ("ada", "ben", "cleo"):
        html = (out / "feedback" / student / LESSON / f"{LESSON}.html").read_text()
        assert "HIDDEN TESTS" not in html and ">check_dot_scores<" not in html
    cleo = (out / "feedback" / "cleo" / LESSON / f"{LESSON}.html").read_text()
    assert "sqrt(d_k)" in cleo


def test_second_run_regrades_nothing(graded):
    """Is a second `grade` over an unchanged class a no-op that gives the same rows?"""
    root, out, rows = graded
    before = (out / "gradebook.db").stat().st_mtime_ns
    again = grade.grade(root / "submitted", out, workers=2, progress=False)
    assert again == rows
    assert (out / "gradebook.db").stat().st_mtime_ns == before


def test_infinite_loop_and_dead_kernel_get_their_status_and_do_not_stop_the_class(tmp_path):
    """Does a student who loops forever get `timeout`, and one who kills the kernel `kernel-died` with the
    points proven before the death (nbgrader alone zeroes the notebook), while an honest student graded
    beside them still gets full marks?"""
    students = {
        "loops": {"context_vector": "def context_vector(alpha, h):\n    while True:\n        pass\n"},
        "kills": {"context_vector": "import os\nos._exit(1)\n\ndef context_vector(alpha, h):\n    pass\n"},
        "honest": {},
    }
    for student, answers in students.items():
        (tmp_path / "in" / student).mkdir(parents=True)
        nbformat.write(submissions.answered(LESSON, answers), tmp_path / "in" / student / f"{LESSON}.ipynb")
    rows = {r.student: r for r in grade.grade(tmp_path / "in", tmp_path / "out", workers=2, progress=False,
                                              cell_timeout=10)}
    assert rows["loops"].status == "timeout" and rows["loops"].score < 14
    assert rows["kills"].status == "kernel-died"
    assert rows["kills"].score == 7 and rows["kills"].max_score == 14      # the three tests before the death
    assert rows["honest"].status == "ok" and rows["honest"].score == rows["honest"].max_score == 14


def test_grading_on_a_dask_cluster_matches_the_local_pool(graded, tmp_path):
    """Does `grade --scheduler` on a LocalCluster of worker processes give the same rows and gradebook?"""
    from dask.distributed import LocalCluster
    root, _, rows = graded
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        on_cluster = grade.grade(root / "submitted", tmp_path / "out", progress=False,
                                 scheduler=cluster.scheduler_address)
    assert on_cluster == rows
    api = nbgrader_course.course_api(tmp_path / "out")
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        assert gb.find_submission_notebook(LESSON, LESSON, "ada").code_score == 14


def test_killed_run_resumes_without_regrading_what_is_done(tmp_path):
    """When the grading process is killed mid-class (SIGKILL, as a crash or a reboot would), does the next
    run keep every grade already recorded, regrade none of them, and finish the rest?"""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    answered = submissions.answered("03_query_key_value")
    for i in range(6):
        (tmp_path / "in" / f"s{i}").mkdir(parents=True)
        nbformat.write(answered, tmp_path / "in" / f"s{i}" / "03_query_key_value.ipynb")
    out, state = tmp_path / "out", tmp_path / "out" / grade.STATE_FILE
    proc = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(tmp_path / "in"), "--out", str(out),
                             "--workers", "1"], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    def finished():        # the state also lists the notebooks attempted but not finished (status None)
        return {k: v for k, v in json.loads(state.read_text()).items() if v["status"]} if state.is_file() else {}
    while time.monotonic() < deadline and len(finished()) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = finished()
    assert 2 <= len(done) < 6, "the run was not killed mid-class"
    graded_at = {key: (out / "autograded" / key.split("/")[0] / "03_query_key_value" / "03_query_key_value.ipynb")
                 .stat().st_mtime_ns for key in done}
    rows = grade.grade(tmp_path / "in", out, workers=1, progress=False)
    assert [(r.student, r.score, r.status) for r in rows] == [(f"s{i}", 6, "ok") for i in range(6)]
    for key, mtime in graded_at.items():
        path = out / "autograded" / key.split("/")[0] / "03_query_key_value" / "03_query_key_value.ipynb"
        assert path.stat().st_mtime_ns == mtime, f"{key} was graded again"
