"""Timing experiments for lesson 04: how a decoder's running time grows with m and t, on log-log axes.

A shared machine makes wall-clock time jump whenever another process takes the CPU. So these helpers
measure the CPU time of the calling thread (`time.thread_time`) with PyTorch on one thread, repeat
calls too short to time reliably, time every size several times, interleave the sizes (a slow
moment then hits all sizes alike, not one) and keep the median.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from .guards import threads


def measure(calls: Sequence[Callable[[], object]], *, repeats: int = 5, min_time: float = 0.005,
            clock: Callable[[], float] = time.thread_time) -> list[float]:
    """The median time in seconds of each zero-argument call, over `repeats` interleaved rounds.

    Each call runs once untimed first (memory allocation, caches) and once more to see how long it
    takes; a call faster than `min_time` is then run several times in a row per measurement (and
    the time divided), so that no measurement is too short to trust. A round measures every call in
    turn. Runs without autograd, PyTorch on one thread.
    """
    with threads(1), torch.no_grad():
        numbers = []
        for call in calls:
            call()
            start = clock()
            call()
            numbers.append(max(1, math.ceil(min_time / max(clock() - start, 1e-9))))
        times: list[list[float]] = [[] for _ in calls]
        for _ in range(repeats):
            for call, number, ts in zip(calls, numbers, times):
                start = clock()
                for _ in range(number):
                    call()
                ts.append((clock() - start) / number)
    return [statistics.median(ts) for ts in times]


def sweep(make_call: Callable[[int], Callable[[], object]], sizes: Sequence[int], *, repeats: int = 5,
          clock: Callable[[], float] = time.thread_time) -> list[float]:
    """Median times of `make_call(n)()` for every n in `sizes`: inputs are built once, outside the timing."""
    return measure([make_call(n) for n in sizes], repeats=repeats, clock=clock)


def decode(hs: torch.Tensor, xs_dec: torch.Tensor, A_prime: torch.Tensor, b_prime: torch.Tensor,
           score_fn: Callable | None = None) -> torch.Tensor:
    """The decoders lesson 04 counts and times, from s_0 = h_m: t state updates, and with `score_fn`
    m new weights for every state. Not graded, and written to be timed rather than read: lessons 01
    and 02 are where you write a decoder yourself.

    Args:
        hs: (B, m, d) encoder states.  xs_dec: (B, t, d_x) decoder inputs.  b_prime: (d,).
        A_prime: (d, d_x + d) without attention; (d, d_x + 2d) with it, its last d columns for the context.
        score_fn: None for the plain decoder; else (hs (B, m, d), s (B, d)) -> (B, m) scores, called
            once per state.
    Returns:
        (B, t, d) the states s_1..s_t.
    """
    d_x = xs_dec.shape[-1]
    carried = A_prime[:, d_x:].T                                    # (d or 2d, d)
    inputs = torch.baddbmm(b_prime.expand(xs_dec.shape[0], 1, -1), xs_dec,
                           A_prime[:, :d_x].T.expand(xs_dec.shape[0], -1, -1))   # (B, t, d), every step
    s, states = hs[:, -1], []
    for x_part in inputs.unbind(1):
        z = s if score_fn is None else torch.cat(
            [s, torch.bmm(torch.softmax(score_fn(hs, s), -1).unsqueeze(1), hs).squeeze(1)], -1)
        states.append(s := torch.tanh(torch.addmm(x_part, z, carried)))
    return torch.stack(states, 1)


def random_problem(batch: int, m: int, t: int, *, d: int = 32, d_x: int = 8, seed: int = 0) -> dict:
    """Random encoder states and decoder parameters for timing (nothing is trained).

    Returns hs (batch, m, d) with s_0 = h_m; xs_dec (batch, t, d_x); A_plain (d, d_x + d) for
    s_{j+1} = tanh(A' [x'; s] + b'); A_attention (d, d_x + 2d) for tanh(A' [x'; s; c] + b'); b (d,).
    """
    g = torch.Generator().manual_seed(seed)
    return dict(
        hs=torch.tanh(torch.randn(batch, m, d, generator=g)),
        xs_dec=torch.randn(batch, t, d_x, generator=g),
        A_plain=torch.randn(d, d_x + d, generator=g) / (d_x + d) ** 0.5,
        A_attention=torch.randn(d, d_x + 2 * d, generator=g) / (d_x + 2 * d) ** 0.5,
        b=torch.zeros(d),
    )


def plot_loglog(sizes: Sequence[float], curves: dict[str, Sequence[float]], slope_fn: Callable, *,
                xlabel: str, title: str, ylabel: str = "time (ms)", scale: float = 1e3, ax=None):
    """One line per curve on log-log axes, its fitted slope (by `slope_fn(sizes, values)`) in the legend.

    Values are plotted times `scale` (seconds to milliseconds by default). Returns (ax, {label: slope}).
    """
    ax = ax or plt.subplots(figsize=(4.5, 3.5))[1]
    slopes = {}
    for (label, values), marker in zip(curves.items(), "osD^v"):
        slopes[label] = slope = slope_fn(list(sizes), list(values))
        ax.plot(sizes, [v * scale for v in values], marker=marker, label=f"{label}: slope {slope:.2f}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax, slopes
