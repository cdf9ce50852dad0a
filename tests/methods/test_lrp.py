"""LRP and LayerLRP: parity with Captum 0.9, closed forms, rules as data, no side effects."""

import pytest
import torch
from torch import nn

import whybox.attr as W
from _support import assert_same_state, model_state, module_hook_count
from whybox.core.validation import ParameterError
from whybox.methods import InputXGradient
from whybox.methods.lrp import LRP as NativeLRP
from whybox.methods.lrp import (
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    default_rule,
)

C = pytest.importorskip("captum.attr")
CR = pytest.importorskip("captum.attr._utils.lrp_rules")


def _close(ours, theirs, rtol=1e-5):
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _close(a, b, rtol)
        return
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = theirs.detach().abs().max().clamp_min(1e-12)
    assert (ours.detach() - theirs.detach()).abs().max() / scale <= rtol


class ConvNet(nn.Module):
    """Conv2d, BatchNorm2d, ReLU, MaxPool2d, Conv2d, ReLU(inplace), AdaptiveAvgPool2d, Linear."""

    def __init__(self, bias=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=bias)
        self.bn = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, bias=bias)
        self.relu2 = nn.ReLU(inplace=True)
        self.avg = nn.AdaptiveAvgPool2d((2, 2))
        self.fc = nn.Linear(24, 5, bias=bias)

    def forward(self, x):
        x = self.pool(self.relu1(self.bn(self.conv1(x))))
        x = self.avg(self.relu2(self.conv2(x)))
        return self.fc(x.flatten(1))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.tanh = nn.Tanh()
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(12, 8)
        self.relu = nn.ReLU()
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc3(self.relu(self.fc2(self.drop(self.tanh(self.fc1(x))))))


def _conv():
    torch.manual_seed(0)
    model = ConvNet()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
        model.bn.weight.uniform_(0.5, 1.5)
    return model.eval(), torch.randn(3, 3, 12, 12), [0, 3, 4]


def _mlp():
    torch.manual_seed(1)
    return MLP().eval(), torch.randn(4, 6), 2


MODELS = {"conv": _conv, "mlp": _mlp}


@pytest.mark.parametrize("case", ["conv", "mlp"])
def test_lrp_default_rules_parity(case):
    model, x, target = MODELS[case]()
    ours, d1 = W.LRP(model).attribute(x, target=target, return_convergence_delta=True)
    theirs, d2 = C.LRP(model).attribute(x, target=target, return_convergence_delta=True)
    _close(ours, theirs)
    torch.testing.assert_close(d1, d2.detach(), atol=1e-5, rtol=1e-4)


