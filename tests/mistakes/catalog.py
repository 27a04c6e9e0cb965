"""The shape of a catalog entry, and how to collect them all."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """One answer cell a student might submit.

    lesson: the lesson's notebook stem, e.g. "02_bahdanau_attention".
    function: the graded function the cell defines.
    name: the mistake made (for WRONG) or the style it is written in (for CORRECT).
    source: the whole answer cell: `def <function>(...)`, with any imports it needs. It may call the
        lesson's other graded functions, which are then the reference ones (a student whose other
        answers are right).
    says: for WRONG answers whose mistake the checks can recognize, a phrase the failure message must
        contain; "" where only a generic failure can be expected.
    """
    lesson: str
    function: str
    name: str
    source: str
    says: str = ""

    @property
    def id(self) -> str:
        return f"{self.function}: {self.name}"


def _modules():
    from tests import mistakes
    for info in pkgutil.iter_modules(mistakes.__path__):
        if info.name.startswith("lesson"):
            yield importlib.import_module(f"tests.mistakes.{info.name}")


def wrong() -> list[Answer]:
    return [a for m in _modules() for a in m.WRONG]


def correct() -> list[Answer]:
    return [a for m in _modules() for a in m.CORRECT]
