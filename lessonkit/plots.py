"""The lessons' plots: accuracy against length, and attention weights as a heatmap."""
from __future__ import annotations

import matplotlib.pyplot as plt


def plot_accuracy(curves: dict[str, dict[int, float]], *, title: str = "Token accuracy against length",
                  trained=(5, 30), ax=None):
    """One line per model: accuracy (y) against sequence length (x); the trained range shaded."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    ax.axvspan(*trained, color="0.93", label="lengths seen in training")
    for label, curve in curves.items():
        ax.plot(list(curve), list(curve.values()), marker="o", label=label)
    ax.set(xlabel="sequence length m", ylabel="token accuracy", ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return ax


def plot_attention(weights, source: list[str], target: list[str], *, title: str = "Attention weights", ax=None):
    """Heatmap of weights (t, m): row j is the distribution over source positions that built c_j."""
    ax = ax or plt.subplots(figsize=(0.3 * len(source) + 2, 0.3 * len(target) + 1.5))[1]
    im = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(source)), source)
    ax.set_yticks(range(len(target)), target)
    ax.set(xlabel="source position i", ylabel="decoder step j", title=title)
    ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return ax
