"""The reversal task: read a random string of letters, write it backwards.

Length is what makes it hard: a plain Seq2Seq must squeeze the whole string into its final state,
while attention lets each output step look back at the one input it needs.
"""
from __future__ import annotations

import torch
from torch import nn

from .training import fit

LETTERS = "abcdefghij"
VOCAB = len(LETTERS)
START = VOCAB                     # the decoder's first input x'_1, a token of its own


def batch(batch_size: int, length: int, generator: torch.Generator | None = None):
    """A batch of reversal examples.

    Returns:
        src (B, m) letters to read; tgt_in (B, m) decoder inputs (START, then the answer shifted right);
        tgt (B, m) the answer, src reversed.
    """
    src = torch.randint(0, VOCAB, (batch_size, length), generator=generator)
    tgt = src.flip(1)
    tgt_in = torch.cat([torch.full((batch_size, 1), START), tgt[:, :-1]], dim=1)
    return src, tgt_in, tgt


def train(model: nn.Module, *, steps: int = 2000, lengths=(5, 30), batch_size: int = 64, lr: float = 5e-3,
          seed: int = 0, desc: str = "training") -> list[float]:
    """Train `model(src, tgt_in) -> (logits (B, m, VOCAB), weights)` with Adam and a linear decay.

    Each step draws one length uniformly from `lengths` (inclusive). Returns the loss of every step.
    """
    def batch_loss(g):
        length = int(torch.randint(lengths[0], lengths[1] + 1, (1,), generator=g))
        src, tgt_in, tgt = batch(batch_size, length, g)
        logits, _ = model(src, tgt_in)
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))

    return fit(model, batch_loss, steps=steps, lr=lr, seed=seed, desc=desc)


@torch.no_grad()
def accuracy_by_length(model: nn.Module, lengths, *, n: int = 256, seed: int = 1234) -> dict[int, float]:
    """Token accuracy (teacher-forced) on `n` fresh examples of each length: the same test set for every model."""
    out = {}
    for length in lengths:
        src, tgt_in, tgt = batch(n, length, torch.Generator().manual_seed(seed + length))
        logits, _ = model(src, tgt_in)
        out[length] = (logits.argmax(-1) == tgt).float().mean().item()
    return out


class PlainSeq2Seq(nn.Module):
    """Seq2Seq without attention, on torch's nn.RNN: lesson 01's model, fast, for side-by-side plots.

    The same sizes and the same SimpleRNN as the model lesson 01 builds from the student's functions:
    an nn.RNN encoder (tanh) reads the embedded source; its final state h_m is the decoder's s_0; an
    nn.RNN decoder reads the embedded target inputs (START, then the answer shifted right: teacher
    forcing); a linear layer reads each s_j. Train it with `train` like the others.
    """

    def __init__(self, d_emb: int = 16, d_h: int = 64):
        super().__init__()
        self.embed_src = nn.Embedding(VOCAB, d_emb)
        self.embed_tgt = nn.Embedding(VOCAB + 1, d_emb)              # + the START token
        self.encoder = nn.RNN(d_emb, d_h, batch_first=True)
        self.decoder = nn.RNN(d_emb, d_h, batch_first=True)
        self.out = nn.Linear(d_h, VOCAB)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor):
        """src (B, m), tgt_in (B, t) -> (logits (B, t, VOCAB), None): no attention weights to return."""
        _, h_m = self.encoder(self.embed_src(src))                   # (1, B, d_h): only the final state
        ss, _ = self.decoder(self.embed_tgt(tgt_in), h_m)            # (B, t, d_h) the states s_1..s_t
        return self.out(ss), None
