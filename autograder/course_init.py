"""`init`: put the course's lessons and its grader into an nbgrader course folder, a new one or an instructor's own.

What it does to COURSE:

- **The configuration.** A folder without `nbgrader_config.py` gets the one `grade` writes
  (`nbgrader_course.write_config`). An `nbgrader_config.py` already there is the instructor's: init keeps
  every line of it and appends one marked block that includes this course's grader (`include` below,
  which takes its settings from `nbgrader_course.configure`, the one place they live). The instructor's
  course id, gradebook (`db_url`) and exchange stay theirs, unless `--course-id` or `--exchange` say
  otherwise. Running init again replaces the block; it never adds a second one.
- **The grader takes only this course's lessons.** A notebook whose test cells (as the gradebook holds
  them) call `autograder.checks` is graded outside the kernel, sandboxed (`GradeOutsideKernel`); every
  other notebook of the course, such as the instructor's own assignments, is run by nbgrader's own
  `Execute`, as before.
- **The lessons.** `solutions/<lesson>.ipynb` is copied to `COURSE/source/<lesson>/<lesson>.ipynb` and
  nbgrader's `generate_assignment` runs with the course folder's own configuration, loaded as nbgrader's
  commands and the formgrader load it. A source notebook there that differs from the course's (the
  instructor edited it) is never overwritten without `--force`: init refuses, writing nothing.
"""
from __future__ import annotations

import ast
import contextlib
import filecmp
import re
import shutil
import tempfile
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets.config import Config

from . import nbgrader_course, paths
from .settings import DEFAULT

CONFIG_FILE = nbgrader_course.CONFIG_FILE
BEGIN = "# >>> attention course grader (python -m autograder init) >>>"
END = "# <<< attention course grader <<<"
_BLOCK = re.compile(rf"\n*{re.escape(BEGIN)}\n.*?{re.escape(END)}\n?", re.DOTALL)
_BLOCK_TEXT = """\
{begin}
# This course's lessons are graded by its autograder: verdicts computed outside the student's kernel,
# kernels sandboxed, feedback without hidden tests. Notebooks of other assignments are run by nbgrader's
# own Execute. The settings above keep the course id, gradebook and exchange unless this call names them.
# `python -m autograder init` rewrites this block; delete it to undo what init added here.
from autograder.course_init import include as _attention_course_grader
_attention_course_grader(get_config(), __file__, {arguments})
{end}
"""
# What names the course rather than how it grades: the instructor's own settings keep these.
_IDENTITY = {"CourseDirectory": ("root", "course_id", "db_url"), "Exchange": ("root",),
             "GradeOutsideKernel": ("course_id",)}
CHECKS_IMPORT = "autograder.checks"


class InitRefused(RuntimeError):
    """init would overwrite something the instructor made: nothing was written."""


class GradeCourseLessons(NbGraderPreprocessor):
    """In Autograde's list where GradeOutsideKernel stood: the course's lessons are graded outside the
    student's kernel, any other notebook of the course folder by nbgrader's Execute.

    A lesson is recognized by its test cells as the gradebook holds them (the instructor's source,
    never the student's file): they call the course's checks."""

    def preprocess(self, nb, resources):
        from nbgrader.preprocessors import Execute
        from .preprocessors import GradeOutsideKernel
        course_id = self.config.CourseDirectory.get("course_id") or None
        if _calls_the_checks(resources, course_id):
            extra = {"course_id": course_id} if course_id else {}
            return GradeOutsideKernel(parent=self, **extra).preprocess(nb, resources)
        return Execute(parent=self).preprocess(nb, resources)


def _calls_the_checks(resources: dict, course_id: str | None) -> bool:
    from nbgrader.api import Gradebook, MissingEntry
    info = resources["nbgrader"]
    with Gradebook(info["db_url"], course_id or "") as gb:
        try:
            nb = gb.find_notebook(info["notebook"], info["assignment"])
        except MissingEntry:          # nbgrader could not grade it either; ours reports why
            return True
        tests = {c.name for c in nb.grade_cells if c.cell_type == "code"}
        return any(c.name in tests and CHECKS_IMPORT in c.source for c in nb.source_cells)


