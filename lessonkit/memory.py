"""A small language with long-range memory: "The FBI ... is chasing a criminal on the run ."

Every sentence of this little grammar reads

    The <agent> <place>* is <verb> a <target> <prep> the <end> .

where each <place> is a phrase such as "near the river" (0 to several of them), the <verb> is any of a
few, the <target> is fixed by the <agent> (the FBI chases a criminal, the dog a cat, ...) and the
<prep> and <end> are fixed by the <target> (a criminal is "on the run", a cat "up the tree", ...).

So a language model that reads the sentence word by word must predict the <target> from the
<agent>, several words back and across any number of place phrases: the longer the sentence, the
longer it must remember. The lesson measures exactly that, the accuracy of predicting the <target>
against the number of place phrases, for a plain SimpleRNN and for a SimpleRNN with self-attention.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn
from . import guards
from .training import fit

# agent -> target -> (prep, end): the facts of the little world. No two targets share an ending word.
TARGET = {"FBI": "criminal", "police": "driver", "dog": "cat", "cat": "mouse", "teacher": "student",
          "farmer": "goat"}
ENDING = {"criminal": ("on", "run"), "driver": ("on", "road"), "cat": ("up", "tree"),
          "mouse": ("in", "house"), "student": ("in", "hall"), "goat": ("up", "hill")}
VERBS = ["chasing", "watching", "following", "calling"]        # any agent, any verb: no clue to the target
PLACE_PREPS = ["near", "by", "behind", "beyond"]
PLACES = ["river", "city", "park", "station", "bridge", "market", "harbor", "square"]

AGENTS = list(TARGET)
WORDS = (["The", "the", "a", "is", "."] + AGENTS + [t for t in ENDING if t not in TARGET] + VERBS
         + sorted({p for p, _ in ENDING.values()}) + [e for _, e in ENDING.values()] + PLACE_PREPS + PLACES)
WORDS = list(dict.fromkeys(WORDS))       # "cat" is an agent and a target: one word
INDEX = {w: i for i, w in enumerate(WORDS)}
VOCAB = len(WORDS)

FBI_SENTENCE = "The FBI is chasing a criminal on the run ."


def sentence(agent: str, verb: str, places: list[tuple[str, str]] = ()) -> str:
    """The sentence of the grammar with this agent, verb and place phrases [(prep, place), ...]."""
    target = TARGET[agent]
    prep, end = ENDING[target]
    middle = " ".join(f"{p} the {q}" for p, q in places)
    return " ".join(["The", agent] + ([middle] if middle else []) + ["is", verb, "a", target, prep, "the", end, "."])


def encode(text: str) -> torch.Tensor:
    """Word indices of a sentence, shape (m,)."""
    return torch.tensor([INDEX[w] for w in text.split()])


def decode(tokens) -> list[str]:
    return [WORDS[int(t)] for t in tokens]


def target_position(n_places: int) -> int:
    """Index of the word "a" in a sentence with n_places place phrases: the model's output there
    predicts the <target>."""
    return 2 + 3 * n_places + 2


def batch(batch_size: int, n_places: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`batch_size` random sentences with `n_places` place phrases each, as word indices (B, m),
    m = 10 + 3 * n_places. Agents, verbs and places are drawn uniformly and independently."""
    B, k = batch_size, n_places
    agent = torch.randint(len(AGENTS), (B,), generator=generator)
    verb = torch.randint(len(VERBS), (B,), generator=generator)
    prep = torch.randint(len(PLACE_PREPS), (B, k), generator=generator)
    place = torch.randint(len(PLACES), (B, k), generator=generator)
    word = lambda w: torch.full((B, 1), INDEX[w])                        # noqa: E731
    ids = lambda words, i: torch.tensor([INDEX[w] for w in words])[i]    # noqa: E731
    targets = [TARGET[a] for a in AGENTS]
    places = torch.stack([ids(PLACE_PREPS, prep), torch.full((B, k), INDEX["the"]), ids(PLACES, place)], -1)
    return torch.cat([
        word("The"), ids(AGENTS, agent)[:, None], places.reshape(B, 3 * k),          # The FBI near the river
        word("is"), ids(VERBS, verb)[:, None], word("a"),                             # is chasing a
        ids(targets, agent)[:, None], ids([ENDING[t][0] for t in targets], agent)[:, None],   # criminal on
        word("the"), ids([ENDING[t][1] for t in targets], agent)[:, None], word("."),  # the run .
    ], dim=1)


