"""DeepLift with the references run apart (``reference_pass``), against the paired layout.

Under the textbook rules the two rows of a pair share every multiplier, so the references
need no backward: :mod:`whybox.methods.deeplift_apart` runs them first without one and the
input rows alone with autograd. Checked here:

* the same attributions and deltas as the paired layout (float64: to ~1e-12; float32: to
  rounding) on CNNs with max pools (overlapping, 1d / 3d, in-place ReLU), residual blocks
  with a reused module, every elementwise nonlinearity, softmax, several inputs, forward
  arguments, DeepLiftShap, per-example and shared baselines, chunking, a custom
  attribution function, ``multiply_by_inputs=False``;
* the references really get no backward (the first layer's gradient has ``N`` rows, not
  ``2 N``) and go through the model once, before the inputs;
* a forward that does not retrace the references' (a branch on the data, a kept value
  changed in place) goes back to the paired layout: exactly its numbers;
* ``"auto"`` keeps the paired layout for rules other than the textbook ones, layer scope
  and batch norm in training mode, and ``"apart"`` refuses them by name;
* two threads on one model get their sequential numbers; no hooks are left, after errors
  too, and the model is untouched.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from _support import run_together
from whybox.methods import deeplift as deeplift_module
from whybox.methods.deeplift import DeepLift, DeepLiftShap
from whybox.methods.deeplift_rules import MaxPoolRescale, Rescale, RuleSet


@pytest.fixture(autouse=True)
def _apart_from_any_size(monkeypatch):
    """These models are small: let ``"auto"`` run the references apart at any size (the
    size rule has its own test)."""
    monkeypatch.setattr(deeplift_module, "APART_MIN_ELEMENTS", 0)


def test_auto_keeps_small_calls_paired(monkeypatch):
    monkeypatch.setattr(deeplift_module, "APART_MIN_ELEMENTS", 16384)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    try:
        DeepLift(model).attribute(torch.randn(32, 12), target=0)  # 384 elements: paired
        assert seen == [64]
        seen.clear()
        # 4 examples x 8 references of 512 elements = 16384: apart (the 8 references once)
        wide = nn.Sequential(nn.Linear(512, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
        handle.remove()
        handle = wide.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
        DeepLiftShap(wide).attribute(torch.randn(4, 512), baselines=torch.randn(8, 512), target=0)
        assert seen == [8, 32]
    finally:
        handle.remove()


def _cnn(inplace: bool = False) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 12),
        nn.ReLU(),
        nn.Linear(12, 5),
    )


class _Residual(nn.Module):
    """A residual block whose one ReLU module runs twice per forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.head = nn.Linear(4 * 5, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv1(x))
        h = self.relu(self.conv2(h) + h)
        return self.head(self.pool(h).flatten(1))


class _Elementwise(nn.Module):
    """Every elementwise nonlinearity of the textbook set, then a softmax output."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(6))
        self.acts = nn.ModuleList(
            [nn.ELU(), nn.Sigmoid(), nn.Tanh(), nn.Softplus(), nn.LeakyReLU(0.1), nn.ReLU()]
        )
        self.out = nn.Linear(6, 4)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        for layer, act in zip(self.layers, self.acts):
            x = act(layer(x))
        return self.softmax(self.out(x))


class _TwoInputs(nn.Module):
    """Two inputs and an extra forward argument (a per-example shift)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Conv1d(1, 2, 3)
        self.pool = nn.MaxPool1d(2)
        self.relu = nn.ReLU()
        self.head = nn.Linear(5 + 2 * 3, 3)

    def forward(self, x: Tensor, y: Tensor, scale: Tensor) -> Tensor:
        h = torch.cat([self.relu(self.a(x)), self.pool(self.relu(self.b(y))).flatten(1)], 1)
        return self.head(h) + scale[:, None]


