"""What a student or an instructor sees of a graded notebook: no student script, no grader path, formulas
rendered without a network. Real nbconvert, real nbgrader preprocessors."""
from __future__ import annotations

import copy
import html.parser
import sys

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from traitlets.config import Config

from autograder import feedback, paths

COURSE = "/srv/grading/attention-course"

ATTACK_MARKDOWN = "\n".join([
    "My answer: the scores are $s_{ij} = q_i \\cdot k_j$.",
    "<img src=x onerror=alert(1)> <script>document.title='pwned'</script>",
    "<iframe src='javascript:alert(2)'></iframe><object data='x.swf'></object><embed src='x.swf'>",
    "[click](javascript:alert(3)) [also](JaVa&#115;cript:alert(4)) <a href=' javascript:alert(5)'>a</a>",
    "<svg><circle r='3' onload='alert(6)'/><a xlink:href='javascript:alert(7)'>s</a></svg>",
    "<form action='javascript:alert(8)'><input onfocus='alert(9)' autofocus></form>",
    "<meta http-equiv='refresh' content='0;url=javascript:alert(10)'><base href='javascript:alert(11)//'>",
    "<math><mtext><a href='javascript:alert(12)'>m</a></mtext></math>",
    "`<script>kept as code</script>`",
])
ATTACK_OUTPUTS = [
    new_output("display_data", data={
        "text/html": "<b onclick='alert(20)'>bold</b><script>alert(21)</script>"
                     "<iframe srcdoc='<script>alert(22)</script>'></iframe><a href='javascript:alert(23)'>l</a>",
        "text/plain": "<IPython.core.display.HTML object>"}),
    new_output("display_data", data={"application/javascript": "alert(24)", "text/plain": "js"}),
    new_output("display_data", data={
        "image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'><script>alert(25)</script>"
                         "<rect width='2' height='2' onmouseover='alert(26)'/></svg>"}),
    new_output("execute_result", execution_count=1, data={"text/markdown": "<img src=y onerror=alert(27)>"}),
    new_output("error", ename="ValueError", evalue=f"bad shape in {paths.REPO}/autograder/checks/core.py",
               traceback=[f"File {sys.prefix}/lib/python3.11/site-packages/torch/functional.py:12",
                          f"File {COURSE}/autograded/alice/02/02.ipynb",
                          "File /tmp/tmpk3rn3l_x/ipykernel_1234/5678.py, line 3"]),
    new_output("stream", name="stdout", text=f"saved to {paths.REPO}/lessons/model.pt\n"),
]


