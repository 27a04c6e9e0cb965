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
