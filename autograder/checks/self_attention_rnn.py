"""Checks for lesson 05, SimpleRNN + self-attention (Cheng, Dong & Lapata 2016, LSTM -> SimpleRNN).

`quick_check_*` are the visible checks: tiny inputs, special cases and properties, no reference needed.
`check_*` are the hidden checks: the reference from solutions/ on random inputs of distinct sizes,
in float64 and float32, on every device, plus the properties the math promises: causality, exact
zeros above the diagonal, c_1 = h_1, and probes of score_fn that name the usual mistakes.
"""
from __future__ import annotations

import contextlib

import torch

from .. import reference
from .core import (Bounded, call_with_keywords, cases, CheckFailed, derived_tolerance, earlier_size_hint,
                   keyword_or_positional,
                   expect_within, generator, in_process, meta_probe, probes_meta, randn, reference_helpers,
                   replaced_globals, Student)

LESSON = "05_self_attention_rnn"
NAME = "self_attention_rnn"
HELPERS = ("self_attention_rnn_step",)


def _ref():
    return reference.load(LESSON)


def _close(a, b) -> bool:
    """Equal within the tolerance of the dtype (shapes must match)."""
    if a.shape != b.shape:
        return False
    tol = dict(rtol=1e-7, atol=1e-9) if a.dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    return torch.allclose(a, b, **tol)


# --- one step: h_i = tanh(A [x_i; c_{i-1}] + b) ---------------------------------------------------------

def quick_check_self_attention_rnn_step(fn):
    """Visible: shape, A = 0 gives tanh(b), and which block of A meets x_i and which meets c_{i-1}."""
    f = Student(fn, "self_attention_rnn_step")
    g = generator(50)
    B, d_x, d_h = 2, 3, 4
    x, c = randn(g, B, d_x), randn(g, B, d_h)
    A, b = randn(g, d_h, d_x + d_h), randn(g, d_h)
    f.expect_tensor(f(x, c, A, b), "the new state", shape=(B, d_h), like=x,
                    hint="One state of size d_h per sequence: (batch, d_h).")
    f.expect_close(f(x, c, torch.zeros_like(A), b), torch.tanh(b).expand(B, d_h),
                   "the new state when A = 0 (it should be tanh(b))", mistakes=[
                       ("the tanh is missing", lambda: b.expand(B, d_h)),
                       ("the bias b is missing", lambda: torch.zeros(B, d_h, dtype=b.dtype)),
                   ])
    for name, lo, hi, part in [("x_i", 0, d_x, x), ("c_{i-1}", d_x, d_x + d_h, c)]:
        A_part = torch.zeros_like(A)
        A_part[:, lo:hi] = A[:, lo:hi]
        # [c; x] puts the first d_x entries of c_{i-1} where x_i belongs
        swapped = torch.cat([c, x], -1)[:, lo:hi]
        f.expect_close(f(x, c, A_part, b), torch.tanh(part @ A[:, lo:hi].T + b),
                       f"the new state when only the {name} block of A is non-zero (columns {lo}..{hi - 1}; "
                       "the order is [x_i; c_{i-1}])", mistakes=[
                           ("the concatenation is [c_{i-1}; x_i] instead of [x_i; c_{i-1}]",
                            lambda: torch.tanh(swapped @ A[:, lo:hi].T + b)),
                       ])
    # Tensors created off the inputs' device (in this process only: see _quick_check_layer).
    if in_process(fn):
        meta_probe(f, [x, c, A, b])


def _seed(g) -> int:
    """A seed for a cotangent, drawn from the check's generator (so from its `seed`)."""
    return int(torch.randint(2**31 - 1, (1,), generator=g))


def _step(f, x, c, A, b, *, keywords: bool = False, edge: str = ""):
    """The student's new state, called by position (or with the contract's keywords), checked for its type,
    shape, device and dtype; NaN for large pre-activations is named."""
    B, d_h = x.shape[0], A.shape[0]
    got = keyword_or_positional(f, keywords, dict(batch=B, d_x=x.shape[1], d_h=d_h), x=x, c_prev=c, A=A, b=b)
    if isinstance(got, torch.Tensor) and got.shape == (B, d_h) and not torch.isfinite(got).all() and edge:
        f.fail(f"the new state is NaN or inf {edge}: a hand-written tanh, (exp(2z) - 1) / (exp(2z) + 1), "
               "overflows for large z. Use torch.tanh.")
    squeezed = (" An axis of size 1 is missing (batch 1 here): a .squeeze() without a dim drops every axis of "
                "size 1." if B == 1 and isinstance(got, torch.Tensor) and got.dim() < 2 else "")
    return f.expect_tensor(got, "the new state", shape=(B, d_h), like=x,
                           hint="One state of size d_h per sequence: (batch, d_h)." + squeezed)


