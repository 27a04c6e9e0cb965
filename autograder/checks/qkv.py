"""Checks for lesson 03, queries, keys and values.

`quick_check_*` are the visible checks: tiny inputs, hand-derivable special cases and properties, no
reference needed. `check_*` are the hidden checks: the reference from solutions/ on random inputs of
distinct sizes, in float64 and float32, on every device, with every kind of mask, plus named
diagnoses of the usual mistakes.
"""
from __future__ import annotations

import math

import torch

from .. import reference
from .core import cases, CheckFailed, generator, randn, Student

LESSON = "03_query_key_value"


def _ref():
    return reference.load(LESSON)


# --- project_qkv ----------------------------------------------------------------------------------

def _expect_qkv(f, got, like, B, t, m, d_k, d_v):
    """(Q, K, V) with the right shapes; a wrong order or wrong source states named from the shapes."""
    Q, K, V = f.expect_tuple(got, 3, "(Q, K, V)")
    shape = lambda x: tuple(x.shape) if isinstance(x, torch.Tensor) else None
    want_q, want_k, want_v = (B, t, d_k), (B, m, d_k), (B, m, d_v)
    if t != m and shape(V) == (B, t, d_v):
        if shape(Q) == (B, m, d_k):
            f.fail("Q has one row per encoder state and K, V one per decoder state: the queries come from the "
                   "decoder states s (q_j = W_Q s_j), the keys and values from the encoder states h.")
        f.fail("V has one row per decoder state: the values come from the encoder states h (v_i = W_V h_i).")
    if t != m and (shape(Q), shape(K)) == (want_k, want_q):
        f.fail("the first two results have the shapes of K and Q: return them in the order (Q, K, V).")
    f.expect_tensor(Q, "Q", shape=want_q, like=like, hint="One query per decoder state: (batch, t, d_k).")
    f.expect_tensor(K, "K", shape=want_k, like=like, hint="One key per encoder state: (batch, m, d_k).")
    f.expect_tensor(V, "V", shape=want_v, like=like, hint="One value per encoder state: (batch, m, d_v).")
    return Q, K, V


def _permutation(d, shift):
    """A permutation matrix P with P x = x[perm] and perm a cyclic shift (not symmetric, not the identity)."""
    perm = [(r + shift) % d for r in range(d)]
    return torch.eye(d, dtype=torch.float64)[perm], perm


def quick_check_project_qkv(fn):
    """Visible: permutation matrices tell Q, K, V and their weights apart; rectangular identities check shapes."""
    f = Student(fn, "project_qkv")
    g = generator(30)
    # Same feature size everywhere, so that swapped or untransposed weights still run and can be named.
    B, t, m, d = 2, 3, 4, 5
    h, s = randn(g, B, m, d), randn(g, B, t, d)
    P_Q, p_q = _permutation(d, 1)
    P_K, p_k = _permutation(d, 2)
    P_V, p_v = _permutation(d, 3)
    Q, K, V = _expect_qkv(f, f(h, s, P_Q, 2 * P_K, 3 * P_V), h, B, t, m, d, d)
    close = lambda a, b: torch.allclose(a, b)
    inverse = lambda p: [p.index(r) for r in range(len(p))]
    if close(Q, 2 * s[..., p_k]) or close(K, h[..., p_q]):
        f.fail("W_K and W_Q are swapped: the queries are q_j = W_Q s_j, the keys k_i = W_K h_i.")
    if close(Q, s[..., inverse(p_q)]):
        f.fail("the weights are applied untransposed: they are stored (out, in), so W_Q s_j is s @ W_Q.T.")
    if close(V, 2 * h[..., p_k]):
        f.fail("V is computed with W_K: the values are v_i = W_V h_i.")
    f.expect_close(Q, s[..., p_q], "Q when W_Q is a permutation matrix (row r of Q picks feature perm[r] of s_j)")
    f.expect_close(K, 2 * h[..., p_k], "K when W_K is 2 times a permutation matrix")
    f.expect_close(V, 3 * h[..., p_v], "V when W_V is 3 times a permutation matrix")
    # All sizes distinct; rectangular identities keep or pad the features.
    B, t, d_h, m, d_k, d_s, d_v = 2, 3, 4, 5, 6, 7, 8
    h, s = randn(g, B, m, d_h), randn(g, B, t, d_s)
    eye = lambda rows, cols: torch.eye(rows, cols, dtype=torch.float64)
    Q, K, V = _expect_qkv(f, f(h, s, eye(d_k, d_s), eye(d_k, d_h), eye(d_v, d_h).flip(0)), h, B, t, m, d_k, d_v)
    f.expect_close(Q, s[..., :d_k], "Q when W_Q is the (d_k, d_s) identity (it keeps the first d_k features of s_j)")
    f.expect_close(K, torch.cat([h, torch.zeros(B, m, d_k - d_h, dtype=h.dtype)], -1),
                   "K when W_K is the (d_k, d_h) identity (it pads h_i with zeros)")
    f.expect_close(V, torch.cat([torch.zeros(B, m, d_v - d_h, dtype=h.dtype), h.flip(-1)], -1),
                   "V when W_V is the (d_v, d_h) identity flipped upside down")


