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


# --- the edges of the contract (issue 15): calling, input, numerical and dtype/device families ---------
# Each is proven wrong (or right) by tests/test_checks_seq2seq.py against nn.RNNCell / nn.RNN on the edges
# the hidden checks probe.

WRONG += [
    # simple_rnn_step: calling edges
    _answer("simple_rnn_step", "the state parameter named h, not h_prev", """
        def simple_rnn_step(x, h, A, b):
            return torch.tanh(torch.cat([x, h], dim=-1) @ A.T + b)
        """, says="parameter names of the contract"),
    _answer("simple_rnn_step", "parameters named after the seed: (x_i, h_prev, A, b)", """
        def simple_rnn_step(x_i, h_prev, A, b):
            return torch.tanh(torch.cat([x_i, h_prev], dim=-1) @ A.T + b)
        """, says="parameter names of the contract"),
    _answer("simple_rnn_step", "A's blocks split once and kept from the first call", """
        _blocks = []
        def simple_rnn_step(x, h_prev, A, b):
            if not _blocks:
                _blocks.extend([A[:, :x.shape[-1]], A[:, x.shape[-1]:]])
            A_x, A_h = _blocks
            return torch.tanh(x @ A_x.T + h_prev @ A_h.T + b)
        """, says="earlier call"),
    _answer("simple_rnn_step", "squeeze() without a dim (batch of 1 collapses)", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1).unsqueeze(-1)       # (B, d_x + d_h, 1)
            return torch.tanh((A @ z).squeeze() + b)
        """, says="squeeze"),
    _answer("simple_rnn_step", "x and h_prev stacked with torch.hstack after flattening", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.hstack([x.flatten(), h_prev.flatten()])       # fine for one example only
            return torch.tanh(A @ z.reshape(-1, A.shape[1]).T + b[:, None]).T
        """, says="the examples of the batch are mixed"),
    # simple_rnn_step: input edges
    _answer("simple_rnn_step", "the new state written into h_prev (h_prev.copy_)", """
        def simple_rnn_step(x, h_prev, A, b):
            h_prev.copy_(torch.tanh(torch.cat([x, h_prev], dim=-1) @ A.T + b))
            return h_prev.clone()
        """, says="modified in place"),
    _answer("simple_rnn_step", "b broadcast in place (b.unsqueeze_(0))", """
        def simple_rnn_step(x, h_prev, A, b):
            b.unsqueeze_(0)
            out = torch.tanh(torch.cat([x, h_prev], dim=-1) @ A.T + b)
            return out
        """, says="modified in place"),
    _answer("simple_rnn_step", "x scaled in place to its row norm", """
        def simple_rnn_step(x, h_prev, A, b):
            x /= x.norm(dim=-1, keepdim=True).clamp(min=1.0)     # "keep the inputs bounded"
            return torch.tanh(torch.cat([x, h_prev], dim=-1) @ A.T + b)
        """, says="modified in place"),
    _answer("simple_rnn_step", "A.T taken in place (A.t_())", """
        def simple_rnn_step(x, h_prev, A, b):
            W = A.t_()
            h = torch.tanh(torch.cat([x, h_prev], dim=-1) @ W + b)
            A.t_()
            return h
        """, says="modified in place"),
    # simple_rnn_step: numerical edges
    _answer("simple_rnn_step", "tanh written as (exp(2z) - 1) / (exp(2z) + 1)", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1) @ A.T + b
            e = torch.exp(2 * z)
            return (e - 1) / (e + 1)
        """, says="a tanh written with exp overflows"),
    _answer("simple_rnn_step", "tanh written as sinh / cosh from exp", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1) @ A.T + b
            return (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z))
        """, says="a tanh written with exp overflows"),
    _answer("simple_rnn_step", "pre-activation clamped to [-10, 10] against overflow", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1) @ A.T + b
            return torch.tanh(z.clamp(-10, 10))
        """, says="clamped to [-10, 10]"),
    _answer("simple_rnn_step", "pre-activation clamped to [-5, 5]", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.clamp(F.linear(torch.cat([x, h_prev], 1), A, b), min=-5.0, max=5.0)
            return torch.tanh(z)
        """, says="clamped to [-5, 5]"),
    _answer("simple_rnn_step", "tanh from a float32 sigmoid: 2 sigmoid(2z) - 1", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1) @ A.T + b
            return (2 * torch.sigmoid(2 * z.float()) - 1).to(z.dtype)
        """, says="float32 precision"),
    # simple_rnn_step: dtype and device
    _answer("simple_rnn_step", "float64 forced with .double()", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1).double()
            return torch.tanh(z @ A.double().T + b.double())
        """, says="keep the inputs' dtype"),
    _answer("simple_rnn_step", "A cast to float32 for speed, result cast back", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1)
            return torch.tanh(z.float() @ A.float().T + b.float()).to(x.dtype)
        """, says="float32 precision"),
    _answer("simple_rnn_step", "bias folded in through a ones column made with torch.ones(...) (float32)", """
        def simple_rnn_step(x, h_prev, A, b):
            ones = torch.ones(x.shape[0], 1)
            z = torch.cat([x, h_prev, ones.to(x.dtype)], dim=-1)
            Ab = torch.cat([A, b[:, None]], dim=1).float()
            return torch.tanh(z.float() @ Ab.T).to(x.dtype)
        """, says="float32 precision"),

    # rnn_encode: calling edges
    _answer("rnn_encode", "the inputs parameter named x, not xs", """
        def rnn_encode(x, A, b):
            h = x.new_zeros(x.shape[0], A.shape[0])
            hs = []
            for i in range(x.shape[1]):
                h = simple_rnn_step(x[:, i], h, A, b)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="parameter names of the contract"),
    _answer("rnn_encode", "h_0 kept at module level from the first call", """
        _h0 = {}
        def rnn_encode(xs, A, b):
            if "h" not in _h0:
                _h0["h"] = xs.new_zeros(xs.shape[0], A.shape[0])
            h, hs = _h0["h"], []
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="earlier call"),
    _answer("rnn_encode", "squeeze() of the stacked states (batch 1 collapses)", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for x in xs.unbind(1):
                h = simple_rnn_step(x, h, A, b)
                hs.append(h)
            return torch.stack(hs, dim=1).squeeze()
        """, says="squeeze"),
    # rnn_encode: input edges
    _answer("rnn_encode", "xs transposed in place to loop over time (xs.transpose_)", """
        def rnn_encode(xs, A, b):
            xs.transpose_(0, 1)                         # (m, B, d_x): iterate over time
            h = xs.new_zeros(xs.shape[1], A.shape[0])
            hs = []
            for x in xs:
                h = simple_rnn_step(x, h, A, b)
                hs.append(h)
            xs.transpose_(0, 1)
            return torch.stack(hs, dim=1)
        """, says="modified in place"),
    _answer("rnn_encode", "states written back into xs's storage when d_x == d_h (xs[:, i] = h)", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            out = xs if xs.shape[-1] == A.shape[0] else xs.new_empty(*xs.shape[:2], A.shape[0])
            for i in range(xs.shape[1]):
                h = simple_rnn_step(xs[:, i], h, A, b)
                out[:, i] = h
            return out.clone()
        """, says="modified in place"),
    # rnn_encode: numerical edges
    _answer("rnn_encode", "inline step with a tanh written with exp", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in range(xs.shape[1]):
                z = torch.cat([xs[:, i], h], -1) @ A.T + b
                h = (torch.exp(2 * z) - 1) / (torch.exp(2 * z) + 1)
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="a tanh written with exp overflows"),
    _answer("rnn_encode", "inline step with the pre-activation clamped to [-10, 10]", """
        def rnn_encode(xs, A, b):
            h = xs.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in range(xs.shape[1]):
                h = torch.tanh((torch.cat([xs[:, i], h], -1) @ A.T + b).clamp(-10, 10))
                hs.append(h)
            return torch.stack(hs, dim=1)
        """, says="clamped to [-10, 10]"),
    # rnn_encode: dtype and device
    _answer("rnn_encode", "states preallocated with torch.zeros(B, m, d_h) (float32)", """
        def rnn_encode(xs, A, b):
            B, m, _ = xs.shape
            hs = torch.zeros(B, m, A.shape[0])
            h = xs.new_zeros(B, A.shape[0])
            for i in range(m):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs[:, i] = h
            return hs
        """, says="keep the inputs' dtype"),
    _answer("rnn_encode", "computed in float32, cast back with .to(xs.dtype)", """
        def rnn_encode(xs, A, b):
            x32, A32, b32 = xs.float(), A.float(), b.float()
            h = x32.new_zeros(xs.shape[0], A.shape[0])
            hs = []
            for i in range(xs.shape[1]):
                h = torch.tanh(torch.cat([x32[:, i], h], -1) @ A32.T + b32)
                hs.append(h)
            return torch.stack(hs, dim=1).to(xs.dtype)
        """, says="float32 precision"),
    _answer("rnn_encode", "states preallocated with torch.empty(...).double()", """
        def rnn_encode(xs, A, b):
            B, m, _ = xs.shape
            hs = torch.empty(B, m, A.shape[0], device=xs.device).double()
            h = xs.new_zeros(B, A.shape[0])
            for i in range(m):
                h = simple_rnn_step(xs[:, i], h, A, b)
                hs[:, i] = h
            return hs
        """, says="keep the inputs' dtype"),

    # seq2seq_decode: calling edges
    _answer("seq2seq_decode", "parameters named (s0, xs, A, b) as in rnn_encode", """
        def seq2seq_decode(s0, xs, A, b):
            s, ss = s0, []
            for j in range(xs.shape[1]):
                s = simple_rnn_step(xs[:, j], s, A, b)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="parameter names of the contract"),
    _answer("seq2seq_decode", "output buffer kept at module level between calls", """
        _out = []
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            if not _out:
                _out.append(s0.new_zeros(xs_dec.shape[0], xs_dec.shape[1], s0.shape[-1]))
            ss, s = _out[0].clone(), s0
            for j in range(xs_dec.shape[1]):
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
                ss[:, j] = s
            return ss
        """, says="earlier call"),
    _answer("seq2seq_decode", "squeeze() of the stacked states (t = 1 collapses)", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s, ss = s0, []
            for x in xs_dec.unbind(1):
                s = simple_rnn_step(x, s, A_dec, b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1).squeeze()
        """, says="squeeze"),
    # seq2seq_decode: input edges
    _answer("seq2seq_decode", "xs_dec transposed in place (xs_dec.transpose_)", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            xs_dec.transpose_(0, 1)
            s, ss = s0, []
            for x in xs_dec:
                s = simple_rnn_step(x, s, A_dec, b_dec)
                ss.append(s)
            xs_dec.transpose_(0, 1)
            return torch.stack(ss, dim=1)
        """, says="modified in place"),
    _answer("seq2seq_decode", "b_dec broadcast in place (b_dec.unsqueeze_)", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            b_dec.unsqueeze_(0)
            s, ss = s0, []
            for j in range(xs_dec.shape[1]):
                s = torch.tanh(torch.cat([xs_dec[:, j], s], -1) @ A_dec.T + b_dec)
                ss.append(s)
            b_dec.squeeze_(0)
            return torch.stack(ss, dim=1)
        """, says="modified in place"),
    # seq2seq_decode: numerical edges
    _answer("seq2seq_decode", "inline step with tanh as 1 - 2 / (exp(2z) + 1) in float32", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s, ss = s0, []
            for j in range(xs_dec.shape[1]):
                z = (torch.cat([xs_dec[:, j], s], -1) @ A_dec.T + b_dec).float()
                s = (1 - 2 / (torch.exp(2 * z) + 1)).to(s0.dtype)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="float32 precision"),
    _answer("seq2seq_decode", "inline step with sinh / cosh", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s, ss = s0, []
            for j in range(xs_dec.shape[1]):
                z = torch.cat([xs_dec[:, j], s], -1) @ A_dec.T + b_dec
                s = torch.sinh(z) / torch.cosh(z)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="a tanh written with exp overflows"),
    _answer("seq2seq_decode", "inline step with the pre-activation clamped to [-5, 5]", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s, ss = s0, []
            for j in range(xs_dec.shape[1]):
                s = torch.tanh(torch.clamp(torch.cat([xs_dec[:, j], s], -1) @ A_dec.T + b_dec, -5, 5))
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="clamped to [-5, 5]"),
    # seq2seq_decode: dtype and device
    _answer("seq2seq_decode", "states preallocated with torch.zeros(B, t, d_s) (float32)", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            B, t, _ = xs_dec.shape
            ss = torch.zeros(B, t, s0.shape[-1], device=s0.device)
            s = s0
            for j in range(t):
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
                ss[:, j] = s
            return ss
        """, says="keep the inputs' dtype"),
    _answer("seq2seq_decode", "s0 converted with torch.tensor(s0.tolist())", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            s = torch.tensor(s0.tolist()).to(xs_dec.dtype)       # a fresh copy of the start state
            ss = []
            for j in range(xs_dec.shape[1]):
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
                ss.append(s)
            return torch.stack(ss, dim=1)
        """, says="float32 precision"),
]

WRONG_ON_GPU += [
    _answer("seq2seq_decode", "states preallocated with torch.zeros(..., dtype=) without device=", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            B, t, _ = xs_dec.shape
            ss = torch.zeros(B, t, s0.shape[-1], dtype=s0.dtype)
            s = s0
            for j in range(t):
                s = simple_rnn_step(xs_dec[:, j], s, A_dec, b_dec)
                ss[:, j] = s
            return ss
        """, says="is on cpu"),
    _answer("simple_rnn_step", "bias folded in through torch.ones(B, 1, dtype=x.dtype) without device=", """
        def simple_rnn_step(x, h_prev, A, b):
            ones = torch.ones(x.shape[0], 1, dtype=x.dtype)
            z = torch.cat([x, h_prev, ones], dim=-1)
            return torch.tanh(z @ torch.cat([A, b[:, None]], dim=1).T)
        """, says="device"),
]

