"""Lesson 06, attention without an RNN: answers students write for `self_attention`.

WRONG answers must lose the points of the function (and, where `says` is set, be named in the
failure message); CORRECT answers, written in styles other than the reference's, must get full marks.
The first WRONG answer is the one the slow tier puts in a real notebook, so it is one the checks name.

WRONG_ON_GPU holds mistakes that are invisible on a CPU (a mask created without device=): the
checks catch them only where CUDA is present, so they are tested only there.
"""
from textwrap import dedent

from .catalog import Answer

LESSON = "06_attention_without_rnn"


def _answer(name: str, body: str, says: str = "", head: str = "") -> Answer:
    """A whole answer cell: `def self_attention(...)` with `body` as its code."""
    source = ("def self_attention(X, W_Q, W_K, W_V, causal=False):\n"
              + "\n".join("    " + line if line else "" for line in dedent(body).strip().splitlines()))
    return Answer(LESSON, "self_attention", name, (dedent(head).strip() + "\n\n" if head else "") + source + "\n", says)


# The reference's steps, for wrong answers that change one of them.
PROJECT = """
B, m, d = X.shape
d_k = W_Q.shape[0]
Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
"""
MASK = """
if causal:
    future = torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
"""
SCALED = "scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)"
SOFTMAX = """
weights = torch.softmax(scores, dim=-1)
return weights @ V, weights
"""


def _steps(*parts: str) -> str:
    return "\n".join(dedent(p).strip() for p in parts)