def check_project_qkv(fn, *, device=None, seed=0):
    """Hidden: against the reference; square cases first, where swapped or untransposed weights can be named."""
    f, ref = Student(fn, "project_qkv"), _ref()
    for dev, dtype, g in cases(device, seed):
        #            B, t, m, d_h, d_s, d_k, d_v
        for sizes in [(2, 4, 3, 5, 5, 5, 5), (3, 2, 4, 5, 5, 6, 7), (2, 3, 5, 4, 7, 6, 8), (1, 6, 7, 3, 2, 5, 4)]:
            B, t, m, d_h, d_s, d_k, d_v = sizes
            r = lambda *shape: randn(g, *shape, dtype=dtype, device=dev)
            h, s, W_Q, W_K, W_V = r(B, m, d_h), r(B, t, d_s), r(d_k, d_s), r(d_k, d_h), r(d_v, d_h)
            Q, K, V = _expect_qkv(f, f(h, s, W_Q, W_K, W_V), h, B, t, m, d_k, d_v)
            want_Q, want_K, want_V = ref.project_qkv(h, s, W_Q, W_K, W_V)
            swapped = lambda: ref.project_qkv(h, s, W_K, W_Q, W_V)
            untransposed = lambda: ref.project_qkv(h, s, W_Q.T, W_K.T, W_V.T)
            f.expect_close(Q, want_Q, "Q", mistakes=[
                ("W_K and W_Q are swapped: the queries are q_j = W_Q s_j, the keys k_i = W_K h_i", lambda: swapped()[0]),
                ("the weights are applied untransposed: they are stored (out, in), so W_Q s_j is s @ W_Q.T",
                 lambda: untransposed()[0]),
            ])
            f.expect_close(K, want_K, "K", mistakes=[
                ("W_K and W_Q are swapped: the queries are q_j = W_Q s_j, the keys k_i = W_K h_i", lambda: swapped()[1]),
                ("the weights are applied untransposed: they are stored (out, in), so W_K h_i is h @ W_K.T",
                 lambda: untransposed()[1]),
            ])
            f.expect_close(V, want_V, "V", mistakes=[
                ("V is computed with W_K: the values are v_i = W_V h_i", lambda: want_K),
                ("the weights are applied untransposed: they are stored (out, in), so W_V h_i is h @ W_V.T",
                 lambda: untransposed()[2]),
            ])
            f.expect_gradients([h, s, W_Q, W_K, W_V], ref.project_qkv,
                               output=lambda qkv: torch.cat([x.flatten() for x in qkv]))


# --- qkv_attention --------------------------------------------------------------------------------

