"""Every notebook, top to bottom, in a real kernel: the sources as instructors run them, the lessons as
students first open them. Training is cut short (LESSONKIT_QUICK); `make benchmark` runs it in full."""

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import notebooks, paths
from tests.conftest import LESSONS

pytestmark = pytest.mark.slow


def _execute(path, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONKIT_QUICK", "1")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _errors(nb):
    return [(notebooks.grade_id(c) or c.source[:60], o.ename, o.evalue)
            for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_source_notebook_runs_top_to_bottom(lesson, tmp_path, monkeypatch):
    """Does the instructor's notebook run every cell without an error, and draw its figures?"""
    nb = _execute(paths.solution_path(lesson), tmp_path, monkeypatch)
    assert _errors(nb) == []
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert figures, "a lesson without a single plot"
    stderr = [o.text for c in nb.cells if notebooks.is_autograded_test(c) for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == [], "a test cell wrote to stderr: nbgrader would score it 0"


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_lesson_runs_with_stubs(lesson, tmp_path, monkeypatch):
    """Does the untouched lesson run to the end, with only its test cells failing (demos skip politely)?"""
    nb = _execute(paths.lesson_path(lesson), tmp_path, monkeypatch)
    failing = {gid for gid, _, _ in _errors(nb)}
    tests = {notebooks.grade_id(c) for c in nb.cells if notebooks.is_autograded_test(c)}
    assert failing == tests, f"cells other than test cells failed: {failing - tests}"
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "not implemented yet" in printed