def include(c: Config, config_file: str, *, course_id: str | None = None, exchange: str | None = None,
            cell_timeout: int = DEFAULT.cell_timeout, sandboxed: bool | None = DEFAULT.sandboxed) -> Config:
    """Add this course's grader to the nbgrader configuration `c` of the course folder holding `config_file`.

    The settings come from `nbgrader_course.configure`, less those that name the course (root, course id,
    gradebook, exchange): `c` keeps its own, or takes `course_id` and `exchange` where given."""
    ours = nbgrader_course.course_config(Path(config_file).resolve().parent, cell_timeout=cell_timeout,
                                         sandboxed=sandboxed)
    for section, keys in _IDENTITY.items():
        for key in keys:
            ours[section].pop(key, None)
    c.merge(ours)
    c.Autograde.autograde_preprocessors = [GradeCourseLessons if _named(p) == "GradeOutsideKernel" else p
                                           for p in c.Autograde.autograde_preprocessors]
    if course_id:
        c.CourseDirectory.course_id = course_id
    if exchange:
        c.Exchange.root = str(exchange)
    return c


def _named(preprocessor) -> str:
    """A preprocessor's class name, given as the class or as its dotted path."""
    return (preprocessor if isinstance(preprocessor, str) else preprocessor.__name__).rsplit(".", 1)[-1]


def _block(**arguments) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return _BLOCK_TEXT.format(begin=BEGIN, end=END, arguments=text)


