"""DeepLift / DeepLiftShap: completeness, closed forms, Captum 0.9 parity, engine contracts."""

import copy

import pytest
import torch
from torch import nn

import whybox.attr as W
from _support import assert_same_state, model_state, module_hook_count
from whybox.attr._deeplift_rules import CaptumRules
from whybox.core.registry import get_method
from whybox.core.validation import ParameterError, ParameterTypeError
from whybox.methods.deeplift import DeepLift, DeepLiftShap

RTOL = 1e-5


class Flat(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def _mlp() -> nn.Module:
    """Every elementwise activation Captum supports, plus a Softmax in the middle."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(4, 6),
        nn.ELU(),
        nn.Linear(6, 6),
        nn.LeakyReLU(0.2),
        nn.Linear(6, 6),
        nn.Sigmoid(),
        nn.Linear(6, 5),
        nn.Tanh(),
        nn.Linear(5, 5),
        nn.Softmax(dim=1),
        nn.Linear(5, 3),
    ).eval()


class TwoInputNet(nn.Module):
    """Two inputs with module nonlinearities, a batched extra tensor and a python scalar."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 8)
        self.b = nn.Linear(3, 8)
        self.act_a = nn.Tanh()
        self.act_b = nn.ReLU(inplace=True)
        self.out = nn.Linear(8, 4)
        self.act_out = nn.Sigmoid()

    def forward(self, x1, x2, scale, shift=0.0):
        hidden = self.act_a(self.a(x1)) + self.act_b(self.b(x2)) * scale
        return self.act_out(self.out(hidden)) + shift


def _nets() -> dict:
    """Small float64 nets covering every supported nonlinearity (input shape, model)."""
    torch.manual_seed(0)
    nets = {
        "relu": ((4,), nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))),
        "elu": ((4,), nn.Sequential(nn.Linear(4, 6), nn.ELU(), nn.Linear(6, 3))),
        "leaky": ((4,), nn.Sequential(nn.Linear(4, 6), nn.LeakyReLU(0.1), nn.Linear(6, 3))),
        "tanh_sigmoid": (
            (4,),
            nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Sigmoid(), nn.Linear(6, 3)),
        ),
        "softplus": ((4,), nn.Sequential(nn.Linear(4, 6), nn.Softplus(), nn.Linear(6, 3))),
        "softmax_mid": ((4,), nn.Sequential(nn.Linear(4, 6), nn.Softmax(dim=1), nn.Linear(6, 3))),
        "softmax_out": ((4,), nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))),
        "mlp_all": ((4,), _mlp()),
        "pool1d": (
            (2, 10),
            nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.MaxPool1d(2), Flat(), nn.Linear(16, 3)),
        ),
        "pool2d_overlap": (
            (2, 7, 7),
            nn.Sequential(
                nn.Conv2d(2, 4, 3), nn.MaxPool2d(3, stride=2, padding=1), Flat(), nn.Linear(36, 3)
            ),
        ),
        "pool3d": (
            (1, 5, 5, 5),
            nn.Sequential(nn.Conv3d(1, 2, 2), nn.MaxPool3d(2), Flat(), nn.ELU(), nn.Linear(16, 3)),
        ),
    }
    return {name: (shape, model.double().eval()) for name, (shape, model) in nets.items()}


NETS = _nets()


def _direct_delta(model, attributions, x, b, target):
    """sum(attributions) - (f(x) - f(b)) computed with plain model calls."""
    with torch.no_grad():
        fx = model(x)[torch.arange(len(x)), target]
        fb = model(b)[torch.arange(len(x)), target]
    return attributions.reshape(len(x), -1).sum(1) - (fx - fb)


def _plain_gradient(model, x, target):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[torch.arange(len(x)), target].sum(), x)
    return grad