class _Pool3d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 3, 2)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool3d(2)
        self.head = nn.Linear(3 * 2 * 2 * 2, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


def _model(name: str, dtype: torch.dtype) -> tuple[nn.Module, tuple[Tensor, ...]]:
    torch.manual_seed(0)
    n = 5
    if name == "cnn":
        model, inputs = _cnn(), (torch.randn(n, 3, 8, 8),)
    elif name == "cnn_inplace":
        model, inputs = _cnn(inplace=True), (torch.randn(n, 3, 8, 8),)
    elif name == "residual":
        model, inputs = _Residual(), (torch.randn(n, 2, 10),)
    elif name == "elementwise":
        model, inputs = _Elementwise(), (torch.randn(n, 6),)
    elif name == "pool3d":
        model, inputs = _Pool3d(), (torch.randn(n, 1, 5, 5, 5),)
    else:
        model, inputs = _TwoInputs(), (torch.randn(n, 4), torch.randn(n, 1, 8))
    model = model.to(dtype).eval()
    return model, tuple(t.to(dtype) for t in inputs)


MODELS = ("cnn", "cnn_inplace", "residual", "elementwise", "pool3d", "two_inputs")


def _attribute(model, inputs, mode, *, shap=False, **options):
    """The explanation, checking which layout ran: ``"apart"`` must not have gone back to
    the paired layout (no forward of input and reference rows together)."""
    method_options = {
        k: options.pop(k) for k in ("multiply_by_inputs", "delta_forwards") if k in options
    }
    cls = DeepLiftShap if shap else DeepLift
    explainer = cls(model, reference_pass=mode, **method_options)
    forwards: list[str] = []

    def layout(module, args):
        # apart, a reference forward is run without autograd recording on its rows
        forwards.append("grad" if args[0].requires_grad else "plain")

    handle = model.register_forward_pre_hook(layout)
    try:
        result = explainer.attribute(inputs if len(inputs) > 1 else inputs[0], **options)
    finally:
        handle.remove()
    if method_options.get("delta_forwards"):
        forwards = forwards[:-2]  # the inputs' and references' own forwards for the delta
    if mode == "apart":
        # references (no grad on their rows), then inputs, per chunk, or the distinct
        # references once, then every chunk's inputs: never together
        half = len(forwards) // 2
        per_chunk = forwards[0::2] == ["plain"] * half and forwards[1::2] == ["grad"] * half
        assert forwards[0] == "plain", forwards
        assert per_chunk or forwards[1:] == ["grad"] * (len(forwards) - 1), forwards
    else:
        # one forward of input and reference rows together (then, with delta_forwards,
        # one of each alone, without gradients)
        assert forwards[0] == "grad", forwards
    return result


def _forward_args(name: str, inputs: tuple[Tensor, ...]):
    if name != "two_inputs":
        return None
    return (torch.linspace(0.5, 2.0, inputs[0].shape[0], dtype=inputs[0].dtype),)


class _Rows:
    """An explanation's attributions and delta restricted to some examples."""

    def __init__(self, explanation, rows: slice) -> None:
        a = explanation.attributions
        self.attributions = tuple(t[rows] for t in a) if isinstance(a, tuple) else a[rows]
        self.delta = None if explanation.delta is None else explanation.delta[rows]


def _rows(explanation, rows: slice) -> _Rows:
    return _Rows(explanation, rows)


def _assert_same(paired, apart, dtype):
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    a, b = paired.attributions, apart.attributions
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        torch.testing.assert_close(y, x, **tol)
    if paired.delta is not None:
        torch.testing.assert_close(apart.delta, paired.delta, **tol)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("by_inputs", [True, False], ids=["attributions", "multipliers"])
def test_deeplift_apart_equals_paired(name, dtype, by_inputs):
    model, inputs = _model(name, dtype)
    baselines = tuple(0.3 * torch.randn_like(t) for t in inputs)
    for b, x in zip(baselines, inputs):
        # one example equal to its reference (every difference there is exactly 0), one
        # equal in about half its positions: the rules' local-gradient paths
        b[0] = x[0]
        b[1] = torch.where(torch.rand(x[1].shape) < 0.5, x[1], b[1])
    options = {
        "multiply_by_inputs": by_inputs,
        "baselines": baselines if len(baselines) > 1 else baselines[0],
        "target": torch.tensor([0, 1, 2, 1, 0]),
        "forward_args": _forward_args(name, inputs),
    }
    paired = _attribute(model, inputs, "paired", **options)
    apart = _attribute(model, inputs, "apart", **options)
    if not by_inputs and dtype == torch.float32:
        # float32 multipliers where x == b: the paired layout computes the two rows in
        # different rows of one matmul, which float32 rounds differently (~1e-8), so its
        # ratio there is round-off over round-off; apart, the differences are exactly 0
        # and the rules take the local gradient. Compare the other examples.
        paired = _rows(paired, slice(2, None))
        apart = _rows(apart, slice(2, None))
    _assert_same(paired, apart, dtype)
    if by_inputs and dtype == torch.float64 and name != "elementwise":
        # the textbook rules are complete: the delta is round-off
        assert apart.delta.abs().max() < 1e-10


@pytest.mark.parametrize("name", ("cnn", "residual", "two_inputs"))
def test_deeplift_shap_apart_equals_paired(name):
    model, inputs = _model(name, torch.float64)
    refs = tuple(torch.randn((3,) + t.shape[1:], dtype=t.dtype) for t in inputs)
    options = {
        "baselines": refs if len(refs) > 1 else refs[0],
        "target": 1,
        "forward_args": _forward_args(name, inputs),
        # chunks that split an example's references
        "chunk_size": 8,
    }
    paired = _attribute(model, inputs, "paired", shap=True, **options)
    apart = _attribute(model, inputs, "apart", shap=True, **options)
    _assert_same(paired, apart, torch.float64)


@pytest.mark.parametrize(
    "options",
    [
        {"multiply_by_inputs": False},
        {"delta_forwards": True},
        {"chunk_size": 4},
        {"baselines": 0.25},
        {
            "custom_attribution_func": lambda m, x, b: tuple(
                mi * (xi + bi) for mi, xi, bi in zip(m, x, b)
            )
        },
    ],
    ids=["multipliers", "delta_forwards", "chunked", "number_baseline", "custom"],
)
def test_deeplift_apart_options(options):
    model, (x,) = _model("cnn", torch.float64)
    options = {"target": 3, **options}
    paired = _attribute(model, (x,), "paired", **dict(options))
    apart = _attribute(model, (x,), "apart", **dict(options))
    _assert_same(paired, apart, torch.float64)


def test_apart_is_chunk_invariant():
    model, (x,) = _model("cnn", torch.float64)
    whole = _attribute(model, (x,), "apart", target=2)
    for chunk in (2, 6):
        part = _attribute(model, (x,), "apart", target=2, chunk_size=chunk)
        torch.testing.assert_close(part.attributions, whole.attributions, rtol=1e-12, atol=1e-14)


def _gradient_rows(
    model: nn.Module, mode: str, x: Tensor, *, shap: bool = False, **kwargs
) -> tuple[list[int], list[int]]:
    """Rows of every forward the first layer ran, and rows of every gradient it got."""
    forwards: list[int] = []
    backwards: list[int] = []

    def hook(module, args, out):
        forwards.append(out.shape[0])
        if out.requires_grad:
            out.register_hook(lambda grad: backwards.append(grad.shape[0]))

    handle = model[0].register_forward_hook(hook)
    try:
        options = {k: kwargs.pop(k) for k in ("baselines", "chunk_size") if k in kwargs}
        cls = DeepLiftShap if shap else DeepLift
        cls(model, reference_pass=mode, **kwargs).attribute(x, target=0, **options)
    finally:
        handle.remove()
    return forwards, backwards


def test_references_get_no_backward():
    model, (x,) = _model("cnn", torch.float32)
    n = x.shape[0]
    b = torch.randn_like(x)
    assert _gradient_rows(model, "paired", x, baselines=b) == ([2 * n], [2 * n])
    # the references, then the inputs: one backward, of the input rows
    assert _gradient_rows(model, "apart", x, baselines=b) == ([n, n], [n])
    assert _gradient_rows(model, "auto", x, baselines=b) == ([n, n], [n])


def test_shared_references_run_once():
    model, (x,) = _model("cnn", torch.float32)
    n = x.shape[0]
    # one baseline for every example (the zero default, a number, one row): one reference
    # row through the model, then the inputs
    for baselines in (None, 0.5, torch.randn(1, *x.shape[1:])):
        assert _gradient_rows(model, "apart", x, baselines=baselines) == ([1, n], [n])
    # a distribution of 3 references: them once, then every (example, reference) pair,
    # also when the chunks split an example's references
    refs = torch.randn(3, *x.shape[1:])
    assert _gradient_rows(model, "apart", x, shap=True, baselines=refs) == ([3, 3 * n], [3 * n])
    rows = _gradient_rows(model, "apart", x, shap=True, baselines=refs, chunk_size=8)
    assert rows == ([3, 4, 4, 4, 3], [4, 4, 4, 3])


@pytest.mark.parametrize("name", ["cnn", "residual", "pool3d", "elementwise"])
@pytest.mark.parametrize("by_inputs", [True, False], ids=["attributions", "multipliers"])
def test_shared_references_give_the_paired_numbers(name, by_inputs):
    model, (x,) = _model(name, torch.float64)
    refs = torch.randn(3, *x.shape[1:], dtype=torch.float64)
    refs[1] = torch.where(torch.rand(refs[1].shape) < 0.5, x[1], refs[1])  # some equal
    one = refs[:1]  # one reference row broadcast to every example
    for shap, baselines in ((False, one), (False, 0.25), (True, refs)):
        options = {
            "baselines": baselines,
            "target": torch.tensor([0, 1, 2, 1, 0]),
            "multiply_by_inputs": by_inputs,
        }
        paired = _attribute(model, (x,), "paired", shap=shap, **dict(options))
        # one chunk; chunks of whole examples (the references tile them); chunks that
        # split an example's references (each pair's reference gathered)
        for chunk in ("auto", 12, 8):
            apart = _attribute(model, (x,), "apart", shap=shap, chunk_size=chunk, **dict(options))
            _assert_same(paired, apart, torch.float64)


class _Branching(nn.Module):
    """Runs an extra ReLU module for rows whose sum is positive (data-dependent flow)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.relu = nn.ReLU()
        self.extra = nn.Tanh()
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.lin(x))
        if bool(x.sum() > 0):
            h = self.extra(h)
        return self.head(h)


class _ChangesKept(nn.Module):
    """Changes a ReLU's output in place after the module ran."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.lin(x))
        h.mul_(2.0)
        return self.head(h)


@pytest.mark.parametrize("cls", [_Branching, _ChangesKept])
def test_forward_that_does_not_retrace_goes_back_to_paired(cls):
    torch.manual_seed(0)
    model = cls().double().eval()
    x = torch.rand(3, 4, dtype=torch.float64) + 0.5  # positive sum: the inputs branch
    b = -torch.rand(3, 4, dtype=torch.float64)  # negative sum: the references do not
    paired = DeepLift(model, reference_pass="paired").attribute(x, baselines=b, target=1)
    apart = DeepLift(model, reference_pass="apart").attribute(x, baselines=b, target=1)
    assert torch.equal(apart.attributions, paired.attributions)
    assert torch.equal(apart.delta, paired.delta)


def test_auto_keeps_paired_where_apart_cannot_run():
    model, (x,) = _model("cnn", torch.float32)
    # a rule of the user's own (plain gradient), layer scope: the paired layout, and
    # "apart" is refused by name
    own = RuleSet({nn.ReLU: lambda module, x, out: None})
    for kwargs in ({"rules": own}, {"layer": model[3]}):
        rows = []

        def hook(module, args, out, rows=rows):
            rows.append(out.shape[0])

        handle = model[0].register_forward_hook(hook)
        try:
            DeepLift(model, **kwargs).attribute(x, target=0)
        finally:
            handle.remove()
        assert rows == [2 * x.shape[0]]
        with pytest.raises(ValueError, match="reference_pass"):
            DeepLift(model, reference_pass="apart", **kwargs).attribute(x, target=0)


def test_batch_norm_in_training_keeps_paired():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    model.train()
    x = torch.randn(6, 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    got = DeepLift(model).attribute(x, target=0)
    model.load_state_dict(state)
    paired = DeepLift(model, reference_pass="paired").attribute(x, target=0)
    assert torch.equal(got.attributions, paired.attributions)
    model.load_state_dict(state)
    with pytest.raises(ValueError, match="reference_pass"):
        DeepLift(model, reference_pass="apart").attribute(x, target=0)


def test_textbook_rules_given_as_a_rule_set_run_apart():
    model, (x,) = _model("cnn", torch.float32)
    rules = RuleSet({nn.ReLU: Rescale(), nn.MaxPool2d: MaxPoolRescale()})
    b = torch.randn_like(x)
    assert _gradient_rows(model, "auto", x, rules=rules, baselines=b) == ([5, 5], [5])


def test_bad_reference_pass_is_named():
    model, (x,) = _model("cnn", torch.float32)
    with pytest.raises(ValueError, match="reference_pass"):
        DeepLift(model, reference_pass="sideways").attribute(x, target=0)


def test_two_threads_on_one_model():
    model, (x,) = _model("cnn", torch.float64)
    b1, b2 = torch.zeros_like(x), 0.5 * torch.randn_like(x)
    explainer = DeepLift(model, reference_pass="apart")
    alone = [explainer.attribute(x, baselines=b, target=1).attributions for b in (b1, b2)]
    for _ in range(3):
        together = run_together(
            lambda: explainer.attribute(x, baselines=b1, target=1).attributions,
            lambda: explainer.attribute(x, baselines=b2, target=1).attributions,
        )
        assert torch.equal(together[0], alone[0])
        assert torch.equal(together[1], alone[1])


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_model_untouched_and_no_hooks_left_after_errors():
    model, (x,) = _model("cnn", torch.float32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = _hook_count(model)
    DeepLift(model).attribute(x, target=0)
    assert _hook_count(model) == before

    calls = {"n": 0}

    def fail_on_inputs(module, args):
        calls["n"] += 1
        if calls["n"] == 2:  # the second forward: the input rows, after the references'
            raise RuntimeError("boom")

    handle = model[3].register_forward_pre_hook(fail_on_inputs)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            DeepLift(model, reference_pass="apart").attribute(x, target=0)
    finally:
        handle.remove()
    assert _hook_count(model) == before
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    # and the next call is as before
    again = DeepLift(model).attribute(x, target=0)
    paired = DeepLift(model, reference_pass="paired").attribute(x, target=0)
    torch.testing.assert_close(again.attributions, paired.attributions, rtol=1e-5, atol=1e-6)


def test_empty_batch():
    model, (x,) = _model("cnn", torch.float32)
    out = DeepLift(model, reference_pass="apart").attribute(x[:0], target=0)
    assert out.attributions.shape == (0,) + x.shape[1:]


class _PoolThenGelu(nn.Module):
    """GELU has no textbook rule: in the paired layout its gradient differs between the two
    rows of a pair, and the max-pool rule below mixes the reference row's into the input
    row's multiplier. Apart cannot reproduce that: the call goes back to the paired layout."""

    def __init__(self, gated: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.gelu = nn.GELU()
        self.gated = gated
        self.head = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(self.relu(self.conv(x))).flatten(1)
        # a gate computed from the row itself (a product of two row-dependent tensors)
        h = h * torch.sigmoid(h.detach()) if self.gated else self.gelu(h)
        return self.head(h)


@pytest.mark.parametrize("gated", [False, True], ids=["gelu", "gate"])
def test_unshared_gradients_above_a_pool_go_back_to_paired(gated):
    torch.manual_seed(3)
    model = _PoolThenGelu(gated).double().eval()
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    b = 0.3 * torch.randn_like(x)
    b = torch.where(torch.rand(b.shape) < 0.5, x, b)  # windows without a difference
    paired = DeepLift(model, reference_pass="paired").attribute(x, baselines=b, target=1)
    forwards: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a: forwards.append(a[0].shape[0]))
    try:
        again = DeepLift(model).attribute(x, baselines=b, target=1)
        later = DeepLift(model).attribute(x, baselines=b, target=1)
    finally:
        handle.remove()
    assert torch.equal(again.attributions, paired.attributions)
    assert torch.equal(later.attributions, paired.attributions)
    # the first call tried apart (references, inputs) before the paired forward; the second
    # went paired straight away
    assert forwards == [4, 4, 8, 8]


def test_unshared_gradients_without_a_pool_still_run_apart():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 2))
    model = model.double().eval()
    x = torch.randn(3, 5, dtype=torch.float64)
    b = torch.randn_like(x)
    paired = _attribute(model, (x,), "paired", baselines=b, target=0)
    apart = _attribute(model, (x,), "apart", baselines=b, target=0)
    _assert_same(paired, apart, torch.float64)


def test_graph_check_reads_the_ops_between_output_and_pool():
    from whybox.core.hooks import module_rules
    from whybox.methods.deeplift_apart import ReferencePass, separable_rules
    from whybox.methods.deeplift_rules import rescale_rules

    def shared(model: nn.Module, x: Tensor, select) -> bool:
        apart = ReferencePass(separable_rules(rescale_rules()))
        with module_rules(model, apart.table):
            apart.keep_references()
            with torch.enable_grad():
                model(torch.zeros_like(x))
            apart.take_inputs()
            out = select(model(x.clone().requires_grad_(True)))
            try:
                apart.check_graph(out)
            except Exception:
                return False
            return True

    torch.manual_seed(5)
    x = torch.randn(2, 2, 8, 8)
    assert shared(_PoolThenGelu().eval(), x, lambda y: y[:, 1]) is False
    assert shared(_PoolThenGelu(gated=True).eval(), x, lambda y: y[:, 1]) is False
    cnn = _cnn().eval()
    x3 = torch.randn(2, 3, 8, 8)
    # per-example targets select by gather: the same index for both rows of a pair
    assert shared(cnn, x3, lambda y: y[:, 1]) is True
    assert shared(cnn, x3, lambda y: y.gather(1, torch.tensor([[1], [2]])).view(-1)) is True
    # a product with a row-dependent tensor after the output: not shared
    assert shared(cnn, x3, lambda y: (y * y)[:, 1]) is False


def test_frozen_parameters_pool_indices_computed():
    # no parameter needs a gradient: the references' forward builds no graph, so the max
    # pools' argmax indices are pooled for again instead of read off a node
    model, (x,) = _model("cnn", torch.float64)
    model.requires_grad_(False)
    b = 0.3 * torch.randn_like(x)
    paired = _attribute(model, (x,), "paired", baselines=b, target=1, multiply_by_inputs=False)
    apart = _attribute(model, (x,), "apart", baselines=b, target=1, multiply_by_inputs=False)
    _assert_same(paired, apart, torch.float64)


# -- the Captum facade: Captum's rules run apart too -----------------------------------------
class _PoolAfterConv(nn.Module):
    """A max pool right after a convolution keeps Captum's rule (its ``max_unpool`` spread);
    the ReLU after the next convolution keeps its rule too."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.conv2(self.pool(self.conv1(x))))
        return self.head(h.flatten(1))


class _WithSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.relu = nn.ReLU()
        self.out = nn.Linear(5, 3)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.softmax(self.out(self.relu(self.lin(x))))


def _layouts(model: nn.Module, call) -> tuple[object, list[tuple[str, int]]]:
    forwards: list[str] = []
    handle = model.register_forward_pre_hook(
        lambda m, a: forwards.append(("grad" if a[0].requires_grad else "plain", a[0].shape[0]))
    )
    try:
        return call(), forwards
    finally:
        handle.remove()


@pytest.mark.parametrize("name", ["cnn", "cnn_inplace", "pool_after_conv"])
@pytest.mark.parametrize("shap", [False, True])
def test_facade_runs_captums_rules_apart(name, shap):
    captum_attr = pytest.importorskip("captum.attr")
    import whybox.attr as W

    torch.manual_seed(6)
    if name == "pool_after_conv":
        model, x = _PoolAfterConv().eval(), torch.randn(4, 3, 8, 8)
    else:
        model, (x,) = _model(name, torch.float32)
    if shap:
        baselines = torch.randn(3, *x.shape[1:])
        ours, theirs = W.DeepLiftShap(model), captum_attr.DeepLiftShap(model)
    else:
        baselines = 0.3 * torch.randn_like(x)
        baselines[1] = torch.where(torch.rand(x[1].shape) < 0.5, x[1], baselines[1])
        ours, theirs = W.DeepLift(model), captum_attr.DeepLift(model)
    target = torch.tensor([0, 1, 2, 1, 0])[: x.shape[0]]
    (got, delta), forwards = _layouts(
        model,
        lambda: ours.attribute(
            x, baselines=baselines, target=target, return_convergence_delta=True
        ),
    )
    # Captum's rules ran apart (the references' forward without gradients on its rows, then
    # the inputs), and did not go back to the paired layout
    pairs = x.shape[0] * (3 if shap else 1)
    # (then, for the delta, Captum's forwards of the inputs and of every pair's reference)
    assert forwards == [
        ("plain", 3 if shap else pairs),
        ("grad", pairs),
        ("plain", pairs),
        ("plain", pairs),
    ], forwards
    want, want_delta = theirs.attribute(
        x, baselines=baselines, target=target, return_convergence_delta=True
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(delta, want_delta, rtol=1e-5, atol=1e-5)
    if not shap:
        # Captum's own tests ask this to the bit: the delta is compute_convergence_delta's
        external = ours.compute_convergence_delta(got, baselines, x, target=target)
        assert torch.equal(delta, external)


def test_facade_keeps_softmax_paired_and_captums_numbers():
    captum_attr = pytest.importorskip("captum.attr")
    import whybox.attr as W

    torch.manual_seed(7)
    model, x = _WithSoftmax().eval(), torch.randn(4, 6)
    (got, forwards) = _layouts(model, lambda: W.DeepLift(model).attribute(x, target=1))
    # the softmax rule centres over the whole batch: one paired forward, no wasted one
    assert forwards[0] == ("grad", 8), forwards
    want = captum_attr.DeepLift(model).attribute(x, target=1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


class _Squeezing(nn.Module):
    """Squeezes every unit dimension away: a batch of one loses its batch dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 4)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.relu(self.lin(x))).squeeze()


