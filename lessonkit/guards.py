"""Guards for the long, ungraded cells of a lesson: training runs, demos and plots.

This module imports nothing from `autograder`: inside the grading sandbox only `lessonkit` is there.

While nbgrader grades (it sets NBGRADER_EXECUTION) they are skipped, so grading stays fast. While a
graded function is still a stub they say which one and let the rest of the notebook run.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from typing import Callable, Iterable, TypeVar

import torch


T = TypeVar("T")


def grading() -> bool:
    return bool(os.environ.get("NBGRADER_EXECUTION"))


@contextlib.contextmanager
def threads(n: int | None = 1):
    """PyTorch with `n` intra-op threads inside the block (None: leave the setting alone).

    The lessons' tensors are small: one thread trains them fastest, and on a shared machine a second
    thread that must wait for a busy core slows every step down many times over.
    """
    if n is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def steps(n: int) -> int:
    """`n` training steps (or repeats), or a few when LESSONKIT_QUICK is set: the test suite's smoke run
    executes every cell of every lesson without paying for full training."""
    return max(1, n // 50) if os.environ.get("LESSONKIT_QUICK") else n


def examples(n: int) -> int:
    """`n` test examples, or a few when LESSONKIT_QUICK is set: the smoke run only needs the evaluation
    to run, and a model trained a few steps gives no figure worth the time."""
    return max(2, n // 32) if os.environ.get("LESSONKIT_QUICK") else n


def raiser_name(error: BaseException) -> str | None:
    """The name of the innermost function of the traceback that raised `error` (None without one)."""
    tb, name = error.__traceback__, None
    while tb is not None:
        name = tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    return name


def missing(functions: Iterable[Callable]) -> list[str]:
    """The names of the graded functions in `functions` that are still a stub.

    A function is a stub when its source still raises NotImplementedError where the answer goes (as
    released); the source is read, the function is not called.
    """
    names = []
    for fn in functions:
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            continue
        if "raise NotImplementedError" in source:
            names.append(getattr(fn, "__name__", repr(fn)))
    return names


def run_demo(demo: Callable[[], T], what: str = "this demo", needs: Iterable[Callable] = ()) -> T | None:
    """Run `demo()` unless grading; if graded functions are still stubs, name them all and return None.

    `needs` lists the graded functions the demo calls: the ones still missing are named before anything
    starts (no empty progress bar). A stub that `needs` did not list is named when it raises.
    """
    if grading():
        print(f"Skipped {what} while grading.")
        return None
    absent = missing(needs)
    if absent:
        print(f"Skipped {what}: not implemented yet: {', '.join(n + '()' for n in absent)}. "
              "Implement them above, then run this cell again.")
        return None
    try:
        return demo()
    except NotImplementedError as error:
        print(f"Skipped {what}: {raiser_name(error) or 'a graded function'}() is not implemented yet. "
              "Implement it above, then run this cell again.")
        return None


def needs_inputs(what: str, **inputs) -> bool:
    """True when every input of a plot is there; otherwise print which are missing (and why) and return False."""
    if grading():
        print(f"Skipped {what} while grading.")
        return False
    absent = [name for name, value in inputs.items() if value is None]
    if absent:
        print(f"Skipped {what}: {', '.join(absent)} missing (the cell that makes "
              f"{'them' if len(absent) > 1 else 'it'} was skipped; see its message above).")
        return False
    return True
