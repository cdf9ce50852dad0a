"""The facade gives Captum 0.9's numbers where Captum's definitions differ from the native
ones: the ``riemann_trapezoid`` weights (summing to ``(n - 1) / n``) and LRP's table of
default rules (a ``TypeError`` for layers Captum has no default for)."""

import pytest
import torch
from captum.attr import _utils as captum_utils  # noqa: F401 - imports the submodule below
from captum.attr._core import lrp as captum_lrp
from captum.attr._utils import approximation_methods as captum_approx
from torch import nn

import whybox.attr as W
from _support import assert_same_state, model_state, module_hook_count
from whybox.attr._core import lrp as whybox_lrp
from whybox.attr._utils import approximation_methods as whybox_approx
from whybox.core.paths import ALL_RULES, CAPTUM_TRAPEZOID, RULES, path_plan
from whybox.methods import IntegratedGradients as NativeIG
from whybox.methods.lrp import LRP as NativeLRP

C = pytest.importorskip("captum.attr")


@pytest.mark.parametrize("n", [2, 3, 4, 7, 50])
def test_approximation_parameters_are_captums(n):
    for method in captum_approx.SUPPORTED_METHODS:
        ours = [f(n) for f in whybox_approx.approximation_parameters(method)]
        theirs = [f(n) for f in captum_approx.approximation_parameters(method)]
        for mine, captums in zip(ours, theirs):
            torch.testing.assert_close(
                torch.tensor(mine, dtype=torch.float64),
                torch.tensor(captums, dtype=torch.float64),
                atol=1e-7,
                rtol=0,
            )
    steps, _ = whybox_approx.riemann_builders(whybox_approx.Riemann.trapezoid)
    assert abs(sum(steps(n)) - (n - 1) / n) < 1e-12


def test_native_rules_stay_exact_and_captum_trapezoid_is_an_opt_in():
    assert CAPTUM_TRAPEZOID in ALL_RULES and CAPTUM_TRAPEZOID not in RULES
    for n in (2, 5, 50):
        textbook = path_plan("riemann_trapezoid", n)
        captums = path_plan(CAPTUM_TRAPEZOID, n)
        assert abs(textbook[1].sum() - 1.0) < 1e-12
        assert abs(captums[1].sum() - (n - 1) / n) < 1e-12
        assert (textbook[0] == captums[0]).all()  # the same points
    # closed form on f(x) = w.x + b: completeness for the textbook rule, (n - 1) / n of it
    # for Captum's
    torch.manual_seed(0)
    model = nn.Linear(5, 1).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    gap = (model(x) - model(torch.zeros_like(x))).squeeze(1)
    n = 8
    for rule, scale in (("riemann_trapezoid", 1.0), (CAPTUM_TRAPEZOID, (n - 1) / n)):
        result = NativeIG(model).attribute(x, target=0, n_steps=n, rule=rule)
        torch.testing.assert_close(result.attributions.sum(1), scale * gap)


def _mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


@pytest.mark.parametrize(
    "name, layer, kwargs",
    [
        ("IntegratedGradients", None, {"target": 2}),
        ("LayerIntegratedGradients", 0, {"target": 2}),
        ("LayerConductance", 1, {"target": 2}),
        ("InternalInfluence", 0, {"target": 2}),
        ("NeuronIntegratedGradients", 0, {"neuron_selector": 3}),
        ("NeuronConductance", 0, {"neuron_selector": 3, "target": 2}),
    ],
)
def test_facade_trapezoid_gives_captums_numbers(name, layer, kwargs):
    model = _mlp()
    x = torch.randn(5, 4)
    args = () if layer is None else (model[layer],)
    options = dict(kwargs, n_steps=9, method="riemann_trapezoid")
    ours = getattr(W, name)(model, *args).attribute(x, **options)
    theirs = getattr(C, name)(model, *args).attribute(x, **options)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    # and they are not the textbook rule's numbers (which are n / (n - 1) larger)
    assert (ours.abs().sum() - theirs.abs().sum() * 9 / 8).abs() > 1e-3 * ours.abs().sum()


