"""Guards for the long, ungraded cells of a lesson: training runs and plots.

While nbgrader grades (it sets NBGRADER_EXECUTION) they are skipped, so grading stays fast. While a
graded function is still a stub they say which one and let the rest of the notebook run.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, TypeVar

import torch

from autograder.checks.core import raiser_name

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


def run_demo(demo: Callable[[], T], what: str = "this demo") -> T | None:
    """Run `demo()` unless grading; if a graded function is still a stub, say which and return None."""
    if grading():
        print(f"Skipped {what} while grading.")
        return None
    try:
        return demo()
    except NotImplementedError as error:
        print(f"Skipped {what}: {raiser_name(error) or 'a graded function'}() is not implemented yet. "
              "Implement it above, then run this cell again.")
        return None
