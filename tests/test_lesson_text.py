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


# One notation for the whole course (the table of lesson 01): i is a position attended to, j the position
# that attends; alpha~_ij is a score (before the softmax), alpha_ij a weight (after it), attended index
# first. The symbols and index roles that lessons used before, each with what to write instead.
_NOT_TILDE = r"(?<!\\tilde)(?<!\\tilde\{)(?<!\\tilde )"
RETIRED = [
    (re.compile(r"\\(hat|widehat)\s*\{?\s*(\\alpha|A)\b"), "a hat for the weights (alpha, or alpha^T as a matrix)"),
    (re.compile(r"\\alpha_\{[^}$]*,"), "a query-first subscript such as alpha_{1,i} (write alpha_{i1}: attended first)"),
    (re.compile(_NOT_TILDE + r"\\alpha(_\{?[\w:]+\}?)?\s*=\s*(\\frac\{\s*q|\\mathrm\{align\}|[kqh]_\w*\s*(\^\\top|\\cdot)"
                r"|v\^\\top|\(W_K)"), "alpha for a score (a score before the softmax is alpha~)"),
    (re.compile(r"\\tilde\s*\\alpha(_\{?[\w:]+\}?)?\s*=\s*\\mathrm\{softmax\}"), "alpha~ for weights (weights are alpha)"),
    (re.compile(r"\bj\s*(\\leq?|<=|≤|<|>|\\geq?|>=)\s*i\b"), "j as the attended position (write i <= j, i > j)"),
    (re.compile(r"\bj\s*=\s*1\s*(\.\.|,\s*\\dots\s*,)\s*i\b"), "j as the attended position (write i = 1..j)"),
    (re.compile(r"\\sum_\{?\s*j[^$]{0,40}\\alpha"), "a context summed over j (sum over the attended i)"),
    (re.compile(r"\bquer(y|ies)\s+(position\s+)?\$?i\$?(?![\w'])"), "query i (a query is j)"),
    (re.compile(r"\bkeys?\s+(position\s+)?\$?j\$?(?![\w'])"), "key j (a key is i)"),
    (re.compile(r"\brow \$?i\$? (holds|is) (the |query )?(weights|distribution|softmax)"),
     "row i of the weights (a row of weights is the query j)"),
    (re.compile(r"\bh_j\^(T|\\top)\s*h_i\b"), "h_j^T h_i as the score of h_j for h_i (write h_i^T h_j)"),
]
OTHER_NOTATIONS = "**Other notations.**"
NOTATION_ANCHOR = "01_seq2seq_shortcomings.ipynb#Notation-for-the-whole-course"


def _text_without_other_notations(lesson):
    """The lesson's text, less the paragraphs that say how a paper or a lecture writes it differently."""
    nb = notebooks.read(paths.lesson_path(lesson))
    blocks = [block for cell in nb.cells for block in re.split(r"\n\s*\n", cell.source)]
    return "\n\n".join(b for b in blocks if not b.lstrip().startswith(OTHER_NOTATIONS))


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_keeps_the_course_notation(lesson):
    """Does the lesson write a score alpha~ and a weight alpha, the attended position i first and the
    attending one j second, and never the symbols or index roles that lessons used before?"""
    text = _text_without_other_notations(lesson)
    found = [(why, text[max(0, m.start() - 30):m.end() + 30]) for pattern, why in RETIRED
             for m in pattern.finditer(text)]
    assert not found, f"{lesson} breaks the course notation: {found}"


def test_the_notation_lint_catches_the_old_symbols():
    """Would the notation test fail on lesson 06's old alpha-hat and query-first subscripts, on lesson 05's
    old index roles and on a score called alpha?"""
    for bad in [r"b_1 = \sum_{i=1}^m \hat\alpha_{1,i}\, v_i", r"\hat A = \mathrm{softmax}", r"\widehat{\alpha}",
                r"\alpha_{1,i} = \frac{q_1 \cdot k_i}{\sqrt{d_k}}", r"$c_i = \sum_{j \le i} \alpha_j h_j$",
                r"\alpha_j = \mathrm{align}(h_j, h_i)", r"\tilde\alpha_{ij} = \mathrm{softmax}(K^\top q)",
                "row i holds the weights of position i over j <= i", "query position i", "key position j",
                r"for $j = 1..i$", r"\tilde\alpha_j = h_j^\top h_i"]:
        assert any(pattern.search(bad) for pattern, _ in RETIRED), bad
    for good in [r"\tilde\alpha_{i1} = \frac{q_1 \cdot k_i}{\sqrt{d_k}}", r"c_j = \sum_{i \le j} \alpha_{ij} h_i",
                 r"\tilde\alpha_{ij} = \mathrm{align}(h_i, h_j)", r"\alpha_{:j} = \mathrm{softmax}(\tilde\alpha_{1j})",
                 "row j holds the weights of query j over i <= j", r"$\tilde\alpha_{ij} = h_i^\top h_j$"]:
        assert not any(pattern.search(good) for pattern, _ in RETIRED), good


def test_lesson_01_has_the_notation_table_and_every_other_lesson_links_to_it():
    """Is there one notation table (lesson 01) that says what i, j, alpha~ and alpha are, and does every
    other lesson point students to it?"""
    nb = notebooks.read(paths.lesson_path(LESSONS[0]))
    cells = [c.source for c in nb.cells if c.source.startswith("## Notation for the whole course")]
    assert len(cells) == 1, "lesson 01 needs one cell headed '## Notation for the whole course'"
    rows = {row.split("|")[1].strip(): row.split("|")[2] for row in cells[0].splitlines()
            if row.startswith("| ") and row.count("|") >= 3}
    assert "score" in rows[r"$\tilde\alpha_{ij}$"] and "softmax" in rows[r"$\tilde\alpha_{ij}$"]
    assert "weight" in rows[r"$\alpha_{ij}$"] and "softmax over $i$" in rows[r"$\alpha_{ij}$"]
    assert "attended" in rows["$i$"] and "attends" in rows["$j$"]
    assert "one row per query" in rows[r"$\alpha^\top$"].replace("**", "")
    for lesson in LESSONS[1:]:
        assert NOTATION_ANCHOR in _text(lesson), f"{lesson} does not link to the notation table"
