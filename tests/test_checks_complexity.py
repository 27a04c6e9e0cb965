"""Lesson 04's reference against PyTorch's and numpy's own answers, its checks against right and wrong
answers, and the timing helpers on a fake clock (no test here depends on wall-clock time)."""
import math
import re

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from autograder import paths, reference
from autograder.checks import complexity as checks
from autograder.checks.core import CheckFailed
from lessonkit import timing

matplotlib.use("Agg")
ref = reference.load("04_time_complexity")
FUNCTIONS = ("count_attention_weights", "count_rnn_steps", "count_self_attention_weights", "CountingScore",
             "loglog_slope")
SIZES = [(1, 1), (3, 8), (7, 4), (16, 5)]


# --- the reference against oracles nobody here wrote -----------------------------------------------

@pytest.mark.parametrize("m, t", SIZES)
def test_attention_weight_count_matches_multihead_attention(m, t):
    """Is count_attention_weights(m, t) the number of weights nn.MultiheadAttention returns for t queries
    over m keys, one sequence, one head?"""
    mha = nn.MultiheadAttention(embed_dim=6, num_heads=1, batch_first=True)
    _, weights = mha(torch.randn(1, t, 6), torch.randn(1, m, 6), torch.randn(1, m, 6), need_weights=True)
    assert ref.count_attention_weights(m, t) == weights.numel()


@pytest.mark.parametrize("m, t", SIZES)
def test_rnn_step_count_matches_nn_rnn(m, t):
    """Is count_rnn_steps(m, t) the number of states torch's nn.RNN produces encoding m tokens and then
    decoding t tokens from the encoder's last state?"""
    encoder, decoder = nn.RNN(3, 5, batch_first=True), nn.RNN(2, 5, batch_first=True)
    hs, h_m = encoder(torch.randn(1, m, 3))
    ss, _ = decoder(torch.randn(1, t, 2), h_m)
    assert ref.count_rnn_steps(m, t) == hs.shape[1] + ss.shape[1]


@pytest.mark.parametrize("m", [1, 2, 7, 30])
def test_self_attention_count_matches_causal_mask(m):
    """Is count_self_attention_weights(m) the number of positions nn.Transformer's causal mask allows
    (j <= i, the diagonal included)?"""
    allowed = nn.Transformer.generate_square_subsequent_mask(m) == 0
    assert ref.count_self_attention_weights(m) == int(allowed.sum())


