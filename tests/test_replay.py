"""Nothing the reference makes can be harvested and replayed: hidden inputs follow a secret seed per
grading process, and test cells run in the course's order whatever the student's order."""
import importlib
import inspect
import re
import subprocess
import sys

import nbformat
import pytest
import torch

from autograder import check, notebooks, paths, reference, submissions, verdicts

CHECK_MODULES = {"01_seq2seq_shortcomings": "seq2seq", "02_bahdanau_attention": "bahdanau",
                 "03_query_key_value": "qkv", "04_time_complexity": "complexity",
                 "05_self_attention_rnn": "self_attention_rnn", "06_attention_without_rnn": "transformer_attention"}
HIDDEN = [(lesson, name) for lesson, module in CHECK_MODULES.items()
          for name, _ in inspect.getmembers(importlib.import_module(f"autograder.checks.{module}"), inspect.isfunction)
          if name.startswith("check_")]


def _fingerprint(value):
    """What a call's argument shows a student who records it: its values (tensors), sizes and numbers."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), round(float(value.detach().double().sum()), 6))
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_fingerprint(v) for v in value)
    return type(value).__name__


def _inputs_seen(lesson: str, check_name: str, seed: int) -> list:
    """Every call the hidden check makes to a correct answer (the reference), fingerprinted."""
    module = importlib.import_module(f"autograder.checks.{CHECK_MODULES[lesson]}")
    answer = getattr(reference.load(lesson), check_name.removeprefix("check_"))
    calls = []

    if inspect.isclass(answer):              # a class under test (lesson 04's CountingScore): record its calls
        class Recorded(answer):
            def __call__(self, *args, **kwargs):
                calls.append(_fingerprint((args, tuple(sorted(kwargs.items())))))
                return super().__call__(*args, **kwargs)
        spy = Recorded
    else:
        def spy(*args, **kwargs):
            calls.append(_fingerprint((args, tuple(sorted(kwargs.items())))))
            return answer(*args, **kwargs)
    getattr(module, check_name)(spy, device="cpu", seed=seed)
    return calls


@pytest.mark.parametrize("lesson, check_name", HIDDEN, ids=[f"{l[:2]}-{n}" for l, n in HIDDEN])
def test_hidden_inputs_follow_the_seed(lesson, check_name):
    """Does every hidden check draw what it feeds the answer from its seed, all of it, and the same again
    for the same seed? (Inputs fixed in the public checks' code could be recorded and replayed.)"""
    first, again, other = (_inputs_seen(lesson, check_name, s) for s in (11, 11, 12))
    assert first, f"{check_name} never called the answer"
    assert first == again, f"{check_name} feeds different inputs for the same seed"
    assert first != other, f"{check_name} feeds the same inputs whatever the seed"


def test_each_grading_process_draws_its_own_secret_seed():
    """Are the hidden checks' seeds drawn per process, not a constant of the public code?"""
    code = "from autograder import preprocessors; print(preprocessors.RUN_SEED)"
    env = {k: v for k, v in __import__("os").environ.items() if k != "ATTENTION_GRADING_SEED"}
    seeds = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
             .stdout.strip() for _ in range(3)}
    assert len(seeds) == 3, seeds


def test_visible_checks_keep_their_fixed_inputs():
    """The seed goes to the hidden checks only: a visible check's inputs are the lesson's, always."""
    assert not verdicts._takes_seed(importlib.import_module("autograder.checks.bahdanau").quick_check_dot_scores)
    assert verdicts._takes_seed(importlib.import_module("autograder.checks.bahdanau").check_dot_scores)


@pytest.mark.slow
def test_test_cells_run_in_the_course_order(tmp_path, monkeypatch):
    """A student who moves the helpers' test cells after the composite's: every test still runs in the
    course's order (each helper before the composite that is handed the reference helpers), once,
    and a correct answer keeps full marks."""
    lesson = "02_bahdanau_attention"
    nb = submissions.answered(lesson)
    tests = [c for c in nb.cells if notebooks.is_autograded_test(c)]
    composite = next(c for c in tests if notebooks.grade_id(c) == "test_attention_decode")
    others = [c for c in nb.cells if c not in tests]
    nb.cells = others + [composite] + [c for c in tests if c is not composite][::-1]
    path = tmp_path / f"{lesson}.ipynb"
    nbformat.write(nb, path)

    ran = []
    real_run = verdicts.run

    def recording_run(source, peer, **kwargs):
        ran.append(re.search(r"check_(\w+)\(", source).group(1))
        return real_run(source, peer, **kwargs)
    monkeypatch.setattr(verdicts, "run", recording_run)
    report = check.check(path, hidden=True)

    course = [notebooks.grade_id(c) for c in notebooks.read(paths.solution_path(lesson)).cells
              if notebooks.is_autograded_test(c)]
    assert ran == [gid.removeprefix("test_") for gid in course], ran
    assert report.score == report.max_score and report.status == "ok"
