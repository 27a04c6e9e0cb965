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
from .core import (call_with_keywords, cases, CheckFailed, derived_tolerance, earlier_size_hint, expect_within,
                   generator, in_process, meta_probe, probes_meta, randn, Student)

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

def _unpack(f, result, B, m, d, d_k, d_v, like, edge: str = ""):
    """(Y, weights) with the right types and shapes, or a message naming what is off (`edge`: the kind of
    input, "masked-largest" where the future keys hold the largest scores)."""
    Y, weights = f.expect_tuple(result, 2, "(Y, weights)")
    shape_Y, shape_w = (B, m, d_v), (B, m, m)
    if (isinstance(Y, torch.Tensor) and isinstance(weights, torch.Tensor)
            and tuple(Y.shape) == shape_w and tuple(weights.shape) == shape_Y and shape_w != shape_Y):
        f.fail("it returns (weights, Y): return (Y, weights), the outputs first.")
    hint_Y = "Row j is b_j = sum_i weights[j, i] v_i, with v_i = W_V a_i of size d_v: (batch, m, d_v)."
    if isinstance(Y, torch.Tensor) and Y.dim() == 3 and Y.shape[-1] != d_v:
        if Y.shape[-1] == d:
            hint_Y = ("Y has d columns, the width of X: it looks like W_V is ignored (the values are "
                      "v_i = W_V a_i, d_v entries each, not a_i itself).")
        elif Y.shape[-1] == d_k:
            hint_Y = "Y has d_k columns: the weights average the values V = X W_V^T, not the queries or keys."
    if isinstance(weights, torch.Tensor) and weights.shape == shape_w and not torch.isfinite(weights).all():
        # Before expect_tensor, which would only say "NaN".
        _diagnose_nan(f, weights, edge)
    squeezed = ""
    if 1 in (B, m) and any(isinstance(x, torch.Tensor) and x.dim() < 3 for x in (Y, weights)):
        squeezed = (" An axis of size 1 is missing (batch 1 or m = 1 here): a .squeeze() without a dim drops every "
                    "axis of size 1; squeeze only the axis you mean, as in .squeeze(-1).")
    f.expect_tensor(weights, "weights", shape=shape_w, like=like,
                    hint="Row j holds the weights of query j over the m keys: one (m, m) matrix per sequence, "
                         "(batch, m, m)." + squeezed)
    f.expect_tensor(Y, "Y", shape=shape_Y, like=like, hint=hint_Y + squeezed)
    return Y, weights


def _diagnose_nan(f, weights, edge: str = ""):
    m = weights.shape[-1]
    upper = torch.ones(m, m, dtype=torch.bool, device=weights.device).triu(1)
    if edge == "masked-largest":
        if torch.isfinite(weights[:, ~upper]).all():
            f.fail("with causal=True the weights are NaN or inf above the diagonal only, where the future keys hold "
                   "the largest scores and every allowed score is very negative: exp of the masked scores "
                   "overflowed before the mask zeroed them (inf x 0 = NaN). Replace masked scores by -inf or "
                   "torch.finfo(dtype).min before exp (not by 0), and let torch.softmax subtract the row maximum.")
        f.fail("with causal=True the weights are NaN or inf where the future keys hold the largest scores: either "
               "the softmax ran over every key and was renormalized over i <= j afterwards, when exp of the allowed "
               "keys had underflowed to 0 (0/0), or exp of large scores overflowed. Mask the scores before the "
               "softmax and let torch.softmax subtract the row maximum.")
    if edge.startswith("for large scores") and edge.endswith("causal=True"):
        f.fail(f"the weights contain NaN or inf {edge}, though causal=False gave finite ones: the causal masking "
               "breaks for large scores. Either the softmax ran over every key and was renormalized over i <= j "
               "afterwards (0/0 once their exp underflows), or the future scores were set to 0 before exp and "
               "overflowed (inf x 0). Mask the scores with -inf or torch.finfo(dtype).min before the softmax.")
    if edge.startswith("for large scores"):
        f.fail(f"the weights contain NaN or inf {edge}: exp overflows, or every exp of a row underflows to 0 (0/0, "
               "when one maximum is subtracted for the whole batch). Subtract the row maximum before exp "
               "(torch.softmax does this for you).")
    if m > 1 and torch.isnan(weights[:, upper]).all() and torch.isfinite(weights[:, ~upper]).all():
        f.fail("the weights are NaN above the diagonal: the softmax ran over the batch axis, where a masked "
               "entry is masked in every sequence. It must run over the keys (dim=-1).")
    if m > 1 and torch.isnan(weights[:, -1]).all() and torch.isfinite(weights[:, :-1]).all():
        f.fail("the last row of weights is NaN: the last position has no key left to attend to. The causal "
               "mask is inverted: it hides i <= j and keeps the future. masked_fill fills where the mask is "
               "True, so the mask passed to it must be True for i > j.")
    first_row = weights[:, 0]
    if torch.isnan(first_row).all() and torch.isfinite(weights[:, 1:]).all():
        f.fail("the first row of weights is NaN: the causal mask hides the diagonal, so position 1 has nothing "
               "to attend to. A position may attend to itself: allow i <= j (the diagonal included).")
    f.fail("the weights contain NaN or inf. Mask with -inf (or torch.finfo(dtype).min) before the softmax, "
           "never after, and let torch.softmax subtract the row maximum before exp.")