@pytest.mark.parametrize("B, m, t", [(1, 6, 4), (1, 3, 9), (3, 5, 2)])
def test_counting_score_counts_m_t_on_lesson_02_decoder(B, m, t):
    """Wrapped around the score function of lesson 02's reference attention_decode, does CountingScore
    count m·t weights per sequence, as many as the decoder returns, and leave its result unchanged?"""
    if not paths.solution_path("02_bahdanau_attention").is_file():
        pytest.skip("lesson 02's source notebook is not here")
    l02 = reference.load("02_bahdanau_attention")
    g = torch.Generator().manual_seed(0)
    d, d_x = 4, 3
    hs = torch.tanh(torch.randn(B, m, d, generator=g, dtype=torch.float64))
    xs = torch.randn(B, t, d_x, generator=g, dtype=torch.float64)
    A, b = torch.randn(d, d_x + 2 * d, generator=g, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    W_K, W_Q = (torch.randn(5, d, generator=g, dtype=torch.float64) for _ in range(2))
    score = lambda h, s: l02.dot_scores(h, s, W_K, W_Q)     # noqa: E731
    counter = ref.CountingScore(score)
    ss, weights = l02.attention_decode(hs, xs, A, b, counter)
    assert counter.count == weights.numel() == B * ref.count_attention_weights(m, t)
    want_ss, _ = l02.attention_decode(hs, xs, A, b, score)
    assert torch.equal(ss, want_ss)


def test_loglog_slope_matches_numpy_polyfit():
    """On random positive points, is loglog_slope numpy's least-squares degree-1 fit in log-log space?"""
    rng = np.random.default_rng(0)
    for _ in range(5):
        sizes, times = rng.uniform(1, 1000, 9), rng.uniform(1e-4, 10, 9)
        want = np.polyfit(np.log(sizes), np.log(times), 1)[0]
        assert math.isclose(ref.loglog_slope(sizes, times), want, rel_tol=1e-10, abs_tol=1e-12)


@pytest.mark.parametrize("k", [0.0, 0.5, 1.0, 2.0, -1.3])
def test_loglog_slope_recovers_the_exponent_of_any_container(k):
    """Does loglog_slope return the exponent k of c·n^k, as a Python float, from lists, tuples, numpy
    arrays and tensors alike?"""
    sizes = [10, 20, 50, 100, 400]
    times = [3e-3 * n ** k for n in sizes]
    for make, tol in ((list, 1e-9), (tuple, 1e-9), (np.array, 1e-9), (torch.tensor, 1e-5)):   # float32 tensors
        got = ref.loglog_slope(make(sizes), make(times))
        assert type(got) is float and math.isclose(got, k, abs_tol=tol)


# --- the checks against right and wrong answers ----------------------------------------------------

@pytest.mark.parametrize("name", FUNCTIONS)
def test_checks_pass_the_reference(name, device):
    """Do the visible and hidden checks pass the reference itself, on every device?"""
    getattr(checks, f"quick_check_{name}")(getattr(ref, name))
    getattr(checks, f"check_{name}")(getattr(ref, name), device=device)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_visible_checks_need_no_solutions(name, monkeypatch):
    """Do the visible checks run for a student who has the package but not solutions/?"""
    def unavailable(lesson):
        raise reference.ReferenceUnavailable(lesson)
    monkeypatch.setattr(reference, "load", unavailable)
    getattr(checks, f"quick_check_{name}")(getattr(ref, name))


@pytest.mark.parametrize("name, wrong, says", [
    ("count_attention_weights", lambda m, t: (m + 1) * t, "m + 1 weights per decoder state"),
    ("count_rnn_steps", lambda m, t: m + t - 1, "one update too few"),
    ("count_self_attention_weights", lambda m: m * (m - 1) // 2, "does not attend to itself"),
    ("count_self_attention_weights", lambda m: m * (m + 1) / 2, "a float"),
])
def test_off_by_one_counts_are_named(name, wrong, says):
    """Does the hidden check of a count fail an off-by-one (or float) answer and say what it is?"""
    with pytest.raises(CheckFailed, match=re.escape(says)):
        getattr(checks, f"check_{name}")(wrong)


class CallCounter:
    """A wrong counter: one per call."""

    def __init__(self, score_fn):
        self.score_fn, self.count = score_fn, 0

    def __call__(self, h, s):
        self.count += 1
        return self.score_fn(h, s)


class SharedCounter:
    """A wrong counter: the count lives on the class."""
    count = 0

    def __init__(self, score_fn):
        self.score_fn = score_fn

    def __call__(self, h, s):
        scores = self.score_fn(h, s)
        SharedCounter.count += scores.numel()
        return scores


@pytest.mark.parametrize("wrong, says", [(CallCounter, "counts calls, not weights"),
                                         (SharedCounter, "shared between instances")])
def test_wrong_counters_fail(wrong, says):
    """Does check_CountingScore fail a counter of calls and a count shared between instances, naming them?"""
    with pytest.raises(CheckFailed, match=re.escape(says)):
        checks.check_CountingScore(wrong)


@pytest.mark.parametrize("wrong, says", [
    (lambda sizes, times: float(np.polyfit(sizes, times, 1)[0]), "a slope on linear axes"),
    (lambda sizes, times: float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float)), 1)[1]),
     "the intercept"),
    (lambda sizes, times: (math.log(float(times[-1]) / float(times[0])))
     / math.log(float(sizes[-1]) / float(sizes[0])), "only the first and last points"),
])
def test_wrong_slopes_fail(wrong, says):
    """Does check_loglog_slope fail a slope on linear axes, an intercept and a two-point slope, naming them?"""
    with pytest.raises(CheckFailed, match=re.escape(says)):
        checks.check_loglog_slope(wrong)


