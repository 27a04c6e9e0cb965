"""Lesson 05, SimpleRNN + self-attention: the reference against PyTorch's own RNN and attention, and the
checks against the reference and a few wrong answers (called directly, no kernel)."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder import reference
from autograder.checks import self_attention_rnn as checks
from autograder.checks.core import CheckFailed

LESSON = "05_self_attention_rnn"
SIZES = [(2, 5, 3, 4), (1, 4, 6, 2), (3, 7, 2, 5)]       # B, m, d_x, d_h: all distinct per case


@pytest.fixture(scope="module")
def ref():
    return reference.load(LESSON)


def _inputs(B, m, d_x, d_h, *, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(B, m, d_x, generator=g, dtype=dtype)
    A = torch.randn(d_h, d_x + d_h, generator=g, dtype=dtype) * 0.7
    b = torch.randn(d_h, generator=g, dtype=dtype) * 0.3
    return xs.to(device), A.to(device), b.to(device)


def _self_only(h_prefix, h_i):
    """Scores that give all the weight to the newest state: c_i = h_i, a plain SimpleRNN."""
    scores = torch.full(h_prefix.shape[:2], float("-inf"), dtype=h_prefix.dtype, device=h_prefix.device)
    scores[:, -1] = 0.0
    return scores


# --- the reference against PyTorch ----------------------------------------------------------------

@pytest.mark.parametrize("sizes", SIZES)
def test_reference_step_is_an_rnn_cell(ref, device, sizes):
    """Is the reference step nn.RNNCell (tanh) with c_{i-1} in the place of h_{i-1}, A split into
    weight_ih and weight_hh?"""
    B, _, d_x, d_h = sizes
    xs, A, b = _inputs(*sizes, device=device)
    c = torch.randn(B, d_h, dtype=xs.dtype, generator=torch.Generator().manual_seed(1)).to(device)
    cell = nn.RNNCell(d_x, d_h, dtype=xs.dtype).to(device)
    with torch.no_grad():
        cell.weight_ih.copy_(A[:, :d_x])
        cell.weight_hh.copy_(A[:, d_x:])
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
        torch.testing.assert_close(ref.self_attention_rnn_step(xs[:, 0], c, A, b), cell(xs[:, 0], c))


@pytest.mark.parametrize("sizes", SIZES)
def test_reference_attending_only_to_itself_is_nn_rnn(ref, device, sizes):
    """With a score that puts all the weight on the newest state (c_i = h_i), is the layer nn.RNN, and
    are its weights the identity matrix?"""
    B, m, d_x, d_h = sizes
    xs, A, b = _inputs(*sizes, seed=2, device=device)
    rnn = nn.RNN(d_x, d_h, batch_first=True, dtype=xs.dtype).to(device)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(A[:, :d_x])
        rnn.weight_hh_l0.copy_(A[:, d_x:])
        rnn.bias_ih_l0.copy_(b)
        rnn.bias_hh_l0.zero_()
        want, _ = rnn(xs)
    hs, cs, weights = ref.self_attention_rnn(xs, A, b, _self_only)
    torch.testing.assert_close(hs, want)
    torch.testing.assert_close(cs, want)
    torch.testing.assert_close(weights, torch.eye(m, dtype=xs.dtype, device=device).expand(B, m, m))


@pytest.mark.parametrize("sizes", SIZES)
def test_reference_contexts_are_causal_sdpa(ref, device, sizes):
    """Given its own states, are the reference's contexts F.scaled_dot_product_attention(hs, hs, hs,
    is_causal=True, scale=1.0), and its weights those of the same attention (V = I)?"""
    B, m, _, _ = sizes
    xs, A, b = _inputs(*sizes, seed=3, device=device)
    hs, cs, weights = ref.self_attention_rnn(xs, A, b)
    torch.testing.assert_close(cs, F.scaled_dot_product_attention(hs, hs, hs, is_causal=True, scale=1.0))
    eye = torch.eye(m, dtype=hs.dtype, device=device).expand(B, m, m)
    torch.testing.assert_close(weights, F.scaled_dot_product_attention(hs, hs, eye, is_causal=True, scale=1.0))


def test_reference_weights_have_exact_zeros_above_the_diagonal(ref):
    """Are the reference's weights exactly 0 above the diagonal, in float32 and float64, with rows summing
    to 1 and c_1 = h_1?"""
    for dtype in (torch.float32, torch.float64):
        xs, A, b = _inputs(3, 6, 2, 5, seed=4, dtype=dtype)
        hs, cs, weights = ref.self_attention_rnn(xs, A, b)
        assert (torch.triu(weights, diagonal=1) == 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6, dtype=dtype))
        assert torch.equal(cs[:, 0], hs[:, 0])


def test_reference_gradients_match_nn_rnn(ref):
    """With the self-only score, do gradients through the reference equal those through nn.RNN?"""
    B, m, d_x, d_h = 2, 5, 3, 4
    xs, A, b = _inputs(B, m, d_x, d_h, seed=5)
    cot = torch.randn(B, m, d_h, dtype=xs.dtype, generator=torch.Generator().manual_seed(6))
    x1 = xs.clone().requires_grad_()
    (ref.self_attention_rnn(x1, A, b, _self_only)[0] * cot).sum().backward()
    rnn = nn.RNN(d_x, d_h, batch_first=True, dtype=xs.dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(A[:, :d_x])
        rnn.weight_hh_l0.copy_(A[:, d_x:])
        rnn.bias_ih_l0.copy_(b)
        rnn.bias_hh_l0.zero_()
    x2 = xs.clone().requires_grad_()
    (rnn(x2)[0] * cot).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


# --- the checks against the reference and wrong answers -------------------------------------------

def test_checks_pass_the_reference(ref):
    """Do the visible and hidden checks pass the reference solutions?"""
    checks.quick_check_self_attention_rnn_step(ref.self_attention_rnn_step)
    checks.check_self_attention_rnn_step(ref.self_attention_rnn_step)
    checks.quick_check_self_attention_rnn(ref.self_attention_rnn)
    checks.check_self_attention_rnn(ref.self_attention_rnn)


def test_step_with_h_and_c_swapped_fails():
    """Does a step that concatenates [c; x] lose its points, with the order named?"""
    def step(x, c_prev, A, b):
        return torch.tanh(torch.cat([c_prev, x], -1) @ A.T + b)
    with pytest.raises(CheckFailed, match=r"\[c_\{i-1\}; x_i\] instead of \[x_i; c_\{i-1\}\]"):
        checks.quick_check_self_attention_rnn_step(step)
    with pytest.raises(CheckFailed, match=r"\[c_\{i-1\}; x_i\]"):
        checks.check_self_attention_rnn_step(step)


def _layer_carrying_h(ref):
    """The classic slip: the state h_{i-1} fed back where the context c_{i-1} belongs."""
    def layer(xs, A, b, score_fn=None):
        B, m, _ = xs.shape
        h = xs.new_zeros(B, A.shape[0])
        hs, cs, rows = [], [], []
        for i in range(m):
            h = ref.self_attention_rnn_step(xs[:, i], h, A, b)
            hs.append(h)
            H = torch.stack(hs, 1)
            scores = (H @ h[..., None])[..., 0] if score_fn is None else score_fn(H, h)
            alpha = torch.softmax(scores, -1)
            cs.append((alpha[:, None] @ H)[:, 0])
            rows.append(F.pad(alpha, (0, m - i - 1)))
        return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
    return layer


def test_h_where_c_belongs_fails_visibly_and_hidden(ref):
    """Does feeding h_{i-1} instead of c_{i-1} fail the visible check (its two-step case) and the hidden
    one, naming the mistake?"""
    layer = _layer_carrying_h(ref)
    with pytest.raises(CheckFailed, match=r"h_\{i-1\} where c_\{i-1\} belongs"):
        checks.quick_check_self_attention_rnn(layer)
    with pytest.raises(CheckFailed, match=r"h_\{i-1\} where c_\{i-1\} belongs"):
        checks.check_self_attention_rnn(layer)


def test_non_causal_layer_fails(ref):
    """Does a layer whose position i also sees later states fail, the future named?"""
    def layer(xs, A, b, score_fn=None):
        hs, cs, _ = ref.self_attention_rnn(xs, A, b, score_fn)
        full = torch.softmax(hs @ hs.transpose(1, 2), -1)              # every position sees every state
        return hs, full @ hs, full
    with pytest.raises(CheckFailed, match="future"):
        checks.quick_check_self_attention_rnn(layer)


def test_tiny_weights_above_the_diagonal_fail_but_minus_1e9_passes(ref):
    """exp(-1e9) underflows to exactly 0, so masking with -1e9 is correct; is a modest fill such as -30,
    which leaves tiny weights above the diagonal, told apart?"""
    def masked(fill):
        def layer(xs, A, b, score_fn=None):
            B, m, _ = xs.shape
            c = xs.new_zeros(B, A.shape[0])
            hs, cs, rows = [], [], []
            for i in range(m):
                h = ref.self_attention_rnn_step(xs[:, i], c, A, b)
                hs.append(h)
                H = torch.stack(hs, 1)
                scores = (H @ h[..., None])[..., 0] if score_fn is None else score_fn(H, h)
                alpha = torch.softmax(F.pad(scores, (0, m - i - 1), value=fill), -1)
                c = (alpha[:, None, :i + 1] @ H)[:, 0]
                cs.append(c)
                rows.append(alpha)
            return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
        return layer
    checks.quick_check_self_attention_rnn(masked(-1e9))
    checks.check_self_attention_rnn(masked(-1e9))
    with pytest.raises(CheckFailed, match="tiny but not exactly 0"):
        checks.check_self_attention_rnn(masked(-30.0))


def test_swapped_score_arguments_fail(ref):
    """Does calling score_fn(h_i, h_prefix) fail, with the swap named?"""
    def layer(xs, A, b, score_fn=None):
        swapped = None if score_fn is None else (lambda H, h: score_fn(h, H))
        return ref.self_attention_rnn(xs, A, b, swapped)
    with pytest.raises(CheckFailed, match="swapped"):
        checks.check_self_attention_rnn(layer)


def test_scaled_default_score_fails(ref):
    """Does a default score divided by sqrt(d_h) fail, with the plain dot product asked for?"""
    def layer(xs, A, b, score_fn=None):
        if score_fn is None:
            score_fn = lambda H, h: (H @ h[..., None])[..., 0] / h.shape[-1] ** 0.5     # noqa: E731
        return ref.self_attention_rnn(xs, A, b, score_fn)
    with pytest.raises(CheckFailed, match="divided by sqrt"):
        checks.check_self_attention_rnn(layer)


# --- the score probe is bounded --------------------------------------------------------------------

def test_score_probe_refuses_oversized_shapes_and_too_many_calls(ref):
    """Does a layer that calls score_fn with shapes of its own ((1, N, d_h) against (N, d_h), which would
    broadcast to N x N x d_h) or far too often get a CheckFailed before the probe computes anything, even
    when it catches the refusal and carries on?"""
    import time

    def broadcaster(xs, A, b, score_fn=None):
        if score_fn is not None:
            d_h = A.shape[0]
            huge = xs.new_zeros(1, 100_000, d_h)
            try:
                score_fn(huge, huge[0])                  # 10**10 * d_h entries if it were computed
            except CheckFailed:
                pass                                     # caught: the check must fail all the same
        return ref.self_attention_rnn(xs, A, b, score_fn)

    def chatterbox(xs, A, b, score_fn=None):
        if score_fn is not None:
            H = ref.self_attention_rnn(xs, A, b)[0]
            for _ in range(10_000):
                score_fn(H[:, :1], H[:, 0])
        return ref.self_attention_rnn(xs, A, b, score_fn)

    for layer, says in [(broadcaster, "expects h_prefix of shape (batch, i, d_h)"), (chatterbox, "more than")]:
        start = time.perf_counter()
        for check in (checks.quick_check_self_attention_rnn, checks.check_self_attention_rnn):
            with pytest.raises(CheckFailed, match=re.escape(says)):
                check(layer)
        assert time.perf_counter() - start < 10


def test_score_probe_keeps_answering_the_calls_the_math_makes():
    """Does the bounded probe still score every legitimate call: batch, prefix length 1..m, keywords?"""
    W = torch.eye(3, dtype=torch.float64)
    probe = checks.ScoreProbe(W, batch=2, max_len=4)
    H = torch.randn(2, 4, 3, dtype=torch.float64)
    for i in range(1, 5):
        scores = probe(h_prefix=H[:, :i], h_i=H[:, i - 1])
        assert scores.shape == (2, i)
    assert len(probe.calls) == 4 and not probe.refused
    with pytest.raises(CheckFailed, match="expects h_prefix"):
        probe(H[:1, :2].expand(3, 2, 3), H[:1, 0].expand(3, 3))     # another batch than the layer's
    assert probe.refused


# --- the edges of the contract: every catalog answer against PyTorch's own RNN cell and attention -----

def _cell(A, b, d_x):
    """nn.RNNCell holding A's input block, A's context block and b: the step's oracle."""
    d_h = A.shape[0]
    cell = nn.RNNCell(d_x, d_h, dtype=A.dtype)
    with torch.no_grad():
        cell.weight_ih.copy_(A[:, :d_x])
        cell.weight_hh.copy_(A[:, d_x:])
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
    return cell


