"""Silent-wrong-answer traps: each case is compared with a reference computed without the trap.

* an in-place op right after the explained layer (reference: the same weights, not in place);
* ``torch.compile``'d models (reference: the eager module) and TorchScript (a clear error);
* two threads explaining one shared model (reference: the same calls run serially);
* a neuron selector that does not fit the layer, a layer that is not in the model;
* empty batches through the engine.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
import torch
from torch import nn

from _support import module_hook_count
from whybox import attr as wattr
from whybox import methods
from whybox.core.call import prepare_call
from whybox.core.forward import resolve_chunk_rows
from whybox.core.gradients import path_gradients, row_gradients
from whybox.core.model_checks import check_layer_in_model, explainable_model
from whybox.core.scope import LayerSite, select_neuron
from whybox.methods import cam


# -- models ---------------------------------------------------------------------------------
class Chain(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> linear; ``inplace`` sets both ReLUs' flag."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(4, 5, 3)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(5 * 6 * 6, 3)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(x.flatten(1))


def _pair() -> tuple[nn.Module, nn.Module]:
    """The same weights with in-place ReLUs and with out-of-place ones."""
    torch.manual_seed(0)
    trapped = Chain(inplace=True).eval()
    reference = Chain(inplace=False).eval()
    reference.load_state_dict(trapped.state_dict())
    return trapped, reference


def _images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _close(actual, expected, **tol):
    if isinstance(actual, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _close(a, e, **tol)
        return
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, **tol)


# -- 1. in-place op right after the explained layer ----------------------------------------
LAYER_METHODS = {
    "LayerActivation": (methods.LayerActivation, {}),
    "InternalInfluence": (methods.InternalInfluence, {"target": 1, "n_steps": 6}),
    "GradCam": (methods.GradCam, {"target": 1}),
    "LayerConductance": (methods.LayerConductance, {"target": 1, "n_steps": 6}),
    "UpsampledGradCam": (cam.UpsampledGradCam, {"target": 1}),
    "GradCamPlusPlus": (cam.GradCamPlusPlus, {"target": 1}),
    "XGradCam": (cam.XGradCam, {"target": 1}),
    "ScoreCam": (cam.ScoreCam, {"target": 1}),
}


@pytest.mark.parametrize("name", sorted(LAYER_METHODS))
@pytest.mark.parametrize("layer_name", ["conv1", "conv2"])
def test_inplace_op_after_the_layer_does_not_change_the_result(name, layer_name):
    cls, kwargs = LAYER_METHODS[name]
    trapped, reference = _pair()
    x = _images()
    got = cls(trapped, getattr(trapped, layer_name)).attribute(x, **kwargs).attributions
    want = cls(reference, getattr(reference, layer_name)).attribute(x, **kwargs).attributions
    # the trap is real: the layer's output has negative entries that the ReLU zeroes
    layer = getattr(reference, layer_name)
    assert (methods.LayerActivation(reference, layer).attribute(x).attributions < 0).any()
    _close(got, want)
    assert module_hook_count(trapped) == 0


@pytest.mark.parametrize("cls", [methods.LayerActivation, methods.GradCam])
def test_inplace_layer_input_is_recorded_before_the_layer_changes_it(cls):
    # the explained layer is the in-place ReLU itself and its *input* is attributed
    trapped, reference = _pair()
    x = _images()
    kwargs = {} if cls is methods.LayerActivation else {"target": 2}
    got = cls(trapped, trapped.relu1, attribute_to_layer_input=True).attribute(x, **kwargs)
    want = cls(reference, reference.relu1, attribute_to_layer_input=True).attribute(x, **kwargs)
    _close(got.attributions, want.attributions)


@pytest.mark.parametrize(
    "cls", [wattr.InternalInfluence, wattr.LayerIntegratedGradients, wattr.LayerGradCam]
)
def test_inplace_after_the_layer_through_the_captum_facade(cls):
    trapped, reference = _pair()
    x = _images()
    got = cls(trapped, trapped.conv2).attribute(x, target=0)
    want = cls(reference, reference.conv2).attribute(x, target=0)
    _close(got, want)


def test_inplace_layer_input_under_deeplift_rules_is_the_rules_input():
    # DeepLift's rule on the in-place ReLU is fed a protective clone; the recorded layer
    # input must be the tensor the rule differentiates through, not that clone
    trapped, reference = _pair()
    x = _images()
    got = wattr.LayerDeepLift(trapped, trapped.relu1).attribute(
        x, target=1, attribute_to_layer_input=True
    )
    want = wattr.LayerDeepLift(reference, reference.relu1).attribute(
        x, target=1, attribute_to_layer_input=True
    )
    assert want.abs().sum() > 0
    _close(got, want)
    assert module_hook_count(trapped) == 0


# -- 2. compiled and scripted models --------------------------------------------------------
def _compiled(model: nn.Module) -> nn.Module:
    # aot_eager compiles in ~1 s on CPU and, like inductor, hands hooks tensors off the graph
    return torch.compile(model, backend="aot_eager")


@pytest.fixture(scope="module")
def compiled_pair():
    torch.manual_seed(3)
    model = Chain(inplace=False).eval()
    return model, _compiled(model)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (wattr.LayerGradCam, {}),
        (wattr.LayerGradientXActivation, {}),
        (wattr.LayerConductance, {"n_steps": 5}),
    ],
)
def test_compiled_model_gives_the_eager_result_for_layer_methods(compiled_pair, cls, kwargs):
    model, compiled = compiled_pair
    x = _images()
    want = cls(model, model.conv2).attribute(x, target=1, **kwargs)
    got = cls(compiled, model.conv2).attribute(x, target=1, **kwargs)
    assert want.abs().sum() > 0
    _close(got, want)
    assert module_hook_count(model) == 0


def test_compiled_model_gives_the_eager_result_for_integrated_gradients(compiled_pair):
    model, compiled = compiled_pair
    x = _images()
    want = wattr.IntegratedGradients(model).attribute(x, target=2, n_steps=8)
    got = wattr.IntegratedGradients(compiled).attribute(x, target=2, n_steps=8)
    _close(got, want, rtol=1e-4, atol=1e-6)


def test_a_compiled_model_without_unwrapping_is_right_or_a_clear_error(compiled_pair):
    # the engine alone, without the template's unwrapping: whatever dynamo does with the
    # hooks, the layer gradient is the eager one or a clear error, never zeros
    model, compiled = compiled_pair
    site = LayerSite.of(model.conv2, owner="Engine")
    want, _ = row_gradients(prepare_call("Engine", model, _images(), target=1), tap=site.capture)
    try:
        got, _ = row_gradients(
            prepare_call("Engine", compiled, _images(), target=1), tap=site.capture
        )
    except ValueError as error:
        assert "'layer' parameter of Engine" in str(error)
    else:
        _close(got, want)
    assert module_hook_count(model) == 0


class _Detached(nn.Module):
    """The layer's output reaches the result only through ``detach``: like a hooked value
    of compiled code, it is on a graph, but not on the output's."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(x).detach()) + x.sum(1, keepdim=True)


