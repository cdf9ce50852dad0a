"""Seed 003: a model whose forward returns (logits, hidden) with a nested embedding layer;
LayerIG on the right embedding, baselines of several kinds, long inputs, chips and bars."""

import pytest
import torch
from torch import nn

from _support import assert_same_state, model_state
from whybox.attr import LayerIntegratedGradients
from whybox.methods import IntegratedGradients
from whybox.text import average_over_baselines, logits_of, token_baseline, uncertain_baseline


class EmbeddingDropout(nn.Module):
    """fast.ai-style nested embedding: the real nn.Embedding sits inside a wrapper."""

    def __init__(self, vocab, dim):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=1)

    def forward(self, ids):
        return self.emb(ids)


class AWDLikeClassifier(nn.Module):
    def __init__(self, vocab=30, dim=8, hidden=10, classes=3):
        super().__init__()
        self.encoder = EmbeddingDropout(vocab, dim)
        self.rnn = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, ids):
        return self.forward_embedded(self.encoder(ids))

    def forward_embedded(self, embedded):
        out, (h, _) = self.rnn(embedded)
        return self.head(out[:, -1]), out  # a tuple: prediction + encoder states


@pytest.fixture
def model():
    torch.manual_seed(0)
    return AWDLikeClassifier().eval()


def test_wrapped_tuple_output_and_token_baselines(model):
    forward = logits_of(model, transform=lambda z: torch.softmax(z, -1))
    ids = torch.tensor([[2, 5, 7, 9, 4, 3]])
    for reference in (1, 0, 2):  # <pad>, <unk>, <bos>
        baseline = token_baseline(ids, reference, keep_token_ids=(2,))
        assert baseline[0, 0] == 2 and (baseline[0, 1:] == reference).all()
        attributions, delta = LayerIntegratedGradients(forward, model.encoder.emb).attribute(
            ids, baseline, target=1, n_steps=100, return_convergence_delta=True
        )
        summary = attributions.sum(-1).squeeze(0)
        summary = summary / summary.norm()
        assert summary.shape == (6,) and abs(delta.item()) < 1e-3
        if reference == 2:
            assert summary[0] == 0  # a kept token that equals its baseline gets nothing


def test_zero_embedding_and_multiple_baselines(model):
    forward = logits_of(model.forward_embedded)
    ids = torch.tensor([[2, 5, 7, 9, 4, 3]])
    embedded = model.encoder(ids).detach()
    ig = IntegratedGradients(forward)
    zero = ig.attribute(embedded, target=0, n_steps=64)  # zero-embedding baseline
    assert zero.delta.abs().max() < 1e-3
    neutral = [
        model.encoder(torch.tensor([s])).detach() for s in ([1] * 6, [3, 3, 3, 3, 3, 3], [0] * 6)
    ]
    averaged = average_over_baselines(ig, embedded, neutral, target=0, n_steps=64)
    expected = forward(embedded)[0, 0] - torch.stack([forward(b)[0, 0] for b in neutral]).mean()
    assert abs(averaged.attributions.sum().item() - expected.item()) < 1e-3
    assert averaged.parameters["n_baselines"] == 3


def test_uncertain_baseline_is_uniform_and_leaves_model_alone(model):
    state = model_state(model)
    forward = logits_of(model.forward_embedded)
    baseline = uncertain_baseline(forward, (1, 6, 8), steps=150, lr=0.1)
    probabilities = torch.softmax(forward(baseline), -1)
    assert (probabilities - 1 / 3).abs().max() < 0.02
    assert_same_state(model, state)


def test_long_inputs_work(model):
    forward = logits_of(model)
    ids = torch.randint(2, 30, (1, 300))
    baseline = token_baseline(ids, 1)
    result = IntegratedGradients(forward, layer=model.encoder.emb).attribute(
        ids, baselines=baseline, target=2, n_steps=64
    )
    assert result.attributions.shape == (1, 300, 8)
    # completeness holds over 300 tokens: sum of token attributions = f(x) - f(baseline)
    gap = (forward(ids)[0, 2] - forward(baseline)[0, 2]).item()
    assert abs(result.attributions.sum().item() - gap) < 1e-3 + 0.01 * abs(gap)


def test_saliency_chips_and_bar_chart(model):
    import matplotlib

    matplotlib.use("Agg")
    from whybox.viz import text as text_views

    forward = logits_of(model)
    ids = torch.tensor([[2, 5, 7, 9, 4, 3]])
    tokens = ["<bos>", "a", "truly", "<great>", "film", "!"]
    attributions = LayerIntegratedGradients(forward, model.encoder.emb).attribute(
        ids, token_baseline(ids, 1), target=0
    )
    scores = attributions.sum(-1)[0]
    html = text_views.text_html(scores, tokens=tokens)
    assert "&lt;great&gt;" in html and "http" not in html
    figure = text_views.plot_top_tokens(scores, tokens=tokens, k=4)
    assert len(figure.axes[0].patches) == 4
