"""Lesson 06, attention without an RNN: the reference against PyTorch's own attention, and the checks
against the reference and a few wrong answers (called directly: no kernel)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autograder import reference
from autograder.checks import transformer_attention as checks
from autograder.checks.core import CheckFailed
from lessonkit import parallel

LESSON = checks.LESSON


@pytest.fixture(scope="module")
def ref():
    return reference.load(LESSON)


def _inputs(B, m, d, d_k, d_v, *, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, m, d, generator=g, dtype=dtype).to(device)
    Ws = [(torch.randn(n, d, generator=g, dtype=dtype) / math.sqrt(d)).to(device) for n in (d_k, d_k, d_v)]
    return X, *Ws


# --- the reference against oracles nobody here wrote ------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_reference_matches_multihead_attention(ref, device, causal):
    """With one head, no bias, the same in_proj weights and out_proj the identity, does the reference give
    nn.MultiheadAttention's outputs and per-head weights (its bool attn_mask: True = NOT allowed)?"""
    B, m, d = 3, 7, 8
    X, W_Q, W_K, W_V = _inputs(B, m, d, d, d, device=device)
    mha = nn.MultiheadAttention(d, num_heads=1, bias=False, batch_first=True, dtype=torch.float64, device=device)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([W_Q, W_K, W_V]))
        mha.out_proj.weight.copy_(torch.eye(d, dtype=torch.float64))
        future = torch.ones(m, m, dtype=torch.bool, device=device).triu(1)
        Y_mha, w_mha = mha(X, X, X, need_weights=True, average_attn_weights=False,
                           attn_mask=future if causal else None)
    Y, w = ref.self_attention(X, W_Q, W_K, W_V, causal)
    assert w_mha.shape == (B, 1, m, m)
    torch.testing.assert_close(Y, Y_mha, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w, w_mha[:, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_matches_scaled_dot_product_attention(ref, device, causal, dtype):
    """With d, d_k and d_v all different, does the reference give F.scaled_dot_product_attention's output
    (whose default scale is 1/sqrt(d_k), the last size of Q), values and gradients?"""
    B, m, d, d_k, d_v = 2, 6, 5, 3, 4
    inputs = [t.requires_grad_() for t in _inputs(B, m, d, d_k, d_v, dtype=dtype, device=device, seed=1)]
    X, W_Q, W_K, W_V = inputs
    Y, _ = ref.self_attention(X, W_Q, W_K, W_V, causal)
    Y_sdpa = F.scaled_dot_product_attention(X @ W_Q.T, X @ W_K.T, X @ W_V.T, is_causal=causal)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(Y, Y_sdpa, **tol)
    cotangent = torch.randn(Y.shape, generator=torch.Generator().manual_seed(2), dtype=dtype).to(device)
    mine = torch.autograd.grad(Y, inputs, cotangent)
    theirs = torch.autograd.grad(Y_sdpa, inputs, cotangent)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("m", [1, 2, 9])
def test_reference_causal_weights_are_exact_zeros_above_the_diagonal(ref, m):
    """With causal=True, are the reference's weights exactly 0 above the diagonal, positive on it, rows
    summing to 1, and never NaN (even for m = 1, and for scores large enough to overflow exp)?"""
    X, W_Q, W_K, W_V = _inputs(2, m, 4, 3, 5)
    for scale in (1.0, 100.0):
        Y, w = ref.self_attention(X * scale, W_Q, W_K, W_V, True)
        assert torch.isfinite(Y).all() and torch.isfinite(w).all()
        assert (w.triu(1) == 0).all()
        assert (w.diagonal(dim1=-2, dim2=-1) > 0).all() or scale > 1
        torch.testing.assert_close(w.sum(-1), torch.ones(2, m, dtype=w.dtype))
    assert (ref.self_attention(X, W_Q, W_K, W_V, True)[1][:, 0, 0] == 1).all()


def test_reference_does_not_mix_sequences(ref):
    """Is each sequence of a batch attended on its own: the batch's result equals the sequences' one by one?"""
    X, W_Q, W_K, W_V = _inputs(3, 5, 4, 6, 2)
    for causal in (False, True):
        Y, w = ref.self_attention(X, W_Q, W_K, W_V, causal)
        for b in range(3):
            Y_b, w_b = ref.self_attention(X[b:b + 1], W_Q, W_K, W_V, causal)
            torch.testing.assert_close(Y[b:b + 1], Y_b)
            torch.testing.assert_close(w[b:b + 1], w_b)


# --- the checks against the reference and wrong answers ---------------------------------------------

def test_checks_pass_the_reference(ref, device):
    """Does the reference pass its own visible and hidden checks?"""
    checks.quick_check_self_attention(ref.self_attention)
    checks.check_self_attention(ref.self_attention, device=device)


def test_visible_check_runs_without_the_solutions(ref, monkeypatch):
    """Does the visible check work for a student who has the package but not solutions/?"""
    def unavailable(lesson):
        raise reference.ReferenceUnavailable("no solutions here")
    monkeypatch.setattr(reference, "load", unavailable)
    checks.quick_check_self_attention(ref.self_attention)


def _variant(*, scale=lambda d, d_k: math.sqrt(d_k), softmax_dim=-1, keep=lambda m: torch.ones(m, m).tril(),
             swap=False):
    """The reference's computation with one step changed."""
    def self_attention(X, W_Q, W_K, W_V, causal=False):
        m, d, d_k = X.shape[1], X.shape[2], W_Q.shape[0]
        Q, K = (X @ W_K.T, X @ W_Q.T) if swap else (X @ W_Q.T, X @ W_K.T)
        scores = Q @ K.transpose(-2, -1) / scale(d, d_k)
        if causal:
            scores = scores.masked_fill(keep(m).to(X.device) == 0, float("-inf"))
        w = torch.softmax(scores, dim=softmax_dim)
        return w @ (X @ W_V.T), w
    return self_attention


@pytest.mark.parametrize("wrong, says", [
    (_variant(scale=lambda d, d_k: 1.0), "not divided by sqrt(d_k)"),
    (_variant(scale=lambda d, d_k: math.sqrt(d)), "divided by sqrt(d), the model width"),
    (_variant(scale=lambda d, d_k: d_k), "divided by d_k instead of sqrt(d_k)"),
    (_variant(softmax_dim=-2), "query axis"),
    (_variant(keep=lambda m: torch.ones(m, m).triu()), "the causal mask is transposed"),
    (_variant(keep=lambda m: torch.ones(m, m).tril(-1)), "hides the diagonal"),
    (_variant(keep=lambda m: torch.ones(m, m)), "causal=True is ignored"),
    (_variant(swap=True), "W_Q and W_K are swapped"),
], ids=["no scaling", "sqrt(d)", "d_k", "query axis", "mask transposed", "diagonal hidden", "causal ignored",
        "W_Q W_K swapped"])
def test_hidden_check_names_the_mistake(wrong, says):
    """Does the hidden check fail these wrong answers, naming each mistake?"""
    with pytest.raises(CheckFailed) as failure:
        checks.check_self_attention(wrong, device="cpu")
    assert says in str(failure.value)


@pytest.mark.parametrize("wrong", [
    _variant(scale=lambda d, d_k: 1.0), _variant(softmax_dim=0), _variant(keep=lambda m: torch.ones(m, m).triu()),
    _variant(keep=lambda m: torch.ones(m, m)),
], ids=["no scaling", "batch axis", "mask transposed", "causal ignored"])
def test_visible_check_fails_wrong_answers(wrong):
    """Does the visible check, too, fail the common mistakes?"""
    with pytest.raises(CheckFailed):
        checks.quick_check_self_attention(wrong)


# --- the lesson's timing helpers --------------------------------------------------------------------

def test_timing_restores_the_thread_count():
    """Does time_layers give one positive time per size and layer, and leave PyTorch's thread count alone?"""
    before = torch.get_num_threads()
    layer = lambda m: parallel.forward_backward(lambda x: (x * x).sum(), torch.randn(m))
    times = parallel.time_layers({"square": layer}, [4, 8], repeats=2, n_threads=1)
    assert list(times) == ["square"] and len(times["square"]) == 2 and all(t > 0 for t in times["square"])
    assert torch.get_num_threads() == before


# --- the edges of the contract: the reference against PyTorch, every catalog answer against PyTorch ----

def _oracle(X, W_Q, W_K, W_V, causal):
    """(Y, weights) from F.scaled_dot_product_attention alone (default scale 1/sqrt(d_k)): the weights are the
    outputs for the identity values."""
    Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
    B, m = X.shape[0], X.shape[1]
    eye = torch.eye(m, dtype=X.dtype).expand(B, m, m)
    return (F.scaled_dot_product_attention(Q, K, V, is_causal=causal),
            F.scaled_dot_product_attention(Q, K, eye, is_causal=causal))


def _edge_inputs(dtype, seed=0):
    """(what, X, W_Q, W_K, W_V) for the edges the hidden check probes: scores x100 and x1000, future keys that
    hold the largest scores while every allowed score is below -20000, m = 1, batch 1, views."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=1.0: (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)   # noqa: E731
    out = []
    B, m, d, d_k, d_v = 2, 5, 4, 3, 6
    scale = (100.0 if dtype == torch.float32 else 1000.0) ** 0.5
    out.append(("large scores", r(B, m, d, s=scale), r(d_k, d, s=d ** -0.5), r(d_k, d, s=d ** -0.5), r(d_v, d)))
    X, W_Q, W_K, W_V = r(B, m, d), r(d_k, d), r(d_k, d), r(d_v, d)
    c = 20000 * math.sqrt(d_k)
    X[..., 0], X[..., 1] = 1.0, torch.arange(m, dtype=dtype)
    W_Q[:2], W_K[:2] = 0.0, 0.0
    W_Q[0, 0], W_Q[1, 0], W_Q[1, 1], W_K[0, 1], W_K[1, 0] = 1.0, -c, -c, c, 1.0
    out.append(("future keys hold the largest scores", X, W_Q, W_K, W_V))
    for B, m, d, d_k, d_v in [(3, 1, 4, 2, 5), (1, 7, 6, 2, 3)]:
        out.append((f"B={B} m={m}", r(B, m, d), r(d_k, d, s=d ** -0.5), r(d_k, d, s=d ** -0.5), r(d_v, d)))
    B, m, d, d_k, d_v = 3, 5, 4, 6, 2
    out.append(("views", r(B, d, m).transpose(1, 2), r(d, d_k).T, r(d_k, d + 3)[:, 1:d + 1], r(d_v, d, 2)[..., 0]))
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_matches_sdpa_on_the_edges(ref, dtype):
    """On the edges the hidden check probes (scores x100 and x1000, future keys holding the largest scores,
    m = 1, batch 1, views), causal or not, does the reference give PyTorch's outputs and weights?"""
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-3, atol=1e-3)
    for what, X, W_Q, W_K, W_V in _edge_inputs(dtype):
        for causal in (False, True):
            Y, w = ref.self_attention(X, W_Q, W_K, W_V, causal)
            want_Y, want_w = _oracle(X, W_Q, W_K, W_V, causal)
            torch.testing.assert_close(w, want_w, **tol, msg=f"{what}, causal={causal}")
            torch.testing.assert_close(Y, want_Y, **tol, msg=f"{what}, causal={causal}")


def _verdict(fn) -> str:
    """"" if `fn` agrees with the oracle on every edge input, causal or not, called by position and by keyword,
    after calls of other sizes, without touching its inputs, in float64 and float32; else what went wrong."""
    for dtype in (torch.float64, torch.float32):
        eps = torch.finfo(dtype).eps
        for what, X, W_Q, W_K, W_V in _edge_inputs(dtype):
            args = [X, W_Q, W_K, W_V]
            before = [a.clone() for a in args]
            for causal in (False, True):
                for keywords in (False, True):
                    try:
                        got = (fn(X=X, W_Q=W_Q, W_K=W_K, W_V=W_V, causal=causal) if keywords
                               else fn(X, W_Q, W_K, W_V, causal))
                    except Exception as e:
                        return f"{what}: raised {type(e).__name__}"
                    if any(not torch.equal(a, b) or a.shape != b.shape for a, b in zip(args, before)):
                        return f"{what}: modified an input"
                    A = X.abs()
                    mag = ((A @ W_Q.abs().T) @ (A @ W_K.abs().T).transpose(-2, -1)).max().item() \
                        * max(1.0, (A @ W_V.abs().T).max().item())
                    for x, y in zip(got, _oracle(X, W_Q, W_K, W_V, causal)):
                        if x.dtype != y.dtype or x.shape != y.shape or not torch.isfinite(x).all():
                            return f"{what}: dtype, shape or NaN"
                        if not torch.allclose(x, y, rtol=1e3 * eps, atol=1e3 * eps * max(1.0, mag)):
                            return f"{what}: differs from F.scaled_dot_product_attention by {(x - y).abs().max():.2g}"
    # Gradients through the answer equal those through the oracle (inputs that require grad).
    for causal in (False, True):
        grads = []
        for f in (fn, _oracle):
            leaves = [t.detach().clone().requires_grad_(True) for t in _edge_inputs(torch.float64)[0][1:]]
            try:
                out = torch.cat([o.flatten() for o in f(*leaves, causal)])
                (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype)).sum().backward()
            except Exception as e:
                return f"with inputs that require grad: raised {type(e).__name__}"
            grads.append([t.grad for t in leaves])
        if any(a is None or not torch.allclose(a, b, rtol=1e-8, atol=1e-9) for a, b in zip(*grads)):
            return "gradients differ from F.scaled_dot_product_attention's"
    meta = [t.to("meta") for t in _edge_inputs(torch.float64)[0][1:]]
    for causal in (False, True):
        try:
            fn(*meta, causal)
        except Exception as e:
            if "device" in str(e):
                return "creates a tensor off the inputs' device"
    return ""