def test_neuron_conductance_default_and_delta_are_captums():
    model = _mlp()
    x = torch.randn(3, 4)
    ours = W.NeuronConductance(model, model[0]).attribute(x, neuron_selector=1, target=0)
    theirs = C.NeuronConductance(model, model[0]).attribute(x, neuron_selector=1, target=0)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    ig_options = dict(target=1, method="riemann_trapezoid", return_convergence_delta=True)
    _, ours_delta = W.IntegratedGradients(model).attribute(x, **ig_options)
    _, theirs_delta = C.IntegratedGradients(model).attribute(x, **ig_options)
    torch.testing.assert_close(ours_delta, theirs_delta, atol=1e-6, rtol=1e-5)


class _MyLinear(nn.Linear):
    pass


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)),
        lambda: nn.Sequential(_MyLinear(4, 3), nn.ReLU(), nn.Linear(3, 2)),  # exact types
        lambda: nn.Sequential(nn.Sequential(nn.Linear(4, 3), nn.GELU()), nn.Linear(3, 2)),
    ],
)
def test_lrp_facade_refuses_layers_captum_has_no_default_for(make):
    x = torch.randn(2, 4)
    for library in (C, W):
        model = make().eval()  # Captum leaves its rules attached when it raises
        before = model_state(model)
        for cls, args in (("LRP", ()), ("LayerLRP", (model[-1],))):
            with pytest.raises(TypeError):
                getattr(library, cls)(model, *args).attribute(x)  # before the target check
            with pytest.raises(TypeError, match="has no rule"):
                getattr(library, cls)(model, *args).attribute(x, target=0)
    assert module_hook_count(model) == 0
    assert_same_state(model, before)
    assert not any(hasattr(m, "rule") for m in model.modules())
    # the native method has defaults for these; the facade runs once a rule is attached
    native = NativeLRP(model).attribute(x, target=0).attributions
    unsupported = [m for m in model.modules() if type(m) in (nn.Sigmoid, nn.GELU, _MyLinear)]
    for module in unsupported:
        module.rule = W.IdentityRule() if not isinstance(module, nn.Linear) else W.EpsilonRule()
    torch.testing.assert_close(W.LRP(model).attribute(x, target=0), native)


def test_lrp_default_rule_tables_are_captums():
    ours = {k: v.__name__ for k, v in whybox_lrp.SUPPORTED_LAYERS_WITH_RULES.items()}
    theirs = {k.__name__: v.__name__ for k, v in captum_lrp.SUPPORTED_LAYERS_WITH_RULES.items()}
    assert {k.__name__: v for k, v in ours.items()} == theirs
    assert whybox_lrp.SUPPORTED_NON_LINEAR_LAYERS == captum_lrp.SUPPORTED_NON_LINEAR_LAYERS


