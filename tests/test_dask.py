"""`grade --scheduler` with one gradebook writer: Dask workers that cannot see the course folder grade in
scratch courses of their own and return what they made; the command that started the run alone writes
OUT, and OUT ends up as the local path would have left it."""
import os
import shutil
import subprocess
import sys
import time

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder import grade, nbgrader_course, paths, remote, submissions

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask")]
LESSON = "02_bahdanau_attention"
WORKERS = 2


def _class(root):
    """An honest student, a wrong answer, an invalid notebook, in nbgrader's layout after `nbgrader collect`
    (OUT/submitted/<student>/<lesson>/, with a timestamp.txt for ada)."""
    wrong = {"written_heatmap": "Step j reads position m - j.",
             "dot_scores": "def dot_scores(h, s, W_K, W_Q):\n"
                           "    return ((h @ W_K.T) @ (s @ W_Q.T)[..., None]).squeeze(-1) / W_K.shape[0] ** 0.5\n"}
    for student, nb in {"ada": submissions.answered(LESSON), "cleo": submissions.answered(LESSON, wrong)}.items():
        (root / student / LESSON).mkdir(parents=True)
        nbformat.write(nb, root / student / LESSON / f"{LESSON}.ipynb")
    (root / "ada" / LESSON / "timestamp.txt").write_text("2026-03-01 12:00:00.000000 UTC")
    (root / "dev" / LESSON).mkdir(parents=True)
    (root / "dev" / LESSON / f"{LESSON}.ipynb").write_text('{"cells": [}')
    return root


def _hidden_workers(scheduler: str, hidden, space):
    """`dask worker` processes in mount namespaces of their own, a tmpfs over `hidden`: they cannot see it."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("hiding the course folder from the workers needs root and unshare")
    script = 'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"'
    dask = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nworkers", "1", "--nthreads", "1",
            "--no-dashboard", "--local-directory", str(space)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.REPO), os.environ.get("PYTHONPATH")]))}
    return [subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hidden),
                              *dask, "--name", f"hidden-{i}"], cwd=space, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=open(space / f"worker-{i}.log", "w"))
            for i in range(WORKERS)]


def _gradebook(out):
    """Everything the gradebook says about each submission: per cell, its scores and comments."""
    api = nbgrader_course.course_api(out)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        found = {}
        for sub in gb.assignment_submissions(LESSON):
            nb = gb.find_submission_notebook(LESSON, LESSON, sub.student.id)
            found[sub.student.id] = ({g.name: (g.auto_score, g.max_score, g.needs_manual_grade) for g in nb.grades},
                                     {c.name: c.auto_comment for c in nb.comments}, nb.score, nb.max_score,
                                     sub.timestamp, nb.late_submission_penalty)
        return found


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The class graded locally, and through a cluster whose workers cannot see OUT (or the submissions)."""
    from dask.distributed import Client, LocalCluster
    local_root = tmp_path_factory.mktemp("local")
    start = time.monotonic()
    local_rows = grade.grade(_class(local_root / "out" / "submitted"), local_root / "out", workers=WORKERS,
                             progress=False)
    local_s = time.monotonic() - start

    hidden = tmp_path_factory.mktemp("hidden")           # the submissions and OUT: never on a worker
    submitted, out = _class(hidden / "out" / "submitted"), hidden / "out"
    space = tmp_path_factory.mktemp("workers")
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster, \
            Client(cluster.scheduler_address) as client:
        procs = _hidden_workers(cluster.scheduler_address, hidden, space)
        try:
            client.wait_for_workers(WORKERS, timeout=180)
            seen = client.run(os.path.exists, str(out))
            seen_input = client.run(os.path.exists, str(submitted / "ada"))
            start = time.monotonic()
            rows = grade.grade(submitted, out, progress=False, scheduler=cluster.scheduler_address)
            cluster_s = time.monotonic() - start
            gradebook_mtime = (out / "gradebook.db").stat().st_mtime_ns
            again = grade.grade(submitted, out, progress=False, scheduler=cluster.scheduler_address)
            seen_after = client.run(os.path.exists, str(out / "gradebook.db"))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    print(f"\nthe class graded locally in {local_s:.1f} s, on the cluster in {cluster_s:.1f} s")
    return dict(local=local_root / "out", local_rows=local_rows, out=out, rows=rows, again=again, seen=seen,
                seen_input=seen_input, seen_after=seen_after, gradebook_mtime=gradebook_mtime)


def test_the_workers_cannot_see_the_course_folder(both):
    assert len(both["seen"]) == WORKERS
    assert not any(both["seen"].values()) and not any(both["seen_input"].values())
    assert not any(both["seen_after"].values())


def test_the_cluster_gives_the_local_grades(both):
    """Same rows, same grades.csv, the same entries in nbgrader's gradebook, cell by cell."""
    rows = {(r.student, r.lesson): r for r in both["rows"]}
    assert both["rows"] == both["local_rows"]
    assert rows["ada", LESSON].status == "ok" and rows["ada", LESSON].score == 14
    assert rows["cleo", LESSON].status == "ok" and rows["cleo", LESSON].score == 12
    assert rows["dev", LESSON].status == "invalid-notebook"
    assert (both["out"] / "grades.csv").read_text() == (both["local"] / "grades.csv").read_text()
    cluster, local = _gradebook(both["out"]), _gradebook(both["local"])
    assert set(cluster) == {"ada", "cleo"}
    assert cluster == local
    assert cluster["ada"][4] is not None and cluster["cleo"][4] is None      # ada's timestamp.txt, recorded


