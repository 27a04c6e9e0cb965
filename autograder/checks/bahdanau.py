"""Checks for lesson 02, Bahdanau attention.

`quick_check_*` are the visible checks: tiny inputs and properties, no reference needed.
`check_*` are the hidden checks: the reference from solutions/ on random inputs of distinct sizes,
in float64 and float32, on every device, plus the properties the math promises.
"""
from __future__ import annotations

import itertools

import torch

from .. import reference
from .core import (CheckFailed, call_tracking, cases, derived_tolerance, expect_within, generator, keyword_or_positional,
                   randn, reference_helpers, Student, tanh_magnitude)

LESSON = "02_bahdanau_attention"
HELPERS = ("additive_scores", "dot_scores", "attention_weights", "context_vector", "attention_decoder_step")


def _ref():
    return reference.load(LESSON)


# --- option 1: additive scores ---------------------------------------------------------------------

def quick_check_additive_scores(fn):
    """Visible: shape, and which half of W meets h and which meets s."""
    f = Student(fn, "additive_scores")
    g = generator(0)
    B, m, d_h, d_s, d_a = 2, 5, 4, 3, 6
    h, s = randn(g, B, m, d_h), randn(g, B, d_s)
    W, v = randn(g, d_a, d_h + d_s), randn(g, d_a)
    f.expect_tensor(f(h, s, W, v), "the scores", shape=(B, m), like=h, hint="One score per encoder state: (batch, m).")
    # Only h's columns of W are non-zero: the score of h_i is sum_a v_a tanh(W_a . h_i).
    W_h = torch.cat([W[:, :d_h], torch.zeros(d_a, d_s, dtype=W.dtype)], dim=1)
    f.expect_close(f(h, s, W_h, v), torch.tanh(h @ W[:, :d_h].T) @ v,
                   "the scores when only the first d_h columns of W are non-zero (the [h_i; s_j] order)")
    # Only s's columns are non-zero: every position gets the same score.
    W_s = torch.cat([torch.zeros(d_a, d_h, dtype=W.dtype), W[:, d_h:]], dim=1)
    f.expect_close(f(h, s, W_s, v), (torch.tanh(s @ W[:, d_h:].T) @ v)[:, None].expand(B, m),
                   "the scores when only the last d_s columns of W are non-zero")


def _edge_name(keywords, edge):
    return " ".join(w for w in ("called with keywords" if keywords else "", edge) if w)


def _nan_for_large(f, got, edge, what):
    if edge.startswith("for large") and isinstance(got, torch.Tensor) and got.is_floating_point() \
            and not torch.isfinite(got).all():
        f.fail(f"{what} contains NaN or inf {edge}: a tanh written with exp overflows there (exp(2z) is inf past "
               "z = 355 in float64 and z = 44 in float32, and inf / inf is NaN). Use torch.tanh, which is exact "
               "for any input.")
    return got


def _clamped(pre, make):
    return [(f"the pre-activation is clamped to [-{c}, {c}] before the tanh: tanh({c}) is not 1 in float64. "
             "torch.tanh saturates on its own; leave the pre-activation as it is",
             lambda c=c: make(torch.tanh(pre.clamp(-c, c)))) for c in (5, 10)]


def _judge_additive(f, ref, h, s, W, v, *, keywords=False, edge=""):
    B, m, d_h = h.shape
    d_s = s.shape[1]
    got = keyword_or_positional(f, keywords, dict(batch=B, m=m, d_h=d_h, d_s=d_s, d_a=W.shape[0]),
                                h=h, s=s, W=W, v=v)
    got = _nan_for_large(f, got, edge, "the scores")
    got = f.expect_tensor(got, "the scores", shape=(B, m), like=h, hint="One score per encoder state: (batch, m).")
    want = ref.additive_scores(h, s, W, v)
    z = torch.cat([h, s[:, None].expand(B, m, d_s)], -1)
    pre = z @ W.T
    inner = torch.tanh(pre)
    magnitude = tanh_magnitude(z, W, None, inner) * v.abs().sum().item()
    swapped_W = torch.cat([W[:, d_s:], W[:, :d_s]], dim=1)
    kind = _edge_name(keywords, edge)
    expect_within(f, got, want, "the scores" + (f" {kind}" if kind else ""), derived_tolerance(h.dtype, magnitude), [
        ("the concatenation is [s_j; h_i] instead of [h_i; s_j]", lambda: ref.additive_scores(h, s, swapped_W, v)),
        ("the tanh is missing", lambda: pre @ v),
        ("v is applied inside the tanh: the score is v^T tanh(W [h_i; s_j]), v outside", lambda: torch.tanh(pre @ v)),
        ("the scores were already normalized with softmax (that is attention_weights' job)",
         lambda: torch.softmax(want, -1)),
    ] + _clamped(pre, lambda t: t @ v))


