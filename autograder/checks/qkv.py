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
from .core import (call_with_keywords, cases, CheckFailed, derived_tolerance, earlier_size_hint, expect_within,
                   generator, in_process, keyword_or_positional, meta_probe, probes_meta, randn, Student)

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
    if d_k != d_v and shape(K) and shape(V) and shape(K)[:2] == (B, m) and shape(V)[:2] == (B, m) \
            and shape(K)[-1] + shape(V)[-1] == d_k + d_v and shape(K)[-1] != d_k:
        f.fail(f"K has {shape(K)[-1]} features and V {shape(V)[-1]}: K and V were computed together and split in "
               f"equal halves, but d_k = {d_k} and d_v = {d_v} differ. Split at d_k: torch.split(KV, [d_k, d_v], -1), "
               "or project them separately.")
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


def _judge_projection(f, ref, h, s, W_Q, W_K, W_V, *, keywords=False, edge="", earlier=None):
    B, m, d_h = h.shape
    t, d_s, d_k, d_v = s.shape[1], s.shape[2], W_Q.shape[0], W_V.shape[0]
    sizes = dict(batch=B, t=t, m=m, d_h=d_h, d_s=d_s, d_k=d_k, d_v=d_v)
    got = keyword_or_positional(f, keywords, sizes, h=h, s=s, W_Q=W_Q, W_K=W_K, W_V=W_V)
    squeezed = isinstance(got, (tuple, list)) and any(isinstance(x, torch.Tensor) and x.dim() < 3 for x in got)
    if squeezed and 1 in (B, t, m):
        f.fail("a result has fewer than 3 axes for a batch of 1, t = 1 or m = 1: a .squeeze() without a dim drops "
               "every axis of size 1; squeeze only the axis you mean, or none (Q, K, V are always 3-D).")
    if isinstance(got, (tuple, list)) and len(got) == 3:
        wanted = {"Q": (B, t, d_k), "K": (B, m, d_k), "V": (B, m, d_v)}
        for x, (name, shape) in zip(got, wanted.items()):
            if isinstance(x, torch.Tensor) and tuple(x.shape[:-1]) == shape[:-1] and x.shape[-1] != shape[-1]:
                before = {e.get(k) for e in f.__dict__.get("sizes_seen", [])[:-1] for k in ("d_k", "d_v")}
                if x.shape[-1] in before and x.shape[-1] not in sizes.values():
                    f.fail(f"{name} has {x.shape[-1]} features, its size in an earlier call (here it should have "
                           f"{shape[-1]}): something computed in an earlier call (a cached or concatenated weight) is "
                           "reused. Compute it from the current inputs on every call.")
    Q, K, V = _expect_qkv(f, got, h, B, t, m, d_k, d_v)
    want_Q, want_K, want_V = ref.project_qkv(h, s, W_Q, W_K, W_V)
    swapped = lambda: ref.project_qkv(h, s, W_K, W_Q, W_V)
    untransposed = lambda: ref.project_qkv(h, s, W_Q.T, W_K.T, W_V.T)
    stale = ("a result of an earlier call with the same sizes: something computed from an earlier call's weights "
             "or states (a cached projection) is reused. Compute Q, K and V from the current inputs on every call")
    kind = " ".join(w for w in ("called with keywords" if keywords else "", edge) if w)
    suffix = f" {kind}" if kind else ""
    tol = lambda x, W: derived_tolerance(x.dtype, max(1.0, (x.abs() @ W.abs().T).max().item()))     # noqa: E731
    for i, (got_x, want_x, x, W, name) in enumerate([(Q, want_Q, s, W_Q, "Q"), (K, want_K, h, W_K, "K"),
                                                     (V, want_V, h, W_V, "V")]):
        extra = {"Q": [("W_K and W_Q are swapped: the queries are q_j = W_Q s_j, the keys k_i = W_K h_i",
                        lambda: swapped()[0]),
                       ("the weights are applied untransposed: they are stored (out, in), so W_Q s_j is s @ W_Q.T",
                        lambda: untransposed()[0])],
                 "K": [("W_K and W_Q are swapped: the queries are q_j = W_Q s_j, the keys k_i = W_K h_i",
                        lambda: swapped()[1]),
                       ("the weights are applied untransposed: they are stored (out, in), so W_K h_i is h @ W_K.T",
                        lambda: untransposed()[1])],
                 "V": [("V is computed with W_K: the values are v_i = W_V h_i", lambda: want_K),
                       ("the weights are applied untransposed: they are stored (out, in), so W_V h_i is h @ W_V.T",
                        lambda: untransposed()[2])]}[name]
        if earlier is not None:
            extra.append((stale, lambda i=i: ref.project_qkv(*earlier)[i]))
        expect_within(f, got_x, want_x, name + suffix, tol(x, W), extra)
    return Q, K, V