def _judge_step(f, ref, x, c, A, b, got, kind: str = "", edge: str = ""):
    """The new state against the reference within a tolerance derived from the dtype and the size of the
    pre-activation; the usual mistakes named."""
    z = torch.cat([x, c], -1)
    pre = z @ A.T
    want = ref.self_attention_rnn_step(x, c, A, b)
    # Rounding moves the pre-activation by up to eps |z| |A| + |b|, and tanh passes that on times 1 - h^2.
    magnitude = ((1 - want.detach() ** 2) * (z.abs() @ A.abs().T + b.abs())).max().item()
    try:
        expect_within(f, got, want, "the new state" + (f" {kind}" if kind else ""),
                      derived_tolerance(x.dtype, magnitude), float64_hint=not edge, mistakes=[
                          ("the concatenation is [c_{i-1}; x_i] instead of [x_i; c_{i-1}]",
                           lambda: torch.tanh(torch.cat([c, x], -1) @ A.T + b)),
                          ("the tanh is missing", lambda: pre + b),
                          ("the bias b is missing", lambda: torch.tanh(pre)),
                          ("the activation is a sigmoid: the SimpleRNN's is tanh", lambda: torch.sigmoid(pre + b)),
                      ] + [(f"the pre-activation is clamped to [-{k}, {k}] before the tanh: do not clamp it "
                            f"(tanh({k}) is not 1 in float64); torch.tanh is exact for any input",
                            lambda k=k: torch.tanh((pre + b).clamp(-k, k))) for k in (5, 10)])
    except CheckFailed as e:
        if edge and "differ from the expected" in str(e):
            raise CheckFailed(f"{e} Only large pre-activations go wrong: do not clamp them (tanh(10) is not 1 in "
                              "float64); torch.tanh is exact there.") from None
        raise


def check_self_attention_rnn_step(fn, *, device=None, seed=0):
    """Hidden: against the reference; names a wrong concatenation order, a missing tanh or bias, a sigmoid; then
    the edges of the contract (keyword calls, views, pre-activations x100, batch 1, d_x == d_h) and tensors
    created off the inputs' device (on the meta device, for a function in this process)."""
    f, ref = Student(fn, "self_attention_rnn_step"), _ref()
    for dev, dtype, g in cases(device, seed):
        r = lambda *shape, scale=1.0: randn(g, *shape, dtype=dtype, device=dev, scale=scale)      # noqa: E731
        for B, d_x, d_h in [(2, 3, 5), (1, 6, 2), (3, 4, 4)]:
            x, c, A, b = r(B, d_x), r(B, d_h), r(d_h, d_x + d_h), r(d_h)
            _judge_step(f, ref, x, c, A, b, _step(f, x, c, A, b))
        f.expect_gradients([x, c, A, b], ref.self_attention_rnn_step, seed=_seed(g))
        # Keywords, as the contract names the parameters.
        B, d_x, d_h = 4, 2, 3
        x, c, A, b = r(B, d_x), r(B, d_h), r(d_h, d_x + d_h), r(d_h)
        _judge_step(f, ref, x, c, A, b, _step(f, x, c, A, b, keywords=True), "called with keywords")
        # Views: a transposed x, a sliced c_prev, a transposed A.
        B, d_x, d_h = 3, 5, 2
        x, c, A, b = r(d_x, B).T, r(B, d_h + 2)[:, 1:d_h + 1], r(d_x + d_h, d_h).T, r(d_h, 2)[:, 1]
        _judge_step(f, ref, x, c, A, b, _step(f, x, c, A, b), "for inputs that are views (not contiguous)")
        # Pre-activations of large magnitude (x100): tanh saturates, a hand-written one overflows.
        B, d_x, d_h = 2, 4, 3
        x, c, A, b = r(B, d_x, scale=100.0), r(B, d_h, scale=100.0), r(d_h, d_x + d_h), r(d_h)
        edge = "for pre-activations of large magnitude (x100)"
        _judge_step(f, ref, x, c, A, b, _step(f, x, c, A, b, edge=edge), edge, edge=edge)
    if probes_meta(fn, device):
        g = generator(seed + 7)
        meta_probe(f, [randn(g, 2, 3), randn(g, 2, 5), randn(g, 5, 8), randn(g, 5)])


