"""In a real browser (Debian's chromium driven by playwright, no browser download), as people use the course:
a student answers a lesson in JupyterLab and runs it all without an error; an instructor grades a written
answer in nbgrader's formgrader and generates feedback from it; the feedback page shows formulas rendered,
runs no student script and shows no grader path, with no network. Each JupyterLab is a `jupyter lab` of the
venv with throwaway config, data and runtime folders, killed with its kernels when its test ends."""
from __future__ import annotations

import csv
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder import nbgrader_course, notebooks, paths, submissions
from tests import test_feedback as fb

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium; .ci/run installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_feedback_page_shows_rendered_math_and_runs_no_student_script(browser, tmp_path):
    """Opened offline in chromium, does the feedback page show MathML with a real size, no raw `$`, no grader
    path, and fire no dialog, request and script of the student's?"""
    nb = nbformat.read(paths.REPO / "lessons" / "02_bahdanau_attention.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "markdown"] + fb._attack_notebook().cells
    page_file = tmp_path / "feedback.html"
    page_file.write_text(fb._export(nb))

    context = browser.new_context(offline=True)
    page = context.new_page()
    dialogs, requests = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(page_file.as_uri())
    page.wait_for_timeout(1500)
    page.screenshot(path="/tmp/feedback_page.png", full_page=False)

    sizes = page.eval_on_selector_all("math[display]", "els => els.map(e => e.getBoundingClientRect().height)")
    assert len(sizes) >= 5 and all(h > 0 for h in sizes), sizes
    markdown_text = page.inner_text("main")
    assert "$" not in markdown_text.replace("`$keep$`", "")
    for path in (str(paths.REPO), fb.COURSE):
        assert path not in page.content()
    assert dialogs == [], dialogs
    assert page.title() != "pwned"
    assert [u for u in requests if "cdn" in u or u.startswith("http")] == []
    context.close()


# -- JupyterLab: a student and an instructor, each with a server of their own ---------------------------------

LESSON = "03_query_key_value"           # a quick lesson: two graded functions, one written question
WRITTEN = "written_roles"               # its written question's grade id (solutions/03_query_key_value.ipynb)
STUDENT = "alice"
WRITTEN_ANSWER = "W_K reads the letters and W_V the positions; tied values can only repeat what the keys hold."
SCORE, COMMENT = 1.5, "Right about W_K and W_V; say also why three numbers per position are too few."
QUICK = {"LESSONKIT_QUICK": "1"}        # the test suite's quick training (lessonkit/guards.py)
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def _isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any Jupyter, IPython or nbgrader setting of the machine's: config,
    data, runtime and settings folders in `home`, a throwaway; the venv's own (sys.prefix) still count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_", "IPYTHON", "NBGRADER"))}
    env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "lab-workspaces"), MPLCONFIGDIR=str(home / "mpl"), **extra)
    # As a user who answered "no" to the news toast once: nothing asks for a click, nothing is fetched.
    settings = home / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return env


def _stop(proc: subprocess.Popen) -> None:
    """End `proc` (the leader of its own session) and everything it started, kernels included."""
    try:
        import psutil
        family = psutil.Process(proc.pid).children(recursive=True)
    except Exception:           # gone already, or no psutil: the process group is all we know
        family = []
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for child in family:
        try:
            child.kill()
        except Exception:
            pass


@dataclass
class Lab:
    url: str
    token: str

    def open(self, context, path: str = "lab"):
        """A page of this JupyterLab at `path`, with the lists its scripts' errors and its requests that leave
        the server (a CDN, say: these machines have no network) are recorded in."""
        page, errors, outside = context.new_page(), [], []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda r: None if r.url.startswith((self.url, "data:", "blob:")) else outside.append(r.url))
        page.goto(f"{self.url}/{path}?token={self.token}")
        return page, errors, outside