MASK_HINT = ("the mask must broadcast to (batch, t, m): a padding mask (batch, 1, m), a mask (t, m) shared by the "
             "batch and a full (batch, t, m) mask must all work (masked_fill and * broadcast for you)")


def _describe(mask, B, t, m):
    if mask is None:
        return "without a mask"
    names = {(B, 1, m): "(batch, 1, m)", (t, m): "(t, m)", (B, t, m): "(batch, t, m)", (m,): "(m,)"}
    return f"with a mask of shape {names.get(tuple(mask.shape), tuple(mask.shape))}"


def _attend(f, Q, K, V, mask):
    """Call the student; a crash or a wrong shape with a mask is reported as a broadcasting problem."""
    B, t, m, d_k, d_v = Q.shape[0], Q.shape[1], K.shape[1], K.shape[2], V.shape[2]
    try:
        got = f(Q, K, V) if mask is None else f(Q, K, V, mask)
    except CheckFailed as e:
        if "not implemented" in str(e):
            raise
        if mask is None:
            if "raised" in str(e) and any(w in str(e) for w in ("size", "shape", "dimension")):
                raise CheckFailed(f"{e} Q is (batch, t, d_k) and K is (batch, m, d_k): the scores Q K^T need the keys "
                                  "transposed, K.transpose(-2, -1), and C is weights @ V.") from None
            raise
        raise CheckFailed(f"{e} (This happened {_describe(mask, B, t, m)}: {MASK_HINT}.)") from None
    C, weights = f.expect_tuple(got, 2, "(C, weights)")
    shape = lambda x: tuple(x.shape) if isinstance(x, torch.Tensor) else None
    if shape(weights) == (B, m, t) and t != m:
        f.fail(f"weights have shape (batch, m, t) = {(B, m, t)}: they should be (batch, t, m), row j holding the "
               f"weights of decoder state j over the m keys. The seed's K^T q_j for every j at once is Q @ K^T.")
    if shape(C) == (B, t, d_k) and d_k != d_v:
        f.fail("C has d_k features per row: the context averages the values V, not the keys K.")
    if mask is not None and shape(weights) not in (None, (B, t, m)) and len(shape(weights)) != 3:
        f.fail(f"weights have shape {shape(weights)} {_describe(mask, B, t, m)}: {MASK_HINT}.")
    if shape(weights) == (B, t, m) and not torch.isfinite(weights).all():
        live = None if mask is None else torch.broadcast_to(mask, (B, t, m)).any(-1)     # (B, t)
        if live is not None and not live.all() and torch.isfinite(weights[live]).all():
            f.fail("a row whose positions are all masked gives NaN or inf: it should give all zeros. "
                   "Fill masked scores with torch.finfo(dtype).min rather than -inf, or zero the row afterwards "
                   "without letting NaN into the computation.")
        f.fail("the weights contain NaN or inf. For large scores subtract the row maximum before exp "
               "(torch.softmax does this for you).")
    f.expect_tensor(weights, "weights", shape=(B, t, m), like=Q,
                    hint="Row j holds the weights of decoder state j over the m keys: (batch, t, m).")
    f.expect_tensor(C, "C", shape=(B, t, d_v), like=Q, hint="One context vector per decoder state: (batch, t, d_v).")
    return C, weights


