"""`demo`: release the lessons, then grade a small bundled class with nbgrader and print the table.

The class is made from the released lessons, so it always matches them:
  ada   answers every lesson correctly;
  ben   hands in every lesson untouched;
  cleo  gets one function per lesson wrong (a classic mistake) and leaves another one unanswered;
  dev   hands in a notebook whose JSON is broken, one for a lesson that does not exist, and one lesson
        under another file name (found by its cells).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from . import grade, paths, release, submissions

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


def build_class(root: Path) -> Path:
    """Write the demo class's notebooks under root/<student>/<lesson>.ipynb; returns root."""
    if root.exists():
        shutil.rmtree(root)
    lessons = paths.lesson_names()
    for lesson in lessons:
        graded = [fn for fn in submissions.solution_sources(lesson)]
        wrong = MISTAKES.get(lesson, {})
        # With two functions or fewer, one wrong answer is enough; more leave one unanswered too.
        unanswered = next((fn for fn in graded if fn not in wrong), None) if len(graded) > 2 else None
        notebooks_by_student = {
            "ada": submissions.answered(lesson),
            "ben": submissions.answered(lesson, {fn: "" for fn in graded}),
            "cleo": submissions.answered(lesson, {**wrong, **({unanswered: ""} if unanswered else {})}),
        }
        for student, nb in notebooks_by_student.items():
            (root / student).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, root / student / f"{lesson}.ipynb")
    (root / "dev").mkdir(parents=True, exist_ok=True)
    text = paths.lesson_path(lessons[0]).read_text()
    (root / "dev" / f"{lessons[0]}.ipynb").write_text(text[: len(text) // 2])       # cut off mid-file
    nbformat.write(submissions.answered(lessons[-1]), root / "dev" / f"{lessons[-1]} (1).ipynb")
    nbformat.write(nbformat.v4.new_notebook(), root / "dev" / "lesson_seven.ipynb")      # no lesson's cells
    return root


def main(*, out: str = "demo-out", workers: int = 1) -> int:
    out_dir = Path(out).resolve()
    release.main()
    class_dir = build_class(out_dir / "class")
    print(f"demo class: {class_dir}")
    rows = grade.grade(class_dir, out_dir / "course", workers=workers, force=True)
    grade.print_rows(rows, out_dir / "course")
    return 0
