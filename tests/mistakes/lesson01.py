"""Lesson 01, Seq2Seq and its shortcoming: answers students write.

WRONG answers must lose the points of their function (and, where `says` is set, be named in the
failure message); CORRECT answers, written in styles other than the reference's, must get full marks.
The first WRONG answer of each function is the one the slow tier puts in a real notebook, so it is
one the checks name. The composites may call `simple_rnn_step`; while they are checked it is the
reference's, so some wrong composites below write the step inline to show a mistake of their own.

WRONG_ON_GPU holds mistakes that are invisible on a CPU (a tensor created without device=): the
checks catch them only where CUDA is present, so they are tested only there.
"""
from textwrap import dedent

from .catalog import Answer

LESSON = "01_seq2seq_shortcomings"


def _answer(function: str, name: str, source: str, says: str = "") -> Answer:
    return Answer(LESSON, function, name, dedent(source).strip() + "\n", says)


WRONG = [
    # --- simple_rnn_step -------------------------------------------------------------------------
    _answer("simple_rnn_step", "concatenation [h; x] instead of [x; h]", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([h_prev, x], dim=-1)
            return torch.tanh(z @ A.T + b)
        """, says="the stack is [h_{i-1}; x_i]"),
    _answer("simple_rnn_step", "tanh missing", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1)
            return z @ A.T + b
        """, says="the tanh is missing"),
    _answer("simple_rnn_step", "bias missing", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1)
            return torch.tanh(z @ A.T)
        """, says="the bias b is missing"),
    _answer("simple_rnn_step", "bias added after the tanh", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1)
            return torch.tanh(z @ A.T) + b
        """, says="the bias is added after the tanh"),
    _answer("simple_rnn_step", "sigmoid instead of tanh", """
        def simple_rnn_step(x, h_prev, A, b):
            return torch.sigmoid(torch.cat([x, h_prev], dim=-1) @ A.T + b)
        """, says="a sigmoid is used"),
    _answer("simple_rnn_step", "A applied untransposed", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1)
            return torch.tanh(z @ A + b)
        """, says="a transpose is missing"),
    _answer("simple_rnn_step", "stacked along the batch axis", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=0)
            return torch.tanh(z @ A.T + b)
        """, says="raised RuntimeError"),
    _answer("simple_rnn_step", "input and state weighted by the same block of A", """
        def simple_rnn_step(x, h_prev, A, b):
            d_x = x.shape[-1]
            return torch.tanh(x @ A[:, :d_x].T + h_prev @ A[:, :h_prev.shape[-1]].T + b)
        """),
    _answer("simple_rnn_step", ".detach() inside", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1)
            return torch.tanh(z @ A.T + b).detach()
        """, says="no gradient flows back"),

    # --- rnn_encode ------------------------------------------------------------------------------
    _answer("rnn_encode", "h_0 included and the last state dropped", """
        def rnn_encode(xs, A, b):
            B, m, _ = xs.shape
            h = xs.new_zeros(B, A.shape[0])
            hs = []
            for i in range(m):
                hs.append(h)
                h = simple_rnn_step(xs[:, i], h, A, b)
            return torch.stack(hs, dim=1)
        """, says="h_0 is returned and h_m dropped"),
    _answer("rnn_encode", "state not carried between steps", """
        def rnn_encode(xs, A, b):
            B, m, _ = xs.shape
            h0 = xs.new_zeros(B, A.shape[0])
            return torch.stack([simple_rnn_step(xs[:, i], h0, A, b) for i in range(m)], dim=1)
        """, says="the state is not carried"),
    _answer("rnn_encode", "only the last state returned", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i], h, A, b)
            return h
        """, says="only the last state was returned"),
    _answer("rnn_encode", "states stacked time first", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs.append(h)
            return torch.stack(hs)
        """, says="stacked along the first axis"),
    _answer("rnn_encode", "list of states returned", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs.append(h)
            return hs
        """, says="torch.stack"),
    _answer("rnn_encode", "h_0 of size d_x instead of d_h", """
        def rnn_encode(xs, A, b):
            B, m, d_x = xs.shape
            h = xs.new_zeros(B, d_x)
            hs = []
            for i in range(m):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="raised RuntimeError"),
    _answer("rnn_encode", "sequence read backwards", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in reversed(range(xs.shape[1])):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="the sequence is read backwards"),
    _answer("rnn_encode", "inline step with [h; x]", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in range(xs.shape[1]):
                h = torch.tanh(torch.cat([h, xs[:, i]], dim=-1) @ A.T + b)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="the stack is [h_{i-1}; x_i]"),
    _answer("rnn_encode", "inline step without tanh", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in range(xs.shape[1]):
                h = torch.cat([xs[:, i], h], dim=-1) @ A.T + b
                hs.append(h)
            return torch.stack(hs, dim=1)
        """),
    _answer("rnn_encode", "h_0 in float64 whatever the inputs", """
        def rnn_encode(xs, A, b):
            h = torch.zeros(xs.shape[0], A.shape[0], dtype=torch.float64, device=xs.device)
            hs = []
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="with their dtype"),

    # --- seq2seq_decode --------------------------------------------------------------------------
    _answer("seq2seq_decode", "decoder started from zeros", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = torch.zeros_like(s0)
            ss = []
            for j in range(xs_dec.shape[1]):
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="the decoder starts from zeros"),
    _answer("seq2seq_decode", "off by one: s_j reads x'_{j-1}", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = s0
            ss = []
            for j in range(xs_dec.shape[1]):
                s = simple_rnn_step(xs_dec[:, j - 1], s, A_dec, b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="the inputs are off by one"),
    _answer("seq2seq_decode", "off by one: s_j reads x'_{j+1}", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            t = xs_dec.shape[1]
            s = s0
            ss = []
            for j in range(t):
                s = simple_rnn_step(xs_dec[:, (j + 1) % t], s, A_dec, b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="the inputs are off by one"),
    _answer("seq2seq_decode", "off by one: the inputs shifted right again", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            shifted = torch.cat([torch.zeros_like(xs_dec[:, :1]), xs_dec[:, :-1]], dim=1)
            s = s0
            ss = []
            for j in range(shifted.shape[1]):
                s = simple_rnn_step(shifted[:, j], s, A_dec, b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="the inputs are off by one"),
    _answer("seq2seq_decode", "first input skipped", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = s0
            ss = []
            for j in range(1, xs_dec.shape[1]):
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="one state per input"),
    _answer("seq2seq_decode", "s_0 included and the last state dropped", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = s0
            ss = []
            for j in range(xs_dec.shape[1]):
                ss.append(s)
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
            return torch.stack(ss, dim=1)
        """, says="s_0 is returned and s_t dropped"),
    _answer("seq2seq_decode", "state not carried: every step from s0", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            ss = [simple_rnn_step(xs_dec[:, j], s0, A_dec, b_dec) for j in range(xs_dec.shape[1])]
            return torch.stack(ss, dim=1)
        """, says="the state is not carried"),
    _answer("seq2seq_decode", "only the last state returned", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = s0
            for j in range(xs_dec.shape[1]):
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
            return s
        """, says="only the last state was returned"),
    _answer("seq2seq_decode", "inline step with [s; x']", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = s0
            ss = []
            for j in range(xs_dec.shape[1]):
                s = torch.tanh(torch.cat([s, xs_dec[:, j]], dim=-1) @ A_dec.T + b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="the stack is [s_{j-1}; x'_j]"),
    _answer("seq2seq_decode", "state updated in place, inside s0", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = s0
            ss = []
            for j in range(xs_dec.shape[1]):
                s[:] = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
                ss.append(s.clone())
            return torch.stack(ss, dim=1)
        """, says="modified in place"),
]

WRONG_ON_GPU = [
    _answer("rnn_encode", "h_0 created without device=", """
        def rnn_encode(xs, A, b):
            h = torch.zeros(xs.shape[0], A.shape[0], dtype=xs.dtype)
            hs = []
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="on the inputs' device"),
]