def test_slope_base_does_not_matter():
    """Does a slope computed with log10 on both axes (an equally right answer) pass both checks?"""
    def log10_slope(sizes, times):
        return float(np.polyfit(np.log10(np.asarray(sizes, float)), np.log10(np.asarray(times, float)), 1)[0])
    checks.quick_check_loglog_slope(log10_slope)
    checks.check_loglog_slope(log10_slope)


def test_unimplemented_counter_says_so():
    """Does a CountingScore still holding its stubs get a 'not implemented' message, not a crash?"""
    class Stub:
        def __init__(self, score_fn):
            raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not implemented yet"):
        checks.quick_check_CountingScore(Stub)


# --- the timing helpers, on a fake clock ------------------------------------------------------------

class FakeClock:
    """A clock that only moves when a fake workload says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_measure_returns_the_median_per_call():
    """Does timing.measure return, for each call, the median of its per-call times, whatever an outlier does?"""
    clock = FakeClock()
    durations = {"a": iter([0.02, 0.02, 0.03, 0.01, 0.02, 9.0, 0.02]), "b": iter([0.08] * 7)}

    def work(name):
        def call():
            clock.now += next(durations[name])
        return call

    got = timing.measure([work("a"), work("b")], repeats=5, clock=clock)
    assert got == pytest.approx([0.02, 0.08])


def test_measure_repeats_calls_too_short_to_time():
    """Is a call shorter than min_time run several times per measurement and its time divided?"""
    clock, calls = FakeClock(), []

    def tiny():
        calls.append(1)
        clock.now += 0.125

    got = timing.measure([tiny], repeats=3, min_time=0.5, clock=clock)
    assert got == pytest.approx([0.125])
    assert len(calls) == 2 + 3 * 4         # warm-up, calibration, then 3 rounds of 4


def test_sweep_times_power_law_work_to_its_exponent():
    """Timed on a fake clock, does work growing like n^2 give a log-log slope of 2 through timing.sweep?"""
    clock = FakeClock()

    def make(n):
        def call():
            clock.now += 1e-6 * n ** 2
        return call

    sizes = [8, 16, 32, 64]
    times = timing.sweep(make, sizes, repeats=3, clock=clock)
    assert ref.loglog_slope(sizes, times) == pytest.approx(2.0)


def test_plot_loglog_labels_each_curve_with_its_slope():
    """Does plot_loglog put each curve's slope, as the given slope function computes it, in the legend?"""
    sizes = [1, 2, 4, 8]
    ax, slopes = timing.plot_loglog(sizes, {"linear": [1, 2, 4, 8], "flat": [3, 3, 3, 3]}, ref.loglog_slope,
                                    xlabel="n", title="t")
    assert slopes == pytest.approx({"linear": 1.0, "flat": 0.0})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["linear: slope 1.00", "flat: slope 0.00"]
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_threads_restores_the_thread_count():
    """Does lessonkit's threads(1) run its block on one thread and restore PyTorch's thread count, even on error?"""
    from lessonkit.guards import threads
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    try:
        with threads(1):
            raise ValueError
    except ValueError:
        pass
    assert torch.get_num_threads() == before


# --- probes handed to the student's code are bounded ---------------------------------------------

def test_hostile_counter_cannot_make_the_probe_broadcast_into_gigabytes():
    """Does a counter that calls score_fn with h (1, 10**6, d) and s (10**6, d) fail fast with a CheckFailed
    naming the shapes, before the probe computes (and allocates) anything?"""
    class CountingScore:
        def __init__(self, score_fn):
            self.score_fn, self.count = score_fn, 0

        def __call__(self, h, s):
            n, d = 10**6, h.shape[-1]
            big_h = torch.empty(1, n, d, dtype=h.dtype).expand(1, n, d)     # views: nothing big yet
            big_s = torch.empty(1, s.shape[-1], dtype=s.dtype).expand(n, s.shape[-1])
            return self.score_fn(big_h, big_s)

    import tracemalloc
    tracemalloc.start()
    with pytest.raises(CheckFailed, match=r"shapes \(1, 1000000, \d+\) and \(1000000, \d+\)"):
        checks.check_CountingScore(CountingScore, device="cpu", seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20, f"the probe allocated {peak / 2**20:.0f} MiB"


def test_counter_calling_score_fn_without_end_is_stopped():
    """Does a counter that calls score_fn over and over (a loop over the batch, repeated) get stopped by the
    probe's call bound with a CheckFailed, rather than run on?"""
    class CountingScore:
        def __init__(self, score_fn):
            self.score_fn, self.count = score_fn, 0

        def __call__(self, h, s):
            for _ in range(10**6):
                scores = self.score_fn(h, s)
            self.count += scores.numel()
            return scores

    with pytest.raises(CheckFailed, match="more than 64 times"):
        checks.check_CountingScore(CountingScore, device="cpu", seed=0)


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 - 1])
@pytest.mark.parametrize("name", ["CountingScore", "loglog_slope", "count_self_attention_weights"])
def test_hidden_checks_pass_the_reference_for_every_seed(name, seed):
    """Does the reference pass the hidden check whatever seed the grader draws?"""
    getattr(checks, f"check_{name}")(getattr(ref, name), device="cpu", seed=seed)