def _layer_oracle(xs, A, b, scale=1.0):
    """The layer from nn.RNNCell and F.scaled_dot_product_attention alone: h_i = cell(x_i, c_{i-1}),
    c_i = attention of h_i over h_1..h_i with scores scale * h_j^T h_i; the weights are the contexts of the
    identity values."""
    B, m, d_x = xs.shape
    cell = _cell(A, b, d_x)
    c = torch.zeros(B, A.shape[0], dtype=xs.dtype)
    hs, cs, rows = [], [], []
    with torch.no_grad():
        for i in range(m):
            hs.append(cell(xs[:, i], c))
            H = torch.stack(hs, 1)                                             # (B, i, d_h)
            q = hs[-1][:, None]                                                # (B, 1, d_h)
            c = F.scaled_dot_product_attention(q, H, H, scale=scale)[:, 0]
            eye = torch.eye(i + 1, dtype=xs.dtype).expand(B, i + 1, i + 1)
            rows.append(F.pad(F.scaled_dot_product_attention(q, H, eye, scale=scale)[:, 0], (0, m - i - 1)))
            cs.append(c)
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)


def _edge_layers(dtype, seed=0):
    """(what, xs, A, b, scale) on sizes of their own: scale None for the default score, else a score_fn
    scale * h_j^T h_i; large scores, views, m = 1, batch 1, d_x == d_h."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=1.0: (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)   # noqa: E731
    out = []
    for what, (B, m, d_x, d_h), scale in [("default score", (2, 5, 3, 4), None), ("score_fn", (3, 4, 2, 5), 1.0),
                                          ("score_fn x100", (2, 5, 3, 4), 100.0), ("m = 1", (3, 1, 2, 4), None),
                                          ("batch 1", (1, 6, 4, 3), 1.0), ("d_x == d_h", (2, 4, 3, 3), None)]:
        out.append((what, r(B, m, d_x), r(d_h, d_x + d_h, s=0.7), r(d_h, s=0.3), scale))
    B, m, d_x, d_h = 2, 6, 4, 3
    out.append(("views", r(B, d_x, m).transpose(1, 2), r(d_x + d_h, d_h, s=0.7).T, r(d_h, 2, s=0.3)[:, 0], None))
    return out


def _layer_verdict(fn) -> str:
    """"" if `fn` agrees with the oracle on every edge input, by position and by keyword, after calls of other
    sizes, without touching its inputs, in float64 and float32; else what went wrong."""
    for dtype in (torch.float64, torch.float32):
        eps = torch.finfo(dtype).eps
        for what, xs, A, b, scale in _edge_layers(dtype):
            score_fn = None if scale is None else (
                lambda h_prefix, h_i, s=scale: s * (h_prefix @ h_i[..., None])[..., 0])
            before = [t.clone() for t in (xs, A, b)]
            for keywords in (False, True):
                try:
                    got = (fn(xs=xs, A=A, b=b, **({} if score_fn is None else {"score_fn": score_fn})) if keywords
                           else fn(xs, A, b, *([] if score_fn is None else [score_fn])))
                except Exception as e:
                    return f"{what}: raised {type(e).__name__}"
                if any(not torch.equal(t, u) or t.shape != u.shape for t, u in zip((xs, A, b), before)):
                    return f"{what}: modified an input"
                mag = xs.shape[1] * (1 + A.abs().sum(-1).max().item()) * A.shape[0] * (scale or 1.0)
                if isinstance(got[2], torch.Tensor) and got[2].dim() == 3 and (torch.triu(got[2], 1) != 0).any():
                    return f"{what}: weights above the diagonal not exactly 0"
                for x, y in zip(got, _layer_oracle(xs, A, b, scale or 1.0)):
                    if x.dtype != y.dtype or x.shape != y.shape or not torch.isfinite(x).all():
                        return f"{what}: dtype, shape or NaN"
                    if not torch.allclose(x, y, rtol=1e3 * eps, atol=1e3 * eps * mag):
                        return f"{what}: differs from nn.RNNCell + F.scaled_dot_product_attention by " \
                               f"{(x - y).abs().max():.2g}"
    xs, A, b, _ = _edge_layers(torch.float64)[0][1:]
    try:
        fn(*(t.to("meta") for t in (xs, A, b)))
    except Exception as e:
        if "device" in str(e):
            return "creates a tensor off the inputs' device"
    return ""


def _step_verdict(fn) -> str:
    """"" if `fn` is nn.RNNCell with c_{i-1} in the place of h_{i-1} on every edge input; else what is wrong."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        eps = torch.finfo(dtype).eps
        r = lambda *shape, s=1.0: (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)   # noqa: E731
        for what, x, c, A, b in [("plain", r(2, 3), r(2, 5), r(5, 8), r(5)),
                                 ("batch 1", r(1, 6), r(1, 2), r(2, 8), r(2)),
                                 ("x100", r(2, 4, s=100.0), r(2, 3, s=100.0), r(3, 7), r(3)),
                                 ("views", r(5, 3).T, r(3, 4)[:, 1:3], r(7, 2).T, r(2, 2)[:, 1])]:
            before = [t.clone() for t in (x, c, A, b)]
            for keywords in (False, True):
                try:
                    got = fn(x=x, c_prev=c, A=A, b=b) if keywords else fn(x, c, A, b)
                except Exception as e:
                    return f"{what}: raised {type(e).__name__}"
                if any(not torch.equal(t, u) or t.shape != u.shape for t, u in zip((x, c, A, b), before)):
                    return f"{what}: modified an input"
                with torch.no_grad():
                    want = _cell(A, b, x.shape[-1])(x, c)
                mag = (torch.cat([x, c], -1).abs() @ A.abs().T + b.abs()).max().item()
                if got.dtype != want.dtype or got.shape != want.shape or not torch.isfinite(got).all():
                    return f"{what}: dtype, shape or NaN"
                if not torch.allclose(got, want, rtol=1e3 * eps, atol=1e3 * eps * (1 if what == "x100" else mag)):
                    return f"{what}: differs from nn.RNNCell by {(got - want).abs().max():.2g}"
    return ""


