"""Checks for lesson 06, attention without an RNN: `self_attention(X, W_Q, W_K, W_V, causal=False)`.

`quick_check_self_attention` is the visible check: tiny inputs, properties and hand-derived special
cases, no reference needed. `check_self_attention` is the hidden check: the reference from solutions/
on random inputs of distinct sizes (d, d_k and d_v all different, so a scale by the wrong width or a
swapped axis fails loudly), causal or not, in float64 and float32, on every device, gradients included.
"""
from __future__ import annotations

import math

import torch

from .. import reference
from .core import cases, generator, randn, Student

LESSON = "06_attention_without_rnn"

# (B, m, d, d_k, d_v): d, d_k and d_v distinct in all but the square case, which is there so that
# untransposed projections and values taken from X itself run without a shape error.
SIZES = [(2, 5, 4, 3, 6), (1, 7, 6, 2, 3), (3, 4, 5, 5, 5)]


def _ref():
    return reference.load(LESSON)


def _inputs(g, B, m, d, d_k, d_v, dtype=torch.float64, device="cpu", scale=1.0):
    """X and projections scaled by 1/sqrt(d), so the scaled scores are of order 1 and no weight saturates."""
    X = randn(g, B, m, d, dtype=dtype, device=device, scale=scale)
    W_Q, W_K, W_V = (randn(g, n, d, dtype=dtype, device=device, scale=d ** -0.5) for n in (d_k, d_k, d_v))
    return X, W_Q, W_K, W_V


# --- what the outputs look like --------------------------------------------------------------------

def _unpack(f, result, B, m, d, d_k, d_v, like):
    """(Y, weights) with the right types and shapes, or a message naming what is off."""
    Y, weights = f.expect_tuple(result, 2, "(Y, weights)")
    shape_Y, shape_w = (B, m, d_v), (B, m, m)
    if (isinstance(Y, torch.Tensor) and isinstance(weights, torch.Tensor)
            and tuple(Y.shape) == shape_w and tuple(weights.shape) == shape_Y and shape_w != shape_Y):
        f.fail("it returns (weights, Y): return (Y, weights), the outputs first.")
    hint_Y = "Row i is b_i = sum_j weights[i, j] v_j, with v_j = W_V a_j of size d_v: (batch, m, d_v)."
    if isinstance(Y, torch.Tensor) and Y.dim() == 3 and Y.shape[-1] != d_v:
        if Y.shape[-1] == d:
            hint_Y = ("Y has d columns, the width of X: it looks like W_V is ignored (the values are "
                      "v_i = W_V a_i, d_v entries each, not a_i itself).")
        elif Y.shape[-1] == d_k:
            hint_Y = "Y has d_k columns: the weights average the values V = X W_V^T, not the queries or keys."
    if isinstance(weights, torch.Tensor) and weights.shape == shape_w and not torch.isfinite(weights).all():
        # Before expect_tensor, which would only say "NaN".
        _diagnose_nan(f, weights)
    f.expect_tensor(weights, "weights", shape=shape_w, like=like,
                    hint="Row i holds the weights of query i over the m keys: one (m, m) matrix per sequence, "
                         "(batch, m, m).")
    f.expect_tensor(Y, "Y", shape=shape_Y, like=like, hint=hint_Y)
    return Y, weights


def _diagnose_nan(f, weights):
    m = weights.shape[-1]
    upper = torch.ones(m, m, dtype=torch.bool, device=weights.device).triu(1)
    if m > 1 and torch.isnan(weights[:, upper]).all() and torch.isfinite(weights[:, ~upper]).all():
        f.fail("the weights are NaN above the diagonal: the softmax ran over the batch axis, where a masked "
               "entry is masked in every sequence. It must run over the keys (dim=-1).")
    if m > 1 and torch.isnan(weights[:, -1]).all() and torch.isfinite(weights[:, :-1]).all():
        f.fail("the last row of weights is NaN: the last position has no key left to attend to. The causal "
               "mask is inverted: it hides j <= i and keeps the future. masked_fill fills where the mask is "
               "True, so the mask passed to it must be True for j > i.")
    first_row = weights[:, 0]
    if torch.isnan(first_row).all() and torch.isfinite(weights[:, 1:]).all():
        f.fail("the first row of weights is NaN: the causal mask hides the diagonal, so position 1 has nothing "
               "to attend to. A position may attend to itself: allow j <= i (the diagonal included).")
    f.fail("the weights contain NaN or inf. Mask with -inf (or torch.finfo(dtype).min) before the softmax, "
           "never after, and let torch.softmax subtract the row maximum before exp.")