# --- the whole layer -------------------------------------------------------------------------------------

class ScoreProbe:
    """A score function that checks how it is called and remembers every call: the checks' probe.

    Its alignment, the negative squared distance between h_j and a fixed linear map of h_i, is one
    no lesson grades, and it is not symmetric: swapped arguments cannot go unnoticed.

    It is bounded before it computes anything: at most `max_calls` calls, and only arguments of the
    shapes the math gives it (h_prefix (batch, i, d_h) with i <= max_len + 1, h_i (batch, d_h), the
    batch and d_h of the layer's inputs). A layer that calls it with shapes of its own, say h_prefix of
    (1, 10**5, d_h) and h_i of (10**5, d_h), would otherwise make the grader broadcast into gigabytes.
    A refused call raises CheckFailed, and keeps the refusal in `refused` (a layer that catches the
    exception still fails: `_diagnose_calls` raises it again).
    """

    def __init__(self, W, *, batch: int | None = None, max_len: int = 16, max_calls: int | None = None,
                 scale: float = 1.0):
        self.W, self.calls, self.scale = W, [], scale
        self.batch, self.max_len = batch, max_len
        self.max_calls = 2 * max_len + 2 if max_calls is None else max_calls
        self.refused = ""

    def _refuse(self, message: str):
        self.refused = self.refused or message
        raise CheckFailed(message)

    def __call__(self, h_prefix, h_i):
        if len(self.calls) >= self.max_calls:
            self._refuse(f"{NAME}: score_fn was called more than {self.max_calls} times in one call of the layer: "
                         "call it once per position j, with h_1..h_j and h_j.")
        if not isinstance(h_prefix, torch.Tensor) or not isinstance(h_i, torch.Tensor):
            self._refuse(f"{NAME}: score_fn should be called with two tensors, score_fn(h_prefix, h_i).")
        if h_prefix.dim() == 2 and h_i.dim() == 3:
            self._refuse(f"{NAME}: the arguments of score_fn are swapped: call score_fn(h_prefix, h_i), the "
                         "states h_1..h_i (batch, i, d_h) first and the new state h_i (batch, d_h) second.")
        d_h = self.W.shape[0]
        batch = h_i.shape[0] if self.batch is None else self.batch
        if (h_prefix.dim() != 3 or h_i.dim() != 2 or h_prefix.shape[0] != batch or h_i.shape[0] != batch
                or batch > 64 or not 1 <= h_prefix.shape[1] <= self.max_len + 1
                or h_prefix.shape[2] != d_h or h_i.shape[1] != d_h):
            self._refuse(f"{NAME}: score_fn(h_prefix, h_i) expects h_prefix of shape (batch, i, d_h) and h_i of "
                         f"shape (batch, d_h), with the batch and d_h of the inputs (here {batch} and {d_h}) and "
                         f"1 <= i <= m; it got {tuple(h_prefix.shape)} and {tuple(h_i.shape)}.")
        self.calls.append((h_prefix.detach().clone(), h_i.detach().clone()))
        return -self.scale * ((h_prefix - (h_i @ self.W.T)[:, None, :]) ** 2).sum(-1)        # (B, i)


def _layer_inputs(g, B, m, d_x, d_h, dtype=torch.float64, device="cpu"):
    xs = randn(g, B, m, d_x, dtype=dtype, device=device)
    A = randn(g, d_h, d_x + d_h, dtype=dtype, device=device, scale=0.7)
    b = randn(g, d_h, dtype=dtype, device=device, scale=0.3)
    W = randn(g, d_h, d_h, dtype=dtype, device=device, scale=0.5)
    return xs, A, b, W


