"""The facade's one adapter: declarative specs, error ownership, return conventions, and
the rule that every Captum class's ``attribute`` is only ``run(self, SPEC, locals())``."""

from __future__ import annotations

import ast
import inspect
import textwrap
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import whybox.attr as W
from whybox.attr._adapter import SAMPLES_PER_EVAL, Spec, check, run, with_delta
from whybox.core.validation import ParameterError, ParameterTypeError, fail


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


# -- error ownership: the facade class the user called, the Captum parameter name --------
def _path_calls():
    model = _model()
    x, layer = torch.randn(2, 3), model[0]
    return {
        "IntegratedGradients": lambda **k: W.IntegratedGradients(model).attribute(x, target=0, **k),
        "LayerIntegratedGradients": lambda **k: W.LayerIntegratedGradients(model, layer).attribute(
            x, target=0, **k
        ),
        "LayerConductance": lambda **k: W.LayerConductance(model, layer).attribute(
            x, target=0, **k
        ),
        "InternalInfluence": lambda **k: W.InternalInfluence(model, layer).attribute(
            x, target=0, **k
        ),
        "NeuronIntegratedGradients": lambda **k: W.NeuronIntegratedGradients(
            model, layer
        ).attribute(x, (1,), **k),
        "NeuronConductance": lambda **k: W.NeuronConductance(model, layer).attribute(
            x, (1,), target=0, **k
        ),
    }


def _perturbation_calls():
    model = _model()
    x, one, layer = torch.randn(2, 3), torch.randn(1, 3), model[0]

    def lime_base():
        return W.LimeBase(
            model,
            interpretable_model=W.SkLearnLinearRegression(),
            similarity_func=W.get_exp_kernel_similarity_function(),
            perturb_func=lambda inputs, **kwargs: torch.bernoulli(torch.full((1, 3), 0.5)),
            perturb_interpretable_space=True,
            from_interp_rep_transform=lambda sample, inputs, **kwargs: inputs * sample,
            to_interp_rep_transform=None,
        )

    return {
        "FeatureAblation": lambda **k: W.FeatureAblation(model).attribute(x, target=0, **k),
        "FeaturePermutation": lambda **k: W.FeaturePermutation(model).attribute(x, target=0, **k),
        "Occlusion": lambda **k: W.Occlusion(model).attribute(x, (1,), target=0, **k),
        "ShapleyValueSampling": lambda **k: W.ShapleyValueSampling(model).attribute(
            x, target=0, **k
        ),
        "ShapleyValues": lambda **k: W.ShapleyValues(model).attribute(x, target=0, **k),
        "LimeBase": lambda **k: lime_base().attribute(one, target=0, **k),
        "Lime": lambda **k: W.Lime(model).attribute(one, target=0, **k),
        "KernelShap": lambda **k: W.KernelShap(model).attribute(one, target=0, **k),
        "LayerFeatureAblation": lambda **k: W.LayerFeatureAblation(model, layer).attribute(
            x, target=0, **k
        ),
        "NeuronFeatureAblation": lambda **k: W.NeuronFeatureAblation(model, layer).attribute(
            x, (1,), **k
        ),
        "LayerFeaturePermutation": lambda **k: W.LayerFeaturePermutation(model, layer).attribute(
            x, target=0, **k
        ),
    }


_PATH_CASES = [
    (parameter, value, error)
    for parameter, value, error in [
        ("n_steps", 0, ParameterError),
        ("n_steps", 2.5, ParameterTypeError),
        ("method", "simpson", ParameterError),
        ("internal_batch_size", 0, ParameterError),
        ("internal_batch_size", "many", ParameterError),
    ]
]


@pytest.mark.parametrize("name", sorted(_path_calls()))
@pytest.mark.parametrize("parameter, value, error", _PATH_CASES)
def test_path_method_errors_name_the_facade_and_captum_parameter(name, parameter, value, error):
    with pytest.raises(error, match=rf"^The '{parameter}' parameter of {name} must be") as info:
        _path_calls()[name](**{parameter: value})
    assert info.value.parameter == parameter