# --- every catalog answer against exact arithmetic and numpy (issue 15) ----------------------------------

import numbers  # noqa: E402

_EXACT = {
    "count_attention_weights": (("m", "t"), lambda m, t: m * t,
                                [(1, 1), (1, 6), (9, 1), (6, 6), (37, 1500), (1999, 3), (2**62 + 1, 3)]),
    "count_rnn_steps": (("m", "t"), lambda m, t: m + t, [(1, 1), (1, 6), (9, 1), (6, 6), (37, 1500), (1999, 3)]),
    "count_self_attention_weights": (("m",), lambda m: m * (m + 1) // 2,
                                     [(1,), (2,), (3,), (37,), (1999,), (2**27 + 1,)]),
}


def _count_verdict(function, fn) -> str:
    """"" if `fn` returns the exact integer count (Python integer arithmetic) for every size, small and huge, by
    position and by keyword, after calls of other sizes; else what went wrong."""
    names, exact, sizes = _EXACT[function]
    for keywords in (False, True):
        for case in sizes:
            try:
                got = fn(**dict(zip(names, case))) if keywords else fn(*case)
            except Exception as e:
                if "allocate" in str(e):        # builds a tensor of that size: exact by construction
                    continue
                return f"{case}: raised {type(e).__name__}"
            if isinstance(got, bool) or not isinstance(got, numbers.Integral):
                return f"{case}: not an int ({type(got).__name__})"
            if int(got) != exact(*case):
                return f"{case}: {int(got)} instead of {exact(*case)}"
    return ""


class _Scores:
    """A score function: -|h_i - W s|^2; records the number of elements of every score tensor it returned."""

    def __init__(self, W):
        self.W, self.returned = W, []

    def __call__(self, h, s):
        scores = -((h - (s @ self.W.T)[:, None, :]) ** 2).sum(-1)
        self.returned.append(scores)
        return scores


