"""The Makefile's targets for students: they never lose work, and they start as root or not."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from autograder import demo, paths

REPO = paths.REPO


def _make_dry_run(target, **env):
    return subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **env}, check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_adds_allow_root_only_for_root():
    """Does `make lab` pass --allow-root exactly when it runs as root (uid 0), so it starts for both?"""
    line = next(l for l in _make_dry_run("lab").splitlines() if "jupyter lab" in l)
    as_root = subprocess.run(["sh", "-c", line.replace("$(id -u)", "0").replace(" lab ", " --version # lab ")],
                             capture_output=True, text=True)
    shown = subprocess.run(["sh", "-c", "echo " + line.split("jupyter lab", 1)[1].replace("$(id -u)", "0")],
                           capture_output=True, text=True).stdout
    assert "--allow-root" in shown
    shown_user = subprocess.run(["sh", "-c", "echo " + line.split("jupyter lab", 1)[1].replace("$(id -u)", "1000")],
                                capture_output=True, text=True).stdout
    assert "--allow-root" not in shown_user and "lessons/" in shown_user
    assert as_root.returncode == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_does_not_release_into_lessons():
    """Does `make demo` call the demo with its own output folder, and no `release` into lessons/?"""
    commands = _make_dry_run("demo")
    assert "autograder demo --out" in commands and "autograder release" not in commands


def test_demo_class_is_built_from_its_own_release_and_leaves_lessons_alone(tmp_path):
    """Does the demo release into its own folder, leave a student's edit in lessons/ as it was, and give
    one student answers to the written questions?"""
    before = {p: p.read_bytes() for p in paths.LESSONS.glob("*.ipynb")}
    released = tmp_path / "lessons"
    from autograder import release
    release.release(out=released)
    class_dir = demo.build_class(tmp_path / "class", released)
    assert {p: p.read_bytes() for p in paths.LESSONS.glob("*.ipynb")} == before
    ada = (class_dir / "ada" / "01_seq2seq_shortcomings.ipynb").read_text()
    assert demo.WRITTEN_ANSWER[:40] in ada, "nobody answers the written questions"
    assert demo.written_ids(released, "01_seq2seq_shortcomings")