RULES = {
    "epsilon": (lambda: EpsilonRule(0.1), lambda: CR.EpsilonRule(0.1)),
    "gamma": (lambda: GammaRule(), lambda: CR.GammaRule()),
    "gamma_no_bias": (lambda: GammaRule(0.5, True), lambda: CR.GammaRule(0.5, True)),
    "alpha1_beta0": (lambda: Alpha1_Beta0_Rule(), lambda: CR.Alpha1_Beta0_Rule()),
    "alpha1_beta0_no_bias": (lambda: Alpha1_Beta0_Rule(True), lambda: CR.Alpha1_Beta0_Rule(True)),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_lrp_rules_parity(name):
    model, x, target = _conv()
    ours_rule, captum_rule = RULES[name]
    chosen = [model.conv1, model.conv2, model.fc]
    # rules as data, given to the native method...
    native = NativeLRP(model, rules={m: ours_rule() for m in chosen}).attribute(x, target=target)
    # ... or set on the modules like Captum, with whybox or Captum rule objects
    for module in chosen:
        module.rule = ours_rule()
    by_attribute = W.LRP(model).attribute(x, target=target)
    for module in chosen:
        module.rule = captum_rule()
    from_captum_objects = W.LRP(model).attribute(x, target=target)
    theirs = C.LRP(model).attribute(x, target=target)  # Captum deletes the rule attributes
    for ours in (native.attributions, by_attribute, from_captum_objects):
        _close(ours, theirs)


def test_identity_rule_and_rules_by_type_parity():
    model, x, target = _conv()
    ours = NativeLRP(
        model, rules={nn.BatchNorm2d: IdentityRule(), nn.Linear: EpsilonRule(0.01)}
    ).attribute(x, target=target)
    model.bn.rule = CR.IdentityRule()
    model.fc.rule = CR.EpsilonRule(0.01)
    theirs = C.LRP(model).attribute(x, target=target)
    _close(ours.attributions, theirs)


@pytest.mark.parametrize("layer", ["conv1", "bn", "pool", "conv2", "avg", "fc"])
@pytest.mark.parametrize("to_input", [False, True])
def test_layer_lrp_parity(layer, to_input):
    model, x, target = _conv()
    module = getattr(model, layer)
    kw = dict(target=target, return_convergence_delta=True, attribute_to_layer_input=to_input)
    ours, d1 = W.LayerLRP(model, module).attribute(x, **kw)
    theirs, d2 = C.LayerLRP(model, module).attribute(x, **kw)
    _close(ours, theirs)
    torch.testing.assert_close(d1, d2.detach(), atol=1e-5, rtol=1e-4)


def test_layer_lrp_list_of_layers_and_mlp():
    model, x, target = _conv()
    layers = [model.conv2, model.fc]
    ours, d1 = W.LayerLRP(model, layers).attribute(x, target=target, return_convergence_delta=True)
    theirs, d2 = C.LayerLRP(model, layers).attribute(
        x, target=target, return_convergence_delta=True
    )
    assert isinstance(ours, list) and isinstance(d1, list)
    _close(ours, theirs)
    for a, b in zip(d1, d2):
        torch.testing.assert_close(a, b.detach(), atol=1e-5, rtol=1e-4)
    model, x, target = _mlp()
    ours = W.LayerLRP(model, model.fc2).attribute(x, target=target)
    theirs = C.LayerLRP(model, model.fc2).attribute(x, target=target)
    _close(ours, theirs)


def test_modules_captum_has_no_default_for():
    """Conv1d, BatchNorm1d, AdaptiveAvgPool1d, Sigmoid and nn.Flatten have native defaults;
    Captum (and so the facade) needs explicit rules for them (epsilon on Flatten is the
    identity up to eps)."""
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(3),
        nn.Flatten(),
        nn.Linear(12, 6),
        nn.Tanh(),
        nn.Linear(6, 2),
    ).eval()
    x = torch.randn(3, 2, 9)
    ours = NativeLRP(model).attribute(x, target=1).attributions
    for library in (W, C):  # Captum's default-rule table, as Captum raises
        with pytest.raises(TypeError, match="Conv1d"):
            library.LRP(model).attribute(x, target=1)
    assert module_hook_count(model) == 0
    for library in (C, W):
        for index in (0, 1, 3, 4):  # set again: Captum's call deletes them
            model[index].rule = CR.EpsilonRule()
        _close(ours, library.LRP(model).attribute(x, target=1), rtol=1e-5)
    assert isinstance(default_rule(nn.Sigmoid()), IdentityRule)
    assert default_rule(nn.Flatten()) is None


# ------------------------------------------------------------------------------------------
# Closed forms
# ------------------------------------------------------------------------------------------


def _bias_free():
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 8, bias=False),
        nn.ReLU(),
        nn.Linear(8, 3, bias=False),
    ).eval()
    return model, torch.randn(4, 3, 12, 12)