def _diagnose_weights(f, w, causal, w_open=None, Y=None, V=None, edge: str = "", atol: float = 1e-5):
    """Name the usual mistakes from what the weights look like: no reference needed.

    `w_open`: the same function's weights for the same inputs with causal=False, if known;
    `Y`, `V`: the outputs it returned with `w`, and the values W_V a_j, if known; `edge`: the kind of
    input ("masked-largest" where the future keys hold the largest scores); `atol`: how far from 1 a sum
    of weights may be (more than 1e-5 only where scores are so large that float32 rounds them by more).
    """
    B, m, _ = w.shape
    ones = torch.ones(B, m, dtype=w.dtype, device=w.device)
    rows, cols = w.sum(-1), w.sum(-2)
    rows_ok = torch.allclose(rows, ones, atol=atol)
    cols_ok = torch.allclose(cols, ones, atol=atol)
    if edge == "masked-largest" and causal and m > 1:
        upper = torch.ones(m, m, dtype=torch.bool, device=w.device).triu(1)
        if (w[:, upper] != 0).any():
            f.fail("with causal=True, future keys that hold the largest scores still get weight: a finite penalty "
                   "added to them (say -1e4) does not outweigh a large score. Mask with -inf or "
                   "torch.finfo(dtype).min (masked_fill), so that they get weight exactly 0.")
        if not rows_ok:
            f.fail("with causal=True, where the future keys hold the largest scores, the allowed keys' weights vanish "
                   "and the rows no longer sum to 1: the future scores were not replaced before the softmax. Either "
                   "a finite penalty was added to them (say -1e4, which does not outweigh a large score), or the "
                   "softmax ran over every key and was renormalized over i <= j afterwards (their exp underflows to "
                   "0). Mask the scores with -inf or torch.finfo(dtype).min before the softmax.")
    if (w < 0).any():
        f.fail("weights must be non-negative: did you normalize without exp? Use torch.softmax.")
    if B > 1 and torch.allclose(w.sum(0), torch.ones_like(w[0]), atol=atol):
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
                   "may attend to itself: allow i <= j, the diagonal included.")
        if (w[:, upper] != 0).any():
            if (w[:, lower] == 0).all():
                if rows_ok:
                    f.fail("the causal mask is transposed: position j may attend to i <= j (the lower triangle), "
                           "but your weights are non-zero above the diagonal and zero below it.")
                if cols_ok:
                    f.fail("the weights are transposed: row j must hold the weights of query j over the keys "
                           "(each row sums to 1), and with causal=True they are zero above the diagonal.")
            beyond_next = torch.ones(m, m, dtype=torch.bool, device=w.device).triu(2)
            if (w[:, beyond_next] == 0).all() and (w[:, upper & ~beyond_next] != 0).any():
                f.fail("with causal=True position j also attends to position j+1: the causal mask is off by one "
                       "(only i <= j is allowed).")
            if not torch.allclose(w[:, upper], torch.zeros_like(w[:, upper])):
                return  # the reference comparison tells "ignored" from other mistakes
            f.fail("with causal=True the weights above the diagonal must be exactly 0 (mask the scores with "
                   "-inf before the softmax), not just small.")
    if not rows_ok:
        if causal and w_open is not None and torch.allclose(w, w_open.tril()):
            f.fail("the causal weights were zeroed after the softmax without renormalizing: mask the scores "
                   "before the softmax, so that each row still sums to 1.")
        if cols_ok and Y is not None and torch.allclose(Y, w.transpose(-1, -2) @ V):
            f.fail("the weights are transposed: row j must hold the weights of query j over the keys "
                   "(each row sums to 1); Y itself looks right.")
        if cols_ok:
            f.fail("each column of weights sums to 1 instead of each row: the softmax ran over the query axis "
                   "(dim=-2). Row j holds query j's weights over the keys, so the softmax runs over dim=-1.")
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
                f.fail("with causal=True the weights above the diagonal must be exactly 0: position j may not "
                       "attend to a later position i > j. Is causal=True ignored?")

    # W_Q = 0: every score is 0, so every allowed key gets the same weight.
    V = X @ W_V.T                                                      # (B, m, d_v)
    zero = torch.zeros_like(W_Q)
    Y, w = _unpack(f, f(X, zero, W_K, W_V), B, m, d, d_k, d_v, like=X)
    f.expect_close(w, torch.full((B, m, m), 1 / m, dtype=X.dtype),
                   "weights when W_Q = 0 (every query q_i = W_Q a_i is 0, so all scores are equal: 1/m each)")
    f.expect_close(Y, V.mean(1, keepdim=True).expand(B, m, d_v),
                   "Y when W_Q = 0 (every row the plain mean of the values v_i = W_V a_i)")
    Y, w = _unpack(f, f(X, zero, W_K, W_V, True), B, m, d, d_k, d_v, like=X)
    counts = torch.arange(1, m + 1, dtype=X.dtype)
    prefix = torch.ones(m, m, dtype=X.dtype).tril() / counts[:, None]  # row i: 1/i on j <= i
    f.expect_close(w, prefix.expand(B, m, m), "causal weights when W_Q = 0 (row j: 1/j on each i <= j, 0 after)")
    f.expect_close(Y, V.cumsum(1) / counts[:, None], "causal Y when W_Q = 0 (row j: the mean of v_1..v_j)", mistakes=[
        ("Y uses the transposed weights: b_j = sum_i weights[j, i] v_i is weights @ V", lambda: prefix.T @ V),
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
        ("the weights are transposed: row j holds query j's weights over the keys",
         lambda: torch.tensor([[[sig(1.0), 0.5], [1 - sig(1.0), 0.5]]], dtype=torch.float64)),
    ])
    f.expect_close(Y, want @ V, "Y of the hand-made case (row j: sum_i weights[j, i] v_i)", mistakes=[
        ("W_V is ignored: the values are v_i = W_V a_i", lambda: want @ X),
        ("Y uses the transposed weights: b_j = sum_i weights[j, i] v_i is weights @ V",
         lambda: want.transpose(-1, -2) @ V),
    ])
    # Tensors created off the inputs' device (where this function runs in this process: a student's own
    # kernel, not the grader's bridge).
    if in_process(fn):
        X, W_Q, W_K, W_V = _inputs(g, 2, 5, 4, 3, 6)
        for causal in (False, True):
            meta_probe(f, [X, W_Q, W_K, W_V, causal])