def _run(f, xs, A, b, *score, keywords: bool = False, edge: str = ""):
    """Call the student's function and check the three outputs' types and shapes.

    A probe's refusal wins over whatever the call then did with it (caught it, or raised another error).
    keywords: call it with the contract's names, self_attention_rnn(xs=..., A=..., b=..., score_fn=...);
    edge: the kind of input, for the messages. An error or a shape that names an earlier call's sizes is
    reported as something kept from that call.
    """
    B, m_, d_x = xs.shape
    d_h = A.shape[0]
    sizes = dict(batch=B, m=m_, d_x=d_x, d_h=d_h)
    seen = f.__dict__.setdefault("sizes_seen", [])
    probe = score[0] if score and isinstance(score[0], ScoreProbe) else None
    try:
        if keywords:
            result = call_with_keywords(f, xs=xs, A=A, b=b, **({"score_fn": score[0]} if score else {}))
        else:
            result = f(xs, A, b, *score)
    except CheckFailed as e:
        if probe is not None and probe.refused:
            raise CheckFailed(probe.refused) from None
        hint = earlier_size_hint(str(e), sizes, seen) if "raised" in str(e) else ""
        if hint:
            raise CheckFailed(f"{e}{hint}") from None
        if "ScoreProbe.__call__() got an unexpected keyword argument" in str(e):
            raise CheckFailed(f"{e} score_fn is called with keywords of its own: its contract is "
                              "score_fn(h_prefix, h_i), so call it by position, score_fn(H, h), or with those "
                              "names.") from None
        raise
    if probe is not None and probe.refused:
        raise CheckFailed(probe.refused)
    hs, cs, weights = f.expect_tuple(result, 3, "(hs, cs, weights)")
    for name, out, shape in [("hs", hs, (B, m_, d_h)), ("cs", cs, (B, m_, d_h)), ("weights", weights, (B, m_, m_))]:
        if isinstance(out, torch.Tensor) and tuple(out.shape) != shape:
            earlier = [s for s in seen if tuple(out.shape) == ((s["batch"], s["m"], s["d_h"]) if name != "weights"
                                                                else (s["batch"], s["m"], s["m"]))]
            if earlier:
                f.fail(f"{name} has shape {tuple(out.shape)}, the shape of an earlier call's result, not {shape}: "
                       "something is kept between calls (a buffer cached at module level). Create it from the "
                       "current inputs on every call.")
    if edge and isinstance(weights, torch.Tensor) and weights.shape == (B, m_, m_) \
            and not torch.isfinite(weights).all():
        f.fail(f"the weights contain NaN or inf {edge}: exp overflows or underflows to 0/0. Subtract the row "
               "maximum before exp (torch.softmax does this for you).")
    f.expect_tensor(hs, "hs", shape=(B, m_, d_h), like=xs, hint="It holds h_1..h_m: (batch, m, d_h).")
    f.expect_tensor(cs, "cs", shape=(B, m_, d_h), like=xs, hint="It holds c_1..c_m: (batch, m, d_h).")
    f.expect_tensor(weights, "weights", shape=(B, m_, m_), like=xs,
                    hint="Row j holds the weights of position j over i = 1..m: (batch, m, m).")
    if sizes not in seen:
        seen.append(sizes)
    return hs, cs, weights


def _diagnose_calls(f, probe, hs):
    """Name the usual mistakes from how score_fn was called."""
    calls, m = probe.calls, hs.shape[1]
    if probe.refused:
        raise CheckFailed(probe.refused)
    if not calls:
        f.fail("score_fn was never called: when a score_fn is given, the weights must come from it.")
    if m > 1 and len(calls) == m - 1 and all(prefix.shape[1] == k + 1 for k, (prefix, _) in enumerate(calls)):
        f.fail("no position attends to itself: position j should score h_1..h_j, h_j included (so c_1 = h_1), "
               "and score_fn should be called at every position, the first one too.")
    if len(calls) == 1 and m > 1:
        f.fail("score_fn was called once: the weights must be recomputed for every position j (stale weights).")
    if len(calls) != m:
        f.fail(f"score_fn should be called once per position ({m} times for m={m}), not {len(calls)} times.")
    for k, (prefix, query) in enumerate(calls):
        i = k + 1
        n = prefix.shape[1]
        if n == i - 1:
            f.fail(f"position {i} does not attend to itself: score_fn should see h_1..h_{i} ({i} states, "
                   f"h_{i} included), so that c_1 = h_1.")
        if n == i + 1 and torch.all(prefix[:, 0] == 0):
            f.fail("the states given to score_fn include h_0 = 0: attend over h_1..h_i only.")
        if n > i:
            f.fail(f"position {i} attends to future positions: score_fn should see h_1..h_{i} only (i <= j), "
                   f"got {n} states.")
        if n != i:
            f.fail(f"score_fn should see the {i} states h_1..h_{i} at position {i}; it got {n}.")
        if not _close(prefix, hs[:, :i].detach()):
            f.fail(f"the states given to score_fn at position {i} are not h_1..h_{i} as returned in hs.")
    queries = [(k, query) for k, (_, query) in enumerate(calls) if not _close(query, hs[:, k].detach())]
    if queries:
        if any(k > 0 and _close(query, hs[:, k - 1].detach()) for k, query in queries):
            f.fail("stale query: the weights of position j should be computed from the new state h_j, "
                   "not from h_{i-1}.")
        k = queries[0][0]
        f.fail(f"the second argument of score_fn at position {k + 1} should be the new state h_{k + 1}.")