def test_a_model_losing_the_batch_dimension_runs_paired():
    torch.manual_seed(8)
    model = _Squeezing().eval()
    x = torch.randn(1, 6)
    # one example: apart runs one-row forwards, which this model squeezes to (3,); the
    # paired layout (two rows) works, as in Captum
    b = torch.randn_like(x)
    paired = DeepLift(model, reference_pass="paired").attribute(x, baselines=b, target=2)
    auto = DeepLift(model).attribute(x, baselines=b, target=2)
    assert torch.equal(auto.attributions, paired.attributions)
    # a shared reference (one row) squeezed the same way: paired too
    shared = DeepLiftShap(model).attribute(torch.randn(3, 6), baselines=torch.randn(1, 6), target=1)
    assert shared.attributions.shape == (3, 6)
    # "apart" asked for explicitly goes back too (the references' forward shows it)
    forced = DeepLift(model, reference_pass="apart").attribute(x, baselines=b, target=2)
    assert torch.equal(forced.attributions, paired.attributions)


def test_a_model_error_reaches_the_caller_apart():
    """A forward that raises (here: the second one, the input rows') is not retried in
    the paired layout: the model's error reaches the caller."""
    torch.manual_seed(11)
    model, (x,) = _model("cnn", torch.float32)
    calls = {"n": 0}

    def second_fails(module, args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("forward failed midway")

    handle = model.register_forward_pre_hook(second_fails)
    try:
        with pytest.raises(RuntimeError, match="midway"):
            DeepLift(model).attribute(x, baselines=torch.randn_like(x), target=1)
    finally:
        handle.remove()
    assert calls["n"] == 2


def test_facade_two_threads_on_one_model():
    import whybox.attr as W

    torch.manual_seed(9)
    model, (x,) = _model("cnn", torch.float64)
    b1, b2 = torch.zeros_like(x), 0.5 * torch.randn_like(x)
    explainer = W.DeepLift(model)  # Captum's rules keep per-thread state apart
    alone = [explainer.attribute(x, baselines=b, target=1) for b in (b1, b2)]
    for _ in range(3):
        together = run_together(
            lambda: explainer.attribute(x, baselines=b1, target=1),
            lambda: explainer.attribute(x, baselines=b2, target=1),
        )
        assert torch.equal(together[0], alone[0])
        assert torch.equal(together[1], alone[1])


def test_facade_neuron_deeplift_apart_matches_captum():
    captum_attr = pytest.importorskip("captum.attr")
    import whybox.attr as W

    torch.manual_seed(10)
    model, (x,) = _model("cnn", torch.float32)
    b = 0.3 * torch.randn_like(x)
    layer, neuron = model[3], (2, 1, 1)
    (got, forwards) = _layouts(
        model, lambda: W.NeuronDeepLift(model, layer).attribute(x, neuron, baselines=b)
    )
    assert forwards[:2] == [("plain", 5), ("grad", 5)], forwards  # apart, not paired
    want = captum_attr.NeuronDeepLift(model, layer).attribute(x, neuron, baselines=b)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