# --- hidden -----------------------------------------------------------------------------------------

def _magnitudes(X, W_Q, W_K, W_V) -> tuple[float, float]:
    """The largest |q|.|k| / sqrt(d_k) (bounding what rounding may move a score by) and the largest |v|, both
    from absolute values: the scale of the rounding a correct answer, in any order, may differ by."""
    A = X.detach().abs()
    S = (A @ W_Q.detach().abs().T) @ (A @ W_K.detach().abs().T).transpose(-2, -1) / math.sqrt(W_Q.shape[0])
    return max(1.0, S.max().item()), max(1.0, (A @ W_V.detach().abs().T).max().item())


def _seed(g) -> int:
    """A seed for a cotangent, drawn from the check's generator (so from its `seed`)."""
    return int(torch.randint(2**31 - 1, (1,), generator=g))


def _call(f, X, W_Q, W_K, W_V, causal, *, keywords: bool = False, edge: str = ""):
    """The student's (Y, weights), called by position (or with the contract's keywords), checked for types and
    shapes; an error that names a size of an earlier call is reported as something reused from it."""
    B, m, d = X.shape
    d_k, d_v = W_Q.shape[0], W_V.shape[0]
    sizes = dict(batch=B, m=m, d=d, d_k=d_k, d_v=d_v)
    seen = f.__dict__.setdefault("sizes_seen", [])
    try:
        if keywords:
            result = call_with_keywords(f, X=X, W_Q=W_Q, W_K=W_K, W_V=W_V, **({"causal": True} if causal else {}))
        else:
            result = f(X, W_Q, W_K, W_V, causal)
    except CheckFailed as e:
        hint = earlier_size_hint(str(e), sizes, seen) if "raised" in str(e) else ""
        if hint:
            raise CheckFailed(f"{e}{hint}") from None
        if not keywords and "raised TypeError" in str(e) and "positional argument" in str(e):
            raise CheckFailed(f"self_attention could not be called with causal by position, as in "
                              f"self_attention(X, W_Q, W_K, W_V, True): the contract's signature is "
                              f"self_attention(X, W_Q, W_K, W_V, causal=False). ({e})") from None
        raise
    if sizes not in seen:
        seen.append(sizes)
    return _unpack(f, result, B, m, d, d_k, d_v, like=X, edge=edge)