@pytest.mark.parametrize("name", sorted(NETS))
def test_completeness(name):
    shape, model = NETS[name]
    torch.manual_seed(1)
    x = torch.randn((3,) + shape, dtype=torch.float64)
    b = 0.3 * torch.randn((3,) + shape, dtype=torch.float64)
    target = [0, 1, 2]
    result = DeepLift(model).attribute(x, baselines=b, target=target)
    expected = _direct_delta(model, result.attributions, x, b, torch.tensor(target))
    assert expected.abs().max() < 1e-10
    assert result.delta.shape == (3,)
    assert torch.allclose(result.delta, expected, atol=1e-12)
    # DeepLift is not the plain gradient times (x - b) on these nonlinear nets.
    grads = _plain_gradient(model, x, torch.tensor(target))
    assert not torch.allclose(result.attributions, grads * (x - b), atol=1e-6)


def test_completeness_conv_net_with_inplace_relu(conv_net):
    model = copy.deepcopy(conv_net).double()
    torch.manual_seed(2)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    result = DeepLift(model).attribute(x, baselines=0.0, target=[1, 4, 9], chunk_size=2)
    direct = _direct_delta(
        model, result.attributions, x, torch.zeros_like(x), torch.tensor([1, 4, 9])
    )
    assert direct.abs().max() < 1e-9
    assert result.delta.abs().max() < 1e-9


def test_linear_model_closed_form():
    torch.manual_seed(4)
    model = nn.Linear(5, 3).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    b = torch.randn(1, 5, dtype=torch.float64)
    result = DeepLift(model).attribute(x, baselines=b, target=2)
    assert torch.allclose(result.attributions, (x - b) * model.weight[2].detach())
    local = DeepLift(model, multiply_by_inputs=False).attribute(x, baselines=b, target=2)
    assert torch.allclose(local.attributions, model.weight[2].detach().expand(4, 5))


def test_one_hidden_layer_by_hand():
    """f = w2 . sigmoid(W1 x + c): attribution = (x - b) * W1^T (w2 * dsig / dz)."""
    torch.manual_seed(5)
    lin1, lin2 = nn.Linear(3, 4).double(), nn.Linear(4, 1).double()
    model = nn.Sequential(lin1, nn.Sigmoid(), lin2)
    x = torch.randn(2, 3, dtype=torch.float64)
    b = torch.randn(2, 3, dtype=torch.float64)
    with torch.no_grad():
        zx, zb = lin1(x), lin1(b)
        ratio = (torch.sigmoid(zx) - torch.sigmoid(zb)) / (zx - zb)
        expected = (x - b) * ((ratio * lin2.weight[0]) @ lin1.weight)
    result = DeepLift(model).attribute(x, baselines=b)
    assert torch.allclose(result.attributions, expected, atol=1e-12)


def test_eps_uses_local_gradient_where_input_equals_baseline():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    local = DeepLift(model, multiply_by_inputs=False).attribute(x, baselines=x.clone(), target=1)
    grads = _plain_gradient(model, x, torch.tensor([1, 1]))
    assert torch.allclose(local.attributions, grads, atol=1e-12)
    assert torch.isfinite(local.attributions).all()


def test_softmax_rescale_is_per_example_captum_rules_are_not():
    _, model = NETS["softmax_mid"]
    torch.manual_seed(7)
    x = torch.randn(4, 4, dtype=torch.float64)
    b = torch.zeros_like(x)
    for rules, independent in ((None, True), (CaptumRules(), False)):
        method = DeepLift(model, rules=rules)
        batch = method.attribute(x, baselines=b, target=1).attributions
        alone = method.attribute(x[:1], baselines=b[:1], target=1).attributions
        assert torch.allclose(batch[:1], alone, atol=1e-12) == independent


def test_deeplift_shap_is_mean_of_deeplift_over_baselines():
    _, model = NETS["mlp_all"]
    torch.manual_seed(8)
    x = torch.randn(3, 4, dtype=torch.float64)
    refs = torch.randn(5, 4, dtype=torch.float64)
    shap = DeepLiftShap(model).attribute(x, baselines=refs, target=[0, 2, 1])
    singles = [
        DeepLift(model).attribute(x, baselines=r.expand_as(x), target=[0, 2, 1]) for r in refs
    ]
    mean = torch.stack([s.attributions for s in singles]).mean(0)
    assert torch.allclose(shap.attributions, mean, atol=1e-12)
    # One delta per (example, baseline) pair, example-major, as Captum reports it.
    pair_deltas = torch.stack([s.delta for s in singles], dim=1).reshape(-1)
    assert shap.delta.shape == (15,)
    assert torch.allclose(shap.delta, pair_deltas, atol=1e-12)
    assert shap.delta.abs().max() < 1e-10