WRONG = [
    _answer("no 1/sqrt(d_k)", _steps(PROJECT, "scores = Q @ K.transpose(-2, -1)", MASK, SOFTMAX),
            says="not divided by sqrt(d_k)"),
    _answer("scaled by sqrt(d), the model width", _steps(PROJECT, "scores = Q @ K.transpose(-2, -1) / math.sqrt(d)",
                                                         MASK, SOFTMAX),
            says="divided by sqrt(d), the model width"),
    _answer("scaled by d_k instead of sqrt(d_k)", _steps(PROJECT, "scores = Q @ K.transpose(-2, -1) / d_k",
                                                         MASK, SOFTMAX),
            says="divided by d_k instead of sqrt(d_k)"),
    _answer("scaled by sqrt(d_v)", _steps(PROJECT, "scores = Q @ K.transpose(-2, -1) / math.sqrt(V.shape[-1])",
                                          MASK, SOFTMAX),
            says="divided by sqrt(d_v)"),
    _answer("softmax over the query axis", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=1)
        return weights @ V, weights
        """), says="the query axis"),
    _answer("softmax over the batch axis", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=0)
        return weights @ V, weights
        """), says="batch axis"),
    _answer("causal mask hides the diagonal (-inf: NaN first row)", _steps(PROJECT, SCALED, """
        if causal:
            allowed = torch.ones(m, m, dtype=torch.bool, device=X.device).tril(-1)
            scores = scores.masked_fill(~allowed, float("-inf"))
        """, SOFTMAX), says="hides the diagonal"),
    _answer("causal mask hides the diagonal (finite fill)", _steps(PROJECT, SCALED, """
        if causal:
            allowed = torch.ones(m, m, dtype=torch.bool, device=X.device).tril(-1)
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        """, SOFTMAX), says="hides the diagonal"),
    _answer("causal mask transposed (the future allowed)", _steps(PROJECT, SCALED, """
        if causal:
            past = torch.ones(m, m, dtype=torch.bool, device=X.device).tril(-1)
            scores = scores.masked_fill(past, float("-inf"))
        """, SOFTMAX), says="the causal mask is transposed"),
    _answer("causal ignored", _steps(PROJECT, SCALED, SOFTMAX), says="causal=True is ignored"),
    _answer("causal mask off by one (i sees i+1)", _steps(PROJECT, SCALED, """
        if causal:
            future = torch.ones(m, m, dtype=torch.bool, device=X.device).triu(2)
            scores = scores.masked_fill(future, float("-inf"))
        """, SOFTMAX), says="off by one"),
    _answer("MHA's mask convention read the other way (True = allowed, masked_fill(~mask))", _steps(PROJECT, SCALED, """
        if causal:
            mask = torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1)
            scores = scores.masked_fill(~mask, float("-inf"))
        """, SOFTMAX), says="mask is inverted"),
    _answer("masked after the softmax without renormalizing", _steps(PROJECT, SCALED, """
        weights = torch.softmax(scores, dim=-1)
        if causal:
            weights = weights * torch.ones(m, m, dtype=X.dtype, device=X.device).tril()
        return weights @ V, weights
        """), says="without renormalizing"),
    _answer("W_Q and W_K swapped", _steps("""
        B, m, d = X.shape
        d_k = W_Q.shape[0]
        Q, K, V = X @ W_K.T, X @ W_Q.T, X @ W_V.T
        """, SCALED, MASK, SOFTMAX), says="W_Q and W_K are swapped"),
    _answer("V = X (W_V ignored)", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=-1)
        return weights @ X, weights
        """), says="W_V is ignored"),
    _answer("weights transposed in the output", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=-1)
        return weights.transpose(-1, -2) @ V, weights
        """), says="transposed weights"),
    _answer("returned weights transposed", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=-1)
        return weights @ V, weights.transpose(-1, -2)
        """), says="the weights are transposed"),
    _answer("projections applied untransposed", _steps("""
        B, m, d = X.shape
        d_k = W_Q.shape[0]
        Q, K, V = X @ W_Q, X @ W_K, X @ W_V
        """, SCALED, MASK, SOFTMAX), says="raised RuntimeError"),
    _answer("returns (weights, Y)", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=-1)
        return weights, weights @ V
        """), says="return (Y, weights)"),
    _answer("weights averaged over the batch: (m, m)", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=-1)
        return weights @ V, weights.mean(0)
        """), says="should have shape"),
    _answer("normalized without exp", _steps(PROJECT, SCALED, """
        if causal:
            scores = scores * torch.ones(m, m, dtype=X.dtype, device=X.device).tril()
        weights = scores / scores.sum(-1, keepdim=True)
        return weights @ V, weights
        """), says="non-negative"),
    _answer("exp without subtracting the row maximum", _steps(PROJECT, SCALED, """
        e = torch.exp(scores)
        if causal:
            e = e * torch.ones(m, m, dtype=X.dtype, device=X.device).tril()
        weights = e / e.sum(-1, keepdim=True)
        return weights @ V, weights
        """), says="Subtract the row maximum"),
    _answer(".detach() inside", _steps(PROJECT, SCALED, MASK, """
        weights = torch.softmax(scores, dim=-1).detach()
        return weights @ V, weights
        """), says="gradient"),
    _answer("float32 forced with .float()", _steps("""
        X, W_Q, W_K, W_V = X.float(), W_Q.float(), W_K.float(), W_V.float()
        """, PROJECT, SCALED, MASK, SOFTMAX), says="keep the inputs' dtype"),
    _answer("scores from the un-projected inputs (X X^T)", _steps(PROJECT, """
        scores = X @ X.transpose(-2, -1) / math.sqrt(d_k)
        """, MASK, SOFTMAX), says="X X^T"),
    _answer("causal softmax renormalized over j <= i afterwards", _steps(PROJECT, SCALED, """
        weights = torch.softmax(scores, dim=-1)
        if causal:
            weights = weights * torch.ones(m, m, dtype=X.dtype, device=X.device).tril()
            weights = weights / weights.sum(-1, keepdim=True)
        return weights @ V, weights
        """), says="renormalized"),
    _answer("finite causal penalty: scores - 1e4 above the diagonal", _steps(PROJECT, SCALED, """
        if causal:
            scores = scores - 1e4 * torch.ones(m, m, dtype=X.dtype, device=X.device).triu(1)
        """, SOFTMAX), says="finite penalty"),
    _answer("future scores set to 0, then exp(s - max over j <= i) times the mask", _steps(PROJECT, SCALED, """
        if causal:
            keep = torch.ones(m, m, dtype=torch.bool, device=X.device).tril()
            top = scores.masked_fill(~keep, float("-inf")).amax(-1, keepdim=True)
            e = torch.exp(scores.masked_fill(~keep, 0.0) - top) * keep
        else:
            e = torch.exp(scores - scores.amax(-1, keepdim=True))
        weights = e / e.sum(-1, keepdim=True)
        return weights @ V, weights
        """), says="overflowed"),
    _answer("scores clamped to [-50, 50] against overflow", _steps(PROJECT, SCALED, """
        scores = scores.clamp(-50.0, 50.0)
        """, MASK, SOFTMAX), says="do not clamp"),
    _answer("1/sqrt(d_k) from torch.tensor(d_k).sqrt(), a float32 constant", _steps(PROJECT, """
        scores = Q @ K.transpose(-2, -1) / torch.tensor(d_k).sqrt()
        """, MASK, SOFTMAX), says="float32 precision"),
    _answer("softmax in float32 inside a float64 call, cast back", _steps(PROJECT, SCALED, MASK, """
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(X.dtype)
        return weights @ V, weights
        """), says="float32 precision"),
    _answer("causal mask cached from the first call", _steps(PROJECT, SCALED, """
        if causal:
            if not _FUTURE:
                _FUTURE.append(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1))
            scores = scores.masked_fill(_FUTURE[0], float("-inf"))
        """, SOFTMAX), says="earlier call", head="_FUTURE = []"),
    Answer(LESSON, "self_attention", "causal keyword-only (*, causal=False)", dedent("""
        def self_attention(X, W_Q, W_K, W_V, *, causal=False):
            m, d_k = X.shape[1], W_Q.shape[0]
            Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
            scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)
            if causal:
                scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ V, weights
        """).lstrip(), "by position"),
    Answer(LESSON, "self_attention", "the causal parameter named is_causal", dedent("""
        def self_attention(X, W_Q, W_K, W_V, is_causal=False):
            m, d_k = X.shape[1], W_Q.shape[0]
            Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
            scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)
            if is_causal:
                scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            return weights @ V, weights
        """).lstrip(), "parameter names of the contract"),
    _answer(".squeeze() without a dim drops the batch axis of size 1", _steps(PROJECT, """
        scores = (Q @ K.transpose(-2, -1)).squeeze() / math.sqrt(d_k)
        """, MASK, SOFTMAX), says="squeeze"),
    _answer("X scaled in place by d_k ** -0.25 (so that Q and K carry the scale)", """
        d_k = W_Q.shape[0]
        m = X.shape[1]
        X.mul_(d_k ** -0.25)
        scores = (X @ W_Q.T) @ (X @ W_K.T).transpose(-2, -1)
        if causal:
            scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ (X @ W_V.T) / d_k ** -0.25, weights
        """, says="modified in place"),
    _answer("W_Q transposed in place (W_Q.t_())", """
        m, d_k = X.shape[1], W_Q.shape[0]
        Q, K, V = X @ W_Q.t_(), X @ W_K.T, X @ W_V.T
        scores = Q @ K.transpose(-2, -1) / math.sqrt(d_k)
        if causal:
            scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ V, weights
        """, says="modified in place"),
]

CORRECT = [
    _answer("einsum, finite fill value", """
        d_k = W_Q.shape[0]
        q = torch.einsum("bmd,kd->bmk", X, W_Q)
        k = torch.einsum("bmd,kd->bmk", X, W_K)
        v = torch.einsum("bmd,vd->bmv", X, W_V)
        scores = torch.einsum("bik,bjk->bij", q, k) / d_k ** 0.5
        if causal:
            m = X.shape[1]
            i = torch.arange(m, device=X.device)
            scores = scores.masked_fill(i[None, :] > i[:, None], torch.finfo(X.dtype).min)
        alpha = scores.softmax(-1)
        return torch.einsum("bij,bjv->biv", alpha, v), alpha
        """),
    _answer("explicit loops over sequences and queries, manual softmax", """
        B, m, _ = X.shape
        d_k = W_Q.shape[0]
        ys, ws = [], []
        for b in range(B):
            a = X[b]
            q, k, v = a @ W_Q.T, a @ W_K.T, a @ W_V.T
            rows_y, rows_w = [], []
            for i in range(m):
                n = i + 1 if causal else m                       # keys j < n may be attended
                s = (k[:n] @ q[i]) / math.sqrt(d_k)              # (n,)
                e = torch.exp(s - s.max())
                alpha = e / e.sum()
                rows_y.append(alpha @ v[:n])
                rows_w.append(torch.cat([alpha, alpha.new_zeros(m - n)]))
            ys.append(torch.stack(rows_y))
            ws.append(torch.stack(rows_w))
        return torch.stack(ys), torch.stack(ws)
        """),
    _answer("float64 inside, additive -inf mask", """
        dtype = X.dtype
        X64, Wq, Wk, Wv = (t.double() for t in (X, W_Q, W_K, W_V))
        Q, K, V = X64 @ Wq.T, X64 @ Wk.T, X64 @ Wv.T
        scores = Q @ K.mT / math.sqrt(Q.shape[-1])
        if causal:
            m = X.shape[1]
            scores = scores + torch.full((m, m), float("-inf"), dtype=scores.dtype, device=X.device).triu(1)
        weights = torch.softmax(scores, dim=-1)
        return (weights @ V).to(dtype), weights.to(dtype)
        """),
    _answer("scaled queries, F.softmax, torch.tril mask", """
        Q = (X @ W_Q.T) / math.sqrt(W_Q.shape[0])
        K, V = X @ W_K.T, X @ W_V.T
        scores = torch.matmul(Q, K.transpose(1, 2))
        if causal:
            keep = torch.tril(torch.ones_like(scores[0])).bool()
            scores = torch.where(keep, scores, torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device))
        weights = F.softmax(scores, dim=2)
        return torch.bmm(weights, V), weights
        """),
    _answer("F.scaled_dot_product_attention for Y, the weights by hand", """
        Q, K, V = F.linear(X, W_Q), F.linear(X, W_K), F.linear(X, W_V)
        Y = F.scaled_dot_product_attention(Q, K, V, is_causal=causal)
        scores = Q @ K.transpose(-2, -1) * Q.shape[-1] ** -0.5
        if causal:
            scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
        return Y, scores.softmax(-1)
        """),
    _answer("logsumexp normalization, torch.where mask from new_ones", """
        scores = (X @ W_Q.T) @ (X @ W_K.T).transpose(-2, -1) / math.sqrt(W_Q.shape[0])
        if causal:
            m = X.shape[1]
            keep = X.new_ones(m, m, dtype=torch.bool).tril()
            scores = torch.where(keep, scores, float("-inf"))
        weights = torch.exp(scores - torch.logsumexp(scores, -1, keepdim=True))
        return weights @ (X @ W_V.T), weights
        """),
    _answer("queries and keys each scaled by d_k ** -0.25", """
        d_k = W_Q.shape[0]
        q = (X @ W_Q.T) * d_k ** -0.25
        k = (X @ W_K.T) * d_k ** -0.25
        scores = torch.bmm(q, k.transpose(1, 2))
        if causal:
            m = X.shape[1]
            i = torch.arange(m, device=X.device)
            scores = scores.masked_fill(i[None, :] > i[:, None], -math.inf)
        weights = scores.softmax(dim=2)
        return torch.bmm(weights, X @ W_V.T), weights
        """),
]


WRONG_ON_GPU = [
    _answer("causal mask created without device=", _steps(PROJECT, SCALED, """
        if causal:
            future = torch.ones(m, m, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        """, SOFTMAX), says="raised RuntimeError"),
    _answer("additive -inf mask tensor created without device=", _steps(PROJECT, SCALED, """
        if causal:
            scores = scores + torch.full((m, m), float("-inf")).triu(1)
        """, SOFTMAX), says="raised RuntimeError"),
]


# --- the edges of the contract (issue 15): calling, input and dtype/device families -------------------
# Proven wrong (or right) in tests/test_checks_transformer_attention.py against F.scaled_dot_product_attention.

WRONG += [
    Answer(LESSON, "self_attention", "parameters named (x, Wq, Wk, Wv, causal)", """
def self_attention(x, Wq, Wk, Wv, causal=False):
    Q, K, V = x @ Wq.T, x @ Wk.T, x @ Wv.T
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        m = x.shape[1]
        scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""", says="parameter names of the contract"),
    Answer(LESSON, "self_attention", "W_V transposed in place (W_V.t_())", """
def self_attention(X, W_Q, W_K, W_V, causal=False):
    V = X @ W_V.t_()
    W_V.t_()
    Q, K = X @ W_Q.T, X @ W_K.T
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        m = X.shape[1]
        scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""", says="modified in place"),
    Answer(LESSON, "self_attention", "float64 forced with .double()", """
def self_attention(X, W_Q, W_K, W_V, causal=False):
    X = X.double()
    Q, K, V = X @ W_Q.double().T, X @ W_K.double().T, X @ W_V.double().T
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        m = X.shape[1]
        scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""", says="keep the inputs' dtype"),
    Answer(LESSON, "self_attention", "weights written into torch.zeros(B, m, m) one query at a time", """
def self_attention(X, W_Q, W_K, W_V, causal=False):
    B, m, _ = X.shape
    Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
    weights = torch.zeros(B, m, m, device=X.device)
    for i in range(m):
        s = (K @ Q[:, i, :, None])[..., 0] / math.sqrt(Q.shape[-1])
        if causal:
            s = s.masked_fill(torch.arange(m, device=X.device) > i, float("-inf"))
        weights[:, i] = torch.softmax(s, dim=-1)
    return weights.to(X.dtype) @ V, weights
""", says="keep the inputs' dtype"),
    Answer(LESSON, "self_attention", "scores buffer kept at module level between calls", """
_buffer = []
def self_attention(X, W_Q, W_K, W_V, causal=False):
    Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
    if not _buffer:
        _buffer.append(torch.zeros_like(Q @ K.transpose(-2, -1)))
    scores = _buffer[0] + Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        m = X.shape[1]
        scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""", says="earlier call"),
]

WRONG += [
    Answer(LESSON, "self_attention", "one maximum subtracted for the whole batch (scores.max())", """
def self_attention(X, W_Q, W_K, W_V, causal=False):
    Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        m = X.shape[1]
        scores = scores.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
    e = torch.exp(scores - scores.max())            # one maximum for every row of the batch
    weights = e / e.sum(-1, keepdim=True)
    return weights @ V, weights
""", says="Subtract the row maximum"),
]

WRONG_ON_GPU += [
    Answer(LESSON, "self_attention", "causal mask from torch.arange(m) without device=", """
def self_attention(X, W_Q, W_K, W_V, causal=False):
    m = X.shape[1]
    Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if causal:
        idx = torch.arange(m)
        scores = scores.masked_fill(idx[None, :] > idx[:, None], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
""", says="creates a tensor on the CPU"),
]

CORRECT += [
    Answer(LESSON, "self_attention", "baddbmm with alpha = 1/sqrt(d_k) and an additive causal bias", """
def self_attention(X, W_Q, W_K, W_V, causal=False):
    B, m, _ = X.shape
    Q, K, V = X @ W_Q.T, X @ W_K.T, X @ W_V.T
    bias = torch.zeros(m, m, dtype=X.dtype, device=X.device)
    if causal:
        bias = bias.masked_fill(torch.ones(m, m, dtype=torch.bool, device=X.device).triu(1), float("-inf"))
    scores = torch.baddbmm(bias.expand(B, m, m), Q, K.transpose(1, 2), alpha=Q.shape[-1] ** -0.5)
    weights = torch.softmax(scores, dim=-1)
    return torch.bmm(weights, V), weights
"""),
]