@pytest.mark.parametrize(
    "cls", [wattr.LayerGradientXActivation, wattr.LayerGradCam, wattr.LayerConductance]
)
def test_a_layer_off_the_outputs_graph_is_a_clear_error_never_zeros(cls):
    model = _Detached()
    with pytest.raises(ValueError, match=r"'layer' parameter of \w+ .*Linear.*autograd"):
        cls(model, model.body).attribute(torch.randn(3, 4), target=0)
    assert module_hook_count(model) == 0


def test_a_layer_run_under_no_grad_is_a_clear_error():
    class Frozen(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            with torch.no_grad():
                h = self.body(x)
            return self.head(h) + x.sum(1, keepdim=True)

    model = Frozen()
    with pytest.raises(ValueError, match=r"'layer' parameter of \w+ .*no_grad.*Linear"):
        wattr.LayerGradientXActivation(model, model.body).attribute(torch.randn(3, 4), target=0)
    assert module_hook_count(model) == 0


def test_an_input_the_model_ignores_still_gets_zero_gradients():
    model = nn.Linear(4, 2)

    def forward(x, unused):
        return model(x)

    grads = wattr.Saliency(forward).attribute(
        (torch.randn(2, 4), torch.randn(2, 3)), target=0, abs=False
    )
    assert torch.equal(grads[1], torch.zeros(2, 3))


def test_frozen_layer_on_token_ids_gets_its_real_gradient():
    # a frozen embedding on integer ids computes its output off the graph; the recorded
    # value is made a leaf (as Captum does), so its gradient is the unfrozen one, not zeros
    torch.manual_seed(4)
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4 * 5, 2)
    frozen = nn.Sequential(emb, nn.Flatten(), head)
    reference = copy.deepcopy(frozen)
    frozen[0].weight.requires_grad_(False)
    ids = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(5))
    got = wattr.LayerGradientXActivation(frozen, frozen[0]).attribute(ids, target=1)
    want = wattr.LayerGradientXActivation(reference, reference[0]).attribute(ids, target=1)
    assert want.abs().sum() > 0
    _close(got, want)
    assert not frozen[0].weight.requires_grad