@pytest.mark.parametrize(
    "reference",
    ["default", "scalar", "one_example", "one_row"],
)
def test_deeplift_shap_with_one_reference_is_deeplift_against_it(reference):
    """None (one all-zero reference), a number, one example's shape or a (1, ...)
    distribution: DeepLiftShap is DeepLift against that one reference for every example."""
    _, model = NETS["mlp_all"]
    torch.manual_seed(12)
    x = torch.randn(3, 4, dtype=torch.float64)
    row = torch.randn(4, dtype=torch.float64)
    given, same = {
        "default": (None, torch.zeros(3, 4, dtype=torch.float64)),
        "scalar": (0.7, torch.full((3, 4), 0.7, dtype=torch.float64)),
        "one_example": (row, row.expand(3, 4)),
        "one_row": (row[None], row.expand(3, 4)),
    }[reference]
    shap = DeepLiftShap(model).attribute(x, baselines=given, target=[0, 2, 1])
    single = DeepLift(model).attribute(x, baselines=same, target=[0, 2, 1])
    assert shap.parameters["n_refs"] == 1
    assert torch.allclose(shap.attributions, single.attributions, atol=1e-12)
    assert shap.delta.shape == (3,)
    assert torch.allclose(shap.delta, single.delta, atol=1e-12)
    assert shap.delta.abs().max() < 1e-10
    # a different constant reference gives a different answer (the reference is used)
    other = DeepLiftShap(model).attribute(x, baselines=-0.7, target=[0, 2, 1])
    assert not torch.allclose(other.attributions, shap.attributions, atol=1e-6)


