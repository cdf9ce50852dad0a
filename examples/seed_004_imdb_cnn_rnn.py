"""Seed 004 replayed: IMDB-style sentiment with a CNN and a packed bidirectional LSTM.

The seed trains a bidirectional LSTM over packed sequences and a CNN over GloVe
embeddings on IMDB, then explains sentences with ``LayerIntegratedGradients(model,
model.embedding)``, a ``TokenReferenceBase(reference_token_idx=PAD_IND)`` baseline,
``n_steps=5000``, the convergence delta and a sigmoid-wrapped forward, shown with
``VisualizationDataRecord`` + ``visualize_text``.

Here both models are trained for a few seconds on built-in review sentences, with local
random vectors standing in for GloVe (copied into the embedding as the seed does), and the
seed's six sentences are explained with only the imports changed.

Usage: ``python examples/seed_004_imdb_cnn_rnn.py [--out DIR] [--smoke]``.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from whybox.attr import LayerIntegratedGradients, TokenReferenceBase, visualization

PAD_IND = 1
POSITIVE = "fantastic best great good wonderful superb enjoyed loved brilliant".split()
NEGATIVE = "horrible bad disgusting awful worst boring terrible hated never".split()
FILLER = (
    "it was a the film movie show performance this is such i've watched ever something as".split()
)
VOCAB = ["<unk>", "pad", "!", "."] + sorted(set(FILLER + POSITIVE + NEGATIVE))
STOI = {w: i for i, w in enumerate(VOCAB)}
SENTENCES = [
    ("It was a fantastic performance !", 1),
    ("Best film ever", 1),
    ("Such a great show!", 1),
    ("It was a horrible movie", 0),
    ("I've never watched something as bad", 0),
    ("It is a disgusting movie!", 0),
]


def tokenize(sentence: str) -> list[str]:
    """spaCy's tokenizer for these sentences: words, with '!' and '.' split off."""
    return re.findall(r"[\w']+|[!.]", sentence.lower())


def corpus(n: int, seed: int = 0) -> list[tuple[list[str], int]]:
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=rng.randint(3, 9))
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        data.append((words + rng.choice([[], ["!"], ["."]]), label))
    return data


class CNN(nn.Module):
    def __init__(self, vocab_size, embedding_dim, n_filters, filter_sizes, output_dim, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_IND)
        self.convs = nn.ModuleList(
            [nn.Conv2d(1, n_filters, (fs, embedding_dim)) for fs in filter_sizes]
        )
        self.fc = nn.Linear(len(filter_sizes) * n_filters, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text):
        embedded = self.embedding(text).unsqueeze(1)
        conved = [F.relu(conv(embedded)).squeeze(3) for conv in self.convs]
        pooled = [F.max_pool1d(conv, conv.shape[2]).squeeze(2) for conv in conved]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


