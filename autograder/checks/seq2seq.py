"""Checks for lesson 01, Seq2Seq and its shortcoming: the SimpleRNN step, the encoder, the decoder.

`quick_check_*` are the visible checks: tiny inputs, hand-derivable special cases and properties
(which block of A meets which input, what depends on what), no reference needed.
`check_*` are the hidden checks: the reference from solutions/ on random inputs of distinct sizes,
in float64 and float32, on every device, with the usual mistakes named. The composites (`rnn_encode`,
`seq2seq_decode`) are checked with the student's `simple_rnn_step` swapped for the reference's, so a
wrong step costs only its own points.
"""
from __future__ import annotations


import torch

from .. import reference
from .core import (cases, CheckFailed, derived_tolerance, expect_within, generator, keyword_or_positional, randn,
                   reference_helpers, Student, tanh_magnitude)

LESSON = "01_seq2seq_shortcomings"
HELPERS = ("simple_rnn_step",)


def _ref():
    return reference.load(LESSON)


def _swap_blocks(A, d_first):
    """A with its first d_first columns moved to the end: A [x; h] with it equals the original A applied to [h; x]."""
    return torch.cat([A[:, d_first:], A[:, :d_first]], dim=1)


def _expect_states(f, got, what, *, B, n, d, like, names):
    """A stack of n states (B, n, d); the usual wrong layouts named before the generic shape message."""
    if isinstance(got, (list, tuple)) and got and all(isinstance(s, torch.Tensor) for s in got):
        f.fail(f"{what} should be one tensor (batch, {n}, {d}), got a {type(got).__name__} of tensors: "
               "stack them with torch.stack(..., dim=1).")
    if isinstance(got, torch.Tensor) and n > 1 and tuple(got.shape) == (B, d):
        f.fail(f"{what} has shape {(B, d)}: it looks like only the last state was returned. Return all the "
               f"states {names} stacked as (batch, {n}, {d}).")
    if isinstance(got, torch.Tensor) and B != n and tuple(got.shape) == (n, B, d):
        f.fail(f"{what} has shape {(n, B, d)}: the states are stacked along the first axis. Tensors are "
               "batch first: stack along dim=1.")
    if isinstance(got, torch.Tensor) and got.dim() == 3 and tuple(got.shape) in ((B, n - 1, d), (B, n + 1, d)):
        f.fail(f"{what} should hold the {n} states {names}, got {got.shape[1]}: one state per input, "
               "the initial state not among them.")
    return f.expect_tensor(got, what, shape=(B, n, d), like=like, hint=f"It holds the states {names}.")


def _call(f, thunk, made="h_0", like="xs"):
    """thunk() (a call of f), with a hint when tensors of different devices or dtypes met (a state made without them)."""
    try:
        return thunk()
    except CheckFailed as failure:
        if "same device" not in str(failure) and "same dtype" not in str(failure):
            raise
        raise CheckFailed(f"{failure} Create {made} on the inputs' device and with their dtype: "
                          f"{like}.new_zeros(...) does both.") from None


def _changed(a, b):
    return not torch.allclose(a, b, rtol=1e-9, atol=1e-12)


# --- one SimpleRNN step ----------------------------------------------------------------------------

