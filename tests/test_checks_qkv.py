"""Lesson 03, queries, keys and values: the reference against PyTorch's own functions, and the checks
against the reference and a few wrong answers (called directly, no kernel)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autograder import reference
from autograder.checks import qkv as checks
from autograder.checks.core import CheckFailed

LESSON = "03_query_key_value"
SIZES = [(2, 3, 5, 6, 8), (1, 4, 7, 3, 5), (3, 6, 4, 5, 2)]     # B, t, m, d_k, d_v: all distinct per case


@pytest.fixture(scope="module")
def ref():
    return reference.load(LESSON)


def _qkv(B, t, m, d_k, d_v, *, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, n, d, generator=g, dtype=dtype).to(device) for n, d in [(t, d_k), (m, d_k), (m, d_v)]]


def _masks(B, t, m, seed=0):
    """A padding mask (B, 1, m), a shared (t, m) mask and a full (B, t, m) mask; every row keeps a key."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, m + 1, (B,), generator=g)
    full = torch.rand(B, t, m, generator=g) > 0.5
    full[..., 0] = True
    return [(torch.arange(m) < lengths[:, None])[:, None, :], torch.ones(t, m, dtype=torch.bool).tril(m - t), full]


# --- the reference against PyTorch ----------------------------------------------------------------

@pytest.mark.parametrize("sizes", SIZES)
def test_reference_matches_sdpa_without_mask(ref, device, sizes):
    """Does the reference qkv_attention give the context vectors of F.scaled_dot_product_attention(scale=1.0)?"""
    Q, K, V = _qkv(*sizes, device=device)
    C, _ = ref.qkv_attention(Q, K, V)
    torch.testing.assert_close(C, F.scaled_dot_product_attention(Q, K, V, scale=1.0))


@pytest.mark.parametrize("sizes", SIZES)
def test_reference_matches_sdpa_with_masks(ref, device, sizes):
    """With a padding (B, 1, m), a shared (t, m) and a full (B, t, m) boolean mask, does the reference agree
    with PyTorch, whose boolean attn_mask also means True = may attend?"""
    Q, K, V = _qkv(*sizes, seed=1, device=device)
    B, t, m = sizes[:3]
    for mask in _masks(B, t, m):
        mask = mask.to(device)
        C, _ = ref.qkv_attention(Q, K, V, mask)
        torch.testing.assert_close(C, F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, scale=1.0))


@pytest.mark.parametrize("sizes", SIZES)
def test_reference_weights_match_sdpa(ref, sizes):
    """Are the reference's weights PyTorch's too? With V = I (one value per key, d_v = m) the context
    vectors are the weights themselves."""
    Q, K, _ = _qkv(*sizes, seed=2)
    B, t, m = sizes[:3]
    eye = torch.eye(m, dtype=Q.dtype).expand(B, m, m)
    for mask in [None] + _masks(B, t, m, seed=2):
        _, weights = ref.qkv_attention(Q, K, eye, mask)
        torch.testing.assert_close(weights, F.scaled_dot_product_attention(Q, K, eye, attn_mask=mask, scale=1.0))


def test_reference_gradients_match_sdpa(ref):
    """Do gradients through the reference equal those through PyTorch's attention, with a padding mask?"""
    B, t, m, d_k, d_v = 2, 3, 5, 6, 8
    mask = _masks(B, t, m, seed=3)[0]
    grads = []
    for attend in (lambda Q, K, V: ref.qkv_attention(Q, K, V, mask)[0],
                   lambda Q, K, V: F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, scale=1.0)):
        leaves = [x.requires_grad_() for x in _qkv(B, t, m, d_k, d_v, seed=3)]
        (attend(*leaves) * torch.linspace(-1, 1, d_v, dtype=torch.float64)).sum().backward()
        grads.append([x.grad for x in leaves])
    for mine, theirs in zip(*grads):
        torch.testing.assert_close(mine, theirs)


