"""The ready-made layers lessons 04 and 06 count and time compute what lessons 01, 02 and 05 define."""
import torch

from lessonkit import parallel, timing


def _dot(h, s):
    return (h @ s.unsqueeze(-1)).squeeze(-1)                                  # (B, m)


def _step(A, b, *parts):
    return torch.tanh(torch.cat(parts, dim=-1) @ A.T + b)


def test_timing_decode_is_lesson_01s_and_lesson_02s_decoder():
    """Does timing.decode give the plain decoder's states without a score function, and the attention
    decoder's (new weights from every s_j, c_j read by the update) with one, calling it once per state?"""
    p = timing.random_problem(3, 7, 5, seed=1)
    hs, xs, b = p["hs"].double(), p["xs_dec"].double(), p["b"].double()
    A_plain, A_att = p["A_plain"].double(), p["A_attention"].double()
    s, plain, attention = hs[:, -1], [], []
    for j in range(xs.shape[1]):
        s = _step(A_plain, b, xs[:, j], s)
        plain.append(s)
    s = hs[:, -1]
    for j in range(xs.shape[1]):
        c = (torch.softmax(_dot(hs, s), -1).unsqueeze(1) @ hs).squeeze(1)
        s = _step(A_att, b, xs[:, j], s, c)
        attention.append(s)
    torch.testing.assert_close(timing.decode(hs, xs, A_plain, b), torch.stack(plain, 1))
    calls = []
    got = timing.decode(hs, xs, A_att, b, lambda h, s: calls.append(s.shape) or _dot(h, s))
    torch.testing.assert_close(got, torch.stack(attention, 1))
    assert len(calls) == xs.shape[1]


def test_parallel_rnn_self_attention_is_lesson_05s_layer():
    """Does the layer lesson 06 times compute lesson 05's states: h_j from [x_j; c_{j-1}], c_j the softmax
    of h_i . h_j over i <= j?"""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    A, b = torch.randn(4, 7, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    c, hs = X.new_zeros(2, 4), []
    for j in range(6):
        hs.append(_step(A, b, X[:, j], c))
        H = torch.stack(hs, 1)
        c = (torch.softmax(_dot(H, hs[-1]), -1).unsqueeze(1) @ H).squeeze(1)
    torch.testing.assert_close(parallel.rnn_self_attention(X, A, b), torch.stack(hs, 1))