def test_the_course_folder_has_the_notebooks_feedback_and_logs(both):
    out, local = both["out"], both["local"]
    for student in ("ada", "cleo"):
        made = out / "autograded" / student / LESSON / f"{LESSON}.ipynb"
        assert made.stat().st_mode & 0o777 == (local / made.relative_to(out)).stat().st_mode & 0o777
        nb = nbformat.read(made, as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in nbformat.read(local / made.relative_to(out),
                                                                                as_version=4).cells]
        html = (out / "feedback" / student / LESSON / f"{LESSON}.html").read_text()
        assert "HIDDEN TESTS" not in html and ">check_dot_scores<" not in html
        text = grade.log_file(out, student, LESSON).read_text()
        assert "status: ok" in text and "--- nbgrader's log ---" in text and "graded on " in text
    assert "sqrt(d_k)" in (out / "feedback" / "cleo" / LESSON / f"{LESSON}.html").read_text()
    for part in ("autograded", "feedback"):         # the submission's other files follow it, as nbgrader copies them
        stamp = out / part / "ada" / LESSON / "timestamp.txt"
        assert stamp.read_text() == (local / stamp.relative_to(out)).read_text()


def test_a_rerun_is_a_no_op(both):
    assert both["again"] == both["rows"]
    assert (both["out"] / "gradebook.db").stat().st_mtime_ns == both["gradebook_mtime"]


def test_the_formgrader_sees_the_submissions_and_generate_feedback_works_in_out(both):
    """nbgrader's own API in OUT (what the formgrader shows) lists the graded submissions with their
    scores, and nbgrader's generate_feedback run there rebuilds the same feedback page."""
    out = both["out"]
    api = nbgrader_course.course_api(out)
    listed = {s["student"]: s for s in api.get_submissions(LESSON)}
    assert listed["ada"]["autograded"] and listed["ada"]["code_score"] == listed["ada"]["max_code_score"] == 14
    assert listed["cleo"]["autograded"] and listed["cleo"]["code_score"] == 12
    assert listed["cleo"]["needs_manual_grade"]           # the written answer waits for the instructor
    page = out / "feedback" / "cleo" / LESSON / f"{LESSON}.html"
    before = page.read_text()
    result = api.generate_feedback(LESSON, "cleo", force=True)
    assert result["success"], result.get("log")
    assert page.read_text() == before


def test_a_reply_that_cannot_be_recorded_costs_its_row_only(tmp_path):
    """A malformed reply, or one whose grades differ from what nbgrader computes from its notebook, is
    `autograde-failed` with the reason in the row's log, and leaves no grade of it in the gradebook."""
    out = tmp_path / "out"
    grade.prepare_lessons(out, {LESSON})
    answered = nbformat.writes(submissions.answered(LESSON)).encode()
    assert remote.record(out, "ada", LESSON, "garbage") == "autograde-failed"
    assert "could not be recorded" in grade.log_file(out, "ada", LESSON).read_text()
    assert remote.record(out, "ada", LESSON, {**remote.failure(""), "status": "invalid-notebook"}) == "autograde-failed"
    lying = {"status": "ok", "log": "", "autograded": answered, "feedback": b"<html></html>",
             "grades": {"test_dot_scores": [99.0, 2.0]}, "comments": {}, "worker": "x",
             "student": "../../elsewhere", "path": str(tmp_path / "elsewhere")}
    assert remote.record(out, "ben", LESSON, lying) == "autograde-failed"
    assert "differs from the worker's" in grade.log_file(out, "ben", LESSON).read_text()
    assert not (out / "autograded" / "ben").exists() and not (tmp_path / "elsewhere").exists()
    api = nbgrader_course.course_api(out)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        assert gb.assignment_submissions(LESSON) == []


def test_a_worker_refuses_another_course_and_names_that_name_paths():
    """A worker whose course differs from the main process's (another version of the solutions, checks,
    grader or settings) grades nothing, and a student name that would name a path is refused."""
    from autograder.settings import DEFAULT
    settings = DEFAULT.replace(workers=1)
    notebook = nbformat.writes(submissions.answered(LESSON)).encode()
    stale = remote.RemoteJob("ada", LESSON, notebook, None, "0" * 64, settings.to_dict())
    reply = remote.grade_job(stale)
    assert reply["status"] == "autograde-failed" and "another version of the course" in reply["log"]
    assert reply["autograded"] is None and reply["grades"] == {}
    key = grade.verdict_key(LESSON, settings)
    for name in ("../ada", "..", "", "a/b"):
        reply = remote.grade_job(remote.RemoteJob(name, LESSON, notebook, None, key, settings.to_dict()))
        assert reply["status"] == "autograde-failed" and reply["autograded"] is None, name
