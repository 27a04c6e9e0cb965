"""Lesson 05, SimpleRNN + self-attention: answers students write."""
from .catalog import Answer

L = "05_self_attention_rnn"
STEP, LAYER = "self_attention_rnn_step", "self_attention_rnn"


def _layer(body: str, *, default: str = "(H @ h.unsqueeze(-1)).squeeze(-1)", before: str = "",
           pad: str = "F.pad(alpha, (0, m - H.shape[1]))") -> str:
    """A layer answer with one piece changed: `body` is the loop's body after h_i is appended."""
    return f'''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
{before}    for i in range(m):
{body}
        if score_fn is None:
            scores = {default}
        else:
            scores = score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        rows.append({pad})
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
'''


GOOD_BODY = '''        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)'''

WRONG = [
    # --- the step ---------------------------------------------------------------------------------------
    Answer(L, STEP, "[c; x] instead of [x; c]", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh(torch.cat([c_prev, x], dim=-1) @ A.T + b)
''', says="[c_{i-1}; x_i] instead of [x_i; c_{i-1}]"),
    Answer(L, STEP, "no tanh", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.cat([x, c_prev], dim=-1) @ A.T + b
''', says="tanh is missing"),
    Answer(L, STEP, "no bias", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh(torch.cat([x, c_prev], dim=-1) @ A.T)
''', says="bias b is missing"),
    Answer(L, STEP, "A applied untransposed", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh(A @ torch.cat([x, c_prev], dim=-1) + b)
''', says="raised"),
    Answer(L, STEP, "hand-written tanh, (exp(2z) - 1) / (exp(2z) + 1), overflows", '''
def self_attention_rnn_step(x, c_prev, A, b):
    e = torch.exp(2 * (torch.cat([x, c_prev], dim=-1) @ A.T + b))
    return (e - 1) / (e + 1)
''', says="hand-written tanh"),
    Answer(L, STEP, "sigmoid instead of tanh", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.sigmoid(torch.cat([x, c_prev], dim=-1) @ A.T + b)
''', says="sigmoid"),
    Answer(L, STEP, "pre-activation clamped to [-10, 10] (tanh(10) is not 1)", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh((torch.cat([x, c_prev], dim=-1) @ A.T + b).clamp(-10.0, 10.0))
''', says="do not clamp"),
    Answer(L, STEP, "concatenation computed in float32, cast back", '''
def self_attention_rnn_step(x, c_prev, A, b):
    z = torch.cat([x, c_prev], dim=-1).float()
    return torch.tanh(z @ A.T.float() + b.float()).to(x.dtype)
''', says="float32 precision"),
    Answer(L, STEP, "the context parameter named h_prev, as in lesson 01", '''
def self_attention_rnn_step(x, h_prev, A, b):
    return torch.tanh(torch.cat([x, h_prev], dim=-1) @ A.T + b)
''', says="parameter names of the contract"),
    Answer(L, STEP, "A transposed in place (A.t_())", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh(torch.cat([x, c_prev], dim=-1) @ A.t_() + b)
''', says="modified in place"),
    Answer(L, STEP, "b given a batch axis in place (b.unsqueeze_(0))", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh(torch.cat([x, c_prev], dim=-1) @ A.T + b.unsqueeze_(0))
''', says="modified in place"),
    Answer(L, STEP, ".squeeze() without a dim drops the batch axis of size 1", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh(torch.cat([x, c_prev], dim=-1) @ A.T + b).squeeze()
''', says="squeeze"),

    # --- the layer --------------------------------------------------------------------------------------
    Answer(L, LAYER, "h_{i-1} where c_{i-1} belongs", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    h = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], h, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        cs.append((alpha.unsqueeze(1) @ H).squeeze(1))
        rows.append(F.pad(alpha, (0, m - i - 1)))
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="h_{i-1} where c_{i-1} belongs"),
    Answer(L, LAYER, "a position does not attend to itself (weights over j < i)", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        if i == 0:
            c, alpha = h, xs.new_ones(B, 1)
        else:
            H = torch.stack(hs, dim=1)                      # h_1..h_{i-1}: the new state left out
            scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
            alpha = torch.softmax(scores, dim=-1)
            c = (alpha.unsqueeze(1) @ H).squeeze(1)
        hs.append(h)
        cs.append(c)
        rows.append(F.pad(alpha, (0, m - alpha.shape[1])))
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="attends to itself"),
    Answer(L, LAYER, "attends to future positions (states first, then attention over all m)", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    h = xs.new_zeros(B, A.shape[0])
    hs = []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], h, A, b)
        hs.append(h)
    H = torch.stack(hs, dim=1)
    cs, rows = [], []
    for i in range(m):
        scores = (H @ H[:, i].unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, H[:, i])
        alpha = torch.softmax(scores, dim=-1)
        cs.append((alpha.unsqueeze(1) @ H).squeeze(1))
        rows.append(alpha)
    return H, torch.stack(cs, 1), torch.stack(rows, 1)
''', says="future positions"),
    Answer(L, LAYER, "softmax over the batch axis", _layer(GOOD_BODY).replace(
        "torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=0)"), says="batch axis"),
    Answer(L, LAYER, "c_1 != h_1: a tanh on the context", _layer(GOOD_BODY).replace(
        "c = (alpha.unsqueeze(1) @ H).squeeze(1)", "c = torch.tanh((alpha.unsqueeze(1) @ H).squeeze(1))"),
        says="c_1 should equal h_1"),
    Answer(L, LAYER, "h_0 = 0 among the attended states (so c_1 != h_1)", _layer(
        GOOD_BODY.replace("H = torch.stack(hs, dim=1)",
                          "H = torch.stack([torch.zeros_like(h)] + hs, dim=1)"),
        pad="F.pad(alpha[:, 1:], (0, m - H.shape[1] + 1))"), says="include h_0 = 0"),
    Answer(L, LAYER, "state not carried (c never fed back)", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c0 = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c0, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        cs.append((alpha.unsqueeze(1) @ H).squeeze(1))
        rows.append(F.pad(alpha, (0, m - i - 1)))
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="not carried"),
    Answer(L, LAYER, "score_fn's arguments swapped", _layer(GOOD_BODY).replace(
        "score_fn(H, h)", "score_fn(h, H)"), says="swapped"),
    Answer(L, LAYER, "a finite mask (-30) leaves tiny weights above the diagonal", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        full = F.pad(scores, (0, m - i - 1), value=-30.0)      # "masked" future positions
        alpha = torch.softmax(full, dim=-1)                     # (B, m)
        c = (alpha[:, :i + 1].unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        rows.append(alpha)
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="tiny but not exactly 0"),
    Answer(L, LAYER, "default score scaled by 1/sqrt(d_h)", _layer(
        GOOD_BODY, default="(H @ h.unsqueeze(-1)).squeeze(-1) / math.sqrt(h.shape[-1])"),
        says="divided by sqrt(d_h)"),
    Answer(L, LAYER, "default score through the state block of A (a made-up W)", _layer(
        GOOD_BODY, default="((H @ A[:, -A.shape[0]:].T) @ h.unsqueeze(-1)).squeeze(-1)"),
        says="plain dot product"),
    Answer(L, LAYER, "stale query: the weights of position i computed from h_{i-1}", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    q = c
    hs, cs, rows = [], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ q.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, q)
        alpha = torch.softmax(scores, dim=-1)
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        q = h
        cs.append(c)
        rows.append(F.pad(alpha, (0, m - i - 1)))
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="stale query"),
    Answer(L, LAYER, "stale weights: computed once and reused", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    alpha = None
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        if alpha is None:
            scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
            alpha = torch.softmax(scores, dim=-1)
        else:
            alpha = F.pad(alpha, (0, 1))                     # the old weights, one more (zero) position
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        rows.append(F.pad(alpha, (0, m - i - 1)))
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="called once"),
    Answer(L, LAYER, "weights transposed (column i holds position i)", _layer(GOOD_BODY).replace(
        "torch.stack(rows, 1)", "torch.stack(rows, 1).transpose(1, 2)"), says="transposed"),
    Answer(L, LAYER, "score_fn ignored", _layer(GOOD_BODY).replace(
        "scores = score_fn(H, h)", "scores = (H @ h.unsqueeze(-1)).squeeze(-1)"), says="never called"),
    Answer(L, LAYER, "cs holds c_0..c_{m-1}", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    for i in range(m):
        cs.append(c)
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        rows.append(F.pad(alpha, (0, m - i - 1)))
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="cs starts with c_0"),
    Answer(L, LAYER, "hs holds h_0..h_{m-1}", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    hs, out, cs, rows = [], [xs.new_zeros(B, A.shape[0])], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        out.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        rows.append(F.pad(alpha, (0, m - i - 1)))
    return torch.stack(out[:-1], 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="hs starts with h_0"),
    Answer(L, LAYER, "softmax as exp(s) / sum exp(s), without the row maximum", _layer(GOOD_BODY).replace(
        "alpha = torch.softmax(scores, dim=-1)",
        "e = torch.exp(scores)\n        alpha = e / e.sum(dim=-1, keepdim=True)"), says="Subtract the row maximum"),
    Answer(L, LAYER, "scores clamped to [-50, 50] against overflow", _layer(GOOD_BODY).replace(
        "alpha = torch.softmax(scores, dim=-1)", "alpha = torch.softmax(scores.clamp(-50.0, 50.0), dim=-1)"),
        says="do not clamp"),
    Answer(L, LAYER, "softmax over the rows' common maximum (scores.max() over the batch too)", _layer(
        GOOD_BODY).replace("alpha = torch.softmax(scores, dim=-1)",
        "e = torch.exp(scores - scores.max())\n        alpha = e / e.sum(dim=-1, keepdim=True)"),
        says="Subtract the row maximum"),
    Answer(L, LAYER, "the score_fn parameter named score", _layer(GOOD_BODY).replace(
        "def self_attention_rnn(xs, A, b, score_fn=None):",
        "def self_attention_rnn(xs, A, b, score=None):\n    score_fn = score"), says="parameter names of the contract"),
    Answer(L, LAYER, "weights buffer kept at module level between calls", '''
_BUFFER = {}


def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    if "weights" not in _BUFFER:
        _BUFFER["weights"] = xs.new_zeros(B, m, m)
    weights = _BUFFER["weights"].clone()
    c = xs.new_zeros(B, A.shape[0])
    hs, cs = [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        weights[:, i, :i + 1] = alpha
    return torch.stack(hs, 1), torch.stack(cs, 1), weights
''', says="kept between calls"),
    Answer(L, LAYER, "xs transposed in place to loop over time (xs.transpose_(0, 1))", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    steps = xs.transpose_(0, 1)                                 # (m, B, d_x): but xs itself changed
    c = steps.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    for i, x in enumerate(steps):
        h = self_attention_rnn_step(x, c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        rows.append(F.pad(alpha, (0, m - i - 1)))
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="modified in place"),
    Answer(L, LAYER, "the attention computed in float32, cast back", _layer(GOOD_BODY).replace(
        "alpha = torch.softmax(scores, dim=-1)", "alpha = torch.softmax(scores.float(), dim=-1).to(scores.dtype)"),
        says="float32 precision"),
    Answer(L, LAYER, "weights buffer torch.zeros(B, m, m) without dtype=", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    weights = torch.zeros(B, m, m, device=xs.device)            # float32, whatever xs is
    c = xs.new_zeros(B, A.shape[0])
    hs, cs = [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else score_fn(H, h)
        alpha = torch.softmax(scores, dim=-1)
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        weights[:, i, :i + 1] = alpha
    return torch.stack(hs, 1), torch.stack(cs, 1), weights
''', says="keep the inputs' dtype"),
    Answer(L, LAYER, "returns detached tensors", _layer(GOOD_BODY).replace(
        "return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)",
        "return torch.stack(hs, 1).detach(), torch.stack(cs, 1).detach(), torch.stack(rows, 1).detach()"),
        says="no gradient flows"),
]

CORRECT = [
    Answer(L, STEP, "two blocks of A", '''
def self_attention_rnn_step(x, c_prev, A, b):
    d_x = x.shape[-1]
    return torch.tanh(x @ A[:, :d_x].T + c_prev @ A[:, d_x:].T + b)
'''),
    Answer(L, STEP, "einsum", '''
def self_attention_rnn_step(x, c_prev, A, b):
    z = torch.cat((x, c_prev), 1)
    return torch.einsum("hk,bk->bh", A, z).add(b).tanh()
'''),
    Answer(L, STEP, "pre-activation clamped to [-20, 20] (tanh is 1 there to the last bit)", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh((torch.cat([x, c_prev], dim=-1) @ A.T + b).clamp(-20.0, 20.0))
'''),
    Answer(L, STEP, "F.linear on torch.hstack, float64 inside", '''
def self_attention_rnn_step(x, c_prev, A, b):
    z = torch.hstack([x, c_prev]).to(torch.float64)
    return torch.tanh(F.linear(z, A.to(torch.float64), b.to(torch.float64))).to(x.dtype)
'''),
    Answer(L, LAYER, "scores padded with -1e9 over all m positions (exp underflows to exactly 0)", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = torch.zeros(B, A.shape[0], dtype=xs.dtype, device=xs.device)
    hs, cs, rows = [], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs, dim=1)
        scores = torch.einsum("bjd,bd->bj", H, h) if score_fn is None else score_fn(H, h)
        full = F.pad(scores, (0, m - i - 1), value=-1e9)        # (B, m)
        alpha = torch.softmax(full, dim=-1)
        c = torch.einsum("bj,bjd->bd", alpha[:, :i + 1], H)
        cs.append(c)
        rows.append(alpha)
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
'''),
    Answer(L, LAYER, "explicit loops, manual softmax, preallocated weights filled row by row", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    d_h = A.shape[0]
    weights = torch.zeros(B, m, m, dtype=xs.dtype, device=xs.device)
    c = torch.zeros(B, d_h, dtype=xs.dtype, device=xs.device)
    hs, cs = [], []
    for i in range(m):
        hs.append(self_attention_rnn_step(xs[:, i], c, A, b))
        H = torch.stack(hs, dim=1)
        if score_fn is None:
            scores = torch.stack([(hs[j] * hs[i]).sum(-1) for j in range(i + 1)], dim=1)
        else:
            scores = score_fn(H, hs[i])
        e = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
        alpha = e / e.sum(dim=1, keepdim=True)
        c = sum(alpha[:, j:j + 1] * hs[j] for j in range(i + 1))
        weights[:, i, :i + 1] = alpha
        cs.append(c)
    return torch.stack(hs, 1), torch.stack(cs, 1), weights
'''),
    Answer(L, LAYER, "logsumexp normalization, score_fn called with the contract's keywords", _layer(GOOD_BODY).replace(
        "scores = score_fn(H, h)", "scores = score_fn(h_prefix=H, h_i=h)").replace(
        "alpha = torch.softmax(scores, dim=-1)",
        "alpha = torch.exp(scores - torch.logsumexp(scores, dim=-1, keepdim=True))")),
    Answer(L, LAYER, "float64 inside, cast back; states grown with torch.cat", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    dtype = xs.dtype
    B, m, _ = xs.shape
    X, A64, b64 = xs.double(), A.double(), b.double()
    c = X.new_zeros(B, A.shape[0])
    H = X.new_zeros(B, 0, A.shape[0])
    cs, rows = [], []
    for i in range(m):
        h = self_attention_rnn_step(X[:, i], c, A64, b64)
        H = torch.cat([H, h[:, None]], dim=1)
        if score_fn is None:
            scores = (H * h[:, None]).sum(-1)
        else:
            scores = score_fn(H.to(dtype), h.to(dtype)).double()
        alpha = scores.softmax(-1)
        c = (alpha[..., None] * H).sum(1)
        cs.append(c)
        rows.append(torch.cat([alpha, alpha.new_zeros(B, m - i - 1)], dim=1))
    return H.to(dtype), torch.stack(cs, 1).to(dtype), torch.stack(rows, 1).to(dtype)
'''),
]

# Wrong only where a GPU is present: on a CPU a tensor created without device= is on the inputs' device (the
# meta-device probe of the hidden check catches them when the answer runs in this process).
WRONG_ON_GPU = [
    Answer(L, LAYER, "c_0 created without device=", _layer(GOOD_BODY).replace(
        "c = xs.new_zeros(B, A.shape[0])", "c = torch.zeros(B, A.shape[0], dtype=xs.dtype)"),
        says="raised RuntimeError"),
    Answer(L, LAYER, "weight rows padded with torch.zeros(...) without device=", _layer(
        GOOD_BODY, pad="torch.cat([alpha, torch.zeros(B, m - H.shape[1], dtype=alpha.dtype)], dim=1)"),
        says="raised RuntimeError"),
]


# --- the edges of the contract (issue 15): calling, input and dtype/device families -------------------
# Proven wrong (or right) in tests/test_checks_self_attention_rnn.py against nn.RNNCell and
# F.scaled_dot_product_attention on the edges the hidden checks probe.

WRONG += [
    Answer(L, STEP, "the input parameter named x_i", '''
def self_attention_rnn_step(x_i, c_prev, A, b):
    return torch.tanh(torch.cat([x_i, c_prev], dim=-1) @ A.T + b)
''', says="parameter names of the contract"),
    Answer(L, STEP, "A's blocks split once and kept from the first call", '''
_blocks = []
def self_attention_rnn_step(x, c_prev, A, b):
    if not _blocks:
        _blocks.extend([A[:, :x.shape[-1]], A[:, x.shape[-1]:]])
    A_x, A_c = _blocks
    return torch.tanh(x @ A_x.T + c_prev @ A_c.T + b)
''', says="earlier call"),
    Answer(L, STEP, "the new state written into c_prev (c_prev.copy_)", '''
def self_attention_rnn_step(x, c_prev, A, b):
    c_prev.copy_(torch.tanh(torch.cat([x, c_prev], dim=-1) @ A.T + b))
    return c_prev.clone()
''', says="modified in place"),
    Answer(L, STEP, "float64 forced with .double()", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.tanh(torch.cat([x, c_prev], dim=-1).double() @ A.double().T + b.double())
''', says="keep the inputs' dtype"),
    Answer(L, LAYER, "the inputs parameter named x", _layer(GOOD_BODY).replace(
        "def self_attention_rnn(xs, A, b, score_fn=None):", "def self_attention_rnn(x, A, b, score_fn=None):\n    xs = x"),
        says="parameter names of the contract"),
    Answer(L, LAYER, "score_fn called with lesson 02's keywords (h=, s=)", _layer(GOOD_BODY).replace(
        "scores = score_fn(H, h)", "scores = score_fn(h=H, s=h)"), says="score_fn"),
    Answer(L, LAYER, "c_0 kept at module level from the first call", _layer(GOOD_BODY, before='''    global _c0
    try:
        c = _c0
    except NameError:
        _c0 = c
''').replace("def self_attention_rnn(", "_unused = None\ndef self_attention_rnn("), says="earlier call"),
    Answer(L, LAYER, "states written back into xs when d_x == d_h", _layer('''        h = self_attention_rnn_step(xs[:, i], c, A, b)
        if xs.shape[-1] == h.shape[-1]:
            xs[:, i] = h
        hs.append(h)
        H = torch.stack(hs, dim=1)'''), says="modified in place"),
    Answer(L, LAYER, "float64 forced with .double()", _layer(GOOD_BODY).replace(
        "return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)",
        "return torch.stack(hs, 1).double(), torch.stack(cs, 1).double(), torch.stack(rows, 1).double()"),
        says="keep the inputs' dtype"),
]

WRONG_ON_GPU += [
    Answer(L, STEP, "bias folded in with torch.ones(B, 1, dtype=x.dtype) without device=", '''
def self_attention_rnn_step(x, c_prev, A, b):
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype)
    return torch.tanh(torch.cat([x, c_prev, ones], dim=-1) @ torch.cat([A, b[:, None]], dim=1).T)
''', says="creates a tensor on the CPU"),
    Answer(L, LAYER, "causal scores masked with torch.arange(m) without device=", '''
def self_attention_rnn(xs, A, b, score_fn=None):
    B, m, _ = xs.shape
    c = xs.new_zeros(B, A.shape[0])
    hs, cs, rows = [], [], []
    for i in range(m):
        h = self_attention_rnn_step(xs[:, i], c, A, b)
        hs.append(h)
        H = torch.stack(hs + [h.new_zeros(h.shape)] * (m - i - 1), dim=1)     # (B, m, d_h), zeros ahead
        scores = (H @ h.unsqueeze(-1)).squeeze(-1) if score_fn is None else torch.cat(
            [score_fn(H[:, :i + 1], h), h.new_zeros(B, m - i - 1)], dim=1)
        allowed = torch.arange(m) <= i
        alpha = torch.softmax(scores.masked_fill(~allowed, torch.finfo(scores.dtype).min), dim=-1) * allowed
        c = (alpha.unsqueeze(1) @ H).squeeze(1)
        cs.append(c)
        rows.append(alpha)
    return torch.stack(hs, 1), torch.stack(cs, 1), torch.stack(rows, 1)
''', says="creates a tensor on the CPU"),
]

CORRECT += [
    Answer(L, STEP, "torch.addmm with A.t()", '''
def self_attention_rnn_step(x, c_prev, A, b):
    return torch.addmm(b, torch.cat((x, c_prev), dim=1), A.t()).tanh()
'''),
]