CORRECT += [
    _answer("simple_rnn_step", "tanh as 2 sigmoid(2z) - 1 in the inputs' dtype", """
        def simple_rnn_step(x, h_prev, A, b):
            z = torch.cat([x, h_prev], dim=-1) @ A.T + b
            return 2 * torch.sigmoid(2 * z) - 1
        """),
    _answer("simple_rnn_step", "torch.addmm with keyword arguments", """
        def simple_rnn_step(x, h_prev, A, b):
            return torch.addmm(b, torch.cat((x, h_prev), dim=1), A.t()).tanh()
        """),
    _answer("rnn_encode", "nn.RNN through functional_call", """
        def rnn_encode(xs, A, b):
            d_x, d_h = xs.shape[-1], A.shape[0]
            rnn = nn.RNN(d_x, d_h, batch_first=True).to(device=xs.device, dtype=xs.dtype)
            params = {"weight_ih_l0": A[:, :d_x], "weight_hh_l0": A[:, d_x:],
                      "bias_ih_l0": b, "bias_hh_l0": torch.zeros_like(b)}
            hs, _ = torch.func.functional_call(rnn, params, (xs,))
            return hs
        """),
    _answer("seq2seq_decode", "recursion over the remaining inputs", """
        def seq2seq_decode(s0, xs_dec, A_dec, b_dec):
            if xs_dec.shape[1] == 0:
                return s0.new_zeros(s0.shape[0], 0, s0.shape[-1])
            s1 = simple_rnn_step(xs_dec[:, 0], s0, A_dec, b_dec)
            return torch.cat([s1[:, None], seq2seq_decode(s1, xs_dec[:, 1:], A_dec, b_dec)], dim=1)
        """),
]
