"""The measurements behind BENCHMARKS.md: `make benchmark` (or `python benchmarks/run.py [PART ...]`).

Parts:
  kernels    the reference qkv_attention against F.scaled_dot_product_attention(scale=1.0);
  notebooks  every solution notebook top to bottom in a real kernel, full training: wall time and the
             lesson's own figures (accuracies, slopes, ...), read back from the kernel;
  seeds      lessons 01 and 02 re-run with model seeds 1 and 2 (the lessons train with seed 0);
  check      `python -m autograder check --hidden` on the solution and on the untouched lesson.
A whole class graded against plain nbgrader is `benchmarks/class_benchmark.py` (`make benchmark-class`).
Results are printed and written to benchmarks/results.json; BENCHMARKS.md quotes them.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import paths  # noqa: E402

RESULTS = REPO / "benchmarks" / "results.json"

# A lesson may leave its figures in a global FIGURES (a JSON-able dict); everything it prints is kept too.
FIGURES = "FIGURES"
SEED_LINE = "torch.manual_seed(0)"


def run_notebook(nb, cwd: Path) -> tuple[float, object, list[str]]:
    """Execute `nb`; returns (wall seconds including kernel start, its FIGURES, the lines it printed)."""
    nb.cells.append(nbformat.v4.new_code_cell(
        f"import json as _json\nprint('FIGURES=' + _json.dumps(globals().get('{FIGURES}')))"))
    env_before = dict(os.environ)
    os.environ.pop("NBGRADER_EXECUTION", None)
    os.environ.pop("LESSONKIT_QUICK", None)
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    figures = None
    for out in nb.cells[-1].outputs:
        if out.get("name") == "stdout" and "FIGURES=" in out.text:
            figures = json.loads(out.text.split("FIGURES=", 1)[1])
    printed = [line for c in nb.cells[:-1] if c.cell_type == "code" for o in c.outputs
               if o.get("name") == "stdout" for line in o.text.splitlines()
               if line.strip() and "it/s]" not in line and "s/it]" not in line]
    return seconds, figures, printed


def bench_notebooks() -> dict:
    results = {}
    for lesson in paths.lesson_names():
        with tempfile.TemporaryDirectory() as tmp:
            seconds, figures, printed = run_notebook(nbformat.read(paths.solution_path(lesson), as_version=4), Path(tmp))
        results[lesson] = {"seconds": round(seconds, 1), "figures": figures, "printed": printed}
        print(f"{lesson}: {seconds:.1f} s", *printed, sep="\n  ", flush=True)
    return results


def bench_seeds(seeds=(1, 2)) -> dict:
    results = {}
    for lesson in ("01_seq2seq_shortcomings", "02_bahdanau_attention"):
        if lesson not in paths.lesson_names():
            continue
        for seed in seeds:
            nb = nbformat.read(paths.solution_path(lesson), as_version=4)
            edited = [c for c in nb.cells if c.cell_type == "code" and SEED_LINE in c.source and "train" in c.source]
            for cell in edited:
                cell.source = cell.source.replace(SEED_LINE, f"torch.manual_seed({seed})")
            with tempfile.TemporaryDirectory() as tmp:
                seconds, figures, printed = run_notebook(nb, Path(tmp))
            results[f"{lesson}/seed{seed}"] = {"seconds": round(seconds, 1), "figures": figures, "printed": printed}
            print(f"{lesson} seed {seed}: {seconds:.1f} s", *printed, sep="\n  ", flush=True)
    return results


def _timed(cmd: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


def bench_check(repeats: int = 5) -> dict:
    results = {}
    py = sys.executable
    for label, path in [("solution --hidden", paths.solution_path("02_bahdanau_attention")),
                        ("untouched lesson --hidden", paths.lesson_path("02_bahdanau_attention"))]:
        times = _timed([py, "-m", "autograder", "check", str(path), "--hidden", "--json"], repeats)
        results[label] = {"median_s": round(statistics.median(times), 2), "runs": [round(t, 2) for t in times]}
        print(f"check {label}: median {statistics.median(times):.2f} s of {repeats}", flush=True)
    floor = _timed([py, "-c", "import torch"], repeats)
    results["python -c 'import torch'"] = {"median_s": round(statistics.median(floor), 2)}
    return results


def bench_kernels(repeats: int = 100) -> dict:
    """The reference qkv_attention against PyTorch's fused SDPA (scale=1.0): batch 32, t = m = 256, d 64."""
    import torch
    import torch.nn.functional as F

    from autograder import reference

    qkv = reference.load("03_query_key_value").qkv_attention
    g = torch.Generator().manual_seed(0)
    Q, K, V = (torch.randn(32, 256, 64, generator=g) for _ in range(3))
    mask = torch.rand(32, 1, 256, generator=g) > 0.1

    def median_ms(*fns):
        """Median time of each function, the calls interleaved so that drift in the machine hits both alike."""
        times = [[] for _ in fns]
        for fn in fns:
            fn()                                                    # warm-up
        for _ in range(repeats):
            for fn, ts in zip(fns, times):
                start = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - start)
        return [round(1000 * statistics.median(ts), 2) for ts in times]

    results = {}
    for label, m in [("no mask", None), ("padding mask (32, 1, 256)", mask)]:
        ours, sdpa = median_ms(lambda: qkv(Q, K, V, m),
                               lambda: F.scaled_dot_product_attention(Q, K, V, attn_mask=m, scale=1.0))
        results[label] = {"qkv_attention_ms": ours, "sdpa_ms": sdpa, "ratio": round(ours / sdpa, 2)}
        print(f"qkv_attention vs SDPA, {label}: {ours} ms vs {sdpa} ms (x{ours / sdpa:.2f})", flush=True)
    results["threads"] = torch.get_num_threads()
    return results


def bench_limits(repeats: int = 7) -> dict:
    """What the sandbox's newer walls cost per notebook: a sandboxed kernel started until torch is imported
    and the bridge installed, then killed (its cgroup and tmpfs removed), with the walls and without
    (cgroup and tmpfs switched off in this process), the two interleaved; median of `repeats` each."""
    from unittest import mock

    from autograder import kernel, sandbox
    if sandbox.unavailable():
        print(f"limits: skipped ({sandbox.unavailable()})", flush=True)
        return {"skipped": sandbox.unavailable()}

    def one() -> float:
        start = time.perf_counter()
        kernel.Kernel(sandboxed=True).ready().kill()
        return time.perf_counter() - start

    def bare() -> float:
        with mock.patch.object(sandbox.Cgroup, "create", return_value=None), \
                mock.patch.object(sandbox, "mount_workdir", return_value=False):
            return one()

    one(), bare()                                           # warm the page cache for both
    walls, without = [], []
    for _ in range(repeats):
        walls.append(one())
        without.append(bare())
    result = {"with_walls_s": round(statistics.median(walls), 3), "without_s": round(statistics.median(without), 3),
              "cost_s": round(statistics.median(walls) - statistics.median(without), 3), "repeats": repeats,
              "cgroup": sandbox.Cgroup.why_not or "used"}
    print(f"limits: kernel start+kill {result['with_walls_s']} s with the cgroup and tmpfs, "
          f"{result['without_s']} s without (median of {repeats})", flush=True)
    return result


PARTS = {"limits": bench_limits, "kernels": bench_kernels, "notebooks": bench_notebooks, "seeds": bench_seeds, "check": bench_check}


def main(argv: list[str]) -> int:
    parts = argv or list(PARTS)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    for part in parts:
        results[part] = PARTS[part]()
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