def _diagnose_weights(f, w, mask, unmasked):
    """Name the usual softmax and masking mistakes from the weights' properties.

    w: (B, t, m) the student's weights; mask: None or broadcastable to it; unmasked: the weights the
    same inputs get without a mask (to recognize a mask applied after the softmax).
    """
    B, t, m = w.shape
    ones = lambda x: torch.allclose(x, torch.ones_like(x), atol=1e-5)
    if (w < 0).any():
        f.fail("some weights are negative: did you normalize the scores without exp? Use a softmax.")
    valid = torch.ones_like(w, dtype=torch.bool) if mask is None else torch.broadcast_to(mask, w.shape)
    live = valid.any(-1)                                                          # (B, t)
    rows = w.sum(-1)                                                              # (B, t)
    if not ones(rows[live]) or (mask is None and not ones(rows)):
        if B > 1 and ones(w.sum(0)):
            f.fail("the weights sum to 1 over the batch axis: the softmax must run over the m key positions (dim=-1).")
        if t > 1 and ones(w.sum(-2)[valid.any(-2)]):
            f.fail("the weights sum to 1 over the query axis t: the softmax must run over the m key positions "
                   "(dim=-1), one distribution per decoder state.")
        if ones(w.sum((-2, -1))):
            f.fail("the weights sum to 1 over the whole (t, m) matrix: the softmax must run over the m key "
                   "positions of each row (dim=-1).")
    if mask is not None:
        if (w[~valid] != 0).any():
            if (w[valid] == 0).all():
                f.fail("True was treated as masked: True means the position may be attended.")
            if unmasked is not None and torch.allclose(w, unmasked):
                f.fail("masked positions get non-zero weight: the mask is ignored.")
            if (w[~valid & live[..., None]] != 0).any():
                f.fail("masked positions (mask False) must get weight exactly 0.")
            f.fail("a row whose positions are all masked should give all zeros (filling masked scores with a "
                   "large negative number gives that row uniform weights: multiply by the mask afterwards).")
        if not ones(rows[live]) and unmasked is not None and torch.allclose(w, unmasked * valid):
            f.fail("the weights were zeroed after the softmax without renormalizing: mask the scores before it.")
    if not ones(rows[live]):
        f.fail("each row of weights must sum to 1 over the m key positions (the allowed ones, with a mask).")


def _scale_diagnosis(f, factor, d_k, d_v, m):
    """Name the scale a student applied to the scores, from the factor it multiplied them by."""
    named = [(1 / math.sqrt(d_k), "divided by sqrt(d_k)"), (1 / d_k, "divided by d_k"),
             (1 / math.sqrt(d_v), "scaled by d_v (divided by sqrt(d_v))"), (1 / d_v, "scaled by d_v (divided by d_v)"),
             (math.sqrt(d_k), "multiplied by sqrt(d_k)"), (1 / math.sqrt(m), "divided by sqrt(m)")]
    for value, what in named:
        if abs(factor - value) < 1e-4 * max(1.0, value):
            f.fail(f"the scores are {what}: option 2 has no scaling, alpha_ij = softmax over i of k_i^T q_j "
                   "(the 1/sqrt(d_k) of the Transformer comes in lesson 06).")


