"""How the grading of one notebook ended: one name per outcome, used by `check`, `grade`, the CSV and the tables.

A verdict is the student's (a failed check, an error raised by the student's code) or the course's (a
check that crashed, a missing reference, a malformed test cell, a grader that died). Only the student's
count against the student; the course's are flagged loudly and never scored as a silent failure.
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """The status of one submitted file, as `grades.csv`, the tables and `check --json` write it."""

    OK = "ok"
    """Graded: every test ran, and the score is the student's."""
    INVALID_NOTEBOOK = "invalid-notebook"
    """The file is not a notebook that can be read (broken JSON, empty, binary, too large, too deep)."""
    REFUSED_FILE = "refused-file"
    """Not a regular file (a symbolic link, a device, a pipe): never opened."""
    UNKNOWN_LESSON = "unknown-lesson"
    """A notebook, but of no lesson of this course (no cell of any lesson found)."""
    DUPLICATE_LESSON = "duplicate-lesson"
    """A second file of a lesson the student already handed in; the other one is graded."""
    TIMEOUT = "timeout"
    """A cell ran past its time limit: the tests proven before it keep their points, the rest get none."""
    KERNEL_DIED = "kernel-died"
    """The student's kernel died (its own exit, a crash, out of memory): the tests before keep their points."""
    COURSE_ERROR = "course-error"
    """The course failed, not the student: a check raised, the reference is missing, a test cell is
    malformed, or the kernel could not start. The affected tests are flagged; see the notebook's log."""
    GRADER_DIED = "grader-died"
    """The grading process itself died on this notebook twice (say, killed for memory): not graded."""
    AUTOGRADE_FAILED = "autograde-failed"
    """nbgrader's autograde step failed for a reason outside the tests; see the notebook's log."""

    def __str__(self) -> str:
        return self.value

    @property
    def graded(self) -> bool:
        """Whether a score was recorded (possibly partial)."""
        return self in (Status.OK, Status.TIMEOUT, Status.KERNEL_DIED, Status.COURSE_ERROR)

    @property
    def courses_fault(self) -> bool:
        """Whether the course or the grader, not the student, is to blame: the instructor must look."""
        return self in (Status.COURSE_ERROR, Status.GRADER_DIED, Status.AUTOGRADE_FAILED)


# The error names a test cell's outputs carry, and what each says about the notebook.
STUDENT_FAILURE = "CheckFailed"         # a check failed: the student's
TIMED_OUT = "CellTimeoutError"          # the cell or the notebook ran out of time
KERNEL_DIED = "DeadKernelError"         # the kernel died
COURSE_FAILURE = "CourseError"          # the course's own failure: not scored against the student

_BY_ERROR = {COURSE_FAILURE: Status.COURSE_ERROR, KERNEL_DIED: Status.KERNEL_DIED, TIMED_OUT: Status.TIMEOUT}
# When several happened, the loudest wins: a course failure must never hide behind a timeout.
_PRECEDENCE = (Status.COURSE_ERROR, Status.KERNEL_DIED, Status.TIMEOUT)


def status_of(nb) -> Status:
    """How the grading of a notebook that `GradeOutsideKernel` ran ended, from its test cells' outputs."""
    found = {_BY_ERROR[o.get("ename")] for c in nb.cells for o in c.get("outputs", []) if o.get("ename") in _BY_ERROR}
    return next((s for s in _PRECEDENCE if s in found), Status.OK)
