"""Lesson 02's reference against PyTorch's own modules, and its checks against right and wrong answers."""
import pytest
import torch
import torch.nn.functional as F

from autograder import reference
from autograder.checks import bahdanau as checks

ref = reference.load("02_bahdanau_attention")


def _rand(*shape, device="cpu", dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, device=device)


def test_option2_context_matches_scaled_dot_product_attention(device):
    """Do dot_scores, attention_weights and context_vector together equal F.scaled_dot_product_attention(scale=1)?"""
    torch.manual_seed(0)
    B, m, d_h, d_s, d_k = 3, 7, 5, 4, 6
    h, s = _rand(B, m, d_h, device=device), _rand(B, d_s, device=device)
    W_K, W_Q = _rand(d_k, d_h, device=device), _rand(d_k, d_s, device=device)
    mask = torch.rand(B, m, device=device) > 0.3
    mask[:, 0] = True
    c = ref.context_vector(ref.attention_weights(ref.dot_scores(h, s, W_K, W_Q), mask), h)
    oracle = F.scaled_dot_product_attention((s @ W_Q.T)[:, None], h @ W_K.T, h, attn_mask=mask[:, None], scale=1.0)
    torch.testing.assert_close(c, oracle[:, 0])


def test_decoder_step_matches_rnn_cell(device):
    """Is attention_decoder_step torch's RNNCell (tanh) fed with [x'; c] as input and s as hidden state?"""
    torch.manual_seed(1)
    B, d_x, d_s, d_h = 2, 3, 4, 5
    x, s, c = _rand(B, d_x, device=device), _rand(B, d_s, device=device), _rand(B, d_h, device=device)
    A, b = _rand(d_s, d_x + d_s + d_h, device=device), _rand(d_s, device=device)
    cell = torch.nn.RNNCell(d_x + d_h, d_s, dtype=torch.float64, device=device)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.cat([A[:, :d_x], A[:, d_x + d_s:]], 1))
        cell.weight_hh.copy_(A[:, d_x:d_x + d_s])
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
    torch.testing.assert_close(ref.attention_decoder_step(x, s, c, A, b), cell(torch.cat([x, c], 1), s))


def test_decode_with_uniform_scores_matches_rnn_cell_loop():
    """With constant scores the context is the mean state: does attention_decode equal an RNNCell loop then?"""
    torch.manual_seed(2)
    B, m, t, d, d_x = 2, 5, 4, 3, 2
    hs, xs = _rand(B, m, d), _rand(B, t, d_x)
    A, b = _rand(d, d_x + 2 * d), _rand(d)
    ss, weights = ref.attention_decode(hs, xs, A, b, lambda h, s: torch.zeros(h.shape[:2], dtype=h.dtype))
    torch.testing.assert_close(weights, torch.full((B, t, m), 1 / m, dtype=hs.dtype))
    cell = torch.nn.RNNCell(d_x + d, d, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.cat([A[:, :d_x], A[:, d_x + d:]], 1))
        cell.weight_hh.copy_(A[:, d_x:d_x + d])
        cell.bias_ih.copy_(b)
        cell.bias_hh.zero_()
    s, mean = hs[:, -1], hs.mean(1)
    for j in range(t):
        s = cell(torch.cat([xs[:, j], mean], 1), s)
        torch.testing.assert_close(ss[:, j], s)


def test_attention_weights_all_masked_row_is_zero_with_finite_gradient():
    """Does the reference give zeros and finite gradients for a row with nothing to attend to?"""
    scores = _rand(2, 4).requires_grad_()
    mask = torch.tensor([[True, False, True, True], [False] * 4])
    alpha = ref.attention_weights(scores, mask)
    assert torch.equal(alpha[1], torch.zeros(4, dtype=alpha.dtype)) and (alpha[0, 1] == 0)
    alpha.pow(2).sum().backward()
    assert torch.isfinite(scores.grad).all()


@pytest.mark.parametrize("name", checks.HELPERS + ("attention_decode",))
def test_checks_pass_the_reference(name, device):
    """Do the visible and hidden checks pass the reference itself, on every device?"""
    getattr(checks, f"quick_check_{name}")(getattr(ref, name))
    getattr(checks, f"check_{name}")(getattr(ref, name), device=device)


def test_answer_that_drops_to_float32_inside_fails_on_float64_inputs():
    """Does an answer that computes in float32 internally lose its points, since float64 inputs demand float64 precision?"""
    def dot_scores(h, s, W_K, W_Q):
        return torch.einsum("bmk,bk->bm", h.float() @ W_K.float().T, s.float() @ W_Q.float().T).to(h.dtype)
    with pytest.raises(AssertionError):          # float64 inputs demand float64 precision
        checks.check_dot_scores(dot_scores)