def test_reference_all_masked_row_gives_zeros_and_finite_gradients(ref):
    """Does a row with nothing to attend to give zero weights and a zero context, and finite gradients?"""
    Q, K, V = (x.requires_grad_() for x in _qkv(2, 3, 5, 6, 8, seed=4))
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[1, 2] = False
    C, weights = ref.qkv_attention(Q, K, V, mask)
    assert torch.equal(weights[1, 2], torch.zeros(5, dtype=weights.dtype))
    assert torch.equal(C[1, 2], torch.zeros(8, dtype=C.dtype))
    (C.sum() + weights.sum()).backward()
    assert all(torch.isfinite(x.grad).all() for x in (Q, K, V))


def test_reference_projections_match_linear_layers(ref):
    """Are the reference's Q, K, V what bias-free torch.nn.Linear layers holding W_Q, W_K, W_V compute?"""
    g = torch.Generator().manual_seed(5)
    B, t, m, d_h, d_s, d_k, d_v = 2, 3, 5, 4, 7, 6, 8
    h, s = torch.randn(B, m, d_h, generator=g), torch.randn(B, t, d_s, generator=g)
    layers = [torch.nn.Linear(d_in, d_out, bias=False) for d_in, d_out in [(d_s, d_k), (d_h, d_k), (d_h, d_v)]]
    Q, K, V = ref.project_qkv(h, s, *(layer.weight for layer in layers))
    for got, layer, x in zip((Q, K, V), layers, (s, h, h)):
        torch.testing.assert_close(got, layer(x))


def test_reference_with_identity_values_reproduces_lesson_02_option_2(ref):
    """With W_V = I, does qkv_attention give, for every decoder state at once, the context vectors that
    lesson 02's reference computes one state at a time with option 2 (dot_scores, attention_weights,
    context_vector)?"""
    l02 = reference.load("02_bahdanau_attention")
    g = torch.Generator().manual_seed(6)
    B, t, m, d_h, d_s, d_k = 2, 3, 5, 4, 7, 6
    h, s = torch.randn(B, m, d_h, generator=g, dtype=torch.float64), torch.randn(B, t, d_s, generator=g, dtype=torch.float64)
    W_Q, W_K = torch.randn(d_k, d_s, generator=g, dtype=torch.float64), torch.randn(d_k, d_h, generator=g, dtype=torch.float64)
    C, weights = ref.qkv_attention(*ref.project_qkv(h, s, W_Q, W_K, torch.eye(d_h, dtype=torch.float64)))
    for j in range(t):
        alpha = l02.attention_weights(l02.dot_scores(h, s[:, j], W_K, W_Q))
        torch.testing.assert_close(weights[:, j], alpha)
        torch.testing.assert_close(C[:, j], l02.context_vector(alpha, h))


# --- the checks against the reference and wrong answers ---------------------------------------------

def test_checks_pass_the_reference(ref, device):
    """Do the visible and hidden checks of both functions pass the reference solution?"""
    for name in ("project_qkv", "qkv_attention"):
        getattr(checks, f"quick_check_{name}")(getattr(ref, name))
        getattr(checks, f"check_{name}")(getattr(ref, name), device=device)


def _softmax_over(dim):
    def qkv_attention(Q, K, V, mask=None):
        scores = Q @ K.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=dim) * (mask if mask is not None else 1)
        return weights @ V, weights
    return qkv_attention


def _scaled(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1) / Q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, -1) * (mask if mask is not None else 1)
    return weights @ V, weights


def _masked_late(Q, K, V, mask=None):
    weights = torch.softmax(Q @ K.transpose(-2, -1), -1)
    weights = weights * mask if mask is not None else weights
    return weights @ V, weights


def _minus_inf(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1)
    weights = torch.softmax(scores if mask is None else scores.masked_fill(~mask, float("-inf")), -1)
    return weights @ V, weights


def _no_broadcast(Q, K, V, mask=None):
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.clone()
        scores[~mask] = torch.finfo(scores.dtype).min
    weights = torch.softmax(scores, -1) * (mask if mask is not None else 1)
    return weights @ V, weights


