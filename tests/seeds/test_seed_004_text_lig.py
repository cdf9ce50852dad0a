"""Seed 004: IMDB-style sentiment with a CNN over embeddings and a bidirectional packed LSTM;
LayerIntegratedGradients on the embedding with TokenReferenceBase(PAD), n_steps=5000,
convergence delta, a sigmoid-wrapped forward and visualize_text records."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from whybox.attr import LayerIntegratedGradients, TokenReferenceBase, visualization

PAD_IND = 1
VOCAB = [
    "<unk>",
    "pad",
    "it",
    "was",
    "a",
    "fantastic",
    "performance",
    "!",
    "best",
    "film",
    "ever",
    "horrible",
    "movie",
    "bad",
    "great",
    "show",
    "disgusting",
    "such",
]
STOI = {w: i for i, w in enumerate(VOCAB)}


class CNN(nn.Module):
    def __init__(
        self, vocab_size=len(VOCAB), embedding_dim=12, n_filters=4, filter_sizes=(3, 4, 5)
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_IND)
        self.convs = nn.ModuleList(
            [nn.Conv2d(1, n_filters, (fs, embedding_dim)) for fs in filter_sizes]
        )
        self.fc = nn.Linear(len(filter_sizes) * n_filters, 1)
        self.dropout = nn.Dropout(0.5)

    def forward(self, text):
        embedded = self.embedding(text).unsqueeze(1)
        conved = [F.relu(conv(embedded)).squeeze(3) for conv in self.convs]
        pooled = [F.max_pool1d(c, c.shape[2]).squeeze(2) for c in conved]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


class PackedLSTM(nn.Module):
    def __init__(self, vocab_size=len(VOCAB), embedding_dim=10, hidden=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_IND)
        self.rnn = nn.LSTM(
            embedding_dim, hidden, num_layers=2, bidirectional=True, batch_first=True
        )
        self.fc = nn.Linear(hidden * 2, 1)

    def forward(self, text, text_lengths):
        embedded = self.embedding(text)
        packed = nn.utils.rnn.pack_padded_sequence(
            embedded, text_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, (hidden, _) = self.rnn(packed)
        return self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1))


def _indices(sentence, min_len=7):
    text = sentence.lower().replace("!", " !").split()
    text += ["pad"] * (min_len - len(text))
    return text, torch.tensor([[STOI.get(t, 0) for t in text]])


@pytest.mark.parametrize("sentence", ["It was a fantastic performance !", "Best film ever"])
def test_seed_cnn_flow(sentence):
    torch.manual_seed(0)
    model = CNN().eval()

    def forward_with_sigmoid(input):
        return torch.sigmoid(model(input))

    token_reference = TokenReferenceBase(reference_token_idx=PAD_IND)
    lig = LayerIntegratedGradients(model, model.embedding)
    text, input_indices = _indices(sentence)
    pred = forward_with_sigmoid(input_indices).item()
    reference_indices = token_reference.generate_reference(7, device="cpu").unsqueeze(0)
    attributions_ig, delta = lig.attribute(
        input_indices, reference_indices, n_steps=5000, return_convergence_delta=True
    )
    assert attributions_ig.shape == (1, 7, 12)
    assert abs(delta.item()) < 1e-3
    expected = (model(input_indices) - model(reference_indices)).item()
    assert abs(attributions_ig.sum().item() - expected) < 1e-3

    captum_attr = pytest.importorskip("captum.attr")
    theirs = captum_attr.LayerIntegratedGradients(model, model.embedding).attribute(
        input_indices, reference_indices, n_steps=300
    )
    ours = lig.attribute(input_indices, reference_indices, n_steps=300)
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()

    attributions = attributions_ig.sum(dim=2).squeeze(0)
    attributions = attributions / torch.norm(attributions)
    attributions = attributions.cpu().detach().numpy()
    record = visualization.VisualizationDataRecord(
        attributions,
        pred,
        "pos" if pred > 0.5 else "neg",
        "pos",
        "pos",
        attributions.sum(),
        text,
        delta,
    )
    html = visualization.visualize_text([record]).data
    assert text[0] in html and "Word Importance" in html


def test_packed_lstm_with_lengths_as_extra_args():
    torch.manual_seed(1)
    model = PackedLSTM().eval()
    ids = torch.tensor([[2, 3, 4, 5, 6, 7, 1], [8, 9, 10, 1, 1, 1, 1]])
    lengths = torch.tensor([6, 3])
    reference = TokenReferenceBase(PAD_IND).generate_reference(7, device="cpu").expand(2, 7)
    lig = LayerIntegratedGradients(model, model.embedding)
    attributions, delta = lig.attribute(
        ids,
        reference,
        additional_forward_args=(lengths,),
        n_steps=200,
        internal_batch_size=50,
        return_convergence_delta=True,
    )
    assert attributions.shape == (2, 7, 10)
    assert delta.abs().max() < 1e-3
    # padding positions beyond each length cannot matter to a packed LSTM
    assert attributions[1, 3:].abs().max() == 0
    captum_attr = pytest.importorskip("captum.attr")
    theirs = captum_attr.LayerIntegratedGradients(model, model.embedding).attribute(
        ids, reference, additional_forward_args=(lengths,), n_steps=200
    )
    assert (attributions - theirs).abs().max() <= 1e-5 * theirs.abs().max()