STEP, LAYER = "self_attention_rnn_step", "self_attention_rnn"


def _answers(kind, function):
    from tests.mistakes import lesson05
    return [a for a in getattr(lesson05, kind, []) if a.function == function]


def _define(answer):
    from tests.test_mistakes import student_function
    return student_function(answer)


@pytest.mark.parametrize("answer", _answers("WRONG", "self_attention_rnn_step"), ids=lambda a: a.name)
def test_wrong_step_is_wrong_by_the_oracle(answer):
    """Is each wrong step of the catalog really wrong: does it differ from nn.RNNCell (with c_{i-1} in the place
    of h_{i-1}), or raise, or modify an input, somewhere?"""
    assert _step_verdict(_define(answer))


@pytest.mark.parametrize("answer", _answers("CORRECT", "self_attention_rnn_step"), ids=lambda a: a.name)
def test_correct_step_is_right_by_the_oracle(answer):
    """Does each correct step of the catalog agree with nn.RNNCell on every edge?"""
    assert _step_verdict(_define(answer)) == ""


@pytest.mark.parametrize("answer", _answers("WRONG", LAYER) + _answers("WRONG_ON_GPU", LAYER), ids=lambda a: a.name)
def test_wrong_layer_is_wrong_by_the_oracle(answer):
    """Is each wrong layer of the catalog really wrong: does it differ from the layer built of nn.RNNCell and
    F.scaled_dot_product_attention (or raise, return NaN, modify an input, refuse the contract's keywords or
    create a tensor off the inputs' device) somewhere? .detach() shows only in the gradients."""
    fn = _define(answer)
    if answer.name == "returns detached tensors":
        xs, A, b = _inputs(2, 5, 3, 4)
        assert not fn(xs.requires_grad_(), A, b)[0].requires_grad
        return
    assert _layer_verdict(fn)


