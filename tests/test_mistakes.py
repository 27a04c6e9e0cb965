"""Does the autograder tell right from wrong? Every lesson's catalog of answers (tests/mistakes/), graded.

Fast tier: each catalog answer is executed in a namespace that already holds the lesson's reference
functions and the notebooks' prelude names (so a composite answer calling other graded functions
gets correct helpers), then handed to the lesson's checks without a kernel: directly, and through the
bridge the grader uses to reach a kernel (`autograder/bridge.py`, wired back to back in this process),
which must not change a single verdict or message. A WRONG answer must fail the hidden check with a
CheckFailed naming its mistake (`says`); a CORRECT one must pass the visible and the hidden check.

Slow tier: per lesson, real notebooks graded by `python -m autograder check --hidden --json` in real
kernels: the first wrong answer of every function (each loses its points, nothing else does), the
helpers wrong but the composites right (the composites keep their points), and the first correct
variant of every function (full marks).

A lesson whose source notebook, checks module or released notebook does not exist yet is skipped.
"""
from __future__ import annotations

import importlib
import json
import math
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from types import ModuleType

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder import bridge, notebooks, paths, reference, submissions
from autograder.checks.core import CheckFailed
from tests.conftest import points_by_function
from tests.mistakes import catalog
from tests.mistakes.catalog import Answer

WRONG = catalog.wrong()
CORRECT = catalog.correct()
# Mistakes only a CUDA device reveals (a tensor created without device=): a catalog module may list them.
WRONG_ON_GPU = [a for m in catalog._modules() for a in getattr(m, "WRONG_ON_GPU", [])]
LESSONS = sorted({a.lesson for a in WRONG + CORRECT + WRONG_ON_GPU})
PRELUDE = {"math": math, "np": np, "torch": torch, "F": F, "nn": nn}
_CHECKS_IMPORT = re.compile(r"^\s*from\s+autograder\.checks\s+import\s+(\w+)", re.MULTILINE)


# --- what a lesson offers --------------------------------------------------------------------------

@cache
def _source_notebook(lesson: str):
    path = paths.solution_path(lesson)
    return notebooks.read(path) if path.is_file() else None


def graded_functions(lesson: str) -> list[str]:
    """The functions the lesson's source notebook grades, in notebook order (one per autograded test cell)."""
    nb = _source_notebook(lesson)
    return [notebooks.tested_function(c) for c in nb.cells if notebooks.is_autograded_test(c)] if nb else []


@cache
def checks_module(lesson: str) -> ModuleType | None:
    """The checks module the notebook's test cells import (`from autograder.checks import <module>`)."""
    nb = _source_notebook(lesson)
    if nb is None:
        return None
    names = {name for c in nb.cells if notebooks.is_autograded_test(c) for name in _CHECKS_IMPORT.findall(c.source)}
    if not names:
        return None
    assert len(names) == 1, f"{lesson}: its test cells import several checks modules: {sorted(names)}"
    try:
        return importlib.import_module(f"autograder.checks.{names.pop()}")
    except ModuleNotFoundError:
        return None


def checks_or_skip(lesson: str) -> ModuleType:
    if _source_notebook(lesson) is None:
        pytest.skip(f"solutions/{lesson}.ipynb does not exist yet")
    module = checks_module(lesson)
    if module is None:
        pytest.skip(f"the checks module of {lesson} does not exist yet")
    return module


def composites(lesson: str) -> list[str]:
    """Graded functions whose reference answer calls another graded function of the lesson."""
    functions = graded_functions(lesson)
    sources = submissions.solution_sources(lesson)
    return [f for f in functions
            if any(re.search(rf"\b{re.escape(g)}\s*\(", sources[f]) for g in functions if g != f)]


def student_function(answer: Answer, route: str = "direct"):
    """The answer's function (or class), defined in a fresh namespace holding the reference functions and
    the prelude; with route "bridge", a proxy that reaches it as the grader reaches a kernel."""
    ref = reference.load(answer.lesson)
    namespace = {**vars(ref), **PRELUDE, "__name__": "student"}
    exec(compile(answer.source, f"<catalog {answer.lesson}: {answer.id}>", "exec"), namespace)
    fn = namespace.get(answer.function)
    assert callable(fn) and fn is not getattr(ref, answer.function, None), \
        f"the catalog answer does not define {answer.function}"
    return through_bridge(namespace, answer.function) if route == "bridge" else fn