def check_project_qkv(fn, *, device=None, seed=0):
    """Hidden: against the reference; square cases first, where swapped or untransposed weights can be named;
    then the edges: the contract's keywords, views, batch 1, t = 1, m = 1, m == t, d_k != d_v, a second call
    with the same sizes and other weights, inputs left unmodified, and (in process) the meta device."""
    f, ref = Student(fn, "project_qkv"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape: randn(g, *shape, dtype=dtype, device=dev)      # noqa: E731
        #            B, t, m, d_h, d_s, d_k, d_v
        for sizes in [(2, 4, 3, 5, 5, 5, 5), (3, 2, 4, 8, 8, 6, 7), (2, 3, 5, 4, 7, 6, 8), (1, 6, 7, 3, 2, 5, 4),
                      (3, 1, 1, 2, 4, 3, 6), (2, 5, 5, 6, 3, 2, 4)]:
            B, t, m, d_h, d_s, d_k, d_v = sizes
            h, s, W_Q, W_K, W_V = r(B, m, d_h), r(B, t, d_s), r(d_k, d_s), r(d_k, d_h), r(d_v, d_h)
            _judge_projection(f, ref, h, s, W_Q, W_K, W_V)
        # The same sizes again, with other states and weights: nothing may be kept from the call before.
        earlier = (h, s, W_Q, W_K, W_V)
        _judge_projection(f, ref, r(B, m, d_h), r(B, t, d_s), r(d_k, d_s), r(d_k, d_h), r(d_v, d_h),
                          edge="in a second call of the same sizes", earlier=earlier)
        B, t, m, d_h, d_s, d_k, d_v = 3, 2, 4, 6, 5, 3, 7
        _judge_projection(f, ref, r(B, m, d_h), r(B, t, d_s), r(d_k, d_s), r(d_k, d_h), r(d_v, d_h), keywords=True)
        B, t, m, d_h, d_s, d_k, d_v = 2, 3, 4, 5, 6, 2, 3
        _judge_projection(f, ref, r(m, B, d_h).transpose(0, 1), r(B, d_s, t).transpose(1, 2), r(d_s, d_k).T,
                          r(d_k, d_h + 2)[:, 1:-1], r(d_h, d_v).T, edge="for inputs that are views (not contiguous)")
        f.expect_gradients([h, s, W_Q, W_K, W_V], ref.project_qkv,
                           output=lambda qkv: torch.cat([x.flatten() for x in qkv]))
    if probes_meta(fn, device):
        g = generator(seed + 7)
        meta_probe(f, [randn(g, 2, 5, 3), randn(g, 2, 4, 6), randn(g, 7, 6), randn(g, 7, 3), randn(g, 8, 3)])


# --- qkv_attention --------------------------------------------------------------------------------

MASK_HINT = ("the mask must broadcast to (batch, t, m): a padding mask (batch, 1, m), a mask (t, m) shared by the "
             "batch and a full (batch, t, m) mask must all work (masked_fill and * broadcast for you)")


def _describe(mask, B, t, m):
    if mask is None:
        return "without a mask"
    names = {(B, 1, m): "(batch, 1, m)", (t, m): "(t, m)", (B, t, m): "(batch, t, m)", (m,): "(m,)",
             (1, t, m): "(1, t, m)", (B, t, 1): "(batch, t, 1)", (1, 1, m): "(1, 1, m)"}
    return f"with a mask of shape {names.get(tuple(mask.shape), tuple(mask.shape))}"


def _attend(f, Q, K, V, mask, *, keywords: bool = False, edge: str = ""):
    """Call the student; a crash or a wrong shape with a mask is reported as a broadcasting problem.

    keywords: call qkv_attention(Q=..., K=..., V=..., mask=...) as the contract names the parameters.
    edge: the kind of input, named in the messages ("" for plain random inputs); "masked-largest" for
    masked keys that hold the largest scores, where NaN means a softmax renormalized after the fact.
    """
    B, t, m, d_k, d_v = Q.shape[0], Q.shape[1], K.shape[1], K.shape[2], V.shape[2]
    seen = f.__dict__.setdefault("sizes_seen", [])
    sizes = dict(batch=B, t=t, m=m, d_k=d_k, d_v=d_v)
    try:
        if keywords:
            got = call_with_keywords(f, Q=Q, K=K, V=V, **({} if mask is None else {"mask": mask}))
        else:
            got = f(Q, K, V) if mask is None else f(Q, K, V, mask)
    except CheckFailed as e:
        if "not implemented" in str(e) or "parameter names" in str(e) or "modified in place" in str(e):
            raise
        hint = earlier_size_hint(str(e), sizes, seen) if "raised" in str(e) else ""
        if hint:
            raise CheckFailed(f"{e}{hint}") from None
        if mask is not None and not keywords and "raised TypeError" in str(e) and "positional argument" in str(e):
            raise CheckFailed(f"{e} The mask could not be passed by position: the contract is qkv_attention(Q, K, V, "
                              "mask=None), so qkv_attention(Q, K, V, mask) must work too (no * before mask).") from None
        if mask is None:
            # Only a matrix product's shape error earns the hint about K's transpose.
            if "raised" in str(e) and any(w in str(e) for w in ("batch2", "mat1 and mat2", "cannot be multiplied")):
                raise CheckFailed(f"{e} Q is (batch, t, d_k) and K is (batch, m, d_k): the scores Q K^T need the keys "
                                  "transposed, K.transpose(-2, -1), and C is weights @ V.") from None
            raise
        raise CheckFailed(f"{e} (This happened {_describe(mask, B, t, m)}: {MASK_HINT}.)") from None
    if sizes not in seen:
        seen.append(sizes)
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
        if mask is not None and torch.isfinite(weights[torch.broadcast_to(mask, (B, t, m))]).all():
            where = "where the masked keys hold the largest scores" if edge == "masked-largest" else edge
            f.fail("the weights are NaN or inf at masked positions only" + (f", {where}" if where else "") + ": exp "
                   "of large scores at masked positions overflowed before the mask zeroed them (inf x 0 = NaN). "
                   "Replace masked scores by torch.finfo(dtype).min before exp (not by 0), and let torch.softmax "
                   "subtract the row maximum.")
        if edge == "masked-largest":
            f.fail("the weights are NaN or inf where the masked keys hold the largest scores: either the softmax "
                   "ran over every key and was renormalized over the allowed ones afterwards, so the allowed "
                   "keys' exp underflowed to 0 (0/0), or exp of large scores overflowed (inf x 0). "
                   "Mask the scores before the softmax (masked_fill with torch.finfo(dtype).min) and let "
                   "torch.softmax subtract the row maximum.")
        f.fail("the weights contain NaN or inf" + (f" {edge}" if edge else "") + ". For large scores subtract the "
               "row maximum before exp (torch.softmax does this for you).")
    squeezed = ""
    if 1 in (B, t, m) and any(isinstance(x, torch.Tensor) and x.dim() < 3 for x in (C, weights)):
        squeezed = (" An axis of size 1 is missing (batch 1, t = 1 or m = 1 here): a .squeeze() without a dim drops "
                    "every axis of size 1; squeeze only the axis you mean, as in .squeeze(-1).")
    f.expect_tensor(weights, "weights", shape=(B, t, m), like=Q,
                    hint="Row j holds the weights of decoder state j over the m keys: (batch, t, m)." + squeezed)
    f.expect_tensor(C, "C", shape=(B, t, d_v), like=Q,
                    hint="One context vector per decoder state: (batch, t, d_v)." + squeezed)
    return C, weights


def _diagnose_weights(f, w, mask, unmasked, edge: str = "", final: bool = True, atol: float = 1e-5):
    """Name the usual softmax and masking mistakes from the weights' properties.

    w: (B, t, m) the student's weights; mask: None or broadcastable to it; unmasked: the weights the
    same inputs get without a mask (to recognize a mask applied after the softmax); edge: the kind of
    input, as `_attend` takes it; final: False leaves the last, generic verdict (rows that do not sum to
    1) to the caller, who first compares with the reference and its named mistakes; atol: how far from 1 a
    sum may be (more than 1e-5 only where the scores are so large that float32 rounds them by more).
    """
    B, t, m = w.shape
    ones = lambda x: torch.allclose(x, torch.ones_like(x), atol=atol)      # noqa: E731
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
            leak = (w[~valid & live[..., None]] != 0).any()
            if leak and edge == "masked-largest":
                f.fail("masked keys that hold the largest scores still get weight: a finite penalty added to the "
                       "scores (say -100 or -1e4) does not outweigh a large score. Replace masked scores with "
                       "torch.finfo(dtype).min (masked_fill), so that they get weight exactly 0.")
            if not leak:
                f.fail("a row whose positions are all masked should give all zeros (filling masked scores with a "
                       "large negative number gives that row uniform weights: multiply by the mask afterwards).")
            if final:
                f.fail("masked positions (mask False) must get weight exactly 0.")
        if not ones(rows[live]) and unmasked is not None and torch.allclose(w, unmasked * valid):
            f.fail("the weights were zeroed after the softmax without renormalizing: mask the scores before it.")
    if not ones(rows[live]) and edge == "masked-largest":
        f.fail("where the masked keys hold the largest scores, the allowed keys' weights vanish and the rows no "
               "longer sum to 1: the masked scores were not replaced before the softmax. Either a finite penalty "
               "was added to them (say -100 or -1e4, which does not outweigh a large score), or the softmax ran "
               "over every key and was renormalized over the allowed ones afterwards (their exp underflows to 0, "
               "and a floor such as clamp_min(1e-30) stops renormalizing). Replace masked scores with "
               "torch.finfo(dtype).min before the softmax.")
    if final and not ones(rows[live]):
        if edge.startswith("for large scores"):
            f.fail(f"each row of weights must sum to 1, but not {edge}: exp overflows, or underflows to 0, unless "
                   "the row maximum is subtracted before it (torch.softmax does this for you). Do not clamp or "
                   "rescale the scores instead.")
        f.fail("each row of weights must sum to 1 over the m key positions (the allowed ones, with a mask)"
               + (f" {edge}" if edge else "") + ".")


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
    # Tensors created off the inputs' device (where this function runs in this process: a student's own
    # kernel, not the grader's bridge).
    if in_process(fn):
        meta_probe(f, [Q3, K3, V3])
        meta_probe(f, [Q3, K3, V3, pad])


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


# (B, t, m, d_k, d_v): batch 1, m == t, d_k == d_v once each, every other size distinct; batch, t and m of
# the first case are no size of the second (an error that names them then names a size kept from it).
ATTENTION_SIZES = [(2, 3, 5, 6, 8), (1, 4, 7, 6, 9), (3, 6, 4, 5, 2), (2, 5, 3, 4, 4), (2, 4, 4, 3, 5)]


def _seed(g) -> int:
    """A seed for a cotangent, drawn from the check's generator (so from its `seed`)."""
    return int(torch.randint(2**31 - 1, (1,), generator=g))


def _magnitude(Q, K, mask=None) -> float:
    """The largest sum |q||k| behind an allowed score: the scale of the rounding a correct answer may differ by."""
    S = Q.detach().abs() @ K.detach().abs().transpose(-2, -1)                      # (B, t, m)
    if mask is not None:
        S = S.masked_fill(~torch.broadcast_to(mask, S.shape), 0)
    return max(1.0, S.max().item()) if S.numel() else 1.0


def _compare(f, ref, q, K, V, mask, C, w, kind: str, unmasked=None):
    """The student's (C, weights) against the reference's, within a tolerance derived from the dtype and the
    scores' size; on a mismatch, the usual mistakes are named."""
    want_C, want_w = ref.qkv_attention(q, K, V, mask)
    d_k, d_v = K.shape[-1], V.shape[-1]
    S = _magnitude(q, K, mask)
    tol_w = derived_tolerance(q.dtype, S)
    tol_C = derived_tolerance(q.dtype, S * max(1.0, V.abs().max().item()))
    mistakes = _attention_mistakes(ref, q, K, V, mask, d_k, d_v)
    late = ("the weights were zeroed after the softmax without renormalizing: mask the scores before it",
            lambda: None if mask is None else ref.qkv_attention(q, K, V)[1] * mask)
    expect_within(f, w, want_w, f"the weights {kind}",  tol_w,
                  [(what, lambda make=make: _nth(make(), 1)) for what, make in mistakes] + [late])
    expect_within(f, C, want_C, f"C {kind}", tol_C, [
        ("C averages the keys K instead of the values V", lambda: ref.qkv_attention(q, K, K, mask)[0]),
    ] + [(what, lambda make=make: _nth(make(), 0)) for what, make in mistakes])


def _judge(f, ref, q, K, V, mask, C, w, kind: str, unmasked=None, edge: str = ""):
    """The properties first (axes, masks), then the values against the reference and its named mistakes,
    then, for a mismatch nothing names, the property that broke on this kind of input."""
    # Sums of weights may be off by more than 1e-5 only where float32 rounds large scores by more (up to 1e-2).
    atol = min(1e-2, max(1e-5, derived_tolerance(q.dtype, _magnitude(q, K, mask))["atol"]))
    _diagnose_weights(f, w, mask, unmasked, edge, final=edge == "masked-largest", atol=atol)
    try:
        _compare(f, ref, q, K, V, mask, C, w, kind, unmasked)
    except CheckFailed as e:
        if "differ from the expected" not in str(e):
            raise
        _diagnose_weights(f, w, mask, unmasked, edge, atol=atol)
        if edge.startswith("for large scores"):
            raise CheckFailed(f"{e} Only large scores go wrong: do not clamp or rescale the scores to keep exp "
                              "finite; subtract the row maximum (torch.softmax does this for you).") from None
        raise


def check_qkv_attention(fn, *, device=None, seed=0):
    """Hidden: against the reference with no mask and with every kind of mask, then the edges of the contract
    (keyword calls, views, scores x100 and x1000, masked keys holding the largest scores, a single allowed
    key, every mask shape that broadcasts, t = 1 and m = 1), gradients, and tensors created off the inputs'
    device (on the meta device, for a function in this process)."""
    f, ref = Student(fn, "qkv_attention"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
        for B, t, m, d_k, d_v in ATTENTION_SIZES:
            Q, K, V = r(B, t, d_k), r(B, m, d_k), r(B, m, d_v)
            unmasked = ref.qkv_attention(Q, K, V)[1]
            inputs = [(Q, None)] + [(Q, mask) for mask in _masks(g, B, t, m, dev)] + [(Q * 30, None)]
            for q, mask in inputs:
                C, w = _attend(f, q, K, V, mask)
                kind = _describe(mask, B, t, m) + ("" if q is Q else " (large scores: Q x 30)")
                _judge(f, ref, q, K, V, mask, C, w, kind, unmasked if q is Q else None,
                       "" if q is Q else "for large scores (Q x 30)")
            for mask in [None] + _masks(g, B, t, m, dev):
                try:
                    f.expect_gradients([Q, K, V, mask], ref.qkv_attention, seed=_seed(g),
                                       output=lambda r: torch.cat([r[0].flatten(), r[1].flatten()]))
                except CheckFailed as e:
                    dead = mask is not None and not torch.broadcast_to(mask, (B, t, m)).any(-1).all()
                    raise CheckFailed(f"{e} (This happened {_describe(mask, B, t, m)}"
                                      + (": the gradients contain NaN with an all-masked row. Fill masked scores "
                                         "with torch.finfo(dtype).min rather than -inf."
                                         if "NaN" in str(e) and dead else ".") + ")") from None
        _check_edges(f, ref, r, g, dev, dtype)
    if probes_meta(fn, device):
        _check_devices(f, seed)


def _check_edges(f, ref, r, g, dev, dtype):
    """The edges of qkv_attention's contract, each on sizes of its own."""
    # Keywords, as the contract names the parameters (mask given, and left out).
    B, t, m, d_k, d_v = 3, 2, 5, 4, 6
    Q, K, V = r(B, t, d_k), r(B, m, d_k), r(B, m, d_v)
    pad = _masks(g, B, t, m, dev)[0]
    for mask in (pad, None):
        C, w = _attend(f, Q, K, V, mask, keywords=True)
        _judge(f, ref, Q, K, V, mask, C, w, f"called with keywords {_describe(mask, B, t, m)}")
    # Views: transposed, sliced and permuted inputs, and a transposed (t, m) mask.
    B, t, m, d_k, d_v = 2, 4, 6, 3, 5
    Q = r(B, d_k, t).transpose(1, 2)
    K = r(B, m, d_k + 2)[..., 1:d_k + 1]
    V = r(d_v, B, m).permute(1, 2, 0)
    shared = (r(m, t) > 0).T
    shared[:, 0] = True
    for mask in (None, shared):
        C, w = _attend(f, Q, K, V, mask)
        _judge(f, ref, Q, K, V, mask, C, w, f"for inputs that are views (not contiguous) {_describe(mask, B, t, m)}")
    # Scores of large magnitude (x100 in float32, x1000 in float64: both past exp's overflow): without a
    # mask here, with one after the masked keys that hold the largest scores (so that a finite penalty is
    # named there, not here).
    scale = 100 if dtype == torch.float32 else 1000
    large_edge = f"for large scores (Q x {scale})"
    B, t, m, d_k, d_v = 2, 3, 6, 5, 4
    large = r(B, t, d_k, scale=float(scale)), r(B, m, d_k), r(B, m, d_v)
    large_mask, sizes = _masks(g, B, t, m, dev)[2], (B, t, m)

    def attend_large(mask):
        C, w = _attend(f, *large, mask, edge=large_edge)
        _judge(f, ref, *large, mask, C, w, f"{large_edge} {_describe(mask, *sizes)}", edge=large_edge)
    attend_large(None)
    # Masked keys that hold the largest scores, by 2000 (exp underflows to 0 in both dtypes), the allowed ones
    # all near -2000, and a sequence with a single allowed key: a finite penalty leaves the masked keys on
    # top, a softmax over every key renormalized afterwards gives 0/0 (or 0, with a floor), and masked
    # scores set to 0 before exp(s - max over the allowed keys) overflow.
    B, t, m, d_k, d_v = 3, 4, 6, 5, 3
    Q, K, V = r(B, t, d_k), r(B, m, d_k), r(B, m, d_v)
    allowed = (torch.arange(m) < torch.tensor([1, 3, 5])[:, None])[:, None, :].to(dev)   # (B, 1, m)
    Q[..., -1] = -(2000 ** 0.5)
    K[..., -1] = torch.where(allowed[:, 0], 2000 ** 0.5, 0.0)
    C, w = _attend(f, Q, K, V, allowed, edge="masked-largest")
    _judge(f, ref, Q, K, V, allowed, C, w, "when the masked keys hold the largest scores (one sequence with a "
           "single allowed key)", edge="masked-largest")
    attend_large(large_mask)
    # Every other mask shape that broadcasts to (batch, t, m), whole rows masked by a (batch, t, 1) one.
    B, t, m, d_k, d_v = 2, 3, 5, 4, 6
    Q, K, V = r(B, t, d_k), r(B, m, d_k), r(B, m, d_v)
    rows = r(B, t, 1) > 0
    rows[0, 0, 0], rows[1, 0, 0] = True, False
    for mask in (r(m) > -0.5, r(1, t, m) > -0.5, rows, r(1, 1, m) > -0.5):
        mask[..., 0] = mask[..., 0] | (mask.shape[-1] > 1)
        C, w = _attend(f, Q, K, V, mask)
        _judge(f, ref, Q, K, V, mask, C, w, _describe(mask, B, t, m))
    # One query (t = 1) and one key (m = 1).
    for B, t, m, d_k, d_v in [(2, 1, 6, 3, 4), (3, 5, 1, 2, 4)]:
        Q, K, V = r(B, t, d_k), r(B, m, d_k), r(B, m, d_v)
        for mask in (None, _masks(g, B, t, m, dev)[0]):
            C, w = _attend(f, Q, K, V, mask)
            _judge(f, ref, Q, K, V, mask, C, w, f"for t = {t} and m = {m} {_describe(mask, B, t, m)}")


def _check_devices(f, seed):
    """Every tensor the answer creates follows the inputs' device: the inputs on the meta device."""
    g = generator(seed + 7)
    B, t, m, d_k, d_v = 2, 3, 4, 5, 6
    Q, K, V = randn(g, B, t, d_k), randn(g, B, m, d_k), randn(g, B, m, d_v)
    for mask in (None, _masks(g, B, t, m, "cpu")[0]):
        meta_probe(f, [Q, K, V] + ([] if mask is None else [mask]))


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
        ("masked scores were set to 0 (scores * mask) instead of a very negative number: exp(0) still gives "
         "them weight. Fill them with torch.finfo(dtype).min",
         lambda: None if mask is None else _softmax_of(Q @ K.transpose(-2, -1) * mask, V)),
        ("masked scores were set to 0 (scores * mask) instead of a very negative number, and the weights zeroed "
         "after the softmax: exp(0) still takes its share of each row. Fill them with torch.finfo(dtype).min",
         lambda: None if mask is None else _softmax_of(Q @ K.transpose(-2, -1) * mask, V, mask)),
        ("a mask shared by the batch, (t, m), was indexed by the batch (mask[b] in a loop over the batch): "
         "broadcast it to (batch, t, m) first",
         lambda: ref.qkv_attention(Q, K, V, mask[:Q.shape[0], None, :])
         if mask is not None and tuple(mask.shape) == (Q.shape[1], K.shape[1]) and Q.shape[0] <= Q.shape[1]
         else None),
    ]


def _softmax_of(scores, V, zero=None):
    """(C, weights) from scores, the weights zeroed where `zero` is False."""
    weights = torch.softmax(scores, dim=-1)
    weights = weights if zero is None else weights * zero
    return weights @ V, weights