def test_deeplift_shap_one_reference_for_tuple_inputs_broadcasts():
    model = TwoInputNet().double().eval()
    torch.manual_seed(13)
    x = (torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
    refs = (torch.randn(1, 5, dtype=torch.float64), 0.25)
    args = (torch.rand(4, 1, dtype=torch.float64) + 0.5,)
    shap = DeepLiftShap(model).attribute(x, baselines=refs, target=1, forward_args=args)
    single = DeepLift(model).attribute(x, baselines=refs, target=1, forward_args=args)
    for a, b in zip(shap.attributions, single.attributions):
        assert torch.allclose(a, b, atol=1e-12)
    # one reference for the first input, three for the second: the single one broadcasts
    three = (refs[0], torch.randn(3, 3, dtype=torch.float64))
    shap3 = DeepLiftShap(model).attribute(x, baselines=three, target=1, forward_args=args)
    assert shap3.delta.shape == (12,) and shap3.delta.abs().max() < 1e-10


@pytest.mark.parametrize("method", [DeepLift, DeepLiftShap])
@pytest.mark.parametrize("scope", ["input", "layer", "tuple"])
def test_empty_batch_gives_empty_results(conv_net, method, scope):
    model = copy.deepcopy(conv_net).double()
    layer = model.conv2 if scope == "layer" else None
    if scope == "tuple":
        model = TwoInputNet().double().eval()
        x = (torch.randn(0, 5, dtype=torch.float64), torch.randn(0, 3, dtype=torch.float64))
        args = (torch.rand(0, 1, dtype=torch.float64),)
    else:
        x, args = torch.randn(0, 3, 16, 16, dtype=torch.float64), None
    refs = None if method is DeepLift else 0.0
    result = method(model, layer=layer).attribute(x, baselines=refs, target=0, forward_args=args)
    if scope == "layer":
        assert result.attributions.shape == (0, 8, 6, 6)
        assert result.attributions.dtype == torch.float64
    elif scope == "tuple":
        assert [a.shape for a in result.attributions] == [(0, 5), (0, 3)]
        assert all(a.dtype == torch.float64 for a in result.attributions)
    else:
        assert result.attributions.shape == x.shape and result.attributions.dtype == x.dtype
    assert result.delta.shape == (0,) and result.delta.dtype == torch.float64
    assert module_hook_count(model) == 0


@pytest.mark.parametrize("method", [DeepLift, DeepLiftShap])
@pytest.mark.parametrize("rules", [None, CaptumRules], ids=["rescale", "captum"])
def test_chunk_size_invariance(conv_net, method, rules):
    torch.manual_seed(9)
    x = torch.randn(3, 3, 16, 16)
    b = (
        0.1 * torch.randn(2, 3, 16, 16)
        if method is DeepLiftShap
        else 0.1 * torch.randn(3, 3, 16, 16)
    )
    small = method(conv_net, rules=rules and rules()).attribute(
        x, baselines=b, target=[1, 2, 3], chunk_size=1
    )
    big = method(conv_net, rules=rules and rules()).attribute(
        x, baselines=b, target=[1, 2, 3], chunk_size=999
    )
    assert torch.allclose(small.attributions, big.attributions, rtol=1e-5, atol=1e-7)
    assert torch.allclose(small.delta, big.delta, atol=1e-5)


def test_chunk_size_invariance_softmax_captum_rules():
    """Captum's batch-wide softmax centring: all pairs go in one chunk whatever chunk_size."""
    model = _mlp().double()
    torch.manual_seed(10)
    x = torch.randn(5, 4, dtype=torch.float64)
    method = DeepLift(model, rules=CaptumRules())
    one = method.attribute(x, target=1, chunk_size=1).attributions
    big = method.attribute(x, target=1, chunk_size=100).attributions
    assert torch.allclose(one, big, atol=1e-12)


def test_custom_attribution_func_arities():
    _, model = NETS["mlp_all"]
    torch.manual_seed(11)
    x = torch.randn(3, 4, dtype=torch.float64)
    b = torch.randn(3, 4, dtype=torch.float64)
    local = DeepLift(model, multiply_by_inputs=False).attribute(x, baselines=b, target=0)
    m = local.attributions
    one = DeepLift(model).attribute(
        x, baselines=b, target=0, custom_attribution_func=lambda mult: (2 * mult[0],)
    )
    two = DeepLift(model).attribute(
        x, baselines=b, target=0, custom_attribution_func=lambda mult, inp: (mult[0] * inp[0],)
    )
    three = DeepLift(model).attribute(
        x,
        baselines=b,
        target=0,
        custom_attribution_func=lambda mult, inp, base: (mult[0] * (inp[0] - base[0]),),
    )
    assert torch.allclose(one.attributions, 2 * m)
    assert torch.allclose(two.attributions, m * x)
    assert torch.allclose(three.attributions, m * (x - b))
    assert three.delta.abs().max() < 1e-10
    with pytest.raises(ValueError, match="custom_attribution_func"):
        DeepLift(model).attribute(x, custom_attribution_func=lambda a, b, c, d: a)


def test_hooks_removed_after_exception_mid_forward():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)
            self.act = nn.ReLU(inplace=True)
            self.pool = nn.MaxPool1d(2)
            self.soft = nn.Softmax(dim=1)

        def forward(self, x):
            h = self.pool(self.act(self.lin(x))[:, None])
            self.soft(h[:, 0])
            raise RuntimeError("boom")

    model = Exploding()
    before = module_hook_count(model)
    for method in (DeepLift(model), DeepLiftShap(model), DeepLift(model, rules=CaptumRules())):
        with pytest.raises(RuntimeError, match="boom"):
            method.attribute(torch.randn(2, 3), baselines=torch.zeros(2, 3))
        assert module_hook_count(model) == before == 0


def test_model_and_inputs_unchanged(conv_net):
    model = conv_net.train()  # mode must be kept as found, whatever it is
    state = model_state(model)
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    b = torch.randn(2, 3, 16, 16)
    x_copy, b_copy = x.detach().clone(), b.clone()
    DeepLift(model).attribute(x, baselines=b, target=1)
    DeepLiftShap(model).attribute(x, baselines=b, target=1)
    assert_same_state(model, state)
    assert model.training
    assert torch.equal(x.detach(), x_copy) and torch.equal(b, b_copy)
    assert x.requires_grad and x.grad is None and not b.requires_grad
    assert module_hook_count(model) == 0


