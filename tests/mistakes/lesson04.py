"""Lesson 04, time complexity: answers students write for the counts, CountingScore and loglog_slope.

WRONG answers must lose the points of their function (and, where `says` is set, be named in the
failure message); CORRECT answers, written in styles other than the reference's, must get full marks.
The first WRONG answer of each function is the one the slow tier puts in a real notebook, so it is
one the checks name.

Decisions recorded here: a count returned as a float (m * (m + 1) / 2) loses the points, since the
contract says int and the visible check says so too; so does a count that is exact only for small sizes:
numpy's int64 (np.prod([m, t])) wraps around past 2**63 and floats lose digits past 2**53, and the hidden
checks ask for counts that large (an answer that counts one by one over m, or builds an m x m tensor, was
a correct variant before and is replaced by one that counts per decoder state: it cannot reach them); a slope returned as a numpy float (np.polyfit's
np.float64, or np.float32) is a real scalar and passes, while a tensor or an array does not; the base
of the logarithm does not matter (log10, log2 and ln give the same slope) as long as both axes use it.
"""
from textwrap import dedent

from .catalog import Answer

LESSON = "04_time_complexity"


def _answer(function: str, name: str, source: str, says: str = "") -> Answer:
    return Answer(LESSON, function, name, dedent(source).strip() + "\n", says)


def _counter(name: str, init: str, call: str, says: str = "", extra: str = "") -> Answer:
    """A CountingScore class with the given bodies (each indented by 8 spaces once dedented)."""
    source = ("class CountingScore:\n" + extra
              + "    def __init__(self, score_fn):\n" + _indent(init)
              + "\n    def __call__(self, *args, **kwargs):\n" + _indent(call))
    return Answer(LESSON, "CountingScore", name, source, says)


def _indent(body: str) -> str:
    return "".join(f"        {line}\n" for line in dedent(body).strip().splitlines())


_INIT = """
    self.score_fn = score_fn
    self.count = 0
"""