@contextmanager
def jupyter_lab(root: Path, home: Path, **env: str):
    """`jupyter lab` from the venv, serving `root` (also its working directory) on a free port with a token,
    as root if need be; yields once it answers, killed with its kernels on the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token, log = secrets.token_hex(16), home / "jupyter-lab.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            cwd=root, env=_isolated_env(home, **env), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"jupyter lab did not answer in 120 s:\n{log.read_text()[-3000:]}"
            try:
                request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        yield Lab(url, token)
    finally:
        _stop(proc)


@contextmanager
def _screenshot_on_failure(page, path: Path):
    try:
        yield
    except BaseException:
        try:
            page.screenshot(path=str(path))
        except Exception:
            pass
        raise


@dataclass
class Grading:
    proc: subprocess.Popen
    course: Path
    log: Path

    def wait(self, timeout: float = 170) -> Path:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"grade still running after {timeout} s:\n{self.log.read_text()[-3000:]}")
        assert self.proc.returncode == 0, self.log.read_text()[-3000:]
        with open(self.course / "grades.csv", newline="") as table:
            rows = [(r["student"], r["lesson"], r["status"]) for r in csv.DictReader(table)]
        assert rows == [(STUDENT, LESSON, "ok")], self.log.read_text()[-3000:]
        return self.course


@pytest.fixture(scope="module")
def grading(tmp_path_factory):
    """`python -m autograder grade SUBMISSIONS --out COURSE` of one student who answered everything, the
    written question included, started in the background at once: it grades while the student's scene runs."""
    root = tmp_path_factory.mktemp("class")
    (root / "submissions" / STUDENT).mkdir(parents=True)
    nbformat.write(submissions.answered(LESSON, {WRITTEN: WRITTEN_ANSWER}),
                   root / "submissions" / STUDENT / f"{LESSON}.ipynb")
    log = root / "grade.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(root / "submissions"),
                                 "--out", str(root / "course")], cwd=paths.REPO, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=_isolated_env(root / "home", **QUICK))
    yield Grading(proc, root / "course", log)
    _stop(proc)


def _wait_until_idle(page, timeout_ms: int) -> None:
    """Every code cell ran (`[n]:`, none `[*]:` or `[ ]:`) and the kernel is idle."""
    page.wait_for_function("""() => {
        const kernel = document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator');
        const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
        return kernel && kernel.dataset.status === 'idle' && prompts.length > 0
            && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
    }""", timeout=timeout_ms, polling=500)