class _Page(html.parser.HTMLParser):
    """Every tag, every attribute and the visible text of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._in = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("script", "style"):
            self._in.append(tag)

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if not self._in:
            self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def _config() -> Config:
    c = Config()
    c.CourseDirectory.root = COURSE
    feedback.configure(c)
    return c


def _export(nb) -> str:
    c = _config()
    resources = {}
    for cls in feedback.AUTOGRADE_PREPROCESSORS:          # as in Autograde, after the grading step
        nb, resources = cls(config=c).preprocess(nb, resources)
    body, _ = HTMLExporter(config=c).from_notebook_node(nb)
    return body


def _attack_notebook():
    return new_notebook(cells=[new_markdown_cell(ATTACK_MARKDOWN),
                               new_code_cell("show()", outputs=copy.deepcopy(ATTACK_OUTPUTS))])


def _executable(page: _Page) -> list[str]:
    found = []
    for tag, attrs in page.tags:
        if tag == "script":
            # nbconvert's own scripts: an empty src (no CDN), MathJax's config and the lab template's module;
            # the course's MathJax stand-in (autograder/templates/base/mathjax.html.j2)
            if attrs == {"data-course": "mathjax-stand-in"}:
                continue
            if attrs.get("src") or attrs.get("type") not in (None, "text/x-mathjax-config", "module") or \
                    (attrs.get("type") is None and "src" not in attrs):
                found.append(f"<script {attrs}>")
        if tag in ("iframe", "object", "embed", "form", "meta", "base", "input"):
            if not (tag == "meta" and set(attrs) <= {"charset", "name", "content"}):
                found.append(f"<{tag} {attrs}>")
        for name, value in attrs.items():
            if name.lower().startswith("on"):
                found.append(f"{tag} {name}={value}")
            plain = "".join(value.split()).lower()
            if name.lower() in ("href", "src", "xlink:href", "action", "data", "srcdoc", "formaction") and \
                    (plain.startswith(("javascript:", "vbscript:", "data:text")) or "<script" in plain):
                found.append(f"{tag} {name}={value}")
    return found


def test_no_student_script_handler_or_javascript_url_survives_into_the_feedback_page():
    """Does every attack in the markdown and the outputs come out of the feedback page unable to run?"""
    page = _parse(_export(_attack_notebook()))
    assert _executable(page) == []
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert len(scripts) <= 4, scripts                     # nbconvert's own, nothing of the student's
    text = "".join(page.text)
    assert "bold" in text and "kept as code" in text      # harmless content is still shown


def test_the_same_attacks_without_feedback_settings_do_run():
    """Would the attack notebook be dangerous without the cleaning (so the test above can fail)?"""
    body, _ = HTMLExporter().from_notebook_node(_attack_notebook())
    assert len(_executable(_parse(body))) >= 5


def test_the_autograded_notebook_itself_keeps_no_javascript_output_and_no_raw_script():
    """Is the autograded notebook file (what the formgrader and every feedback start from) cleaned too?"""
    nb = _attack_notebook()
    for cls in feedback.AUTOGRADE_PREPROCESSORS:
        nb, _ = cls(config=_config()).preprocess(nb, {})
    dumped = nbformat.writes(nb)
    assert "application/javascript" not in dumped
    assert "onerror" not in dumped and "onclick" not in dumped and "<script>alert" not in dumped
    assert "javascript:" not in dumped.replace("<script>kept as code</script>", "")
    assert "My answer: the scores are $s_{ij} = q_i \\\\cdot k_j$." in dumped   # the text is unchanged


def test_no_path_of_the_grading_machine_is_shown():
    """Are the repository, the course folder, the Python prefix and kernel temp dirs gone from outputs?"""
    body = _export(_attack_notebook())
    for path in (str(paths.REPO), COURSE, sys.prefix, "/tmp/tmpk3rn3l_x"):
        assert path not in body, path
    assert "functional.py" in body and "02.ipynb" in body   # what the student needs to read stays


@pytest.mark.parametrize("lesson", ["02_bahdanau_attention", "06_attention_without_rnn"])
def test_the_lessons_formulas_render_as_mathml_without_mathjax_or_a_network(lesson):
    """Does the lesson's prose reach the page as MathML, with no raw `$` and nothing fetched from a CDN?"""
    nb = nbformat.read(paths.REPO / "lessons" / f"{lesson}.ipynb", as_version=4)
    nb.cells = [cell for cell in nb.cells if cell.cell_type == "markdown"]
    body = _export(nb)
    page = _parse(body)
    assert sum(1 for tag, _ in page.tags if tag == "math") >= 5
    prose = "".join(page.text)
    assert "$" not in prose, prose[prose.find("$") - 80: prose.find("$") + 80]
    fetched = [a.get("src") or a.get("href") for t, a in page.tags if t in ("script", "link", "img", "iframe")]
    assert not [url for url in fetched if url and url.startswith(("http:", "https:", "//"))], fetched


def test_formgrader_exporter_settings_come_from_the_same_configuration():
    """Does the HTMLExporter the formgrader builds from the course's config clean and convert math too?"""
    c = _config()
    exporter = HTMLExporter(config=c)
    names = [type(p).__name__ for p in exporter._preprocessors]
    assert {"SanitizeOutputs", "ScrubGraderPaths", "MathToMathML"} <= set(names)
    assert exporter.mathjax_url == exporter.require_js_url == exporter.jquery_url == ""
    gf = c.GenerateFeedback.preprocessors
    assert gf.index(feedback.SanitizeOutputs) > 0 and "ClearHiddenTests" in [p.__name__ for p in gf]