@pytest.mark.parametrize("wrong, says", [
    (_softmax_over(1), "query axis"),
    (_softmax_over(0), "batch axis"),
    (_scaled, "sqrt(d_k)"),
    (_masked_late, "without renormalizing"),
    (_minus_inf, "all masked gives NaN"),
    (_no_broadcast, "must broadcast"),
], ids=["softmax over t", "softmax over batch", "scaled", "masked late", "-inf NaN", "no broadcast"])
@pytest.mark.parametrize("level", ["visible", "hidden"])
def test_checks_name_wrong_attention(wrong, says, level):
    """Does each check fail a wrong qkv_attention, and say what the student probably did?"""
    check = checks.quick_check_qkv_attention if level == "visible" else checks.check_qkv_attention
    with pytest.raises(CheckFailed) as failure:
        check(wrong)
    assert says in str(failure.value)


@pytest.mark.parametrize("wrong, says", [
    (lambda h, s, W_Q, W_K, W_V: (s @ W_K.T, h @ W_Q.T, h @ W_V.T), "swapped"),
    (lambda h, s, W_Q, W_K, W_V: (s @ W_Q, h @ W_K, h @ W_V), "untransposed"),
    (lambda h, s, W_Q, W_K, W_V: (s @ W_Q.T, h @ W_K.T, h @ W_K.T), "V is computed with W_K"),
], ids=["swapped", "untransposed", "V from W_K"])
@pytest.mark.parametrize("level", ["visible", "hidden"])
def test_checks_name_wrong_projections(wrong, says, level):
    """Does each check fail a wrong project_qkv, and name the mistake?"""
    check = checks.quick_check_project_qkv if level == "visible" else checks.check_project_qkv
    with pytest.raises(CheckFailed) as failure:
        check(wrong)
    assert says in str(failure.value)


def test_checks_report_a_stub():
    """Does a stub get a clear 'not implemented yet' message rather than a traceback?"""
    def project_qkv(h, s, W_Q, W_K, W_V):
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not implemented yet"):
        checks.quick_check_project_qkv(project_qkv)


def test_checks_catch_inputs_modified_in_place(ref):
    """Does an answer that scales Q in place lose its points?"""
    def qkv_attention(Q, K, V, mask=None):
        Q.mul_(1.0 + 1e-3)
        return ref.qkv_attention(Q, K, V, mask)
    with pytest.raises(CheckFailed, match="modified in place"):
        checks.check_qkv_attention(qkv_attention)


# --- the edges of the contract: the reference against PyTorch, every catalog answer against PyTorch ----

def _oracle(Q, K, V, mask=None):
    """(C, weights) from F.scaled_dot_product_attention alone (scale 1, True = may attend; a row with no
    allowed key gives zeros): the weights are the contexts of the identity values."""
    B, m = K.shape[0], K.shape[1]
    eye = torch.eye(m, dtype=Q.dtype, device=Q.device).expand(B, m, m)
    C = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask, scale=1.0)
    return C, F.scaled_dot_product_attention(Q, K, eye, attn_mask=mask, scale=1.0)


