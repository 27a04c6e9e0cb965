"""A test cell's verdict, computed in the grader's own process, never in the student's kernel.

A test cell of the course is a few plain statements:

    from autograder.checks import qkv as checks
    checks.quick_check_qkv_attention(qkv_attention)
    print("qkv_attention: visible checks passed")
    ### BEGIN HIDDEN TESTS
    checks.check_qkv_attention(qkv_attention)
    ### END HIDDEN TESTS

The grader reads that source (the course's, never the student's copy), runs each check here, and hands
it the student's functions as bridge proxies looked up in the kernel by name. Whatever the kernel
does to torch, numpy, builtins, IPython or its own copy of the checks, the comparison happens here.
The result is written as the cell's outputs, as if the cell had run: nbgrader scores them as usual.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
from dataclasses import dataclass

import logging
import traceback

import nbformat

from . import bridge, outcome
from .checks.core import CheckFailed

CHECKS_PACKAGE = "autograder.checks"
log = logging.getLogger("autograder.verdicts")


class UngradableTest(ValueError):
    """A test cell the grader cannot run outside the kernel: an error in the course, not the student's."""


@dataclass
class Call:
    module: str          # the checks module's alias in the cell
    function: str
    arguments: list[str]  # names of the student's objects in the kernel


@dataclass
class Print:
    text: str


def plan(source: str) -> list[Call | Print]:
    """The steps of a test cell. Only imports of checks modules, check calls on names, and prints of text."""
    steps: list[Call | Print] = []
    aliases: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module == CHECKS_PACKAGE and node.level == 0:
            aliases.update({a.asname or a.name: f"{CHECKS_PACKAGE}.{a.name}" for a in node.names})
            continue
        call = node.value if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) else None
        if call is not None and not call.keywords:
            f = call.func
            if isinstance(f, ast.Name) and f.id == "print" and len(call.args) == 1 \
                    and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
                steps.append(Print(call.args[0].value))
                continue
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in aliases \
                    and all(isinstance(a, ast.Name) for a in call.args):
                steps.append(Call(aliases[f.value.id], f.attr, [a.id for a in call.args]))
                continue
        raise UngradableTest(f"a test cell may only import checks, call them and print text; got: "
                             f"{ast.unparse(node)[:80]}")
    return steps


def _takes_seed(check) -> bool:
    return check.__name__.startswith("check_") and "seed" in inspect.signature(check).parameters


def error_output(ename: str, evalue: str, rendered: str | None = None):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[rendered or f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])


def run(source: str, peer: bridge.Peer, *, seed: int | None = None) -> list:
    """Run a test cell's steps against the kernel behind `peer`; returns the cell's outputs.

    With `seed`, every hidden check (`check_*`, which takes a `seed`) draws its inputs from it; the
    visible checks keep the fixed inputs the student sees in the lesson.

    Raises bridge.PeerGone when the kernel dies or runs out of time (the caller stops the notebook there).
    """
    outputs, printed = [], io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            for step in plan(source):
                if isinstance(step, Print):
                    print(step.text)
                    continue
                check = getattr(importlib.import_module(step.module), step.function)
                extra = {"seed": seed} if seed is not None and _takes_seed(check) else {}
                check(*[peer.request({"op": "lookup", "name": name}) for name in step.arguments], **extra)
    except CheckFailed as failure:
        outputs.append(error_output("CheckFailed", str(failure), failure._render_traceback_()[0]))
    except bridge.PeerGone:
        raise
    except bridge.RemoteError as e:          # the kernel's own error (a missing function's NameError, ...)
        outputs.append(error_output(e.type_name, str(e)))
    except (bridge.BadMessage, bridge.InputModified) as e:     # the kernel's garbage: the student's
        outputs.append(error_output(type(e).__name__, str(e)))
    except Exception as e:                   # the check itself, the reference or the test cell failed: the course's
        outputs.append(error_output(outcome.COURSE_FAILURE, f"the course failed, not your code "
                                    f"({type(e).__name__}): the instructor has been told", None))
        log.error("a check of the course raised:\n%s", "".join(traceback.format_exception(e)))
    finally:
        peer.release()
    if printed.getvalue():
        outputs.insert(0, nbformat.v4.new_output("stream", name="stdout", text=printed.getvalue()))
    with contextlib.suppress(bridge.RemoteError, bridge.BadMessage):      # the kernel forgets them too
        peer.exchange({"op": "release"})
    return outputs
