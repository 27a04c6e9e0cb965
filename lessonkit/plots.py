"""The lessons' plots: accuracy against length, and attention weights as a heatmap."""
from __future__ import annotations

import matplotlib.pyplot as plt

TEACHER_FORCED = "teacher-forced"
FREE_RUNNING = "free-running"


def plot_accuracy(curves: dict[str, dict[int, float]], *, title: str = "Token accuracy against length",
                  trained=(5, 30), free_running: dict[str, dict[int, float]] | None = None, ax=None):
    """Accuracy (y) against sequence length (x), one colour per model; the trained range shaded.

    `curves` are the teacher-forced accuracies (solid lines). `free_running`, with the same model names
    as keys, adds each model's free-running (greedy) accuracy as a dashed line of the same colour; the
    legend then says which line is which.
    """
    ax = ax or plt.subplots(figsize=(6.5, 3.8))[1]
    ax.axvspan(*trained, color="0.93", label="lengths seen in training")
    for label, curve in curves.items():
        tf_label = f"{label}, {TEACHER_FORCED}" if free_running else label
        (line,) = ax.plot(list(curve), list(curve.values()), marker="o", label=tf_label)
        if free_running and label in free_running:
            fr = free_running[label]
            ax.plot(list(fr), list(fr.values()), marker="s", linestyle="--", color=line.get_color(),
                    markerfacecolor="white", label=f"{label}, {FREE_RUNNING} (greedy)")
    ax.set(xlabel="sequence length m", ylabel="token accuracy", ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_attention(weights, source: list[str], target: list[str], *, title: str = "Attention weights",
                   xlabel: str = "source letter $x_i$ (i = 1..m)",
                   ylabel: str = "letter written (row j builds $c_j$)", ax=None):
    """Heatmap of weights (t, m): row j is query j's distribution over the attended positions i.

    The ticks name what stands at each position (letters, words); the labels say which index runs
    along each axis.
    """
    ax = ax or plt.subplots(figsize=(0.3 * len(source) + 2, 0.3 * len(target) + 1.5))[1]
    im = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(source)), source)
    ax.set_yticks(range(len(target)), target)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return ax
