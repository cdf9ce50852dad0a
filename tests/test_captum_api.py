"""The facade is a drop-in: same names, constructor and attribute signatures and defaults as
Captum 0.9, and whybox itself never imports Captum."""

import inspect
import pathlib
import subprocess
import sys

import pytest

import whybox.attr as W

C = pytest.importorskip("captum.attr")

#: every public name of Captum 0.9's ``captum.attr`` that whybox covers today (the LLM
#: attribution names are the rest); each must exist in both, with the same signatures
COVERED = [
    "ImageMaskInput", "InterpretableInput", "LLMAttribution", "LLMAttributionResult", "LLMGradientAttribution", "ProductBaselines", "RemoteLLMAttribution", "RemoteLLMProvider", "TextTemplateInput", "TextTokenInput", "VLLMProvider",
    "Attribution", "Deconvolution", "DeepLift", "DeepLiftShap", "FeatureAblation",
    "FeaturePermutation", "GradientAttribution", "GradientShap", "GuidedBackprop",
    "GuidedGradCam", "InputXGradient", "IntegratedGradients", "InternalInfluence",
    "KernelShap", "LRP", "LayerActivation", "LayerAttribution", "LayerConductance",
    "LayerDeepLift", "LayerDeepLiftShap", "LayerFeatureAblation", "LayerFeaturePermutation",
    "LayerGradCam", "LayerGradientShap", "LayerGradientXActivation",
    "LayerIntegratedGradients", "LayerLRP", "Lime", "LimeBase", "NeuronAttribution",
    "NeuronConductance", "NeuronDeconvolution", "NeuronDeepLift", "NeuronDeepLiftShap",
    "NeuronFeatureAblation", "NeuronGradient", "NeuronGradientShap", "NeuronGuidedBackprop",
    "NeuronIntegratedGradients", "NoiseTunnel", "Occlusion", "PerturbationAttribution",
    "Saliency", "ShapleyValueSampling", "ShapleyValues", "TokenReferenceBase",
    "visualization",
    # summaries, whole datasets, interpretable embeddings
    "Summarizer", "SummarizerSingleTensor", "ClassSummarizer", "CommonStats", "StatValue",
    "Mean", "Var", "StdDev", "Min", "Max", "Sum", "Count", "MSE", "DataLoaderAttribution",
    "InterpretableEmbeddingBase", "configure_interpretable_embedding_layer",
    "remove_interpretable_embedding_layer",
]  # fmt: skip

SHARED = sorted(name for name in COVERED if inspect.isclass(getattr(C, name, None)))


def _parameters(function):
    out = []
    for p in inspect.signature(function).parameters.values():
        if p.name == "self":
            continue
        default = p.default
        if callable(default) and not isinstance(default, type):
            default = (
                "<callable>"  # e.g. FeaturePermutation's perm_func: same role, our own function
            )
        out.append((p.name, p.kind, default))
    return out


def test_every_covered_captum_name_exists_in_both():
    missing_in_whybox = [name for name in COVERED if not hasattr(W, name)]
    missing_in_captum = [name for name in COVERED if not hasattr(C, name)]
    assert missing_in_whybox == [] and missing_in_captum == []
    assert set(COVERED) <= set(W.__all__)


def test_covered_list_is_complete():
    # a Captum name whybox exports must be listed above (and so signature-checked)
    exported = sorted(name for name in W.__all__ if hasattr(C, name))
    assert exported == sorted(COVERED)


@pytest.mark.parametrize("name", SHARED)
def test_signatures_match(name):
    ours, theirs = getattr(W, name), getattr(C, name)
    assert _parameters(ours.__init__) == _parameters(theirs.__init__), "constructor"
    for method in ("attribute", "interpolate", "generate_reference"):
        if hasattr(theirs, method) and not getattr(theirs, method).__qualname__.startswith(
            "Attribution."
        ):
            assert hasattr(ours, method), method
            assert _parameters(getattr(ours, method)) == _parameters(getattr(theirs, method)), (
                method
            )


def test_whybox_never_imports_captum():
    source = pathlib.Path(W.__file__).resolve().parents[1]
    offenders = [
        str(path)
        for path in source.rglob("*.py")
        if any(
            line.strip().startswith(("import captum", "from captum"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
    code = "import sys, whybox, whybox.attr, whybox.methods; print('captum' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code]).decode().strip() == "False"