CORRECT = [
    # --- simple_rnn_step -------------------------------------------------------------------------
    _answer("simple_rnn_step", "A split into its x and h blocks", """
        def simple_rnn_step(x, h_prev, A, b):
            d_x = x.shape[-1]
            return torch.tanh(x @ A[:, :d_x].T + h_prev @ A[:, d_x:].T + b)
        """),
    _answer("simple_rnn_step", "einsum and F.linear, computed in float64 and cast back", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=1).double()
            pre = torch.einsum("hk,bk->bh", A.double(), z) + b.double()
            return torch.tanh(pre).to(x.dtype)
        """),
    _answer("simple_rnn_step", "tanh written with exp", """
        def simple_rnn_step(x, h_prev, A, b):
            a = F.linear(torch.cat((x, h_prev), -1), A, b)
            return 1 - 2 / (torch.exp(2 * a) + 1)
        """),

    # --- rnn_encode ------------------------------------------------------------------------------
    _answer("rnn_encode", "states written into a preallocated tensor, step inline", """
        def rnn_encode(xs, A, b):
            B, m, d_x = xs.shape
            d_h = A.shape[0]
            hs = torch.zeros(B, m, d_h, dtype=xs.dtype, device=xs.device)
            h = torch.zeros(B, d_h, dtype=xs.dtype, device=xs.device)
            for i in range(m):
                h = torch.tanh(xs[:, i] @ A[:, :d_x].T + h @ A[:, d_x:].T + b)
                hs[:, i] = h
            return hs
        """),
    _answer("rnn_encode", "input projections precomputed, unbind and stack", """
        def rnn_encode(xs, A, b):
            d_x = xs.shape[-1]
            xw = xs @ A[:, :d_x].T + b                  # (B, m, d_h) for all steps at once
            h = xw.new_zeros(xw.shape[0], xw.shape[-1])
            hs = []
            for xw_i in xw.unbind(1):
                h = torch.tanh(xw_i + h @ A[:, d_x:].T)
                hs.append(h)
            return torch.stack(hs, 1)
        """),
    _answer("rnn_encode", "recursion through simple_rnn_step, cat along time", """
        def rnn_encode(xs, A, b):
            h = torch.zeros_like(xs[:, 0, :1]).expand(-1, A.shape[0])
            out = None
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i, :], h, A, b)
                out = h[:, None] if out is None else torch.cat([out, h[:, None]], dim=1)
            return out
        """),

    # --- seq2seq_decode --------------------------------------------------------------------------
    _answer("seq2seq_decode", "inline step, preallocated output", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            B, t, d_x = xs_dec.shape
            ss = s0.new_empty(B, t, s0.shape[-1])
            s = s0
            for j in range(t):
                s = torch.tanh(torch.cat([xs_dec[:, j], s], dim=-1) @ A_dec.T + b_dec)
                ss[:, j] = s
            return ss
        """),
    _answer("seq2seq_decode", "1-based loop over j = 1..t", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            t = xs_dec.shape[1]
            s = [s0]
            for j in range(1, t + 1):
                s.append(simple_rnn_step(xs_dec[:, j - 1], s[j - 1], A_dec, b_dec))
            return torch.stack(s[1:], dim=1)
        """),
    _answer("seq2seq_decode", "via torch.nn.RNN with copied weights", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            d_x, d_s = xs_dec.shape[-1], s0.shape[-1]
            rnn = nn.RNN(d_x, d_s, batch_first=True).to(device=s0.device, dtype=s0.dtype)
            params = {"weight_ih_l0": A_dec[:, :d_x], "weight_hh_l0": A_dec[:, d_x:],
                      "bias_ih_l0": b_dec, "bias_hh_l0": torch.zeros_like(b_dec)}
            ss, _ = torch.func.functional_call(rnn, params, (xs_dec, s0[None].contiguous()))
            return ss
        """),
]