def quick_check_simple_rnn_step(fn):
    """Visible: shape, A = 0 gives tanh(b), and which block of A meets x and which meets h_prev."""
    f = Student(fn, "simple_rnn_step")
    g = generator(10)
    B, d_x, d_h = 2, 3, 4
    x, h = randn(g, B, d_x), randn(g, B, d_h)
    A, b = randn(g, d_h, d_x + d_h, scale=0.5), randn(g, d_h)
    f.expect_tensor(f(x, h, A, b), "the new state", shape=(B, d_h), like=h, hint="One state: (batch, d_h).")
    f.expect_close(f(x, h, torch.zeros_like(A), b), torch.tanh(b).expand(B, d_h),
                   "the new state when A = 0 (it should be tanh(b) for every example)")
    A_x = torch.cat([A[:, :d_x], torch.zeros(d_h, d_h, dtype=A.dtype)], dim=1)
    f.expect_close(f(x, h, A_x, b), torch.tanh(x @ A[:, :d_x].T + b),
                   f"the new state when only the first d_x = {d_x} columns of A are non-zero "
                   "(they meet x_i: the stack is [x_i; h_{i-1}])")
    A_h = torch.cat([torch.zeros(d_h, d_x, dtype=A.dtype), A[:, d_x:]], dim=1)
    f.expect_close(f(x, h, A_h, b), torch.tanh(h @ A[:, d_x:].T + b),
                   f"the new state when only the last d_h = {d_h} columns of A are non-zero (they meet h_{{i-1}})")
    f.expect_close(f(x, h, A_h, torch.zeros_like(b)), torch.tanh(h @ A[:, d_x:].T),
                   "the new state when b = 0")


def _step_mistakes(ref, x, h, A, b, d_x, d_h, pre):
    return [
        ("the stack is [h_{i-1}; x_i] instead of [x_i; h_{i-1}]: the first d_x columns of A meet x_i",
         lambda: ref.simple_rnn_step(x, h, _swap_blocks(A, d_h), b)),
        ("the tanh is missing", lambda: pre),
        ("the bias b is missing", lambda: ref.simple_rnn_step(x, h, A, torch.zeros_like(b))),
        ("the bias is added after the tanh: it belongs inside, tanh(A [x; h] + b)",
         lambda: torch.tanh(pre - b) + b),
        ("a sigmoid is used: the SimpleRNN squashes with tanh", lambda: torch.sigmoid(pre)),
        ("a ReLU is used: the SimpleRNN squashes with tanh", lambda: torch.relu(pre)),
        ("the examples of the batch are mixed: x and h_prev were flattened over the batch before they were "
         "stacked. Concatenate them along the feature axis, torch.cat([x, h_prev], dim=-1)",
         lambda: torch.tanh(torch.cat([x.flatten(), h.flatten()]).reshape(x.shape[0], -1) @ A.T + b)),
    ] + _clamp_mistakes(pre)


def _clamp_mistakes(pre):
    return [(f"the pre-activation is clamped to [-{c}, {c}] before the tanh: tanh({c}) is not 1 in float64. "
             "torch.tanh saturates on its own; leave the pre-activation as it is",
             lambda c=c: torch.tanh(pre.clamp(-c, c))) for c in CLAMPS]


CLAMPS = (5, 10)        # where students clamp a pre-activation "against overflow"


def _nan_for_large(f, got, edge, what):
    """A result with NaN or inf on large inputs only: a tanh written with exp that overflows, named."""
    if edge and isinstance(got, torch.Tensor) and got.is_floating_point() and not torch.isfinite(got).all():
        f.fail(f"{what} contains NaN or inf {edge}: a tanh written with exp overflows there (exp(2z) is inf past "
               "z = 355 in float64 and z = 44 in float32, and inf / inf is NaN). Use torch.tanh, which is exact "
               "for any input.")
    return got


def _judge_step(f, ref, x, h, A, b, *, keywords=False, edge=""):
    B, d_x, d_h = x.shape[0], x.shape[1], h.shape[1]
    got = keyword_or_positional(f, keywords, dict(batch=B, d_x=d_x, d_h=d_h), x=x, h_prev=h, A=A, b=b)
    kind = ("called with keywords" if keywords else "") + (f" {edge}" if edge else "")
    got = _nan_for_large(f, got, edge, "the new state")
    got = f.expect_tensor(got, "the new state", shape=(B, d_h), like=h, hint="One state: (batch, d_h).")
    pre = x @ A[:, :d_x].T + h @ A[:, d_x:].T + b        # A [x; h] + b, block by block
    want = ref.simple_rnn_step(x, h, A, b)
    expect_within(f, got, want, "the new state" + (f" {kind.strip()}" if kind.strip() else ""),
                  derived_tolerance(x.dtype, tanh_magnitude(torch.cat([x, h], -1), A, b, want)),
                  _step_mistakes(ref, x, h, A, b, d_x, d_h, pre))
    return got