def _counter_verdict(fn) -> str:
    """"" if the counter, built by position or keyword, returns score_fn's very scores (gradients included)
    and counts their elements over a decode (t steps over m positions: B·m·t by exact arithmetic); instances
    keep counts of their own; calls by keyword h=, s= pass through."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 4, generator=g, dtype=torch.float64)
    for B, m, t in [(1, 6, 4), (2, 3, 7), (3, 1, 1)]:
        for keywords in (False, True):
            score = _Scores(W)
            try:
                counter = fn(score_fn=score) if keywords else fn(score)
                other = fn(_Scores(W))
                hs = torch.tanh(torch.randn(B, m, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
                s = hs[:, -1]
                total = 0
                for j in range(t):
                    got = counter(h=hs, s=s) if j % 2 else counter(hs, s)
                    if got is not score.returned[-1] and not (isinstance(got, torch.Tensor)
                                                              and torch.equal(got, score.returned[-1])
                                                              and got.dtype == score.returned[-1].dtype
                                                              and got.device == score.returned[-1].device):
                        return "does not return score_fn's scores"
                    total = total + got.sum()
                    s = torch.tanh(s + (torch.softmax(got, -1)[:, :, None] * hs).sum(1))
                total.backward()
            except Exception as e:
                return f"B={B} m={m} t={t}: raised {type(e).__name__}"
            if hs.grad is None:
                return "no gradient through the counter"
            if not isinstance(counter.count, numbers.Integral) or isinstance(counter.count, bool):
                return f"the count is a {type(counter.count).__name__}, not an int"
            if len(score.returned) != t or counter.count != B * m * t or other.count != 0:
                return f"B={B} m={m} t={t}: count {counter.count} instead of {B * m * t}"
    return ""


def _slope_verdict(fn) -> str:
    """"" if the slope equals numpy.polyfit's on log-log axes (within 1e-6) for exact and noisy power laws given
    as lists, tuples, numpy arrays and tensors, in any order, by position and keyword, inputs unmodified."""
    g = torch.Generator().manual_seed(1)
    for sizes, k in [([16, 32, 64, 128, 256], 1.0), ([100, 3, 800, 20, 7, 260, 45], 2.0), ([1000, 300, 100, 30], 0.5)]:
        noise = torch.randn(len(sizes), generator=g, dtype=torch.float64).tolist()
        times = [0.01 * n ** k * math.exp(0.3 * e) for n, e in zip(sizes, noise)]
        want = np.polyfit(np.log(sizes), np.log(times), 1)[0]
        for make in (list, tuple, np.array, lambda x: torch.tensor(x, dtype=torch.float64)):
            for keywords in (False, True):
                a, b = make(sizes), make(times)
                plain = lambda x: np.array(x.tolist() if isinstance(x, torch.Tensor) else x)     # noqa: E731
                copies = [plain(a), plain(b)]
                try:
                    got = fn(sizes=a, times=b) if keywords else fn(a, b)
                except Exception as e:
                    return f"raised {type(e).__name__}"
                if not np.array_equal(plain(a), copies[0]) or not np.array_equal(plain(b), copies[1]):
                    return "modified an input"
                if isinstance(got, (torch.Tensor, np.ndarray)) or not isinstance(got, numbers.Real):
                    return f"not a float: {type(got).__name__}"
                if abs(float(got) - want) > 1e-6 * (1 + abs(want)):
                    return f"slope {float(got):.6g} instead of {want:.6g}"
    return ""


def _verdict(answer) -> str:
    from tests.test_mistakes import student_function
    fn = student_function(answer)
    if answer.function in _EXACT:
        return _count_verdict(answer.function, fn)
    if answer.function == "CountingScore":
        return _counter_verdict(fn)
    return _slope_verdict(fn)


def _catalog(kind):
    from tests.mistakes import lesson04
    return getattr(lesson04, kind, [])


@pytest.mark.parametrize("answer", _catalog("WRONG"), ids=lambda a: a.id)
def test_wrong_catalog_answer_is_wrong_by_the_oracle(answer):
    """Is each wrong answer of lesson 04 really wrong by exact integer arithmetic (counts), by the elements of the
    scores a decode computed (CountingScore) or by numpy.polyfit (slopes)?"""
    assert _verdict(answer)


@pytest.mark.parametrize("answer", _catalog("CORRECT"), ids=lambda a: a.id)
def test_correct_catalog_answer_is_right_by_the_oracle(answer):
    """Does each correct answer of lesson 04 agree with exact arithmetic and numpy.polyfit everywhere?"""
    assert _verdict(answer) == ""


def test_gpu_only_counter_is_wrong_only_off_the_cpu():
    """The counter that moves the scores to the CPU: right where the scores are on the CPU, and it returns a tensor
    on another device than score_fn's wherever they are not (the meta device stands in for a GPU)."""
    from tests.test_mistakes import student_function
    answer, = _catalog("WRONG_ON_GPU")
    fn = student_function(answer)
    assert _counter_verdict(fn) == ""
    counter = fn(_Scores(torch.zeros(4, 4, device="meta")))
    try:
        moved = counter(torch.zeros(2, 3, 4, device="meta"), torch.zeros(2, 4, device="meta")).device.type
    except NotImplementedError as e:           # .cpu() of a meta tensor: it would be copied off the device
        moved = "cpu" if "meta" in str(e) else str(e)
    assert moved == "cpu"
