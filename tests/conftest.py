"""Shared fixtures: lessons, devices, and running the command line as a user would."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autograder import paths

LESSONS = paths.lesson_names()


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return request.param


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m autograder ARGS` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "autograder", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=paths.REPO)


def check_json(notebook: Path, *extra: str) -> tuple[int, dict]:
    """Exit code and JSON report of `check NOTEBOOK --json`."""
    proc = run_cli("check", str(notebook), "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def points_by_function(report: dict) -> dict[str, tuple[float, float]]:
    return {t["function"]: (t["points"], t["max_points"]) for t in report["tests"]}
