"""Captum behaviours the facade reproduces, each checked against the installed Captum 0.9.

``attribute_future``, batch-level ("aggregate") and Python-number outputs, ``target=None``
on models with several outputs, ``grad_kwargs``, neuron selectors, Occlusion's stride
forms, ``show_progress``, LIME's seeded draws for every example, and facade errors that
are also ``AssertionError``.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import pytest
import torch
from torch import nn

captum_attr = pytest.importorskip("captum.attr")
import whybox.attr as whybox_attr  # noqa: E402
from whybox import methods as native  # noqa: E402

LIBS = [pytest.param(captum_attr, id="captum"), pytest.param(whybox_attr, id="whybox")]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


def _inputs() -> torch.Tensor:
    return torch.tensor([[1.0, -2.0, 3.0], [0.5, 1.5, -1.0], [2.0, 0.0, 1.0]])


def _both(make: Any) -> tuple[Any, Any]:
    """``make(lib)`` for Captum and whybox from the same global seed."""
    out = []
    for lib in (captum_attr, whybox_attr):
        torch.manual_seed(7)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(make(lib))
    return out[0], out[1]


def _close(a: Any, b: Any) -> None:
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        torch.testing.assert_close(x.double(), y.double(), rtol=1e-5, atol=1e-5)


# -- properties --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["FeatureAblation", "Occlusion", "ShapleyValues", "LayerActivation", "Lime"]
)
def test_multiplies_by_inputs_and_name_as_captum(name: str) -> None:
    model = _mlp()
    args = (model, model[0]) if name.startswith("Layer") else (model,)
    theirs, ours = getattr(captum_attr, name)(*args), getattr(whybox_attr, name)(*args)
    assert ours.multiplies_by_inputs == theirs.multiplies_by_inputs
    assert ours.get_name() == theirs.get_name()
    assert ours.has_convergence_delta() == theirs.has_convergence_delta()


# -- attribute_future --------------------------------------------------------------------
def _future_model(model: nn.Module) -> Any:
    def forward(x: torch.Tensor) -> torch.futures.Future:
        done: torch.futures.Future = torch.futures.Future()
        done.set_result(model(x))
        return done

    return forward


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("FeatureAblation", {"target": 1}),
        ("FeaturePermutation", {"target": 1}),
        ("ShapleyValueSampling", {"target": 1, "n_samples": 3}),
        ("ShapleyValues", {"target": 1}),
    ],
)
def test_attribute_future_matches_captum(name: str, kwargs: dict) -> None:
    model = _mlp()
    theirs, ours = _both(
        lambda lib: getattr(lib, name)(_future_model(model)).attribute_future(_inputs(), **kwargs)
    )
    assert isinstance(ours, torch.futures.Future)
    _close(ours.wait(), theirs.wait())
    # the plain result, from a plain forward, is the same
    plain = getattr(whybox_attr, name)(model)
    torch.manual_seed(7)
    _close(plain.attribute(_inputs(), **kwargs), ours.wait())


def test_layer_feature_permutation_future_attributes_the_layer() -> None:
    model = _mlp()
    future = whybox_attr.LayerFeaturePermutation(_future_model_module(model), model[0])
    torch.manual_seed(7)
    got = future.attribute_future(_inputs(), target=1).wait()
    torch.manual_seed(7)
    want = whybox_attr.LayerFeaturePermutation(model, model[0]).attribute(_inputs(), target=1)
    _close(got, want)


class _FutureModule(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.futures.Future:
        done: torch.futures.Future = torch.futures.Future()
        done.set_result(self.inner(x))
        return done


def _future_model_module(model: nn.Module) -> nn.Module:
    return _FutureModule(model)


def test_attribute_refuses_future_outputs_and_others_have_no_future() -> None:
    model = _mlp()
    with pytest.raises(AssertionError):
        whybox_attr.FeatureAblation(_future_model(model)).attribute(_inputs(), target=1)
    for lib in (captum_attr, whybox_attr):
        with pytest.raises(NotImplementedError):
            lib.Occlusion(model).attribute_future()
        with pytest.raises(NotImplementedError):
            lib.Saliency(model).attribute_future()


# -- batch-level outputs -----------------------------------------------------------------
AGGREGATES = {
    "float": lambda model: lambda x: torch.sum(model(x)).item(),
    "int": lambda model: lambda x: int(torch.sum(model(x)).item()),
    "0d": lambda model: lambda x: torch.sum(model(x)),
    "1d": lambda model: lambda x: torch.sum(model(x)).reshape(1),
}


@pytest.mark.parametrize("form", list(AGGREGATES))
@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("FeatureAblation", {}),
        ("ShapleyValues", {}),
        ("ShapleyValueSampling", {"n_samples": 3}),
        ("Lime", {"n_samples": 20}),
    ],
)
def test_batch_level_outputs_as_captum(form: str, name: str, kwargs: dict) -> None:
    model = _mlp()
    mask = torch.tensor([[0, 0, 1]])
    theirs, ours = _both(
        lambda lib: getattr(lib, name)(AGGREGATES[form](model)).attribute(
            _inputs(), feature_mask=mask, **kwargs
        )
    )
    tolerance = 1e-3 if name == "Lime" else 1e-5
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours.double(), theirs.double(), rtol=tolerance, atol=tolerance)
    if name == "FeatureAblation":
        assert ours.dtype == theirs.dtype  # the output's dtype: int64 / float64 / float32


@pytest.mark.parametrize("name", ["FeatureAblation", "ShapleyValues"])
def test_batch_level_output_with_several_perturbations_per_eval_is_an_assertion(name: str) -> None:
    model = _mlp()
    for lib in (captum_attr, whybox_attr):
        with pytest.raises(AssertionError):
            getattr(lib, name)(AGGREGATES["0d"](model)).attribute(
                _inputs(), perturbations_per_eval=2
            )


# -- target=None on several outputs --------------------------------------------------------
@pytest.mark.parametrize(
    "forward",
    [
        pytest.param(lambda x: x[0].unsqueeze(0), id="fixed-row"),
        pytest.param(lambda x: torch.ones(1, 5, 3, 2) * x.sum(), id="fixed-3d"),
        pytest.param(lambda x: torch.stack([x.sum(1), 2 * x.sum(1)], 1), id="per-example-2"),
    ],
)
@pytest.mark.parametrize("name", ["FeatureAblation", "ShapleyValues", "Occlusion"])
def test_target_none_on_several_outputs_as_captum(forward: Any, name: str) -> None:
    x = _inputs()
    kwargs = {"sliding_window_shapes": (1,)} if name == "Occlusion" else {}
    theirs, ours = _both(lambda lib: getattr(lib, name)(forward).attribute(x, **kwargs))
    _close(ours, theirs)


# -- grad_kwargs ---------------------------------------------------------------------------
def test_grad_kwargs_reach_autograd(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _mlp()
    seen: list[dict] = []
    grad = torch.autograd.grad

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", recording)
    method = whybox_attr.LayerIntegratedGradients(model, model[0])
    ours = method.attribute(_inputs(), target=1, n_steps=4, grad_kwargs={"materialize_grads": True})
    assert seen and all(k.get("materialize_grads") is True for k in seen)
    monkeypatch.setattr(torch.autograd, "grad", grad)
    theirs = captum_attr.LayerIntegratedGradients(model, model[0]).attribute(
        _inputs(), target=1, n_steps=4, grad_kwargs={"materialize_grads": True}
    )
    assert ours.shape == theirs.shape


def test_unknown_grad_kwargs_are_a_clear_error() -> None:
    model = _mlp()
    with pytest.raises(TypeError, match="'grad_kwargs' parameter of LayerConductance"):
        whybox_attr.LayerConductance(model, model[0]).attribute(
            _inputs(), target=1, grad_kwargs={"no_such_option": 1}
        )


# -- neuron selectors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "selector",
    [
        pytest.param(lambda out: out.sum(dim=1), id="callable"),
        pytest.param((slice(0, 2, 1),), id="slice"),
        pytest.param(1, id="int"),
    ],
)
@pytest.mark.parametrize("name", ["NeuronFeatureAblation", "NeuronGradient"])
def test_neuron_selectors_as_captum(selector: Any, name: str) -> None:
    model = _mlp()
    theirs, ours = _both(
        lambda lib: getattr(lib, name)(model, model[0]).attribute(_inputs(), selector)
    )
    _close(ours, theirs)


# -- Occlusion strides ---------------------------------------------------------------------
def test_occlusion_one_entry_stride_tuple_as_captum() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = torch.randn(2, 1, 4, 4)
    theirs, ours = _both(
        lambda lib: lib.Occlusion(model).attribute(
            x, sliding_window_shapes=(1, 2, 2), strides=(2,), target=0
        )
    )
    _close(ours, theirs)
    for lib in (captum_attr, whybox_attr):
        with pytest.raises(AssertionError):  # a window must cover every non-batch dimension
            lib.Occlusion(model).attribute(x, sliding_window_shapes=(2, 2), target=0)


# -- show_progress ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, label, kwargs",
    [
        ("FeatureAblation", "Feature Ablation attribution", {}),
        ("ShapleyValueSampling", "Shapley Value Sampling attribution", {"n_samples": 2}),
        ("Occlusion", "Occlusion attribution", {"sliding_window_shapes": (1,)}),
        ("KernelShap", "Kernel Shap attribution", {"n_samples": 10}),
    ],
)
def test_show_progress_one_bar_with_captums_label(
    name: str, label: str, kwargs: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    for ppe in (1, 2):
        getattr(whybox_attr, name)(_mlp()).attribute(
            _inputs(), target=1, perturbations_per_eval=ppe, show_progress=True, **kwargs
        )
    output = stream.getvalue()
    assert output.count(f"{label}: 100%") == 2, output
    bars = {line.split(":")[0] for line in output.replace("\r", "\n").split("\n") if ":" in line}
    assert bars == {label}, output


# -- LIME: Captum's draws for every example ---------------------------------------------------
def test_lime_reproduces_captum_for_every_example_and_the_generator_state() -> None:
    model = _mlp()
    x = _inputs()

    def run(lib: Any) -> tuple[torch.Tensor, float]:
        lime = lib.Lime(model)
        out = lime.attribute(x, target=1, n_samples=40)
        return out, float(torch.rand(1))

    (theirs, their_next), (ours, our_next) = _both(run)
    torch.testing.assert_close(ours.double(), theirs.double(), rtol=2e-3, atol=2e-3)
    assert our_next == their_next  # the global generator is where Captum leaves it


# -- errors ------------------------------------------------------------------------------------
def test_facade_errors_are_assertion_errors_native_errors_are_not() -> None:
    model = _mlp()
    with pytest.raises(AssertionError) as caught:
        whybox_attr.IntegratedGradients(model).attribute(_inputs(), target=1, n_steps=0)
    assert isinstance(caught.value, ValueError)
    assert "'n_steps' parameter of IntegratedGradients" in str(caught.value)
    with pytest.raises(AssertionError):
        whybox_attr.FeatureAblation(model).attribute(_inputs(), target=(9, 9))
    with pytest.raises(ValueError) as native_error:
        native.IntegratedGradients(model).attribute(_inputs(), target=1, n_steps=0)
    assert not isinstance(native_error.value, AssertionError)