def check_simple_rnn_step(fn, *, device=None, seed=0):
    """Hidden: against the reference; names a swapped stack, a missing tanh or bias, another nonlinearity;
    then the edges: the contract's keywords, views, pre-activations x100 (float32) and x1000 (float64),
    batch 1 and d_x == d_h, calls of other sizes, inputs left unmodified (by position and by keyword)."""
    f, ref = Student(fn, "simple_rnn_step"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
        for B, d_x, d_h in [(2, 3, 4), (1, 5, 2), (3, 4, 4)]:
            x, h = r(B, d_x), r(B, d_h)
            A, b = r(d_h, d_x + d_h, scale=0.5), r(d_h)
            _judge_step(f, ref, x, h, A, b)
        f.expect_gradients([x, h, A, b], ref.simple_rnn_step)
        # The contract's keywords, on sizes of their own.
        B, d_x, d_h = 3, 2, 5
        _judge_step(f, ref, r(B, d_x), r(B, d_h), r(d_h, d_x + d_h, scale=0.5), r(d_h), keywords=True)
        # Views: a transposed x, a sliced state, a transposed A.
        B, d_x, d_h = 2, 4, 3
        _judge_step(f, ref, r(d_x, B).T, r(B, d_h + 2)[:, 1:-1], r(d_x + d_h, d_h, scale=0.5).T, r(d_h),
                    edge="for inputs that are views (not contiguous)")
        # Large pre-activations: tanh saturates, exp overflows.
        scale = 100.0 if dtype == torch.float32 else 1000.0
        B, d_x, d_h = 4, 3, 6
        _judge_step(f, ref, r(B, d_x), r(B, d_h), r(d_h, d_x + d_h, scale=0.5 * scale), r(d_h, scale=scale),
                    edge=f"for large pre-activations (A and b x {scale:g})")


# --- the encoder -----------------------------------------------------------------------------------

def quick_check_rnn_encode(fn):
    """Visible: shape, h_1 from x_1 and h_0 = 0, h_i never depends on later inputs, the state is carried."""
    with reference_helpers(fn, LESSON, HELPERS):      # a wrong step costs only its own points
        f = Student(fn, "rnn_encode")
        g = generator(11)
        B, m, d_x, d_h = 2, 5, 3, 4
        xs = randn(g, B, m, d_x)
        A, b = randn(g, d_h, d_x + d_h, scale=0.5), randn(g, d_h)
        hs = _expect_states(f, f(xs, A, b), "hs", B=B, n=m, d=d_h, like=xs, names="h_1..h_m")
        f.expect_close(hs[:, 0], torch.tanh(xs[:, 0] @ A[:, :d_x].T + b),
                       "first state h_1 (from h_0 = 0 it is tanh(A [x_1; 0] + b): h_0 itself is not returned)")
        A_x = torch.cat([A[:, :d_x], torch.zeros(d_h, d_h, dtype=A.dtype)], dim=1)
        f.expect_close(f(xs, A_x, b), torch.tanh(xs @ A[:, :d_x].T + b),
                       "states when the h block of A is zero (then h_i = tanh(A_x x_i + b), in input order)")
        later = xs.clone()
        later[:, 3:] += 1.0
        hs_later = f(later, A, b)
        if _changed(hs_later[:, :3], hs[:, :3]):
            f.fail("changing x_4..x_m changed h_1..h_3: a state may depend only on the inputs read so far.")
        first = xs.clone()
        first[:, 0] += 1.0
        if not _changed(f(first, A, b)[:, -1], hs[:, -1]):
            f.fail("changing x_1 does not change h_m: the state must be carried from one step to the next "
                   "(each step reads the state the previous step returned).")


def _recurrence_tolerance(xs, first, states, A, b):
    """The tolerance of a recurrence's states: a step's rounding (tanh_magnitude) times the number of steps."""
    prev = torch.cat([first[:, None], states[:, :-1]], dim=1)
    n = states.shape[1]
    return derived_tolerance(xs.dtype, n * tanh_magnitude(torch.cat([xs, prev], -1), A, b, states))


def _judge_encode(f, ref, xs, A, b, *, keywords=False, edge=""):
    B, m, d_x = xs.shape
    d_h = A.shape[0]
    got = _call(f, lambda: keyword_or_positional(f, keywords, dict(batch=B, m=m, d_x=d_x, d_h=d_h), xs=xs, A=A, b=b))
    got = _nan_for_large(f, got, edge, "hs")
    got = _expect_states(f, got, "hs", B=B, n=m, d=d_h, like=xs, names="h_1..h_m")
    want = ref.rnn_encode(xs, A, b)
    zeros = xs.new_zeros(B, m, d_h)
    kind = " ".join(w for w in ("called with keywords" if keywords else "", edge) if w)
    expect_within(f, got, want, "hs" + (f" {kind}" if kind else ""), _recurrence_tolerance(xs, zeros[:, 0], want, A, b), [
        ("h_0 is returned and h_m dropped: hs holds h_1..h_m, the states after each input",
         lambda: torch.cat([zeros[:, :1], want[:, :-1]], dim=1)),
        ("the state is not carried: every step starts again from h_0 = 0",
         lambda: ref.simple_rnn_step(xs, zeros, A, b)),
        ("the states are returned in reverse order (h_m first)", lambda: want.flip(1)),
        ("the sequence is read backwards, from x_m to x_1", lambda: ref.rnn_encode(xs.flip(1), A, b)),
        ("the sequence is read backwards, from x_m to x_1",
         lambda: ref.rnn_encode(xs.flip(1), A, b).flip(1)),
        ("the stack is [h_{i-1}; x_i] instead of [x_i; h_{i-1}]",
         lambda: ref.rnn_encode(xs, _swap_blocks(A, d_h), b)),
        ("the bias b is missing", lambda: ref.rnn_encode(xs, A, torch.zeros_like(b))),
    ] + _recurrence_clamps(xs, zeros[:, 0], A, b))
    return got


def _recurrence_clamps(xs, first, A, b):
    """The states of a recurrence whose pre-activations are clamped before the tanh (named mistakes)."""
    def run(c):
        h, out = first, []
        for i in range(xs.shape[1]):
            h = torch.tanh((torch.cat([xs[:, i], h], -1) @ A.T + b).clamp(-c, c))
            out.append(h)
        return torch.stack(out, 1)
    return [(desc, lambda c=c: run(c)) for (desc, _), c in zip(_clamp_mistakes(xs), CLAMPS)]


def check_rnn_encode(fn, *, device=None, seed=0):
    """Hidden: against the reference, the student's simple_rnn_step swapped for the reference's; then the
    edges: the contract's keywords, views, pre-activations x100 and x1000, m = 1, batch 1, calls of other
    sizes, inputs left unmodified."""
    f, ref = Student(fn, "rnn_encode"), _ref()
    with reference_helpers(fn, LESSON, HELPERS):
        for dev, dtype, g in cases(device, seed):
            r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
            for B, m, d_x, d_h in [(2, 5, 3, 4), (1, 7, 3, 6), (3, 1, 4, 2), (4, 6, 5, 5)]:     # the last: d_x == d_h
                xs, A, b = r(B, m, d_x), r(d_h, d_x + d_h, scale=0.5), r(d_h)
                _judge_encode(f, ref, xs, A, b)
            f.expect_gradients([xs, A, b], ref.rnn_encode)
            B, m, d_x, d_h = 2, 3, 5, 2
            _judge_encode(f, ref, r(B, m, d_x), r(d_h, d_x + d_h, scale=0.5), r(d_h), keywords=True)
            B, m, d_x, d_h = 3, 4, 2, 5
            _judge_encode(f, ref, r(m, B, d_x).transpose(0, 1), r(d_x + d_h, d_h, scale=0.5).T, r(d_h + 1)[1:],
                          edge="for inputs that are views (not contiguous)")
            scale = 100.0 if dtype == torch.float32 else 1000.0
            B, m, d_x, d_h = 2, 4, 3, 5
            _judge_encode(f, ref, r(B, m, d_x), r(d_h, d_x + d_h, scale=0.5 * scale), r(d_h, scale=scale),
                          edge=f"for large pre-activations (A and b x {scale:g})")


# --- the decoder -----------------------------------------------------------------------------------

def quick_check_seq2seq_decode(fn):
    """Visible: shape, s_1 from s_0 and x'_1, s_j never depends on later inputs, the state is carried."""
    with reference_helpers(fn, LESSON, HELPERS):      # a wrong step costs only its own points
        f = Student(fn, "seq2seq_decode")
        g = generator(12)
        B, t, d_x, d_s = 2, 4, 3, 5
        s0, xs = randn(g, B, d_s), randn(g, B, t, d_x)
        A, b = randn(g, d_s, d_x + d_s, scale=0.5), randn(g, d_s)
        ss = _expect_states(f, f(s0, xs, A, b), "ss", B=B, n=t, d=d_s, like=s0, names="s_1..s_t")
        if torch.allclose(ss[:, 0], s0):
            f.fail("ss starts with s_0: it should hold the new states s_1..s_t.")
        A_s = torch.cat([torch.zeros(d_s, d_x, dtype=A.dtype), A[:, d_x:]], dim=1)
        s1 = f(s0, xs, A_s, b)[:, 0]
        if torch.allclose(s1, torch.tanh(b).expand(B, d_s)):
            f.fail("the decoder starts from zeros: its first state is s_0, the argument s0.")
        f.expect_close(s1, torch.tanh(s0 @ A[:, d_x:].T + b),
                       "first state s_1 when the x' block of A' is zero (it should be tanh(A'_s s_0 + b'))")
        A_x = torch.cat([A[:, :d_x], torch.zeros(d_s, d_s, dtype=A.dtype)], dim=1)
        f.expect_close(f(s0, xs, A_x, b), torch.tanh(xs @ A[:, :d_x].T + b),
                       "states when the s block of A' is zero (then s_j = tanh(A'_x x'_j + b'): s_j reads x'_j)")
        later = xs.clone()
        later[:, 2:] += 1.0
        if _changed(f(s0, later, A, b)[:, :2], ss[:, :2]):
            f.fail("changing x'_3..x'_t changed s_1 or s_2: state s_j reads x'_j and the inputs before it only.")
        first = xs.clone()
        first[:, 0] += 1.0
        if not _changed(f(s0, first, A, b)[:, -1], ss[:, -1]):
            f.fail("changing x'_1 does not change s_t: the state must be carried from one step to the next.")


def _judge_decode(f, ref, s0, xs, A, b, *, keywords=False, edge=""):
    B, t, d_x = xs.shape
    d_s = A.shape[0]
    sizes = dict(batch=B, t=t, d_x=d_x, d_s=d_s)
    got = _call(f, lambda: keyword_or_positional(f, keywords, sizes, s0=s0, xs_dec=xs, A_dec=A, b_dec=b),
                made="new tensors", like="s0")
    got = _nan_for_large(f, got, edge, "ss")
    got = _expect_states(f, got, "ss", B=B, n=t, d=d_s, like=s0, names="s_1..s_t")
    want = ref.seq2seq_decode(s0, xs, A, b)
    kind = " ".join(w for w in ("called with keywords" if keywords else "", edge) if w)
    off_by_one = "the inputs are off by one: state s_j reads x'_j, which is xs_dec[:, j - 1] (0-based)"
    expect_within(f, got, want, "ss" + (f" {kind}" if kind else ""), _recurrence_tolerance(xs, s0, want, A, b), [
        ("the decoder starts from zeros: its first state is s_0, the argument s0 (h_m in a Seq2Seq)",
         lambda: ref.seq2seq_decode(torch.zeros_like(s0), xs, A, b)),
        ("s_0 is returned and s_t dropped: ss holds the new states s_1..s_t",
         lambda: torch.cat([s0[:, None], want[:, :-1]], dim=1)),
        ("the state is not carried: every step starts again from s_0",
         lambda: ref.simple_rnn_step(xs, s0[:, None].expand(B, t, d_s), A, b)),
        (off_by_one, lambda: ref.seq2seq_decode(s0, xs.roll(1, dims=1), A, b)),
        (off_by_one, lambda: ref.seq2seq_decode(s0, xs.roll(-1, dims=1), A, b)),
        (off_by_one, lambda: ref.seq2seq_decode(
            s0, torch.cat([torch.zeros_like(xs[:, :1]), xs[:, :-1]], dim=1), A, b)),
        ("the decoder inputs are read backwards, from x'_t to x'_1",
         lambda: ref.seq2seq_decode(s0, xs.flip(1), A, b)),
        ("the states are returned in reverse order (s_t first)", lambda: want.flip(1)),
        ("the stack is [s_{j-1}; x'_j] instead of [x'_j; s_{j-1}]",
         lambda: ref.seq2seq_decode(s0, xs, _swap_blocks(A, d_s), b)),
        ("the bias b' is missing", lambda: ref.seq2seq_decode(s0, xs, A, torch.zeros_like(b))),
    ] + _recurrence_clamps(xs, s0, A, b))
    return got


def check_seq2seq_decode(fn, *, device=None, seed=0):
    """Hidden: against the reference, the student's simple_rnn_step swapped for the reference's; then the
    edges: the contract's keywords, views, pre-activations x100 and x1000, t = 1, batch 1, calls of other
    sizes, inputs left unmodified."""
    f, ref = Student(fn, "seq2seq_decode"), _ref()
    with reference_helpers(fn, LESSON, HELPERS):
        for dev, dtype, g in cases(device, seed):
            r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
            for B, t, d_x, d_s in [(2, 4, 3, 5), (1, 6, 2, 3), (3, 1, 4, 2), (4, 5, 6, 7)]:
                s0, xs = torch.tanh(r(B, d_s)), r(B, t, d_x)
                A, b = r(d_s, d_x + d_s, scale=0.5), r(d_s)
                _judge_decode(f, ref, s0, xs, A, b)
            f.expect_gradients([s0, xs, A, b], ref.seq2seq_decode)
            B, t, d_x, d_s = 3, 2, 4, 6
            _judge_decode(f, ref, torch.tanh(r(B, d_s)), r(B, t, d_x), r(d_s, d_x + d_s, scale=0.5), r(d_s),
                          keywords=True)
            B, t, d_x, d_s = 2, 5, 3, 4
            _judge_decode(f, ref, torch.tanh(r(d_s, B)).T, r(t, B, d_x).transpose(0, 1),
                          r(d_x + d_s, d_s, scale=0.5).T, r(d_s + 1)[1:], edge="for inputs that are views (not contiguous)")
            scale = 100.0 if dtype == torch.float32 else 1000.0
            B, t, d_x, d_s = 2, 3, 2, 5
            _judge_decode(f, ref, torch.tanh(r(B, d_s)), r(B, t, d_x), r(d_s, d_x + d_s, scale=0.5 * scale),
                          r(d_s, scale=scale), edge=f"for large pre-activations (A' and b' x {scale:g})")