def _diagnose_weights(f, w, causal, w_open=None, Y=None, V=None):
    """Name the usual mistakes from what the weights look like: no reference needed.

    `w_open`: the same function's weights for the same inputs with causal=False, if known;
    `Y`, `V`: the outputs it returned with `w`, and the values W_V a_j, if known.
    """
    B, m, _ = w.shape
    ones = torch.ones(B, m, dtype=w.dtype, device=w.device)
    rows, cols = w.sum(-1), w.sum(-2)
    rows_ok = torch.allclose(rows, ones, atol=1e-5)
    cols_ok = torch.allclose(cols, ones, atol=1e-5)
    if (w < 0).any():
        f.fail("weights must be non-negative: did you normalize without exp? Use torch.softmax.")
    if B > 1 and torch.allclose(w.sum(0), torch.ones_like(w[0]), atol=1e-5):
        f.fail("the weights sum to 1 over the batch axis: the softmax must run over the keys (dim=-1).")
    if B == 1 and m > 1 and torch.allclose(w, torch.ones_like(w)):
        f.fail("every weight is 1: the softmax ran over the batch axis (of size 1 here). It must run over the "
               "keys (dim=-1).")
    if causal and m > 1:
        upper = torch.ones(m, m, dtype=torch.bool, device=w.device).triu(1)
        lower = upper.T
        diag = w.diagonal(dim1=-2, dim2=-1)
        if (diag[:, 1:] == 0).all():
            f.fail("with causal=True the diagonal gets weight 0: the causal mask hides the diagonal. A position "
                   "may attend to itself: allow j <= i, the diagonal included.")
        if (w[:, upper] != 0).any():
            if (w[:, lower] == 0).all():
                if rows_ok:
                    f.fail("the causal mask is transposed: position i may attend to j <= i (the lower triangle), "
                           "but your weights are non-zero above the diagonal and zero below it.")
                if cols_ok:
                    f.fail("the weights are transposed: row i must hold the weights of query i over the keys "
                           "(each row sums to 1), and with causal=True they are zero above the diagonal.")
            beyond_next = torch.ones(m, m, dtype=torch.bool, device=w.device).triu(2)
            if (w[:, beyond_next] == 0).all() and (w[:, upper & ~beyond_next] != 0).any():
                f.fail("with causal=True position i also attends to position i+1: the causal mask is off by one "
                       "(only j <= i is allowed).")
            if not torch.allclose(w[:, upper], torch.zeros_like(w[:, upper])):
                return  # the reference comparison tells "ignored" from other mistakes
            f.fail("with causal=True the weights above the diagonal must be exactly 0 (mask the scores with "
                   "-inf before the softmax), not just small.")
    if not rows_ok:
        if causal and w_open is not None and torch.allclose(w, w_open.tril()):
            f.fail("the causal weights were zeroed after the softmax without renormalizing: mask the scores "
                   "before the softmax, so that each row still sums to 1.")
        if cols_ok and Y is not None and torch.allclose(Y, w.transpose(-1, -2) @ V):
            f.fail("the weights are transposed: row i must hold the weights of query i over the keys "
                   "(each row sums to 1); Y itself looks right.")
        if cols_ok:
            f.fail("each column of weights sums to 1 instead of each row: the softmax ran over the query axis "
                   "(dim=-2). Row i holds query i's weights over the keys, so the softmax runs over dim=-1.")
        f.fail("each row of weights must sum to 1 over the keys it may attend to.")


# --- visible ----------------------------------------------------------------------------------------