def _answers(kind):
    from tests.mistakes import lesson06
    return getattr(lesson06, kind)


def _define(answer):
    from tests.test_mistakes import student_function
    return student_function(answer)


@pytest.mark.parametrize("answer", _answers("WRONG") + _answers("WRONG_ON_GPU"), ids=lambda a: a.name)
def test_wrong_catalog_answer_is_wrong_by_the_oracle(answer):
    """Is each wrong self_attention of the catalog really wrong: does it differ from F.scaled_dot_product_attention
    (or raise, return NaN, modify an input, refuse the contract's keywords or create a tensor off the inputs'
    device) somewhere? Gradients are the exception: .detach() shows only there."""
    fn = _define(answer)
    if answer.name == ".detach() inside":
        X, W_Q, W_K, W_V = (t.requires_grad_() for t in _inputs(2, 5, 4, 3, 6))
        mine = torch.autograd.grad(fn(X, W_Q, W_K, W_V)[0].sum(), W_Q, allow_unused=True)[0]
        theirs = torch.autograd.grad(_oracle(X, W_Q, W_K, W_V, False)[0].sum(), W_Q)[0]
        assert mine is None or not torch.allclose(mine, theirs)
        return
    assert _verdict(fn)


@pytest.mark.parametrize("answer", _answers("CORRECT"), ids=lambda a: a.name)
def test_correct_catalog_answer_is_right_by_the_oracle(answer):
    """Does each correct self_attention of the catalog agree with F.scaled_dot_product_attention everywhere?"""
    assert _verdict(_define(answer)) == ""


