"""What a student or an instructor sees of a graded notebook: sanitized, without the grading machine's paths,
with formulas rendered offline.

- `AUTOGRADE_PREPROCESSORS` go into nbgrader's Autograde after the grading step: they clean the autograded
  notebook itself (the file the formgrader and every feedback are made from).
- `configure(c)` sets GenerateFeedback and nbconvert's HTMLExporter (the formgrader's exporter reads the same
  configuration): the same cleaning again, nbconvert's own HTML sanitizer, and LaTeX turned into MathML on the
  server, so no MathJax and no network are needed to read the formulas (Chromium and Firefox render MathML).
"""
from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
from pathlib import Path

import bleach
import jinja2
from bleach.css_sanitizer import CSSSanitizer
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, List, Unicode

REPO_ROOT = Path(__file__).resolve().parent.parent

_HTML_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details", "div",
    "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var", "style",
}
_MATHML_TAGS = {
    "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup",
    "msubsup", "mfrac", "msqrt", "mroot", "mstyle", "merror", "mpadded", "mphantom", "mfenced", "menclose",
    "munder", "mover", "munderover", "mtable", "mtr", "mtd", "mlabeledtr", "mmultiscripts", "mprescripts",
    "none",
}
_SVG_TAGS = {
    "svg", "g", "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "text", "tspan", "defs",
    "clippath", "lineargradient", "radialgradient", "stop", "title", "desc", "symbol", "marker", "pattern",
    "mask",
}
_SAFE_ATTRS = {
    "class", "id", "style", "title", "alt", "src", "href", "width", "height", "align", "colspan", "rowspan",
    "border", "cellpadding", "cellspacing", "valign", "dir", "lang", "name",
    # MathML
    "display", "mathvariant", "stretchy", "fence", "separator", "lspace", "rspace", "accent", "accentunder",
    "columnalign", "rowalign", "columnspacing", "rowspacing", "displaystyle", "scriptlevel", "encoding",
    "linethickness", "notation", "xmlns", "movablelimits", "form", "largeop", "symmetric", "minsize", "maxsize",
    # SVG
    "viewbox", "d", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "points", "fill", "stroke",
    "stroke-width", "stroke-linecap", "stroke-linejoin", "stroke-dasharray", "stroke-opacity", "fill-opacity",
    "opacity", "transform", "font-size", "font-family", "font-weight", "text-anchor", "dominant-baseline",
    "clip-path", "offset", "stop-color", "stop-opacity", "gradientunits", "preserveaspectratio", "version",
    "xmlns:xlink", "dx", "dy", "fill-rule", "clip-rule", "style",
}
_CLEANER = bleach.Cleaner(
    tags=_HTML_TAGS | _MATHML_TAGS | _SVG_TAGS,
    attributes=lambda tag, name, value: name.lower() in _SAFE_ATTRS and not name.lower().startswith("on"),
    protocols={"http", "https", "mailto", "data", "attachment"},
    css_sanitizer=CSSSanitizer(),
    strip=True,
    strip_comments=True,
)
_DANGEROUS_MIME = ("application/javascript", "text/javascript", "application/x-javascript",
                   "application/vnd.jupyter.widget-view+json", "text/vnd.jupyter.widget-view+json")


def clean_html(html: str) -> str:
    """`html` with every tag, attribute and URL scheme that can run code removed (bleach, an allow-list)."""
    cleaned = _CLEANER.clean(html)
    # a `data:` URL is fine for images, not for anything a browser would run or open as a page
    return re.sub(r'(href\s*=\s*["\']?)\s*data:', r"\1#blocked:", cleaned, flags=re.I)


# --- markdown: raw HTML cleaned, the rest of the text untouched ------------------------------------------------
_CODE = re.compile(r"(^```.*?^```[ \t]*$|^~~~.*?^~~~[ \t]*$|`+[^`]*`+)", re.S | re.M)
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.S)


_LINK_DEST = re.compile(r"(\]\(\s*<?)((?:[^()\s>]|\([^()\s]*\))*)|(^[ \t]{0,3}\[[^\]\n]+\]:[ \t]*<?)(\S+)", re.M)
_SAFE_SCHEMES = {"http", "https", "mailto", "attachment", "ftp"}


def _safe_url(url: str) -> bool:
    import html
    plain = re.sub(r"[\x00-\x20\x7f]", "", html.unescape(html.unescape(url))).lower()
    scheme = re.match(r"([a-z][a-z0-9+.\-]*):", plain)
    if scheme is None:
        return True                         # relative: #anchor, image.png
    if scheme.group(1) == "data":
        return plain.startswith(("data:image/png", "data:image/jpeg", "data:image/gif"))
    return scheme.group(1) in _SAFE_SCHEMES


def _clean_link(match):
    prefix, url = (match.group(1), match.group(2)) if match.group(1) is not None else (match.group(3), match.group(4))
    return prefix + (url if _safe_url(url) else "#blocked")