def quick_check_self_attention(fn):
    """Visible: shapes, probability rows, uniform weights when W_Q = 0, the causal prefix, one hand-made case."""
    f = Student(fn, "self_attention")
    g = generator(6)
    B, m, d, d_k, d_v = 2, 5, 4, 3, 6
    X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v)
    w_open = None
    for causal in (False, True):
        Y, w = _unpack(f, f(X, W_Q, W_K, W_V, causal), B, m, d, d_k, d_v, like=X)
        _diagnose_weights(f, w, causal, w_open, Y, X @ W_V.T)
        w_open = w
        if causal:
            upper = torch.ones(m, m, dtype=torch.bool).triu(1)
            if (w[:, upper] != 0).any():
                f.fail("with causal=True the weights above the diagonal must be exactly 0: position i may not "
                       "attend to a later position j > i. Is causal=True ignored?")

    # W_Q = 0: every score is 0, so every allowed key gets the same weight.
    V = X @ W_V.T                                                      # (B, m, d_v)
    zero = torch.zeros_like(W_Q)
    Y, w = _unpack(f, f(X, zero, W_K, W_V), B, m, d, d_k, d_v, like=X)
    f.expect_close(w, torch.full((B, m, m), 1 / m, dtype=X.dtype),
                   "weights when W_Q = 0 (every query q_i = W_Q a_i is 0, so all scores are equal: 1/m each)")
    f.expect_close(Y, V.mean(1, keepdim=True).expand(B, m, d_v),
                   "Y when W_Q = 0 (every row the plain mean of the values v_j = W_V a_j)")
    Y, w = _unpack(f, f(X, zero, W_K, W_V, True), B, m, d, d_k, d_v, like=X)
    counts = torch.arange(1, m + 1, dtype=X.dtype)
    prefix = torch.ones(m, m, dtype=X.dtype).tril() / counts[:, None]  # row i: 1/i on j <= i
    f.expect_close(w, prefix.expand(B, m, m), "causal weights when W_Q = 0 (row i: 1/i on each j <= i, 0 after)")
    f.expect_close(Y, V.cumsum(1) / counts[:, None], "causal Y when W_Q = 0 (row i: the mean of v_1..v_i)", mistakes=[
        ("Y uses the transposed weights: b_i = sum_j weights[i, j] v_j is weights @ V", lambda: prefix.T @ V),
    ])

    # A case small enough to do by hand: m = 2, d = 2, d_k = 4, d_v = 3.
    X = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)     # a_1, a_2
    W_Q = torch.zeros(4, 2, dtype=torch.float64)
    W_K = torch.zeros(4, 2, dtype=torch.float64)
    W_Q[0] = torch.tensor([1.0, 0.0])                                   # q_1 = (2, 0, 0, 0), q_2 = 0
    W_K[0] = torch.tensor([1.0, 1.0])                                   # k_1 = (2, 0, 0, 0), k_2 = (1, 0, 0, 0)
    W_V = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    V = torch.tensor([[2.0, 0.0, 2.0], [0.0, 1.0, 1.0]], dtype=torch.float64)   # v_1, v_2

    def two_by_two(p, r):  # rows [p, 1 - p] and [r, 1 - r]
        return torch.tensor([[[p, 1 - p], [r, 1 - r]]], dtype=torch.float64)

    sig = lambda z: torch.sigmoid(torch.tensor(z, dtype=torch.float64)).item()  # softmax([z, 0])[0]
    # Scores q_1.k_1 = 4, q_1.k_2 = 2, divided by sqrt(d_k) = 2: [2, 1]; row 2 all 0.
    want = two_by_two(sig(1.0), 0.5)
    Y, w = _unpack(f, f(X, W_Q, W_K, W_V), 1, 2, 2, 4, 3, like=X)
    f.expect_close(w, want, "weights of the hand-made case (scores q_1.k_1 = 4 and q_1.k_2 = 2 divided by "
                   "sqrt(d_k) = 2, then softmax over the keys)", mistakes=[
        ("the scores are not divided by sqrt(d_k)", lambda: two_by_two(sig(2.0), 0.5)),
        ("the scores are divided by sqrt(d), the model width, instead of sqrt(d_k)", lambda: two_by_two(sig(2 / math.sqrt(2)), 0.5)),
        ("the scores are divided by d_k instead of sqrt(d_k)", lambda: two_by_two(sig(0.5), 0.5)),
        ("the scores are divided by sqrt(d_v) instead of sqrt(d_k)", lambda: two_by_two(sig(2 / math.sqrt(3)), 0.5)),
        ("W_Q and W_K are swapped: queries come from W_Q, keys from W_K", lambda: two_by_two(sig(2.0), sig(1.0))),
        ("the weights are transposed: row i holds query i's weights over the keys",
         lambda: torch.tensor([[[sig(1.0), 0.5], [1 - sig(1.0), 0.5]]], dtype=torch.float64)),
    ])
    f.expect_close(Y, want @ V, "Y of the hand-made case (row i: sum_j weights[i, j] v_j)", mistakes=[
        ("W_V is ignored: the values are v_j = W_V a_j", lambda: want @ X),
        ("Y uses the transposed weights: b_i = sum_j weights[i, j] v_j is weights @ V",
         lambda: want.transpose(-1, -2) @ V),
    ])