@pytest.mark.parametrize("answer", _answers("CORRECT"), ids=lambda a: a.name)
def test_correct_catalog_answer_passes_ten_times_inside_the_tolerance(answer):
    """Does each correct self_attention pass every value comparison of the hidden check with its error at most
    a tenth of the tolerance?"""
    from autograder.checks.core import measured_margins
    with measured_margins() as margins:
        checks.check_self_attention(_define(answer), device="cpu", seed=3)
    assert margins and max(r for _, r in margins) <= 0.1, max(margins, key=lambda m: m[1])


@pytest.mark.parametrize("answer", _answers("WRONG_ON_GPU"), ids=lambda a: a.name)
def test_tensor_created_without_device_is_caught_on_the_meta_device(answer):
    """Does the hidden check, with no device asked for, catch an answer that creates its mask without device=
    (on the meta device), while a check narrowed to the CPU, where it is right, passes it?"""
    checks.check_self_attention(_define(answer), device="cpu")
    with pytest.raises(CheckFailed, match="creates a tensor on the CPU"):
        checks.check_self_attention(_define(answer))


def test_view_of_a_non_contiguous_input_fails_in_process():
    """Does an answer that calls .view on X (which fails for a transposed X) lose its points when it runs in
    this process? (Through the bridge every tensor arrives contiguous, so the catalog cannot hold it.)"""
    def self_attention(X, W_Q, W_K, W_V, causal=False):
        B, m, d = X.shape
        rows = X.view(B * m, d)                                   # needs a contiguous X
        Q, K, V = (rows @ W.T for W in (W_Q, W_K, W_V))
        scores = Q.view(B, m, -1) @ K.view(B, m, -1).transpose(-2, -1) / math.sqrt(W_Q.shape[0])
        if causal:
            scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
        weights = torch.softmax(scores, -1)
        return weights @ V.view(B, m, -1), weights
    with pytest.raises(CheckFailed, match="view"):
        checks.check_self_attention(self_attention, device="cpu")


@pytest.mark.parametrize("seed", [1, 2**31 - 1])
@pytest.mark.parametrize("answer", _answers("WRONG") + _answers("CORRECT"), ids=lambda a: a.name)
def test_verdict_holds_for_other_seeds(answer, seed):
    """Does each catalog answer keep its verdict (and a wrong one its message) whatever seed the grader draws?"""
    if answer in _answers("CORRECT"):
        checks.check_self_attention(_define(answer), device="cpu", seed=seed)
    else:
        with pytest.raises(CheckFailed) as failure:
            checks.check_self_attention(_define(answer), device="cpu", seed=seed)
        assert answer.says in str(failure.value)
