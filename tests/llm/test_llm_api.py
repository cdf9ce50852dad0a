"""The Captum-compatible LLM names: same signatures and defaults as Captum 0.9."""

import inspect

import pytest

import whybox.attr._llm as W

C = pytest.importorskip("captum.attr")

NAMES = [
    "LLMAttribution",
    "LLMGradientAttribution",
    "LLMAttributionResult",
    "RemoteLLMAttribution",
    "RemoteLLMProvider",
    "VLLMProvider",
    "InterpretableInput",
    "TextTokenInput",
    "TextTemplateInput",
    "ImageMaskInput",
    "ProductBaselines",
]


def _parameters(function):
    out = []
    for p in inspect.signature(function).parameters.values():
        if p.name == "self":
            continue
        default = p.default
        if callable(default) and not isinstance(default, type):
            default = "<callable>"  # ImageMaskInput's identity processor_fn
        out.append((p.name, p.kind, default))
    return out


def test_every_name_is_exported_by_the_facade_module():
    assert sorted(W.__all__) == sorted(NAMES)
    assert all(hasattr(C, name) for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_signatures_match_captum(name):
    ours, theirs = getattr(W, name), getattr(C, name)
    assert _parameters(ours.__init__) == _parameters(theirs.__init__), "constructor"
    for method in (
        "attribute",
        "generate",
        "get_logprobs",
        "to_tensor",
        "to_model_input",
        "format_attr",
        "sample",
        "plot_token_attr",
        "plot_seq_attr",
        "plot_image_heatmap",
        "format_pixel_attr",
        "plot_mask_overlay",
    ):
        if hasattr(theirs, method):
            assert hasattr(ours, method), method
            assert _parameters(getattr(ours, method)) == _parameters(getattr(theirs, method)), (
                method
            )


def test_attribute_signature_is_pinned():
    # the compatible entry point, exactly as Captum 0.9 declares it
    assert str(inspect.signature(W.LLMAttribution.attribute)) == (
        "(self, inp: 'InterpretableInput', target: 'str | Tensor | None' = None, "
        "num_trials: 'int' = 1, gen_args: 'dict[str, Any] | None' = None, "
        "use_cached_outputs: 'bool' = True, _inspect_forward: "
        "'Callable[[str, str, list[float]], None] | None' = None, "
        "forward_in_tokens: 'bool' = True, **kwargs: 'Any') -> 'LLMAttributionResult'"
    )
    captum = inspect.signature(C.LLMAttribution.attribute)
    assert [p.name for p in captum.parameters.values()] == [
        "self", "inp", "target", "num_trials", "gen_args", "use_cached_outputs",
        "_inspect_forward", "forward_in_tokens", "kwargs",
    ]  # fmt: skip


def test_class_attributes_match():
    for name in ("SUPPORTED_METHODS", "SUPPORTED_PER_TOKEN_ATTR_METHODS", "SUPPORTED_INPUTS"):
        ours = [c.__name__ for c in getattr(W.LLMAttribution, name)]
        theirs = [c.__name__ for c in getattr(C.LLMAttribution, name)]
        assert ours == theirs, name
    ours = sorted(c.__name__ for c in W.LLMGradientAttribution.SUPPORTED_METHODS)
    assert ours == sorted(c.__name__ for c in C.LLMGradientAttribution.SUPPORTED_METHODS)
    assert hasattr(W.RemoteLLMAttribution, "placeholder_model")


def test_unsupported_method_and_input_are_clear_errors(toy):
    import whybox.attr as A

    model, tok = toy
    with pytest.raises(TypeError, match="attr_method"):
        W.LLMAttribution(A.Saliency(model), tok)
    with pytest.raises(ValueError, match="attr_target"):
        W.LLMAttribution(A.FeatureAblation(model), tok, attr_target="logit")
    template = W.TextTemplateInput("{} ?", ["K1"])
    with pytest.raises(TypeError, match="TextTokenInput"):
        W.LLMGradientAttribution(
            A.LayerIntegratedGradients(model, model.transformer.wte), tok
        ).attribute(template, target="V1")