def _diagnose_start(f, hs, cs):
    """hs and cs hold h_1..h_m and c_1..c_m, not the zero states h_0 and c_0."""
    if (hs[:, 0] == 0).all():
        f.fail("hs starts with h_0 = 0: it should hold h_1..h_m, the states the layer computed.")
    if (cs[:, 0] == 0).all():
        f.fail("cs starts with c_0 = 0 (or c_1 is zero): cs should hold c_1..c_m, and c_1 = h_1.")


def _diagnose_layer(f, xs, A, b, hs, cs, weights, step=None, scores=None, large: bool = False):
    """Name the usual mistakes from the outputs alone.

    step(x, c, A, b): the step equation to test the recurrence with (None: skip that part).
    scores(i): the (B, i+1) scores row i should have been built from (None: skip that part).
    large: the scores are large, so a weight may underflow to exactly 0, the diagonal's too.
    """
    B, m, m2 = weights.shape
    above = torch.triu(weights, diagonal=1)
    below = torch.tril(weights, diagonal=-1)
    if m > 1 and (above != 0).any():
        if (below == 0).all() and (torch.diagonal(weights, dim1=1, dim2=2) != 0).any():
            f.fail("the weights are transposed: row j must hold the weights of position j over i <= j "
                   "(a lower-triangular matrix), not column i.")
        if above.abs().max() < 1e-6:
            f.fail("the weights above the diagonal are tiny but not exactly 0: position j must give exactly 0 "
                   "weight to every i > j. Pad each row with zeros (or mask with -inf or torch.finfo(dtype).min, "
                   "not a modest constant).")
        f.fail("the weights above the diagonal must be exactly 0: position j may not attend to future "
               "positions i > j.")
    if (weights < 0).any():
        f.fail("weights must be non-negative: did you normalize without exp?")
    sums = weights.sum(-1)
    rows_ok = torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    lower = torch.tril(torch.ones(m, m, dtype=weights.dtype, device=weights.device))
    if not rows_ok and B > 1 and torch.allclose(weights.sum(0), lower, atol=1e-5):
        f.fail("the weights sum to 1 over the batch axis: the softmax must run over the positions i = 1..j "
               "(dim=-1).")
    diagonal = torch.diagonal(weights, dim1=1, dim2=2)
    if m > 1 and not large and (diagonal[:, 1:] == 0).all():
        f.fail("no position attends to itself: row j must include i = j (softmax over h_1..h_j).")
    _diagnose_start(f, hs, cs)
    if not _close(cs[:, 0], hs[:, 0]):
        f.fail("c_1 should equal h_1: the first position attends only to itself, with weight 1.")
    if not rows_ok:
        f.fail("each row of weights must sum to 1 over i = 1..j.")
    if not _close(cs, weights @ hs):
        f.fail("cs does not match the weights you return: c_j should be sum_i alpha_ij h_i, "
               "that is weights @ hs.")
    if step is not None and m > 2:
        for i in range(1, m):
            want = step(xs[:, i], cs[:, i - 1], A, b)
            if _close(hs[:, i], want):
                continue
            if i >= 2 and _close(hs[:, i], step(xs[:, i], hs[:, i - 1], A, b)):
                f.fail(f"h_{i + 1} was computed from h_{i}: that is h_{{i-1}} where c_{{i-1}} belongs. "
                       f"The update reads the context: h_i = tanh(A [x_i; c_{{i-1}}] + b).")
            if _close(hs[:, i], step(xs[:, i], torch.zeros_like(cs[:, i - 1]), A, b)):
                f.fail(f"h_{i + 1} ignores the previous context: the state is not carried from step to step "
                       f"(c_{i} must feed h_{i + 1}).")
            f.fail(f"h_{i + 1} should be tanh(A [x_{i + 1}; c_{i}] + b) with the c_{i} you return.")
    if scores is not None and not large:
        for i in range(m):
            s = scores(i)                                        # (B, i+1)
            if _close(weights[:, i, :i + 1], torch.softmax(s, -1)):
                continue
            if weights.dtype == torch.float64 and torch.allclose(weights[:, i, :i + 1], torch.softmax(s, -1),
                                                                 rtol=1e-5, atol=1e-6):
                f.fail(f"row {i + 1} of the weights is right only to float32 precision: part of the computation "
                       "runs in float32. Look for a tensor created without dtype=, .float(), or a float32 "
                       "constant.")
            d_h = hs.shape[-1]
            if _close(weights[:, i, :i + 1], torch.softmax(s / d_h ** 0.5, -1)):
                f.fail("the default scores are divided by sqrt(d_h): the default score_fn is the plain dot "
                       "product h_i^T h_j, with no scaling.")
            f.fail(f"row {i + 1} of the weights should be the softmax of the scores of h_1..h_{i + 1} against "
                   f"h_{i + 1}; with score_fn=None the score is the plain dot product h_i^T h_j.")


