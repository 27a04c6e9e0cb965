"""Checks for lesson 04, time complexity: counting weights and state updates, and log-log slopes.

`quick_check_*` are the visible checks: hand-derivable special cases and properties, no reference.
`check_*` are the hidden checks: the reference from solutions/ on many sizes, named diagnoses of the
usual mistakes (off-by-one counts, a counter of calls instead of weights, a slope on linear axes).
No check here measures time: the slopes are checked on exact synthetic power laws, with and without
a deterministic multiplicative noise, so wall-clock noise can never cost or give a point.
"""
from __future__ import annotations

import itertools
import math
import numbers
from typing import Callable, Sequence

import numpy as np
import torch

from .. import reference
from .core import DTYPES, CheckFailed, Student, devices, generator, quiet, randn

LESSON = "04_time_complexity"


def _ref():
    return reference.load(LESSON)


# --- the counts ------------------------------------------------------------------------------------

def _expect_int(f: Student, got, call: str):
    """A count is a whole number: a Python int (or a numpy integer), never a float, a bool or a tensor."""
    if isinstance(got, numbers.Integral) and not isinstance(got, (bool, np.bool_)):
        return int(got)
    if isinstance(got, (float, np.floating)) and math.isfinite(got) and float(got).is_integer():
        f.fail(f"{call} returned {got!r}, a float: a count is a whole number, so return an int "
               "(halve with // rather than /, or convert with int(...)).")
    if isinstance(got, torch.Tensor):
        f.fail(f"{call} returned a tensor: return a Python int (int(...) or .item()).")
    f.fail(f"{call} should return an int, got {type(got).__name__} {got!r}.")


# A count computed through floats (m * (m + 1) / 2 then int(...), math.prod of floats, np.float64) is
# exact for small sizes only: the hidden cases include sizes above 2**53, where floats lose the last digits.

def _call_count(f: Student, case: tuple, names: list[str], keywords: bool):
    if not keywords:
        return f(*case)
    try:
        return f(**dict(zip(names, case)))
    except CheckFailed as e:
        if "raised TypeError" in str(e) and ("keyword argument" in str(e) or "positional argument" in str(e)):
            f.fail(f"could not be called with the parameter names of the contract, as in {f.name}("
                   f"{', '.join(f'{n}=...' for n in names)}): name the parameters exactly so. ({e})")
        raise


def _expect_counts(f: Student, cases: Sequence[tuple], want: Callable, mistakes: Sequence[tuple[str, Callable]],
                   arg_names: str, huge: Sequence[tuple] = ()):
    """The student's count on every case equals `want(*case)`; else name the mistake consistent with all cases.
    Every other case is called with the contract's keywords. Then `huge` cases, whose counts pass 2**53 (where
    floats lose the last digits) or 2**63 (where numpy and torch integers wrap around), must be exact too."""
    names = arg_names.split()
    got = {}
    for i, case in enumerate(cases):
        call = f"{f.name}({', '.join(f'{n}={v}' for n, v in zip(names, case))})"
        try:
            result = _call_count(f, case, names, keywords=i % 2 == 1)
        except CheckFailed as e:
            if "raised TypeError" in str(e) and "positional argument" in str(e):
                f.fail(f"could not be called by position, as in {f.name}({', '.join(names)}): the contract's "
                       f"parameters are positional (no * before them). ({e})")
            raise
        got[case] = (_expect_int(f, result, call), call)
    wrong = [case for case in cases if got[case][0] != want(*case)]
    if wrong:
        first = wrong[0]
        for description, formula in mistakes:
            if all(got[case][0] == formula(*case) for case in cases):
                f.fail(f"{got[first][1]} returned {got[first][0]}: it looks like {description}.")
        earlier = [c for c in cases[:cases.index(first)] if want(*c) == got[first][0] and want(*c) != want(*first)]
        if earlier:
            f.fail(f"{got[first][1]} returned {got[first][0]}, the count of an earlier call ({got[earlier[0]][1]}): a "
                   "result is kept between calls (a cache keyed on part of the arguments, or a global). Compute the "
                   "count from all the arguments on every call.")
        f.fail(f"{got[first][1]} returned {got[first][0]}, which is not the right count.")
    for case in huge:
        call = f"{f.name}({', '.join(f'{n}={v}' for n, v in zip(names, case))})"
        try:
            result = f(*case)
        except CheckFailed as e:
            if "allocate" in str(e) or "memory" in str(e).lower():
                continue            # it builds a tensor of that size, whose count is exact by construction
            raise
        value, w = _expect_int(f, result, call), want(*case)
        if value == w:
            continue
        if value == (w + 2**63) % 2**64 - 2**63:
            f.fail(f"{call} returned {value}, where the count is {w}: the count overflowed a 64-bit integer. numpy "
                   "and torch integers wrap around silently past 2**63 - 1; compute with Python ints (m * t), which "
                   "never overflow.")
        if abs(value - w) <= 2.0 ** -22 * w:           # float64 or float32 rounding of the right count
            f.fail(f"{call} returned {value}, where the count is {w}: the count went through floats (a /, a float "
                   "factor such as 0.5, or a float tensor), which are exact only up to 2**53. Stay with integers: "
                   "halve with // (m * (m + 1) // 2).")
        f.fail(f"{call} returned {value}, which is not the right count (it is {w}).")


