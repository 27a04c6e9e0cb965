"""Lesson 02, Bahdanau attention: answers students write.

WRONG answers must lose the points of their function (and, where `says` is set, be named in the
failure message); CORRECT answers, written in styles other than the reference's, must get full marks.
The first WRONG answer of each function is the one the slow tier puts in a real notebook, so it is
one the checks name.

WRONG_ON_GPU holds mistakes that are invisible on a CPU (a tensor created without device=): the
checks catch them only where CUDA is present, so they are tested only there.
"""
from textwrap import dedent

from .catalog import Answer

LESSON = "02_bahdanau_attention"


def _answer(function: str, name: str, source: str, says: str = "") -> Answer:
    return Answer(LESSON, function, name, dedent(source).strip() + "\n", says)


WRONG = [
    # --- additive_scores -------------------------------------------------------------------------
    _answer("additive_scores", "concatenation [s_j; h_i] instead of [h_i; s_j]", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            sh = torch.cat([s.unsqueeze(1).expand(B, m, s.shape[-1]), h], dim=-1)
            return torch.tanh(sh @ W.T) @ v
        """, says="the concatenation is [s_j; h_i]"),
    _answer("additive_scores", "tanh missing", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            hs = torch.cat([h, s.unsqueeze(1).expand(B, m, s.shape[-1])], dim=-1)
            return (hs @ W.T) @ v
        """, says="the tanh is missing"),
    _answer("additive_scores", "scores already softmaxed", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            hs = torch.cat([h, s.unsqueeze(1).expand(B, m, s.shape[-1])], dim=-1)
            return torch.softmax(torch.tanh(hs @ W.T) @ v, dim=-1)
        """, says="already normalized with softmax"),
    _answer("additive_scores", "W applied untransposed", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            hs = torch.cat([h, s.unsqueeze(1).expand(B, m, s.shape[-1])], dim=-1)
            return torch.tanh(hs @ W) @ v
        """, says="a transpose is missing"),
    _answer("additive_scores", "v applied inside the tanh", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            hs = torch.cat([h, s.unsqueeze(1).expand(B, m, s.shape[-1])], dim=-1)
            return torch.tanh(hs @ W.T @ v)
        """, says="v is applied inside the tanh"),
    _answer("additive_scores", "batch size hard-coded to 2", """
        def additive_scores(h, s, W, v):
            m = h.shape[1]
            hs = torch.cat([h, s.unsqueeze(1).expand(2, m, s.shape[-1])], dim=-1)
            return torch.tanh(hs @ W.T) @ v
        """, says="raised RuntimeError"),
    _answer("additive_scores", "float32 forced with .float()", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            hs = torch.cat([h, s.unsqueeze(1).expand(B, m, s.shape[-1])], dim=-1).float()
            return torch.tanh(hs @ W.float().T) @ v.float()
        """, says="keep the inputs' dtype"),
    _answer("additive_scores", ".detach() inside", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            hs = torch.cat([h, s.unsqueeze(1).expand(B, m, s.shape[-1])], dim=-1)
            return (torch.tanh(hs @ W.T) @ v).detach()
        """, says="no gradient flows back"),

    # --- dot_scores ------------------------------------------------------------------------------
    _answer("dot_scores", "W_K and W_Q swapped", """
        def dot_scores(h, s, W_K, W_Q):
            k = h @ W_Q.T
            q = s @ W_K.T
            return (k @ q.unsqueeze(-1)).squeeze(-1)
        """, says="W_K and W_Q are swapped"),
    _answer("dot_scores", "weights applied untransposed", """
        def dot_scores(h, s, W_K, W_Q):
            k = h @ W_K
            q = s @ W_Q
            return (k @ q.unsqueeze(-1)).squeeze(-1)
        """, says="a transpose is missing"),
    _answer("dot_scores", "extra 1/sqrt(d_k)", """
        def dot_scores(h, s, W_K, W_Q):
            k = h @ W_K.T
            q = s @ W_Q.T
            return (k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(W_K.shape[0])
        """, says="divided by sqrt(d_k)"),
    _answer("dot_scores", "scaled by sqrt(d_h), the model width", """
        def dot_scores(h, s, W_K, W_Q):
            k = h @ W_K.T
            q = s @ W_Q.T
            return (k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(h.shape[-1])
        """, says="option 2 has no scaling"),
    _answer("dot_scores", "scores already softmaxed", """
        def dot_scores(h, s, W_K, W_Q):
            k = h @ W_K.T
            q = s @ W_Q.T
            return torch.softmax((k @ q.unsqueeze(-1)).squeeze(-1), dim=-1)
        """, says="already normalized with softmax"),
    _answer("dot_scores", "k @ q.T mixes the batch", """
        def dot_scores(h, s, W_K, W_Q):
            k = h @ W_K.T
            q = s @ W_Q.T
            return (k @ q.T).squeeze(-1)
        """, says="should have shape"),
    _answer("dot_scores", "numpy round trip", """
        import numpy as np

        def dot_scores(h, s, W_K, W_Q):
            k = h.detach().cpu().numpy() @ W_K.detach().cpu().numpy().T
            q = s.detach().cpu().numpy() @ W_Q.detach().cpu().numpy().T
            return torch.from_numpy(np.einsum("bmk,bk->bm", k, q)).to(h.device)
        """, says="no gradient flows back"),

    # --- attention_weights -----------------------------------------------------------------------
    _answer("attention_weights", "softmax over the batch axis", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return torch.softmax(scores, dim=0)
            filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            return torch.softmax(filled, dim=0) * mask
        """, says="over the batch axis"),
    _answer("attention_weights", "masked scores filled with finfo.min: an all-masked row comes out uniform", """
        def attention_weights(scores, mask=None):
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            return torch.softmax(scores, dim=-1)
        """, says="all masked should give all zeros"),
    _answer("attention_weights", "normalized without exp", """
        def attention_weights(scores, mask=None):
            if mask is not None:
                scores = scores * mask
            return scores / scores.sum(dim=-1, keepdim=True)
        """, says="normalize without exp"),
    _answer("attention_weights", "masked after the softmax without renormalizing", """
        def attention_weights(scores, mask=None):
            weights = torch.softmax(scores, dim=-1)
            if mask is not None:
                weights = weights * mask
            return weights
        """, says="zeroed after the softmax without renormalizing"),
    _answer("attention_weights", "masked_fill -inf: an all-masked row gives NaN", """
        def attention_weights(scores, mask=None):
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            return torch.softmax(scores, dim=-1)
        """, says="all masked gives NaN"),
    _answer("attention_weights", "log of the mask added to the scores: an all-masked row gives NaN", """
        def attention_weights(scores, mask=None):
            if mask is not None:
                scores = scores + mask.to(scores.dtype).log()
            return torch.softmax(scores, dim=-1)
        """, says="all masked gives NaN"),
    _answer("attention_weights", "mask inverted (True treated as masked)", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return torch.softmax(scores, dim=-1)
            filled = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
            return torch.softmax(filled, dim=-1) * ~mask
        """, says="True was treated as masked"),
    _answer("attention_weights", "mask ignored", """
        def attention_weights(scores, mask=None):
            return torch.softmax(scores, dim=-1)
        """, says="the mask is ignored"),
    _answer("attention_weights", "mask multiplied into the scores instead of filling them", """
        def attention_weights(scores, mask=None):
            if mask is not None:
                scores = scores * mask
            return torch.softmax(scores, dim=-1)
        """, says="must get weight exactly 0"),
    _answer("attention_weights", "-1e9 fill: an all-masked row gets uniform weights", """
        def attention_weights(scores, mask=None):
            if mask is not None:
                scores = scores.masked_fill(~mask, -1e9)
            return torch.softmax(scores, dim=-1)
        """, says="all masked should give all zeros"),
    _answer("attention_weights", "manual softmax without subtracting the maximum", """
        def attention_weights(scores, mask=None):
            e = torch.exp(scores)
            if mask is not None:
                e = e * mask
            total = e.sum(dim=-1, keepdim=True)
            return e / torch.where(total > 0, total, torch.ones_like(total))
        """, says="subtract the row maximum"),
    _answer("attention_weights", "masked_fill_ edits the scores in place", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return torch.softmax(scores, dim=-1)
            scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
            return torch.softmax(scores, dim=-1) * mask
        """, says="modified in place"),
    _answer("attention_weights", "log_softmax instead of softmax", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return F.log_softmax(scores, dim=-1)
            filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            return F.log_softmax(filled, dim=-1) * mask
        """, says="must sum to 1"),
    _answer("attention_weights", "float32 forced with .float()", """
        def attention_weights(scores, mask=None):
            scores = scores.float()
            if mask is None:
                return torch.softmax(scores, dim=-1)
            filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            return torch.softmax(filled, dim=-1) * mask
        """, says="keep the inputs' dtype"),

    # --- context_vector --------------------------------------------------------------------------
    _answer("context_vector", "the mean of h (weights ignored)", """
        def context_vector(alpha, h):
            return h.mean(dim=1)
        """, says="plain mean of h"),
    _answer("context_vector", "the sum of h (weights ignored)", """
        def context_vector(alpha, h):
            return h.sum(dim=1)
        """, says="plain sum of h"),
    _answer("context_vector", "summed over the feature axis instead of positions", """
        def context_vector(alpha, h):
            return (alpha.unsqueeze(-1) * h).sum(dim=-1)
        """, says="should have shape"),
    _answer("context_vector", "weighted states never summed", """
        def context_vector(alpha, h):
            return alpha.unsqueeze(-1) * h
        """, says="should have shape"),
    _answer("context_vector", "alpha @ h without unsqueeze", """
        def context_vector(alpha, h):
            return (alpha @ h).squeeze(1)
        """, says="should have shape"),
    _answer("context_vector", "squeeze() without a dim (batch of 1 collapses)", """
        def context_vector(alpha, h):
            return (alpha.unsqueeze(1) @ h).squeeze()
        """, says="should have shape"),
    _answer("context_vector", "h scaled in place", """
        def context_vector(alpha, h):
            h *= alpha.unsqueeze(-1)
            return h.sum(dim=1)
        """, says="modified in place"),
    _answer("context_vector", "alpha detached", """
        def context_vector(alpha, h):
            return (alpha.detach().unsqueeze(1) @ h).squeeze(1)
        """, says="no gradient reaches input 1"),
    _answer("context_vector", "alpha renormalized again", """
        def context_vector(alpha, h):
            alpha = alpha / alpha.sum(dim=-1, keepdim=True)
            return (alpha.unsqueeze(-1) * h).sum(dim=1)
        """, says="renormalized"),
    _answer("context_vector", "batch size hard-coded to 2", """
        def context_vector(alpha, h):
            return torch.bmm(alpha.view(2, 1, -1), h).view(2, -1)
        """, says="raised RuntimeError"),
    _answer("context_vector", "numpy round trip", """
        import numpy as np

        def context_vector(alpha, h):
            c = np.einsum("bm,bmd->bd", alpha.detach().cpu().numpy(), h.detach().cpu().numpy())
            return torch.from_numpy(c).to(h.device)
        """, says="no gradient flows back"),

    # --- attention_decoder_step ------------------------------------------------------------------
    _answer("attention_decoder_step", "concatenation [s; x'; c] instead of [x'; s; c]", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([s_prev, x, c_prev], dim=-1)
            return torch.tanh(z @ A_prime.T + b_prime)
        """, says="the concatenation order"),
    _answer("attention_decoder_step", "concatenation [x'; c; s] instead of [x'; s; c]", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, c_prev, s_prev], dim=-1)
            return torch.tanh(z @ A_prime.T + b_prime)
        """, says="the concatenation order"),
    _answer("attention_decoder_step", "tanh missing", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], dim=-1)
            return z @ A_prime.T + b_prime
        """, says="the tanh is missing"),
    _answer("attention_decoder_step", "bias missing", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], dim=-1)
            return torch.tanh(z @ A_prime.T)
        """, says="the bias b' is missing"),
    _answer("attention_decoder_step", "bias added after the tanh", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], dim=-1)
            return torch.tanh(z @ A_prime.T) + b_prime
        """),
    _answer("attention_decoder_step", "A' applied untransposed", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], dim=-1)
            return torch.tanh(z @ A_prime + b_prime)
        """, says="a transpose is missing"),
    _answer("attention_decoder_step", "state updated in place", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], dim=-1)
            s_prev.copy_(torch.tanh(z @ A_prime.T + b_prime))
            return s_prev
        """, says="modified in place"),
    _answer("attention_decoder_step", "float32 forced with .float()", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], dim=-1).float()
            return torch.tanh(z @ A_prime.float().T + b_prime.float())
        """, says="keep the inputs' dtype"),
    _answer("attention_decoder_step", "computed under torch.no_grad()", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            with torch.no_grad():
                z = torch.cat([x, s_prev, c_prev], dim=-1)
                return torch.tanh(z @ A_prime.T + b_prime)
        """, says="no gradient flows back"),

    # --- attention_decode ------------------------------------------------------------------------
    _answer("attention_decode", "decoder started from zeros", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = torch.zeros_like(hs[:, -1])
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="the decoder starts from zeros"),
    _answer("attention_decode", "decoder started from h_1", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, 0]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="the decoder starts from h_1"),
    _answer("attention_decode", "weights computed once and reused (stale)", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            alpha = attention_weights(score_fn(hs, s))
            c = context_vector(alpha, hs)
            states = []
            for j in range(xs_dec.shape[1]):
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
            weights = alpha.unsqueeze(1).expand(-1, xs_dec.shape[1], -1)
            return torch.stack(states, dim=1), weights
        """, says="score_fn was called once"),
    _answer("attention_decode", "context taken from the new state (Luong order, c_0 = 0)", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            c = torch.zeros_like(hs[:, -1])
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="the first weights come from the new state s_1"),
    _answer("attention_decode", "returns s_0..s_{t-1} instead of s_1..s_t", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                states.append(s)
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="ss starts with s_0"),
    _answer("attention_decode", "weights rows shifted (next weights computed early)", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            t = xs_dec.shape[1]
            s = hs[:, -1]
            alpha = attention_weights(score_fn(hs, s))
            states, weights = [], []
            for j in range(t):
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                if j < t - 1:
                    alpha = attention_weights(score_fn(hs, s))
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="row j holds the weights of step j+1"),
    _answer("attention_decode", "one score_fn call too many (weights for the next step at the end)", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            alpha = attention_weights(score_fn(hs, s))
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                c = context_vector(alpha, hs)
                weights.append(alpha)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                alpha = attention_weights(score_fn(hs, s))
                states.append(s)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="once per decoder step"),
    _answer("attention_decode", "state not carried between steps", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s0 = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s0))
                c = context_vector(alpha, hs)
                states.append(attention_decoder_step(xs_dec[:, j], s0, c, A_prime, b_prime))
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="the state the previous step returned"),
    _answer("attention_decode", "state passed where the context belongs", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                s = attention_decoder_step(xs_dec[:, j], s, s, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """),
    _answer("attention_decode", "encoder state h_j passed where the context belongs", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                s = attention_decoder_step(xs_dec[:, j], s, hs[:, min(j, hs.shape[1] - 1)], A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """),
    _answer("attention_decode", "state detached every step (gradients cut)", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
                s = s.detach()
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="is wrong, though the values may look right"),
    _answer("attention_decode", "weights detached before stacking", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha.detach())
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """, says="is wrong, though the values may look right"),
    _answer("attention_decode", "iterates over the batch axis instead of time", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for x in xs_dec:
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(x, s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """),
    _answer("attention_decode", "lists returned instead of stacked tensors", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return states, weights
        """, says="should be a torch.Tensor"),
    _answer("attention_decode", "torch.cat instead of torch.stack", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return torch.cat(states, dim=1), torch.cat(weights, dim=1)
        """, says="should have shape"),
    _answer("attention_decode", "float32 forced with .float()", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            hs, xs_dec, A_prime, b_prime = hs.float(), xs_dec.float(), A_prime.float(), b_prime.float()
            s = hs[:, -1]
            states, weights = [], []
            for j in range(xs_dec.shape[1]):
                alpha = attention_weights(score_fn(hs, s))
                c = context_vector(alpha, hs)
                s = attention_decoder_step(xs_dec[:, j], s, c, A_prime, b_prime)
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, dim=1), torch.stack(weights, dim=1)
        """),
]


# Tensors created without device=: right on a CPU, wrong (or crashing) on CUDA only.
WRONG_ON_GPU = [
    _answer("additive_scores", "scores preallocated without device=", """
        def additive_scores(h, s, W, v):
            B, m, d_h = h.shape
            out = torch.zeros(B, m, dtype=h.dtype)
            for i in range(m):
                out[:, i] = torch.tanh(torch.cat([h[:, i], s], dim=-1) @ W.T) @ v
            return out
        """, says="create new tensors with device=x.device"),
    _answer("attention_weights", "default all-True mask created without device=", """
        def attention_weights(scores, mask=None):
            if mask is None:
                mask = torch.ones(scores.shape, dtype=torch.bool)
            filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            return torch.softmax(filled, dim=-1) * mask
        """, says="raised RuntimeError"),
    _answer("context_vector", "accumulator created without device=", """
        def context_vector(alpha, h):
            B, m, d_h = h.shape
            c = torch.zeros(B, d_h, dtype=h.dtype)
            for i in range(m):
                c = c + alpha[:, i, None] * h[:, i]
            return c
        """, says="raised RuntimeError"),
    _answer("attention_decode", "outputs preallocated without device=", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            B, m, d = hs.shape
            t = xs_dec.shape[1]
            ss = torch.zeros(B, t, d, dtype=hs.dtype)
            weights = torch.zeros(B, t, m, dtype=hs.dtype)
            s = hs[:, -1]
            for j in range(t):
                alpha = attention_weights(score_fn(hs, s))
                s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
                ss[:, j], weights[:, j] = s, alpha
            return ss, weights
        """, says="create new tensors with device=x.device"),
]


CORRECT = [
    # --- additive_scores -------------------------------------------------------------------------
    _answer("additive_scores", "W split into its h and s blocks", """
        def additive_scores(h, s, W, v):
            d_h = h.shape[-1]
            pre = h @ W[:, :d_h].T + (s @ W[:, d_h:].T).unsqueeze(1)   # (B, m, d_a)
            return torch.tanh(pre) @ v
        """),
    _answer("additive_scores", "einsum, computed in float64 and cast back", """
        def additive_scores(h, s, W, v):
            B, m, _ = h.shape
            hs = torch.cat([h, s[:, None, :].expand(B, m, -1)], dim=-1).double()
            a = torch.tanh(torch.einsum("ad,bmd->bma", W.double(), hs))
            return torch.einsum("bma,a->bm", a, v.double()).to(h.dtype)
        """),
    _answer("additive_scores", "explicit loop over positions", """
        def additive_scores(h, s, W, v):
            cols = []
            for i in range(h.shape[1]):
                z = torch.cat([h[:, i], s], dim=1)                  # (B, d_h + d_s)
                cols.append((torch.tanh(z @ W.T) * v).sum(dim=1))   # (B,)
            return torch.stack(cols, dim=1)
        """),

    # --- dot_scores ------------------------------------------------------------------------------
    _answer("dot_scores", "one einsum", """
        def dot_scores(h, s, W_K, W_Q):
            return torch.einsum("bmh,kh,ks,bs->bm", h, W_K, W_Q, s)
        """),
    _answer("dot_scores", "broadcast product and sum", """
        def dot_scores(h, s, W_K, W_Q):
            k = h @ W_K.T
            q = s @ W_Q.T
            return (k * q[:, None, :]).sum(dim=-1)
        """),
    _answer("dot_scores", "query pulled back through W_K, bmm", """
        def dot_scores(h, s, W_K, W_Q):
            u = (s @ W_Q.T) @ W_K                                   # (B, d_h): W_K^T q
            return torch.bmm(h, u.unsqueeze(2)).squeeze(2)
        """),

    # --- attention_weights -----------------------------------------------------------------------
    _answer("attention_weights", "manual stable softmax", """
        def attention_weights(scores, mask=None):
            if mask is None:
                mask = torch.ones_like(scores, dtype=torch.bool)
            top = scores.masked_fill(~mask, float("-inf")).amax(dim=-1, keepdim=True)
            top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
            e = torch.exp((scores - top).masked_fill(~mask, float("-inf")))
            total = e.sum(dim=-1, keepdim=True)
            return e / torch.where(total > 0, total, torch.ones_like(total))
        """),
    _answer("attention_weights", "F.softmax with torch.where masking", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return F.softmax(scores, dim=-1)
            low = torch.finfo(scores.dtype).min
            w = F.softmax(torch.where(mask, scores, torch.full_like(scores, low)), dim=-1)
            return torch.where(mask, w, torch.zeros_like(w))
        """),
    _answer("attention_weights", "-inf fill, then NaN rows zeroed with nan_to_num", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return torch.softmax(scores, dim=-1)
            w = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            return torch.nan_to_num(w, nan=0.0)
        """),
    _answer("attention_weights", "logsumexp in float64, cast back", """
        def attention_weights(scores, mask=None):
            x = scores.double()
            if mask is not None:
                x = x.masked_fill(~mask, torch.finfo(torch.float64).min)
            w = torch.exp(x - torch.logsumexp(x, dim=-1, keepdim=True))
            if mask is not None:
                w = w * mask
            return w.to(scores.dtype)
        """),

    # --- context_vector --------------------------------------------------------------------------
    _answer("context_vector", "einsum", """
        def context_vector(alpha, h):
            return torch.einsum("bm,bmd->bd", alpha, h)
        """),
    _answer("context_vector", "explicit loop over positions", """
        def context_vector(alpha, h):
            c = torch.zeros_like(h[:, 0])
            for i in range(h.shape[1]):
                c = c + alpha[:, i:i + 1] * h[:, i]
            return c
        """),
    _answer("context_vector", "broadcast product and sum", """
        def context_vector(alpha, h):
            return (alpha.unsqueeze(-1) * h).sum(dim=1)
        """),

    # --- attention_decoder_step ------------------------------------------------------------------
    _answer("attention_decoder_step", "A' split into its three blocks", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            d_x, d_s = x.shape[-1], s_prev.shape[-1]
            A_x, A_s, A_c = A_prime[:, :d_x], A_prime[:, d_x:d_x + d_s], A_prime[:, d_x + d_s:]
            return torch.tanh(x @ A_x.T + s_prev @ A_s.T + c_prev @ A_c.T + b_prime)
        """),
    _answer("attention_decoder_step", "F.linear", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            return torch.tanh(F.linear(torch.cat((x, s_prev, c_prev), 1), A_prime, b_prime))
        """),
    _answer("attention_decoder_step", "addmm in float64, cast back", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], dim=-1).double()
            return torch.tanh(torch.addmm(b_prime.double(), z, A_prime.double().T)).to(s_prev.dtype)
        """),

    # --- attention_decode ------------------------------------------------------------------------
    _answer("attention_decode", "outputs preallocated on the inputs' device", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            B, m, d = hs.shape
            t = xs_dec.shape[1]
            ss, weights = hs.new_zeros(B, t, d), hs.new_zeros(B, t, m)
            s = hs[:, -1]
            for j in range(t):
                alpha = attention_weights(score_fn(hs, s))
                s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
                ss[:, j], weights[:, j] = s, alpha
            return ss, weights
        """),
    _answer("attention_decode", "no helpers: everything inlined", """
        def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
            s = hs[:, -1]
            states, weights = [], []
            for x in xs_dec.unbind(dim=1):
                alpha = F.softmax(score_fn(hs, s), dim=-1)
                c = torch.einsum("bm,bmd->bd", alpha, hs)
                s = torch.tanh(F.linear(torch.cat([x, s, c], dim=-1), A_prime, b_prime))
                states.append(s)
                weights.append(alpha)
            return torch.stack(states, 1), torch.stack(weights, 1)
        """),
]


# --- the edges of the contract (issue 15): calling, input, numerical and dtype/device families ---------
# Each is proven wrong (or right) by tests/test_checks_bahdanau.py against oracles written with PyTorch's own
# modules and functions (F.linear, F.bilinear, F.softmax, F.scaled_dot_product_attention, nn.RNNCell).

_DEC = """
def attention_decode(hs, xs_dec, A_prime, b_prime, score_fn):
{body}"""


def _decode(name, body, says=""):
    return _answer("attention_decode", name, _DEC.format(body=body), says)


WRONG += [
    # additive_scores
    _answer("additive_scores", "the decoder state parameter named s_j", """
        def additive_scores(h, s_j, W, v):
            m = h.shape[1]
            z = torch.cat([h, s_j.unsqueeze(1).expand(-1, m, -1)], dim=-1)
            return torch.tanh(z @ W.T) @ v
        """, says="parameter names of the contract"),
    _answer("additive_scores", "W's blocks split once and kept from the first call", """
        _W = {}
        def additive_scores(h, s, W, v):
            if not _W:
                _W["h"], _W["s"] = W[:, :h.shape[-1]], W[:, h.shape[-1]:]
            pre = h @ _W["h"].T + (s @ _W["s"].T)[:, None, :]
            return torch.tanh(pre) @ v
        """, says="earlier call"),
    _answer("additive_scores", "squeeze() without a dim (batch 1 or m = 1 collapses)", """
        def additive_scores(h, s, W, v):
            m = h.shape[1]
            z = torch.cat([h, s[:, None].expand(-1, m, -1)], dim=-1)
            return (torch.tanh(z @ W.T) @ v[:, None]).squeeze()
        """, says="squeeze"),
    _answer("additive_scores", "s given its position axis in place (s.unsqueeze_)", """
        def additive_scores(h, s, W, v):
            s.unsqueeze_(1)
            z = torch.cat([h, s.expand(-1, h.shape[1], -1)], dim=-1)
            scores = torch.tanh(z @ W.T) @ v
            s.squeeze_(1)
            return scores
        """, says="modified in place"),
    _answer("additive_scores", "tanh written with exp", """
        def additive_scores(h, s, W, v):
            z = torch.cat([h, s[:, None].expand(-1, h.shape[1], -1)], dim=-1) @ W.T
            return ((torch.exp(2 * z) - 1) / (torch.exp(2 * z) + 1)) @ v
        """, says="a tanh written with exp overflows"),
    _answer("additive_scores", "pre-activation clamped to [-10, 10]", """
        def additive_scores(h, s, W, v):
            z = torch.cat([h, s[:, None].expand(-1, h.shape[1], -1)], dim=-1) @ W.T
            return torch.tanh(z.clamp(-10, 10)) @ v
        """, says="clamped to [-10, 10]"),
    _answer("additive_scores", "tanh in float32, cast back", """
        def additive_scores(h, s, W, v):
            z = torch.cat([h, s[:, None].expand(-1, h.shape[1], -1)], dim=-1) @ W.T
            return torch.tanh(z.float()).to(h.dtype) @ v
        """, says="float32 precision"),
    _answer("additive_scores", "float64 forced with .double()", """
        def additive_scores(h, s, W, v):
            z = torch.cat([h, s[:, None].expand(-1, h.shape[1], -1)], dim=-1).double()
            return torch.tanh(z @ W.double().T) @ v.double()
        """, says="keep the inputs' dtype"),

    # dot_scores
    _answer("dot_scores", "weights taken in the seed's order (h, s, W_Q, W_K)", """
        def dot_scores(h, s, W_Q, W_K):
            k = h @ W_K.T
            q = s @ W_Q.T
            return (k * q[:, None, :]).sum(-1)
        """, says="W_K and W_Q are swapped"),
    _answer("dot_scores", "parameters named (h, s, Wk, Wq)", """
        def dot_scores(h, s, Wk, Wq):
            return torch.einsum("bmk,bk->bm", h @ Wk.T, s @ Wq.T)
        """, says="parameter names of the contract"),
    _answer("dot_scores", "(K @ q[..., None]).squeeze() (batch 1 or m = 1 collapses)", """
        def dot_scores(h, s, W_K, W_Q):
            K, q = h @ W_K.T, s @ W_Q.T
            return (K @ q[..., None]).squeeze()
        """, says="squeeze"),
    _answer("dot_scores", "keys cached from the first call", """
        _cache = {}
        def dot_scores(h, s, W_K, W_Q):
            if "K" not in _cache:
                _cache["K"] = h @ W_K.T
            return (_cache["K"] * (s @ W_Q.T)[:, None, :]).sum(-1)
        """, says="earlier call"),
    _answer("dot_scores", "W_K transposed in place (W_K.t_())", """
        def dot_scores(h, s, W_K, W_Q):
            K = h @ W_K.t_()
            W_K.t_()
            return (K * (s @ W_Q.T)[:, None, :]).sum(-1)
        """, says="modified in place"),
    _answer("dot_scores", "h normalized in place", """
        def dot_scores(h, s, W_K, W_Q):
            h /= h.norm(dim=-1, keepdim=True).clamp(min=1.0)     # "keep the states bounded", in place
            return ((h @ W_K.T) * (s @ W_Q.T)[:, None, :]).sum(-1)
        """, says="modified in place"),
    _answer("dot_scores", "keys and query in float32, cast back", """
        def dot_scores(h, s, W_K, W_Q):
            K, q = h.float() @ W_K.float().T, s.float() @ W_Q.float().T
            return (K * q[:, None, :]).sum(-1).to(h.dtype)
        """, says="float32 precision"),
    _answer("dot_scores", "float64 forced with .double()", """
        def dot_scores(h, s, W_K, W_Q):
            return ((h.double() @ W_K.double().T) * (s.double() @ W_Q.double().T)[:, None, :]).sum(-1)
        """, says="keep the inputs' dtype"),

    # attention_weights
    _answer("attention_weights", "the mask parameter named attn_mask", """
        def attention_weights(scores, attn_mask=None):
            if attn_mask is None:
                return torch.softmax(scores, dim=-1)
            w = torch.softmax(scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min), dim=-1)
            return w * attn_mask
        """, says="parameter names of the contract"),
    _answer("attention_weights", "the default all-True mask kept from the first call", """
        _default = []
        def attention_weights(scores, mask=None):
            if mask is None:
                if not _default:
                    _default.append(torch.ones_like(scores, dtype=torch.bool))
                mask = _default[0]
            w = torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)
            return w * mask
        """, says="earlier call"),
    _answer("attention_weights", "mask inverted in place (mask.logical_not_())", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return torch.softmax(scores, dim=-1)
            masked = mask.logical_not_()
            w = torch.softmax(scores.masked_fill(masked, torch.finfo(scores.dtype).min), dim=-1)
            mask.logical_not_()
            return w * mask
        """, says="modified in place"),
    _answer("attention_weights", "finite penalty: scores - 100 where masked, zeroed afterwards", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return torch.softmax(scores, dim=-1)
            return torch.softmax(scores - 100.0 * (~mask), dim=-1) * mask
        """, says="the allowed positions get no weight"),
    _answer("attention_weights", "-1e4 fill, zeroed afterwards", """
        def attention_weights(scores, mask=None):
            if mask is None:
                return torch.softmax(scores, dim=-1)
            return torch.softmax(scores.masked_fill(~mask, -1e4), dim=-1) * mask
        """, says="the allowed positions get no weight"),
    _answer("attention_weights", "softmax over every position, renormalized over the allowed ones", """
        def attention_weights(scores, mask=None):
            w = torch.softmax(scores, dim=-1)
            if mask is None:
                return w
            w = w * mask
            total = w.sum(-1, keepdim=True)
            return torch.where(total > 0, w / total.clamp(min=1e-300), torch.zeros_like(w))
        """, says="the allowed positions get no weight"),
    _answer("attention_weights", "scores clamped to [-50, 50] against overflow", """
        def attention_weights(scores, mask=None):
            e = torch.exp(scores.clamp(-50, 50))
            if mask is not None:
                e = e * mask
            total = e.sum(-1, keepdim=True)
            return e / torch.where(total > 0, total, torch.ones_like(total))
        """, says="clamped before the softmax"),
    _answer("attention_weights", "softmax in float32 inside a float64 call, cast back", """
        def attention_weights(scores, mask=None):
            s = scores.float()
            if mask is not None:
                s = s.masked_fill(~mask, torch.finfo(torch.float32).min)
            w = torch.softmax(s, dim=-1).to(scores.dtype)
            return w if mask is None else w * mask
        """, says="float32 precision"),
    _answer("attention_weights", "float64 forced with .double()", """
        def attention_weights(scores, mask=None):
            s = scores.double()
            if mask is not None:
                s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
            w = torch.softmax(s, dim=-1)
            return w if mask is None else w * mask
        """, says="keep the inputs' dtype"),

    # context_vector
    _answer("context_vector", "the weights parameter named weights", """
        def context_vector(weights, h):
            return torch.einsum("bm,bmd->bd", weights, h)
        """, says="parameter names of the contract"),
    _answer("context_vector", "an accumulator kept at module level between calls", """
        _acc = []
        def context_vector(alpha, h):
            if not _acc:
                _acc.append(h.new_zeros(h.shape[0], h.shape[-1]))
            c = _acc[0] * 0
            for i in range(h.shape[1]):
                c = c + alpha[:, i:i + 1] * h[:, i]
            return c
        """, says="earlier call"),
    _answer("context_vector", "alpha given a feature axis in place (alpha.unsqueeze_)", """
        def context_vector(alpha, h):
            alpha.unsqueeze_(-1)
            c = (alpha * h).sum(1)
            alpha.squeeze_(-1)
            return c
        """, says="modified in place"),
    _answer("context_vector", "h weighted in place (h.mul_)", """
        def context_vector(alpha, h):
            return h.mul_(alpha[..., None]).sum(dim=1)
        """, says="modified in place"),
    _answer("context_vector", "alpha normalized by its sum (NaN for a zero row)", """
        def context_vector(alpha, h):
            alpha = alpha / alpha.sum(-1, keepdim=True)
            return torch.bmm(alpha[:, None], h)[:, 0]
        """, says="renormalized"),
    _answer("context_vector", "bmm in float32, cast back", """
        def context_vector(alpha, h):
            return torch.bmm(alpha.float()[:, None], h.float())[:, 0].to(h.dtype)
        """, says="float32 precision"),
    _answer("context_vector", "float64 forced with .double()", """
        def context_vector(alpha, h):
            return (alpha.double()[..., None] * h.double()).sum(1)
        """, says="keep the inputs' dtype"),

    # attention_decoder_step
    _answer("attention_decoder_step", "parameters named (x, s, c, A, b)", """
        def attention_decoder_step(x, s, c, A, b):
            return torch.tanh(torch.cat([x, s, c], -1) @ A.T + b)
        """, says="parameter names of the contract"),
    _answer("attention_decoder_step", "A' split into blocks once, kept from the first call", """
        _blocks = []
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            if not _blocks:
                d_x, d_s = x.shape[-1], s_prev.shape[-1]
                _blocks.extend([A_prime[:, :d_x], A_prime[:, d_x:d_x + d_s], A_prime[:, d_x + d_s:]])
            A_x, A_s, A_c = _blocks
            return torch.tanh(x @ A_x.T + s_prev @ A_s.T + c_prev @ A_c.T + b_prime)
        """, says="earlier call"),
    _answer("attention_decoder_step", "A' transposed in place (A_prime.t_())", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            W = A_prime.t_()
            s = torch.tanh(torch.cat([x, s_prev, c_prev], -1) @ W + b_prime)
            A_prime.t_()
            return s
        """, says="modified in place"),
    _answer("attention_decoder_step", "tanh written with exp", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], -1) @ A_prime.T + b_prime
            return (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z))
        """, says="a tanh written with exp overflows"),
    _answer("attention_decoder_step", "pre-activation clamped to [-10, 10]", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = F.linear(torch.cat([x, s_prev, c_prev], -1), A_prime, b_prime)
            return torch.tanh(torch.clamp(z, -10.0, 10.0))
        """, says="clamped to [-10, 10]"),
    _answer("attention_decoder_step", "concatenation in float32, cast back", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], -1).float()
            return torch.tanh(z @ A_prime.float().T + b_prime.float()).to(x.dtype)
        """, says="float32 precision"),
    _answer("attention_decoder_step", "float64 forced with .double()", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], -1).double()
            return torch.tanh(z @ A_prime.double().T + b_prime.double())
        """, says="keep the inputs' dtype"),
    _answer("attention_decoder_step", "squeeze() without a dim (batch of 1 collapses)", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            z = torch.cat([x, s_prev, c_prev], -1)[..., None]
            return torch.tanh((A_prime @ z).squeeze() + b_prime)
        """, says="squeeze"),

    # attention_decode
    _answer("attention_decode", "parameters named (hs, xs, A, b, score)", """
        def attention_decode(hs, xs, A, b, score):
            s, ss, ws = hs[:, -1], [], []
            for j in range(xs.shape[1]):
                alpha = attention_weights(score(hs, s))
                s = attention_decoder_step(xs[:, j], s, context_vector(alpha, hs), A, b)
                ss.append(s)
                ws.append(alpha)
            return torch.stack(ss, 1), torch.stack(ws, 1)
        """, says="parameter names of the contract"),
    _decode("score_fn called with keywords of its own (hs=, s_j=)", """
    s, ss, ws = hs[:, -1], [], []
    for j in range(xs_dec.shape[1]):
        alpha = attention_weights(score_fn(hs=hs, s_j=s))
        s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
        ss.append(s)
        ws.append(alpha)
    return torch.stack(ss, 1), torch.stack(ws, 1)
""", says="score_fn(h, s)"),
    _decode("output buffers kept at module level from the first call", """
    global _buffers
    try:
        ss, ws = _buffers
    except NameError:
        _buffers = ss, ws = (hs.new_zeros(hs.shape[0], xs_dec.shape[1], hs.shape[-1]),
                             hs.new_zeros(hs.shape[0], xs_dec.shape[1], hs.shape[1]))
    ss, ws = ss.clone(), ws.clone()
    s = hs[:, -1]
    for j in range(xs_dec.shape[1]):
        alpha = attention_weights(score_fn(hs, s))
        s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
        ss[:, j], ws[:, j] = s, alpha
    return ss, ws
""", says="earlier call"),
    _decode("xs_dec transposed in place to loop over time", """
    xs_dec.transpose_(0, 1)
    s, ss, ws = hs[:, -1], [], []
    for x in xs_dec:
        alpha = attention_weights(score_fn(hs, s))
        s = attention_decoder_step(x, s, context_vector(alpha, hs), A_prime, b_prime)
        ss.append(s)
        ws.append(alpha)
    xs_dec.transpose_(0, 1)
    return torch.stack(ss, 1), torch.stack(ws, 1)
""", says="modified in place"),
    _decode("states preallocated with m rows instead of t", """
    B, m, d = hs.shape
    ss = hs.new_zeros(B, m, d)
    ws = hs.new_zeros(B, xs_dec.shape[1], m)
    s = hs[:, -1]
    for j in range(xs_dec.shape[1]):
        alpha = attention_weights(score_fn(hs, s))
        s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
        ss[:, j], ws[:, j] = s, alpha
    return ss, ws
""", says="one row per source position"),
    _decode("weights stacked along the last axis (batch, m, t)", """
    s, ss, ws = hs[:, -1], [], []
    for j in range(xs_dec.shape[1]):
        alpha = attention_weights(score_fn(hs, s))
        s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
        ss.append(s)
        ws.append(alpha)
    return torch.stack(ss, 1), torch.stack(ws, 2)
""", says="stacked along the wrong axis"),
    _decode("weights buffer torch.zeros(B, t, m) without dtype=", """
    B, m, d = hs.shape
    t = xs_dec.shape[1]
    ws = torch.zeros(B, t, m, device=hs.device)
    s, ss = hs[:, -1], []
    for j in range(t):
        alpha = attention_weights(score_fn(hs, s))
        s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
        ss.append(s)
        ws[:, j] = alpha
    return torch.stack(ss, 1), ws
""", says="keep the inputs' dtype"),
    _decode("squeeze() of the stacked outputs (batch 1 or t = 1 collapses)", """
    s, ss, ws = hs[:, -1], [], []
    for j in range(xs_dec.shape[1]):
        alpha = attention_weights(score_fn(hs, s))
        s = attention_decoder_step(xs_dec[:, j], s, context_vector(alpha, hs), A_prime, b_prime)
        ss.append(s)
        ws.append(alpha)
    return torch.stack(ss, 1).squeeze(), torch.stack(ws, 1).squeeze()
""", says="squeeze"),
    _decode("the state carried in float32, cast back at the end", """
    s, ss, ws = hs[:, -1].float(), [], []
    for j in range(xs_dec.shape[1]):
        alpha = attention_weights(score_fn(hs, s.to(hs.dtype)))
        c = context_vector(alpha, hs)
        s = torch.tanh(torch.cat([xs_dec[:, j].float(), s, c.float()], -1) @ A_prime.float().T + b_prime.float())
        ss.append(s.to(hs.dtype))
        ws.append(alpha)
    return torch.stack(ss, 1), torch.stack(ws, 1)
""", says="float32 precision"),
]

WRONG_ON_GPU += [
    _answer("dot_scores", "scores accumulated in torch.zeros(B, m, dtype=h.dtype) without device=", """
        def dot_scores(h, s, W_K, W_Q):
            K, q = h @ W_K.T, s @ W_Q.T
            out = torch.zeros(h.shape[0], h.shape[1], dtype=h.dtype)
            for i in range(h.shape[1]):
                out[:, i] = (K[:, i] * q).sum(-1)
            return out
        """, says="is on cpu"),
    _answer("attention_decoder_step", "bias folded in with torch.ones(B, 1, dtype=x.dtype) without device=", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            ones = torch.ones(x.shape[0], 1, dtype=x.dtype)
            z = torch.cat([x, s_prev, c_prev, ones], -1)
            return torch.tanh(z @ torch.cat([A_prime, b_prime[:, None]], 1).T)
        """, says="device"),
]

