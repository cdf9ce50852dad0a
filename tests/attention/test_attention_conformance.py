"""The conformance contract for the attention methods (their spec in the registry rule).

tests/test_conformance.py runs its suite on a ConvNet; these methods need a transformer,
so the same properties are checked here on a tiny Hugging Face BERT classifier: output
shape and dtype (float64 in, float64 out), chunk and batch invariance, the model and the
caller's tensors untouched, hooks gone also after an exception, empty batches, explain by
name, and clear errors.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

import whybox  # noqa: E402
import whybox.attention  # noqa: E402, F401 - registers the attention methods
from attention._models import ATTENTION_SPECS, tiny_classifier  # noqa: E402
from attention._state import assert_untouched, hook_count, snapshot  # noqa: E402
from whybox.core.registry import available_methods, get_method  # noqa: E402
from whybox.core.validation import ParameterError, ParameterTypeError  # noqa: E402

#: name -> (call options, whether the method takes a target)
SPECS = {
    "attention_rollout": ({"head_fusion": "mean"}, False),
    "attention_flow": ({}, False),
    "gradient_weighted_rollout": ({}, True),
}


def test_every_attention_method_has_a_spec():
    registered = set(whybox.attention.ATTENTION_METHODS)
    assert registered == set(ATTENTION_SPECS) == set(SPECS)
    assert registered <= set(available_methods())
    for name in registered:
        assert get_method(name).__module__ == "whybox.attention.methods"


def _inputs(n=3, tokens=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 24, (n, tokens), generator=g)
    ids[:, 0] = 1
    mask = torch.ones_like(ids)
    mask[-1, tokens - 2 :] = 0  # the last row is padded
    ids[-1, tokens - 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _run(name, model, inputs, **options):
    kwargs, takes_target = SPECS[name]
    if takes_target:
        options.setdefault("target", [0, 1, 0][: inputs["input_ids"].shape[0]])
    else:
        options.pop("target", None)  # a method without a target refuses one
    return get_method(name)(model).attribute(inputs, **dict(kwargs, **options))


NAMES = sorted(SPECS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "training, dtype", [(False, torch.float32), (True, torch.float32), (False, torch.float64)]
)
def test_shape_chunk_invariance_and_no_side_effects(name, training, dtype):
    model = tiny_classifier().to(dtype).train(training)
    inputs = _inputs()
    originals = {k: v.clone() for k, v in inputs.items()}
    before = snapshot(model)
    small = _run(name, model, inputs, chunk_size=1)
    large = _run(name, model, inputs, chunk_size=1000)
    assert small.attributions.shape == inputs["input_ids"].shape
    assert small.attributions.dtype == dtype
    assert small.method == name
    torch.testing.assert_close(small.attributions, large.attributions, atol=1e-6, rtol=1e-5)
    assert (small.attributions >= 0).all()
    assert small.attributions[inputs["attention_mask"] == 0].abs().max() == 0
    for key, value in inputs.items():
        assert torch.equal(value, originals[key]) and not value.requires_grad
    assert_untouched(model, before)


@pytest.mark.parametrize("name", NAMES)
def test_batch_invariance(name):
    model = tiny_classifier()
    inputs = _inputs()
    whole = _run(name, model, inputs, target=[0, 1, 0])
    for i in range(3):
        row = {k: v[i : i + 1] for k, v in inputs.items()}
        single = _run(name, model, row, target=[0, 1, 0][i])
        torch.testing.assert_close(single.attributions[0], whole.attributions[i])


def test_gradient_weighted_rollout_works_with_frozen_parameters():
    model = tiny_classifier()
    inputs = _inputs()
    trainable = _run("gradient_weighted_rollout", model, inputs)
    model.requires_grad_(False)  # an inference-only model: no parameter needs a gradient
    before = snapshot(model)
    frozen = _run("gradient_weighted_rollout", model, inputs)
    torch.testing.assert_close(frozen.attributions, trainable.attributions)
    assert_untouched(model, before)


@pytest.mark.parametrize("name", NAMES)
def test_hooks_removed_and_state_kept_after_exception(name):
    model = tiny_classifier()
    armed = []

    def explode(module, args, output):
        if armed:
            raise RuntimeError("boom")

    handle = model.bert.encoder.layer[1].register_forward_hook(explode)
    before = snapshot(model)
    armed.append(True)
    with pytest.raises(RuntimeError, match="boom"):
        _run(name, model, _inputs())
    armed.clear()
    assert_untouched(model, before)
    handle.remove()
    assert hook_count(model) == 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_batch_gives_an_empty_result(name, dtype):
    model = tiny_classifier().to(dtype)
    result = _run(name, model, {k: v[:0] for k, v in _inputs().items()}, target=[])
    assert result.attributions.shape == (0, 7) and result.attributions.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_explain_by_name_and_tensor_inputs_with_forward_args(name):
    model = tiny_classifier()
    inputs = _inputs()
    target = [0, 1, 0] if SPECS[name][1] else None
    direct = _run(name, model, inputs)
    by_name = whybox.explain(model, inputs, method=name, target=target, **SPECS[name][0])
    assert by_name.method == name
    torch.testing.assert_close(by_name.attributions, direct.attributions)
    # a tensor of ids, the mask as a keyword forward argument
    as_tensor = whybox.explain(
        model,
        inputs["input_ids"],
        method=name,
        target=target,
        forward_args={"attention_mask": inputs["attention_mask"]},
    )
    torch.testing.assert_close(as_tensor.attributions, direct.attributions)


def test_query_option_picks_the_row():
    model = tiny_classifier()
    inputs = _inputs()
    from whybox.attention import attention_rollout, capture_attention

    with torch.no_grad():
        rollout = attention_rollout(capture_attention(model, **inputs))
    for query in (0, 2, -1):
        result = whybox.explain(model, inputs, method="attention_rollout", query=query)
        torch.testing.assert_close(result.attributions, rollout[:, query])
    last = whybox.explain(model, inputs, method="attention_rollout", query="last")
    lengths = inputs["attention_mask"].sum(-1) - 1
    torch.testing.assert_close(last.attributions, rollout[torch.arange(3), lengths])
    torch.testing.assert_close(last.attributions.sum(-1), torch.ones(3))


def test_bad_arguments_are_clear_errors():
    model = tiny_classifier()
    inputs = _inputs()
    with pytest.raises(ParameterError, match="'head_fusion' parameter of AttentionRollout"):
        whybox.explain(model, inputs, method="attention_rollout", head_fusion="median")
    with pytest.raises(ParameterTypeError, match="'query' parameter of AttentionFlow"):
        whybox.explain(model, inputs, method="attention_flow", query="first")
    with pytest.raises(ParameterError, match="'query' parameter of AttentionRollout"):
        whybox.explain(model, inputs, method="attention_rollout", query=7)
    with pytest.raises(ParameterError, match="'target' parameter of GradientWeightedRollout"):
        whybox.explain(model, inputs, method="gradient_weighted_rollout", target=5)
    with pytest.raises(ParameterError, match="'target' parameter of GradientWeightedRollout"):
        whybox.explain(model, inputs, method="gradient_weighted_rollout")  # two logits
    with pytest.raises(TypeError, match="'target'"):
        whybox.explain(model, inputs, method="attention_rollout", target=0)
    with pytest.raises(ParameterError, match="'chunk_size' parameter"):
        whybox.explain(model, inputs, method="attention_rollout", chunk_size=0)
    assert hook_count(model) == 0


def test_output_selector_chooses_what_the_target_indexes():
    model = tiny_classifier()
    inputs = _inputs()
    plain = whybox.explain(model, inputs, method="gradient_weighted_rollout", target=1)
    selected = whybox.explain(
        model,
        inputs,
        method="gradient_weighted_rollout",
        output_selector=lambda output: output.logits[:, 1] - output.logits[:, 0],
    )
    assert selected.attributions.shape == plain.attributions.shape
    assert not torch.allclose(selected.attributions, plain.attributions)