def quick_check_qkv_attention(fn):
    """Visible: shapes, rows that are distributions over the m keys, hand-derivable cases, every mask shape."""
    f = Student(fn, "qkv_attention")
    g = generator(31)
    B, t, m, d_k, d_v = 2, 3, 5, 6, 8
    Q, K, V = randn(g, B, t, d_k), randn(g, B, m, d_k), randn(g, B, m, d_v)
    C, w = _attend(f, Q, K, V, None)
    _diagnose_weights(f, w, None, None)
    # Keys all zero: every score is 0, so every row is uniform and every c_j is the mean of the values.
    C0, w0 = _attend(f, Q, torch.zeros_like(K), V, None)
    f.expect_close(w0, torch.full((B, t, m), 1 / m, dtype=Q.dtype), "the weights when all keys are 0 (they should all be 1/m)")
    f.expect_close(C0, V.mean(1, keepdim=True).expand(B, t, d_v),
                   "C when all keys are 0 (each c_j should be the mean of the values v_i)")
    # Two keys whose scores are ln 3 and 0: weights 3/4 and 1/4, unscaled.
    d = 4
    Q2 = torch.zeros(1, 1, d, dtype=torch.float64)
    Q2[0, 0, 0] = math.log(3.0)
    K2 = torch.zeros(1, 2, d, dtype=torch.float64)
    K2[0, 0, 0] = 1.0
    V2 = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    C2, w2 = _attend(f, Q2, K2, V2, None)
    want = torch.tensor([[[0.75, 0.25]]], dtype=torch.float64)
    if not torch.allclose(w2, want) and 0 < w2[0, 0, 0] < 1:
        p = w2[0, 0, 0].item()
        _scale_diagnosis(f, math.log(p / (1 - p)) / math.log(3.0), d, 3, 2)
    f.expect_close(w2, want, "the weights of two keys scored ln 3 and 0 (they should be 3/4 and 1/4)")
    f.expect_close(C2, torch.tensor([[[0.75, 0.25, 0.0]]], dtype=torch.float64),
                   "C for those weights and values (1, 0, 0) and (0, 1, 0)")
    # Padding masks (batch, 1, m): lengths 5, 2 and 0 (nothing to attend to).
    B3 = 3
    Q3, K3, V3 = randn(g, B3, t, d_k), randn(g, B3, m, d_k), randn(g, B3, m, d_v)
    lengths = torch.tensor([5, 2, 0])
    pad = (torch.arange(m) < lengths[:, None])[:, None, :]                                   # (B, 1, m)
    _, unmasked = _attend(f, Q3, K3, V3, None)
    C3, w3 = _attend(f, Q3, K3, V3, pad)
    _diagnose_weights(f, w3, pad, unmasked)
    if (C3[2] != 0).any():
        f.fail("a sequence with nothing to attend to should get all-zero context vectors.")
    f.expect_close(C3[1], w3[1, :, :2] @ V3[1, :2], "C with a padding mask (only the first 2 values may count)")
    C_full, w_full = _attend(f, Q3, K3, V3, pad.expand(B3, t, m))
    f.expect_close(w_full, w3, "the weights with the padding mask expanded to (batch, t, m) (they should not change)")
    C_all, w_all = _attend(f, Q3, K3, V3, torch.ones(B3, t, m, dtype=torch.bool))
    f.expect_close(w_all, unmasked, "the weights with a mask that allows everything (they should equal those without a mask)")
    # A (t, m) mask shared by the batch: decoder state j may see keys 0..j+1.
    shared = torch.ones(t, m, dtype=torch.bool).tril(1)
    _, w4 = _attend(f, Q3, K3, V3, shared)
    _diagnose_weights(f, w4, shared, unmasked)
    # Gradients stay finite with an all-masked row.
    leaves = [x.clone().requires_grad_() for x in (Q3, K3, V3)]
    with torch.enable_grad():
        C5, w5 = _attend(f, *leaves, pad)
        if C5.requires_grad:
            try:
                (C5.sum() + (w5 * torch.arange(m)).sum()).backward()
            except Exception as e:
                f.fail(f"the backward pass through it failed ({type(e).__name__}: {e}).")
    if any(x.grad is not None and not torch.isfinite(x.grad).all() for x in leaves):
        f.fail("the gradients contain NaN with an all-masked row: NaN from a softmax over -inf leaks into the "
               "backward pass even where the forward pass replaced it. Fill masked scores with "
               "torch.finfo(dtype).min instead of -inf.")


def _masks(g, B, t, m, device):
    """Every kind of mask the contract allows, with an all-masked row where the batch is large enough."""
    lengths = torch.randint(1, m + 1, (B,), generator=g)
    lengths[0] = m - 1
    if B > 1:
        lengths[-1] = 0                                                   # nothing to attend to
    pad = (torch.arange(m) < lengths[:, None])[:, None, :]               # (B, 1, m)
    shared = torch.ones(t, m, dtype=torch.bool).tril(m - t)              # (t, m), at least one key per row
    full = torch.rand(B, t, m, generator=g) > 0.4                         # (B, t, m)
    full[0, 0] = False                                                    # one row with nothing to attend to
    full[0, -1, -1] = True
    return [pad.to(device), shared.to(device), full.to(device)]