def test_stub_message_names_the_missing_helper():
    """Does attention_decode's check say which helper is still a stub, when it calls one?"""
    def attention_weights(scores, mask=None):
        raise NotImplementedError()

    def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
        return attention_weights(score_fn(hs, hs[:, -1]))
    with pytest.raises(AssertionError, match="calls attention_weights, which is not implemented yet"):
        checks.Student(attention_decode, "attention_decode")(_rand(1, 2, 3), _rand(1, 2, 3), None, None,
                                                             lambda h, s: h.sum(-1))


# --- the edges of the contract: every catalog answer against PyTorch's own modules (issue 15) -------------

from torch import nn  # noqa: E402


def _sdpa_weights(scores, mask=None):
    """Softmax weights from F.scaled_dot_product_attention alone: one query of 1 against keys = the scores,
    the identity as values (a row with no allowed position gives zeros)."""
    B, m = scores.shape
    q = torch.ones(B, 1, 1, dtype=scores.dtype)
    eye = torch.eye(m, dtype=scores.dtype).expand(B, m, m)
    return F.scaled_dot_product_attention(q, scores[..., None], eye, scale=1.0,
                                          attn_mask=None if mask is None else mask[:, None])[:, 0]


def _o_additive(h, s, W, v):
    B, m, d_h = h.shape
    mlp = nn.Sequential(nn.Linear(W.shape[1], W.shape[0], bias=False), nn.Tanh(), nn.Linear(W.shape[0], 1, bias=False))
    z = torch.cat([h, s[:, None].expand(B, m, s.shape[-1])], -1)
    return torch.func.functional_call(mlp.to(h.dtype), {"0.weight": W, "2.weight": v[None]}, (z,))[..., 0]


def _o_dot(h, s, W_K, W_Q):
    B, m, d_h = h.shape
    bil = nn.Bilinear(d_h, s.shape[-1], 1, bias=False).to(h.dtype)
    out = torch.func.functional_call(bil, {"weight": (W_K.T @ W_Q)[None]},
                                     (h.reshape(B * m, d_h), s.repeat_interleave(m, 0)))
    return out.reshape(B, m)


def _o_step(x, s, c, A, b):
    d_x, d_s = x.shape[-1], s.shape[-1]
    inp = torch.cat([x, c], -1)
    cell = nn.RNNCell(inp.shape[-1], d_s).to(x.dtype)
    params = {"weight_ih": torch.cat([A[:, :d_x], A[:, d_x + d_s:]], 1), "weight_hh": A[:, d_x:d_x + d_s],
              "bias_ih": b, "bias_hh": torch.zeros_like(b)}
    return torch.func.functional_call(cell, params, (inp, s))


class _Score:
    """The score_fn handed to attention_decode: -|h_i - W s|^2, an alignment no lesson grades."""

    def __init__(self, W):
        self.W, self.calls = W, 0

    def __call__(self, h, s):
        self.calls += 1
        return -((h - (s @ self.W.T)[:, None, :]) ** 2).sum(-1)


def _o_decode(hs, xs, A, b, score_fn):
    s, ss, ws = hs[:, -1], [], []
    for j in range(xs.shape[1]):
        alpha = _sdpa_weights(score_fn(hs, s))
        s = _o_step(xs[:, j], s, torch.bmm(alpha[:, None], hs)[:, 0], A, b)
        ss.append(s)
        ws.append(alpha)
    return torch.stack(ss, 1), torch.stack(ws, 1)


ORACLES = {
    "additive_scores": (("h", "s", "W", "v"), _o_additive),
    "dot_scores": (("h", "s", "W_K", "W_Q"), _o_dot),
    "attention_weights": (("scores", "mask"), _sdpa_weights),
    "context_vector": (("alpha", "h"), lambda alpha, h: torch.bmm(alpha[:, None], h)[:, 0]),
    "attention_decoder_step": (("x", "s_prev", "c_prev", "A_prime", "b_prime"), _o_step),
    "attention_decode": (("hs", "xs_dec", "A_prime", "b_prime", "score_fn"), _o_decode),
}


