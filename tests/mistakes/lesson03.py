"""Lesson 03, queries, keys and values: answers students write for project_qkv and qkv_attention."""
from tests.mistakes.catalog import Answer

L = "03_query_key_value"

PROJECT = "project_qkv"
ATTEND = "qkv_attention"


def _attention(body: str) -> str:
    return "def qkv_attention(Q, K, V, mask=None):\n" + body


WRONG = [
    # --- project_qkv ---------------------------------------------------------------------------------
    Answer(L, PROJECT, "W_Q and W_K swapped", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return s @ W_K.T, h @ W_Q.T, h @ W_V.T
""", says="W_K and W_Q are swapped"),
    Answer(L, PROJECT, "weights untransposed", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return s @ W_Q, h @ W_K, h @ W_V
""", says="untransposed"),
    Answer(L, PROJECT, "V computed with W_K", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return s @ W_Q.T, h @ W_K.T, h @ W_K.T
""", says="V is computed with W_K"),
    Answer(L, PROJECT, "returns (K, Q, V)", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return h @ W_K.T, s @ W_Q.T, h @ W_V.T
""", says="order (Q, K, V)"),
    Answer(L, PROJECT, "queries from h, keys and values from s", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return h @ W_Q.T, s @ W_K.T, s @ W_V.T
""", says="the queries come from the decoder states"),
    Answer(L, PROJECT, "queries detached", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return (s @ W_Q.T).detach(), h @ W_K.T, h @ W_V.T
""", says="no gradient"),

    # --- qkv_attention -------------------------------------------------------------------------------
    Answer(L, ATTEND, "softmax over the query axis t", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="over the query axis"),
    Answer(L, ATTEND, "softmax over the batch", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=0)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="over the batch axis"),
    Answer(L, ATTEND, "softmax over the whole (t, m) matrix", _attention("""
    scores = Q @ K.transpose(-2, -1)
    B, t, m = scores.shape
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores.reshape(B, t * m), dim=-1).reshape(B, t, m)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="whole (t, m) matrix"),
    Answer(L, ATTEND, "scaled by 1/sqrt(d_k)", _attention("""
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="divided by sqrt(d_k)"),
    Answer(L, ATTEND, "scaled by 1/sqrt(d_v)", _attention("""
    scores = Q @ K.transpose(-2, -1) / V.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="scaled by d_v"),
    Answer(L, ATTEND, "scaled by 1/d_k", _attention("""
    scores = Q @ K.transpose(-2, -1) / K.shape[-1]
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="divided by d_k"),
    Answer(L, ATTEND, "K^T Q orientation, weights (batch, m, t)", _attention("""
    scores = K @ Q.transpose(-2, -1)                      # (B, m, t): the seed's K^T q for every q
    if mask is not None:
        scores = scores.masked_fill(~mask.transpose(-2, -1), torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=1)
    if mask is not None:
        weights = weights * mask.transpose(-2, -1)
    return weights.transpose(-2, -1) @ V, weights
"""), says="(batch, m, t)"),
    Answer(L, ATTEND, "keys not transposed", _attention("""
    weights = torch.softmax(Q @ K, dim=-1)
    return weights @ V, weights
"""), says="K.transpose(-2, -1)"),
    Answer(L, ATTEND, "mask inverted", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * ~mask
    return weights @ V, weights
"""), says="True was treated as masked"),
    Answer(L, ATTEND, "mask ignored", _attention("""
    weights = torch.softmax(Q @ K.transpose(-2, -1), dim=-1)
    return weights @ V, weights
"""), says="the mask is ignored"),
    Answer(L, ATTEND, "masked after the softmax without renormalizing", _attention("""
    weights = torch.softmax(Q @ K.transpose(-2, -1), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="without renormalizing"),
    Answer(L, ATTEND, "-inf fill: all-masked rows give NaN", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
"""), says="all masked gives NaN"),
    Answer(L, ATTEND, "additive log(mask), NaN replaced after the softmax (NaN gradients)", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores + torch.log(mask.to(scores.dtype))     # -inf where masked
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return weights @ V, weights
"""), says="gradients contain NaN"),
    Answer(L, ATTEND, "large negative fill without zeroing all-masked rows", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)
    weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
"""), says="all masked should give all zeros"),
    Answer(L, ATTEND, "mask assumed (batch, m): not broadcast", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        mask = mask.unsqueeze(1)                               # (B, m) -> (B, 1, m)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="must broadcast"),
    Answer(L, ATTEND, "boolean indexing needs a full-shape mask", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.clone()
        scores[~mask] = torch.finfo(scores.dtype).min
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="must broadcast"),
    Answer(L, ATTEND, "averages the keys instead of the values", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ K, weights
"""), says="not the keys"),
    Answer(L, ATTEND, "normalized without exp", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores * mask
    weights = scores / scores.sum(-1, keepdim=True)
    return weights @ V, weights
"""), says="without exp"),
    Answer(L, ATTEND, "exp without subtracting the maximum", _attention("""
    e = torch.exp(Q @ K.transpose(-2, -1))
    if mask is not None:
        e = e * mask
    weights = e / e.sum(-1, keepdim=True).clamp_min(1e-30)
    return weights @ V, weights
"""), says="large scores"),
    Answer(L, ATTEND, "every row uses the first query", _attention("""
    scores = (Q[:, :1] @ K.transpose(-2, -1)).expand(-1, Q.shape[1], -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="first query"),
    # Until the contract's edges were probed, this one was in CORRECT: masked scores set to 0 before
    # exp(s - max over the allowed keys) overflow when every allowed score is very negative (inf x 0).
    Answer(L, ATTEND, "masked scores set to 0 before exp(s - max): inf x 0 for very negative scores", _attention("""
    scores = (Q.double() @ K.double().transpose(1, 2))
    allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else torch.broadcast_to(mask, scores.shape)
    scores = scores.masked_fill(~allowed, 0.0)
    top = scores.masked_fill(~allowed, -math.inf).amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(scores - top) * allowed
    total = e.sum(-1, keepdim=True)
    weights = e / torch.where(total > 0, total, torch.ones_like(total))
    C = weights @ V.double()
    return C.to(Q.dtype), weights.to(Q.dtype)
"""), says="inf x 0"),
    Answer(L, ATTEND, "softmax renormalized over the allowed keys afterwards (0/0 guarded)", _attention("""
    weights = torch.softmax(Q @ K.transpose(-2, -1), dim=-1)
    if mask is not None:
        weights = weights * mask
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)    # all-masked rows stay 0
    return weights @ V, weights
"""), says="allowed keys' weights vanish"),
    Answer(L, ATTEND, "exp(s - max over every key) times the mask, renormalized", _attention("""
    scores = Q @ K.transpose(-2, -1)
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    if mask is not None:
        e = e * mask
    total = e.sum(-1, keepdim=True)
    weights = e / (total + (total == 0))                       # all-masked rows: 0 / 1
    return weights @ V, weights
"""), says="allowed keys' weights vanish"),
    Answer(L, ATTEND, "finite penalty: scores - 100 where masked, zeroed afterwards", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores - 100.0 * (~mask)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="a finite penalty"),
    Answer(L, ATTEND, "scores clamped to [-50, 50] against overflow", _attention("""
    scores = (Q @ K.transpose(-2, -1)).clamp(-50.0, 50.0)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="do not clamp"),
    Answer(L, ATTEND, "softmax in float32 inside a float64 call, cast back", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e30)
    weights = torch.softmax(scores.float(), dim=-1).to(scores.dtype)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="float32 precision"),
    Answer(L, ATTEND, "masked scores set to 0 (scores * mask), weights zeroed afterwards", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores * mask
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="scores * mask"),
    Answer(L, ATTEND, "a (t, m) mask indexed by the batch in a loop (mask[b])", _attention("""
    Cs, Ws = [], []
    for b in range(Q.shape[0]):
        scores = Q[b] @ K[b].T                                 # (t, m)
        if mask is not None:
            mb = mask[b]
            scores = scores.masked_fill(~mb, torch.finfo(scores.dtype).min)
        w = torch.softmax(scores, dim=-1)
        if mask is not None:
            w = w * mb
        Cs.append(w @ V[b])
        Ws.append(w)
    return torch.stack(Cs), torch.stack(Ws)
"""), says="indexed by the batch"),
    Answer(L, ATTEND, "the mask parameter named attn_mask", """
def qkv_attention(Q, K, V, attn_mask=None):
    scores = Q @ K.transpose(-2, -1)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if attn_mask is not None:
        weights = weights * attn_mask
    return weights @ V, weights
""", says="parameter names of the contract"),
    Answer(L, ATTEND, "parameters named q, k, v", """
def qkv_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights
""", says="parameter names of the contract"),
    Answer(L, ATTEND, "the default all-True mask cached from the first call", """
_DEFAULT = {}


def qkv_attention(Q, K, V, mask=None):
    if mask is None:
        if "mask" not in _DEFAULT:
            _DEFAULT["mask"] = torch.ones(Q.shape[0], Q.shape[1], K.shape[1], dtype=torch.bool, device=Q.device)
        mask = _DEFAULT["mask"]
    scores = (Q @ K.transpose(-2, -1)).masked_fill(~mask, torch.finfo(Q.dtype).min)
    weights = torch.softmax(scores, dim=-1) * mask
    return weights @ V, weights
""", says="earlier call"),
    Answer(L, ATTEND, "the mask inverted in place (logical_not_)", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        hidden = mask.logical_not_()                           # True where masked: but mask itself changed
        scores = scores.masked_fill(hidden, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1) * ~hidden
    else:
        weights = torch.softmax(scores, dim=-1)
    return weights @ V, weights
"""), says="modified in place"),
    Answer(L, ATTEND, "K transposed in place (K.transpose_)", _attention("""
    scores = Q @ K.transpose_(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="modified in place"),
    Answer(L, ATTEND, ".squeeze() without a dim drops the batch, t or m axis of size 1", _attention("""
    scores = torch.einsum("btd,bmd->btm", Q, K).squeeze()
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="squeeze"),
]

CORRECT = [
    # --- project_qkv ---------------------------------------------------------------------------------
    Answer(L, PROJECT, "F.linear", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return F.linear(s, W_Q), F.linear(h, W_K), F.linear(h, W_V)
"""),
    Answer(L, PROJECT, "einsum", """
def project_qkv(h, s, W_Q, W_K, W_V):
    Q = torch.einsum("btd,kd->btk", s, W_Q)
    K = torch.einsum("bmd,kd->bmk", h, W_K)
    V = torch.einsum("bmd,vd->bmv", h, W_V)
    return Q, K, V
"""),
    Answer(L, PROJECT, "column vectors as in the seed", """
def project_qkv(h, s, W_Q, W_K, W_V):
    # W x for column vectors x, then back to rows.
    Q = (W_Q @ s.transpose(1, 2)).transpose(1, 2)
    K = (W_K @ h.transpose(1, 2)).transpose(1, 2)
    V = (W_V @ h.transpose(1, 2)).transpose(1, 2)
    return Q, K, V
"""),

    # --- qkv_attention -------------------------------------------------------------------------------
    Answer(L, ATTEND, "einsum and torch.where", _attention("""
    scores = torch.einsum("btk,bmk->btm", Q, K)
    if mask is None:
        weights = scores.softmax(-1)
    else:
        mask = mask.expand_as(scores) if mask.dim() == 3 else torch.broadcast_to(mask, scores.shape)
        filled = torch.where(mask, scores, torch.full_like(scores, torch.finfo(scores.dtype).min))
        weights = torch.where(mask, filled.softmax(-1), torch.zeros_like(scores))
    return torch.einsum("btm,bmv->btv", weights, V), weights
""")),
    Answer(L, ATTEND, "manual stable softmax, float64 inside", _attention("""
    scores = (Q.double() @ K.double().transpose(1, 2))
    allowed = torch.ones_like(scores, dtype=torch.bool) if mask is None else torch.broadcast_to(mask, scores.shape)
    scores = scores.masked_fill(~allowed, -math.inf)
    top = scores.amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(scores - top)                            # exactly 0 where masked, never inf
    total = e.sum(-1, keepdim=True)
    weights = e / torch.where(total > 0, total, torch.ones_like(total))
    C = weights @ V.double()
    return C.to(Q.dtype), weights.to(Q.dtype)
""")),
    Answer(L, ATTEND, "explicit loops over the batch and the queries", _attention("""
    B, t, _ = Q.shape
    m = K.shape[1]
    allowed = torch.ones(B, t, m, dtype=torch.bool, device=Q.device) if mask is None else torch.broadcast_to(mask, (B, t, m))
    contexts, rows = [], []
    for b in range(B):
        for j in range(t):
            scores = K[b] @ Q[b, j]                                # K^T q_j, (m,)
            alpha = torch.softmax(scores.masked_fill(~allowed[b, j], torch.finfo(scores.dtype).min), 0)
            alpha = alpha * allowed[b, j]
            rows.append(alpha)
            contexts.append(alpha @ V[b])
    return torch.stack(contexts).reshape(B, t, -1), torch.stack(rows).reshape(B, t, m)
""")),
    Answer(L, ATTEND, "-inf fill, NaN replaced after the softmax (masked_fill keeps the gradients finite)", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    return weights @ V, weights
""")),
    Answer(L, ATTEND, "additive -1e9 mask, zeros put back afterwards", _attention("""
    scores = Q @ K.mT
    if mask is not None:
        scores = scores + (~mask) * -1e9
    weights = F.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return torch.matmul(weights, V), weights
""")),
    Answer(L, ATTEND, "logsumexp normalization, torch.where masks", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        allowed = torch.broadcast_to(mask, scores.shape)
        scores = torch.where(allowed, scores, torch.finfo(scores.dtype).min)
    weights = torch.exp(scores - torch.logsumexp(scores, dim=-1, keepdim=True))
    if mask is not None:
        weights = torch.where(allowed, weights, 0.0)
    return weights @ V, weights
""")),
    Answer(L, ATTEND, "-inf fill, rows with no allowed key set to 0 before the softmax", _attention("""
    scores = torch.matmul(Q, K.transpose(1, 2))
    if mask is None:
        weights = torch.softmax(scores, -1)
    else:
        allowed = torch.broadcast_to(mask, scores.shape)
        nothing = ~allowed.any(-1, keepdim=True)
        scores = scores.masked_fill(~allowed, float("-inf")).masked_fill(nothing, 0.0)
        weights = torch.softmax(scores, -1).masked_fill(~allowed, 0.0)
    return torch.matmul(weights, V), weights
""")),
    Answer(L, ATTEND, "float64 through .to(), F.softmax, one query at a time", _attention("""
    dtype, (B, t, _), m = Q.dtype, Q.shape, K.shape[1]
    Q64, K64, V64 = Q.to(torch.float64), K.to(torch.float64), V.to(torch.float64)
    allowed = None if mask is None else torch.broadcast_to(mask, (B, t, m))
    Cs, Ws = [], []
    for j in range(t):
        s = (K64 @ Q64[:, j, :, None])[..., 0]                  # (B, m): K^T q_j
        if allowed is not None:
            s = s.masked_fill(~allowed[:, j], -1e300)
        w = F.softmax(s, dim=-1)
        if allowed is not None:
            w = w.masked_fill(~allowed[:, j], 0.0)
        Ws.append(w)
        Cs.append((w[:, None, :] @ V64)[:, 0])
    return torch.stack(Cs, 1).to(dtype), torch.stack(Ws, 1).to(dtype)
""")),
]

# Wrong only where a GPU is present: on a CPU the default mask's device is the inputs' (the meta-device
# probe of the hidden check catches it when the answer runs in this process).
WRONG_ON_GPU = [
    Answer(L, ATTEND, "the default all-True mask created without device=", """
def qkv_attention(Q, K, V, mask=None):
    if mask is None:
        mask = torch.ones(Q.shape[0], Q.shape[1], K.shape[1], dtype=torch.bool)
    scores = (Q @ K.transpose(-2, -1)).masked_fill(~mask, torch.finfo(Q.dtype).min)
    weights = torch.softmax(scores, dim=-1) * mask
    return weights @ V, weights
""", says="raised RuntimeError"),
]


# --- the edges of the contract (issue 15): calling, input, numerical and dtype/device families ---------
# project_qkv's answers are proven wrong (or right) in tests/test_checks_qkv.py against nn.Linear layers
# holding the weights; qkv_attention's against F.scaled_dot_product_attention, as above.

def _project(name, source, says=""):
    return Answer(L, PROJECT, name, source, says)


WRONG += [
    _project("parameters named (H, S, Wq, Wk, Wv)", """
def project_qkv(H, S, Wq, Wk, Wv):
    return S @ Wq.T, H @ Wk.T, H @ Wv.T
""", says="parameter names of the contract"),
    _project("weights taken in the order (W_K, W_Q, W_V)", """
def project_qkv(h, s, W_K, W_Q, W_V):
    return s @ W_Q.T, h @ W_K.T, h @ W_V.T
""", says="W_K and W_Q are swapped"),
    _project("K and V projected together, cached from the first call", """
_KV = []
def project_qkv(h, s, W_Q, W_K, W_V):
    if not _KV:
        _KV.extend([torch.cat([W_K, W_V], dim=0), W_K.shape[0]])     # the stacked weight and where K ends
    W_KV, d_k = _KV
    KV = h @ W_KV.T
    return s @ W_Q.T, KV[..., :d_k], KV[..., d_k:]
""", says="earlier call"),
    _project("projections memoized by shape", """
_memo = {}
def project_qkv(h, s, W_Q, W_K, W_V):
    key = (h.shape, s.shape, W_Q.shape, W_K.shape, W_V.shape, h.dtype)
    if key not in _memo:
        _memo[key] = (s @ W_Q.T, h @ W_K.T, h @ W_V.T)
    return _memo[key]
""", says="a result of an earlier call with the same sizes"),
    _project("squeeze() of the results (batch 1, t = 1 or m = 1 collapses)", """
def project_qkv(h, s, W_Q, W_K, W_V):
    return (s @ W_Q.T).squeeze(), (h @ W_K.T).squeeze(), (h @ W_V.T).squeeze()
""", says="squeeze"),
    _project("K and V from one matmul, split in equal halves", """
def project_qkv(h, s, W_Q, W_K, W_V):
    KV = h @ torch.cat([W_K, W_V], dim=0).T
    K, V = KV.chunk(2, dim=-1)
    return s @ W_Q.T, K, V
""", says="split in equal halves"),
    _project("W_Q transposed in place (W_Q.t_())", """
def project_qkv(h, s, W_Q, W_K, W_V):
    Q = s @ W_Q.t_()
    W_Q.t_()
    return Q, h @ W_K.T, h @ W_V.T
""", says="modified in place"),
    _project("h scaled in place to unit-norm rows", """
def project_qkv(h, s, W_Q, W_K, W_V):
    h /= h.norm(dim=-1, keepdim=True)
    return s @ W_Q.T, h @ W_K.T, h @ W_V.T
""", says="modified in place"),
    _project("projections in float32, cast back", """
def project_qkv(h, s, W_Q, W_K, W_V):
    dtype = h.dtype
    h32, s32 = h.float(), s.float()
    return (s32 @ W_Q.float().T).to(dtype), (h32 @ W_K.float().T).to(dtype), (h32 @ W_V.float().T).to(dtype)
""", says="float32 precision"),
    _project("float64 forced with .double()", """
def project_qkv(h, s, W_Q, W_K, W_V):
    h, s = h.double(), s.double()
    return s @ W_Q.double().T, h @ W_K.double().T, h @ W_V.double().T
""", says="keep the inputs' dtype"),
    _project("weights converted with torch.tensor(W.tolist())", """
def project_qkv(h, s, W_Q, W_K, W_V):
    Wq, Wk, Wv = (torch.tensor(W.tolist()) for W in (W_Q, W_K, W_V))
    return s @ Wq.T.to(s.dtype), h @ Wk.T.to(h.dtype), h @ Wv.T.to(h.dtype)
""", says="float32 precision"),

    # qkv_attention
    Answer(L, ATTEND, "mask keyword-only (Q, K, V, *, mask=None)", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
""").replace("(Q, K, V, mask=None)", "(Q, K, V, *, mask=None)"), says="mask could not be passed by position"),
    Answer(L, ATTEND, "weights buffer kept at module level between calls", _attention("""
    global _w
    try:
        _w
    except NameError:
        _w = Q.new_zeros(Q.shape[0], Q.shape[1], K.shape[1])
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = _w.clone()
    weights[:] = torch.softmax(scores, dim=-1) * (1 if mask is None else mask)
    return weights @ V, weights
"""), says="earlier call"),
    Answer(L, ATTEND, "float64 forced with .double()", _attention("""
    scores = Q.double() @ K.double().transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V.double(), weights
"""), says="keep the inputs' dtype"),
    Answer(L, ATTEND, "weights written into torch.zeros(B, t, m) one query at a time", _attention("""
    B, t, m = Q.shape[0], Q.shape[1], K.shape[1]
    weights = torch.zeros(B, t, m, device=Q.device)
    full = None if mask is None else torch.broadcast_to(mask, (B, t, m))
    for j in range(t):
        s = (K @ Q[:, j, :, None])[..., 0]
        if full is not None:
            s = s.masked_fill(~full[:, j], torch.finfo(s.dtype).min)
        w = torch.softmax(s, -1)
        weights[:, j] = w if full is None else w * full[:, j]
    return weights.to(Q.dtype) @ V, weights
"""), says="keep the inputs' dtype"),
]