class _Residual(nn.Module):
    """Functions in forward: a scaled input, a residual sum and a functional ReLU."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=inplace)
        self.fc2 = nn.Linear(4, 4)
        self.tanh = nn.Tanh()
        self.out = nn.Linear(4, 3)

    def forward(self, x, y):
        h = self.act(self.fc1(2.0 * x + y))
        h = torch.relu(self.fc2(h)) + h  # a residual sum (relevance duplicated by Captum)
        return self.out(self.tanh(h))


class _WithAddition(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.add = W.Addition_Module() if hasattr(W, "Addition_Module") else None
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.add(self.fc(x), x))


@pytest.mark.parametrize("inplace", [False, True])
def test_lrp_facade_follows_captums_flow_through_functions(inplace):
    torch.manual_seed(3)
    model = _Residual(inplace).eval()
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    for target in (0, 2):
        theirs, theirs_delta = C.LRP(model).attribute(
            (x, y), target=target, return_convergence_delta=True
        )
        ours, ours_delta = W.LRP(model).attribute(
            (x, y), target=target, return_convergence_delta=True
        )
        for mine, captums in zip(ours, theirs):
            torch.testing.assert_close(mine, captums, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours_delta, theirs_delta, atol=1e-4, rtol=1e-4)
    # the native (conserving) flow gives another explanation on this model
    native = NativeLRP(model).attribute((x, y), target=2)
    assert not torch.allclose(native.attributions[0], ours[0], atol=1e-3)
    assert module_hook_count(model) == 0


def test_lrp_captum_flow_on_captums_addition_module_and_per_example_rows():
    from whybox.attr._utils.custom_modules import Addition_Module

    torch.manual_seed(4)
    model = nn.Module()
    model.fc, model.add, model.head = nn.Linear(3, 3), Addition_Module(), nn.Linear(3, 2)
    model.forward = lambda x: model.head(model.add(model.fc(x), x))
    x = torch.randn(6, 3)
    ours = W.LRP(model).attribute(x, target=1)
    # Captum's Addition_Module has an epsilon rule: each summand keeps its own share,
    # R_i = a_i * R / s(a_1 + a_2); checked against Captum's class on the same model
    from captum.attr._utils.custom_modules import Addition_Module as CaptumAddition

    model.add = CaptumAddition()
    theirs = C.LRP(model).attribute(x, target=1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    # one example at a time gives the same rows (no batch coupling)
    model.add = Addition_Module()
    rows = torch.cat([W.LRP(model).attribute(x[i : i + 1], target=1) for i in range(6)])
    torch.testing.assert_close(rows, ours, atol=1e-6, rtol=1e-5)


def test_lrp_captum_flow_closed_form_on_a_scaled_input():
    """f(x) = w . (k x): Captum's flow gives k * (w * k x) / f * f = k * w * k x (relevance
    differentiated through the scaling, so it sums to k f); the conserving flow sums to f."""
    model = nn.Module()
    model.fc = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
    k = 3.0
    model.forward = lambda x: model.fc(k * x)
    x = torch.tensor([[1.0, 2.0, -4.0]], dtype=torch.float64)
    model.double()
    f = model(x)[0, 0]
    captum_flow = NativeLRP(model, relevance_flow="captum").attribute(x, target=0).attributions
    conserving = NativeLRP(model).attribute(x, target=0).attributions
    w = model.fc.weight.detach()[0]
    torch.testing.assert_close(captum_flow[0], k * w * k * x[0] * (f / (f + 1e-9)))
    torch.testing.assert_close(conserving.sum(), f)
    with pytest.raises(ValueError, match="relevance_flow"):
        NativeLRP(model, relevance_flow="dup")


class _Reused(nn.Module):
    """One ReLU module called twice (Captum's BasicModelWithReusableModules)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.lin1, self.relu, self.lin2 = nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)

    def forward(self, x):
        return self.relu(self.lin2(self.relu(self.lin1(x))))


def test_deeplift_facade_refuses_reused_modules_as_captum_does():
    from whybox.methods import DeepLift as NativeDeepLift

    model = _Reused().eval()
    x = torch.rand(2, 3)
    before = model_state(model)
    for library in (C, W):
        for cls, kwargs in (("DeepLift", {}), ("DeepLiftShap", {"baselines": torch.zeros(3, 3)})):
            with pytest.raises(RuntimeError, match="more than once"):
                getattr(library, cls)(model).attribute(x, target=0, **kwargs)
    assert module_hook_count(model) == 0
    assert_same_state(model, before)
    # the gradient to lin2's output crosses only the second call: no error, Captum's numbers
    ours = W.LayerDeepLift(model, model.lin2).attribute(x, target=0)
    theirs = C.LayerDeepLift(model, model.lin2).attribute(x, target=0)
    torch.testing.assert_close(ours, theirs)
    # the facade works again afterwards (nothing left over), and natively reuse is explained
    separate = _Reused().eval()
    separate.relu2 = nn.ReLU()
    separate.forward = lambda t: separate.relu2(separate.lin2(separate.relu(separate.lin1(t))))
    torch.testing.assert_close(
        W.DeepLift(separate).attribute(x, target=0), C.DeepLift(separate).attribute(x, target=0)
    )
    native = NativeDeepLift(model).attribute(x, target=0)
    torch.testing.assert_close(
        native.attributions, W.DeepLift(separate).attribute(x, target=0), atol=1e-6, rtol=1e-5
    )


def test_lrp_captum_flow_two_threads_and_chunks_give_the_serial_result():
    from _support import run_together

    torch.manual_seed(7)
    model = _Residual().eval()
    x, y = torch.randn(6, 4), torch.randn(6, 4)
    expected = W.LRP(model).attribute((x, y), target=1)

    def run():
        return [W.LRP(model).attribute((x, y), target=1) for _ in range(4)]

    for rounds in run_together(run, run):
        for got in rounds:
            assert all(torch.equal(g, e) for g, e in zip(got, expected))
    chunked = NativeLRP(model, relevance_flow="captum").attribute((x, y), target=1, chunk_size=2)
    for got, want in zip(chunked.attributions, expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert module_hook_count(model) == 0


class _Twice(nn.Module):
    """A ruled layer's output used twice (an activation and a scaled skip)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.fc1, self.act, self.head = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3)

    def forward(self, x):
        h = self.fc1(x)
        return self.head(self.act(h) + 0.5 * h)


@pytest.mark.parametrize("make", [_Residual, _Twice])
def test_layer_lrp_facade_follows_captums_flow(make):
    model = make().eval()
    inputs = (torch.randn(5, 4), torch.randn(5, 4)) if make is _Residual else (torch.randn(5, 4),)
    # Captum's activation hooks replace the whole gradient of the activation's input (the
    # skip's share is dropped): the facade matches that at the inputs and at every layer
    theirs = C.LRP(model).attribute(inputs, target=1)
    ours = W.LRP(model).attribute(inputs, target=1)
    for mine, captums in zip(ours, theirs):
        torch.testing.assert_close(mine, captums, atol=1e-5, rtol=1e-4)
    for module in model.children():
        if not isinstance(module, nn.Linear):
            continue
        for to_input in (False, True):
            # (fc2's input also feeds the residual sum: Captum scales its whole gradient)
            options = dict(target=1, attribute_to_layer_input=to_input)
            mine = W.LayerLRP(model, module).attribute(inputs, **options)
            captums = C.LayerLRP(model, module).attribute(inputs, **options)
            torch.testing.assert_close(mine, captums, atol=1e-5, rtol=1e-4)
    assert module_hook_count(model) == 0


def test_lrp_facade_passes_reshaping_modules_captum_cannot_take():
    """Captum refuses nn.Flatten (no default, and its IdentityRule fails on the change of
    shape); the facade passes relevance through it unchanged, which is Captum's answer for
    the same model with ``torch.flatten``."""
    torch.manual_seed(8)
    conv, head = nn.Conv2d(2, 3, 3), nn.Linear(3 * 4 * 4, 2)
    with_module = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Identity(), head).eval()
    functional = nn.Module()
    functional.conv, functional.relu, functional.head = conv, nn.ReLU(), head
    functional.forward = lambda t: functional.head(
        torch.flatten(functional.relu(functional.conv(t)), 1)
    )
    x = torch.randn(3, 2, 6, 6)
    with pytest.raises(TypeError):
        C.LRP(with_module).attribute(x, target=1)
    ours = W.LRP(with_module).attribute(x, target=1)
    theirs = C.LRP(functional).attribute(x, target=1)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    with pytest.raises(TypeError, match="Sigmoid"):  # a rule that matters still raises
        W.LRP(nn.Sequential(nn.Flatten(), nn.Linear(72, 2), nn.Sigmoid())).attribute(x, target=0)