@pytest.mark.parametrize("name", sorted(_perturbation_calls()))
@pytest.mark.parametrize(
    "value, error", [(0, ParameterError), (1.5, ParameterTypeError), (True, ParameterTypeError)]
)
def test_perturbations_per_eval_errors_name_the_facade(name, value, error):
    pattern = rf"^The 'perturbations_per_eval' parameter of {name} must be an int >= 1"
    with pytest.raises(error, match=pattern):
        _perturbation_calls()[name](perturbations_per_eval=value)


def test_neuron_conductance_reports_method_not_rule():
    model = _model()
    with pytest.raises(ParameterError, match="^The 'method' parameter of NeuronConductance"):
        W.NeuronConductance(model, model[0]).attribute(torch.randn(2, 3), (1,), method="rule")


def test_renamed_layer_arguments_keep_their_captum_names():
    model = _model()
    with pytest.raises(ParameterError, match="'layer_mask' parameter of LayerFeatureAblation"):
        W.LayerFeatureAblation(model, model[0]).attribute(
            torch.randn(2, 3), target=0, layer_mask=torch.zeros(2, 9, dtype=torch.long)
        )
    with pytest.raises(TypeError, match="'attribute_to_neuron_input' parameter of Neuron"):
        W.NeuronConductance(model, model[0]).attribute(
            torch.randn(2, 3), (1,), target=0, attribute_to_neuron_input=1
        )


def test_an_inner_method_keeps_its_own_name_inside_noise_tunnel():
    model = _model()
    tunnel = W.NoiseTunnel(W.IntegratedGradients(model))
    with pytest.raises(ParameterError, match="'n_steps' parameter of IntegratedGradients"):
        tunnel.attribute(torch.randn(2, 3), target=0, n_steps=0)
    with pytest.raises(ParameterError, match="'nt_samples' parameter of NoiseTunnel"):
        tunnel.attribute(torch.randn(2, 3), target=0, nt_samples=0)


def test_constructor_checks_name_the_class_called():
    model = _model()
    with pytest.raises(ParameterTypeError, match="'model' parameter of GuidedGradCam"):
        W.GuidedGradCam(lambda t: model(t), model[0])
    with pytest.raises(ParameterTypeError, match="'model' parameter of NeuronDeconvolution"):
        W.NeuronDeconvolution(lambda t: model(t), model[0])
    with pytest.raises(ParameterTypeError, match="'model' parameter of LayerLRP"):
        W.LayerLRP(lambda t: model(t), model[0])


# -- return conventions and hooks -----------------------------------------------------
def test_noise_tunnel_returns_a_delta_only_where_the_inner_method_has_one():
    model = _model()
    x = torch.randn(2, 3)
    torch.manual_seed(0)
    out = W.NoiseTunnel(W.FeatureAblation(model)).attribute(
        x, nt_samples=2, target=0, return_convergence_delta=True
    )
    assert isinstance(out, torch.Tensor) and out.shape == x.shape
    torch.manual_seed(0)
    attributions, delta = W.NoiseTunnel(W.IntegratedGradients(model)).attribute(
        x, nt_samples=2, target=0, n_steps=4, return_convergence_delta=True
    )
    assert attributions.shape == x.shape and delta.shape == (4,)


def test_lrp_delta_has_captum_sign():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    x = torch.randn(2, 3, dtype=torch.float64)
    relevance, delta = W.LRP(model).attribute(x, target=0, return_convergence_delta=True)
    expected = model(x)[:, 0] - relevance.sum(dim=1)
    torch.testing.assert_close(delta, expected)