def _drawn_sizes(seed: int, dims: int, n: int = 4) -> list[tuple[int, ...]]:
    """`n` sizes drawn from the hidden check's seed, all distinct and with distinct entries (so a swapped
    m and t shows), small ones and large ones: a count cannot be looked up from the public code."""
    g, sizes = generator(seed), []
    while len(sizes) < n:
        # At most 2000: a correct answer that builds the m x t (or causal m x m) mask and counts it must fit.
        high = (10, 100, 500, 2000)[len(sizes) % 4]
        size = tuple(int(x) for x in torch.randint(2, high, (dims,), generator=g))
        if len(set(size)) == dims and size not in sizes:
            sizes.append(size)
    return sizes


def quick_check_count_attention_weights(fn):
    """Visible: an int; one decoder state costs m weights; each more decoder state costs m more."""
    f = Student(fn, "count_attention_weights")
    for m in (1, 4, 9):
        got = _expect_int(f, f(m, 1), f"count_attention_weights(m={m}, t=1)")
        if got != m:
            f.fail(f"count_attention_weights(m={m}, t=1) returned {got}: one decoder state needs one context "
                   f"vector, and one context vector costs m weights alpha_1..alpha_m (here m = {m}).")
    for m, t in ((3, 4), (6, 2)):
        step = _expect_int(f, f(m, t + 1), f"count_attention_weights(m={m}, t={t + 1})") - \
            _expect_int(f, f(m, t), f"count_attention_weights(m={m}, t={t})")
        if step != m:
            f.fail(f"going from t={t} to t={t + 1} decoder states adds {step} weights: every decoder state "
                   f"computes its own m = {m} weights (they are never reused).")


