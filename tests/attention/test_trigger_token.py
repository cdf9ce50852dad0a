"""On a small transformer whose answer depends on one token by construction, rollout,
attention flow, gradient-weighted rollout and IG (on the embeddings) all point at it."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

import whybox  # noqa: E402
import whybox.attention  # noqa: E402, F401 - registers the attention methods
from attention._models import CLS, PAD, SEP, trigger_batch, trigger_classifier  # noqa: E402
from whybox.methods import IntegratedGradients  # noqa: E402


@pytest.fixture(scope="module")
def task():
    model = trigger_classifier()
    ids, mask, labels, positions = trigger_batch(24, seed=7, lengths=True)
    with torch.no_grad():
        predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    assert torch.equal(predicted, labels)  # the model solved the task
    return model, {"input_ids": ids, "attention_mask": mask}, labels, positions


def _pointed(attributions, inputs):
    """The content token with the largest score in each row ([CLS], [SEP], pads excluded)."""
    ids = inputs["input_ids"]
    scores = attributions.clone()
    scores[(ids == CLS) | (ids == SEP) | (inputs["attention_mask"] == 0)] = -torch.inf
    return scores.argmax(-1)


@pytest.mark.parametrize(
    "method, options",
    [
        ("attention_rollout", {}),
        ("attention_rollout", {"head_fusion": "max"}),
        ("attention_flow", {}),
        ("gradient_weighted_rollout", {}),
    ],
)
def test_attention_methods_point_at_the_trigger(task, method, options):
    model, inputs, labels, positions = task
    target = labels if method == "gradient_weighted_rollout" else None
    result = whybox.explain(model, inputs, method=method, target=target, **options)
    assert result.attributions.shape == inputs["input_ids"].shape
    assert torch.equal(_pointed(result.attributions, inputs), positions)
    assert result.attributions[inputs["attention_mask"] == 0].abs().max() == 0


def test_integrated_gradients_on_the_embeddings_points_at_the_trigger(task):
    model, inputs, labels, positions = task
    ids = inputs["input_ids"]
    # the seed's baseline: pad tokens, [CLS] / [SEP] kept in place
    baseline = torch.where((ids == CLS) | (ids == SEP), ids, torch.full_like(ids, PAD))

    def logits(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    result = IntegratedGradients(logits, layer=model.bert.embeddings).attribute(
        inputs, baselines=(baseline, inputs["attention_mask"]), target=labels, n_steps=32
    )
    scores = result.attributions.sum(-1)
    assert torch.equal(_pointed(scores, inputs), positions)
    assert result.delta.abs().max() < 0.05
