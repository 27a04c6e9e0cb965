"""The student notebooks are generated from the sources, and give nothing away."""
import json

import pytest

from autograder import notebooks, paths, release
from tests.conftest import LESSONS


def _content(path):
    nb = json.loads(path.read_text())
    return nb["cells"], nb["metadata"]


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_lesson_has_a_source(lesson):
    """Is every released lesson backed by a notebook in solutions/?"""
    assert paths.solution_path(lesson).is_file()


def test_released_lessons_are_in_sync_with_the_sources(tmp_path):
    """Does `release` reproduce lessons/ exactly from solutions/ (nobody edited a lesson by hand)?"""
    written = release.release(out=tmp_path)
    assert sorted(p.stem for p in written) == sorted(p.stem for p in paths.SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    for path in written:
        assert _content(path) == _content(paths.lesson_path(path.stem)), (
            f"lessons/{path.name} drifted from solutions/: run `python -m autograder release`")


@pytest.mark.parametrize("lesson", LESSONS)
def test_sources_are_saved_clean(lesson):
    """Are the source notebooks saved without outputs or execution counts, with ids on every cell?"""
    nb = notebooks.read(paths.solution_path(lesson))
    for cell in nb.cells:
        assert cell.get("id"), "every cell needs a stable id"
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, notebooks.grade_id(cell) or cell.source[:40]


@pytest.mark.parametrize("lesson", LESSONS)
def test_student_version_contains_no_solution_and_no_hidden_test(lesson):
    """Does the released lesson hold only stubs in its answer cells and no hidden test?"""
    source = notebooks.read(paths.solution_path(lesson))
    student = notebooks.read(paths.lesson_path(lesson))
    text = json.dumps(student)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    answers = [c for c in student.cells if notebooks.is_answer(c) and c.cell_type == "code"]
    assert answers, "a lesson without graded answers"
    for cell in answers:
        assert "raise NotImplementedError" in cell.source
    for cell in source.cells:
        if notebooks.is_answer(cell) and cell.cell_type == "code":
            body = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in filter(str.strip, body.splitlines()):
                assert line not in text, f"solution line leaked into the student version: {line!r}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_cell_conventions(lesson):
    """Does each graded function have one answer cell with one def, followed by a test cell with points?"""
    nb = notebooks.read(paths.solution_path(lesson))
    ids = [notebooks.grade_id(c) for c in nb.cells]
    answers = [c for c in nb.cells if notebooks.is_answer(c) and c.cell_type == "code"]
    for cell in answers:
        fn = notebooks.grade_id(cell)
        assert cell.source.count("\ndef ") + cell.source.startswith("def ") + cell.source.count("\nclass ") \
            + cell.source.startswith("class ") == 1, fn
        assert f"def {fn}(" in cell.source or f"class {fn}" in cell.source, fn
        test = nb.cells[ids.index(fn) + 1]
        assert notebooks.grade_id(test) == f"test_{fn}" and test.metadata.nbgrader["points"] > 0, fn
        assert "### BEGIN HIDDEN TESTS" in test.source, fn


def test_release_refuses_to_overwrite_an_edited_lesson(tmp_path):
    """Does `release` refuse, writing nothing, to overwrite a lesson edited since it was released, unless forced?"""
    lesson = paths.lesson_names()[0]
    release.release([lesson], out=tmp_path)
    path = tmp_path / f"{lesson}.ipynb"
    edited = path.read_text().replace("raise NotImplementedError()", "return 42  # my answer", 1)
    path.write_text(edited)
    with pytest.raises(release.EditedLessonError, match=lesson):
        release.release([lesson], out=tmp_path)
    assert path.read_text() == edited, "the student's edit was overwritten"
    assert release.main(lessons=[lesson], out=tmp_path) == 1
    assert path.read_text() == edited
    release.release([lesson], out=tmp_path, force=True)
    assert "my answer" not in path.read_text()


def test_release_rewrites_an_unedited_lesson_without_force(tmp_path):
    """Does a second `release` over lessons nobody touched go through without --force?"""
    lesson = paths.lesson_names()[0]
    release.release([lesson], out=tmp_path)
    assert release.release([lesson], out=tmp_path) == [tmp_path / f"{lesson}.ipynb"]
