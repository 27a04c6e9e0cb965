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