def _edge_inputs(dtype, seed=0):
    """(what, Q, K, V, mask) for every edge the hidden check probes, on sizes of their own: large scores,
    masked keys holding the largest scores, every mask shape, a single allowed key, t = 1, m = 1, views."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)     # noqa: E731
    out = []
    B, t, m, d_k, d_v = 2, 3, 6, 5, 4
    big = 100.0 if dtype == torch.float32 else 1000.0
    Q, K, V = r(B, t, d_k) * big, r(B, m, d_k), r(B, m, d_v)
    full = torch.rand(B, t, m, generator=g) > 0.4
    full[..., 0] = True
    out += [("large scores", Q, K, V, None), ("large scores, masked", Q, K, V, full)]
    B, t, m, d_k, d_v = 3, 4, 6, 5, 3
    Q, K, V = r(B, t, d_k), r(B, m, d_k), r(B, m, d_v)
    allowed = (torch.arange(m) < torch.tensor([1, 3, 5])[:, None])[:, None, :]
    Q[..., -1] = -(2000 ** 0.5)
    K[..., -1] = torch.where(allowed[:, 0], 2000 ** 0.5, 0.0).to(dtype)
    out.append(("masked keys hold the largest scores", Q, K, V, allowed))
    B, t, m, d_k, d_v = 2, 3, 5, 4, 6
    Q, K, V = r(B, t, d_k), r(B, m, d_k), r(B, m, d_v)
    rows = torch.ones(B, t, 1, dtype=torch.bool)
    rows[1, 0, 0] = False
    shared = torch.ones(t, m, dtype=torch.bool).tril(m - t)
    for shape_mask in (torch.tensor([True, False, True, True, False]), shared[None], rows, shared[:1][None], shared):
        out.append((f"mask {tuple(shape_mask.shape)}", Q, K, V, shape_mask))
    for B, t, m, d_k, d_v in [(2, 1, 6, 3, 4), (3, 5, 1, 2, 4), (1, 4, 7, 3, 5)]:
        out.append((f"B={B} t={t} m={m}", r(B, t, d_k), r(B, m, d_k), r(B, m, d_v), None))
    B, t, m, d_k, d_v = 2, 4, 6, 3, 5
    transposed = torch.rand(m, t, generator=g) > 0.3                                # (m, t), then (t, m)
    transposed[0] = True
    out.append(("views", r(B, d_k, t).transpose(1, 2), r(B, m, d_k + 2)[..., 1:d_k + 1], r(d_v, B, m).permute(1, 2, 0),
                transposed.T))
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_matches_sdpa_on_the_edges(ref, dtype):
    """On every edge the hidden check probes (scores x100 and x1000, masked keys holding the largest scores,
    masks of shape (m,), (1, t, m), (batch, t, 1), (1, 1, m), t = 1, m = 1, views), does the reference give
    PyTorch's contexts and weights?"""
    tol = dict(rtol=1e-10, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for what, Q, K, V, mask in _edge_inputs(dtype):
        C, w = ref.qkv_attention(Q, K, V, mask)
        want_C, want_w = _oracle(Q, K, V, mask)
        torch.testing.assert_close(w, want_w, **tol, msg=what)
        torch.testing.assert_close(C, want_C, **tol, msg=what)


def _verdict(fn, tol_scale=1.0) -> str:
    """"" if `fn` agrees with the oracle on every edge input, called by position and by keyword, after
    calls of other sizes, without touching its inputs, in float64 and float32; else what went wrong."""
    for dtype in (torch.float64, torch.float32):
        eps = torch.finfo(dtype).eps
        for what, Q, K, V, mask in _edge_inputs(dtype):
            args = [Q, K, V] + ([] if mask is None else [mask])
            before = [a.clone() for a in args]
            for keywords in (False, True):
                try:
                    if keywords:
                        got = fn(Q=Q, K=K, V=V, **({} if mask is None else {"mask": mask}))
                    else:
                        got = fn(*args)
                except Exception as e:
                    return f"{what}: raised {type(e).__name__}"
                if any(not torch.equal(a, b) or a.shape != b.shape for a, b in zip(args, before)):
                    return f"{what}: modified an input"
                want = _oracle(Q, K, V, mask)
                for x, y in zip(got, want):
                    if x.dtype != y.dtype or x.shape != y.shape or not torch.isfinite(x).all():
                        return f"{what}: dtype, shape or NaN"
                    mag = max(1.0, (Q.abs() @ K.abs().transpose(-2, -1)).max().item()) * max(1.0, V.abs().max().item())
                    if not torch.allclose(x, y, rtol=1e3 * eps, atol=1e3 * eps * mag * tol_scale):
                        return f"{what}: differs from F.scaled_dot_product_attention by {(x - y).abs().max():.2g}"
    # The all-masked row, and gradients there.
    Q, K, V = (torch.randn(2, 3, n, dtype=torch.float64, requires_grad=True) for n in (4, 4, 5))
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[1, 2] = False
    try:
        C, w = fn(Q, K, V, mask)
        (C.sum() + (w * torch.arange(3)).sum()).backward()
    except Exception as e:
        return f"all-masked row: raised {type(e).__name__}"
    if not (torch.isfinite(C).all() and torch.equal(w[1, 2], torch.zeros(3, dtype=w.dtype))):
        return "all-masked row: not zeros"
    if not all(torch.isfinite(x.grad).all() for x in (Q, K, V)):
        return "all-masked row: NaN gradients"
    # Tensors created off the inputs' device.
    meta = [x.detach().to("meta") for x in (Q, K, V)]
    for extra in ([], [mask.to("meta")]):
        try:
            fn(*meta, *extra)
        except Exception as e:
            if "device" in str(e):
                return "creates a tensor off the inputs' device"
    return ""


def _attention_answers(kind):
    from tests.mistakes import lesson03
    return [a for a in getattr(lesson03, kind) if a.function == "qkv_attention"]


def _define(answer):
    from tests.test_mistakes import student_function
    return student_function(answer)


@pytest.mark.parametrize("answer", _attention_answers("WRONG") + _attention_answers("WRONG_ON_GPU"),
                         ids=lambda a: a.name)
def test_wrong_catalog_answer_is_wrong_by_the_oracle(answer):
    """Is each wrong qkv_attention of the catalog really wrong: does it differ from F.scaled_dot_product_attention
    (or raise, or return NaN, or modify an input, or create a tensor off the inputs' device) somewhere?"""
    assert _verdict(_define(answer))


@pytest.mark.parametrize("answer", _attention_answers("CORRECT"), ids=lambda a: a.name)
def test_correct_catalog_answer_is_right_by_the_oracle(answer):
    """Does each correct qkv_attention of the catalog agree with F.scaled_dot_product_attention everywhere?"""
    assert _verdict(_define(answer)) == ""


@pytest.mark.parametrize("answer", _attention_answers("CORRECT"), ids=lambda a: a.name)
def test_correct_catalog_answer_passes_ten_times_inside_the_tolerance(answer):
    """Does each correct qkv_attention pass every value comparison of the hidden check with its error at most a
    tenth of the tolerance?"""
    from autograder.checks.core import measured_margins
    with measured_margins() as margins:
        checks.check_qkv_attention(_define(answer), device="cpu", seed=3)
    assert margins and max(r for _, r in margins) <= 0.1, max(margins, key=lambda m: m[1])


def test_tensor_created_without_device_is_caught_on_the_meta_device():
    """Does the hidden check, with no device asked for, catch an answer that creates its default mask without
    device= (on the meta device), while a check narrowed to the CPU, where it is right, passes it?"""
    from tests.mistakes import lesson03
    assert len(lesson03.WRONG_ON_GPU) >= 2
    for answer in lesson03.WRONG_ON_GPU:
        check = getattr(checks, f"check_{answer.function}")
        check(_define(answer), device="cpu")
        with pytest.raises(CheckFailed, match="creates a tensor on the CPU"):
            check(_define(answer))


def test_view_of_a_non_contiguous_input_fails_in_process():
    """Does an answer that calls .view on Q (which fails for a transposed Q) lose its points when it runs in
    this process? (Through the bridge every tensor arrives contiguous, so the catalog cannot hold it.)"""
    def qkv_attention(Q, K, V, mask=None):
        B, t, d_k = Q.shape
        flat = Q.view(B * t, d_k)                               # one row per query: needs a contiguous Q
        scores = flat.view(B, t, d_k) @ K.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, -1) * (1 if mask is None else mask)
        return weights @ V, weights
    with pytest.raises(CheckFailed, match="view"):
        checks.check_qkv_attention(qkv_attention, device="cpu")


