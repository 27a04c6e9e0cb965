"""An instructor's own nbgrader course adopts the lessons with `python -m autograder init`, and the nbgrader
exchange works end to end there: release, fetch, submit, collect, autograde, a manual grade with a comment,
feedback generated, released and fetched by the students.

Every step is nbgrader's own command, run in a fresh process as the person would run it: the instructor in
the course folder, each student in a home of their own (HOME, Jupyter config and data folders), whose
nbgrader_config.py names the exchange, the course and the student (a student id in the config stands in
for a separate login on a shared server). The manual grade goes through nbgrader's Gradebook API, as the
formgrader's handlers write it.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory

from autograder import course_init, nbgrader_course, notebooks, paths, submissions
from tests.mistakes import lesson03

pytestmark = pytest.mark.slow
LESSON = "03_query_key_value"
COURSE_ID = "attn101"
NBGRADER = str(Path(sys.executable).parent / "nbgrader")
TEXT_STUB = "Write your answer here, in two or three sentences."
STUDENTS = ("alice", "bob")
# Bob: project_qkv right; qkv_attention takes the softmax over the query axis, and the answer cell puts
# fake `autograder.checks` modules into the kernel that pass every check run there (plain nbgrader,
# which runs the test cells in the student's kernel, would give him every point).
QUERY_AXIS = next(a for a in lesson03.WRONG if a.name == "softmax over the query axis t")
FAKE_CHECKS = """\
import sys, types
class _Pass(types.ModuleType):
    def __getattr__(self, name):
        return lambda *args, **kwargs: None
for _name in ("autograder", "autograder.checks", "autograder.checks.qkv"):
    sys.modules[_name] = _Pass(_name)
sys.modules["autograder"].checks = sys.modules["autograder.checks"]
sys.modules["autograder.checks"].qkv = sys.modules["autograder.checks.qkv"]
"""
BOB_QKV = FAKE_CHECKS + QUERY_AXIS.source
ANSWERS = {
    "alice": {"written_roles": "The query asks what the decoder state needs; keys are matched against it."},
    "bob": {"qkv_attention": BOB_QKV, "written_roles": "Queries, keys and values are the same thing."},
}
COMMENT = "Right about queries and keys; say also why the values may differ from the keys."


def person(tmp: Path, name: str, **settings) -> tuple[Path, dict]:
    """A home of their own for `name`, whose user config sets `settings` ("Section.trait": value)."""
    home = tmp / name
    (home / ".jupyter").mkdir(parents=True)
    (home / ".jupyter" / "nbgrader_config.py").write_text(
        "c = get_config()\n" + "".join(f"c.{key} = {value!r}\n" for key, value in settings.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"))
    return home, env


def run(env: dict, cwd: Path, *command: str) -> str:
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def answer(fetched: Path, student: str) -> None:
    """Type the student's answers into the notebook they fetched."""
    nb = nbformat.read(fetched, as_version=4)
    typed = notebooks.cells_by_id(submissions.answered(LESSON, ANSWERS[student]))
    for cell in nb.cells:
        if notebooks.nbgrader_meta(cell).get("solution"):
            cell.source = typed[notebooks.grade_id(cell)].source
    nbformat.write(nb, fetched)


def instructors_course(tmp: Path, exchange: Path) -> tuple[Path, str]:
    """An nbgrader course folder of the instructor's own: their course id, exchange and a setting of theirs."""
    course = tmp / "instructor" / "course"
    course.mkdir(parents=True)
    text = ("# The instructor's own configuration.\nc = get_config()\n"
            f"c.CourseDirectory.course_id = {COURSE_ID!r}\nc.Exchange.root = {str(exchange)!r}\n"
            f"c.ClearSolutions.text_stub = {TEXT_STUB!r}\n")
    (course / "nbgrader_config.py").write_text(text)
    return course, text