WRONG = [
    # --- count_attention_weights -----------------------------------------------------------------
    _answer("count_attention_weights", "m + t, the plain Seq2Seq count", """
        def count_attention_weights(m, t):
            return m + t
        """, says="m + t, the number of state updates"),
    _answer("count_attention_weights", "m + 1 weights per state", """
        def count_attention_weights(m, t):
            return (m + 1) * t
        """, says="m + 1 weights per decoder state"),
    _answer("count_attention_weights", "one context vector per state s_0..s_t", """
        def count_attention_weights(m, t):
            return m * (t + 1)
        """, says="t + 1 context vectors"),
    _answer("count_attention_weights", "m squared", """
        def count_attention_weights(m, t):
            return m ** 2
        """, says="the count depends on the target length t too"),
    _answer("count_attention_weights", "returned as a float", """
        def count_attention_weights(m, t):
            return float(m * t)
        """, says="a float"),

    # --- count_rnn_steps -------------------------------------------------------------------------
    _answer("count_rnn_steps", "one update too few", """
        def count_rnn_steps(m, t):
            return m + t - 1
        """, says="one update too few"),
    _answer("count_rnn_steps", "h_0 counted", """
        def count_rnn_steps(m, t):
            return (m + 1) + t
        """, says="one update too many"),
    _answer("count_rnn_steps", "m·t", """
        def count_rnn_steps(m, t):
            return m * t
        """, says="the number of attention weights"),
    _answer("count_rnn_steps", "decoder only", """
        def count_rnn_steps(m, t):
            return t
        """, says="only the decoder's t updates"),
    _answer("count_rnn_steps", "max(m, t)", """
        def count_rnn_steps(m, t):
            return max(m, t)
        """, says="max(m, t)"),
    _answer("count_rnn_steps", "h_0 and s_0 both counted, in a loop", """
        def count_rnn_steps(m, t):
            steps = 0
            for i in range(m + 1):      # h_0..h_m
                steps += 1
            for j in range(t + 1):      # s_0..s_t
                steps += 1
            return steps
        """, says="two updates too many"),

    # --- count_self_attention_weights ------------------------------------------------------------
    _answer("count_self_attention_weights", "diagonal left out, m(m-1)/2", """
        def count_self_attention_weights(m):
            return m * (m - 1) // 2
        """, says="a position that does not attend to itself"),
    _answer("count_self_attention_weights", "halved with /", """
        def count_self_attention_weights(m):
            return m * (m + 1) / 2
        """, says="a float"),
    _answer("count_self_attention_weights", "full square", """
        def count_self_attention_weights(m):
            return m * m
        """, says="every state attending to all m positions"),
    _answer("count_self_attention_weights", "no halving", """
        def count_self_attention_weights(m):
            return m * (m + 1)
        """, says="without the halving"),
    _answer("count_self_attention_weights", "sum(range(m)) skips the diagonal", """
        def count_self_attention_weights(m):
            return sum(range(m))        # 0 + 1 + ... + (m - 1)
        """, says="a position that does not attend to itself"),
    _answer("count_self_attention_weights", "a tensor from tril", """
        def count_self_attention_weights(m):
            return torch.tril(torch.ones(m, m, dtype=torch.long)).sum()
        """, says="returned a tensor"),
    _answer("count_self_attention_weights", "c_1 = h_1 not counted", """
        def count_self_attention_weights(m):
            return sum(i for i in range(2, m + 1))
        """, says="the first state left out"),

    # --- CountingScore ---------------------------------------------------------------------------
    _counter("keyword arguments dropped", _INIT, """
        scores = self.score_fn(*args)
        self.count += math.prod(scores.shape)
        return scores
        """, says="pass *args and **kwargs through"),
    _counter("arguments swapped on the way to score_fn", _INIT, """
        h, s = args
        scores = self.score_fn(s, h)
        self.count += scores.numel()
        return scores
        """, says="pass the arguments through unchanged"),
    _counter("counts calls", _INIT, """
        self.count += 1
        return self.score_fn(*args, **kwargs)
        """, says="counts calls, not weights"),
    _counter("counts only the first call", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        if self.count == 0:
            self.count = scores.numel()
        return scores
        """, says="only the first call was counted"),
    _counter("count replaced, not added", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count = scores.numel()
        return scores
        """, says="replaced at every call"),
    _counter("m per call, batch ignored", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count += scores.shape[-1]
        return scores
        """, says="ignoring the batch"),
    _counter("one per sequence (len)", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count += len(scores)
        return scores
        """, says="one per sequence of the batch"),
    _counter("elements of h counted", _INIT, """
        h = args[0]
        self.count += h.numel()
        return self.score_fn(*args, **kwargs)
        """, says="the elements of h"),
    _counter("result not returned", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count += scores.numel()
        """, says="returned None"),
    _counter("returns the softmax weights", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count += scores.numel()
        return torch.softmax(scores, dim=-1)
        """, says="return exactly what score_fn returned"),
    _counter("detached scores", _INIT, """
        scores = self.score_fn(*args, **kwargs).detach()
        self.count += scores.numel()
        return scores
        """, says="carry no gradient"),
    _counter("class-level count shared between instances", """
        self.score_fn = score_fn
        """, """
        scores = self.score_fn(*args, **kwargs)
        CountingScore.count += scores.numel()
        return scores
        """, says="shared between instances", extra="    count = 0\n\n"),
    _counter("score_fn called twice", _INIT, """
        self.count += self.score_fn(*args, **kwargs).numel()
        return self.score_fn(*args, **kwargs)
        """, says="called score_fn 2 times"),
    _counter("count kept as a tensor", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count += torch.tensor(scores.shape).prod()
        return scores
        """, says="is a tensor"),
    _counter("count starts at 1", """
        self.score_fn = score_fn
        self.count = 1
        """, """
        scores = self.score_fn(*args, **kwargs)
        self.count += scores.numel()
        return scores
        """, says="should start at .count = 0"),

    # --- loglog_slope ----------------------------------------------------------------------------
    _answer("loglog_slope", "slope on linear axes", """
        def loglog_slope(sizes, times):
            return float(np.polyfit(np.asarray(sizes, dtype=float), np.asarray(times, dtype=float), 1)[0])
        """, says="a slope on linear axes"),
    _answer("loglog_slope", "log of the times against the sizes", """
        def loglog_slope(sizes, times):
            x, y = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
            return float(np.polyfit(x, np.log(y), 1)[0])
        """, says="semi-log"),
    _answer("loglog_slope", "times against log sizes", """
        def loglog_slope(sizes, times):
            x, y = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
            return float(np.polyfit(np.log(x), y, 1)[0])
        """, says="the times (not their logs)"),
    _answer("loglog_slope", "the intercept", """
        def loglog_slope(sizes, times):
            x, y = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
            return float(np.polyfit(np.log(x), np.log(y), 1)[1])
        """, says="the intercept"),
    _answer("loglog_slope", "axes swapped", """
        def loglog_slope(sizes, times):
            x, y = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
            return float(np.polyfit(np.log(y), np.log(x), 1)[0])
        """, says="the axes are swapped"),
    _answer("loglog_slope", "first and last points only", """
        def loglog_slope(sizes, times):
            return (math.log(float(times[-1])) - math.log(float(times[0]))) / \\
                (math.log(float(sizes[-1])) - math.log(float(sizes[0])))
        """, says="only the first and last points"),
    _answer("loglog_slope", "mean of neighbouring slopes", """
        def loglog_slope(sizes, times):
            x = np.log(np.asarray(sizes, dtype=float))
            y = np.log(np.asarray(times, dtype=float))
            return float(np.mean(np.diff(y) / np.diff(x)))
        """, says="the mean of the slopes between neighbouring points"),
    _answer("loglog_slope", "log10 of the times, ln of the sizes", """
        def loglog_slope(sizes, times):
            x, y = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
            return float(np.polyfit(np.log(x), np.log10(y), 1)[0])
        """, says="different bases"),
    _answer("loglog_slope", "returns a tensor", """
        def loglog_slope(sizes, times):
            x = torch.log(torch.as_tensor(sizes, dtype=torch.float64))
            y = torch.log(torch.as_tensor(times, dtype=torch.float64))
            x, y = x - x.mean(), y - y.mean()
            return (x * y).sum() / (x * x).sum()
        """, says="returned a torch.Tensor"),
    _answer("loglog_slope", "returns polyfit's whole array", """
        def loglog_slope(sizes, times):
            x, y = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
            return np.polyfit(np.log(x), np.log(y), 1)
        """, says="returned a numpy array"),
    _answer("loglog_slope", "tensors only: lists not accepted", """
        def loglog_slope(sizes, times):
            x, y = torch.log(sizes.double()), torch.log(times.double())
            x, y = x - x.mean(), y - y.mean()
            return float((x * y).sum() / (x * x).sum())
        """, says="with lists"),
]

CORRECT = [
    # --- count_attention_weights -----------------------------------------------------------------
    _answer("count_attention_weights", "a loop over the decoder states, m weights each", """
        def count_attention_weights(m, t):
            weights = 0
            for j in range(t):          # context vectors c_0..c_{t-1}, each from alpha_1j..alpha_mj
                weights += m
            return weights
        """),
    _answer("count_attention_weights", "numpy product as Python ints (object dtype)", """
        def count_attention_weights(m, t):
            return np.prod(np.array([m, t], dtype=object))
        """),

    # --- count_rnn_steps -------------------------------------------------------------------------
    _answer("count_rnn_steps", "lengths of the state ranges", """
        def count_rnn_steps(m, t):
            encoder = range(1, m + 1)   # h_1..h_m
            decoder = range(1, t + 1)   # s_1..s_t
            return len(encoder) + len(decoder)
        """),
    _answer("count_rnn_steps", "sum of ones", """
        def count_rnn_steps(m, t):
            return sum(1 for _ in range(m)) + sum(1 for _ in range(t))
        """),

    # --- count_self_attention_weights ------------------------------------------------------------
    _answer("count_self_attention_weights", "math.comb", """
        def count_self_attention_weights(m):
            return math.comb(m + 1, 2)
        """),
    _answer("count_self_attention_weights", "explicit sum over states", """
        def count_self_attention_weights(m):
            return sum(i for i in range(1, m + 1))     # h_i attends to h_1..h_i
        """),
    _answer("count_self_attention_weights", "ones of a causal mask, as an int", """
        def count_self_attention_weights(m):
            return int(torch.tril(torch.ones(m, m, dtype=torch.bool)).sum())
        """),

    # --- CountingScore ---------------------------------------------------------------------------
    _answer("CountingScore", "a closure with a function attribute", """
        def CountingScore(score_fn):
            def counted(*args, **kwargs):
                scores = score_fn(*args, **kwargs)
                counted.count += scores.numel()
                return scores
            counted.count = 0
            return counted
        """),
    _counter("explicit *args, **kwargs and a product of the shape", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count += math.prod(scores.shape)
        return scores
        """),
    _answer("CountingScore", "class attribute default, instance += ", """
        class CountingScore:
            count = 0                   # shadowed by the instance's own count at the first +=

            def __init__(self, score_fn):
                self.score_fn = score_fn

            def __call__(self, h, s):
                scores = self.score_fn(h, s)
                self.count += scores.shape[0] * scores.shape[1]
                return scores
        """),

    # --- loglog_slope ----------------------------------------------------------------------------
    _answer("loglog_slope", "np.polyfit (returns a numpy float64)", """
        def loglog_slope(sizes, times):
            x = np.log(np.asarray(sizes, dtype=np.float64))
            y = np.log(np.asarray(times, dtype=np.float64))
            return np.polyfit(x, y, 1)[0]
        """),
    _answer("loglog_slope", "log10 on both axes", """
        def loglog_slope(sizes, times):
            x = np.log10(np.asarray(sizes, dtype=float))
            y = np.log10(np.asarray(times, dtype=float))
            return float(np.polyfit(x, y, 1)[0])
        """),
    _answer("loglog_slope", "explicit loops with math.log2", """
        def loglog_slope(sizes, times):
            xs = [math.log2(float(n)) for n in sizes]
            ys = [math.log2(float(v)) for v in times]
            x_bar, y_bar = sum(xs) / len(xs), sum(ys) / len(ys)
            num = sum((x - x_bar) * (y - y_bar) for x, y in zip(xs, ys))
            den = sum((x - x_bar) ** 2 for x in xs)
            return num / den
        """),
    _answer("loglog_slope", "np.linalg.lstsq with an intercept column", """
        def loglog_slope(sizes, times):
            x = np.log(np.asarray(sizes, dtype=float))
            y = np.log(np.asarray(times, dtype=float))
            A = np.stack([x, np.ones_like(x)], axis=1)
            (slope, _), *_ = np.linalg.lstsq(A, y, rcond=None)
            return float(slope)
        """),
    _answer("loglog_slope", "torch in float32, .item()", """
        def loglog_slope(sizes, times):
            x = torch.log(torch.as_tensor(sizes).float())
            y = torch.log(torch.as_tensor(times).float())
            cov = ((x - x.mean()) * (y - y.mean())).mean()
            return (cov / x.var(unbiased=False)).item()
        """),
]


