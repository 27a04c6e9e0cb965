"""Timing a layer's forward and backward pass, to compare all-positions-at-once with one-after-another.

Lesson 06 times its `self_attention` against a SimpleRNN with self-attention (lesson 05's layer),
whose state h_j needs c_{j-1} and so cannot start before step j-1 is done.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import matplotlib.pyplot as plt
import torch

from .guards import threads


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], *, repeats: int = 5, min_time: float = 0.2, max_repeats: int = 200,
                warmup: int = 1, device="cpu") -> float:
    """Median wall-clock seconds of `fn()`, after `warmup` untimed runs.

    It runs `fn` at least `repeats` times, and more (up to `max_repeats`) until `min_time` seconds have
    passed: a fast function gets many runs, so that a few slowed down by other programs do not move
    the median.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(layer: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], None]:
    """A closure that runs `layer(*inputs)`, sums its output and backpropagates: one training step's work."""
    leaves = [x.detach().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else x
              for x in inputs]

    def step():
        for x in leaves:
            if isinstance(x, torch.Tensor):
                x.grad = None
        out = layer(*leaves)
        out.sum().backward()
    return step


def time_layers(layers: dict[str, Callable[[int], Callable[[], None]]], sizes, *, repeats: int = 5,
                min_time: float = 0.2, max_repeats: int = 200, n_threads: int | None = 1,
                device="cpu", clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """For each size m and each layer, the median seconds of `layers[name](m)()`.

    `layers[name](m)` builds the inputs of length m and returns the closure to time (see
    `forward_backward`). The layers take turns, one run each per round, so a burst of load from other
    programs slows them alike; each runs at least `repeats` times and until it has run `min_time`
    seconds (at most `max_repeats` times). With `n_threads=1` both layers get one CPU core: the
    comparison then measures the algorithm, not how many cores happen to be free.

    `clock` is wall-clock time by default. On a CPU shared with other busy programs,
    `clock=time.process_time` (CPU time: only the time this process ran) with `n_threads=1` measures
    the work done without the waits for the other programs.
    """
    out: dict[str, list[float]] = {name: [] for name in layers}
    with threads(n_threads):
        for m in sizes:
            steps = {name: make(m) for name, make in layers.items()}
            for step in steps.values():        # warm-up, untimed
                step()
            times: dict[str, list[float]] = {name: [] for name in steps}

            def more(ts):
                return len(ts) < repeats or (sum(ts) < min_time and len(ts) < max_repeats)

            while any(more(ts) for ts in times.values()):
                for name, step in steps.items():
                    if more(times[name]):
                        _sync(device)
                        start = clock()
                        step()
                        _sync(device)
                        times[name].append(clock() - start)
            for name, ts in times.items():
                out[name].append(statistics.median(ts))
    return out


def rnn_self_attention(X: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Lesson 05's SimpleRNN + self-attention with the dot-product score, one position after another,
    for lesson 06 to time (written to be timed rather than read: lesson 05 is where you write it).

    h_j = tanh(A [x_j; c_{j-1}] + b) from c_0 = 0; c_j = sum_{i <= j} alpha_ij h_i with the weights
    alpha_{:j} = softmax over i <= j of h_i . h_j.

    Args:
        X: (B, m, d) inputs.  A: (d_h, d + d_h).  b: (d_h,).
    Returns:
        (B, m, d_h) the states h_1..h_m.
    """
    d = X.shape[-1]
    inputs = X @ A[:, :d].T + b                                     # (B, m, d_h): every x_j's share at once
    c, hs = X.new_zeros(X.shape[0], A.shape[0]), []
    for x_part in inputs.unbind(1):
        hs.append(torch.tanh(x_part + c @ A[:, d:].T))              # h_j, which had to wait for c_{j-1}
        H = torch.stack(hs, 1)                                      # (B, j, d_h)
        c = torch.bmm(torch.softmax(torch.bmm(H, hs[-1].unsqueeze(-1)), 1).transpose(1, 2), H).squeeze(1)
    return torch.stack(hs, 1)


def plot_times(sizes, times: dict[str, list[float]], *, title: str = "Forward + backward time against length",
               ylabel: str = "milliseconds (median)", ax=None):
    """One line per layer: seconds (y) against sequence length m (x), both on log axes."""
    ax = ax or plt.subplots(figsize=(6, 3.8))[1]
    for label, ts in times.items():
        ax.plot(sizes, [1e3 * t for t in ts], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="sequence length m", ylabel=ylabel, title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.2), fontsize=8, frameon=False)   # below: hides no curve
    ax.grid(alpha=0.3, which="both")
    return ax