def test_lrp0_on_bias_free_relu_net_is_input_x_gradient_and_conserves():
    model, x = _bias_free()
    lrp0 = {nn.Conv2d: EpsilonRule(0.0), nn.Linear: EpsilonRule(0.0), nn.MaxPool2d: EpsilonRule(0)}
    result = NativeLRP(model, rules=lrp0).attribute(x, target=[0, 1, 2, 1])
    ixg = InputXGradient(model).attribute(x, target=[0, 1, 2, 1]).attributions
    torch.testing.assert_close(result.attributions, ixg, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        out = model(x).gather(1, torch.tensor([[0], [1], [2], [1]])).squeeze(1)
    torch.testing.assert_close(result.attributions.sum(dim=(1, 2, 3)), out, atol=1e-5, rtol=1e-5)
    assert result.delta.abs().max() < 1e-5
    # the default epsilon (1e-9) is the same up to float precision
    default = NativeLRP(model).attribute(x, target=[0, 1, 2, 1])
    torch.testing.assert_close(default.attributions, ixg, atol=1e-6, rtol=1e-4)
    # relevance is conserved layer by layer too
    for layer in (model[2], model[4], model[6]):
        at_layer = NativeLRP(model, layer=layer).attribute(x, target=[0, 1, 2, 1])
        assert at_layer.delta.abs().max() < 1e-5


def test_chunk_size_does_not_change_lrp():
    model, x, target = _conv()
    small = NativeLRP(model).attribute(x, target=target, chunk_size=1)
    large = NativeLRP(model).attribute(x, target=target, chunk_size=64)
    torch.testing.assert_close(small.attributions, large.attributions)
    torch.testing.assert_close(small.delta, large.delta)


# ------------------------------------------------------------------------------------------
# Errors and side effects
# ------------------------------------------------------------------------------------------


class WithEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][:, -1])


def test_clear_errors():
    model = WithEmbedding()
    x = torch.randn(2, 5, 4)
    with pytest.raises(TypeError, match="no default rule for modules of type LSTM"):
        NativeLRP(model).attribute(x, target=0)
    with pytest.raises(TypeError, match=r"LSTM.*Captum 0.9 has no default rule"):
        W.LRP(model).attribute(x, target=0)
    assert module_hook_count(model) == 0
    with pytest.raises(TypeError, match="'model' parameter of LRP must be an nn.Module"):
        W.LRP(lambda t: t)
    conv, x, _ = _conv()
    conv.fc.rule = "epsilon"
    with pytest.raises(TypeError, match="'rules' parameter of LRP"):
        W.LRP(conv)
    del conv.fc.rule
    with pytest.raises(ParameterError, match="'rules' parameter of LRP must be a mapping"):
        NativeLRP(conv, rules=[EpsilonRule()]).attribute(x, target=0)
    bilinear = nn.Sequential(nn.Linear(4, 4))
    bilinear[0].__class__ = type("MyLinear", (nn.Linear,), {})
    with pytest.raises(TypeError, match="got MyLinear"):
        NativeLRP(bilinear, rules={bilinear[0]: GammaRule()}).attribute(torch.randn(2, 4), target=0)
    with pytest.raises(ParameterError, match="'epsilon' parameter of EpsilonRule"):
        EpsilonRule(-1.0)
    assert module_hook_count(conv) == 0


