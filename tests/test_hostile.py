"""The hostile class (tests/files/hostile/, built by tests/hostile.py) graded end to end with `grade`.

Every student gets a row; honest students get full marks; no hostile student earns more than its
wrong answers allow; the run ends within its time limits; nothing outside the output folder changes,
and nothing changes the grades after the run (a detached process of the kernel's included).
Needs the sandbox (Linux, root): without it the class would do what it says.
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autograder import paths, sandbox
from tests import hostile

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.unavailable()), reason=sandbox.unavailable() or "sandbox available"),
              # one pytest-xdist worker grades this class once, and never beside the resource class's memory attacks
              pytest.mark.xdist_group("hostile")]

CELL_TIMEOUT = 20       # generous: honest students must pass on a loaded CI machine
RUN_LIMIT = 900          # seconds for the whole class on 2 workers, timeouts included


def tree_digest(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Path -> sha256 of every file under `root` (minus `skip`, caches and the virtual environment)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not (skip and skip in p.parents) and not any(
                part in (".venv", "__pycache__", ".pytest_cache", ".git", "demo-out") for part in p.parts):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def grades_snapshot(out: Path) -> tuple[str, list]:
    with sqlite3.connect(out / "gradebook.db") as db:
        rows = db.execute("SELECT * FROM grade ORDER BY id").fetchall()
    return (out / "grades.csv").read_text(), rows


UID_BASE = 2_000_000_000      # this run's kernels get user ids of their own, apart from other tests'


def sandbox_processes() -> list[int]:
    """Processes running as a user id of this run's kernels."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and UID_BASE <= entry.stat().st_uid < UID_BASE + sandbox.UID_SPAN:
                pids.append(int(entry.name))
        except FileNotFoundError:
            pass
    return pids


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    submissions = tmp / "class"
    shutil.copytree(paths.REPO / "tests" / "files" / "hostile", submissions, ignore=shutil.ignore_patterns("*.md"))
    out = tmp / "course"
    before = tree_digest(paths.REPO), tree_digest(submissions)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out),
                           "--workers", "2", "--cell-timeout", str(CELL_TIMEOUT)],
                          capture_output=True, text=True, timeout=RUN_LIMIT,
                          env={**os.environ, "ATTENTION_SANDBOX_UID_BASE": str(UID_BASE)})
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "grades.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return {"rows": rows, "out": out, "seconds": seconds, "before": before, "submissions": submissions,
            "after_run": grades_snapshot(out)}


def test_every_student_has_a_row(graded):
    """One row per student of the class, and no row for a student who does not exist?"""
    assert sorted(graded["rows"]) == sorted(s.name for s in hostile.STUDENTS)


@pytest.mark.parametrize("student", hostile.STUDENTS, ids=[s.name for s in hostile.STUDENTS])
def test_student_gets_no_more_than_its_answers_earn(graded, student):
    """Does this student get an acceptable status and no more points than its correct answers are worth
    (exactly full marks for an honest student)?"""
    row = graded["rows"][student.name]
    score = float(row["score"] or 0)
    assert row["status"] in student.statuses, (student.attack, row)
    assert score <= student.max_points, (student.attack, row)
    if student.full_marks:
        assert score == student.max_points and row["status"] == "ok", row


def test_run_ends_within_its_time_limits(graded):
    """Does the class finish in reasonable time although some cells loop forever and ignore signals?"""
    assert graded["seconds"] < RUN_LIMIT


def test_nothing_outside_the_output_folder_changes(graded):
    """Are the repository (solutions, checks, tests) and the submitted files byte for byte unchanged?"""
    repo_before, submissions_before = graded["before"]
    assert tree_digest(paths.REPO) == repo_before
    assert tree_digest(graded["submissions"]) == submissions_before


def test_nothing_changes_the_grades_after_the_run(graded):
    """With the run over, is no process of any kernel left (detached ones included), and are the gradebook
    and grades.csv unchanged 5 s later?"""
    deadline = time.monotonic() + 90          # a killed namespace's processes may take a while to be reaped under load
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {pid: describe(pid) for pid in sandbox_processes()}
    assert left == {}
    time.sleep(5)
    assert grades_snapshot(graded["out"]) == graded["after_run"]


