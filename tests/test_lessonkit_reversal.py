"""The reversal task's accuracies: teacher-forced (the true previous letters) and free-running (the
model's own greedy predictions fed back)."""
import torch
from torch import nn

from lessonkit import reversal

V = reversal.VOCAB


def _one_hot_logits(letters):
    """(B, t) letters -> (B, t, V) logits whose argmax is those letters."""
    return nn.functional.one_hot(letters, V).float()


class Perfect(nn.Module):
    """Writes the source reversed whatever it reads."""

    def forward(self, src, tgt_in):
        return _one_hot_logits(src.flip(1)[:, :tgt_in.shape[1]]), None


class SlipsOnce(nn.Module):
    """Right at every step whose input is right, except one slip at step `slip`; a wrong input makes
    every later step wrong (it writes the wrong letter whenever it has read one)."""

    def __init__(self, slip):
        super().__init__()
        self.slip = slip

    def forward(self, src, tgt_in):
        B, t = tgt_in.shape
        answer = src.flip(1)[:, :t]                                          # y_1..y_t
        expected_in = torch.cat([torch.full((B, 1), reversal.START), answer[:, :-1]], dim=1)
        read_right = (tgt_in == expected_in).long().cummin(dim=1).values.bool()   # every input so far right
        wrong = (answer + 1) % V
        letters = torch.where(read_right, answer, wrong)
        letters[:, self.slip:self.slip + 1] = wrong[:, self.slip:self.slip + 1]
        return _one_hot_logits(letters), None


class Counter(nn.Module):
    """Writes the letter after the one it read (START counts as -1): 0, 1, 2, ... when fed back."""

    def forward(self, src, tgt_in):
        return _one_hot_logits((tgt_in + 1) % (V + 1) % V), None


def test_a_perfect_model_scores_one_both_ways():
    """Does a model that always writes the answer get 1.0 teacher-forced and free-running?"""
    model = Perfect()
    lengths = [3, 8, 17]
    assert reversal.accuracy_by_length(model, lengths, n=16) == {m: 1.0 for m in lengths}
    assert reversal.accuracy_by_length(model, lengths, n=16, free_running=True) == {m: 1.0 for m in lengths}


def test_one_slip_costs_one_step_teacher_forced_but_compounds_free_running():
    """Does a mistake that teacher forcing repairs at the next step ruin every later step once the model
    reads its own predictions (exposure bias)?"""
    m, slip = 10, 2
    model = SlipsOnce(slip)
    tf = reversal.accuracy_by_length(model, [m], n=32)[m]
    fr = reversal.accuracy_by_length(model, [m], n=32, free_running=True)[m]
    assert abs(tf - (m - 1) / m) < 1e-6, tf               # only the slip is wrong
    assert abs(fr - slip / m) < 1e-6, fr                  # the steps before the slip, nothing after
    assert fr < tf


def test_greedy_decode_feeds_back_its_own_predictions():
    """Does greedy decoding read START first and then each letter it predicted, not the answer?"""
    src, tgt_in, tgt = reversal.batch(4, 7, torch.Generator().manual_seed(0))
    got = reversal.greedy_decode(Counter(), src)
    assert got.shape == (4, 7)
    assert torch.equal(got, torch.arange(7).expand(4, 7))                # 0, 1, ..., never the answer
    teacher_forced = Counter()(src, tgt_in)[0].argmax(-1)
    assert torch.equal(teacher_forced, (tgt_in + 1) % (V + 1) % V)       # reads the answer instead
    assert reversal.greedy_decode(Counter(), src, t=3).shape == (4, 3)