def _dot_scores_of(hs):
    """The default scores of row i (0-based): h_j^T h_i for j <= i, from the student's own states."""
    return lambda i: (hs[:, :i + 1] @ hs[:, i].unsqueeze(-1)).squeeze(-1)


def _probe_scores_of(hs, W, scale: float = 1.0):
    return lambda i: ScoreProbe(W, max_len=hs.shape[1], scale=scale)(hs[:, :i + 1], hs[:, i])


def _check_causality(f, xs, A, b, score, hs, cs, weights):
    """Changing x_k must leave everything before position k unchanged."""
    m = xs.shape[1]
    for k in sorted({m // 2, m - 1}):
        xs2 = xs.clone()
        xs2[:, k] = xs2[:, k] + 1.0
        hs2, cs2, w2 = _run(f, xs2, A, b, *score)
        for name, old, new in [("hs", hs, hs2), ("cs", cs, cs2), ("weights", weights, w2)]:
            if not _close(old[:, :k], new[:, :k]):
                f.fail(f"not causal: changing x_{k + 1} changed {name} at an earlier position. Position i may "
                       f"depend only on x_1..x_j (weights over i <= j).")


def quick_check_self_attention_rnn(fn):
    """Visible: shapes, a lower-triangular weight matrix with exact zeros, c_1 = h_1, c_i = sum_j alpha_ij h_j,
    causality, the default dot product, how score_fn is called, and a case that tells c_{i-1} from h_{i-1}."""
    f = Student(fn, NAME)
    with reference_helpers(fn, LESSON, HELPERS):      # a wrong step costs only its own points
        _quick_check_layer(f)


def _quick_check_layer(f):
    g = generator(51)
    B, m, d_x, d_h = 2, 5, 3, 4
    xs, A, b, W = _layer_inputs(g, B, m, d_x, d_h)
    # a score_fn of our own: is it called with h_1..h_i and h_i, once per position?
    probe = ScoreProbe(W, batch=B, max_len=m)
    hs, cs, weights = _run(f, xs, A, b, probe)
    _diagnose_start(f, hs, cs)
    _diagnose_calls(f, probe, hs)
    _diagnose_layer(f, xs, A, b, hs, cs, weights, scores=_probe_scores_of(hs, W))
    # the default score
    hs, cs, weights = _run(f, xs, A, b)
    _diagnose_layer(f, xs, A, b, hs, cs, weights, scores=_dot_scores_of(hs))
    hs_none, _, _ = _run(f, xs, A, b, None)
    f.expect_close(hs_none, hs, "hs with score_fn=None (it should be the default, the plain dot product)")
    # h_1 = tanh(A [x_1; 0] + b): only the x block of A meets x_1.
    f.expect_close(hs[:, 0], torch.tanh(xs[:, 0] @ A[:, :d_x].T + b),
                   "h_1 (it should be tanh(A [x_1; c_0] + b), c_0 = 0)")
    _check_causality(f, xs, A, b, (), hs, cs, weights)
    # c_{i-1} or h_{i-1}? With x ignored (its block of A zero), h_3 = tanh(A_c c_2 + b) and c_2 != h_2.
    A_c = A.clone()
    A_c[:, :d_x] = 0
    hs, cs, weights = _run(f, xs[:, :3], A_c, b)
    want = torch.tanh(cs[:, 1] @ A[:, d_x:].T + b)
    if not _close(hs[:, 2], want):
        if _close(hs[:, 2], torch.tanh(hs[:, 1] @ A[:, d_x:].T + b)):
            f.fail("h_3 was computed from h_2: that is h_{i-1} where c_{i-1} belongs. The update reads the "
                   "context: h_i = tanh(A [x_i; c_{i-1}] + b). (c_1 = h_1, so the two first differ at h_3.)")
        if _close(hs[:, 2], torch.tanh(b).expand_as(hs[:, 2])):
            f.fail("h_3 ignores c_2: the state is not carried from step to step (c_{i-1} must feed h_i).")
        f.fail("h_3 should be tanh(A [x_3; c_2] + b) with the c_2 you return.")
    # batch size 1
    hs1, cs1, w1 = _run(f, xs[:1], A, b)
    _diagnose_layer(f, xs[:1], A, b, hs1, cs1, w1, scores=_dot_scores_of(hs1))
    # Tensors created off the inputs' device (where this function runs in this process: a student's own
    # kernel, not the grader's bridge).
    if in_process(f.fn):
        meta_probe(f, [xs, A, b])
        meta_probe(f, [xs, A, b, ScoreProbe(W.to("meta"), batch=B, max_len=m)])


class _FiniteStep(Bounded):
    """The reference step handed to the layer (bounded like core.Bounded), refusing a NaN or inf argument.

    A layer whose weights turn NaN at one position (exp over- or underflowing) passes a NaN context to the
    next step. Refused here, that is named; answered, the NaN would travel on into every later call.
    """

    def __call__(self, *args, **kwargs):
        for a in [*args, *kwargs.values()]:
            if isinstance(a, torch.Tensor) and a.is_floating_point() and a.device.type != "meta" \
                    and not torch.isfinite(a).all():
                raise CheckFailed(f"{NAME}: self_attention_rnn_step was given a NaN or inf context: the weights of "
                                  "an earlier position were NaN or inf (exp overflows, or underflows to 0/0). "
                                  "Subtract the row maximum before exp (torch.softmax does this for you).")
        return super().__call__(*args, **kwargs)


@contextlib.contextmanager
def _reference_step(fn, max_calls: int):
    """Inside the block, the layer's calls to self_attention_rnn_step go to the reference one, bounded and
    refusing NaN (so a wrong step costs only its own points); where the reference is not at hand, the
    student's own step stays. Like core.reference_helpers, with `_FiniteStep` in the place of Bounded."""
    try:
        step = _FiniteStep(_ref().self_attention_rnn_step, HELPERS[0], max_calls=max_calls)
    except reference.ReferenceUnavailable:
        yield
        return
    try:
        with replaced_globals(fn, {HELPERS[0]: step}):
            yield
    finally:
        step.close()


# (B, m, d_x, d_h): batch 1 once, every size distinct within a case.
LAYER_SIZES = [(2, 5, 3, 4), (1, 4, 6, 3), (3, 7, 2, 5), (2, 3, 4, 4)]     # the last: d_x == d_h


def _layer_case(f, ref, xs, A, b, W, kind: str = "", *, scale: float = 1.0, keywords: bool = False,
                edge: str = "", causality: bool = False):
    """One call of the student's layer (with a probe score of scale `scale`, or the default score when W is
    None), its properties, then its values against the reference within a tolerance derived from the dtype,
    m, A and the size of the scores."""
    B, m, _ = xs.shape
    d_h = A.shape[0]
    probe = (lambda: (ScoreProbe(W, batch=B, max_len=m, scale=scale),)) if W is not None else (lambda: ())
    score = probe()
    hs, cs, weights = _run(f, xs, A, b, *score, keywords=keywords, edge=edge)
    _diagnose_start(f, hs, cs)
    if score:
        _diagnose_calls(f, score[0], hs)
    scores = _probe_scores_of(hs, W, scale) if score else _dot_scores_of(hs)
    _diagnose_layer(f, xs, A, b, hs, cs, weights, step=ref.self_attention_rnn_step, scores=scores, large=bool(edge))
    want_hs, want_cs, want_w = ref.self_attention_rnn(xs, A, b, *probe())
    # Rounding moves a score by up to eps times its size (|h| <= 1: d_h for the dot product, the probe's
    # |h_j - W h_i|^2 times its scale), and the recurrence carries an error through up to m steps of A.
    size = d_h if W is None else scale * d_h * (1 + W.abs().sum(-1).max().item()) ** 2
    magnitude = m * (1 + A.abs().sum(-1).max().item()) * max(1.0, size)
    tol = derived_tolerance(xs.dtype, magnitude)
    try:
        for name, got, want in [("weights", weights, want_w), ("hs", hs, want_hs), ("cs", cs, want_cs)]:
            expect_within(f, got, want, name + (f" {kind}" if kind else ""), tol, float64_hint=not edge)
    except CheckFailed as e:
        if edge and "differ from the expected" in str(e):
            raise CheckFailed(f"{e} Only large scores go wrong: do not clamp or rescale them to keep exp finite; "
                              "subtract the row maximum (torch.softmax does this for you).") from None
        raise
    if causality:
        _check_causality(f, xs, A, b, probe(), hs, cs, weights)


def check_self_attention_rnn(fn, *, device=None, seed=0):
    """Hidden: against the reference with the default score and a probe score, every dtype and device, batch
    size 1, causality, gradients; then the edges of the contract (keyword calls, views, m = 1, a score_fn whose
    scores are x100, repeated sizes) and tensors created off the inputs' device (on the meta device, for a
    function in this process). The student's step is swapped for the reference, so a wrong step costs only
    its own points."""
    f, ref = Student(fn, NAME), _ref()
    # About 150 calls of the layer, m <= 7 steps each: 1500 step calls (shared with the reference when the
    # reference itself is checked) leave room and still bound a layer that loops without end.
    with _reference_step(fn, max_calls=1500):
        for dev, dtype, g in cases(device, seed):
            for B, m, d_x, d_h in LAYER_SIZES:
                xs, A, b, W = _layer_inputs(g, B, m, d_x, d_h, dtype, dev)
                for scored in (W, None):            # causality is the code's, not the dtype's: checked once
                    _layer_case(f, ref, xs, A, b, scored, causality=dtype == torch.float64)
            xs, A, b, W = _layer_inputs(g, 2, 5, 3, 4, dtype, dev)
            f.expect_gradients([xs, A, b], ref.self_attention_rnn, seed=_seed(g),
                               output=lambda r: torch.cat([t.flatten() for t in r]))
            # -|h_j - h_i|^2, bounded: the student's call and the reference's share this probe.
            distance = ScoreProbe(torch.eye(4, dtype=dtype, device=dev), batch=2, max_len=5, max_calls=40)
            f.expect_gradients([xs, A, b, distance], ref.self_attention_rnn, seed=_seed(g),
                               output=lambda r: torch.cat([t.flatten() for t in r]))
            _check_layer_edges(f, ref, g, dev, dtype)
        if probes_meta(fn, device):
            g = generator(seed + 7)
            xs, A, b, W = _layer_inputs(g, 2, 4, 3, 5)
            meta_probe(f, [xs, A, b])
            meta_probe(f, [xs, A, b, ScoreProbe(W.to("meta"), batch=2, max_len=4)])


def _check_layer_edges(f, ref, g, dev, dtype):
    """The edges of the layer's contract, each on sizes of its own."""
    # Keywords, as the contract names the parameters (score_fn given, and left to its default).
    xs, A, b, W = _layer_inputs(g, 3, 4, 5, 2, dtype, dev)
    for scored in (W, None):
        _layer_case(f, ref, xs, A, b, scored, "called with keywords", keywords=True)
    # Views: a transposed xs and a transposed A.
    B, m, d_x, d_h = 2, 6, 4, 3
    xs, A, b, W = _layer_inputs(g, B, m, d_x, d_h, dtype, dev)
    xs, A = xs.transpose(1, 2).contiguous().transpose(1, 2), A.T.contiguous().T
    for scored in (W, None):
        _layer_case(f, ref, xs, A, b, scored, "for inputs that are views (not contiguous)")
    # One position (m = 1): c_1 = h_1, weight 1.
    xs, A, b, W = _layer_inputs(g, 3, 1, 2, 4, dtype, dev)
    for scored in (W, None):
        _layer_case(f, ref, xs, A, b, scored, "for m = 1")
    # A score_fn whose scores are x100 (down to about -5000): exp without the row maximum gives 0/0.
    xs, A, b, W = _layer_inputs(g, 2, 5, 3, 4, dtype, dev)
    edge = "for large scores (a score_fn whose scores are x100)"
    _layer_case(f, ref, xs, A, b, W, edge, scale=100.0, edge=edge)