def describe(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "gone"
    return f"state {stat[2]}, parent {stat[3]}: {cmdline}"


REPLAYS = {"h30_replay_lesson01": ("simple_rnn_step",), "h31_replay_lesson02": hostile.LESSON02_HELPERS,
           "h32_replay_lesson05": ("self_attention_rnn_step",)}


@pytest.mark.parametrize("student", sorted(REPLAYS))
def test_replayed_helpers_earn_nothing(graded, student):
    """A replay attacker's helpers (stubs that replay what its composite recorded from the reference helpers):
    does each earn 0, while its correct composites keep their points? (Where the defences are off, the same
    notebooks earn full marks: tests/test_hostile_resources.py.)"""
    from nbgrader.api import Gradebook

    from autograder import nbgrader_course
    lesson = hostile.BY_NAME[student].lesson
    api = nbgrader_course.course_api(graded["out"])
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        points = {g.name.removeprefix("test_"): g.score for g in gb.find_submission_notebook(lesson, lesson, student).grades
                  if g.cell_type == "code"}
    expected = {f: 0.0 if f in REPLAYS[student] else p for f, p in hostile.TEST_POINTS[lesson].items()}
    assert points == expected


class LiveHtml(HTMLParser):
    """What in a page runs code or navigates when it is opened: event handlers, javascript:, vbscript: and
    data:text/html URLs, frames, forms, embeds, and scripts that carry a student's payload (nbconvert's own
    scripts aside)."""

    URLS = ("javascript:", "vbscript:", "data:text/html")
    TAGS = ("iframe", "frame", "frameset", "form", "object", "embed", "applet", "base")

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._script: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag in self.TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.lower().startswith("on") or "".join((value or "").split()).lower().startswith(self.URLS):
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag == "script":
            self._script = dict(attrs).get("src") or ""

    def handle_data(self, data):
        if self._script is not None:
            self._script += data

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            if "XSS" in self._script or "innerHTML" in self._script:
                self.found.append(f"<script>{self._script[:80]}")
            self._script = None


def test_no_student_html_runs_in_the_feedback(graded):
    """h33 put <script>, onerror/onload, javascript: links, an iframe and a form in its outputs and its written
    answer: does none of it survive as live HTML in its feedback page or in its graded notebook's outputs?"""
    import nbformat
    student = hostile.BY_NAME["h33_script_in_output"]
    assert len(LiveHtml(hostile._cell(hostile.SCRIPT_IN_OUTPUT)).found) >= 5        # the payloads, raw, are found
    folder = f"{student.name}/{student.lesson}/{student.lesson}"
    page = (graded["out"] / "feedback" / f"{folder}.html").read_text()
    assert "XSS-LINK" in page and "XSS-WRITTEN" in page          # the outputs and the answer are shown ...
    assert LiveHtml(page).found == []                             # ... and nothing of them runs
    nb = nbformat.read(graded["out"] / "autograded" / f"{folder}.ipynb", as_version=4)
    shown = [str(value) for cell in nb.cells for out in cell.get("outputs", [])
             for mime, value in out.get("data", {}).items() if mime in ("text/html", "image/svg+xml", "text/markdown")]
    shown += [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    assert [found for html in shown for found in LiveHtml(html).found] == []
    assert not any("javascript" in mime for cell in nb.cells for out in cell.get("outputs", [])
                   for mime in out.get("data", {}))


def test_check_and_grade_agree(graded):
    """Does `check --hidden`, run sandboxed on each graded notebook of the class, give the status and the
    per-test points that `grade` recorded in the gradebook?"""
    from nbgrader.api import Gradebook

    from autograder import check, grade, nbgrader_course
    from autograder.outcome import Status
    api = nbgrader_course.course_api(graded["out"])
    compared = 0
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        for student, row in sorted(graded["rows"].items()):
            # A notebook stopped by a limit (a memory hog, an endless loop) ends in a race between the limits
            # (timeout or kernel-died, and how many tests ran) that two runs may settle differently.
            if not Status(row["status"]).graded or row["status"] in ("timeout", "kernel-died"):
                continue
            _, chosen = grade._lessons_of(graded["submissions"] / student)
            lesson = row["lesson"]
            report = check.check(chosen[lesson], hidden=True, timeout=CELL_TIMEOUT, sandboxed=True)
            recorded = {g.name: g.score for g in gb.find_submission_notebook(lesson, lesson, student).grades
                        if g.cell_type == "code"}
            assert report.status == row["status"], student
            assert {t.name: t.points for t in report.tests} == recorded, student
            compared += 1
    assert compared >= 15