def test_facade_warnings_point_at_the_callers_line():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    image, vector = torch.randn(2, 1, 6, 6), torch.randn(2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        W.NeuronConductance(model, model[0]).attribute(
            image, lambda values: values[:, 0, 0, 0], target=0, n_steps=2
        )
    assert [w.filename for w in caught] == [__file__]

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model

        def forward(self, a, b):
            return self.body(a) + b[:, :2]

    two = TwoInputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = W.GuidedGradCam(two, two.body[0]).attribute((image, vector), target=0)
    assert [w.filename for w in caught] == [__file__]
    assert out[0].shape == image.shape and out[1].numel() == 0


# -- the adapter itself, on a stand-in native method ------------------------------------
class _Echo:
    """A stand-in native method: returns its constructor and call options."""

    def __init__(self, model: Any, **init: Any) -> None:
        self.model, self.init = model, init

    def attribute(self, inputs: Any, *, return_delta: bool = True, **options: Any) -> Any:
        if options.get("forward_args") == "bad":
            fail("_Echo", "forward_args", "not 'bad'", "bad")
        options["return_delta"] = return_delta
        return SimpleNamespace(attributions=(self.init, options), delta="delta")


_ECHO = Spec(
    _Echo,
    init={"scale": "scale", "built": lambda facade: f"built for {type(facade).__name__}"},
    layer=True,
    renames={"layer_mask": "feature_mask", "perturbations_per_eval": SAMPLES_PER_EVAL},
    to_init=("attribute_to_layer_input",),
    fixed={"abs": False},
    captum_random=True,
    pass_kwargs=True,
    returns=with_delta,
)


class _Facade(W.Attribution):
    _has_delta = True

    def __init__(self, forward_func: Any, layer: Any) -> None:
        super().__init__(forward_func)
        self.layer, self.scale = layer, 2.0

    def attribute(
        self,
        inputs: Any,
        additional_forward_args: Any = None,
        layer_mask: Any = None,
        method: str = "gausslegendre",
        perturbations_per_eval: int = 1,
        attribute_to_layer_input: bool = False,
        return_convergence_delta: bool = False,
        **kwargs: Any,
    ) -> Any:
        return run(self, _ECHO, locals())


def test_a_spec_renames_converts_and_routes_every_argument():
    x = torch.zeros(3, 2)
    init, options = _Facade("model", "layer").attribute(
        x, layer_mask="mask", perturbations_per_eval=2, attribute_to_layer_input=True, extra=7
    )
    assert init == {
        "scale": 2.0,
        "built": "built for _Facade",
        "layer": "layer",
        "attribute_to_layer_input": True,
    }
    seed = options.pop("seed")
    assert type(seed).__name__ == "GlobalRandom"
    assert options == {
        "forward_args": None,
        "feature_mask": "mask",
        "rule": "gausslegendre",
        "chunk_size": 6,  # LimeBase's knob: 2 samples of the 3-row batch per forward
        "return_delta": False,
        "abs": False,
        "extra": 7,
    }


def test_with_delta_returns_a_pair_only_when_asked():
    x = torch.zeros(1, 2)
    assert _Facade("m", "l").attribute(x, return_convergence_delta=True)[1] == "delta"
    init, options = _Facade("m", "l").attribute(x)
    assert options["return_delta"] is False


def test_native_errors_are_reworded_for_the_facade():
    with pytest.raises(
        ParameterError,
        match=r"^The 'additional_forward_args' parameter of _Facade must be not 'bad'",
    ) as info:
        _Facade("m", "l").attribute(torch.zeros(1, 2), additional_forward_args="bad")
    assert info.value.parameter == "additional_forward_args"


def test_check_rewords_constructor_errors():
    class Strict(_Echo):
        def _validated(self) -> None:
            fail("Strict", "scale", "positive", -1.0)

    with pytest.raises(ParameterError, match="^The 'scale' parameter of _Facade"):
        check(_Facade("m", "l"), Spec(Strict, init={"scale": "scale"}))


# -- thin everywhere: each Captum class's attribute is one call of the adapter ----------
#: Captum classes that wrap another attribution object rather than translate to one
#: native method (they drive the wrapped object over a DataLoader or a generated text)
WRAPPERS = {"DataLoaderAttribution", "LLMAttribution", "LLMGradientAttribution"}


def _attribute_functions():
    for name in W.__all__:
        cls = getattr(W, name)
        if not (inspect.isclass(cls) and issubclass(cls, W.Attribution)):
            continue
        for owner in cls.__mro__:
            function = owner.__dict__.get("attribute")
            module = getattr(owner, "__module__", "")
            if (
                function is not None
                and module.startswith("whybox.attr.")
                and owner is not (W.Attribution)
                and owner.__name__ not in WRAPPERS
            ):
                yield f"{owner.__qualname__}.attribute", function


_ATTRIBUTES = dict(_attribute_functions())


@pytest.mark.parametrize("qualname", sorted(_ATTRIBUTES))
def test_every_attribute_is_one_run_of_a_spec(qualname):
    function = _ATTRIBUTES[qualname]
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    body = tree.body[0].body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    assert len(body) == 1 and isinstance(body[0], ast.Return), qualname
    call = body[0].value
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "run", qualname
    assert ast.unparse(call.args[2]) == "locals()", qualname
