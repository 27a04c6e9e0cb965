"""A whole class graded two ways: `make benchmark-class` (or `python benchmarks/class_benchmark.py [--students N]
[--runs R] [--workers W] [--fresh] [--unsandboxed] [--results PATH]`).

The class: N students (default 100) by the 6 lessons, SUBMISSIONS/<student>/<lesson>.ipynb, drawn with
random.Random(0) notebook by notebook: about 55% all correct; 25% one or two functions wrong (answers from
the mistakes catalog, tests/mistakes/); 10% untouched; 5% correct but renamed ("<lesson> (1).ipynb");
5% broken (the file cut in half, invalid JSON).

Measured, for each side, median of R runs (default 3), the two sides alternating in the same run:
  (a) plain nbgrader from a fresh course folder with nbgrader's default configuration: `nbgrader
      generate_assignment`, the files copied into submitted/<student>/<lesson>/ under their own names,
      one `nbgrader autograde LESSON --force` and one `nbgrader generate_feedback LESSON --force` per lesson;
  (b) `python -m autograder grade SUBMISSIONS --out OUT --workers W --force` (W: the number of cores),
      kernels sandboxed (as root on Linux) and forked from a warm template in each worker;
  (c) with --fresh: the same with `--kernel-start fresh` (a new interpreter per kernel);
  (d) with --unsandboxed: the same as (b) with `--no-sandbox`: the cost of the sandbox;
  wall seconds, seconds per notebook and notebooks per minute (over every notebook file of the class), CPU
  seconds per notebook (every process the side started, kernels included), and the peak memory of the
  process tree under this script, sampled every 0.25 s: PSS (each shared page counted once; the forked
  kernels share their template's) and RSS.
Also two floors for one notebook: start a kernel, `import torch`, shut it down (median of 5); and one kernel
forked from a warm template that runs an empty cell (median of 5, wall and CPU); and whether (b)'s
grades.csv has one row per submitted file.
Results are printed as a markdown table and written to benchmarks/results.json under "class" (or --key).
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import paths, submissions  # noqa: E402
from tests.mistakes import catalog  # noqa: E402

RESULTS = REPO / "benchmarks" / "results.json"
BIN = Path(sys.executable).parent
COURSE_ID = "attention"
# The mix of notebooks, in order: kind and share.
MIX = [("correct", 0.55), ("partial", 0.25), ("untouched", 0.10), ("renamed", 0.05), ("broken", 0.05)]
SAMPLE_EVERY_S = 0.25


# --- the class ------------------------------------------------------------------------------------------

def _kind(rng: random.Random) -> str:
    r, total = rng.random(), 0.0
    for kind, share in MIX:
        total += share
        if r < total:
            return kind
    return MIX[-1][0]


def build_class(root: Path, students: int, seed: int = 0) -> list[dict]:
    """Write the class under root/<student>/<file>.ipynb; returns one record per file (student, lesson, file, kind)."""
    rng = random.Random(seed)
    wrong = collections.defaultdict(list)                     # (lesson, function) -> wrong answers
    for answer in catalog.wrong():
        wrong[answer.lesson, answer.function].append(answer)
    lessons = paths.lesson_names()
    graded = {lesson: list(submissions.solution_sources(lesson)) for lesson in lessons}
    manifest = []
    for i in range(students):
        student = f"student{i:03d}"
        (root / student).mkdir(parents=True, exist_ok=True)
        for lesson in lessons:
            kind = _kind(rng)
            name = f"{lesson} (1).ipynb" if kind == "renamed" else f"{lesson}.ipynb"
            answers = {}
            if kind == "partial":
                functions = [fn for fn in graded[lesson] if wrong[lesson, fn]]
                for fn in rng.sample(functions, min(len(functions), rng.choice([1, 2]))):
                    answers[fn] = rng.choice(wrong[lesson, fn]).source
            elif kind == "untouched":
                answers = {fn: "" for fn in graded[lesson]}
            text = nbformat.writes(submissions.answered(lesson, answers))
            (root / student / name).write_text(text[: len(text) // 2] if kind == "broken" else text)
            manifest.append({"student": student, "lesson": lesson, "file": name, "kind": kind})
    return manifest


# --- memory of a process tree ---------------------------------------------------------------------------

def _children_map() -> dict[int, list[int]]:
    children = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()    # the name, in parentheses, may hold spaces
        except (OSError, IndexError):
            continue                                                # gone meanwhile
        children[int(fields[1])].append(int(stat.parent.name))
    return children


def descendants(pid: int) -> list[int]:
    children, found, todo = _children_map(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0                                                    # gone, or a zombie


def pss_kib(pid: int) -> int:
    """Proportional set size: each shared page counted once over the processes that share it (forked
    kernels share the template's pages, which RSS counts once per process)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    """Total RSS of every descendant of `pid` (not `pid` itself), in KiB."""
    return sum(rss_kib(p) for p in descendants(pid))


class PeakRSS:
    """Samples the total RSS and PSS of this process's descendants in a thread while in the `with` block;
    .peak_mib and .peak_pss_mib after it."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S):
        self.every_s, self.peak_kib, self.peak_pss_kib = every_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            tree = descendants(os.getpid())
            self.peak_kib = max(self.peak_kib, sum(rss_kib(p) for p in tree))
            self.peak_pss_kib = max(self.peak_pss_kib, sum(pss_kib(p) for p in tree))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def peak_pss_mib(self) -> float:
        return self.peak_pss_kib / 1024


# --- the two sides --------------------------------------------------------------------------------------

def _env() -> dict:
    """nbgrader runs the `alembic` of its environment: the venv's bin first on PATH, as `make` would not set it."""
    env = dict(os.environ)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    return env


def _run(cmd: list[str], cwd: Path, log: Path) -> int:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, cwd=cwd, env=_env(), stdout=f, stderr=subprocess.STDOUT, check=False).returncode


