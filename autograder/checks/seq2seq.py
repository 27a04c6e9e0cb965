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
from .core import cases, CheckFailed, generator, randn, reference_helpers, Student

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


def _call(f, *args, made="h_0", like="xs"):
    """f(*args), with a hint when tensors of different devices or dtypes met (a state made without them)."""
    try:
        return f(*args)
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


def check_simple_rnn_step(fn, *, device=None, seed=0):
    """Hidden: against the reference; names a swapped stack, a missing tanh or bias, another nonlinearity."""
    f, ref = Student(fn, "simple_rnn_step"), _ref()
    for dev, dtype, g in cases(device, seed):
        for B, d_x, d_h in [(2, 3, 4), (1, 5, 2), (3, 4, 4)]:
            x, h = randn(g, B, d_x, dtype=dtype, device=dev), randn(g, B, d_h, dtype=dtype, device=dev)
            A = randn(g, d_h, d_x + d_h, dtype=dtype, device=dev, scale=0.5)
            b = randn(g, d_h, dtype=dtype, device=dev)
            got = f.expect_tensor(f(x, h, A, b), "the new state", shape=(B, d_h), like=h,
                                  hint="One state: (batch, d_h).")
            pre = x @ A[:, :d_x].T + h @ A[:, d_x:].T + b        # A [x; h] + b, block by block
            f.expect_close(got, ref.simple_rnn_step(x, h, A, b), "the new state", mistakes=[
                ("the stack is [h_{i-1}; x_i] instead of [x_i; h_{i-1}]: the first d_x columns of A meet x_i",
                 lambda: ref.simple_rnn_step(x, h, _swap_blocks(A, d_h), b)),
                ("the tanh is missing", lambda: pre),
                ("the bias b is missing", lambda: ref.simple_rnn_step(x, h, A, torch.zeros_like(b))),
                ("the bias is added after the tanh: it belongs inside, tanh(A [x; h] + b)",
                 lambda: torch.tanh(pre - b) + b),
                ("a sigmoid is used: the SimpleRNN squashes with tanh", lambda: torch.sigmoid(pre)),
                ("a ReLU is used: the SimpleRNN squashes with tanh", lambda: torch.relu(pre)),
            ])
            f.expect_gradients([x, h, A, b], ref.simple_rnn_step)


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


def check_rnn_encode(fn, *, device=None, seed=0):
    """Hidden: against the reference, the student's simple_rnn_step swapped for the reference's."""
    f, ref = Student(fn, "rnn_encode"), _ref()
    with reference_helpers(fn, LESSON, HELPERS):
        for dev, dtype, g in cases(device, seed):
            for B, m, d_x, d_h in [(2, 5, 3, 4), (1, 7, 2, 6), (3, 1, 4, 2), (4, 6, 5, 3)]:
                xs = randn(g, B, m, d_x, dtype=dtype, device=dev)
                A = randn(g, d_h, d_x + d_h, dtype=dtype, device=dev, scale=0.5)
                b = randn(g, d_h, dtype=dtype, device=dev)
                got = _expect_states(f, _call(f, xs, A, b), "hs", B=B, n=m, d=d_h, like=xs, names="h_1..h_m")
                want = ref.rnn_encode(xs, A, b)
                zeros = xs.new_zeros(B, m, d_h)
                f.expect_close(got, want, "hs", mistakes=[
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
                ])
            f.expect_gradients([xs, A, b], ref.rnn_encode)


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


def check_seq2seq_decode(fn, *, device=None, seed=0):
    """Hidden: against the reference, the student's simple_rnn_step swapped for the reference's."""
    f, ref = Student(fn, "seq2seq_decode"), _ref()
    with reference_helpers(fn, LESSON, HELPERS):
        for dev, dtype, g in cases(device, seed):
            for B, t, d_x, d_s in [(2, 4, 3, 5), (1, 6, 2, 3), (3, 1, 4, 2), (4, 5, 6, 7)]:
                s0 = torch.tanh(randn(g, B, d_s, dtype=dtype, device=dev))
                xs = randn(g, B, t, d_x, dtype=dtype, device=dev)
                A = randn(g, d_s, d_x + d_s, dtype=dtype, device=dev, scale=0.5)
                b = randn(g, d_s, dtype=dtype, device=dev)
                got = _expect_states(f, _call(f, s0, xs, A, b, made="new tensors", like="s0"), "ss",
                                      B=B, n=t, d=d_s, like=s0, names="s_1..s_t")
                want = ref.seq2seq_decode(s0, xs, A, b)
                off_by_one = "the inputs are off by one: state s_j reads x'_j, which is xs_dec[:, j - 1] (0-based)"
                f.expect_close(got, want, "ss", mistakes=[
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
                ])
            f.expect_gradients([s0, xs, A, b], ref.seq2seq_decode)