def train(model: nn.Module, *, steps: int = 500, places=(0, 4), batch_size: int = 32, lr: float = 1e-2,
          seed: int = 0, desc: str = "training") -> list[float]:
    """Train a language model `model(tokens (B, m)) -> logits (B, m, VOCAB)` to predict each next word.

    Each step draws a number of place phrases uniformly from `places` (inclusive). Adam with a linear
    decay of the learning rate, PyTorch on one thread (faster for tensors this small). Returns the loss
    of every step. With LESSONKIT_QUICK set (the test suite's smoke run) only a few steps are taken.
    """
    def batch_loss(g):
        n = int(torch.randint(places[0], places[1] + 1, (1,), generator=g))
        tokens = batch(batch_size, n, g)
        logits = model(tokens[:, :-1])                              # (B, m-1, V): predicts words 2..m
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))

    return fit(model, batch_loss, steps=steps, lr=lr, seed=seed, desc=desc)


@torch.no_grad()
def target_accuracy(model: nn.Module, places, *, n: int = 300, seed: int = 1234) -> dict[int, float]:
    """How often the model's most likely word after "a" is the agent's target, on `n` fresh
    sentences for each number of place phrases (the same test sentences for every model).
    Guessing gives about 1/6."""
    out = {}
    with guards.threads(1):
        for k in places:
            tokens = batch(n, k, torch.Generator().manual_seed(seed + k))
            i = target_position(k)
            logits = model(tokens[:, :i + 1])                           # (n, i+1, V)
            out[k] = (logits[:, i].argmax(-1) == tokens[:, i + 1]).float().mean().item()
    return out


def plot_accuracy(curves: dict[str, dict[int, float]], *, trained=(0, 4), ax=None):
    """One line per model: accuracy of the <target> word (y) against the number of place phrases (x)."""
    ax = ax or plt.subplots(figsize=(6.5, 3.5))[1]
    ax.axvspan(*trained, color="0.93", label="seen in training")
    for label, curve in curves.items():
        ax.plot(list(curve), list(curve.values()), marker="o", label=label)
    ax.axhline(1 / len(AGENTS), color="0.5", ls=":", label="guessing")
    ax.set(xlabel="place phrases between the agent and its target (3 words each)",
           ylabel="accuracy on the <target> word", ylim=(0, 1.05), title="Remembering the agent")
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_weights(weights, words: list[str], *, title: str = "Self-attention weights", ax=None):
    """Heatmap of one sentence's weights (m, m): row j is the distribution over the states h_i, i <= j,
    that built c_j (entry (j, i) is alpha_ij). Weights of at least 0.1 are written in their cell."""
    weights = torch.as_tensor(weights).detach().cpu()
    m = len(words)
    ax = ax or plt.subplots(figsize=(0.45 * m + 2, 0.45 * m + 1))[1]
    im = ax.imshow(weights, cmap="Blues", vmin=0, vmax=1)
    for j in range(m):                        # the query: row j builds c_j
        for i in range(j + 1):                # the attended states h_1..h_j
            if weights[j, i] >= 0.1:
                ax.text(i, j, f"{weights[j, i]:.1f}".lstrip("0"), ha="center", va="center", fontsize=7,
                        color="white" if weights[j, i] > 0.6 else "black")
    ax.set_xticks(range(m), words, rotation=60)
    ax.set_yticks(range(m), words)
    ax.set(xlabel="attended state $h_i$ (the word at position i)",
           ylabel="position j (its row builds $c_j$)", title=title)
    ax.figure.colorbar(im, ax=ax, fraction=0.04)
    return ax