# --- project_qkv at the edges of its contract: every catalog answer against nn.Linear (issue 15) ---------

def _linear_oracle(h, s, W_Q, W_K, W_V):
    """(Q, K, V) from three bias-free nn.Linear layers holding the weights."""
    def linear(x, W):
        layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False, dtype=x.dtype)
        return torch.func.functional_call(layer, {"weight": W}, (x,))
    return linear(s, W_Q), linear(h, W_K), linear(h, W_V)


def _projection_edges(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)     # noqa: E731
    out = []
    for B, t, m, d_h, d_s, d_k, d_v in [(2, 4, 3, 5, 5, 5, 5), (3, 2, 4, 8, 8, 6, 7), (1, 6, 7, 3, 2, 5, 4),
                                        (3, 1, 1, 2, 4, 3, 6), (2, 5, 5, 6, 3, 2, 4), (2, 5, 5, 6, 3, 2, 4)]:
        out.append((f"B={B} t={t} m={m}", [r(B, m, d_h), r(B, t, d_s), r(d_k, d_s), r(d_k, d_h), r(d_v, d_h)]))
    out.append(("views", [r(4, 2, 5).transpose(0, 1), r(2, 6, 3).transpose(1, 2), r(6, 2).T, r(2, 7)[:, 1:-1],
                          r(5, 3).T]))
    return out