def check_additive_scores(fn, *, device=None, seed=0):
    """Hidden: against the reference on random inputs, every dtype and device, gradients included; then the
    edges: the contract's keywords, views, pre-activations x100 and x1000, m = 1, calls of other sizes."""
    f, ref = Student(fn, "additive_scores"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
        for B, m, d_h, d_s, d_a in [(2, 5, 4, 3, 6), (1, 7, 8, 9, 10), (3, 1, 2, 4, 5)]:
            h, s, W, v = r(B, m, d_h), r(B, d_s), r(d_a, d_h + d_s), r(d_a)
            _judge_additive(f, ref, h, s, W, v)
        B, m, d_h, d_s, d_a = 3, 4, 5, 2, 6
        _judge_additive(f, ref, r(B, m, d_h), r(B, d_s), r(d_a, d_h + d_s), r(d_a), keywords=True)
        B, m, d_h, d_s, d_a = 2, 6, 3, 4, 5
        _judge_additive(f, ref, r(m, B, d_h).transpose(0, 1), r(d_s, B).T, r(d_h + d_s, d_a).T, r(d_a + 2)[1:-1],
                        edge="for inputs that are views (not contiguous)")
        scale = 100.0 if dtype == torch.float32 else 1000.0
        B, m, d_h, d_s, d_a = 2, 5, 4, 3, 6
        _judge_additive(f, ref, r(B, m, d_h), r(B, d_s), r(d_a, d_h + d_s, scale=scale), r(d_a),
                        edge=f"for large pre-activations (W x {scale:g})")
        f.expect_gradients([h, s, W, v], ref.additive_scores)


# --- option 2: dot-product scores ------------------------------------------------------------------

def quick_check_dot_scores(fn):
    """Visible: shape with all sizes distinct, and identity projections give the plain dot product."""
    f = Student(fn, "dot_scores")
    g = generator(1)
    B, m, d_h, d_s, d_k = 2, 5, 4, 3, 6
    h, s = randn(g, B, m, d_h), randn(g, B, d_s)
    f.expect_tensor(f(h, s, randn(g, d_k, d_h), randn(g, d_k, d_s)), "the scores", shape=(B, m), like=h,
                    hint="One score per encoder state: (batch, m).")
    h3, s3, eye = randn(g, B, m, 3), randn(g, B, 3), torch.eye(3, dtype=torch.float64)
    plain = (h3 * s3[:, None, :]).sum(-1)
    f.expect_close(f(h3, s3, eye, eye), plain, "the scores with W_K = W_Q = I (they should be h_i . s_j)",
                   mistakes=[("the scores are divided by sqrt(d_k): option 2 has no scaling", lambda: plain / 3 ** 0.5),
                             ("the scores were already normalized with softmax", lambda: torch.softmax(plain, -1))])


def _judge_dot(f, ref, h, s, W_K, W_Q, *, keywords=False, edge=""):
    B, m, d_h = h.shape
    d_s, d_k = s.shape[1], W_K.shape[0]
    got = keyword_or_positional(f, keywords, dict(batch=B, m=m, d_h=d_h, d_s=d_s, d_k=d_k),
                                h=h, s=s, W_K=W_K, W_Q=W_Q)
    got = f.expect_tensor(got, "the scores", shape=(B, m), like=h, hint="One score per encoder state: (batch, m).")
    want = ref.dot_scores(h, s, W_K, W_Q)
    magnitude = max(((h.abs() @ W_K.abs().T) * (s.abs() @ W_Q.abs().T)[:, None]).sum(-1).max().item(), 1.0)
    kind = _edge_name(keywords, edge)
    expect_within(f, got, want, "the scores" + (f" {kind}" if kind else ""), derived_tolerance(h.dtype, magnitude), [
        ("W_K and W_Q are swapped: keys come from h with W_K, the query from s with W_Q",
         lambda: ref.dot_scores(h, s, W_Q, W_K)),
        ("a transpose is missing: the weights are applied untransposed; W_K h_i is h @ W_K.T",
         lambda: ref.dot_scores(h, s, W_K.T, W_Q.T)),
        ("the scores are divided by sqrt(d_k)" + (" (here also sqrt(d_h))" if d_h == d_k else "")
         + ": option 2 has no scaling", lambda: want / d_k ** 0.5),
        ("the scores are divided by sqrt(d_h), the root of the encoder states' size: option 2 has no scaling",
         lambda: want / d_h ** 0.5),
        ("the scores are divided by sqrt(d_s), the root of the decoder state's size: option 2 has no scaling",
         lambda: want / d_s ** 0.5),
        ("the scores were already normalized with softmax", lambda: torch.softmax(want, -1)),
    ])


def check_dot_scores(fn, *, device=None, seed=0):
    """Hidden: against the reference; a square case tells swapped or untransposed weights apart; then the
    edges: the contract's keywords, views, scores x100 and x1000, m = 1, calls of other sizes."""
    f, ref = Student(fn, "dot_scores"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
        for B, m, d_h, d_s, d_k in [(3, 4, 5, 5, 5), (2, 7, 6, 8, 9), (1, 3, 6, 2, 5), (4, 1, 3, 6, 2)]:
            h, s, W_K, W_Q = r(B, m, d_h), r(B, d_s), r(d_k, d_h), r(d_k, d_s)   # square first: names a swap
            _judge_dot(f, ref, h, s, W_K, W_Q)
        B, m, d_h, d_s, d_k = 3, 6, 2, 4, 5
        _judge_dot(f, ref, r(B, m, d_h), r(B, d_s), r(d_k, d_h), r(d_k, d_s), keywords=True)
        B, m, d_h, d_s, d_k = 2, 5, 3, 6, 4
        _judge_dot(f, ref, r(B, d_h, m).transpose(1, 2), r(B, d_s + 2)[:, 2:], r(d_h, d_k).T, r(d_s, d_k).T,
                   edge="for inputs that are views (not contiguous)")
        scale = 100.0 if dtype == torch.float32 else 1000.0
        B, m, d_h, d_s, d_k = 2, 4, 3, 5, 6
        _judge_dot(f, ref, r(B, m, d_h, scale=scale), r(B, d_s), r(d_k, d_h), r(d_k, d_s),
                   edge=f"for large scores (h x {scale:g})")
        f.expect_gradients([h, s, W_K, W_Q], ref.dot_scores)


# --- softmax normalization with a mask -------------------------------------------------------------

def _diagnose_weights(f, got, scores, mask):
    """Name the usual softmax mistakes from what the weights look like."""
    valid = mask if mask is not None else torch.ones_like(scores, dtype=torch.bool)
    live = valid.any(-1)
    rows_ok = torch.allclose(got.sum(-1)[live], torch.ones_like(got.sum(-1)[live]), atol=1e-5)
    if scores.shape[0] > 1 and torch.allclose(got.sum(0), torch.ones_like(got[0])) and not rows_ok:
        f.fail("the weights sum to 1 over the batch axis: the softmax must run over source positions (dim=-1).")
    if mask is not None and (got[~valid] != 0).any():
        if torch.allclose(got[~valid], torch.softmax(scores, -1)[~valid]):
            f.fail("masked positions get non-zero weight: the mask is ignored.")
        if (got[valid] == 0).all():
            f.fail("True was treated as masked: True means the position may be attended.")
        if (got[~valid & live[:, None]] != 0).any():
            f.fail("masked positions (mask False) must get weight exactly 0.")
        f.fail("a row whose positions are all masked should give all zeros (filling masked scores with "
               "torch.finfo(dtype).min or another large negative number gives that row uniform weights: "
               "zero such rows afterwards, e.g. multiply the weights by the mask).")
    sums = got.sum(-1)
    if not torch.allclose(sums[live], torch.ones_like(sums[live]), atol=1e-5):
        if mask is not None and torch.allclose(got, torch.softmax(scores, -1) * valid):
            f.fail("the weights were zeroed after the softmax without renormalizing: mask the scores before it.")
        f.fail("each row of weights must sum to 1 over the source positions.")
    if (got < 0).any():
        f.fail("weights must be non-negative: did you normalize without exp?")


def quick_check_attention_weights(fn):
    """Visible: rows are probability vectors; equal scores give equal weights; masks give exact zeros."""
    f = Student(fn, "attention_weights")
    scores = randn(generator(2), 3, 5)
    got = f.expect_tensor(f(scores), "the weights", shape=(3, 5), like=scores)
    _diagnose_weights(f, got, scores, None)
    f.expect_close(f(torch.zeros(2, 4, dtype=torch.float64)), torch.full((2, 4), 0.25, dtype=torch.float64),
                   "the weights of equal scores (they should all be 1/m)")
    mask = torch.tensor([[True, True, False, True, False], [False] * 5, [True] * 5])
    got = f(scores, mask)
    if isinstance(got, torch.Tensor) and torch.isnan(got).any():
        f.fail("a row whose positions are all masked gives NaN: it should give all zeros.")
    got = f.expect_tensor(got, "the masked weights", shape=(3, 5), like=scores)
    _diagnose_weights(f, got, scores, mask)
    if (got[1] != 0).any():
        f.fail("a row whose positions are all masked should give all zeros.")


def _judge_weights(f, ref, sc, mk, *, keywords=False, edge=""):
    B, m = sc.shape
    kwargs = dict(scores=sc) if mk is None else dict(scores=sc, mask=mk)
    got = keyword_or_positional(f, keywords, dict(batch=B, m=m), **kwargs)
    kind = _edge_name(keywords, edge)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, m) and not torch.isfinite(got).all():
        live = mk.any(-1) if mk is not None else torch.ones(B, dtype=torch.bool, device=sc.device)
        if mk is not None and (~live).any() and torch.isfinite(got[live]).all():
            f.fail("a row whose positions are all masked gives NaN or inf: it should give all zeros.")
        if edge == "masked-largest":
            f.fail("the weights are NaN or inf where the masked positions hold the largest scores: either the "
                   "softmax ran over every position and was renormalized over the allowed ones afterwards (the "
                   "allowed exps underflow to 0, and 0/0 is NaN), or exp of large scores overflowed. Mask the "
                   "scores before the softmax (masked_fill with torch.finfo(dtype).min) and let torch.softmax "
                   "subtract the row maximum.")
        f.fail("the weights contain NaN or inf for large scores: subtract the row maximum before exp "
               "(torch.softmax does this for you).")
    got = f.expect_tensor(got, "the weights", shape=(B, m), like=sc)
    if edge == "masked-largest":
        valid = mk
        if (got[~valid] != 0).any() and (got[~valid] > 1e-3).any():
            f.fail("masked positions get weight where they hold the largest scores: a finite penalty (scores - 100, "
                   "a fill of -1e4) is not enough when the masked scores are larger still. Fill masked scores with "
                   "torch.finfo(dtype).min, or zero them after a softmax over the allowed positions only.")
        live = valid.any(-1)
        if (got[live].sum(-1) < 0.5).any():
            f.fail("the allowed positions get no weight where the masked positions hold the largest scores (by 40000, "
                   "every allowed score near -20000): either a finite penalty (scores - 100, a fill of -1e4) left the "
                   "masked positions on top before they were zeroed, or the softmax ran over every position and was "
                   "renormalized over the allowed ones afterwards (their exps underflow to 0). Fill masked scores "
                   "with torch.finfo(dtype).min before the softmax.")
    _diagnose_weights(f, got, sc, mk)
    want = ref.attention_weights(sc, mk)
    allowed = sc if mk is None else sc.masked_fill(~mk, 0.0)
    magnitude = max(1.0, 2 * allowed.abs().max().item())
    expect_within(f, got, want, "the weights" + (f" {kind}" if kind else ""), derived_tolerance(sc.dtype, magnitude), [
        ("True was treated as masked: True means the position may be attended",
         lambda: ref.attention_weights(sc, ~mk) if mk is not None else None),
        ("the scores are clamped before the softmax (to keep exp finite): subtract the row maximum instead, as "
         "torch.softmax does", lambda: ref.attention_weights(sc.clamp(-50, 50), mk)),
        ("the scores are clamped before the softmax (to keep exp finite): subtract the row maximum instead, as "
         "torch.softmax does", lambda: ref.attention_weights(sc.clamp(-80, 80), mk)),
    ])
    return got


def _masked_largest(g, dtype, dev):
    """Scores whose masked positions hold the largest values (by 40000), the allowed ones all near -20000, one row
    with a single allowed position, one with none."""
    B, m = 4, 6
    sc = randn(g, B, m, dtype=dtype, device=dev) - 20000.0
    mask = (torch.arange(m) < torch.tensor([1, 3, 5, 0])[:, None]).to(dev)
    sc = torch.where(mask, sc, sc + 40000.0)
    return sc, mask


def check_attention_weights(fn, *, device=None, seed=0):
    """Hidden: against the reference with and without masks, large scores, all-masked rows, gradients; then
    the edges: the contract's keywords, views, masked positions holding the largest scores, m = 1."""
    f, ref = Student(fn, "attention_weights"), _ref()
    for dev, dtype, g in cases(device, seed):
        for B, m in [(4, 7), (1, 3), (3, 9), (2, 1)]:
            scores = randn(g, B, m, dtype=dtype, device=dev, scale=3.0)
            mask = (torch.rand(B, m, generator=g) > 0.4).to(dev)
            mask[0, 0] = True
            if B > 2:
                mask[-1] = False                    # one row with nothing to attend to
            for sc, mk in [(scores, None), (scores, mask), (scores * 300, None)]:
                _judge_weights(f, ref, sc, mk, edge="" if sc is scores else "for large scores (x 300)")
            f.expect_gradients([scores, mask], ref.attention_weights)
        B, m = 3, 5
        scores = randn(g, B, m, dtype=dtype, device=dev, scale=3.0)
        mask = (torch.rand(B, m, generator=g) > 0.3).to(dev)
        mask[:, 0] = True
        _judge_weights(f, ref, scores, mask, keywords=True)
        _judge_weights(f, ref, scores, None, keywords=True)
        views = randn(g, m + 1, B, dtype=dtype, device=dev, scale=3.0)[1:].T
        _judge_weights(f, ref, views, mask.T.contiguous().T, edge="for inputs that are views (not contiguous)")
        sc, mk = _masked_largest(g, dtype, dev)
        _judge_weights(f, ref, sc, mk, edge="masked-largest")


# --- context vector --------------------------------------------------------------------------------

def quick_check_context_vector(fn):
    """Visible: one-hot weights pick one state; uniform weights give the mean."""
    f = Student(fn, "context_vector")
    g = generator(3)
    B, m, d_h = 2, 5, 4
    h = randn(g, B, m, d_h)
    one_hot = torch.zeros(B, m, dtype=h.dtype)
    one_hot[0, 3], one_hot[1, 1] = 1.0, 1.0
    got = f.expect_tensor(f(one_hot, h), "the context vector", shape=(B, d_h), like=h)
    f.expect_close(got, torch.stack([h[0, 3], h[1, 1]]), "the context vector for one-hot weights (it should be that h_i)")
    f.expect_close(f(torch.full((B, m), 1 / m, dtype=h.dtype), h), h.mean(1), "the context vector for uniform weights")


def _judge_context(f, ref, alpha, h, *, keywords=False, edge=""):
    B, m, d_h = h.shape
    got = keyword_or_positional(f, keywords, dict(batch=B, m=m, d_h=d_h), alpha=alpha, h=h)
    if isinstance(got, torch.Tensor) and got.shape == (B, d_h) and not torch.isfinite(got).all() \
            and (alpha.sum(-1) == 0).any():
        f.fail("the context vector is NaN for a row of zero weights (an all-masked row): the weights were "
               "renormalized (divided by their sum, 0/0 there). context_vector takes the weights as they are.")
    got = f.expect_tensor(got, "the context vector", shape=(B, d_h), like=h)
    magnitude = max(1.0, (alpha.abs()[..., None] * h.abs()).sum(1).max().item())
    kind = _edge_name(keywords, edge)
    expect_within(f, got, ref.context_vector(alpha, h), "the context vector" + (f" {kind}" if kind else ""),
                  derived_tolerance(h.dtype, magnitude), [
        ("the weights are ignored: that is the plain mean of h", lambda: h.mean(1)),
        ("the weights are ignored: that is the plain sum of h", lambda: h.sum(1)),
        ("the weights were renormalized: context_vector takes them as they are (they already sum to 1, or they "
         "are zero for a fully masked row)", lambda: ref.context_vector(alpha / alpha.sum(-1, keepdim=True), h)),
    ])


def check_context_vector(fn, *, device=None, seed=0):
    """Hidden: against the reference on random probability vectors; then the edges: the contract's keywords,
    views, states x1000, m = 1, a row of zero weights (an all-masked row), calls of other sizes."""
    f, ref = Student(fn, "context_vector"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
        for B, m, d_h in [(2, 5, 4), (1, 3, 6), (3, 6, 2), (4, 1, 3)]:
            alpha, h = torch.softmax(r(B, m), -1), r(B, m, d_h)
            _judge_context(f, ref, alpha, h)
        B, m, d_h = 3, 4, 5
        _judge_context(f, ref, torch.softmax(r(B, m), -1), r(B, m, d_h), keywords=True)
        B, m, d_h = 2, 6, 3
        _judge_context(f, ref, torch.softmax(r(m, B), 0).T, r(d_h, m, B).permute(2, 1, 0),
                       edge="for inputs that are views (not contiguous)")
        B, m, d_h = 3, 5, 4
        alpha = torch.softmax(r(B, m), -1)
        alpha[1] = 0.0                                      # the weights of an all-masked row
        _judge_context(f, ref, alpha, r(B, m, d_h, scale=1000.0), edge="for large states (x 1000) and a row of "
                       "zero weights (an all-masked row)")
        f.expect_gradients([torch.softmax(r(B, m), -1), r(B, m, d_h)], ref.context_vector)


# --- one decoder step ------------------------------------------------------------------------------

def quick_check_attention_decoder_step(fn):
    """Visible: shape, and which block of A' multiplies x', s_{j} and c_{j} (the [x'; s; c] order)."""
    f = Student(fn, "attention_decoder_step")
    g = generator(4)
    B, d_x, d_s, d_h = 2, 3, 4, 5
    x, s, c = randn(g, B, d_x), randn(g, B, d_s), randn(g, B, d_h)
    A, b = randn(g, d_s, d_x + d_s + d_h), randn(g, d_s)
    f.expect_tensor(f(x, s, c, A, b), "the new state", shape=(B, d_s), like=s)
    f.expect_close(f(x, s, c, torch.zeros_like(A), b), torch.tanh(b).expand(B, d_s),
                   "the new state when A' = 0 (it should be tanh(b'))")
    blocks = {"x'": (0, d_x, x), "s": (d_x, d_x + d_s, s), "c": (d_x + d_s, d_x + d_s + d_h, c)}
    for name, (lo, hi, part) in blocks.items():
        A_part = torch.zeros_like(A)
        A_part[:, lo:hi] = A[:, lo:hi]
        f.expect_close(f(x, s, c, A_part, b), torch.tanh(part @ A[:, lo:hi].T + b),
                       f"the new state when only the {name} block of A' is non-zero (columns {lo}..{hi - 1})")


def _judge_decoder_step(f, ref, x, s, c, A, b, *, keywords=False, edge=""):
    B, d_x, d_s, d_h = x.shape[0], x.shape[1], s.shape[1], c.shape[1]
    got = keyword_or_positional(f, keywords, dict(batch=B, d_x=d_x, d_s=d_s, d_h=d_h),
                                x=x, s_prev=s, c_prev=c, A_prime=A, b_prime=b)
    got = _nan_for_large(f, got, edge, "the new state")
    got = f.expect_tensor(got, "the new state", shape=(B, d_s), like=s)
    z = torch.cat([x, s, c], -1)
    pre = z @ A.T
    parts = {"x'": x, "s": s, "c": c}
    orders = [o for o in itertools.permutations(parts) if o != ("x'", "s", "c")]
    want = ref.attention_decoder_step(x, s, c, A, b)
    kind = _edge_name(keywords, edge)
    expect_within(f, got, want, "the new state" + (f" {kind}" if kind else ""),
                  derived_tolerance(x.dtype, tanh_magnitude(z, A, b, want)), [
        ("the tanh is missing", lambda: pre + b),
        ("the bias b' is missing", lambda: torch.tanh(pre)),
    ] + [(f"the concatenation order is [{'; '.join(o)}] instead of [x'; s; c]",
          lambda o=o: torch.tanh(torch.cat([parts[n] for n in o], -1) @ A.T + b)) for o in orders]
      + _clamped(pre + b, lambda t: t))


def check_attention_decoder_step(fn, *, device=None, seed=0):
    """Hidden: against the reference; names a wrong concatenation order, a missing tanh or bias; then the
    edges: the contract's keywords, views, pre-activations x100 and x1000, calls of other sizes."""
    f, ref = Student(fn, "attention_decoder_step"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
        for B, d_x, d_s, d_h in [(2, 3, 4, 5), (1, 7, 8, 9)]:
            x, s, c = r(B, d_x), r(B, d_s), r(B, d_h)
            A, b = r(d_s, d_x + d_s + d_h), r(d_s)
            _judge_decoder_step(f, ref, x, s, c, A, b)
        f.expect_gradients([x, s, c, A, b], ref.attention_decoder_step)
        B, d_x, d_s, d_h = 3, 2, 5, 4
        _judge_decoder_step(f, ref, r(B, d_x), r(B, d_s), r(B, d_h), r(d_s, d_x + d_s + d_h), r(d_s), keywords=True)
        B, d_x, d_s, d_h = 2, 4, 3, 6
        _judge_decoder_step(f, ref, r(d_x, B).T, r(B, d_s + 1)[:, 1:], r(d_h, B).T, r(d_x + d_s + d_h, d_s).T,
                            r(d_s + 2)[2:], edge="for inputs that are views (not contiguous)")
        scale = 100.0 if dtype == torch.float32 else 1000.0
        B, d_x, d_s, d_h = 3, 3, 4, 2
        _judge_decoder_step(f, ref, r(B, d_x), r(B, d_s), r(B, d_h), r(d_s, d_x + d_s + d_h, scale=scale),
                            r(d_s, scale=scale), edge=f"for large pre-activations (A' and b' x {scale:g})")


# --- the whole decoder -----------------------------------------------------------------------------

class RecordingScore:
    """A score function that remembers every (h, s) it was called with: the check's probe.

    Bounded before anything is computed: at most `max_calls` calls, each with h of (batch, m, d) and s of
    (batch, d) for the W it was made with and sizes of at most `max_size`, so an answer that calls it
    with shapes of its own (say (1, 10**6, d) against (10**6, d)) cannot make the grader broadcast
    into gigabytes.
    """

    def __init__(self, W, max_calls: int = 64, max_size: int = 64):
        self.W, self.calls, self.max_calls, self.max_size = W, [], max_calls, max_size

    def __call__(self, h, s):
        if len(self.calls) >= self.max_calls:
            raise CheckFailed(f"score_fn was called more than {self.max_calls} times: call it once per decoder step.")
        d_h, d_s = self.W.shape[0], self.W.shape[1]
        ok = isinstance(h, torch.Tensor) and isinstance(s, torch.Tensor) and h.dim() == 3 and s.dim() == 2 \
            and h.shape[0] == s.shape[0] and h.shape[2] == d_h and s.shape[1] == d_s \
            and max(h.shape + s.shape) <= self.max_size
        if not ok:
            what = lambda x: tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise CheckFailed(f"score_fn was called with h of shape {what(h)} and s of shape {what(s)}: it takes "
                              f"all the encoder states hs (batch, m, {d_h}) and one decoder state (batch, {d_s}).")
        self.calls.append((h.detach(), s.detach()))
        # Negative squared distance after a fixed linear map: an alignment no lesson grades.
        return -((h - (s @ self.W.T)[:, None, :]) ** 2).sum(-1)


def _decode_inputs(g, B, m, t, d, d_x, dtype=torch.float64, device="cpu"):
    hs = torch.tanh(randn(g, B, m, d, dtype=dtype, device=device))
    xs = randn(g, B, t, d_x, dtype=dtype, device=device)
    A, b = randn(g, d, d_x + 2 * d, dtype=dtype, device=device, scale=0.5), randn(g, d, dtype=dtype, device=device)
    return hs, xs, A, b, randn(g, d, d, dtype=dtype, device=device)


def _diagnose_decode(f, score, hs, ss, t):
    """Name the usual decoder mistakes from what it passed to score_fn and what it returned."""
    calls = score.calls
    if t > 1 and len(calls) == 1:
        f.fail("score_fn was called once: the weights must be recomputed for every decoder state "
               "(the weights used for c_0 are not reused for c_1).")
    if len(calls) != t:
        f.fail(f"score_fn should be called once per decoder step ({t} times for t={t}), not {len(calls)} times.")
    h0, s0 = calls[0]
    if h0.shape != hs.shape or not torch.equal(h0, hs.detach()):
        f.fail("score_fn should receive all the encoder states hs, shape (batch, m, d_h).")
    if not torch.allclose(s0, hs[:, -1].detach()):
        if torch.allclose(s0, ss[:, 0].detach()):
            f.fail("the first weights come from the new state s_1: c_0 must be computed from s_0 = h_m, "
                   "before the update.")
        if torch.allclose(s0, torch.zeros_like(s0)):
            f.fail("the decoder starts from zeros: s_0 is h_m, the last encoder state.")
        if torch.allclose(s0, hs[:, 0].detach()):
            f.fail("the decoder starts from h_1: s_0 is h_m, the last encoder state.")
        f.fail("the first weights should be computed from s_0 = h_m, the last encoder state.")
    if torch.allclose(ss[:, 0], hs[:, -1]):
        f.fail("ss starts with s_0: it should hold the new states s_1..s_t.")
    for j in range(1, t):
        _, s_j = calls[j]
        if not torch.allclose(s_j, ss[:, j - 1].detach()):
            if torch.allclose(s_j, ss[:, j].detach()):
                f.fail(f"the weights of step {j} come from the new state s_{j + 1}: c_j must be computed from the "
                       f"previous state s_j, before the update.")
            f.fail(f"the weights of step {j} should be computed from s_{j}, the state the previous step returned.")


def quick_check_attention_decode(fn):
    """Visible: shapes, one score_fn call per step starting from s_0 = h_m, rows of weights sum to 1."""
    f = Student(fn, "attention_decode")
    B, m, t, d, d_x = 2, 6, 4, 5, 3
    hs, xs, A, b, W = _decode_inputs(generator(5), B, m, t, d, d_x)
    score = RecordingScore(W)
    with reference_helpers(fn, LESSON, HELPERS):
        result = f(hs, xs, A, b, score)
    ss, weights = f.expect_tuple(result, 2, "(ss, weights)")
    f.expect_tensor(ss, "ss", shape=(B, t, d), like=hs, hint="It holds s_1..s_t: (batch, t, d_s).")
    f.expect_tensor(weights, "weights", shape=(B, t, m), like=hs, hint="Row j holds the weights that built c_j: (batch, t, m).")
    _diagnose_decode(f, score, hs, ss, t)
    if not torch.allclose(weights.sum(-1), torch.ones(B, t, dtype=hs.dtype)):
        f.fail("each row of weights should sum to 1 over the m source positions.")


def _judge_decode(f, ref, hs, xs, A, b, W, *, keywords=False, edge=""):
    B, m, d = hs.shape
    t = xs.shape[1]
    score = RecordingScore(W)
    sizes = dict(batch=B, m=m, t=t, d=d, d_x=xs.shape[2])
    try:
        result = keyword_or_positional(f, keywords, sizes, hs=hs, xs_dec=xs, A_prime=A, b_prime=b, score_fn=score)
    except CheckFailed as e:
        if "__call__() got an unexpected keyword argument" in str(e):
            raise CheckFailed(f"{e} score_fn is called with keywords of its own: its contract is score_fn(h, s), "
                              "so call it by position, score_fn(hs, s_j), or as score_fn(h=hs, s=s_j).") from None
        raise
    ss, weights = f.expect_tuple(result, 2, "(ss, weights)")
    if isinstance(weights, torch.Tensor) and m != t and tuple(weights.shape) == (B, m, t):
        f.fail(f"weights have shape (batch, m, t) = {(B, m, t)}: they are stacked along the wrong axis. Row j holds "
               "the weights of step j over the m source positions: torch.stack(rows, dim=1) gives (batch, t, m).")
    for got, what, rows in ((ss, "ss", "decoder step"), (weights, "weights", "decoder step")):
        if isinstance(got, torch.Tensor) and m != t and got.dim() == 3 and got.shape[:2] == (B, m):
            f.fail(f"{what} has one row per source position (m = {m}): it holds one row per {rows}, t = {t} of them.")
    f.expect_tensor(ss, "ss", shape=(B, t, d), like=hs, hint="It holds s_1..s_t: (batch, t, d_s).")
    f.expect_tensor(weights, "weights", shape=(B, t, m), like=hs,
                    hint="Row j holds the weights that built c_j: (batch, t, m).")
    _diagnose_decode(f, score, hs, ss, t)
    want_ss, want_w = ref.attention_decode(hs, xs, A, b, RecordingScore(W))
    kind = _edge_name(keywords, edge)
    # The scores reach a few tens: the weights carry their rounding; the states t steps of a tanh recurrence.
    S = max(1.0, max(c[1].abs().max().item() for c in score.calls) * (1 + W.abs().sum(-1).max().item()) ** 2
            + hs.abs().sum(-1).max().item() ** 2)
    tol = derived_tolerance(hs.dtype, S)
    expect_within(f, weights, want_w, "weights" + (f" {kind}" if kind else ""), tol, [
        ("row j holds the weights of step j+1: row j must be the weights that built c_j",
         lambda: torch.cat([want_w[:, 1:], want_w[:, -1:]], 1)),
        ("the weights are stacked along the wrong axis (column j holds step j): row j holds the weights of step j, "
         "torch.stack(rows, dim=1)", lambda: want_w.transpose(1, 2)),
    ])
    prev = torch.cat([hs[:, -1:], want_ss[:, :-1]], dim=1)                    # s_0..s_{t-1}
    context = hs.abs().amax(1, keepdim=True).expand(B, t, d)                    # |c_j| <= max |h_i|
    step = tanh_magnitude(torch.cat([xs.abs(), prev.abs(), context], -1), A, b, want_ss)
    expect_within(f, ss, want_ss, "ss" + (f" {kind}" if kind else ""), derived_tolerance(hs.dtype, t * (step + S)))


def check_attention_decode(fn, *, device=None, seed=0):
    """Hidden: against the reference, with the student's helpers swapped for the reference ones so a wrong
    helper costs only its own points; probes of score_fn name the usual mistakes; then the edges: the
    contract's keywords, views, m == t, t = 1, batch 1, calls of other sizes."""
    f, ref = Student(fn, "attention_decode"), _ref()
    with reference_helpers(fn, LESSON, HELPERS):
        for dev, dtype, g in cases(device, seed):
            for B, m, t, d, d_x in [(2, 6, 4, 5, 3), (1, 3, 7, 4, 2), (3, 5, 1, 2, 4), (2, 4, 4, 3, 5)]:
                hs, xs, A, b, W = _decode_inputs(g, B, m, t, d, d_x, dtype, dev)
                _judge_decode(f, ref, hs, xs, A, b, W, edge="with m == t" if m == t else "")
            f.expect_gradients([hs, xs, A, b, RecordingScore(W)], ref.attention_decode,
                               output=lambda r: torch.cat([r[0].flatten(), r[1].flatten()]))
            B, m, t, d, d_x = 3, 2, 3, 4, 6
            hs, xs, A, b, W = _decode_inputs(g, B, m, t, d, d_x, dtype, dev)
            _judge_decode(f, ref, hs, xs, A, b, W, keywords=True)
            B, m, t, d, d_x = 2, 5, 3, 3, 2
            hs, xs, A, b, W = _decode_inputs(g, B, m, t, d, d_x, dtype, dev)
            _judge_decode(f, ref, hs.transpose(0, 1).contiguous().transpose(0, 1), xs.transpose(1, 2).contiguous()
                          .transpose(1, 2), A.T.contiguous().T, b, W, edge="for inputs that are views (not contiguous)")
