"""Seed 003 replayed: Integrated Gradients on an AWD-LSTM sentiment classifier.

The seed explains a fast.ai AWD-LSTM: it hooks the right embedding layer (fast.ai's
embedding dropout wraps the real ``nn.Embedding``), wraps a model whose output is a tuple
(prediction, encoder states) and applies softmax, tries several baselines (zero
embeddings; <pad> / <bos> / <unk> sequences; several neutral sentences; a baseline equally
uncertain for every class), fixes long inputs that broke on the ``bptt`` setting, and draws
saliency chips and bar charts ("why?" and "why not?").

Here the model is an AWD-LSTM-shaped classifier (an embedding-dropout wrapper that calls
``F.embedding`` on the inner module's weight, as fast.ai's does, an LSTM run in ``bptt``
chunks, concat pooling, a tuple output) trained for a few seconds on built-in sentences.

Usage: ``python examples/seed_003_lstm_ig.py [--out DIR] [--smoke]``.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from whybox.attr import LayerIntegratedGradients  # noqa: E402
from whybox.methods import IntegratedGradients  # noqa: E402
from whybox.text import average_over_baselines, logits_of, token_baseline, uncertain_baseline  # noqa: E402
from whybox.viz import plot_top_tokens, text_html  # noqa: E402
from whybox.viz.html import page  # noqa: E402

SPECIALS = ["<unk>", "<pad>", "<bos>", "."]
UNK, PAD, BOS = 0, 1, 2
POSITIVE = ["great", "wonderful", "superb", "lovely", "brilliant", "enjoyable", "moving"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "weak", "tedious", "clumsy"]
NEUTRAL = "the film movie plot acting was is a and story music it this really quite very".split()
VOCAB = SPECIALS + NEUTRAL + POSITIVE + NEGATIVE
STOI = {w: i for i, w in enumerate(VOCAB)}
CLASSES = ["negative", "positive"]


def corpus(n: int, seed: int = 0) -> list[tuple[list[str], int]]:
    """Sentences of neutral words with one or two sentiment words; label = their majority."""
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.choices(NEUTRAL, k=rng.randint(5, 12))
        cue = rng.choice(POSITIVE if label else NEGATIVE)
        words.insert(rng.randrange(len(words) + 1), cue)
        if rng.random() < 0.3:  # a weaker cue of the other side
            other = rng.choice(NEGATIVE if label else POSITIVE)
            words.insert(rng.randrange(len(words) + 1), other)
            words.insert(rng.randrange(len(words) + 1), cue)
        data.append((["<bos>"] + words + ["."], label))
    return data


def numericalize(words: list[str]) -> torch.Tensor:
    return torch.tensor([[STOI.get(w, UNK) for w in words]])


class EmbeddingDropout(nn.Module):
    """fast.ai's embedding dropout: it holds the real embedding but never calls it."""

    def __init__(self, emb: nn.Embedding, p: float = 0.1) -> None:
        super().__init__()
        self.emb, self.p = emb, p

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        weight = self.emb.weight
        if self.training and self.p:
            keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - self.p) / (1 - self.p)
            weight = weight * keep
        return F.embedding(words, weight, self.emb.padding_idx)


class AWDLSTMClassifier(nn.Module):
    """Encoder (embedding dropout + LSTM, run ``bptt`` tokens at a time) + concat pooling."""

    def __init__(self, dim: int = 16, hidden: int = 24, bptt: int = 70) -> None:
        super().__init__()
        self.encoder = EmbeddingDropout(nn.Embedding(len(VOCAB), dim, padding_idx=PAD))
        self.rnn = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(3 * hidden, len(CLASSES))
        self.bptt = bptt

    def forward(self, ids: torch.Tensor):
        return self.forward_embedded(self.encoder(ids))

    def forward_embedded(self, embedded: torch.Tensor):
        outputs, state = [], None
        for start in range(0, embedded.shape[1], self.bptt):
            out, state = self.rnn(embedded[:, start : start + self.bptt], state)
            outputs.append(out)
        out = torch.cat(outputs, 1)
        pooled = torch.cat([out[:, -1], out.max(1).values, out.mean(1)], 1)
        return self.head(pooled), out  # like fast.ai: (prediction, encoder outputs)


