"""The feedback page in a real browser (Debian's chromium driven by playwright, no browser download):
formulas rendered, no student script running, no grader path, with no network."""
from __future__ import annotations

import shutil

import pytest

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
    import nbformat
    from autograder import paths
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