def _block_arguments(text: str) -> dict:
    """The keyword arguments of the include call in the block of `text` ({} without one)."""
    match = _BLOCK.search(text)
    if not match:
        return {}
    for node in ast.walk(ast.parse(match.group(0).strip())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_attention_course_grader":
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    return {}


def _written_by_grade(text: str) -> bool:
    """Is `text`, less our block, exactly a file `nbgrader_course.write_config` writes (no edit of the instructor's)?"""
    text = _BLOCK.sub("", text)
    found = re.search(r"cell_timeout=(\d+), sandboxed=(None|True|False)\)", text)
    if not found:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        written = nbgrader_course.write_config(Path(tmp), cell_timeout=int(found.group(1)),
                                               sandboxed=ast.literal_eval(found.group(2)))
        return written.read_text() == text


def grade_may_write_config(root: Path) -> bool:
    """May `grade` (re)write `root`/nbgrader_config.py? Only where there is none, or exactly the one it wrote:
    never over an instructor's file, nor over the block init added (the course id and exchange it names)."""
    path = Path(root) / CONFIG_FILE
    if not path.is_file():
        return True
    text = path.read_text()
    return not _BLOCK.search(text) and _written_by_grade(text)


def write_configuration(root: Path, *, course_id: str | None = None, exchange: str | None = None,
                        cell_timeout: int = DEFAULT.cell_timeout, sandboxed: bool | None = DEFAULT.sandboxed) -> str:
    """Write or extend `root`/nbgrader_config.py; returns what was done, in words.

    `course_id` and `exchange` left out keep what a previous init was told, and otherwise what the
    folder's configuration says (nbgrader_course's defaults for a new one)."""
    path = root / CONFIG_FILE
    old = path.read_text() if path.is_file() else None
    previous = _block_arguments(old or "")
    arguments = {"course_id": course_id or previous.get("course_id"),
                 "exchange": str(Path(exchange).resolve()) if exchange else previous.get("exchange"),
                 "cell_timeout": cell_timeout, "sandboxed": sandboxed}
    block = _block(**arguments)
    if old is None or _written_by_grade(old):
        nbgrader_course.write_config(root, cell_timeout=cell_timeout, sandboxed=sandboxed)
        path.write_text(path.read_text() + "\n" + block)
        return f"wrote {path}"
    kept = _BLOCK.sub("", old).rstrip("\n")
    path.write_text(kept + "\n\n" + block)
    verb = "replaced the attention course's block at the end of" if _BLOCK.search(old) else \
        "appended the attention course's grader, as one marked block, to"
    return (f"kept your {path} and {verb} it (your course id, gradebook and exchange settings stay yours; "
            f"delete the block to grade with plain nbgrader again)")


def course_configuration(root: Path) -> Config:
    """The configuration nbgrader's commands load when run in `root`: the user's and system's config
    files, then the folder's nbgrader_config.py (as the formgrader loads it)."""
    from nbgrader.apps.baseapp import NbGrader
    with contextlib.chdir(root):
        app = NbGrader()
        app.load_config_file()
        return app.config


def edited_sources(root: Path, lessons: list[str]) -> list[Path]:
    """The lessons' source notebooks in `root` that differ from the course's solutions."""
    targets = [root / "source" / lesson / f"{lesson}.ipynb" for lesson in lessons]
    return [t for t, lesson in zip(targets, lessons)
            if t.exists() and not filecmp.cmp(t, paths.solution_path(lesson), shallow=False)]


def init(course: Path, lessons: list[str] | None = None, *, course_id: str | None = None,
         exchange: str | None = None, force: bool = False, cell_timeout: int = DEFAULT.cell_timeout,
         sandboxed: bool | None = DEFAULT.sandboxed, say=print) -> list[str]:
    """Put `lessons` (default: all) and this course's grader into the nbgrader course folder `course`.

    Raises InitRefused, writing nothing, when a lesson's source there was edited (unless `force`), and
    KeyError for a lesson the course does not have. Returns the lessons generated."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    known = paths.lesson_names()
    lessons = list(lessons or known)
    unknown = [lesson for lesson in lessons if lesson not in known]
    if unknown:
        raise KeyError(f"no such lesson: {', '.join(unknown)} (the lessons: {', '.join(known)})")
    root = Path(course).resolve()
    edited = [] if force else edited_sources(root, lessons)
    if edited:
        raise InitRefused("these source notebooks differ from the course's solutions; init would overwrite them:\n"
                          + "\n".join(f"  {p}" for p in edited)
                          + "\nKeep your copies elsewhere, or run init with --force to overwrite them.")
    root.mkdir(parents=True, exist_ok=True)
    say(write_configuration(root, course_id=course_id, exchange=exchange, cell_timeout=cell_timeout,
                            sandboxed=sandboxed))
    config = course_configuration(root)
    exchange_root = Path(config.Exchange.root) if "root" in config.Exchange else None
    if exchange_root is not None and not exchange_root.exists():
        exchange_root.mkdir(parents=True)
        exchange_root.chmod(0o777)     # as nbgrader's release_assignment makes it: every student writes there
        say(f"created the exchange {exchange_root}")
    # nbgrader's default root is the folder it runs in (read when first used: read it here).
    coursedir = CourseDirectory(config=config, root=config.CourseDirectory.get("root", str(root)))
    api = NbGraderAPI(coursedir=coursedir, config=config)
    for lesson in lessons:
        dest = Path(coursedir.root) / "source" / lesson / f"{lesson}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(paths.solution_path(lesson), dest)
        result = api.generate_assignment(lesson, force=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader generate_assignment failed for {lesson}:\n{result.get('log', '')}")
        say(f"generated {lesson} (source/{lesson}, release/{lesson})")
    return lessons


def main(*, course: str, lessons: list[str] | None = None, course_id: str | None = None, exchange: str | None = None,
         force: bool = False, cell_timeout: int = DEFAULT.cell_timeout) -> int:
    try:
        done = init(Path(course), lessons or None, course_id=course_id, exchange=exchange, force=force,
                    cell_timeout=cell_timeout)
    except (InitRefused, KeyError) as error:
        print(f"init refused: {error.args[0]}")
        return 1
    first = done[0]
    print(f"\nNext, in {Path(course).resolve()}:\n"
          f"  nbgrader release_assignment {first}     # students: nbgrader fetch_assignment {first}, then submit\n"
          f"  nbgrader collect {first}\n  nbgrader autograde {first}\n"
          f"  jupyter lab                                 # the formgrader: manual grading (add --allow-root as root)\n"
          f"  nbgrader generate_feedback {first}\n  nbgrader release_feedback {first}")
    return 0
