"""The reversal task: read a random string of letters, write it backwards.

Length is what makes it hard: a plain Seq2Seq must squeeze the whole string into its final state,
while attention lets each output step look back at the one input it needs.

Accuracy is measured two ways: teacher-forced (the decoder reads the true previous letters, as in
training) and free-running (it reads its own greedy predictions, as it must when no answer is given).
"""
from __future__ import annotations

import torch
from torch import nn

from .guards import examples, threads
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
def greedy_decode(model: nn.Module, src: torch.Tensor, t: int | None = None,
                  first_guess: torch.Tensor | None = None) -> torch.Tensor:
    """Free-running (greedy) decoding: what the model writes when it reads its own previous predictions.

    The result is what decoding one step at a time gives: x'_1 = START, and x'_{j+1} is the letter the
    model itself scored highest at step j. It works for any model that `train` accepts, as long as its
    step j reads only x'_1..x'_j (true of an RNN decoder, with or without attention).

    How: instead of t calls on growing prefixes (t^2/2 decoder steps), the whole sequence is decoded
    again and again, each pass reading the letters the previous pass predicted, until they stop
    changing (an example whose letters stopped changing leaves the batch). Pass r gets steps 1..r right whatever the passes before it read (step r reads only the
    letters of steps 1..r-1, already final), so t + 1 passes at most settle it, and where they stop the
    letters read are exactly the letters predicted: the step-by-step decoding, whatever the first pass
    read. That first pass reads `first_guess`, START everywhere if none is given: a guess close to what
    the model will write (the true letters, for a model that makes few mistakes) only saves passes.

    Args:
        src: (B, m) letters to read.  t: how many letters to write (default m).
        first_guess: optional (B, t) decoder inputs for the first pass (START, then letters).
    Returns:
        (B, t) the predicted letters.
    """
    B, m = src.shape
    t = m if t is None else t
    start = torch.full((B, 1), START, dtype=torch.long, device=src.device)       # x'_1 = START
    inputs = start.expand(B, t) if first_guess is None else first_guess             # (B, t)
    predicted = model(src, inputs)[0].argmax(-1)                                   # (B, t) the first pass
    rows = torch.arange(B, device=src.device)                                      # the examples not settled
    for _ in range(t + 1):                                                        # + 1 if the guess lacks START
        inputs = torch.cat([start[rows], predicted[rows, :-1]], dim=1)             # their own letters in
        new = model(src[rows], inputs)[0].argmax(-1)                               # (len(rows), t)
        changed = (new != predicted[rows]).any(dim=1)
        predicted[rows] = new
        rows = rows[changed]                                     # an example that read what it wrote is done
        if len(rows) == 0:
            break
    return predicted


@torch.no_grad()
def accuracy_by_length(model: nn.Module, lengths, *, n: int = 256, seed: int = 1234,
                       free_running: bool = False) -> dict[int, float]:
    """Token accuracy on `n` fresh examples of each length: the same test set for every model.

    Teacher-forced by default: the decoder reads the true previous letters (START, then the answer
    shifted right), so one mistake does not change what it reads next. With `free_running=True` it
    reads its own predictions (`greedy_decode`), as it must when no answer is given: a mistake is fed
    back and can cause the next ones (exposure bias). With LESSONKIT_QUICK set, a few examples only.
    """
    n = examples(n)
    out = {}
    with threads(1):                          # small tensors: one thread is fastest (see guards.threads)
        for length in lengths:
            src, tgt_in, tgt = batch(n, length, torch.Generator().manual_seed(seed + length))
            if free_running:
                # The true inputs only as the first pass's guess: they save passes, never change the result.
                predicted = greedy_decode(model, src, tgt.shape[1], first_guess=tgt_in)   # (n, m)
            else:
                predicted = model(src, tgt_in)[0].argmax(-1)                       # (n, m)
            out[length] = (predicted == tgt).float().mean().item()
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
