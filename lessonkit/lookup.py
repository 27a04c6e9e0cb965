"""The lookup task of lesson 03: "at which position of the source is this letter?"

A source is a string of distinct letters, padded to a fixed length. Each query names one of its
letters; the answer is that letter's position. Attention solves it as a dictionary lookup: the key of
a position should carry its letter (what is matched), its value the position (what is returned), so
the same encoder state gives two different things through W_K and W_V.
"""
from __future__ import annotations

import torch
from torch import nn

from .guards import threads

LETTERS = "abcdefghijkl"
N_LETTERS = len(LETTERS)
PAD = N_LETTERS                    # the padding token, after the letters
M = 8                              # source length after padding
T = 5                              # queries per source
D_H = N_LETTERS + 1 + M            # encoder state: one-hot letter (PAD included), then one-hot position


def batch(batch_size: int, generator: torch.Generator | None = None, *, lengths=(3, M)):
    """A batch of lookups.

    Returns:
        src (B, M) letters, PAD after each source's length; mask (B, M) bool, True on real letters;
        queries (B, T) letters, each present in its source; target (B, T) their positions.
    """
    lo, hi = lengths
    length = torch.randint(lo, hi + 1, (batch_size,), generator=generator)                   # (B,)
    letters = torch.rand(batch_size, N_LETTERS, generator=generator).argsort(-1)[:, :M]     # distinct letters
    mask = torch.arange(M) < length[:, None]                                                # (B, M)
    src = letters.masked_fill(~mask, PAD)
    target = (torch.rand(batch_size, T, generator=generator) * length[:, None]).long()     # (B, T) positions
    queries = src.gather(1, target)
    return src, mask, queries, target


def encoder_states(src: torch.Tensor) -> torch.Tensor:
    """h_i = [one-hot(letter_i); one-hot(i)]: (B, M) -> (B, M, D_H). What each position holds, and where."""
    B, m = src.shape
    letter = nn.functional.one_hot(src, N_LETTERS + 1).float()                               # (B, m, 13)
    position = torch.eye(m).expand(B, m, m)                                                  # (B, m, m)
    return torch.cat([letter, position], dim=-1)                                             # (B, m, D_H)


def decoder_states(queries: torch.Tensor) -> torch.Tensor:
    """s_j = one-hot(query letter): (B, T) -> (B, T, N_LETTERS)."""
    return nn.functional.one_hot(queries, N_LETTERS).float()


def train(model: nn.Module, *, steps: int = 200, batch_size: int = 128, lr: float = 0.03, weight_decay: float = 0.02,
          seed: int = 0) -> list[float]:
    """Train `model(src, mask, queries) -> (logits (B, T, M), weights)` with AdamW; returns the losses."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    with threads(1):
        model.train()
        for _ in range(steps):
            src, mask, queries, target = batch(batch_size, g)
            logits, _ = model(src, mask, queries)
            loss = nn.functional.cross_entropy(logits.reshape(-1, M), target.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, *, n: int = 2000, seed: int = 1234) -> float:
    """The share of queries answered with the right position, on `n` fresh sources."""
    src, mask, queries, target = batch(n, torch.Generator().manual_seed(seed))
    logits, _ = model(src, mask, queries)
    return (logits.argmax(-1) == target).float().mean().item()


def labels(src_row, queries_row) -> tuple[list[str], list[str]]:
    """Tick labels: source letters (padding shown as '·') and the query letters."""
    chars = LETTERS + "·"
    return [chars[int(i)] for i in src_row], [chars[int(i)] for i in queries_row]


def plot_weights(weights, src_row, queries_row, *, title: str = "Attention weights", ax=None):
    """Heatmap of one example's weights (T, M), rows labelled by query letter, padding columns hatched."""
    import matplotlib.pyplot as plt

    from .plots import plot_attention

    ax = ax or plt.subplots(figsize=(4.5, 3))[1]
    source, target = labels(src_row, queries_row)
    plot_attention(weights, source, target, title=title, ax=ax,
                   xlabel="source letter at position i (· is padding)", ylabel="query j (the letter it asks for)")
    for i, token in enumerate(src_row):
        if int(token) == PAD:
            ax.add_patch(plt.Rectangle((i - 0.5, -0.5), 1, len(target), fill=False, hatch="//", color="0.6", lw=0))
    return ax


def plot_projections(W_K, W_V, *, axes=None):
    """|W_K| and |W_V| as heatmaps over the features of h_i: which features each projection reads."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3), constrained_layout=True)[1]
    for ax, W, name in zip(axes, (W_K, W_V), ("W_K (keys)", "W_V (values)")):
        im = ax.imshow(W.detach().abs().cpu(), cmap="Greys", aspect="auto")
        ax.axvline(N_LETTERS + 0.5, color="tab:red", lw=1.5)
        ax.set_xticks([N_LETTERS / 2, N_LETTERS + 1 + (M - 1) / 2], ["letter features", "position features"])
        ax.set_yticks(range(W.shape[0]))
        ax.set(ylabel="output feature", title=f"|{name}|")
        ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return axes
