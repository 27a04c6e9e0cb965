"""What a lesson tells a student: sources they can find, never documents they do not have."""
import re

import pytest

from autograder import notebooks, paths
from tests.conftest import LESSONS

# Documents a student does not have, and the words that point at them.
UNCITED = [
    (re.compile(r"\bthe seed'?s?\b|\bseed \d{3}\b|\bseeds/", re.I), "the course's source notes ('the seed')"),
    (re.compile(r"\blecture slides\b|\bthe lecture\b(?![^.]*\b(Wang|Bahdanau|Cheng|Vaswani)\b)", re.I),
     "a lecture without its author and title"),
    (re.compile(r"SPEC\.md|STYLE\.md|benchmarks/run\.py|\bshared/"), "a file of the project's internals"),
]


def _text(lesson):
    nb = notebooks.read(paths.lesson_path(lesson))
    return "\n".join(cell.source for cell in nb.cells)


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_cites_its_sources_instead_of_naming_internal_documents(lesson):
    """Does the lesson point students only at sources they can find (authors, year, title), never at
    'the seed', 'the lecture slides' or an internal file?"""
    text = _text(lesson)
    found = [(why, m.group(0)) for pattern, why in UNCITED for m in pattern.finditer(text)]
    assert not found, f"{lesson} names documents a student does not have: {found}"


def test_the_lint_catches_an_uncited_reference():
    """Would the lesson-text test fail on 'as the seed writes' or 'the lecture slides'?"""
    for bad in ["as the seed writes", "see seed 004", "the lecture slides show", "read benchmarks/run.py"]:
        assert any(pattern.search(bad) for pattern, _ in UNCITED), bad