def test_free_running_accuracy_of_a_real_model():
    """Does the free-running accuracy run on lesson 02's baseline model (nn.RNN), give a share between 0
    and 1, and match a step-by-step decode written out by hand?"""
    torch.manual_seed(0)
    model = reversal.PlainSeq2Seq(d_emb=4, d_h=8).eval()
    src, _, _ = reversal.batch(5, 6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, s = model.encoder(model.embed_src(src))                      # (1, B, d_h): s_0 = h_m
        x, letters = torch.full((5, 1), reversal.START), []
        for _ in range(6):
            out, s = model.decoder(model.embed_tgt(x), s)                # one step, its own state carried
            x = model.out(out).argmax(-1)                                # (B, 1) its own prediction
            letters.append(x)
    assert torch.equal(reversal.greedy_decode(model, src), torch.cat(letters, dim=1))
    accuracy = reversal.accuracy_by_length(model, [4, 6], n=8, free_running=True)
    assert set(accuracy) == {4, 6} and all(0.0 <= a <= 1.0 for a in accuracy.values())


def test_the_accuracy_plot_draws_and_labels_both_ways():
    """Does the plot draw each model's teacher-forced curve solid and its free-running curve dashed, in
    the same colour, and say which is which in the legend?"""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lessonkit import plots

    tf = {"model A": {5: 1.0, 10: 0.9}, "model B": {5: 0.8, 10: 0.5}}
    fr = {"model A": {5: 1.0, 10: 0.7}, "model B": {5: 0.6, 10: 0.2}}
    ax = plots.plot_accuracy(tf, free_running=fr)
    lines = {line.get_label(): line for line in ax.get_lines()}
    for name in tf:
        solid, dashed = lines[f"{name}, teacher-forced"], lines[f"{name}, free-running (greedy)"]
        assert solid.get_linestyle() == "-" and dashed.get_linestyle() == "--"
        assert solid.get_color() == dashed.get_color()
        assert list(dashed.get_ydata()) == list(fr[name].values())
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "model B, free-running (greedy)" in legend and "model B, teacher-forced" in legend
    plt.close(ax.figure)


def _prefix_decode(model, src):
    """The plain way: t calls, each on the prefix of the model's own letters so far."""
    tgt_in = torch.full((src.shape[0], 1), reversal.START)
    for _ in range(src.shape[1] - 1):
        tgt_in = torch.cat([tgt_in, model(src, tgt_in)[0][:, -1:].argmax(-1)], dim=1)
    return model(src, tgt_in)[0].argmax(-1)


class CountsCalls(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, src, tgt_in):
        self.calls += 1
        return self.model(src, tgt_in)


def test_greedy_decode_equals_decoding_one_step_at_a_time():
    """Does the repeated-pass greedy decoding give exactly what t calls on growing prefixes give, for
    models whose mistakes cascade, in at most t + 1 passes?"""
    torch.manual_seed(0)
    src, _, _ = reversal.batch(16, 12, torch.Generator().manual_seed(5))
    for model in [SlipsOnce(3), Counter(), reversal.PlainSeq2Seq(d_emb=4, d_h=8).eval(), Perfect()]:
        counted = CountsCalls(model)
        with torch.no_grad():
            assert torch.equal(reversal.greedy_decode(counted, src), _prefix_decode(model, src)), model
        assert counted.calls <= src.shape[1] + 2
    counted = CountsCalls(Perfect())
    reversal.greedy_decode(counted, src)
    assert counted.calls <= 3, "a model without mistakes needs few passes"


def test_quick_mode_evaluates_a_few_examples(monkeypatch):
    """Does LESSONKIT_QUICK (the test suite's smoke run) shrink the test set, so evaluating stays quick?"""
    seen = []

    class Spy(Perfect):
        def forward(self, src, tgt_in):
            seen.append(src.shape[0])
            return super().forward(src, tgt_in)

    monkeypatch.setenv("LESSONKIT_QUICK", "1")
    reversal.accuracy_by_length(Spy(), [5], n=256, free_running=True)
    assert seen and max(seen) <= 16


def test_the_first_guess_changes_how_soon_never_what():
    """Does greedy decoding give the same letters whatever its first pass reads (nothing, the answer, or
    junk), so that the answer given as a first guess cannot leak into the free-running accuracy?"""
    torch.manual_seed(0)
    src, tgt_in, _ = reversal.batch(16, 12, torch.Generator().manual_seed(6))
    junk = torch.randint(0, V + 1, tgt_in.shape, generator=torch.Generator().manual_seed(7))
    for model in [SlipsOnce(3), Counter(), reversal.PlainSeq2Seq(d_emb=4, d_h=8).eval()]:
        want = _prefix_decode(model, src)
        for guess in [None, tgt_in, junk]:
            assert torch.equal(reversal.greedy_decode(model, src, first_guess=guess), want), (model, guess)
    counted = CountsCalls(SlipsOnce(3))
    reversal.greedy_decode(counted, src, first_guess=tgt_in)
    assert counted.calls <= 3, "the true letters as a first guess settle a model that slips once in a few passes"
