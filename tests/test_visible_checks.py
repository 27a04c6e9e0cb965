"""The visible checks are what a student has without solutions/: they must pass a right answer then too."""
import importlib
import re

import pytest

from autograder import notebooks, paths, reference
from tests.conftest import LESSONS


def _checks_module(lesson):
    source = "".join(c.source for c in notebooks.read(paths.solution_path(lesson)).cells)
    name = re.search(r"from autograder.checks import (\w+)", source).group(1)
    return importlib.import_module(f"autograder.checks.{name}")


@pytest.mark.parametrize("lesson", LESSONS)
def test_visible_checks_need_no_reference(lesson, tmp_path, monkeypatch):
    """With solutions/ out of reach, does every quick_check still pass the right answer (and so use no
    reference solution), while the hidden check says the reference is missing?"""
    right = vars(reference.load(lesson))
    module = _checks_module(lesson)
    functions = [notebooks.grade_id(c) for c in notebooks.read(paths.solution_path(lesson)).cells
                 if notebooks.is_answer(c) and c.cell_type == "code"]
    monkeypatch.setattr(paths, "SOLUTIONS", tmp_path)
    reference.load.cache_clear()
    try:
        for fn in functions:
            getattr(module, f"quick_check_{fn}")(right[fn])
        with pytest.raises(reference.ReferenceUnavailable):
            getattr(module, f"check_{functions[0]}")(right[functions[0]])
    finally:
        reference.load.cache_clear()