def test_errors():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="'model' parameter of DeepLift must be an nn.Module"):
        DeepLift(lambda t: t.sum(1)).attribute(x)
    with pytest.raises(ValueError, match="'baselines' parameter of DeepLift"):
        DeepLift(model).attribute(x, baselines=torch.zeros(4))
    with pytest.raises(ParameterTypeError, match="'rules' parameter of DeepLift"):
        DeepLift(model, rules="captum").attribute(x, target=0)
    with pytest.raises(ParameterError, match="'rules' parameter of DeepLift must be a mapping"):
        DeepLift(model, rules={"ReLU": lambda m, i, o: o}).attribute(x, target=0)
    with pytest.raises(ValueError, match="'eps' parameter"):
        DeepLift(model, eps=-1.0).attribute(x, target=0)
    with pytest.raises(ParameterError, match="'eps' parameter of DeepLift must be left"):
        DeepLift(model, eps=1e-3, rules=CaptumRules()).attribute(x, target=0)
    with pytest.raises(ParameterTypeError, match="'return_delta' parameter of DeepLift"):
        DeepLift(model).attribute(x, target=0, return_delta=1)
    with pytest.raises(ParameterTypeError, match="'custom_attribution_func' parameter"):
        DeepLift(model).attribute(x, target=0, custom_attribution_func=3)
    with pytest.raises(ValueError, match="'baselines' parameter of DeepLiftShap"):
        W.DeepLiftShap(model).attribute(x, baselines=torch.zeros(1, 3), target=0)
    with pytest.raises(ValueError, match="'baselines' parameter of DeepLiftShap"):
        DeepLiftShap(model).attribute(
            (x, x), baselines=(torch.zeros(2, 3), torch.zeros(3, 3)), forward_args=None
        )


def test_registry():
    assert get_method("deeplift") is DeepLift
    assert get_method("deeplift_shap") is DeepLiftShap
    assert DeepLift.has_delta and DeepLift.needs_module and DeepLiftShap.has_delta


# ---------------------------------------------------------------------------------------------
# Parity with Captum 0.9 (test oracle only)
# ---------------------------------------------------------------------------------------------

captum_attr = pytest.importorskip("captum.attr")


def _close(ours, theirs, rtol=RTOL):
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _close(a, b, rtol)
        return
    theirs = theirs.detach()
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    scale = theirs.abs().max().clamp_min(1e-12)
    error = float((ours - theirs).abs().max() / scale)
    assert error <= rtol, error


def _parity_cases(conv_net, dtype):
    torch.manual_seed(0)
    conv = copy.deepcopy(conv_net).to(dtype)
    two = TwoInputNet().to(dtype).eval()
    mlp = _mlp().to(dtype)

    def t(*shape):
        return torch.randn(*shape, dtype=dtype)

    return {
        "conv": dict(
            model=conv,
            inputs=t(3, 3, 16, 16),
            baselines=0.1 * t(3, 3, 16, 16),
            distribution=0.1 * t(4, 3, 16, 16),
            target=[1, 4, 9],
            args=None,
        ),
        "multi": dict(
            model=two,
            inputs=(t(4, 5), t(4, 3)),
            baselines=(0.1 * t(1, 5), 0.5),
            distribution=(t(3, 5), t(3, 3)),
            target=2,
            args=(torch.rand(4, 1, dtype=dtype) + 0.5, 0.25),
        ),
        "mlp": dict(
            model=mlp,
            inputs=t(4, 4),
            baselines=0.2 * t(4, 4),
            distribution=t(3, 4),
            target=torch.tensor([0, 1, 2, 0]),
            args=None,
        ),
    }


def _batch(value):
    return (value[0] if isinstance(value, tuple) else value).shape[0]