def plain_course(course: Path) -> None:
    """A fresh nbgrader course folder: the default configuration, a db in the root, the exchange inside."""
    shutil.rmtree(course, ignore_errors=True)
    (course / "exchange").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.CourseDirectory.db_url = {'sqlite:///' + str(course / 'gradebook.db')!r}\n"
        f"c.Exchange.root = {str(course / 'exchange')!r}\n")


def grade_plain(class_dir: Path, manifest: list[dict], course: Path, log: Path) -> dict:
    """(a): generate_assignment, the files copied in, then autograde and generate_feedback once per lesson."""
    plain_course(course)
    nbgrader, lessons = str(BIN / "nbgrader"), paths.lesson_names()
    rcs = {}
    start = time.perf_counter()
    for lesson in lessons:
        dest = course / "source" / lesson / f"{lesson}.ipynb"
        dest.parent.mkdir(parents=True)
        shutil.copy(paths.solution_path(lesson), dest)
        rcs[f"generate_assignment {lesson}"] = _run([nbgrader, "generate_assignment", lesson, "--force"], course, log)
    for rec in manifest:                                        # under their own names: nbgrader finds what it finds
        dest = course / "submitted" / rec["student"] / rec["lesson"] / rec["file"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(class_dir / rec["student"] / rec["file"], dest)
    setup_s = time.perf_counter() - start
    for lesson in lessons:
        rcs[f"autograde {lesson}"] = _run([nbgrader, "autograde", lesson, "--force"], course, log)
    for lesson in lessons:
        rcs[f"generate_feedback {lesson}"] = _run([nbgrader, "generate_feedback", lesson, "--force"], course, log)
    return {"wall_s": time.perf_counter() - start, "setup_s": setup_s,
            "autograded": len(list(course.glob("autograded/*/*/*.ipynb"))),
            "feedback": len(list(course.glob("feedback/*/*/*.html"))),
            "failed_commands": sorted(k for k, rc in rcs.items() if rc != 0)}


def grade_ours(class_dir: Path, out: Path, workers: int, log: Path, *extra: str) -> dict:
    """(b), or (c) with extra=("--kernel-start", "fresh"), or (d) with extra=("--no-sandbox",)."""
    return _grade_ours(class_dir, out, workers, log, *extra)


def _grade_ours(class_dir: Path, out: Path, workers: int, log: Path, *extra: str) -> dict:
    """`python -m autograder grade` on the class."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "autograder", "grade", str(class_dir), "--out", str(out),
           "--workers", str(workers), "--force", *extra]
    start = time.perf_counter()
    rc = _run(cmd, REPO, log)
    wall = time.perf_counter() - start
    rows = list(csv.DictReader(open(out / "grades.csv"))) if (out / "grades.csv").is_file() else []
    return {"wall_s": wall, "rc": rc, "rows": len(rows),
            "statuses": dict(collections.Counter(r["status"] for r in rows)),
            "autograded": len(list(out.glob("autograded/*/*/*.ipynb"))),
            "feedback": len(list(out.glob("feedback/*/*/*.html")))}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(fn, *args) -> dict:
    """`fn(*args)`'s result with the peak memory of the process tree and the CPU seconds it used (every process
    it started is waited for by its parent, kernels included, so their CPU time reaches this process)."""
    cpu = _children_cpu_s()
    with PeakRSS() as peak:
        result = fn(*args)
    return {**result, "peak_rss_mib": peak.peak_mib, "peak_pss_mib": peak.peak_pss_mib, "cpu_s": _children_cpu_s() - cpu}


# --- the floor ------------------------------------------------------------------------------------------

def kernel_floor(repeats: int = 5) -> list[float]:
    """Seconds to start a kernel, run `import torch` in it and shut it down."""
    from jupyter_client.manager import start_new_kernel

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3", stderr=subprocess.DEVNULL)   # its TCP warning
        try:
            reply = kc.execute_interactive("import torch", timeout=120)
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=False)
        times.append(time.perf_counter() - start)
    return times


_FORK_FLOOR = r"""
import json, statistics, sys, time
from autograder import kernel, sandbox
sandboxed = not sandbox.unavailable()
assert kernel.warm_up(), kernel._templates.why_not