def through_bridge(namespace: dict, name: str):
    """`namespace[name]` behind the grader's bridge: the two peers wired back to back, no kernel between."""
    kernel_side = bridge.Peer(None, serves=bridge.KERNEL_SERVES, namespace=namespace)
    grader_side = bridge.Peer(kernel_side.handle)
    kernel_side.send = grader_side.handle
    proxy = grader_side.request({"op": "lookup", "name": name})
    assert isinstance(proxy, bridge.RemoteCallable)
    return proxy


def first_answers(answers: list[Answer], lesson: str) -> dict[str, Answer]:
    """For each function of the lesson, the first catalog answer in the list."""
    first: dict[str, Answer] = {}
    for a in answers:
        if a.lesson == lesson:
            first.setdefault(a.function, a)
    return first


def _hidden_check(checks: ModuleType, answer: Answer):
    assert answer.function in graded_functions(answer.lesson), \
        f"{answer.function} is not a graded function of {answer.lesson}"
    check = getattr(checks, f"check_{answer.function}", None)
    assert check is not None, f"{checks.__name__} has no check_{answer.function}"
    return check


# --- fast tier: the checks, called directly ---------------------------------------------------------

ROUTES = ["direct", "bridge"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("answer", WRONG, ids=[a.id for a in WRONG])
def test_wrong_answer_fails_the_hidden_check(answer: Answer, route: str):
    """Does the hidden check fail this wrong answer, with a message naming the mistake where it can?"""
    checks = checks_or_skip(answer.lesson)
    check = _hidden_check(checks, answer)
    fn = student_function(answer, route)
    with pytest.raises(CheckFailed) as failure:
        check(fn)
    assert answer.says in str(failure.value)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("answer", CORRECT, ids=[a.id for a in CORRECT])
def test_correct_answer_passes_every_check(answer: Answer, route: str):
    """Does this correct answer, written in another style than the reference, pass the visible and hidden checks?"""
    checks = checks_or_skip(answer.lesson)
    check = _hidden_check(checks, answer)
    fn = student_function(answer, route)
    getattr(checks, f"quick_check_{answer.function}")(fn)
    check(fn)


@pytest.mark.parametrize("answer", WRONG_ON_GPU, ids=[a.id for a in WRONG_ON_GPU])
def test_gpu_only_mistake_passes_on_cpu(answer: Answer):
    """Is this mistake really invisible on a CPU (else it belongs in WRONG, where every run tests it)?"""
    checks = checks_or_skip(answer.lesson)
    _hidden_check(checks, answer)(student_function(answer), device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("answer", WRONG_ON_GPU, ids=[a.id for a in WRONG_ON_GPU])
def test_gpu_only_mistake_fails_on_cuda(answer: Answer):
    """Does the hidden check, run on CUDA, fail an answer that creates tensors without device=?"""
    checks = checks_or_skip(answer.lesson)
    check = _hidden_check(checks, answer)
    with pytest.raises(CheckFailed) as failure:
        check(student_function(answer), device="cuda")
    assert answer.says in str(failure.value)


@pytest.mark.parametrize("lesson", LESSONS)
def test_catalog_covers_every_graded_function(lesson: str):
    """Does every graded function of the lesson have at least 2 wrong answers and 1 correct one, and
    does the catalog name only functions the lesson grades?"""
    checks_or_skip(lesson)
    functions = graded_functions(lesson)
    named = {a.function for a in WRONG + CORRECT + WRONG_ON_GPU if a.lesson == lesson}
    assert named <= set(functions), f"not graded in {lesson}: {sorted(named - set(functions))}"
    for fn in functions:
        wrong = [a for a in WRONG if a.lesson == lesson and a.function == fn]
        right = [a for a in CORRECT if a.lesson == lesson and a.function == fn]
        assert len(wrong) >= 2 and len(right) >= 1, f"{fn}: {len(wrong)} wrong and {len(right)} correct answers"
    ids = [a.id for a in WRONG + CORRECT + WRONG_ON_GPU if a.lesson == lesson]
    assert len(ids) == len(set(ids)), "two catalog answers share a name"


@pytest.mark.parametrize("lesson", LESSONS)
def test_composite_keeps_its_points_when_its_helpers_are_wrong(lesson: str):
    """With every helper it calls replaced by that helper's first wrong answer, does the reference
    composite still pass its visible and hidden checks (they swap the helpers back while it is checked)?"""
    checks = checks_or_skip(lesson)
    targets = composites(lesson)
    if not targets:
        pytest.skip(f"{lesson} grades no composite function")
    wrong_helpers = {fn: a for fn, a in first_answers(WRONG, lesson).items() if fn not in targets}
    sources = submissions.solution_sources(lesson)
    for composite in targets:
        namespace = {**vars(reference.load(lesson)), **PRELUDE, "__name__": "student"}
        for answer in wrong_helpers.values():
            exec(compile(answer.source, f"<catalog {answer.id}>", "exec"), namespace)
        exec(compile(sources[composite], f"<reference {composite}>", "exec"), namespace)
        calls = [fn for fn in wrong_helpers if re.search(rf"\b{fn}\s*\(", sources[composite])]
        assert calls, f"{composite} calls none of the helpers that have wrong answers"
        ref = reference.load(lesson)
        for fn in calls:        # the composite really sees wrong helpers in its globals
            assert namespace[fn] is not getattr(ref, fn)
        getattr(checks, f"quick_check_{composite}")(namespace[composite])    # as the test cell runs them
        getattr(checks, f"check_{composite}")(namespace[composite])


# --- slow tier: real notebooks, real kernels -------------------------------------------------------

GRADING_WORKERS = 3         # notebooks graded at once: a kernel spends much of its time waiting


def _grade(path) -> tuple[int, dict, str]:
    """`python -m autograder check NB --hidden --json` in a fresh process: (exit code, report, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--hidden", "--json"],
                          cwd=paths.REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), f"{path}: exit code {proc.returncode}: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _scenarios(lesson: str) -> dict[str, dict[str, Answer]]:
    """The notebooks graded for a lesson: which catalog answer goes in which answer cell."""
    wrong = first_answers(WRONG, lesson)
    scenarios = {"wrong": wrong, "correct": first_answers(CORRECT, lesson)}
    helpers_only = {fn: a for fn, a in wrong.items() if fn not in composites(lesson)}
    if len(helpers_only) < len(wrong):
        scenarios["helpers-wrong"] = helpers_only
    return scenarios


@pytest.fixture(scope="module")
def graded(request, tmp_path_factory):
    """Every notebook of every selected lesson, graded concurrently: {lesson: reason to skip, or
    {scenario: (future of the grading, the answers it holds)}}."""
    selected = sorted({item.callspec.params["lesson"] for item in request.session.items
                       if item.module is sys.modules[__name__] and item.get_closest_marker("slow")
                       and "lesson" in getattr(getattr(item, "callspec", None), "params", {})})
    pool = ThreadPoolExecutor(max_workers=GRADING_WORKERS)
    lessons: dict = {}
    for lesson in selected:
        if _source_notebook(lesson) is None or checks_module(lesson) is None:
            lessons[lesson] = f"the source notebook or checks of {lesson} do not exist yet"
            continue
        if not paths.lesson_path(lesson).is_file():
            lessons[lesson] = f"lessons/{lesson}.ipynb is not released yet"
            continue
        lessons[lesson] = {}
        for scenario, answers in _scenarios(lesson).items():
            path = tmp_path_factory.mktemp(f"{lesson[:2]}-{scenario}") / f"{lesson}.ipynb"
            nbformat.write(submissions.answered(lesson, {fn: a.source for fn, a in answers.items()}), path)
            lessons[lesson][scenario] = (pool.submit(_grade, path), answers)
    yield lessons
    pool.shutdown(wait=True, cancel_futures=True)


def _graded(graded: dict, lesson: str, scenario: str):
    entry = graded[lesson]
    if isinstance(entry, str):
        pytest.skip(entry)
    if scenario not in entry:
        pytest.skip(f"{lesson} grades no composite function")
    future, answers = entry[scenario]
    return (*future.result(), answers)


def _expect_only_these_lose_points(report: dict, err: str, answers: dict[str, Answer]):
    assert report["status"] == "ok", (report, err)
    points = points_by_function(report)
    assert set(answers) <= set(points), f"no test cell for {sorted(set(answers) - set(points))}"
    lost = {fn for fn, (got, full) in points.items() if got < full}
    assert lost == set(answers), f"lost points: {sorted(lost)}; wrong answers: {sorted(answers)}"
    for t in report["tests"]:
        if t["function"] in answers:
            assert t["points"] == 0 and t["message"], t


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_first_wrong_answers_lose_only_their_points(lesson: str, graded):
    """In a real kernel, does every function holding its first catalog wrong answer score 0, while no
    other test loses a point?"""
    rc, report, err, answers = _graded(graded, lesson, "wrong")
    assert rc == 1 and report["lesson"] == lesson
    _expect_only_these_lose_points(report, err, answers)


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_composites_keep_their_points_when_only_their_helpers_are_wrong(lesson: str, graded):
    """In a real kernel, with every helper wrong and every composite as the reference wrote it, do the
    helpers score 0 and the composites full marks (their helpers swapped for the reference's)?"""
    rc, report, err, answers = _graded(graded, lesson, "helpers-wrong")
    assert rc == 1 and report["lesson"] == lesson
    composite_tests = [t for t in report["tests"] if t["function"] in composites(lesson)]
    assert composite_tests and all(t["passed"] for t in composite_tests), composite_tests
    _expect_only_these_lose_points(report, err, answers)


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_first_correct_variants_get_full_marks(lesson: str, graded):
    """In a real kernel, does a notebook holding the first catalog correct variant of every function get
    full marks, exit code 0?"""
    rc, report, err, answers = _graded(graded, lesson, "correct")
    assert set(answers) == set(graded_functions(lesson)), "a graded function has no correct variant"
    assert rc == 0 and report["status"] == "ok", (report, err)
    assert report["score"] == report["max_score"] > 0
    assert all(t["passed"] for t in report["tests"]), report


# --- the hidden checks draw every random input from their seed ---------------------------------------

SEEDS = [1, 12345, 2**31 - 1]
_MINE = ("01_", "02_", "03_")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("answer", [a for a in CORRECT if a.lesson.startswith(_MINE)],
                         ids=[a.id for a in CORRECT if a.lesson.startswith(_MINE)])
def test_correct_answer_passes_for_other_seeds(answer: Answer, seed: int):
    """Does this correct answer pass the hidden check whatever seed the grader draws?"""
    checks = checks_or_skip(answer.lesson)
    _hidden_check(checks, answer)(student_function(answer), device="cpu", seed=seed)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("answer", [a for a in WRONG if a.lesson.startswith(_MINE)],
                         ids=[a.id for a in WRONG if a.lesson.startswith(_MINE)])
def test_wrong_answer_fails_for_other_seeds(answer: Answer, seed: int):
    """Does this wrong answer lose its points whatever seed the grader draws?"""
    checks = checks_or_skip(answer.lesson)
    with pytest.raises(CheckFailed):
        _hidden_check(checks, answer)(student_function(answer), device="cpu", seed=seed)


def test_student_exception_names_the_line_and_the_shapes():
    """Does an exception in the student's own code come back with the student's line and the input shapes,
    and without the transpose hint when the error is not a matmul's?"""
    from autograder.checks import seq2seq
    ns = dict(PRELUDE)
    exec(compile("def simple_rnn_step(x, h_prev, A, b):\n"
                 "    return torch.tanh(torch.cat([x, h_prev.T], -1) @ A.T + b)\n",
                 "<student cell>", "exec"), ns)
    with pytest.raises(CheckFailed) as failure:
        seq2seq.check_simple_rnn_step(ns["simple_rnn_step"], device="cpu")
    message = str(failure.value)
    assert "line 2" in message and "(inputs of shapes (" in message
    assert "transpose" not in message


def test_course_error_is_not_the_students():
    """Does an error in the course's own code (here, a reference that breaks) leave the check unchanged,
    instead of being turned into a CheckFailed the student would be blamed for?"""
    from autograder.checks import bahdanau

    class Broken(Exception):
        pass

    def broken(*args, **kwargs):
        raise Broken("the course's bug")

    ref = reference.load("02_bahdanau_attention")
    saved = ref.dot_scores
    ref.dot_scores = broken
    try:
        with pytest.raises(Broken):
            bahdanau.check_dot_scores(saved, device="cpu")
    finally:
        ref.dot_scores = saved


def test_reference_helpers_refuse_oversized_and_late_calls():
    """Does a composite that calls a reference helper with a broadcast-sized input, or keeps the helper and
    calls it after its check ended, get a CheckFailed instead of the grader's memory and time?"""
    from autograder.checks import seq2seq
    ns = dict(PRELUDE)
    ns["simple_rnn_step"] = None
    exec("kept = []\n"
         "def rnn_encode(xs, A, b):\n"
         "    kept.append(simple_rnn_step)\n"
         "    big = torch.zeros(1, 10_000, xs.shape[-1], dtype=xs.dtype)\n"
         "    return simple_rnn_step(big, big, A, b)\n", ns)
    with pytest.raises(CheckFailed) as failure:
        seq2seq.check_rnn_encode(ns["rnn_encode"], device="cpu")
    assert "not a shape the math gives it" in str(failure.value)
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(CheckFailed, match="after the check"):
        ns["kept"][0](x, x, torch.zeros(3, 6, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