def train(epochs: int, sentences: int = 400) -> AWDLSTMClassifier:
    torch.manual_seed(0)
    model = AWDLSTMClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = corpus(sentences)
    for _ in range(epochs):
        for words, label in data:
            logits, _ = model(numericalize(words))
            loss = F.cross_entropy(logits, torch.tensor([label]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/examples/seed_003", help="folder for the views")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI, a few seconds)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_steps = 16 if args.smoke else 200
    model = train(1, 60) if args.smoke else train(4)

    # 1. the prediction comes in a tuple, as probabilities after softmax: wrap the model
    forward = logits_of(model, transform=lambda z: torch.softmax(z, -1))
    words = "<bos> the acting was superb but the plot was really quite dull .".split()
    ids = numericalize(words)
    probs = forward(ids)[0]
    target = int(probs.argmax())
    print(f"prediction: {CLASSES[target]} ({probs[target]:.3f})")

    # 2. hook the right layer: the inner nn.Embedding never runs (the wrapper calls
    # F.embedding on its weight), so whybox refuses it instead of returning zeros
    try:
        LayerIntegratedGradients(forward, model.encoder.emb).attribute(ids, target=target)
    except (ValueError, RuntimeError) as error:
        print(f"model.encoder.emb: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
    lig = LayerIntegratedGradients(forward, model.encoder)  # the layer that runs

    # 3. baselines of several kinds
    rows = []
    for name, reference in (("<pad>", PAD), ("<bos>", BOS), ("<unk>", UNK)):
        baseline = token_baseline(ids, reference, keep_token_ids=(BOS,))
        attributions, delta = lig.attribute(
            ids, baseline, target=target, n_steps=n_steps, return_convergence_delta=True
        )
        rows.append((f"{name} tokens", attributions.sum(-1)[0], float(delta), baseline))

    def from_embeddings(embedded):
        return torch.softmax(model.forward_embedded(embedded)[0], -1)

    embedded = model.encoder(ids).detach()
    ig = IntegratedGradients(from_embeddings)
    zero = ig.attribute(embedded, target=target, n_steps=n_steps)  # zero embeddings
    rows.append(("zero embeddings", zero.attributions.sum(-1)[0], float(zero.delta[0]), None))
    neutral = [
        model.encoder(numericalize(s.split())).detach()
        for s in (
            "<bos> the film was a story and it is . .",
            "<bos> this movie is the plot and the music .",
            "<bos> it was the acting and the story really .",
        )
    ]
    neutral = [n[:, : ids.shape[1]] if n.shape[1] >= ids.shape[1] else n for n in neutral]
    neutral = [F.pad(n, (0, 0, 0, ids.shape[1] - n.shape[1])) for n in neutral]
    averaged = average_over_baselines(ig, embedded, neutral, target=target, n_steps=n_steps)
    rows.append(
        ("3 neutral sentences", averaged.attributions.sum(-1)[0], float(averaged.delta[0]), None)
    )
    uncertain = uncertain_baseline(
        lambda e: model.forward_embedded(e)[0], embedded.shape, steps=30 if args.smoke else 200
    )
    print("uncertain baseline probabilities:", from_embeddings(uncertain)[0].tolist())
    unsure = ig.attribute(embedded, baselines=uncertain, target=target, n_steps=n_steps)
    rows.append(("equally uncertain", unsure.attributions.sum(-1)[0], float(unsure.delta[0]), None))

    sections = []
    for name, scores, delta, _ in rows:
        print(f"baseline {name:<20} delta {delta:+.2e}")
        chips = text_html(scores, tokens=words, full_page=False)
        sections.append(f"<h2>baseline: {name} (delta {delta:+.1e})</h2>{chips}")

    # "why?" and "why not?": the same sentence explained for both classes
    for cls in (target, 1 - target):
        scores = lig.attribute(ids, token_baseline(ids, PAD, keep_token_ids=(BOS,)), target=cls)
        scores = scores.sum(-1)[0]
        scores = scores / scores.norm()  # normalised, as in the seed
        figure = plot_top_tokens(scores, tokens=words, k=8, title=f"why {CLASSES[cls]}?")
        figure.savefig(out / f"bars_{CLASSES[cls]}.png", bbox_inches="tight")

    # 4. long inputs: the bptt chunks are fine for whybox; the seed raised bptt above the
    # sentence length, which we do too so the LSTM sees the whole review at once
    long_words = ["<bos>"] + [w for s, _ in corpus(20 if args.smoke else 40, seed=3) for w in s[1:]]
    long_ids = numericalize(long_words)
    model.bptt = max(model.bptt, long_ids.shape[1])
    long = IntegratedGradients(forward, layer=model.encoder).attribute(
        long_ids,
        baselines=token_baseline(long_ids, PAD, keep_token_ids=(BOS,)),
        target=1,
        n_steps=n_steps,
        chunk_size=64,
    )
    print(f"long input: {long_ids.shape[1]} tokens, delta {float(long.delta[0]):+.2e}")
    sections.append(
        f"<h2>a long review ({long_ids.shape[1]} tokens), explaining 'positive'</h2>"
        + text_html(long.attributions.sum(-1)[0], tokens=long_words, full_page=False)
    )
    # one page: whybox's CSS once (each fragment carries a copy for notebooks)
    body = re.sub(r"<style>.*?</style>", "", "".join(sections), flags=re.S)
    (out / "saliency_chips.html").write_text(page(body, title="seed 003"), encoding="utf-8")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


if __name__ == "__main__":
    main()