def tree_cpu(k):
    # the kernel's processes (its cgroup's, sandboxed: the reaper and the kernel), their waited children included
    pids = [k.proc.pid]
    if k.cgroup is not None:
        pids = [int(p) for p in (k.cgroup.paths["pids"] / "cgroup.procs").read_text().split()]
    ticks = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


import os
walls, cpus = [], []
for _ in range(int(sys.argv[1])):
    wall, cpu = time.perf_counter(), time.process_time()
    k = kernel.Kernel(sandboxed=sandboxed, start="fork").ready()
    k.run_cell("", deadline=time.monotonic() + 60)
    kernel_cpu = tree_cpu(k)
    k.kill()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu + kernel_cpu)
print(json.dumps({"wall_s": walls, "cpu_s": cpus, "sandboxed": sandboxed}))
"""


def fork_floor(repeats: int = 5) -> dict:
    """The new floor: one kernel forked from a warm template (sandboxed where available) that runs an empty cell,
    then is killed; wall seconds and CPU seconds (the grader's side and the kernel's processes)."""
    done = subprocess.run([sys.executable, "-c", _FORK_FLOOR, str(repeats)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the report -----------------------------------------------------------------------------------------

def machine() -> dict:
    import torch
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__}


def summarize(runs: list[dict], notebooks: int) -> dict:
    wall = statistics.median(r["wall_s"] for r in runs)
    setup = {"setup_s": round(statistics.median(r["setup_s"] for r in runs), 1)} if "setup_s" in runs[0] else {}
    return {**setup, "median_s": round(wall, 1), "per_notebook_s": round(wall / notebooks, 2),
            "notebooks_per_min": round(60 * notebooks / wall, 1),
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs)),
            "peak_pss_mib": round(max(r["peak_pss_mib"] for r in runs)),
            "cpu_per_notebook_s": round(statistics.median(r["cpu_s"] for r in runs) / notebooks, 2),
            "runs": [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()} for r in runs]}


def table(s: dict) -> str:
    a, b = s["plain_nbgrader"], s["ours"]
    sides = [("(a) plain nbgrader: autograde + generate_feedback per lesson", a),
             (f"(b) `autograder grade --workers {s['workers']}` (kernels forked from warm templates)", b),
             ("(c) the same, `--kernel-start fresh` (a new interpreter per kernel)", s.get("ours_fresh")),
             ("(d) the same as (b), `--no-sandbox`", s.get("ours_unsandboxed"))]
    lines = ["| | median wall time | per notebook | notebooks/min | CPU per notebook | peak PSS | peak RSS |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, x in sides:
        if x:
            lines.append(f"| {name} | {x['median_s']} s | {x['per_notebook_s']} s | {x['notebooks_per_min']} | "
                         f"{x['cpu_per_notebook_s']} s | {x['peak_pss_mib']} MiB | {x['peak_rss_mib']} MiB |")
    f = s["fork_floor"]
    lines += [f"| throughput (b)/(a) | {s['ratio_throughput_ours_over_plain']} | | | | "
              f"PSS (b)/(a): {s['ratio_pss_ours_over_plain']} | RSS (b)/(a): {s['ratio_rss_ours_over_plain']} |",
              f"| floor: one forked kernel runs an empty cell | {f['median_wall_s']} s | | | {f['median_cpu_s']} s "
              f"(b)'s CPU per notebook / floor: {s['ours_cpu_over_fork_floor']} | | |"]
    m = s["machine"]
    lines.append(f"\n(a)'s wall time includes {a['setup_s']} s of `nbgrader generate_assignment` (one call per lesson) "
                 "and copying the files in; (b)'s includes the same steps, done inside `grade`. CPU: user + system "
                 "seconds of every process the side started (kernels included). PSS counts each shared page once.")
    lines.append(f"{s['students']} students, {s['notebooks']} notebook files {s['mix']}, median of {s['repeats']} "
                 f"run(s). Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--results", type=Path, default=RESULTS, help="JSON file to merge the results into")
    p.add_argument("--key", default="class", help="the key of results.json to write (default: class)")
    p.add_argument("--unsandboxed", action="store_true", help="also (d), the run without the sandbox")
    p.add_argument("--fresh", action="store_true", help="also (c), kernels started fresh instead of forked")
    args = p.parse_args(argv)

    runs = {"plain_nbgrader": [], "ours": [], "ours_fresh": [], "ours_unsandboxed": []}
    with tempfile.TemporaryDirectory(prefix="class-benchmark-") as tmp:
        tmp = Path(tmp)
        class_dir = tmp / "SUBMISSIONS"
        manifest = build_class(class_dir, args.students)
        notebooks = len(list(class_dir.glob("*/*.ipynb")))
        mix = dict(collections.Counter(r["kind"] for r in manifest))
        print(f"class: {args.students} students, {notebooks} notebooks {mix}", flush=True)
        for i in range(args.runs):
            a = measured(grade_plain, class_dir, manifest, tmp / "plain", tmp / f"plain-{i}.log")
            runs["plain_nbgrader"].append(a)
            print(f"run {i + 1}: (a) plain nbgrader {a['wall_s']:.1f} s, peak {a['peak_rss_mib']:.0f} MiB, "
                  f"{a['autograded']} autograded, {a['feedback']} feedback, failed: {a['failed_commands']}", flush=True)
            b = measured(grade_ours, class_dir, tmp / "ours", args.workers, tmp / f"ours-{i}.log")
            runs["ours"].append(b)
            b["csv_one_row_per_file"] = b["rows"] == notebooks
            print(f"run {i + 1}: (b) autograder grade {b['wall_s']:.1f} s, peak {b['peak_rss_mib']:.0f} MiB, rc {b['rc']}, "
                  f"grades.csv {b['rows']} rows for {notebooks} files "
                  f"({'one per file' if b['csv_one_row_per_file'] else 'MISMATCH'}), {b['statuses']}", flush=True)
            if b["rc"] != 0:
                print((tmp / f"ours-{i}.log").read_text()[-3000:], flush=True)
            for wanted, key, extra in ((args.fresh, "ours_fresh", ("--kernel-start", "fresh")),
                                       (args.unsandboxed, "ours_unsandboxed", ("--no-sandbox",))):
                if wanted:
                    c = measured(grade_ours, class_dir, tmp / key, args.workers, tmp / f"{key}-{i}.log", *extra)
                    runs[key].append(c)
                    print(f"run {i + 1}: {key} {' '.join(extra)}: {c['wall_s']:.1f} s, peak PSS "
                          f"{c['peak_pss_mib']:.0f} MiB, rc {c['rc']}, {c['statuses']}", flush=True)
        floor = kernel_floor()
        print(f"floor (kernel + import torch + shutdown): {', '.join(f'{t:.2f}' for t in floor)} s", flush=True)
        fork = fork_floor()
        print(f"floor (forked kernel + empty cell): wall {fork['wall_s']}, CPU {fork['cpu_s']}", flush=True)

    summary = {"students": args.students, "notebooks": notebooks, "mix": mix, "repeats": args.runs,
               "workers": args.workers,
               "plain_nbgrader": summarize(runs["plain_nbgrader"], notebooks), "ours": summarize(runs["ours"], notebooks),
               "ours_fresh": summarize(runs["ours_fresh"], notebooks) if runs["ours_fresh"] else None,
               "ours_unsandboxed": summarize(runs["ours_unsandboxed"], notebooks) if runs["ours_unsandboxed"] else None,
               "floor": {"median_s": round(statistics.median(floor), 2), "runs": [round(t, 2) for t in floor]},
               "fork_floor": {"median_wall_s": round(statistics.median(fork["wall_s"]), 2),
                              "median_cpu_s": round(statistics.median(fork["cpu_s"]), 2),
                              "sandboxed": fork["sandboxed"]},
               "csv_one_row_per_file": all(r["csv_one_row_per_file"] for r in runs["ours"]),
               "machine": machine()}
    summary["ratio_wall_ours_over_plain"] = round(summary["ours"]["median_s"] / summary["plain_nbgrader"]["median_s"], 2)
    summary["ratio_throughput_ours_over_plain"] = round(
        summary["plain_nbgrader"]["median_s"] / summary["ours"]["median_s"], 2)
    if summary["ours_unsandboxed"]:
        summary["sandbox_cost_per_notebook_s"] = round(
            summary["ours"]["per_notebook_s"] - summary["ours_unsandboxed"]["per_notebook_s"], 2)
    summary["ratio_pss_ours_over_plain"] = round(summary["ours"]["peak_pss_mib"] / summary["plain_nbgrader"]["peak_pss_mib"], 2)
    summary["ratio_rss_ours_over_plain"] = round(summary["ours"]["peak_rss_mib"] / summary["plain_nbgrader"]["peak_rss_mib"], 2)
    summary["ours_cpu_over_fork_floor"] = round(
        summary["ours"]["cpu_per_notebook_s"] / max(summary["fork_floor"]["median_cpu_s"], 0.01), 2)
    summary["ours_per_notebook_over_floor"] = round(
        statistics.median(r["wall_s"] for r in runs["ours"]) / notebooks / statistics.median(floor), 2)

    print(table(summary))
    print(f"grades.csv has one row per submitted file: {'yes' if summary['csv_one_row_per_file'] else 'NO'}")
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results[args.key] = summary
    args.results.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"written: {args.results} (key {args.key!r})")
    return 0 if summary["csv_one_row_per_file"] and all(r["rc"] == 0 for r in runs["ours"]) else 1


if __name__ == "__main__":
    sys.exit(main())