def check_qkv_attention(fn, *, device=None, seed=0):
    """Hidden: against the reference with no mask and with every kind of mask, large scores, gradients."""
    f, ref = Student(fn, "qkv_attention"), _ref()
    for dev, dtype, g in cases(device, seed):
        #            B, t, m, d_k, d_v
        for sizes in [(2, 3, 5, 6, 8), (1, 4, 7, 3, 5), (3, 6, 4, 5, 2), (2, 5, 3, 4, 4)]:
            B, t, m, d_k, d_v = sizes
            Q, K, V = (randn(g, B, t, d_k, dtype=dtype, device=dev), randn(g, B, m, d_k, dtype=dtype, device=dev),
                       randn(g, B, m, d_v, dtype=dtype, device=dev))
            unmasked = ref.qkv_attention(Q, K, V)[1]
            inputs = [(Q, None)] + [(Q, mask) for mask in _masks(g, B, t, m, dev)] + [(Q * 30, None)]
            for q, mask in inputs:
                C, w = _attend(f, q, K, V, mask)
                want_C, want_w = ref.qkv_attention(q, K, V, mask)
                _diagnose_weights(f, w, mask, unmasked if q is Q else None)
                mistakes = _attention_mistakes(ref, q, K, V, mask, d_k, d_v)
                late = ("the weights were zeroed after the softmax without renormalizing: mask the scores before it",
                        lambda: None if mask is None else ref.qkv_attention(q, K, V)[1] * mask)
                f.expect_close(w, want_w, f"the weights {_describe(mask, B, t, m)}",
                               mistakes=[(what, lambda make=make: _nth(make(), 1)) for what, make in mistakes] + [late])
                f.expect_close(C, want_C, f"C {_describe(mask, B, t, m)}", mistakes=[
                    ("C averages the keys K instead of the values V", lambda: ref.qkv_attention(q, K, K, mask)[0]),
                ] + [(what, lambda make=make: _nth(make(), 0)) for what, make in mistakes])
            for mask in [None] + _masks(g, B, t, m, dev):
                try:
                    f.expect_gradients([Q, K, V, mask], ref.qkv_attention,
                                       output=lambda r: torch.cat([r[0].flatten(), r[1].flatten()]))
                except CheckFailed as e:
                    dead = mask is not None and not torch.broadcast_to(mask, (B, t, m)).any(-1).all()
                    raise CheckFailed(f"{e} (This happened {_describe(mask, B, t, m)}"
                                      + (": the gradients contain NaN with an all-masked row. Fill masked scores "
                                         "with torch.finfo(dtype).min rather than -inf."
                                         if "NaN" in str(e) and dead else ".") + ")") from None


def _nth(result, i):
    return None if result is None else result[i]


def _attention_mistakes(ref, Q, K, V, mask, d_k, d_v):
    """(description, () -> (C, weights) or None): the usual mistakes, built from the reference."""
    scales = [(d_k ** -0.5, "divided by sqrt(d_k)"), (1 / d_k, "divided by d_k"),
              (d_v ** -0.5, "scaled by d_v (divided by sqrt(d_v))"), (d_k ** 0.5, "multiplied by sqrt(d_k)")]
    mistakes = [(f"the scores are {what}: option 2 has no scaling (the 1/sqrt(d_k) of the Transformer comes in "
                 "lesson 06)", lambda k=k: ref.qkv_attention(Q * k, K, V, mask)) for k, what in scales]
    return mistakes + [
        ("True was treated as masked: True means the position may be attended",
         lambda: None if mask is None else ref.qkv_attention(Q, K, V, ~mask)),
        ("masked positions get non-zero weight: the mask is ignored",
         lambda: None if mask is None else ref.qkv_attention(Q, K, V)),
        ("every decoder state got the weights of the first query: each row j needs its own q_j",
         lambda: ref.qkv_attention(Q[:, :1].expand_as(Q), K, V, mask)),
    ]