CORRECT += [
    _answer("additive_scores", "F.linear on the two blocks, then F.linear with v", """
        def additive_scores(h, s, W, v):
            d_h = h.shape[-1]
            pre = F.linear(h, W[:, :d_h]) + F.linear(s, W[:, d_h:]).unsqueeze(-2)
            return F.linear(torch.tanh(pre), v[None]).squeeze(-1)
        """),
    _answer("dot_scores", "F.bilinear with W_K^T W_Q", """
        def dot_scores(h, s, W_K, W_Q):
            M = (W_K.T @ W_Q)[None]                                 # (1, d_h, d_s)
            B, m, d_h = h.shape
            out = F.bilinear(h.reshape(B * m, d_h), s.repeat_interleave(m, 0), M)
            return out.reshape(B, m)
        """),
    _answer("attention_weights", "exp(s - max over the allowed positions), torch.where masks", """
        def attention_weights(scores, mask=None):
            if mask is None:
                mask = torch.ones_like(scores, dtype=torch.bool)
            low = torch.finfo(scores.dtype).min
            top = torch.where(mask, scores, low).amax(-1, keepdim=True)
            e = torch.where(mask, torch.exp(torch.where(mask, scores - top, 0.0)), 0.0)
            total = e.sum(-1, keepdim=True)
            return e / torch.where(total > 0, total, torch.ones_like(total))
        """),
    _answer("context_vector", "h transposed times alpha as a column", """
        def context_vector(alpha, h):
            return (h.transpose(1, 2) @ alpha.unsqueeze(-1)).squeeze(-1)
        """),
    _answer("attention_decoder_step", "nn.RNNCell through functional_call", """
        def attention_decoder_step(x, s_prev, c_prev, A_prime, b_prime):
            d_x, d_s = x.shape[-1], s_prev.shape[-1]
            inp = torch.cat([x, c_prev], -1)
            cell = nn.RNNCell(inp.shape[-1], d_s).to(device=x.device, dtype=x.dtype)
            params = {"weight_ih": torch.cat([A_prime[:, :d_x], A_prime[:, d_x + d_s:]], 1),
                      "weight_hh": A_prime[:, d_x:d_x + d_s], "bias_ih": b_prime,
                      "bias_hh": torch.zeros_like(b_prime)}
            return torch.func.functional_call(cell, params, (inp, s_prev))
        """),
    _decode("score_fn called with the contract's keywords, one list of rows", """
    s, rows = hs[:, -1], []
    for x in xs_dec.unbind(1):
        alpha = attention_weights(score_fn(h=hs, s=s))
        s = attention_decoder_step(x, s, context_vector(alpha, hs), A_prime, b_prime)
        rows.append((s, alpha))
    ss, ws = zip(*rows)
    return torch.stack(ss, 1), torch.stack(ws, 1)
"""),
]