def clean_markdown(source: str) -> str:
    """The markdown text with only its raw HTML and unsafe link targets cleaned; code spans and fences are
    left as they are."""
    parts = _CODE.split(source)
    for i in range(0, len(parts), 2):       # even parts are outside code
        text = parts[i] = _LINK_DEST.sub(_clean_link, parts[i])
        if not _TAG.search(text):
            continue
        parts[i] = _TAG.sub(lambda m: _clean_tag(m.group(0)), text)
    return "".join(parts)


def _clean_tag(tag: str) -> str:
    # A lesson's markdown repeats the same short tags for every student: cleaned once per grading process.
    return _clean_short_tag(tag) if len(tag) <= 256 else _clean_any_tag(tag)


def _clean_any_tag(tag: str) -> str:
    if tag.startswith("<!--"):
        return ""
    cleaned = _CLEANER.clean(tag)
    if cleaned.startswith("&lt;"):          # a tag not allowed: dropped, not shown as text
        return ""
    return cleaned


_clean_short_tag = functools.lru_cache(maxsize=8192)(_clean_any_tag)


class _OnWhereListed(Preprocessor):
    """A preprocessor that runs wherever it is listed. nbconvert's are off by default (`enabled`) unless an
    exporter's own `preprocessors` lists them, and nbgrader's converters register their lists without turning
    them on: without this, nbgrader's Autograde skipped the cleaning and wrote the autograded notebook with the
    student's scripts and the grader's paths in it. Cleaning twice changes nothing."""

    enabled = Bool(True, help="Run this preprocessor.").tag(config=True)


class SanitizeOutputs(_OnWhereListed):
    """Drops JavaScript outputs and cleans HTML and SVG outputs and the raw HTML in markdown cells."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown":
            cell.source = clean_markdown(cell.source)
            for attachment in (cell.get("attachments") or {}).values():
                for mime in [m for m in attachment if m in ("text/html", "image/svg+xml") or m in _DANGEROUS_MIME]:
                    del attachment[mime]
        elif cell.cell_type == "raw":
            fmt = (cell.metadata.get("raw_mimetype") or cell.metadata.get("format") or "").lower()
            if "html" in fmt or "javascript" in fmt:
                cell.source = clean_html(cell.source)
        elif cell.cell_type == "code":
            for output in cell.get("outputs", []):
                data = output.get("data")
                if not data:
                    continue
                for mime in list(data):
                    if mime in _DANGEROUS_MIME or "javascript" in mime or mime.endswith("+json") and "widget" in mime:
                        del data[mime]
                    elif mime in ("text/html", "image/svg+xml", "text/markdown"):
                        value = data[mime]
                        text = "".join(value) if isinstance(value, list) else value
                        data[mime] = clean_markdown(text) if mime == "text/markdown" else clean_html(text)
                if not data:
                    data["text/plain"] = "[output removed]"
        return cell, resources


def grader_paths(extra: list[str] = ()) -> list[str]:
    """Absolute paths of this machine that no student should see, longest first."""
    paths = {str(REPO_ROOT), sys.prefix, sys.base_prefix, sys.exec_prefix, os.getcwd(),
             str(Path.home()), *extra}
    for p in list(paths):
        try:
            paths.add(str(Path(p).resolve()))
        except OSError:
            pass
    return sorted((p for p in paths if p and p not in ("/", ".") and len(p) > 4), key=len, reverse=True)


_ANSI = r"(?:\x1b\[[0-9;]*m)?"


class ScrubGraderPaths(_OnWhereListed):
    """Replaces the grading machine's absolute paths (repository, course folder, Python, temporary kernel
    folders) in outputs and tracebacks with neutral text."""

    extra_paths = List(Unicode(), help="More paths to hide, for example the course folder").tag(config=True)
    replacement = Unicode("<grader>").tag(config=True)

    def preprocess(self, nb, resources):
        paths = grader_paths(self.extra_paths)
        alternatives = "|".join(re.escape(p) for p in paths)
        tmp = re.escape(tempfile.gettempdir().rstrip("/"))
        self._pattern = re.compile(rf"(?:{alternatives})(?:/[^\s'\"<>:,)\]]*)?|(?:{tmp}|/tmp|/var/tmp|/dev/shm)"
                                   rf"/[^\s'\"<>:,)\]]+")
        return super().preprocess(nb, resources)

    def _scrub(self, value):
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        if isinstance(value, str):
            return self._pattern.sub(self._replace, value)
        return value

    def _replace(self, match):
        tail = match.group(0).rsplit("/", 1)[-1]
        # keep a file's own name (a student's `answer.py`, a module's name): only where it lives goes
        return f"{self.replacement}/{tail}" if tail and "." in tail else self.replacement

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = self._scrub(output.get("text", ""))
            elif output.get("output_type") == "error":
                output["traceback"] = self._scrub(list(output.get("traceback", [])))
                output["evalue"] = self._scrub(output.get("evalue", ""))
            for mime, value in list((output.get("data") or {}).items()):
                if mime.startswith("text/") or mime == "image/svg+xml":
                    output["data"][mime] = self._scrub(value)
        return cell, resources


# --- formulas: LaTeX to MathML, on the server ---------------------------------------------------------------
# Inline math may wrap onto the next line (a markdown line break), never across a blank line.
_MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)((?:[^$\n]|\n(?![ \t]*\n))+?)(?<![\s\\])\$(?!\d)", re.S)
TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.lru_cache(maxsize=4096)      # the lessons' formulas, converted once per grading process
def _formula(latex: str, block: bool) -> str | None:
    from latex2mathml.converter import convert
    try:
        return convert(latex, display="block" if block else "inline")
    except Exception:
        return None


def latex_to_mathml(source: str) -> str:
    """Markdown with `$…$` and `$$…$$` replaced by MathML; code spans and fences untouched. A formula that
    cannot be converted stays as it is."""
    def one(match):
        block = match.group(1) is not None
        latex = (match.group(1) if block else match.group(2)).strip()
        mathml = _formula(latex, block) if len(latex) <= 2000 else None
        if mathml is None:
            return match.group(0)
        # a formula inside a paragraph stays inline HTML for the markdown renderer: one line, no blank line
        mathml = mathml.replace("\n", "")
        return f"\n\n{mathml}\n\n" if block else mathml

    parts = _CODE.split(source)
    for i in range(0, len(parts), 2):
        parts[i] = _MATH.sub(one, parts[i])
    return "".join(parts)


class MathToMathML(Preprocessor):
    """Markdown cells' LaTeX rendered to MathML, so the page needs neither MathJax nor a network."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "markdown" and "$" in cell.source:
            cell.source = latex_to_mathml(cell.source)
        return cell, resources


