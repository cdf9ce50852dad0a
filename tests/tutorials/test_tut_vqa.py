"""Multimodal_VQA_Interpret with ``captum`` renamed to ``whybox``, on a small local VQA
model (random weights, no download).

The tutorial's flow: a ``DataParallel``-wrapped model of image features and a question
(an embedding, an LSTM over the packed question, attention over the image grid); the
question embedding replaced with ``configure_interpretable_embedding_layer(model,
"module.text.embedding")``; ``TokenReferenceBase(reference_token_idx=0)`` references turned
into embeddings with ``indices_to_embeddings``; ``IntegratedGradients`` of the predicted
answer with respect to ``(image features, question embeddings)`` with the question length
as an additional forward argument (``n_steps=30``); the image attribution drawn with
``visualize_image_attr_multiple`` and the word attributions with ``visualize_text``; then
``remove_interpretable_embedding_layer``. Each step runs on Captum 0.9 and on whybox.
"""

import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from tutorials._tut import assert_close, both, figure_summary, lib, patch_captum_text_view, seed

VOCAB, EMB, HIDDEN, GRID, ANSWERS = 20, 6, 8, 4, 5


class TextProcessor(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMB, padding_idx=0)
        self.lstm = nn.LSTM(EMB, HIDDEN, batch_first=True)

    def forward(self, q, q_len):
        embedded = torch.tanh(self.embedding(q))
        packed = pack_padded_sequence(
            embedded, q_len.reshape(-1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, (_, c) = self.lstm(packed)
        return c.squeeze(0)


class Net(nn.Module):
    """Image features (N, C, G, G) and a question -> answer logits, with attention."""

    def __init__(self):
        super().__init__()
        self.text = TextProcessor()
        self.attention = nn.Conv2d(4 + HIDDEN, 2, 1)
        self.classifier = nn.Sequential(
            nn.Linear(2 * 4 + HIDDEN, 16), nn.ReLU(), nn.Linear(16, ANSWERS)
        )

    def forward(self, v, q, q_len):
        q = self.text(q, q_len)
        v = v / (v.norm(p=2, dim=1, keepdim=True).expand_as(v) + 1e-8)
        tiled = q[:, :, None, None].expand(-1, -1, v.shape[2], v.shape[3])
        weights = torch.softmax(self.attention(torch.cat([v, tiled], 1)).flatten(2), dim=-1)
        glimpses = torch.einsum("ngp,ncp->ngc", weights, v.flatten(2)).flatten(1)
        return self.classifier(torch.cat([glimpses, q], dim=1))


@pytest.fixture(scope="module")
def vqa():
    seed(0)
    return nn.DataParallel(Net()).eval()


QUESTIONS = [[3, 7, 9, 4], [5, 11, 2], [8, 8, 13, 6, 2]]


def test_vqa_interpret(vqa, monkeypatch):
    patch_captum_text_view(monkeypatch)
    gen = torch.Generator().manual_seed(3)
    image_features = torch.rand(1, 4, GRID, GRID, generator=gen)
    original_image = torch.rand(3, GRID, GRID, generator=gen)
    with torch.no_grad():
        plain = [vqa(image_features, torch.tensor([q]), torch.tensor([len(q)])) for q in QUESTIONS]

    def run(name):
        A = lib(name, "captum.attr")
        interpretable_embedding = A.configure_interpretable_embedding_layer(
            vqa, "module.text.embedding"
        )
        try:
            token_reference = A.TokenReferenceBase(reference_token_idx=0)
            attr = A.IntegratedGradients(vqa)
            results = []
            for question in QUESTIONS:
                q, q_len = torch.tensor(question), torch.tensor(len(question))
                q_reference_indices = token_reference.generate_reference(
                    q_len.item(), device="cpu"
                ).unsqueeze(0)
                inputs_embedding = interpretable_embedding.indices_to_embeddings(q).unsqueeze(0)
                with torch.no_grad():
                    _, answer_idx = vqa(image_features, inputs_embedding, q_len.unsqueeze(0)).max(
                        dim=1
                    )
                q_reference = interpretable_embedding.indices_to_embeddings(q_reference_indices)
                attributions = attr.attribute(
                    inputs=(image_features, inputs_embedding),
                    baselines=(image_features * 0.0, q_reference),
                    target=answer_idx,
                    additional_forward_args=q_len.unsqueeze(0),
                    n_steps=30,
                )
                V = A.visualization
                figure = V.visualize_image_attr_multiple(
                    attributions[0].squeeze(0).mean(0, keepdim=True).permute(1, 2, 0).numpy(),
                    original_image.permute(1, 2, 0).numpy(),
                    ["original_image", "heat_map"],
                    ["all", "positive"],
                    titles=["Original Image", "Attribution Magnitude"],
                    cmap="inferno",
                    show_colorbar=True,
                    use_pyplot=False,
                )
                words = attributions[1].sum(dim=2).squeeze(0)
                words = words / torch.norm(words)
                record = V.VisualizationDataRecord(
                    words.detach(),
                    0.5,
                    str(answer_idx.item()),
                    str(answer_idx.item()),
                    "a",
                    words.sum(),
                    [f"w{i}" for i in question],
                    0.0,
                )
                html = V.visualize_text([record]).data
                results.append(
                    (
                        answer_idx,
                        tuple(a.detach() for a in attributions),
                        figure_summary(figure),
                        re.findall(r"hsl\([^)]*\)", html),
                    )
                )
            return results
        finally:
            A.remove_interpretable_embedding_layer(vqa, interpretable_embedding)

    captum_out, whybox_out = both(run)
    assert_close(captum_out, whybox_out, atol=1e-6)
    # the embedding layer is back: the model gives what it gave before
    with torch.no_grad():
        for question, before in zip(QUESTIONS, plain):
            after = vqa(image_features, torch.tensor([question]), torch.tensor([len(question)]))
            assert torch.equal(after, before)
    assert isinstance(vqa.module.text.embedding, nn.Embedding)
    # each answer's attributions are not zero (the comparison above is not vacuous)
    for _, (image_attr, word_attr), _, _ in whybox_out:
        assert float(image_attr.abs().sum()) > 0 and float(word_attr.abs().sum()) > 0
        assert np.isfinite(image_attr.numpy()).all()