WRONG_ON_GPU += [
    _project("outputs preallocated with torch.empty(..., dtype=) without device=", """
def project_qkv(h, s, W_Q, W_K, W_V):
    B, t, m = s.shape[0], s.shape[1], h.shape[1]
    Q = torch.empty(B, t, W_Q.shape[0], dtype=s.dtype)
    K = torch.empty(B, m, W_K.shape[0], dtype=h.dtype)
    V = torch.empty(B, m, W_V.shape[0], dtype=h.dtype)
    Q[:], K[:], V[:] = s @ W_Q.T, h @ W_K.T, h @ W_V.T
    return Q, K, V
""", says="creates a tensor on the CPU"),
    Answer(L, ATTEND, "masked scores filled from torch.full(..., -inf) without device=", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        low = torch.full(scores.shape, torch.finfo(scores.dtype).min, dtype=scores.dtype)
        scores = torch.where(mask, scores, low)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
"""), says="creates a tensor on the CPU"),
]

CORRECT += [
    _project("one stacked matmul for K and V, split at d_k", """
def project_qkv(h, s, W_Q, W_K, W_V):
    KV = h @ torch.cat([W_K, W_V], dim=0).T
    K, V = KV.split([W_K.shape[0], W_V.shape[0]], dim=-1)
    return torch.matmul(s, W_Q.transpose(0, 1)), K, V
"""),
    _project("nn.Linear layers through functional_call", """
def project_qkv(h, s, W_Q, W_K, W_V):
    def linear(x, W):
        layer = nn.Linear(W.shape[1], W.shape[0], bias=False).to(device=x.device, dtype=x.dtype)
        return torch.func.functional_call(layer, {"weight": W}, (x,))
    return linear(s, W_Q), linear(h, W_K), linear(h, W_V)
"""),
    Answer(L, ATTEND, "float32's most negative number as the fill, in any dtype", _attention("""
    scores = Q @ K.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ V, weights
""")),
]