# --- the edges of the contract (issue 15): calling, input, numerical and type families ----------------
# Counts are proven wrong (or right) in tests/test_checks_complexity.py by exact integer arithmetic (and
# nn.MultiheadAttention's weights, nn.RNN's states, a causal mask's ones on small sizes); CountingScore by the
# number of elements of the scores a decode through it really computed; loglog_slope by numpy.polyfit.

WRONG += [
    # count_attention_weights
    _answer("count_attention_weights", "numpy product: int64 overflows past 2**63", """
        def count_attention_weights(m, t):
            return np.prod([m, t])
        """, says="overflowed a 64-bit integer"),
    _answer("count_attention_weights", "a torch integer product", """
        def count_attention_weights(m, t):
            return int(torch.tensor(m) * t)
        """, says="overflowed a 64-bit integer"),
    _answer("count_attention_weights", "through floats to be safe: int(float(m) * t)", """
        def count_attention_weights(m, t):
            return int(float(m) * t)
        """, says="went through floats"),
    _answer("count_attention_weights", "parameters named (src_len, tgt_len)", """
        def count_attention_weights(src_len, tgt_len):
            return src_len * tgt_len
        """, says="parameter names of the contract"),
    _answer("count_attention_weights", "a cache keyed on m only", """
        _cache = {}
        def count_attention_weights(m, t):
            if m not in _cache:
                _cache[m] = m * t
            return _cache[m]
        """, says="the count of an earlier call"),
    _answer("count_attention_weights", "numpy float64 product", """
        def count_attention_weights(m, t):
            return int(np.multiply(m, t, dtype=np.float64))
        """, says="went through floats"),

    # count_rnn_steps
    _answer("count_rnn_steps", "parameters named (source_length, target_length)", """
        def count_rnn_steps(source_length, target_length):
            return source_length + target_length
        """, says="parameter names of the contract"),
    _answer("count_rnn_steps", "a cache keyed on t only", """
        _steps = {}
        def count_rnn_steps(m, t):
            return _steps.setdefault(t, m + t)
        """, says="the count of an earlier call"),
    _answer("count_rnn_steps", "keyword-only lengths (*, m, t)", """
        def count_rnn_steps(*, m, t):
            return m + t
        """, says="by position"),

    # count_self_attention_weights
    _answer("count_self_attention_weights", "int(m * (m + 1) / 2): exact only to 2**53", """
        def count_self_attention_weights(m):
            return int(m * (m + 1) / 2)
        """, says="went through floats"),
    _answer("count_self_attention_weights", "round(0.5 * m * (m + 1))", """
        def count_self_attention_weights(m):
            return round(0.5 * m * (m + 1))
        """, says="went through floats"),
    _answer("count_self_attention_weights", "a torch scalar halved with /", """
        def count_self_attention_weights(m):
            return int(torch.tensor(m) * (m + 1) / 2)
        """, says="went through floats"),
    _answer("count_self_attention_weights", "math.comb(m + 1, 2) through float", """
        def count_self_attention_weights(m):
            return int(float(math.comb(m + 1, 2)))
        """, says="went through floats"),
    _answer("count_self_attention_weights", "the parameter named n", """
        def count_self_attention_weights(n):
            return n * (n + 1) // 2
        """, says="parameter names of the contract"),

    # CountingScore
    _answer("CountingScore", "__call__'s parameters named (keys, query)", """
        class CountingScore:
            def __init__(self, score_fn):
                self.score_fn, self.count = score_fn, 0

            def __call__(self, keys, query):
                scores = self.score_fn(keys, query)
                self.count += scores.numel()
                return scores
        """, says="keywords"),
    _answer("CountingScore", "__init__'s parameter named fn", """
        class CountingScore:
            def __init__(self, fn):
                self.fn, self.count = fn, 0

            def __call__(self, *args, **kwargs):
                scores = self.fn(*args, **kwargs)
                self.count += scores.numel()
                return scores
        """, says="parameter name of the contract"),
    _counter("scores cast to float32 before they are returned", _INIT, """
        scores = self.score_fn(*args, **kwargs).float()
        self.count += scores.numel()
        return scores
        """, says="exactly what score_fn returned"),
    _counter("count of the last dimension times the calls", _INIT + "    self.calls = 0\n", """
        scores = self.score_fn(*args, **kwargs)
        self.calls += 1
        self.count = self.calls * scores.shape[-1]
        return scores
        """, says="the number of calls"),

    # loglog_slope
    _answer("loglog_slope", "parameters named (n, t)", """
        def loglog_slope(n, t):
            return float(np.polyfit(np.log(np.asarray(n, dtype=float)), np.log(np.asarray(t, dtype=float)), 1)[0])
        """, says="parameter names of the contract"),
    _answer("loglog_slope", "sizes sorted without their times", """
        def loglog_slope(sizes, times):
            x = np.log(np.sort(np.asarray(sizes, dtype=float)))
            y = np.log(np.asarray(times, dtype=float))
            return float(np.polyfit(x, y, 1)[0])
        """, says="sorted without their times"),
    _answer("loglog_slope", "times sorted in place with the sizes left as they are", """
        def loglog_slope(sizes, times):
            if isinstance(times, list):
                times.sort()
            x = np.log(np.asarray(sizes, dtype=float))
            y = np.log(np.sort(np.asarray(times, dtype=float)))
            return float(np.polyfit(x, y, 1)[0])
        """, says="sorted without their times"),
    _answer("loglog_slope", "np.log with out= overwrites the times", """
        def loglog_slope(sizes, times):
            x = np.log(np.asarray(sizes, dtype=float))
            y = np.asarray(times, dtype=float)
            np.log(y, out=y)
            return float(np.polyfit(x, y, 1)[0])
        """, says="modified in place"),
    _answer("loglog_slope", "float16 logs", """
        def loglog_slope(sizes, times):
            x = np.log(np.asarray(sizes, dtype=np.float16))
            y = np.log(np.asarray(times, dtype=np.float16))
            return float(np.polyfit(x.astype(float), y.astype(float), 1)[0])
        """),
]

