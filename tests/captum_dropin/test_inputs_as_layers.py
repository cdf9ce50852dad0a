"""ModelInputWrapper / InputIdentity (layer methods on model inputs) and the interpretable
embedding layer (configure / remove)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whybox.attr import (
    InputIdentity,
    IntegratedGradients,
    InterpretableEmbeddingBase,
    LayerIntegratedGradients,
    ModelInputWrapper,
    configure_interpretable_embedding_layer,
    remove_interpretable_embedding_layer,
)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(2, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x, y, *, scale=1.0):
        return self.out(torch.tanh(self.a(x) + self.b(y))) * scale


def _inputs():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(5, 3, generator=gen), torch.randn(5, 2, generator=gen)


def test_the_wrapper_changes_nothing_but_adds_one_identity_per_input():
    model = TwoInputs()
    wrapped = ModelInputWrapper(model)
    x, y = _inputs()
    assert wrapped.arg_name_list == ["x", "y", "scale"]
    assert all(isinstance(m, InputIdentity) for m in wrapped.input_maps.values())
    assert wrapped.input_maps["x"].input_name == "x"
    torch.testing.assert_close(wrapped(x, y), model(x, y))
    torch.testing.assert_close(wrapped(x, y=y, scale=2.0), model(x, y, scale=2.0))


def test_layer_integrated_gradients_on_the_wrapped_inputs_equals_integrated_gradients():
    model = TwoInputs()
    wrapped = ModelInputWrapper(model)
    x, y = _inputs()
    baselines = (torch.zeros_like(x), torch.full_like(y, 0.5))
    ig = IntegratedGradients(model).attribute((x, y), baselines=baselines, target=1)
    layers = [wrapped.input_maps["x"], wrapped.input_maps["y"]]
    lig = LayerIntegratedGradients(wrapped, layers).attribute((x, y), baselines=baselines, target=1)
    for ours, ref in zip(lig, ig, strict=True):
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("to_layer_input", [False, True])
def test_one_wrapped_input_with_the_others_fixed(to_layer_input):
    model = TwoInputs()
    wrapped = ModelInputWrapper(model)
    x, y = _inputs()
    ig = IntegratedGradients(model).attribute(x, target=0, additional_forward_args=(y,))
    lig = LayerIntegratedGradients(wrapped, wrapped.input_maps["x"]).attribute(
        x, target=0, additional_forward_args=(y,), attribute_to_layer_input=to_layer_input
    )
    torch.testing.assert_close(lig, ig)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.encoder = nn.Module()
        self.encoder.embedding = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, tokens):
        return self.head(self.encoder.embedding(tokens).mean(1))


def test_interpretable_embedding_round_trip_leaves_the_outputs_identical():
    model = Classifier()
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    before = model(tokens)
    original = model.encoder.embedding
    with pytest.warns(UserWarning, match="remove_interpretable_embedding_layer"):
        emb = configure_interpretable_embedding_layer(model, "encoder.embedding")
    assert isinstance(emb, InterpretableEmbeddingBase) and model.encoder.embedding is emb
    assert (emb.num_embeddings, emb.embedding_dim, emb.full_name) == (10, 4, "encoder.embedding")
    vectors = emb.indices_to_embeddings(tokens)
    torch.testing.assert_close(model(vectors), before)  # the model now takes embeddings
    # attributions to the embeddings: the same as a layer method on the embedding layer
    ig = IntegratedGradients(model).attribute(vectors, target=0)
    remove_interpretable_embedding_layer(model, emb)
    assert model.encoder.embedding is original
    torch.testing.assert_close(model(tokens), before)
    lig = LayerIntegratedGradients(model, model.encoder.embedding).attribute(
        tokens, baselines=torch.zeros_like(tokens), target=0
    )
    ref = IntegratedGradients(lambda e: model.head(e.mean(1))).attribute(
        vectors, baselines=original(torch.zeros_like(tokens)), target=0
    )
    torch.testing.assert_close(lig, ref)
    assert ig.shape == vectors.shape


def test_configure_twice_and_forward_without_arguments_are_assertion_errors():
    model = Classifier()
    with pytest.warns(UserWarning):
        emb = configure_interpretable_embedding_layer(model, "encoder.embedding")
    with pytest.raises(AssertionError, match="already"):
        configure_interpretable_embedding_layer(model, "encoder.embedding")
    with pytest.raises(AssertionError, match="embedding tensor"):
        emb()
    assert emb(embeds=torch.ones(2)).tolist() == [1.0, 1.0]
    with pytest.raises(AttributeError, match="no layer 'decoder'"):
        configure_interpretable_embedding_layer(model, "decoder.embedding")
    remove_interpretable_embedding_layer(model, emb)