def test_explainable_model_unwraps_a_compiled_module_only_when_hooks_are_needed():
    model = Chain(inplace=False)
    compiled = torch.compile(model, backend="eager")
    unwrapped = explainable_model(compiled, owner="X", needs_hooks=True, needs_module_rules=False)
    assert unwrapped is model
    assert (
        explainable_model(compiled, owner="X", needs_hooks=False, needs_module_rules=False)
        is compiled
    )
    assert explainable_model(compiled, owner="X", needs_hooks=False, needs_module_rules=True) is (
        model
    )


def test_explainable_model_rejects_a_compiled_function_with_hooks():
    model = Chain(inplace=False)
    compiled = torch.compile(lambda x: model(x), backend="eager")
    with pytest.raises(TypeError, match=r"'model' parameter of X.*torch\.compile"):
        explainable_model(compiled, owner="X", needs_hooks=True, needs_module_rules=False)
    # gradients of the inputs need no hooks: the compiled function is kept
    assert (
        explainable_model(compiled, owner="X", needs_hooks=False, needs_module_rules=False)
        is compiled
    )


def _scripted_and_traced():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    return model, torch.jit.script(model), torch.jit.trace(model, torch.randn(2, 4))


@pytest.mark.parametrize("cls", [wattr.DeepLift, wattr.GuidedBackprop, wattr.Deconvolution])
@pytest.mark.parametrize("kind", ["script", "trace"])
def test_torchscript_with_module_rules_is_a_type_error_naming_model(cls, kind):
    _, scripted, traced = _scripted_and_traced()
    model = scripted if kind == "script" else traced
    with pytest.raises(TypeError, match=r"'model' parameter of .*TorchScript"):
        cls(model).attribute(torch.randn(2, 4), target=0)


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_torchscript_with_layer_hooks_is_a_type_error(kind):
    _, scripted, traced = _scripted_and_traced()
    model = scripted if kind == "script" else traced
    layer = list(model.children())[0]
    with pytest.raises(TypeError, match=r"'model' parameter of .*TorchScript"):
        explainable_model(model, owner="X", needs_hooks=True, needs_module_rules=False)
    with pytest.raises(TypeError, match=r"'model' parameter of \w+ .*TorchScript"):
        wattr.LayerGradientXActivation(model, layer).attribute(torch.randn(2, 4), target=0)


def test_torchscript_without_hooks_is_explained_as_is():
    model, scripted, _ = _scripted_and_traced()
    x = torch.randn(3, 4)
    want = wattr.IntegratedGradients(model).attribute(x, target=1, n_steps=5)
    got = wattr.IntegratedGradients(scripted).attribute(x, target=1, n_steps=5)
    _close(got, want)


def test_module_rules_reject_a_scripted_submodule():
    torch.manual_seed(7)
    inner = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    model = nn.Sequential(inner, nn.Linear(4, 2))
    with pytest.raises(TypeError, match=r"'model' parameter of X.*TorchScript"):
        explainable_model(model, owner="X", needs_hooks=True, needs_module_rules=True)


def test_a_layer_inside_a_scripted_submodule_is_a_clear_error():
    inner = torch.jit.trace(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), torch.randn(2, 4))
    model = nn.Sequential(inner, nn.Linear(4, 2))
    layer = list(inner.children())[0]
    with pytest.raises(TypeError, match=r"'layer' parameter of X.*TorchScript"):
        check_layer_in_model(model, layer, owner="X")


# -- 3. two threads, one shared model --------------------------------------------------------
class _Pause(nn.Module):
    """Sleeps (releasing the GIL) inside the forward, so both threads' forwards, and the
    hooks each call registered, are in flight at the same time."""

    def forward(self, x):
        time.sleep(0.002)
        return x