CORRECT += [
    _answer("count_attention_weights", "operator.mul", """
        def count_attention_weights(m, t):
            import operator
            return operator.mul(m, t)
        """),
    _answer("count_self_attention_weights", "a shift instead of // 2", """
        def count_self_attention_weights(m):
            return (m * (m + 1)) >> 1
        """),
    _answer("count_rnn_steps", "sum of the two lengths with keywords", """
        def count_rnn_steps(m, t):
            return sum((m, t))
        """),
    _counter("np.prod of the shape (a numpy integer)", _INIT, """
        scores = self.score_fn(*args, **kwargs)
        self.count += int(np.prod(scores.shape))
        return scores
        """),
    _answer("loglog_slope", "covariance over variance with np.cov", """
        def loglog_slope(sizes, times):
            x = np.log(np.asarray(sizes, dtype=float))
            y = np.log(np.asarray(times, dtype=float))
            c = np.cov(x, y)
            return float(c[0, 1] / c[0, 0])
        """),
]

# Wrong only on a GPU: on a CPU, .cpu() hands back the scores' own device.
WRONG_ON_GPU = [
    _counter("scores moved to the CPU before they are returned", _INIT, """
        scores = self.score_fn(*args, **kwargs).cpu().clone()
        self.count += scores.numel()
        return scores
        """, says="exactly what score_fn returned"),
]
