"""`demo`: release the lessons into the demo's own folder (never lessons/), then grade a small bundled class with nbgrader and print the table.

The class is made from the released lessons, so it always matches them:
  ada   answers every lesson correctly and answers the written questions (grade ids `written_*`),
        which the instructor grades by hand in the formgrader;
  ben   hands in every lesson untouched;
  cleo  gets one function per lesson wrong (a classic mistake) and leaves another one unanswered;
  dev   hands in a notebook whose JSON is broken, one for a lesson that does not exist, and one lesson
        under another file name (found by its cells).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from . import grade, notebooks, paths, release, submissions

# One classic mistake per lesson, as a student would type it.
MISTAKES = {
    "01_seq2seq_shortcomings": {
        "simple_rnn_step": "def simple_rnn_step(x, h_prev, A, b):\n"
                           "    # the stack in the wrong order: [h; x] instead of [x; h]\n"
                           "    return torch.tanh(torch.cat([h_prev, x], dim=-1) @ A.T + b)\n",
    },
    "02_bahdanau_attention": {
        "attention_weights": "def attention_weights(scores, mask=None):\n"
                             "    # softmax over the wrong axis: the batch instead of the source positions\n"
                             "    return torch.softmax(scores, dim=0)\n",
    },
    "03_query_key_value": {
        "qkv_attention": "def qkv_attention(Q, K, V, mask=None):\n"
                         "    scores = Q @ K.transpose(-2, -1)\n"
                         "    if mask is not None:\n"
                         "        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)\n"
                         "    weights = torch.softmax(scores, dim=1)   # over the queries, not the keys\n"
                         "    if mask is not None:\n"
                         "        weights = weights * mask\n"
                         "    return weights @ V, weights\n",
    },
    "04_time_complexity": {
        "count_rnn_steps": "def count_rnn_steps(m, t):\n    return m + t - 1   # one update too few\n",
    },
    "05_self_attention_rnn": {
        "self_attention_rnn_step": "def self_attention_rnn_step(x, c_prev, A, b):\n"
                                   "    # the stack in the wrong order: [c; x] instead of [x; c]\n"
                                   "    return torch.tanh(torch.cat([c_prev, x], dim=-1) @ A.T + b)\n",
    },
    "06_attention_without_rnn": {
        "self_attention": "def self_attention(X, W_Q, W_K, W_V, causal=False):\n"
                          "    m = X.shape[1]\n"
                          "    Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T\n"
                          "    scores = Q @ K.transpose(-2, -1) / math.sqrt(X.shape[-1])   # the width d, not d_k\n"
                          "    if causal:\n"
                          "        future = torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1)\n"
                          "        scores = scores.masked_fill(future, float('-inf'))\n"
                          "    weights = torch.softmax(scores, dim=-1)\n"
                          "    return weights @ V, weights\n",
    },
}


WRITTEN_ANSWER = ("The weights are recomputed from the current decoder state, so each output attends "
                  "to the source positions it needs; a plain Seq2Seq must squeeze all of them into h_m.")


def answered(released: Path, lesson: str, answers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The lesson as released into `released`, its answer cells filled (see submissions.answered)."""
    nb = notebooks.read(released / f"{lesson}.ipynb")
    filled = {**submissions.solution_sources(lesson), **(answers or {})}
    for cell in nb.cells:
        gid = notebooks.grade_id(cell)
        if notebooks.nbgrader_meta(cell).get("solution") and filled.get(gid):
            cell.source = filled[gid]
    return nb


def written_ids(released: Path, lesson: str) -> list[str]:
    """The grade ids of the lesson's written questions (answer cells graded by hand)."""
    nb = notebooks.read(released / f"{lesson}.ipynb")
    return [gid for cell in nb.cells if (gid := notebooks.grade_id(cell) or "").startswith("written_")]


def build_class(root: Path, released: Path = paths.LESSONS) -> Path:
    """Write the demo class's notebooks, made from the lessons in `released`, under root/<student>/<lesson>.ipynb."""
    if root.exists():
        shutil.rmtree(root)
    lessons = sorted(p.stem for p in released.glob("[0-9][0-9]_*.ipynb"))
    for lesson in lessons:
        graded = [fn for fn in submissions.solution_sources(lesson)]
        wrong = MISTAKES.get(lesson, {})
        # With two functions or fewer, one wrong answer is enough; more leave one unanswered too.
        unanswered = next((fn for fn in graded if fn not in wrong), None) if len(graded) > 2 else None
        written = {gid: WRITTEN_ANSWER for gid in written_ids(released, lesson)}
        notebooks_by_student = {
            "ada": answered(released, lesson, written),
            "ben": answered(released, lesson, {fn: "" for fn in graded}),
            "cleo": answered(released, lesson, {**wrong, **({unanswered: ""} if unanswered else {})}),
        }
        for student, nb in notebooks_by_student.items():
            (root / student).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, root / student / f"{lesson}.ipynb")
    (root / "dev").mkdir(parents=True, exist_ok=True)
    text = (released / f"{lessons[0]}.ipynb").read_text()
    (root / "dev" / f"{lessons[0]}.ipynb").write_text(text[: len(text) // 2])       # cut off mid-file
    nbformat.write(answered(released, lessons[-1]), root / "dev" / f"{lessons[-1]} (1).ipynb")
    nbformat.write(nbformat.v4.new_notebook(), root / "dev" / "lesson_seven.ipynb")      # no lesson's cells
    return root


def main(*, out: str = "demo-out", workers: int = 1) -> int:
    out_dir = Path(out).resolve()
    released = out_dir / "lessons"
    release.release(out=released, force=True)      # the demo's own copy: a student's lessons/ is untouched
    print(f"released the lessons into {released}")
    class_dir = build_class(out_dir / "class", released)
    print(f"demo class: {class_dir}")
    rows = grade.grade(class_dir, out_dir / "course", workers=workers, force=True)
    grade.print_rows(rows, out_dir / "course")
    return 0