class Exploding(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.armed = True

    def forward(self, x):
        out = self.inner(x)
        if self.armed:
            raise RuntimeError("boom")
        return out


def test_hooks_removed_after_exception_and_model_unchanged():
    model, x, target = _conv()
    wrapped = Exploding(model)
    state = model_state(wrapped)
    for run in (
        lambda: W.LRP(wrapped).attribute(x, target=0),
        lambda: W.LayerLRP(wrapped, model.conv2).attribute(x, target=0),
        lambda: NativeLRP(wrapped, rules={model.fc: GammaRule()}).attribute(x, target=0),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            run()
        assert module_hook_count(wrapped) == 0
    assert_same_state(wrapped, state)


def test_no_side_effects_on_success(capsys):
    model, x, target = _conv()
    model.fc.rule = GammaRule()
    original, state = x.clone(), model_state(model)
    W.LRP(model).attribute(x, target=target, verbose=True)
    W.LayerLRP(model, model.conv2).attribute(x, target=target, attribute_to_layer_input=True)
    assert "Applied GammaRule(gamma=0.25, set_bias_to_zero=False) on layer Linear" in (
        capsys.readouterr().out
    )
    assert torch.equal(x, original) and not x.requires_grad
    assert_same_state(model, state)
    assert module_hook_count(model) == 0
    # rules set by the user stay, none are added
    assert isinstance(model.fc.rule, GammaRule)
    assert [m for m in model.modules() if hasattr(m, "rule")] == [model.fc]


def test_signatures_match_captum():
    import inspect

    def params(fn):
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    for name in ("LRP", "LayerLRP"):
        ours, theirs = getattr(W, name), getattr(C, name)
        assert params(ours.__init__) == params(theirs.__init__)
        assert params(ours.attribute) == params(theirs.attribute)
    for ours, theirs in [
        (EpsilonRule, CR.EpsilonRule),
        (GammaRule, CR.GammaRule),
        (Alpha1_Beta0_Rule, CR.Alpha1_Beta0_Rule),
    ]:
        assert params(ours.__init__) == params(theirs.__init__)


# ------------------------------------------------------------------------------------------
# The delta is the native method's; empty batches; float64
# ------------------------------------------------------------------------------------------


def test_convergence_delta_is_the_native_conservation_delta():
    from whybox.methods.lrp import conservation_delta

    model, x, target = _conv()
    native = NativeLRP(model).attribute(x, target=target)
    with torch.no_grad():
        out = model(x).gather(1, torch.tensor([[t] for t in target])).squeeze(1)
    torch.testing.assert_close(native.delta, conservation_delta(native.attributions, out))
    # the facade reports Captum's sign, f(x) - sum(relevance), from the same function
    ours = W.LRP(model).compute_convergence_delta(native.attributions, out[:, None])
    theirs = C.LRP(model).compute_convergence_delta(native.attributions, out[:, None])
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours, -native.delta)
    pair = (native.attributions, 2 * native.attributions)
    torch.testing.assert_close(
        W.LRP(model).compute_convergence_delta(pair, out),
        C.LRP(model).compute_convergence_delta(pair, out),
    )


def test_empty_batch_gives_empty_results():
    model, x, target = _conv()
    empty = x[:0]
    native = NativeLRP(model).attribute(empty, target=0)
    assert native.attributions.shape == (0, 3, 12, 12) and native.delta.shape == (0,)
    at_layer = NativeLRP(model, layer=model.conv2).attribute(empty, target=0)
    assert at_layer.attributions.shape == (0, 6, 3, 3) and at_layer.delta.shape == (0,)
    relevance, delta = W.LRP(model).attribute(empty, target=0, return_convergence_delta=True)
    assert relevance.shape == (0, 3, 12, 12) and delta.shape == (0,)
    relevance, delta = W.LayerLRP(model, [model.conv1, model.fc]).attribute(
        empty, target=0, return_convergence_delta=True
    )
    assert [tuple(r.shape) for r in relevance] == [(0, 4, 10, 10), (0, 5)]
    assert [tuple(d.shape) for d in delta] == [(0,), (0,)]
    assert module_hook_count(model) == 0


@pytest.mark.parametrize("name", ["LRP", "LayerLRP"])
def test_float64_in_float64_out_parity(name):
    model, x, target = _conv()
    model, x = model.double(), x.double()
    args = (model,) if name == "LRP" else (model, model.conv2)
    ours, d1 = getattr(W, name)(*args).attribute(x, target=target, return_convergence_delta=True)
    theirs, d2 = getattr(C, name)(*args).attribute(x, target=target, return_convergence_delta=True)
    assert ours.dtype == d1.dtype == torch.float64
    _close(ours, theirs, rtol=1e-10)
    torch.testing.assert_close(d1, d2.detach(), atol=1e-10, rtol=1e-8)