def _run(lib, cls, c, baselines, **kwargs):
    return getattr(lib, cls)(c["model"], **kwargs.pop("init", {})).attribute(
        c["inputs"],
        baselines,
        target=c["target"],
        additional_forward_args=c["args"],
        return_convergence_delta=True,
        **kwargs,
    )


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["conv", "multi", "mlp"])
def test_parity_deeplift(conv_net, case, dtype):
    c = _parity_cases(conv_net, dtype)[case]
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    for init in ({}, {"multiply_by_inputs": False}):
        ours = _run(W, "DeepLift", c, c["baselines"], init=dict(init))
        theirs = _run(captum_attr, "DeepLift", c, c["baselines"], init=dict(init))
        _close(ours[0], theirs[0])
        assert ours[1].shape == theirs[1].shape == (_batch(c["inputs"]),)
        assert torch.allclose(ours[1], theirs[1], rtol=1e-4, atol=atol)
        plain = W.DeepLift(c["model"], **init).attribute(
            c["inputs"], c["baselines"], target=c["target"], additional_forward_args=c["args"]
        )
        _close(plain, ours[0])  # without the delta: attributions only, in the inputs' structure
    ours = _run(W, "DeepLift", c, c["baselines"], custom_attribution_func=lambda m, i, b: m)
    theirs = _run(
        captum_attr, "DeepLift", c, c["baselines"], custom_attribution_func=lambda m, i, b: m
    )
    _close(ours[0], theirs[0])
    assert torch.allclose(ours[1], theirs[1], rtol=1e-4, atol=atol)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["conv", "multi", "mlp"])
def test_parity_deeplift_shap(conv_net, case, dtype):
    c = _parity_cases(conv_net, dtype)[case]
    ours = _run(W, "DeepLiftShap", c, c["distribution"])
    theirs = _run(captum_attr, "DeepLiftShap", c, c["distribution"])
    _close(ours[0], theirs[0])
    n_pairs = _batch(c["inputs"]) * _batch(c["distribution"])
    assert ours[1].shape == theirs[1].shape == (n_pairs,)
    assert torch.allclose(
        ours[1], theirs[1], rtol=1e-4, atol=1e-5 if dtype == torch.float32 else 1e-10
    )
    ours = _run(W, "DeepLiftShap", c, c["distribution"], custom_attribution_func=lambda m: m)
    theirs = _run(
        captum_attr, "DeepLiftShap", c, c["distribution"], custom_attribution_func=lambda m: m
    )
    _close(ours[0], theirs[0])


@pytest.mark.filterwarnings("ignore")
def test_parity_facade_attributes():
    model = _mlp()
    ours, theirs = W.DeepLift(model), captum_attr.DeepLift(model)
    assert ours.model is model and ours.eps == theirs.eps == 1e-10
    assert ours.multiplies_by_inputs == theirs.multiplies_by_inputs is True
    assert ours.has_convergence_delta() is theirs.has_convergence_delta() is True
    assert W.DeepLiftShap(model, multiply_by_inputs=False).multiplies_by_inputs is False


@pytest.mark.filterwarnings("ignore")
def test_facade_empty_batch_and_float64(conv_net):
    model = copy.deepcopy(conv_net).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    refs = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    attrs, delta = W.DeepLift(model).attribute(x, target=1, return_convergence_delta=True)
    assert attrs.dtype == delta.dtype == torch.float64 and delta.shape == (2,)
    attrs, delta = W.DeepLiftShap(model).attribute(x, refs, target=1, return_convergence_delta=True)
    assert attrs.dtype == delta.dtype == torch.float64 and delta.shape == (6,)
    empty = x[:0]
    attrs, delta = W.DeepLift(model).attribute(empty, target=1, return_convergence_delta=True)
    assert attrs.shape == (0, 3, 16, 16) and delta.shape == (0,)
    attrs, delta = W.DeepLiftShap(model).attribute(
        empty, refs, target=1, return_convergence_delta=True
    )
    assert attrs.shape == (0, 3, 16, 16) and attrs.dtype == torch.float64
    assert delta.shape == (0,)
