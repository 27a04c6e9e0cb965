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

from .preprocessors import GradeOutsideKernel

COURSE_ID = "attention"

# nbgrader runs the `alembic` command of its own environment: make it findable without an activated venv.
_bin = str(Path(sys.executable).parent)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")


def course_config(root: Path, *, cell_timeout: int = 60, sandboxed: bool | None = None) -> Config:
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    c.Exchange.root = str(root / "exchange")       # unused, but nbgrader insists on a writable one
    # nbgrader's list, with its Execute replaced: the verdicts are computed outside the student's kernel.
    c.Autograde.autograde_preprocessors = [GradeOutsideKernel, IgnorePattern, ClearMetadataPreprocessor,
                                           LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    c.GradeOutsideKernel.cell_timeout = cell_timeout
    c.GradeOutsideKernel.course_id = COURSE_ID
    if sandboxed is not None:
        c.GradeOutsideKernel.sandboxed = sandboxed
    # Deleted or edited test cells come back from the source notebook.
    c.OverwriteCells.add_missing_cells = True
    # The feedback must not show the hidden tests' source.
    c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
    c.ClearHiddenTests.enforce_metadata = False
    return c


def course_api(root: Path, **kwargs) -> NbGraderAPI:
    root = Path(root).resolve()
    (root / "exchange").mkdir(parents=True, exist_ok=True)
    config = course_config(root, **kwargs)
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)