class _TemplateBytecode(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the grading process (each feedback makes a new exporter, whose
    new jinja environment would compile the same templates again: a third of a feedback's time)."""

    def __init__(self):
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.compiled:
            bucket.bytecode_from_string(self.compiled[bucket.key])

    def dump_bytecode(self, bucket):
        self.compiled[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _TemplateBytecode()
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\salt=)")
_FOCUSABLE = re.compile(r'(<div\b[^>]*\bclass="[^"]*\b(?:jp-Cell-inputWrapper|jp-OutputArea-output)\b[^"]*")(?![^>]*tabindex)')


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTMLExporter, made for a whole class: templates compiled once per process, and its
    accessibility pass (alternative text on images, focusable cells) done on the tags themselves instead of
    parsing and writing the whole page again (a quarter of a feedback's time)."""

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = _BYTECODE
        return environment

    def from_notebook_node(self, nb, resources=None, **kw):
        from nbconvert.filters.highlight import Highlight2HTML
        from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        self.register_filter("highlight_code",
                             self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
        resources = self._init_resources(resources)
        self.register_filter("filter_data_type", WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata,
                                                                       parent=self, resources=resources))
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        html = _IMG_WITHOUT_ALT.sub('<img alt="No description has been provided for this image"', html)
        return _FOCUSABLE.sub(r'\1 tabindex="0"', html), resources


AUTOGRADE_PREPROCESSORS = [SanitizeOutputs, ScrubGraderPaths]
FEEDBACK_PREPROCESSORS = [SanitizeOutputs, ScrubGraderPaths, MathToMathML]


def configure(c) -> None:
    """Feedback and formgrader settings on an nbgrader traitlets Config that already names the course."""
    root = c.CourseDirectory.get("root") if "CourseDirectory" in c else None
    if root:
        c.ScrubGraderPaths.extra_paths = [str(root)]
    existing = list(c.GenerateFeedback.get("preprocessors", [])) if "GenerateFeedback" in c else []
    if not existing:
        from nbgrader.preprocessors import ClearHiddenTests, GetGrades
        from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
        existing = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
    c.GenerateFeedback.preprocessors = existing + [p for p in FEEDBACK_PREPROCESSORS if p not in existing]
    c.GenerateFeedback.exporter_class = FeedbackExporter
    # The formgrader builds its own HTMLExporter from the same configuration: the same cleaning and MathML there.
    c.HTMLExporter.preprocessors = [f"{p.__module__}.{p.__name__}" for p in FEEDBACK_PREPROCESSORS]
    # nbconvert 7.17's own `sanitize_html` escapes every tag of a markdown cell, MathML included (the page shows
    # `&lt;p&gt;…`): SanitizeOutputs above, an allow-list that keeps MathML, does that work instead.
    c.HTMLExporter.sanitize_html = False
    c.HTMLExporter.require_js_url = ""
    c.HTMLExporter.jquery_url = ""
    # (mermaid_js_url is not configurable in nbconvert 7.17; its script imports mermaid only for a page that
    # holds a mermaid diagram, which no lesson does.)
    # Nothing is loaded from a CDN: the formulas are MathML already; a formula that could not be converted
    # stays as text instead of fetching MathJax from the network.
    c.HTMLExporter.mathjax_url = ""
    # nbgrader's formgrader and feedback templates call `mathjax()` without an address (the CDN's): our
    # template folder, searched first, holds a `mathjax` macro that writes nothing.
    from nbgrader.server_extensions.formgrader import handlers
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), handlers.template_path]