def check_count_attention_weights(fn, *, device=None, seed=0):
    """Hidden: against the reference on many (m, t), all distinct; names the off-by-one counts."""
    f, ref = Student(fn, "count_attention_weights"), _ref()
    _expect_counts(f, [(1, 1), (1, 6), (9, 1), (6, 6), *_drawn_sizes(seed, 2)],
                   ref.count_attention_weights, [
        ("m + t, the number of state updates of a plain Seq2Seq: with attention every one of the t decoder "
         "states computes m weights", lambda m, t: m + t),
        ("m + 1 weights per decoder state: only the m encoder states h_1..h_m get a weight", lambda m, t: (m + 1) * t),
        ("t + 1 context vectors: the decoder computes one context vector per state update, t in all",
         lambda m, t: m * (t + 1)),
        ("t - 1 context vectors: the first state s_0 = h_m needs its weights too (they build c_0)",
         lambda m, t: m * (t - 1)),
        ("m - 1 weights per decoder state: every one of h_1..h_m gets a weight", lambda m, t: (m - 1) * t),
        ("m and t swapped in a formula that is not symmetric", lambda m, t: t * t),
        ("m·m: the count depends on the target length t too", lambda m, t: m * m),
        ("m(m+1)/2, the count of SimpleRNN + self-attention", lambda m, t: m * (m + 1) // 2),
    ], "m t", huge=[(2**62 + 1, 3)])


def quick_check_count_rnn_steps(fn):
    """Visible: an int; one source and one target token make two updates; each token adds one."""
    f = Student(fn, "count_rnn_steps")
    got = _expect_int(f, f(1, 1), "count_rnn_steps(m=1, t=1)")
    if got != 2:
        f.fail(f"count_rnn_steps(m=1, t=1) returned {got}: the encoder computes h_1 from h_0 = 0 (one update), "
               "the decoder computes s_1 from s_0 = h_1 (one update). h_0 and s_0 are given, not computed.")
    for (m, t), (m2, t2), what in (((5, 3), (6, 3), "source token"), ((5, 3), (5, 4), "target token")):
        step = _expect_int(f, f(m2, t2), f"count_rnn_steps(m={m2}, t={t2})") - \
            _expect_int(f, f(m, t), f"count_rnn_steps(m={m}, t={t})")
        if step != 1:
            f.fail(f"one more {what} (from m={m}, t={t} to m={m2}, t={t2}) adds {step} state updates: "
                   "a plain Seq2Seq updates its state once per token.")


def check_count_rnn_steps(fn, *, device=None, seed=0):
    """Hidden: against the reference on many (m, t); names the off-by-one counts."""
    f, ref = Student(fn, "count_rnn_steps"), _ref()
    _expect_counts(f, [(1, 1), (1, 6), (9, 1), (6, 6), *_drawn_sizes(seed, 2)],
                   ref.count_rnn_steps, [
        ("one update too few: the encoder makes m updates (h_1..h_m) and the decoder t (s_1..s_t)",
         lambda m, t: m + t - 1),
        ("one update too many: h_0 = 0 (or s_0 = h_m) is given, not computed", lambda m, t: m + t + 1),
        ("two updates too many: h_0 = 0 and s_0 = h_m are given, not computed", lambda m, t: m + t + 2),
        ("m·t, the number of attention weights: a plain Seq2Seq updates each state once, O(m + t)",
         lambda m, t: m * t),
        ("only the decoder's t updates: the encoder's m updates count too", lambda m, t: t),
        ("only the encoder's m updates: the decoder's t updates count too", lambda m, t: m),
        ("max(m, t): the encoder and the decoder run one after the other, so their updates add up",
         lambda m, t: max(m, t)),
    ], "m t")


def quick_check_count_self_attention_weights(fn):
    """Visible: an int; state 1 attends to itself only, state 2 to two positions, state m to m."""
    f = Student(fn, "count_self_attention_weights")
    got = _expect_int(f, f(1), "count_self_attention_weights(m=1)")
    if got != 1:
        f.fail(f"count_self_attention_weights(m=1) returned {got}: h_1 attends to i = 1..1, itself, with one "
               "weight (alpha = 1, so c_1 = h_1). A position attends to itself.")
    for m in (2, 5):
        step = _expect_int(f, f(m), f"count_self_attention_weights(m={m})") - \
            _expect_int(f, f(m - 1), f"count_self_attention_weights(m={m - 1})")
        if step != m:
            f.fail(f"going from m={m - 1} to m={m} adds {step} weights: the new state h_{m} attends to "
                   f"j = 1..{m}, itself included, so it computes {m} weights.")


def check_count_self_attention_weights(fn, *, device=None, seed=0):
    """Hidden: against the reference on many m; names the diagonal left out, the full square, a missing 1/2."""
    f, ref = Student(fn, "count_self_attention_weights"), _ref()
    _expect_counts(f, [(1,), (2,), (3,), *_drawn_sizes(seed, 1)],
                   ref.count_self_attention_weights, [
        ("m(m-1)/2, a position that does not attend to itself: h_j attends to i = 1..j, itself included",
         lambda m: m * (m - 1) // 2),
        ("m·m, every state attending to all m positions: h_j attends only to i <= j", lambda m: m * m),
        ("m(m+1), the sum 1 + 2 + ... + m without the halving", lambda m: m * (m + 1)),
        ("a count that includes h_0: positions run i = 1..j, h_0 = 0 gets no weight",
         lambda m: (m + 1) * (m + 2) // 2),
        ("the first state left out: h_1 computes one weight (alpha = 1, c_1 = h_1), which counts too",
         lambda m: m * (m + 1) // 2 - 1),
    ], "m", huge=[(2**27 + 1,)])


# --- CountingScore ---------------------------------------------------------------------------------

class _Probe:
    """The score function the checks wrap: records what it received and returns, with a parameter W."""

    def __init__(self, W, max_calls: int = 64, max_m: int = 64):
        self.W, self.calls, self.max_calls, self.max_m = W, [], max_calls, max_m

    def __call__(self, h, s, *extra, **kwargs):
        # Bounded before anything is computed: a counter that calls score_fn with shapes of its own
        # (say h of (1, 10**6, d) and s of (10**6, d)) must not make the grader broadcast into gigabytes.
        if len(self.calls) >= self.max_calls:
            raise CheckFailed(f"CountingScore called score_fn more than {self.max_calls} times: call it exactly "
                              "once per call of the counter.")
        d_h, d_s = self.W.shape                                          # s @ W.T is (B, d_h)
        if not (isinstance(h, torch.Tensor) and isinstance(s, torch.Tensor)) or h.dim() != 3 or s.dim() != 2 \
                or h.shape[0] != s.shape[0] or h.shape[2] != d_h or s.shape[1] != d_s or h.shape[1] > self.max_m \
                or h.shape[0] > self.max_m:
            what = lambda x: tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise CheckFailed(f"CountingScore called score_fn with arguments of shapes {what(h)} and {what(s)}, "
                              "not the (batch, m, d_h) and (batch, d_s) it was called with: pass the arguments "
                              "through unchanged.")
        if extra or kwargs:
            self.extra = (extra, kwargs)
        scores = -((h - (s @ self.W.T)[:, None, :]) ** 2).sum(-1)       # (B, m): an alignment no lesson grades
        self.calls.append((h, s, scores))
        return scores


def _get_count(f: Student, counter, when: str) -> int:
    try:
        count = counter.count
    except NotImplementedError:
        raise CheckFailed(f"{f.name} is not implemented yet: replace `raise NotImplementedError()` "
                          "with your code.") from None
    except Exception as e:
        f.fail(f"reading .count {when} raised {type(e).__name__}: {e}. Set self.count = 0 in __init__.")
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        if isinstance(count, torch.Tensor):
            f.fail(f".count {when} is a tensor: keep it a Python int (add scores.numel(), an int).")
        f.fail(f".count {when} should be an int, got {type(count).__name__} {count!r}.")
    return int(count)


def _stub_guard(fn: Callable, what: str) -> Callable:
    """`fn`, reporting a NotImplementedError as `what` not implemented (a method stub of the class)."""
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            raise CheckFailed(f"{what} is not implemented yet: replace `raise NotImplementedError()` "
                              "with your code.") from None
    return call


def _counting(counter) -> Student:
    """The student's counter instance, called with care."""
    return Student(_stub_guard(counter, "CountingScore.__call__"), "CountingScore")


def _new_counter(f: Student, score_fn):
    counter = Student(_stub_guard(f.fn, "CountingScore.__init__"), f.name)(score_fn)
    if not callable(counter):
        f.fail("CountingScore(score_fn) should be callable like score_fn: define __call__(self, *args).")
    count = _get_count(f, counter, "of a new CountingScore")
    if count != 0:
        shared = "count" in vars(type(counter)) and "count" not in getattr(counter, "__dict__", {})
        if shared:
            f.fail("a new CountingScore starts at .count = "
                   f"{count}: the count is shared between instances (a class attribute). Set self.count = 0 "
                   "in __init__ and add to self.count.")
        f.fail(f"a new CountingScore should start at .count = 0, not {count}.")
    return counter


# How a wrong counter's .count grows, call by call, from what each call saw: (B, m, d_h, numel).
_COUNTER_MISTAKES = [
    ("it counts calls, not weights: add the number of elements of every score tensor (scores.numel())",
     lambda calls: list(range(1, len(calls) + 1))),
    ("only the first call was counted: add to the count at every call",
     lambda calls: [calls[0][3]] * len(calls)),
    ("the count is replaced at every call instead of added to: use self.count += ...",
     lambda calls: [c[3] for c in calls]),
    ("it counts m per call, ignoring the batch: a (batch, m) score tensor holds batch·m weights",
     lambda calls: list(itertools.accumulate(c[1] for c in calls))),
    ("it counts one per sequence of the batch (len(scores)): each sequence has m weights",
     lambda calls: list(itertools.accumulate(c[0] for c in calls))),
    ("it counts the elements of h, not of the scores score_fn returned",
     lambda calls: list(itertools.accumulate(c[0] * c[1] * c[2] for c in calls))),
    ("the count is recomputed as the number of calls times the last call's m: add each call's scores.numel() "
     "to the count", lambda calls: [(i + 1) * c[1] for i, c in enumerate(calls)]),
]


def _run_calls(f: Student, counter, probe: _Probe, inputs, expected: Sequence[int] | None):
    """Call the counter on every (h, s); check pass-through, then the count after every call."""
    counted = _counting(counter)
    seen, counts = [], []
    for h, s in inputs:
        before = len(probe.calls)
        got = counted(h, s)
        made = len(probe.calls) - before
        if made != 1:
            f.fail(f"one call of the counter called score_fn {made} times: call it exactly once and return "
                   "its result.")
        h_in, s_in, scores = probe.calls[-1]
        if h_in.shape != h.shape or s_in.shape != s.shape or not (torch.equal(h_in, h) and torch.equal(s_in, s)):
            f.fail("score_fn did not receive the arguments the counter was called with: pass them through "
                   "unchanged and in the same order.")
        if got is None:
            f.fail("calling the counter returned None: it must return the scores score_fn returned.")
        if not isinstance(got, torch.Tensor) or got.shape != scores.shape or got.dtype != scores.dtype \
                or got.device != scores.device or not torch.equal(got, scores):
            f.fail("calling the counter must return exactly what score_fn returned (same tensor, unchanged).")
        seen.append((h.shape[0], h.shape[1], h.shape[2], scores.numel()))
        counts.append(_get_count(f, counter, f"after {len(seen)} call(s)"))
    if expected is None:
        expected = list(itertools.accumulate(c[3] for c in seen))
    if counts != list(expected):
        for description, model in _COUNTER_MISTAKES:
            if counts == model(seen):
                f.fail(f"wrong .count: {description}.")
        shapes = ", ".join(f"({b}, {m})" for b, m, _, _ in seen)
        f.fail(f"wrong .count after calls returning scores of shapes {shapes}: it should be the total number "
               "of elements of all the score tensors returned so far.")


def quick_check_CountingScore(fn):
    """Visible: starts at 0, counts batch·m per call, returns the scores unchanged, one count per instance."""
    f = Student(fn, "CountingScore")
    g = generator(4)
    d_h = 4
    probe = _Probe(randn(g, d_h, 3))
    counter = _new_counter(f, probe)
    inputs = [(randn(g, 2, 5, d_h), randn(g, 2, 3)), (randn(g, 1, 3, d_h), randn(g, 1, 3)),
              (randn(g, 3, 6, d_h), randn(g, 3, 3))]
    _run_calls(f, counter, probe, inputs, expected=None)
    other = _new_counter(f, probe)
    _run_calls(f, other, probe, inputs[:1], expected=None)


def _toy_decode(hs, score_fn, t, W):
    """A decoder loop from the counter's point of view: t states, new weights from each (batch 1 or more)."""
    s = hs[:, -1]                                                       # s_0 = h_m
    for _ in range(t):
        alpha = torch.softmax(score_fn(hs, s), dim=-1)                  # (B, m)
        c = (alpha.unsqueeze(1) @ hs).squeeze(1)                        # (B, d)
        s = torch.tanh(s @ W.T + c)                                     # (B, d)
    return s


def check_CountingScore(fn, *, device=None, seed=0):
    """Hidden: counts against the reference's, on every device and dtype; separate instances; a decode of
    one sequence counts m·t; autograd flows through the counter unchanged."""
    f, ref = Student(fn, "CountingScore"), _ref()
    for i, (dev, dtype) in enumerate(itertools.product(devices(device), DTYPES)):
        g = generator(seed + 101 * i)
        d_h = 5
        W = randn(g, d_h, d_h, dtype=dtype, device=dev, scale=0.5)
        shapes = [(3, 7), (1, 4), (2, 9), (3, 7), (1, 1)]
        inputs = [(randn(g, B, m, d_h, dtype=dtype, device=dev), randn(g, B, d_h, dtype=dtype, device=dev))
                  for B, m in shapes]
        # Expected counts from the reference wrapper on the same calls.
        ref_counter, expected = ref.CountingScore(_Probe(W)), []
        for h, s in inputs:
            ref_counter(h, s)
            expected.append(ref_counter.count)
        probe = _Probe(W)
        a, b = _new_counter(f, probe), _new_counter(f, _Probe(W))
        _run_calls(f, a, probe, inputs, expected)
        if _get_count(f, b, "of a second CountingScore") != 0:
            f.fail("using one CountingScore changed the count of another: the count is shared between "
                   "instances (a class attribute?). Set self.count = 0 in __init__.")
        _new_counter(f, _Probe(W))

        # Built with the contract's keyword, CountingScore(score_fn=...).
        try:
            Student(_stub_guard(f.fn, "CountingScore.__init__"), f.name)(score_fn=_Probe(W))
        except CheckFailed as e:
            if "raised TypeError" in str(e) and "keyword argument" in str(e):
                f.fail(f"could not be built with the parameter name of the contract, CountingScore(score_fn=...): "
                       f"name the parameter score_fn. ({e})")
            raise
        # Called with the contract's keyword names, as score_fn(h=..., s=...) would be.
        probe = _Probe(W)
        counter = _new_counter(f, probe)
        h, s = inputs[2]
        try:
            got = _counting(counter)(h=h, s=s)
        except CheckFailed as e:
            f.fail(f"called with keywords, counter(h=h, s=s), it failed ({e}): pass *args and **kwargs through "
                   "to score_fn.")
        if len(probe.calls) != 1 or not isinstance(got, torch.Tensor) or not torch.equal(got, probe.calls[-1][2]):
            f.fail("called with keywords, counter(h=h, s=s), it must call score_fn once with the same arguments "
                   "and return its scores: pass *args and **kwargs through.")
        if _get_count(f, counter, "after a call with keywords") != probe.calls[-1][2].numel():
            f.fail("called with keywords, counter(h=h, s=s), the count must grow by the number of scores, as with "
                   "a positional call.")

        # Decoding one sequence (batch 1) of t states over m source positions computes m·t weights.
        for B, m, t in [(1, 6, 4), (1, 3, 7), (2, 5, 3)]:
            hs = torch.tanh(randn(g, B, m, d_h, dtype=dtype, device=dev))
            counter = _new_counter(f, _Probe(W))
            with torch.no_grad():
                _toy_decode(hs, _counting(counter), t, W)
            want = B * ref.count_attention_weights(m, t)
            if _get_count(f, counter, "after a decode") != want:
                what = "one sequence" if B == 1 else f"a batch of {B} sequences"
                f.fail(f"decoding {what} of t={t} states over m={m} source positions should count "
                       f"{'m·t' if B == 1 else 'batch·m·t'} weights.")

        # Autograd flows through the counter as through score_fn itself.
        h, s = inputs[0]
        grads = []
        for wrap in (lambda p: _counting(_new_counter(f, p)), lambda p: p):
            leaves = [x.detach().clone().requires_grad_(True) for x in (h, s, W)]
            out = wrap(_Probe(leaves[2]))(leaves[0], leaves[1])
            if not out.requires_grad:
                f.fail("the scores the counter returns carry no gradient: return them as score_fn returned "
                       "them (no .detach(), .item() or torch.no_grad()).")
            (out * randn(generator(seed), *out.shape, dtype=dtype, device=dev)).sum().backward()
            grads.append([x.grad for x in leaves])
        for mine, theirs in zip(*grads):
            if mine is None or not torch.allclose(mine, theirs):
                f.fail("gradients through the counter differ from those through score_fn: return its scores "
                       "unchanged.")


# --- the log-log slope -----------------------------------------------------------------------------

def _as_float(f: Student, got, inputs: str) -> float:
    if isinstance(got, torch.Tensor):
        f.fail(f"returned a torch.Tensor ({inputs}): return a Python float, e.g. float(slope) or slope.item().")
    if isinstance(got, np.ndarray):
        f.fail(f"returned a numpy array of shape {got.shape} ({inputs}): return the slope alone as a Python "
               "float, e.g. float(slope).")
    if isinstance(got, (bool, np.bool_)) or not isinstance(got, numbers.Real):
        f.fail(f"should return a float, got {type(got).__name__} ({inputs}).")
    value = float(got)
    if not math.isfinite(value):
        f.fail(f"returned {value} ({inputs}): sizes and times are positive, so their logs are finite.")
    return value


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol * (1 + abs(b))


def _call_slope(f: Student, sizes, times, inputs: str, keywords: bool = False) -> float:
    """Call with the given containers (by keyword: sizes=..., times=...); numpy arrays and lists must come back
    unmodified."""
    copies = [np.array(x, copy=True) if isinstance(x, np.ndarray) else list(x) if isinstance(x, list) else None
              for x in (sizes, times)]
    try:
        got = f(sizes=sizes, times=times) if keywords else f(sizes, times)
    except CheckFailed as e:
        if keywords and "raised TypeError" in str(e) and "keyword argument" in str(e):
            f.fail("could not be called with the parameter names of the contract, as in loglog_slope(sizes=..., "
                   f"times=...): name the parameters exactly so. ({e})")
        raise CheckFailed(str(e) if "not implemented" in str(e) else f"{e} (with {inputs})") from None
    for x, c in zip((sizes, times), copies):
        if c is not None and not np.array_equal(np.asarray(x), np.asarray(c)):
            f.fail(f"the input was modified in place ({inputs}): compute new arrays instead.")
    return _as_float(f, got, inputs)


def quick_check_loglog_slope(fn):
    """Visible: time = c·size^k has slope k whatever c; the fit uses all points; lists, arrays, tensors."""
    f = Student(fn, "loglog_slope")
    sizes = [16, 32, 64, 128, 256]
    cases = [
        (sizes, [float(n) for n in sizes], 1.0, "lists, time = size", "time proportional to size has slope 1"),
        (np.array(sizes), 5e-3 * np.array(sizes, dtype=float) ** 3, 3.0, "numpy arrays, time = 0.005·size³",
         "time = c·size^k has slope k: the constant c only shifts the line up or down"),
        (tuple(sizes), (2.5,) * len(sizes), 0.0, "tuples, constant time", "a constant time has slope 0"),
        (torch.tensor(sizes), 7 * torch.tensor(sizes, dtype=torch.float64) ** 0.5, 0.5,
         "torch tensors, time = 7·sqrt(size)", "time = c·size^k has slope k"),
        ([1, 2, 4, 8], [1.0, 4.0, 2.0, 8.0], 0.8, "sizes 1, 2, 4, 8 and times 1, 4, 2, 8",
         "the least-squares line through all four points (log2 sizes 0, 1, 2, 3 against log2 times 0, 2, 1, 3) "
         "has slope 0.8; the first and last points alone would give 1"),
    ]
    for s, t, want, inputs, why in cases:
        got = _call_slope(f, s, t, inputs)
        if not _close(got, want, 1e-5):
            f.fail(f"returned {got:.4g} for {inputs}; expected {want:g}: {why}.")


def _power_law_cases(g: torch.Generator):
    """(sizes, times, noisy) for exact power laws c·size^k, then with a multiplicative noise exp(0.3·z)."""
    # Order is not promised: sizes may come reversed or shuffled (the times follow them).
    size_sets = [[16 * 2 ** i for i in range(6)], [100, 3, 800, 20, 7, 260, 45], [1000, 300, 100, 30, 10],
                 [3, 7, 20, 45, 100, 260, 800], [10, 30, 100, 300, 1000]]
    exponents = [1.0, 2.0, 0.5, 1.37, -0.7, 0.0]
    for noisy in (False, True):
        for i, k in enumerate(exponents):
            sizes = size_sets[i % len(size_sets)]
            c = math.exp(float(torch.randn((), generator=g, dtype=torch.float64)) * 2 - 3)
            z = torch.randn(len(sizes), generator=g, dtype=torch.float64).tolist() if noisy else [0.0] * len(sizes)
            yield sizes, [c * n ** k * math.exp(0.3 * e) for n, e in zip(sizes, z)], noisy


# The containers a student's function must accept, as (how to make sizes, how to make times, description).
_STYLES = [
    (list, list, "lists"),
    (tuple, tuple, "tuples"),
    (lambda x: np.array(x), lambda x: np.array(x, dtype=np.float64), "numpy arrays (int sizes, float times)"),
    (lambda x: torch.tensor(x, dtype=torch.float64), lambda x: torch.tensor(x, dtype=torch.float64),
     "float64 torch tensors"),
    (lambda x: torch.tensor(x), lambda x: torch.tensor(x, dtype=torch.float32),
     "torch tensors (int64 sizes, float32 times)"),
    (list, lambda x: np.array(x, dtype=np.float32), "a list of sizes and a float32 numpy array of times"),
]


def _slope_mistakes(sizes, times):
    """What the usual wrong fits give on these points (all in float64)."""
    x, y = np.asarray(sizes, dtype=np.float64), np.asarray(times, dtype=np.float64)
    lx, ly = np.log(x), np.log(y)
    return [
        ("a slope on linear axes: fit log(time) against log(size), not time against size",
         lambda: np.polyfit(x, y, 1)[0]),
        ("log(time) fitted against the sizes themselves (semi-log axes): take the log of the sizes too",
         lambda: np.polyfit(x, ly, 1)[0]),
        ("the times (not their logs) fitted against log(size): take the log of the times too",
         lambda: np.polyfit(lx, y, 1)[0]),
        ("the intercept of the fitted line (log c), not its slope", lambda: np.polyfit(lx, ly, 1)[1]),
        ("the axes are swapped: fit log(time) (y) against log(size) (x)", lambda: np.polyfit(ly, lx, 1)[0]),
        ("only the first and last points were used: fit a least-squares line through all the points",
         lambda: (ly[-1] - ly[0]) / (lx[-1] - lx[0])),
        ("the mean of the slopes between neighbouring points, not the least-squares slope",
         lambda: np.mean(np.diff(ly) / np.diff(lx))),
        ("the two logs have different bases (log10 on one axis, ln on the other): any base gives the same "
         "slope, as long as both axes use it", lambda: np.polyfit(lx, np.log10(y), 1)[0]),
        ("the two logs have different bases (log10 on one axis, ln on the other): any base gives the same "
         "slope, as long as both axes use it", lambda: np.polyfit(np.log10(x), ly, 1)[0]),
        ("the sizes were sorted without their times (or the times without their sizes): the points come in any "
         "order, and each time belongs to its size; sort the pairs together, or do not sort",
         lambda: np.polyfit(np.sort(lx), ly, 1)[0]),
        ("the sizes were sorted without their times (or the times without their sizes): the points come in any "
         "order, and each time belongs to its size; sort the pairs together, or do not sort",
         lambda: np.polyfit(lx, np.sort(ly), 1)[0]),
    ]


def check_loglog_slope(fn, *, device=None, seed=0):
    """Hidden: against the reference on exact power laws and on power laws with deterministic noise,
    with the inputs given as lists, tuples, numpy arrays and tensors; names the usual wrong fits (the
    one that explains every case, so that fits agreeing on some points are told apart)."""
    f, ref = Student(fn, "loglog_slope"), _ref()
    results = []
    for i, (sizes, times, noisy) in enumerate(_power_law_cases(generator(seed))):
        make_sizes, make_times, style = _STYLES[i % len(_STYLES)]
        inputs = f"{style}, {'noisy' if noisy else 'exact'} power law over {len(sizes)} sizes"
        got = _call_slope(f, make_sizes(sizes), make_times(times), inputs, keywords=i % 4 == 1)
        results.append((got, float(ref.loglog_slope(sizes, times)), sizes, times, inputs))
    wrong = [r for r in results if not _close(r[0], r[1], 1e-4)]
    if not wrong:
        return
    first_inputs = wrong[0][4]
    n_mistakes = len(_slope_mistakes(*results[0][2:4]))
    for k in range(n_mistakes):
        description, explains = None, True
        for got, _, sizes, times, _ in results:
            description, wrong_fit = _slope_mistakes(sizes, times)[k]
            try:
                with quiet():       # np.polyfit warns on stderr for degenerate fits: never in a test cell
                    explains = _close(got, float(wrong_fit()), 1e-4)
            except Exception:
                explains = False
            if not explains:
                break
        if explains:
            f.fail(f"wrong slope ({first_inputs}): it looks like {description}.")
    f.fail(f"wrong slope ({first_inputs}): it should be the least-squares slope of log(time) against log(size).")