def test_student_pastes_the_answers_in_jupyterlab_runs_all_and_sees_no_error(browser, grading, tmp_path):
    """In JupyterLab, on a copy of the released lesson: does a student who pastes the answers into the answer
    cells (and the written one) and runs Run > Run All Cells see every cell run without an error, the visible
    checks pass, and get a saved notebook with their answers and no error output? (It asks for `grading` only to
    start it: the instructor's class grades in the background meanwhile.)"""
    released = notebooks.read(paths.lesson_path(LESSON))
    answers = {**submissions.solution_sources(LESSON), WRITTEN: WRITTEN_ANSWER}
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(paths.lesson_path(LESSON), work / f"{LESSON}.ipynb")

    with jupyter_lab(work, tmp_path / "home", **QUICK) as lab:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        page, page_errors, outside = lab.open(context, f"lab/tree/{LESSON}.ipynb")
        with _screenshot_on_failure(page, tmp_path / "student.png"):
            page.wait_for_function("n => document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')"
                                   ".length === n", arg=len(released.cells))
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']")
            cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
            pasted = []
            for index, cell in enumerate(released.cells):
                grade_id = notebooks.grade_id(cell)
                if not (notebooks.nbgrader_meta(cell).get("solution") and grade_id in answers):
                    continue
                ui = cells.nth(index)
                ui.scroll_into_view_if_needed()
                ui.click()                                   # select the cell (command mode) ...
                page.keyboard.press("Enter")                 # ... edit it
                ui.locator(".cm-editor.cm-focused").wait_for()
                page.keyboard.press("Control+a")
                page.keyboard.insert_text(answers[grade_id])  # as a paste: no auto-indent, no auto-closed brackets
                page.keyboard.press("Escape")
                pasted.append(grade_id)
            assert sorted(pasted) == sorted(answers), pasted

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            _wait_until_idle(page, timeout_ms=150_000)
            page.keyboard.press("Control+s")
            page.wait_for_function("() => !document.querySelector('.lm-TabBar-tab.jp-mod-dirty')")

            # text_content, not inner_text: off-screen cells (content-visibility: auto) have no rendered text
            stderr = page.locator(STDERR).all_text_contents()
            assert [t for t in stderr if "Traceback" in t or "Error" in t] == [], stderr
            shown = page.locator(".jp-NotebookPanel .jp-OutputArea-output").all_text_contents()
            for function in submissions.solution_sources(LESSON):
                assert any(f"{function}: visible checks passed" in t for t in shown), function
            assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").all_inner_texts()
            assert page_errors == [] and outside == [], (page_errors, outside)
        context.close()

    saved = notebooks.read(work / f"{LESSON}.ipynb")
    assert {g: c.source for g, c in notebooks.cells_by_id(saved).items() if g in answers} == answers
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a code cell did not run"
    errors = [(notebooks.grade_id(c) or c.source[:60], o.get("ename"), o.get("evalue"))
              for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert [o.text for c in code for o in c.outputs if o.output_type == "stream" and o.name == "stderr"
            and "Traceback" in o.text] == []


def test_instructor_grades_a_written_answer_in_the_formgrader_and_generates_feedback(browser, grading, tmp_path):
    """On the course folder that `grade` wrote, in JupyterLab's formgrader: does the instructor see the lesson
    and the student's submission, score and comment the written answer by hand (saved by the page), and get
    feedback from the Generate Feedback button that shows the comment and no hidden test?"""
    course = grading.wait()
    graded = [notebooks.nbgrader_meta(c) for c in notebooks.read(paths.lesson_path(LESSON)).cells
              if notebooks.nbgrader_meta(c).get("grade")]
    auto = sum(m["points"] for m in graded if m["grade_id"] != WRITTEN)     # all earned: the answers are right
    total = sum(m["points"] for m in graded)
    with jupyter_lab(course, tmp_path / "home") as lab:    # cwd=COURSE: its nbgrader_config.py is the formgrader's
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(60_000)
        page, page_errors, outside = lab.open(context)
        with _screenshot_on_failure(page, tmp_path / "instructor.png"):
            page.get_by_role("menuitem", name="Nbgrader", exact=True).click()
            page.get_by_role("menuitem", name="Formgrader", exact=True).click()
            formgrader = page.frame_locator("#formgrader-iframe iframe")

            # The class: the lesson with one submission, and the student's, waiting for a manual grade.
            row = formgrader.locator("tr", has_text=LESSON)
            row.locator("td a", has_text="1").click()              # "# Submissions"
            student = formgrader.locator("tr", has_text=STUDENT)
            student.wait_for()
            assert "needs manual grading" in student.inner_text()

            # Manual Grading > the lesson > its notebook > the submission.
            formgrader.get_by_role("link", name="Manual Grading").click()
            formgrader.get_by_role("link", name=LESSON).click()
            formgrader.get_by_role("link", name=LESSON).click()
            formgrader.get_by_role("link", name="Submission #1").click()
            # The page's Backbone views are bound once they mark the answer as needing a grade and give the comment
            # box its placeholder: a value typed before then is never saved.
            score = formgrader.locator(f"input.score.needs_manual_grade#{WRITTEN}")
            comment = formgrader.locator(f"textarea#{WRITTEN}-comment[placeholder]")
            score.wait_for()
            comment.wait_for()
            assert WRITTEN_ANSWER in formgrader.locator("body").inner_text()
            assert formgrader.locator("math").count() >= 5       # formulas rendered, no network needed
            with page.expect_response(lambda r: "/api/grade/" in r.url and r.request.method == "PUT") as saved:
                score.fill(str(SCORE))
                score.press("Tab")
            assert saved.value.ok and json.loads(saved.value.text())["manual_score"] == SCORE
            with page.expect_response(lambda r: "/api/comment/" in r.url and r.request.method == "PUT") as saved:
                comment.fill(COMMENT)
                comment.press("Tab")
            assert saved.value.ok and json.loads(saved.value.text())["manual_comment"] == COMMENT

            # Manage Assignments > Generate Feedback (the button, not the command line).
            formgrader.get_by_role("link", name="Manual Grading").click()
            formgrader.get_by_role("link", name="Manage Assignments").click()
            formgrader.locator("tr", has_text=LESSON).locator("td.generate-feedback a").click()
            modal = formgrader.locator(".modal-dialog")
            modal.wait_for(timeout=120_000)
            assert "Successfully generated feedback" in modal.inner_text(), modal.inner_text()
        context.close()

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", nbgrader_course.COURSE_ID) as gb:
        assert gb.find_grade(WRITTEN, LESSON, LESSON, STUDENT).manual_score == SCORE
        assert gb.find_comment(WRITTEN, LESSON, LESSON, STUDENT).manual_comment == COMMENT
        assert gb.find_submission(LESSON, STUDENT).score == auto + SCORE
    feedback = (course / "feedback" / STUDENT / LESSON / f"{LESSON}.html").read_text()
    assert COMMENT in feedback and f"(Score: {auto + SCORE:.1f} / {total:.1f})" in feedback
    assert "BEGIN HIDDEN TESTS" not in feedback
    assert not re.search(r"(?<!quick_)check_", feedback)
    assert str(course) not in feedback
    # Last, so that all of the above is checked even when these fail: the formgrader's pages fetched nothing
    # from outside the server (its formulas need no CDN) and none of their scripts failed (the manual grading
    # page's init stops at its first error, before it binds its keyboard shortcuts).
    assert outside == [], outside
    assert page_errors == [], page_errors