def _judge(f, ref, X, W_Q, W_K, W_V, causal, Y, w, kind: str, *, w_open=None, edge: str = ""):
    """The properties first (axes, masks), then the values against the reference within a tolerance derived
    from the dtype and the size of the scores, naming the usual mistakes."""
    dtype, dev = X.dtype, X.device
    B, m, d = X.shape
    d_k, d_v = W_Q.shape[0], W_V.shape[0]
    S, V_max = _magnitudes(X, W_Q, W_K, W_V)
    V = X @ W_V.T                                                      # (B, m, d_v)
    # Sums of weights may be off by more than 1e-5 only where float32 rounds large scores by more (up to 1e-2).
    atol = min(1e-2, max(1e-5, derived_tolerance(dtype, S)["atol"]))
    _diagnose_weights(f, w, causal, w_open, Y, V, edge=edge, atol=atol)
    want_Y, want_w = ref.self_attention(X, W_Q, W_K, W_V, causal)
    weights_of = lambda *Ws: ref.self_attention(X, *Ws, causal)[1]     # noqa: E731
    large = (" Only large scores go wrong: do not clamp or rescale the scores to keep exp finite; subtract the "
             "row maximum (torch.softmax does this for you).") if edge.startswith("for large scores") else ""
    try:
        expect_within(f, w, want_w, "weights" + (f" {kind}" if kind else ""), derived_tolerance(dtype, S), [
            ("causal=True is ignored: position j may not attend to later positions i > j",
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
            ("the weights are transposed: row j holds query j's weights over the keys",
             lambda: want_w.transpose(-1, -2)),
            ("the causal weights were zeroed after the softmax without renormalizing: mask the scores "
             "before the softmax", lambda: ref.self_attention(X, W_Q, W_K, W_V, False)[1].tril()
             if causal else None),
            ("the scores come from the inputs themselves, X X^T: the queries q_i = W_Q a_i and keys "
             "k_i = W_K a_i are missing", lambda: _softmax_scores(X @ X.transpose(-2, -1) / math.sqrt(d_k), causal)),
        ])
        expect_within(f, Y, want_Y, "Y" + (f" {kind}" if kind else ""), derived_tolerance(dtype, S * V_max), [
            ("W_V is ignored: the values are v_i = W_V a_i, not a_i",
             lambda: ref.self_attention(X, W_Q, W_K, torch.eye(d, dtype=dtype, device=dev), causal)[0]
             if d == d_v else None),
            ("Y uses the transposed weights: b_j = sum_i weights[j, i] v_i is weights @ V",
             lambda: want_w.transpose(-1, -2) @ V),
            ("the values are the projections untransposed: v_i = W_V a_i is X @ W_V.T",
             lambda: ref.self_attention(X, W_Q, W_K, W_V.T, causal)[0]),
        ])
    except CheckFailed as e:
        if large and "differ from the expected" in str(e):
            raise CheckFailed(f"{e}{large}") from None
        raise


def _softmax_scores(scores, causal: bool):
    """The weights of `scores` (B, m, m), the future masked when causal."""
    if causal:
        m = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=scores.device).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1)