def test_the_exchange_round_trip_in_a_course_made_by_init(tmp_path):
    """Do two students, through nbgrader's exchange, get feedback graded by our grader, with the manual
    score and comment and without the hidden tests or a grader path?"""
    exchange = tmp_path / "exchange"
    _, teacher = person(tmp_path, "instructor")
    course, own_config = instructors_course(tmp_path, exchange)
    homes = {s: person(tmp_path, s, **{"Exchange.root": str(exchange), "CourseDirectory.course_id": COURSE_ID,
                                        "CourseDirectory.student_id": s}) for s in STUDENTS}

    def each_student(*command: str) -> list[str]:
        with ThreadPoolExecutor(len(STUDENTS)) as pool:
            return list(pool.map(lambda s: run(homes[s][1], homes[s][0], *command), STUDENTS))

    run(teacher, paths.REPO, sys.executable, "-m", "autograder", "init", str(course), LESSON)
    config_text = (course / "nbgrader_config.py").read_text()
    assert config_text.startswith(own_config) and config_text.count(course_init.BEGIN) == 1

    run(teacher, course, NBGRADER, "release_assignment", LESSON)
    each_student(NBGRADER, "fetch_assignment", LESSON)
    for student, (home, _) in homes.items():
        fetched = home / LESSON / f"{LESSON}.ipynb"
        text = fetched.read_text()
        assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text and TEXT_STUB in text
        answer(fetched, student)
    each_student(NBGRADER, "submit", LESSON)
    run(teacher, course, NBGRADER, "collect", LESSON)
    for student in STUDENTS:
        assert (course / "submitted" / student / LESSON / f"{LESSON}.ipynb").is_file()
    run(teacher, course, NBGRADER, "autograde", LESSON)

    # The verdicts are ours: the fake checks in Bob's kernel change nothing, and his mistake is named.
    db_url = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(db_url, COURSE_ID) as gb:
        code = {s: {g.name: g.score for g in gb.find_submission_notebook(LESSON, LESSON, s).grades
                    if g.cell_type == "code"} for s in STUDENTS}
        assert code == {"alice": {"test_project_qkv": 2, "test_qkv_attention": 4},
                        "bob": {"test_project_qkv": 2, "test_qkv_attention": 0}}
        # The manual grade and comment of Alice's written answer, as the formgrader saves them.
        grade = gb.find_grade("written_roles", LESSON, LESSON, "alice")
        grade.manual_score = 1.5
        gb.find_comment("written_roles", LESSON, LESSON, "alice").manual_comment = COMMENT
        gb.db.commit()
    graded = notebooks.cells_by_id(nbformat.read(course / "autograded" / "bob" / LESSON / f"{LESSON}.ipynb", 4))
    assert QUERY_AXIS.says in str(graded["test_qkv_attention"].outputs)

    run(teacher, course, NBGRADER, "generate_feedback", LESSON)
    run(teacher, course, NBGRADER, "release_feedback", LESSON)
    each_student(NBGRADER, "fetch_feedback", LESSON)

    pages = {}
    for student, (home, _) in homes.items():
        found = list((home / LESSON / "feedback").glob(f"*/{LESSON}.html"))
        assert len(found) == 1, f"{student} fetched {found}"
        pages[student] = found[0].read_text()
    for student, html in pages.items():
        assert "HIDDEN TESTS" not in html
        assert not re.search(r"(?<!quick_)check_(project_qkv|qkv_attention)", html), student
        for grader_path in (paths.REPO, course, tmp_path):
            assert str(grader_path) not in html, (student, grader_path)
    assert "(Score: 7.5 / 8.0)" in pages["alice"] and "Written response</a> (Score: 1.5 / 2.0)" in pages["alice"]
    assert COMMENT in pages["alice"]
    assert "(Score: 2.0 / 8.0)" in pages["bob"] and QUERY_AXIS.says in pages["bob"]