@pytest.mark.parametrize("answer", _answers("CORRECT", "self_attention_rnn"), ids=lambda a: a.name)
def test_correct_layer_is_right_by_the_oracle(answer):
    """Does each correct layer of the catalog agree with nn.RNNCell + F.scaled_dot_product_attention everywhere?"""
    assert _layer_verdict(_define(answer)) == ""


@pytest.mark.parametrize("answer", _answers("CORRECT", STEP) + _answers("CORRECT", LAYER), ids=lambda a: a.id)
def test_correct_answer_passes_ten_times_inside_the_tolerance(answer):
    """Does each correct answer pass every value comparison of the hidden check with its error at most a tenth
    of the tolerance?"""
    from autograder.checks.core import measured_margins
    with measured_margins() as margins:
        getattr(checks, f"check_{answer.function}")(_define(answer), device="cpu", seed=3)
    assert margins and max(r for _, r in margins) <= 0.1, max(margins, key=lambda m: m[1])


@pytest.mark.parametrize("answer", _answers("WRONG_ON_GPU", "self_attention_rnn"), ids=lambda a: a.name)
def test_tensor_created_without_device_is_caught_on_the_meta_device(answer):
    """Does the hidden check, with no device asked for, catch a layer that creates a tensor without device= (on
    the meta device), while a check narrowed to the CPU, where it is right, passes it?"""
    checks.check_self_attention_rnn(_define(answer), device="cpu")
    with pytest.raises(CheckFailed, match="creates a tensor on the CPU"):
        checks.check_self_attention_rnn(_define(answer))


@pytest.mark.parametrize("seed", [1, 2**31 - 1])
@pytest.mark.parametrize("answer", [a for kind in ("WRONG", "CORRECT") for f in (STEP, LAYER) for a in _answers(kind, f)],
                         ids=lambda a: a.id)
def test_verdict_holds_for_other_seeds(answer, seed):
    """Does each catalog answer of lesson 05 keep its verdict (and a wrong one its message) whatever seed the
    grader draws?"""
    from tests.mistakes import lesson05
    check = getattr(checks, f"check_{answer.function}")
    if answer in lesson05.CORRECT:
        check(_define(answer), device="cpu", seed=seed)
    else:
        with pytest.raises(CheckFailed, match=re.escape(answer.says)):
            check(_define(answer), device="cpu", seed=seed)
