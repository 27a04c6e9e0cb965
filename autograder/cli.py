"""`python -m autograder <verb>`: the command line only parses arguments and passes them on."""
from __future__ import annotations

import argparse
import os


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder", description="Release, check and grade the attention course.")
    verbs = p.add_subparsers(dest="verb", required=True)

    r = verbs.add_parser("release", help="regenerate lessons/ from solutions/ with nbgrader generate_assignment")
    r.add_argument("lessons", nargs="*", help="lesson names (default: all)")
    r.add_argument("--force", action="store_true", help="overwrite lessons edited since they were released")

    c = verbs.add_parser("check", help="run a notebook's checks in a fresh kernel and print the result")
    c.add_argument("notebook")
    c.add_argument("--hidden", action="store_true", help="also run the hidden checks (needs solutions/)")
    c.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")
    c.add_argument("--device", choices=["cpu", "cuda"], help="check on this device only")

    g = verbs.add_parser("grade", help="grade a class with nbgrader: SUBMISSIONS/<student>/<lesson>.ipynb")
    g.add_argument("submissions")
    g.add_argument("--out", required=True, help="course folder for the gradebook, feedback and grades.csv")
    g.add_argument("--workers", type=int, help="notebooks graded at once (default: one per CPU)")
    g.add_argument("--force", action="store_true", help="regrade what is already graded")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="print each notebook's status and log file as it is graded, and the grader's log")
    g.add_argument("--cell-timeout", type=int, metavar="SECONDS",
                   help="a cell (or one test's checks) running longer stops the notebook: status timeout")
    g.add_argument("--no-sandbox", action="store_true",
                   help="run the kernels without the sandbox (trusted submissions only; for comparison)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on a Dask cluster (e.g. tcp://host:8786) instead of local processes")
    g.add_argument("--kernel-start", choices=["fork", "fresh"],
                   help="fork: each kernel forked from a warm template (default, Linux); fresh: a new interpreter "
                        "each (local workers; on a cluster, set ATTENTION_KERNEL_START where the workers run)")

    d = verbs.add_parser("demo", help="grade the bundled demo class and print the table")
    d.add_argument("--out", default="demo-out", help="where the demo course goes (default: demo-out)")
    d.add_argument("--workers", type=int, default=os.cpu_count() or 1)

    i = verbs.add_parser("init", help="put the lessons and this grader into an nbgrader course folder (new or yours)")
    i.add_argument("course", help="the course folder; an nbgrader_config.py there is kept, the grader added as a block")
    i.add_argument("lessons", nargs="*", help="lesson names (default: all)")
    i.add_argument("--course-id", help="the nbgrader course id (default: what the folder's configuration says)")
    i.add_argument("--exchange", metavar="DIR", help="the file-system exchange (default: the configuration's)")
    i.add_argument("--force", action="store_true", help="overwrite source notebooks edited in the course folder")
    i.add_argument("--cell-timeout", type=int, default=60, metavar="SECONDS", help="a cell's time limit when grading")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    verb = args.pop("verb")
    if verb == "release":
        from . import release
        return release.main(lessons=args["lessons"] or None, force=args["force"])
    if verb == "check":
        from . import check
        return check.main(**args)
    if verb == "grade":
        start = args.pop("kernel_start")
        if start:       # read by every grading process this one starts
            os.environ["ATTENTION_KERNEL_START"] = start
        from . import grade
        return grade.main(**args)
    if verb == "init":
        from . import course_init
        return course_init.main(**args)
    from . import demo
    return demo.main(**args)