def _edge_args(function, dtype, seed=0):
    """(what, args) on the edges the hidden checks probe: sizes in a row (batch 1, m = 1, m == t, t = 1),
    views, large magnitudes (x100 in float32, x1000 in float64), masked positions holding the largest
    scores, a row of zero weights."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, scale=1.0: (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)  # noqa: E731
    big = 100.0 if dtype == torch.float32 else 1000.0
    out = []
    if function == "additive_scores":
        for B, m, d_h, d_s, d_a in [(2, 5, 4, 3, 6), (1, 7, 8, 9, 10), (3, 1, 2, 4, 5)]:
            out.append((f"B={B} m={m}", [r(B, m, d_h), r(B, d_s), r(d_a, d_h + d_s), r(d_a)]))
        out.append(("views", [r(6, 2, 3).transpose(0, 1), r(4, 2).T, r(7, 5).T, r(7)[1:-1]]))
        out.append(("large", [r(2, 5, 4), r(2, 3), r(6, 7, scale=big), r(6)]))
    elif function == "dot_scores":
        for B, m, d_h, d_s, d_k in [(3, 4, 5, 5, 5), (2, 7, 6, 8, 9), (1, 3, 6, 2, 5), (4, 1, 3, 6, 2)]:
            out.append((f"B={B} m={m}", [r(B, m, d_h), r(B, d_s), r(d_k, d_h), r(d_k, d_s)]))
        out.append(("views", [r(2, 3, 5).transpose(1, 2), r(2, 8)[:, 2:], r(3, 4).T, r(6, 4).T]))
        out.append(("large", [r(2, 4, 3, scale=big), r(2, 5), r(6, 3), r(6, 5)]))
    elif function == "attention_weights":
        for B, m in [(4, 7), (1, 3), (2, 1)]:
            mask = torch.rand(B, m, generator=g) > 0.4
            mask[0, 0] = True
            out += [(f"B={B} m={m}", [r(B, m, scale=3.0), None]), (f"B={B} m={m} masked", [r(B, m, scale=3.0), mask])]
        out.append(("large", [r(3, 6, scale=900.0), None]))
        sc = r(4, 6) - 20000.0
        mask = torch.arange(6) < torch.tensor([1, 3, 5, 0])[:, None]
        out.append(("masked positions hold the largest scores", [torch.where(mask, sc, sc + 40000.0), mask]))
        out.append(("views", [r(6, 3, scale=3.0)[1:].T, (r(5, 3) > -0.5).T]))
    elif function == "context_vector":
        for B, m, d_h in [(2, 5, 4), (1, 3, 6), (4, 1, 3)]:
            out.append((f"B={B} m={m}", [torch.softmax(r(B, m), -1), r(B, m, d_h)]))
        alpha = torch.softmax(r(3, 5), -1)
        alpha[1] = 0.0
        out.append(("large, a zero row", [alpha, r(3, 5, 4, scale=1000.0)]))
        out.append(("views", [torch.softmax(r(6, 2), 0).T, r(3, 6, 2).permute(2, 1, 0)]))
    elif function == "attention_decoder_step":
        for B, d_x, d_s, d_h in [(2, 3, 4, 5), (1, 7, 8, 9)]:
            out.append((f"B={B}", [r(B, d_x), r(B, d_s), r(B, d_h), r(d_s, d_x + d_s + d_h), r(d_s)]))
        out.append(("views", [r(4, 2).T, r(2, 4)[:, 1:], r(6, 2).T, r(13, 3).T, r(5)[2:]]))
        out.append(("large", [r(3, 3), r(3, 4), r(3, 2), r(4, 9, scale=big), r(4, scale=big)]))
    else:
        for B, m, t, d, d_x in [(2, 6, 4, 5, 3), (1, 3, 7, 4, 2), (3, 5, 1, 2, 4), (2, 4, 4, 3, 5)]:
            out.append((f"B={B} m={m} t={t}", [torch.tanh(r(B, m, d)), r(B, t, d_x), r(d, d_x + 2 * d, scale=0.5), r(d),
                                               _Score(r(d, d))]))
    return out


def _verdict(function, fn) -> str:
    names, oracle = ORACLES[function]
    for dtype in (torch.float64, torch.float32):
        eps = torch.finfo(dtype).eps
        for what, args in _edge_args(function, dtype):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            before = [a.clone() for a in tensors]
            call_args = [a for a in args if a is not None]
            for keywords in (False, True):
                try:
                    got = fn(**{k: a for k, a in zip(names, args) if a is not None}) if keywords else fn(*call_args)
                except Exception as e:
                    return f"{what}: raised {type(e).__name__}"
                if any(a.shape != c.shape or not torch.equal(a, c) for a, c in zip(tensors, before)):
                    return f"{what}: modified an input"
                score = next((a for a in args if isinstance(a, _Score)), None)
                if score is not None:
                    t = args[1].shape[1]
                    if score.calls != t:
                        return f"{what}: score_fn called {score.calls} times for t = {t} decoder steps"
                    score.calls = 0
                with torch.no_grad():
                    want = oracle(*args)
                if score is not None:
                    score.calls = 0
                pairs = zip(got, want) if isinstance(want, tuple) else [(got, want)]
                if isinstance(want, tuple) and not (isinstance(got, (tuple, list)) and len(got) == len(want)):
                    return f"{what}: not a pair"
                for x, y in pairs:
                    if not isinstance(x, torch.Tensor) or x.shape != y.shape or x.dtype != y.dtype:
                        return f"{what}: not a {y.dtype} tensor of shape {tuple(y.shape)}"
                    if not torch.isfinite(x).all():
                        return f"{what}: NaN or inf"
                    scale = 30 * max(1.0, y.abs().max().item())
                    if not torch.allclose(x, y, rtol=1e3 * eps, atol=1e3 * eps * scale):
                        return f"{what}: differs from PyTorch's by {(x - y).abs().max():.2g}"
    for _, args in _edge_args(function, torch.float64)[:2]:        # for attention_weights: without and with a mask
        verdict = _gradient_and_device_verdict(fn, oracle, args)
        if verdict:
            return verdict
    return ""


def _gradient_and_device_verdict(fn, oracle, args) -> str:
    grads = []
    for f in (fn, oracle):
        leaves = [a.detach().clone().requires_grad_(a.is_floating_point()) if isinstance(a, torch.Tensor) else a
                  for a in args]
        try:
            out = f(*[a for a in leaves if a is not None])
            out = torch.cat([o.flatten() for o in out]) if isinstance(out, (tuple, list)) else out
            cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
            (out * cotangent).sum().backward()
        except Exception as e:
            return f"with inputs that require grad: raised {type(e).__name__}"
        grads.append([a.grad for a in leaves if isinstance(a, torch.Tensor) and a.is_floating_point()])
    for mine, theirs in zip(*grads):
        if mine is None or not torch.allclose(mine, theirs, rtol=1e-9, atol=1e-10):
            return "gradients differ from PyTorch's"
    meta = [a.detach().to("meta") if isinstance(a, torch.Tensor) else a for a in args if a is not None]
    try:
        result = fn(*meta)
    except Exception as e:
        return "creates a tensor off the inputs' device" if ("device" in str(e) or "meta" in str(e)) else ""
    outs = result if isinstance(result, (tuple, list)) else [result]
    if any(isinstance(o, torch.Tensor) and o.device.type != "meta" for o in outs):
        return "returns a tensor off the inputs' device"
    return ""


def _catalog(kind):
    from tests.mistakes import lesson02
    return getattr(lesson02, kind)


def _define(answer):
    from tests.test_mistakes import student_function
    return student_function(answer)


@pytest.mark.parametrize("answer", _catalog("WRONG") + _catalog("WRONG_ON_GPU"), ids=lambda a: a.id)
def test_wrong_catalog_answer_is_wrong_by_the_oracle(answer):
    """Is each wrong answer of lesson 02 really wrong: does it differ from PyTorch's own modules (nn.Linear + Tanh,
    nn.Bilinear, F.scaled_dot_product_attention, torch.bmm, nn.RNNCell), or raise, return NaN, another dtype or
    shape, modify an input, break the gradients or create a tensor off the inputs' device, somewhere?"""
    assert _verdict(answer.function, _define(answer))


@pytest.mark.parametrize("answer", _catalog("CORRECT"), ids=lambda a: a.id)
def test_correct_catalog_answer_is_right_by_the_oracle(answer):
    """Does each correct answer of lesson 02 agree with PyTorch's own modules on every edge?"""
    assert _verdict(answer.function, _define(answer)) == ""


@pytest.mark.parametrize("answer", _catalog("CORRECT"), ids=lambda a: a.id)
def test_correct_catalog_answer_passes_ten_times_inside_the_tolerance(answer):
    """Does each correct answer pass every value comparison of the hidden check with its error at most a tenth
    of the tolerance?"""
    from autograder.checks.core import measured_margins
    with measured_margins() as margins:
        getattr(checks, f"check_{answer.function}")(_define(answer), device="cpu", seed=3)
    assert margins and max(r for _, r in margins) <= 0.1, max(margins, key=lambda m: m[1])