def check_self_attention(fn, *, device=None, seed=0):
    """Hidden: against the reference, causal or not, on every dtype and device; gradients; then the edges of
    the contract (keyword calls, views, scores x100 and x1000, future keys holding the largest scores while
    every allowed score is very negative, m = 1, repeated sizes) and tensors created off the inputs' device
    (on the meta device, for a function in this process)."""
    f, ref = Student(fn, "self_attention"), _ref()
    for dev, dtype, g in cases(device, seed):
        for B, m, d, d_k, d_v in SIZES:
            X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v, dtype, dev)
            w_open = None
            for causal in (False, True):
                Y, w = _call(f, X, W_Q, W_K, W_V, causal)
                _judge(f, ref, X, W_Q, W_K, W_V, causal, Y, w, "", w_open=w_open)
                w_open = w
            for causal in (True, False):
                f.expect_gradients([X, W_Q, W_K, W_V, causal], ref.self_attention, seed=_seed(g),
                                   output=lambda r: torch.cat([r[0].flatten(), r[1].flatten()]))
        _check_edges(f, ref, g, dev, dtype)
    if probes_meta(fn, device):
        g = generator(seed + 7)
        X, W_Q, W_K, W_V = _inputs(g, 2, 5, 4, 3, 6)
        for causal in (False, True):
            meta_probe(f, [X, W_Q, W_K, W_V, causal])


def _check_edges(f, ref, g, dev, dtype):
    """The edges of self_attention's contract, each on sizes of its own."""
    r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
    # Keywords, as the contract names the parameters (causal given, and left to its default).
    B, m, d, d_k, d_v = 2, 6, 5, 4, 3
    X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v, dtype, dev)
    for causal in (True, False):
        Y, w = _call(f, X, W_Q, W_K, W_V, causal, keywords=True)
        _judge(f, ref, X, W_Q, W_K, W_V, causal, Y, w, f"called with keywords (causal={causal})")
    # Views: a transposed X and projections that are transposed or sliced.
    B, m, d, d_k, d_v = 3, 5, 4, 6, 2
    X = r(B, d, m).transpose(1, 2)
    W_Q, W_K = r(d, d_k, scale=d ** -0.5).T, r(d_k, d + 3, scale=d ** -0.5)[:, 1:d + 1]
    W_V = r(d_v, d, 2, scale=d ** -0.5)[..., 0]
    for causal in (False, True):
        Y, w = _call(f, X, W_Q, W_K, W_V, causal)
        _judge(f, ref, X, W_Q, W_K, W_V, causal, Y, w, f"for inputs that are views (not contiguous, causal={causal})")
    # Scores of large magnitude: x100 in float32, x1000 in float64 (both past exp's overflow).
    scale = 100 if dtype == torch.float32 else 1000
    edge = f"for large scores (x {scale})"
    B, m, d, d_k, d_v = 2, 5, 4, 3, 6
    X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v, dtype, dev, scale=scale ** 0.5)
    for causal in (False, True):                    # causal=False first: a NaN then is the masking's
        Y, w = _call(f, X, W_Q, W_K, W_V, causal, edge=f"{edge} with causal={causal}")
        _judge(f, ref, X, W_Q, W_K, W_V, causal, Y, w, f"{edge} with causal={causal}", edge=edge)
    # The future keys hold the largest scores and every allowed score is below -20000: score_ij is
    # 20000 (j - i - 1) plus a little. A finite penalty leaves the future on top, a softmax renormalized
    # afterwards gives 0/0, masked scores set to 0 before exp(s - max over j <= i) overflow.
    B, m, d, d_k, d_v = 2, 5, 4, 3, 6
    X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v, dtype, dev)
    c = 20000 * math.sqrt(d_k)
    X[..., 0] = 1.0
    X[..., 1] = torch.arange(m, dtype=dtype, device=dev)                # a_j = (1, j, ...)
    W_Q[0], W_Q[1] = 0.0, 0.0
    W_Q[0, 0] = 1.0                                                     # q_i = (1, -c (i + 1), ...)
    W_Q[1, 0], W_Q[1, 1] = -c, -c
    W_K[0], W_K[1] = 0.0, 0.0
    W_K[0, 1], W_K[1, 0] = c, 1.0                                       # k_j = (c j, 1, ...)
    Y, w = _call(f, X, W_Q, W_K, W_V, True, edge="masked-largest")
    _judge(f, ref, X, W_Q, W_K, W_V, True, Y, w, "with causal=True when the future keys hold the largest scores",
           edge="masked-largest")
    # One position (m = 1): a single key, weight 1, causal or not.
    B, m, d, d_k, d_v = 3, 1, 4, 2, 5
    X, W_Q, W_K, W_V = _inputs(g, B, m, d, d_k, d_v, dtype, dev)
    for causal in (False, True):
        Y, w = _call(f, X, W_Q, W_K, W_V, causal)
        _judge(f, ref, X, W_Q, W_K, W_V, causal, Y, w, f"for m = 1 (causal={causal})")
