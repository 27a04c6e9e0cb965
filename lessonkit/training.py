"""The one training loop the lessons share: Adam, a linear learning-rate decay, gradient clipping."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from . import guards


def fit(model: nn.Module, batch_loss: Callable[[torch.Generator], torch.Tensor], *, steps: int, lr: float,
        seed: int = 0, desc: str = "training") -> list[float]:
    """Train `model` for `steps` steps, each on the loss `batch_loss(generator)` of a fresh batch.

    PyTorch runs on one thread (fastest for the lessons' small tensors); with LESSONKIT_QUICK set only
    a few steps are taken. Returns the loss of every step.
    """
    steps = guards.steps(steps)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    losses = []
    model.train()
    with guards.threads(1):
        for _ in (bar := tqdm(range(steps), desc=desc, mininterval=1.0)):
            loss = batch_loss(g)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return losses
