"""An nbgrader course directory set up from Python, so no nbgrader_config.py in the working directory is needed."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, GetGrades, IgnorePattern,
                                    LimitOutput, SaveAutoGrades)
from traitlets.config import Config

from . import feedback
from .settings import DEFAULT

COURSE_ID = DEFAULT.course_id

# nbgrader runs the `alembic` command of its own environment: make it findable without an activated venv.
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")


CONFIG_FILE = "nbgrader_config.py"
_CONFIG_TEXT = """\
# This course's nbgrader configuration, written by `python -m autograder grade` (edit the settings there).
# nbgrader's own commands and the formgrader, run in this folder, grade exactly as `grade` does: verdicts
# computed outside the student's kernel, kernels in the sandbox, sanitized feedback without hidden tests.
from pathlib import Path

from autograder.nbgrader_course import configure

configure(get_config(), Path(__file__).resolve().parent, cell_timeout={cell_timeout!r}, sandboxed={sandboxed!r})
"""


def configure(c: Config, root: Path, *, cell_timeout: int = DEFAULT.cell_timeout,
              sandboxed: bool | None = DEFAULT.sandboxed, seed: int | None = None) -> Config:
    """Fill nbgrader's configuration `c` for the course folder `root`: the one place that says how this
    course grades, used by `grade`, `check` and the course folder's own nbgrader_config.py. `seed` fixes
    the hidden checks' seed (None: each grading process's own, `preprocessors.RUN_SEED`)."""
    root = Path(root)
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = DEFAULT.course_id
    c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    c.Exchange.root = str(root / "exchange")       # nbgrader insists on a writable one; an instructor may set another
    # nbgrader's list, with its Execute replaced: the verdicts are computed outside the student's kernel,
    # then what the student's outputs hold is sanitized before anything shows them.
    # (named, not imported: a process that only releases or records grades needs no torch)
    c.Autograde.autograde_preprocessors = ["autograder.preprocessors.GradeOutsideKernel",
                                           *feedback.AUTOGRADE_PREPROCESSORS, IgnorePattern,
                                           ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
                                           AssignLatePenalties, CheckCellMetadata]
    c.GradeOutsideKernel.cell_timeout = cell_timeout
    c.GradeOutsideKernel.course_id = DEFAULT.course_id
    if sandboxed is not None:
        c.GradeOutsideKernel.sandboxed = sandboxed
    if seed is not None:
        c.GradeOutsideKernel.seed = seed
    # Deleted or edited test cells come back from the source notebook.
    c.OverwriteCells.add_missing_cells = True
    # The feedback must not show the hidden tests' source.
    c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
    c.ClearHiddenTests.enforce_metadata = False
    feedback.configure(c)
    return c


def course_config(root: Path, **settings) -> Config:
    return configure(Config(), root, **settings)


def write_config(root: Path, *, cell_timeout: int = DEFAULT.cell_timeout,
                 sandboxed: bool | None = DEFAULT.sandboxed) -> Path:
    """Write `root`/nbgrader_config.py, so nbgrader's commands and the formgrader run there grade as `grade` does."""
    path = Path(root) / CONFIG_FILE
    path.write_text(_CONFIG_TEXT.format(cell_timeout=cell_timeout, sandboxed=sandboxed))
    return path


def course_api(root: Path, **kwargs) -> NbGraderAPI:
    root = Path(root).resolve()
    (root / "exchange").mkdir(parents=True, exist_ok=True)
    config = course_config(root, **kwargs)
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)