class RNN(nn.Module):
    def __init__(self, vocab_size, embedding_dim, hidden_dim, output_dim, n_layers, dropout):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_IND)
        self.rnn = nn.LSTM(
            embedding_dim,
            hidden_dim,
            num_layers=n_layers,
            bidirectional=True,
            dropout=dropout,
            batch_first=True,
        )
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text, text_lengths):
        embedded = self.dropout(self.embedding(text))
        packed = nn.utils.rnn.pack_padded_sequence(
            embedded, text_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (hidden, _) = self.rnn(packed)
        hidden = self.dropout(torch.cat((hidden[-2], hidden[-1]), dim=1))
        return self.fc(hidden)


def batches(data, size, min_len):
    for start in range(0, len(data), size):
        chunk = data[start : start + size]
        length = max(min_len, max(len(w) for w, _ in chunk))
        ids = torch.full((len(chunk), length), PAD_IND)
        for row, (words, _) in enumerate(chunk):
            ids[row, : len(words)] = torch.tensor([STOI[w] for w in words])
        lengths = torch.tensor([len(w) for w, _ in chunk])
        yield ids, lengths, torch.tensor([float(y) for _, y in chunk])


def train(model: nn.Module, epochs: int, packed: bool) -> nn.Module:
    data = corpus(600)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        for ids, lengths, labels in batches(data, 32, min_len=5):
            logits = (model(ids, lengths) if packed else model(ids)).squeeze(1)
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/examples/seed_004", help="folder for the views")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI, a few seconds)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs, n_steps = (1, 50) if args.smoke else (8, 5000)

    torch.manual_seed(0)
    glove = torch.randn(len(VOCAB), 50)  # stands in for TEXT.vocab.vectors (GloVe 6B 50d)
    cnn_model = CNN(len(VOCAB), 50, 16, [3, 4, 5], 1, 0.5)
    cnn_model.embedding.weight.data.copy_(glove)
    cnn_model.embedding.weight.data[PAD_IND] = 0
    cnn_model = train(cnn_model, epochs, packed=False)

    def forward_with_sigmoid(input):
        return torch.sigmoid(cnn_model(input))

    token_reference = TokenReferenceBase(reference_token_idx=PAD_IND)
    lig = LayerIntegratedGradients(cnn_model, cnn_model.embedding)
    vis_data_records_ig = []

    def interpret_sentence(model, sentence, min_len=7, label=0):
        text = tokenize(sentence)
        if len(text) < min_len:
            text += ["pad"] * (min_len - len(text))
        indexed = [STOI.get(t, 0) for t in text]
        model.zero_grad()
        input_indices = torch.tensor(indexed).unsqueeze(0)
        seq_length = len(indexed)
        # predict
        pred = forward_with_sigmoid(input_indices).item()
        pred_ind = round(pred)
        # generate reference indices for each sample
        reference_indices = token_reference.generate_reference(seq_length, device="cpu")
        reference_indices = reference_indices.unsqueeze(0)
        # compute attributions and approximation delta using layer integrated gradients
        attributions_ig, delta = lig.attribute(
            input_indices, reference_indices, n_steps=n_steps, return_convergence_delta=True
        )
        print("pred:", ["neg", "pos"][pred_ind], f"({pred:.2f})", ", delta:", abs(delta.item()))
        add_attributions_to_visualizer(attributions_ig, text, pred, pred_ind, label, delta)

    def add_attributions_to_visualizer(attributions, text, pred, pred_ind, label, delta):
        attributions = attributions.sum(dim=2).squeeze(0)
        attributions = attributions / torch.norm(attributions)
        attributions = attributions.cpu().detach().numpy()
        # storing couple samples in an array for visualization purposes
        vis_data_records_ig.append(
            visualization.VisualizationDataRecord(
                attributions,
                pred,
                ["neg", "pos"][pred_ind],
                ["neg", "pos"][label],
                "pos",
                attributions.sum(),
                text,
                delta,
            )
        )

    for sentence, label in SENTENCES:
        interpret_sentence(cnn_model, sentence, label=label)
    html = visualization.visualize_text(vis_data_records_ig)
    (out / "cnn_visualize_text.html").write_text(html.data, encoding="utf-8")

    # the packed bidirectional LSTM: lengths travel as an additional forward argument
    torch.manual_seed(1)
    rnn_model = train(RNN(len(VOCAB), 50, 32, 1, 2, 0.5), epochs, packed=True)
    rnn_lig = LayerIntegratedGradients(rnn_model, rnn_model.embedding)
    records = []
    for sentence, label in SENTENCES:
        text = tokenize(sentence)
        ids = torch.tensor([[STOI.get(t, 0) for t in text]])
        lengths = torch.tensor([len(text)])
        reference = token_reference.generate_reference(len(text), device="cpu").unsqueeze(0)
        attributions, delta = rnn_lig.attribute(
            ids,
            reference,
            additional_forward_args=(lengths,),
            n_steps=n_steps // 10,
            return_convergence_delta=True,
        )
        pred = torch.sigmoid(rnn_model(ids, lengths)).item()
        scores = attributions.sum(2).squeeze(0)
        scores = (scores / torch.norm(scores)).detach().numpy()
        records.append(
            visualization.VisualizationDataRecord(
                scores,
                pred,
                ["neg", "pos"][round(pred)],
                ["neg", "pos"][label],
                "pos",
                scores.sum(),
                text,
                delta,
            )
        )
    html = visualization.visualize_text(records)
    (out / "rnn_visualize_text.html").write_text(html.data, encoding="utf-8")
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


if __name__ == "__main__":
    main()