def test_init_keeps_the_instructors_configuration_and_runs_twice(tmp_path):
    """Does init keep every line of the instructor's nbgrader_config.py, their course id and exchange,
    add one block (not two when run again), and refuse to overwrite a source notebook they edited?"""
    course, own_config = instructors_course(tmp_path, tmp_path / "exchange")
    course_init.init(course, [LESSON], say=lambda _: None)
    course_init.init(course, [LESSON], say=lambda _: None)
    text = (course / "nbgrader_config.py").read_text()
    assert text.startswith(own_config) and text.count(course_init.BEGIN) == 1
    config = course_init.course_configuration(course)
    assert config.CourseDirectory.course_id == COURSE_ID and config.Exchange.root == str(tmp_path / "exchange")
    assert "db_url" not in config.CourseDirectory
    assert course_init.GradeCourseLessons in config.Autograde.autograde_preprocessors
    assert not course_init.grade_may_write_config(course)     # the instructor's file is never rewritten by grade
    assert "ClearHiddenTests" in str(config.GenerateFeedback.preprocessors)
    assert (course / "release" / LESSON / f"{LESSON}.ipynb").is_file()

    source = course / "source" / LESSON / f"{LESSON}.ipynb"
    source.write_text(source.read_text().replace("YOUR ANSWER HERE", "Your answer, please."))
    with pytest.raises(course_init.InitRefused, match="--force"):
        course_init.init(course, [LESSON], say=lambda _: None)
    assert "Your answer, please." in source.read_text()
    course_init.init(course, [LESSON], force=True, say=lambda _: None)
    assert source.read_bytes() == paths.solution_path(LESSON).read_bytes()


def test_init_of_a_new_folder_writes_the_graders_configuration(tmp_path):
    """Does a new folder get the configuration `grade` writes, with the course id and exchange init was told,
    kept when init runs again without them?"""
    course = tmp_path / "new"
    course_init.init(course, [LESSON], course_id="ml42", exchange=str(tmp_path / "ex"), say=lambda _: None)
    course_init.init(course, [LESSON], say=lambda _: None)
    text = (course / "nbgrader_config.py").read_text()
    assert "configure(get_config()" in text and text.count(course_init.BEGIN) == 1
    config = course_init.course_configuration(course)
    assert config.CourseDirectory.course_id == "ml42" and config.Exchange.root == str(tmp_path / "ex")
    assert (tmp_path / "ex").is_dir()
    assert not course_init.grade_may_write_config(course)     # grade must leave the block init added alone
    (tmp_path / "graded").mkdir()
    nbgrader_course.write_config(tmp_path / "graded")
    assert course_init.grade_may_write_config(tmp_path / "graded") and course_init.grade_may_write_config(tmp_path)


def test_the_instructors_own_assignment_is_still_graded_by_nbgrader(tmp_path):
    """In a course where init added the lessons, is an assignment of the instructor's own (plain asserts)
    still run by nbgrader's Execute, so it keeps its points?"""
    course, _ = instructors_course(tmp_path, tmp_path / "exchange")
    course_init.init(course, [LESSON], say=lambda _: None)
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    meta = {"schema_version": 3, "locked": False, "task": False}
    nb.cells = [
        nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                                  metadata={"nbgrader": {**meta, "grade_id": "double", "solution": True,
                                                         "grade": False}}),
        nbformat.v4.new_code_cell("assert double(2) == 4",
                                  metadata={"nbgrader": {**meta, "grade_id": "test_double", "solution": False,
                                                         "grade": True, "points": 1, "locked": True}}),
    ]
    (course / "source" / "ps1").mkdir(parents=True)
    nbformat.write(nb, course / "source" / "ps1" / "ps1.ipynb")
    config = course_init.course_configuration(course)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config, root=str(course)), config=config)
    assert api.generate_assignment("ps1")["success"]
    submitted = course / "submitted" / "carol" / "ps1"
    submitted.mkdir(parents=True)
    student = nbformat.read(course / "release" / "ps1" / "ps1.ipynb", 4)
    student.cells[0].source = "def double(x):\n    return x + x"
    nbformat.write(student, submitted / "ps1.ipynb")
    result = api.autograde("ps1", "carol")
    assert result["success"], result.get("log")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        assert gb.find_submission_notebook("ps1", "ps1", "carol").code_score == 1