class _SharedNet(nn.Module):
    """ConvNet-like: conv -> ReLU(inplace) -> pause -> pool -> pause -> conv -> ReLU -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pause = _Pause()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        x = self.pool(self.pause(self.relu1(self.conv1(x))))
        x = self.relu2(self.conv2(self.pause(x)))
        return self.fc(x.flatten(1))


def _thread_calls(model: nn.Module, x: torch.Tensor):
    """Two lists of calls (one per thread), each ``() -> Tensor``, of different methods."""
    first = [
        lambda: wattr.IntegratedGradients(model).attribute(x, target=1, n_steps=6),
        lambda: wattr.LayerConductance(model, model.conv2).attribute(x, target=2, n_steps=4),
        lambda: wattr.DeepLift(model).attribute(x, target=3),
    ]
    second = [
        lambda: wattr.LayerGradCam(model, model.conv1).attribute(x, target=4),
        lambda: wattr.GuidedBackprop(model).attribute(x, target=5),
        lambda: wattr.FeatureAblation(model).attribute(x, target=6),
        lambda: wattr.LayerActivation(model, model.relu1).attribute(x),
    ]
    return first, second


def test_two_threads_on_one_model_get_the_serial_results():
    # without per-thread hooks about 20 of these 105 results are wrong (or a call fails)
    torch.manual_seed(8)
    model = _SharedNet().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    first, second = _thread_calls(model, x)
    expected = [[call() for call in calls] for calls in (first, second)]
    rounds = 15
    barrier = threading.Barrier(2)
    results: list[list] = [[], []]
    errors: list[BaseException] = []

    def work(index: int, calls) -> None:
        try:
            barrier.wait()  # start together so the calls overlap
            for _ in range(rounds):
                results[index].append([call() for call in calls])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate((first, second))]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        torch.set_num_threads(previous)
    assert not errors, errors
    assert len(results[0]) == len(results[1]) == rounds
    wrong = 0
    for index in (0, 1):
        for round_results in results[index]:
            for got, want in zip(round_results, expected[index]):
                same = got.shape == want.shape and torch.allclose(got, want, rtol=1e-5, atol=1e-6)
                wrong += not same
    assert wrong == 0, f"{wrong} of {rounds * (len(first) + len(second))} results differ"
    assert module_hook_count(model) == 0


# -- 4. neuron selectors ----------------------------------------------------------------------
def test_a_tuple_of_ints_needs_one_index_per_layer_dimension():
    values = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"'neuron_selector'.*\(2, 3, 4, 5\).*\(1,\)"):
        select_neuron(values, (1,), owner="X")
    with pytest.raises(ValueError, match="'neuron_selector'"):
        select_neuron(values, (1, 2), owner="X")
    with pytest.raises(ValueError, match="'neuron_selector'"):
        select_neuron(values, 1, owner="X")
    with pytest.raises(ValueError, match="'neuron_selector'"):
        select_neuron(values, (1, 2, 3, 4), owner="X")
    assert torch.equal(select_neuron(values, (1, 2, 3), owner="X"), values[:, 1, 2, 3])
    assert torch.equal(select_neuron(values[:, :, 0, 0], 2, owner="X"), values[:, 2, 0, 0])


def test_slices_select_a_block_that_is_summed():
    values = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    block = select_neuron(values, (slice(0, 2), 1, slice(None)), owner="X")
    torch.testing.assert_close(block, values[:, 0:2, 1, :].sum(dim=(1, 2)))
    # with a slice the tuple may be shorter: the dimensions left out are taken whole
    short = select_neuron(values, (slice(1, 3),), owner="X")
    torch.testing.assert_close(short, values[:, 1:3].sum(dim=(1, 2, 3)))
    empty = select_neuron(values[:0], (slice(1, 3),), owner="X")
    assert empty.shape == (0,)


@pytest.mark.parametrize("cls", [wattr.NeuronGradient, wattr.NeuronIntegratedGradients])
def test_a_short_neuron_selector_is_a_value_error_through_the_methods(cls):
    trapped, _ = _pair()
    x = _images(2)
    with pytest.raises(ValueError, match=r"'neuron_selector' parameter of Neuron"):
        cls(trapped, trapped.conv2).attribute(x, (1,))
    assert module_hook_count(trapped) == 0
    full = cls(trapped, trapped.conv2).attribute(x, (1, 2, 3))
    assert full.shape == x.shape


# -- 5. a layer that is not in the model -------------------------------------------------------
def _not_in_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).conv2


NOT_IN_MODEL = {
    "LayerConductance": lambda m, layer, x: wattr.LayerConductance(m, layer).attribute(x, target=0),
    "InternalInfluence": lambda m, layer, x: wattr.InternalInfluence(m, layer).attribute(
        x, target=0
    ),
    "LayerGradCam": lambda m, layer, x: wattr.LayerGradCam(m, layer).attribute(x, target=0),
    "LayerGradientXActivation": lambda m, layer, x: wattr.LayerGradientXActivation(
        m, layer
    ).attribute(x, target=0),
    "LayerIntegratedGradients": lambda m, layer, x: wattr.LayerIntegratedGradients(
        m, layer
    ).attribute(x, target=0),
    "LayerActivation": lambda m, layer, x: wattr.LayerActivation(m, layer).attribute(x),
    "LayerDeepLift": lambda m, layer, x: wattr.LayerDeepLift(m, layer).attribute(x, target=0),
    "LayerGradientShap": lambda m, layer, x: wattr.LayerGradientShap(m, layer).attribute(
        x, baselines=torch.zeros_like(x), target=0
    ),
    "NeuronGradient": lambda m, layer, x: wattr.NeuronGradient(m, layer).attribute(x, (0, 1, 1)),
    "NeuronIntegratedGradients": lambda m, layer, x: wattr.NeuronIntegratedGradients(
        m, layer
    ).attribute(x, (0, 1, 1)),
    "NeuronConductance": lambda m, layer, x: wattr.NeuronConductance(m, layer).attribute(
        x, (0, 1, 1), target=0
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_IN_MODEL))
def test_a_layer_not_in_the_model_is_a_clear_error(name):
    model, _ = _pair()
    stranger = _not_in_model(model)
    with pytest.raises(ValueError, match=r"'layer' parameter of .*submodule of the model"):
        NOT_IN_MODEL[name](model, stranger, _images(2))
    assert module_hook_count(model) == 0
    assert module_hook_count(stranger) == 0


@pytest.mark.parametrize(
    "name",
    ["LayerConductance", "LayerGradCam", "LayerIntegratedGradients", "NeuronGradient"],
)
def test_a_layer_a_plain_function_never_runs_is_a_clear_error(name):
    model, _ = _pair()
    stranger = _not_in_model(model)

    def forward(x):
        return model(x)

    with pytest.raises(ValueError, match=r"'layer' parameter of .*(not called|runs in)"):
        NOT_IN_MODEL[name](forward, stranger, _images(2))
    assert module_hook_count(model) == 0
    assert module_hook_count(stranger) == 0


def test_check_layer_in_model():
    model, _ = _pair()
    check_layer_in_model(model, model.conv1, owner="X")
    check_layer_in_model(model, [model.conv1, model.fc], owner="X")
    with pytest.raises(ValueError, match=r"'layer' parameter of X must be a submodule"):
        check_layer_in_model(model, [model.conv1, _not_in_model(model)], owner="X")
    with pytest.raises(TypeError, match="'layer' parameter of X"):
        check_layer_in_model(model, "conv1", owner="X")
    check_layer_in_model(lambda x: model(x), nn.Linear(2, 2), owner="X")  # nothing to check


# -- 6. empty batches through the engine -------------------------------------------------------
def test_engine_pieces_accept_an_empty_batch():
    model, _ = _pair()
    x = _images(3)
    empty = x[:0]
    assert resolve_chunk_rows("auto", [empty], owner="X") == resolve_chunk_rows(
        "auto", [x], owner="X"
    )
    call = prepare_call("X", model, empty, target=1)
    grads, outputs = row_gradients(call)
    assert grads[0].shape == empty.shape and outputs.shape == (0,)
    site = LayerSite.of(model.conv2, owner="X")
    values, layout = site.activations(call)
    assert values[0].shape == (0, 5, 6, 6) and layout == [1]
    record: list = []
    layer_grads, _ = row_gradients(call, tap=site.capture, record=record)
    assert layer_grads[0].shape == (0, 5, 6, 6) and record[0].shape == (0, 5, 6, 6)
    alphas = torch.linspace(0, 1, 4)
    weights = torch.full((4,), 0.25)
    totals = path_gradients(call, [torch.zeros_like(empty)], [empty], alphas, weights)
    assert totals[0].shape == empty.shape
    layer_totals = path_gradients(
        call, [torch.zeros_like(empty)], [empty], alphas, weights, tap=site.capture
    )
    assert layer_totals[0].shape == (0, 5, 6, 6)