def _projection_verdict(fn) -> str:
    for dtype in (torch.float64, torch.float32):
        eps = torch.finfo(dtype).eps
        for what, args in _projection_edges(dtype):
            before = [a.clone() for a in args]
            for keywords in (False, True):
                try:
                    got = fn(**dict(zip(("h", "s", "W_Q", "W_K", "W_V"), args))) if keywords else fn(*args)
                except Exception as e:
                    return f"{what}: raised {type(e).__name__}"
                if any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(args, before)):
                    return f"{what}: modified an input"
                with torch.no_grad():
                    want = _linear_oracle(*args)
                if not isinstance(got, (tuple, list)) or len(got) != 3:
                    return f"{what}: not (Q, K, V)"
                for x, y in zip(got, want):
                    if not isinstance(x, torch.Tensor) or x.shape != y.shape or x.dtype != y.dtype:
                        return f"{what}: not a {y.dtype} tensor of shape {tuple(y.shape)}"
                    if not torch.allclose(x, y, rtol=1e3 * eps, atol=1e3 * eps * max(1.0, y.abs().max().item())):
                        return f"{what}: differs from nn.Linear by {(x - y).abs().max():.2g}"
    args = _projection_edges(torch.float64)[0][1]
    grads = []
    for f in (fn, _linear_oracle):
        leaves = [a.detach().clone().requires_grad_(True) for a in args]
        try:
            out = torch.cat([x.flatten() for x in f(*leaves)])
            (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)).sum().backward()
        except Exception as e:
            return f"with inputs that require grad: raised {type(e).__name__}"
        grads.append([a.grad for a in leaves])
    if any(a is None or not torch.allclose(a, b) for a, b in zip(*grads)):
        return "gradients differ from nn.Linear's"
    try:
        result = fn(*[a.to("meta") for a in args])
    except Exception as e:
        return "creates a tensor off the inputs' device" if ("device" in str(e) or "meta" in str(e)) else ""
    if any(isinstance(x, torch.Tensor) and x.device.type != "meta" for x in result):
        return "returns a tensor off the inputs' device"
    return ""


def _projection_answers(kind):
    from tests.mistakes import lesson03
    return [a for a in getattr(lesson03, kind) if a.function == "project_qkv"]


@pytest.mark.parametrize("answer", _projection_answers("WRONG") + _projection_answers("WRONG_ON_GPU"),
                         ids=lambda a: a.name)
def test_wrong_projection_is_wrong_by_the_oracle(answer):
    """Is each wrong project_qkv of the catalog really wrong: does it differ from nn.Linear layers holding the
    weights (or raise, change an input, keep results between calls, break gradients, leave the device) somewhere?"""
    assert _projection_verdict(_define(answer))


@pytest.mark.parametrize("answer", _projection_answers("CORRECT"), ids=lambda a: a.name)
def test_correct_projection_is_right_by_the_oracle(answer):
    """Does each correct project_qkv of the catalog agree with nn.Linear on every edge?"""
    assert _projection_verdict(_define(answer)) == ""


@pytest.mark.parametrize("answer", _projection_answers("CORRECT"), ids=lambda a: a.name)
def test_correct_projection_passes_ten_times_inside_the_tolerance(answer):
    """Does each correct project_qkv pass every value comparison of the hidden check with its error at most a
    tenth of the tolerance?"""
    from autograder.checks.core import measured_margins
    with measured_margins() as margins:
        checks.check_project_qkv(_define(answer), device="cpu", seed=3)
    assert margins and max(r for _, r in margins) <= 0.1, max(margins, key=lambda m: m[1])