# --- hidden -----------------------------------------------------------------------------------------

def check_self_attention(fn, *, device=None, seed=0):
    """Hidden: against the reference, causal or not, on every dtype and device; gradients; large scores."""
    f, ref = Student(fn, "self_attention"), _ref()
    for dev, dtype, g in cases(device, seed):
        for B, m, d, d_k, d_v in SIZES:
            X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v, dtype, dev)
            w_open = None
            for causal in (False, True):
                Y, w = _unpack(f, f(X, W_Q, W_K, W_V, causal), B, m, d, d_k, d_v, like=X)
                _diagnose_weights(f, w, causal, w_open, Y, X @ W_V.T)
                w_open = w
                want_Y, want_w = ref.self_attention(X, W_Q, W_K, W_V, causal)
                weights_of = lambda *Ws: ref.self_attention(X, *Ws, causal)[1]
                f.expect_close(w, want_w, "weights", mistakes=[
                    ("causal=True is ignored: position i may not attend to later positions j > i",
                     lambda: ref.self_attention(X, W_Q, W_K, W_V, False)[1] if causal else None),
                    ("the scores are not divided by sqrt(d_k)", lambda: weights_of(W_Q * d_k ** 0.5, W_K, W_V)),
                    ("the scores are divided by sqrt(d), the model width, instead of sqrt(d_k)",
                     lambda: weights_of(W_Q * (d_k / d) ** 0.5, W_K, W_V) if d != d_k else None),
                    ("the scores are divided by d_k instead of sqrt(d_k)",
                     lambda: weights_of(W_Q / d_k ** 0.5, W_K, W_V)),
                    ("the scores are divided by sqrt(d_v) instead of sqrt(d_k)",
                     lambda: weights_of(W_Q * (d_k / d_v) ** 0.5, W_K, W_V) if d_v != d_k else None),
                    ("W_Q and W_K are swapped: queries come from W_Q, keys from W_K",
                     lambda: weights_of(W_K, W_Q, W_V)),
                    ("the projections are applied untransposed: q_i = W_Q a_i is X @ W_Q.T",
                     lambda: weights_of(W_Q.T, W_K.T, W_V.T)),
                    ("the weights are transposed: row i holds query i's weights over the keys",
                     lambda: want_w.transpose(-1, -2)),
                    ("the causal weights were zeroed after the softmax without renormalizing: mask the scores "
                     "before the softmax", lambda: ref.self_attention(X, W_Q, W_K, W_V, False)[1].tril()
                     if causal else None),
                ])
                V = X @ W_V.T                                          # (B, m, d_v)
                f.expect_close(Y, want_Y, "Y", mistakes=[
                    ("W_V is ignored: the values are v_j = W_V a_j, not a_j",
                     lambda: ref.self_attention(X, W_Q, W_K, torch.eye(d, dtype=dtype, device=dev), causal)[0]
                     if d == d_v else None),
                    ("Y uses the transposed weights: b_i = sum_j weights[i, j] v_j is weights @ V",
                     lambda: want_w.transpose(-1, -2) @ V),
                    ("the values are the projections untransposed: v_j = W_V a_j is X @ W_V.T",
                     lambda: ref.self_attention(X, W_Q, W_K, W_V.T, causal)[0]),
                ])
            for causal in (True, False):
                f.expect_gradients([X, W_Q, W_K, W_V, causal], ref.self_attention,
                                   output=lambda r: torch.cat([r[0].flatten(), r[1].flatten()]))
        # Large scores (of order 1000): exp overflows unless the row maximum is subtracted first.
        if dtype == torch.float64:
            B, m, d, d_k, d_v = SIZES[0]
            X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v, dtype, dev, scale=30.0)
            for causal in (False, True):
                result = f(X, W_Q, W_K, W_V, causal)
                if isinstance(result, (tuple, list)) and len(result) == 2 and all(
                        isinstance(r, torch.Tensor) for r in result) and not all(
                        torch.isfinite(r).all() for r in result):
                    f.fail("NaN or inf for large scores: exp overflows. Subtract the row maximum before exp "
                           "(torch.softmax does this for you).")
                Y, w = _unpack(f, result, B, m, d, d_k, d_v, like=X)
                want_Y, want_w = ref.self_attention(X, W_Q, W_K, W_V, causal)
                f.expect_close(w, want_w, "weights for large scores")
                f.expect_close(Y, want_Y, "Y for large scores")
