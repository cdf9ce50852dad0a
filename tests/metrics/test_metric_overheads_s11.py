"""The per-call savings of issue 13 (session 11) keep every number and every bit.

* deletion and insertion build the step rows of a shared 0-d baseline by integer
  subtractions, shifts and ands over the inputs' bits (``_bitwise_plan`` /
  ``_bitwise_rows``) instead of a broadcast comparison and ``masked_fill``;
* randomisation finds the layers that own parameters from their ``_parameters`` (one
  ``named_modules`` walk for the layers and the name table), and its deep copy is given
  attribute names, numbers, flags and tuples of them as themselves in ``deepcopy``'s memo.

References: the rows by a plain loop over examples and steps (and the removal engine with
the bitwise plan switched off, which is the code before this change, untouched), compared
bit for bit (``-0.0`` is not ``+0.0``); the layers by ``module.parameters(recurse=False)``;
the copy by ``copy.deepcopy``; the randomisation metric with both of the old helpers
(copied verbatim below) put back.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import whybox
import whybox.metrics as WM
from whybox.metrics import faithfulness, randomisation

BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns (integers of its element size): ``-0.0`` differs from
    ``+0.0`` and each NaN payload from another, where ``torch.equal`` sees equal numbers."""
    return t.contiguous().view(BITS[t.element_size()])


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


# -- deletion / insertion rows -----------------------------------------------------------------
class Recorder(nn.Module):
    """Row-local outputs (weighted sums of each row's finite values), recording every row
    it sees and whether it required grad; one parameter, to check it is left alone."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=dtype))
        self.rows: list[torch.Tensor] = []
        self.grad_flags: list[bool] = []
        self.layouts: list[tuple] = []

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        self.layouts.append(tuple((x.shape, x.stride(), x.dtype) for x in xs))
        self.rows.append(torch.cat([x.detach().reshape(x.shape[0], -1) for x in xs], 1).clone())
        self.grad_flags.append(any(x.requires_grad for x in xs))
        flat = torch.cat([x.reshape(x.shape[0], -1).float() for x in xs], 1)
        flat = torch.nan_to_num(flat, nan=0.0, posinf=3.0, neginf=-3.0)
        weights = torch.arange(1, flat.shape[1] + 1, dtype=flat.dtype)
        out = torch.stack([flat.sum(1), (flat * weights).sum(1), flat.abs().sum(1)], 1)
        return out * self.scale.float()


def removal(name, model, inputs, attrs, **kwargs):
    return getattr(WM, name)(model, inputs, attrs, **kwargs)


def plain_rows(x, attr, baseline, n_steps, insert, order="morf"):
    """Every example's step rows by a loop: elements in stable attribution order, the first
    round(k / n_steps * D) of them set to the baseline (deletion) or kept (insertion)."""
    n = x.shape[0]
    flat_x, flat_a = x.reshape(n, -1), attr.reshape(n, -1)
    d = flat_x.shape[1]
    rows = []
    for i in range(n):
        key = -flat_a[i].double().numpy() if order == "morf" else flat_a[i].double().numpy()
        ranking = torch.from_numpy(np.argsort(key, kind="stable"))
        for k in range(n_steps + 1):
            chosen = ranking[: round(k / n_steps * d)]
            if insert:
                row = torch.full_like(flat_x[i], 0.0)
                row.copy_(baseline.expand_as(flat_x[i]) if baseline.dim() else baseline)
                row[chosen] = flat_x[i][chosen]
            else:
                row = flat_x[i].clone()
                row[chosen] = baseline
            rows.append(row)
    return torch.stack(rows)


def engine_without_bits(monkeypatch):
    """Switch the bitwise plan off: the removal engine's code before this change."""
    monkeypatch.setattr(faithfulness, "_bitwise_plan", lambda *args: None)


def spy_bitwise(monkeypatch) -> list[int]:
    calls: list[int] = []
    rows = faithfulness._bitwise_rows
    monkeypatch.setattr(
        faithfulness, "_bitwise_rows", lambda *a: calls.append(1) or rows(*a), raising=True
    )
    return calls


def special_inputs(n, d, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    attr = torch.randn(n, d, generator=g, dtype=torch.float64).mul(2).round().to(dtype)
    x[0, 0], x[0, 1] = -0.0, 0.0  # signed zeros keep their sign where kept
    x[1, 2] = float("inf")
    x[1, 3] = -float("inf")
    x[2, 4] = float("nan")
    x[2, 5] = torch.finfo(dtype).tiny / 4  # a subnormal
    return x, attr


@pytest.mark.parametrize("name", ["deletion", "insertion"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("baseline", [None, 0.0, -0.0, 0.75, -3.5, 1e30])
@pytest.mark.parametrize("chunk", [1, 5, 13, 64, "auto", None])
def test_bitwise_rows_equal_a_plain_loop_and_the_old_engine_bit_for_bit(
    monkeypatch, name, dtype, baseline, chunk
):
    n, d, steps = 7, 12, 5
    x, attr = special_inputs(n, d, dtype, seed=1)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 1])
    kwargs = dict(target=target, n_steps=steps, chunk_size=chunk)
    if baseline is not None:
        kwargs["baselines"] = baseline
    calls = spy_bitwise(monkeypatch)
    model = Recorder()
    before = model.scale.detach().clone()
    got = removal(name, model, x, attr, **kwargs)
    assert calls, "the bitwise rows did not run"
    assert same_bits(model.scale.detach(), before)
    seen = torch.cat(model.rows)
    b = torch.tensor(0.0 if baseline is None else baseline, dtype=dtype)
    expected_rows = plain_rows(x, attr, b, steps, insert=name == "insertion")
    assert same_bits(seen[-expected_rows.shape[0] :], expected_rows)  # after any probe
    assert not any(model.grad_flags)

    monkeypatch.undo()
    engine_without_bits(monkeypatch)
    old_model = Recorder()
    old = removal(name, old_model, x, attr, **kwargs)
    assert same_bits(torch.cat(old_model.rows), seen)
    assert model.layouts == old_model.layouts
    assert same_bits(got.curve, old.curve)
    assert same_bits(got.score, old.score)
    assert torch.equal(got.fractions, old.fractions)


@pytest.mark.parametrize("order", ["morf", "lerf", "random"])
@pytest.mark.parametrize("name", ["deletion", "insertion"])
def test_bitwise_rows_follow_every_order_images_masks_and_several_inputs(monkeypatch, order, name):
    g = torch.Generator().manual_seed(2)
    images = torch.randn(3, 2, 4, 4, generator=g)
    table = torch.randn(3, 5, generator=g, dtype=torch.float64)
    attrs = (torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 5, generator=g).double())
    mask = (torch.arange(16).view(1, 1, 4, 4) // 3, torch.tensor([[6, 7, 7, 8, 9]]))
    cases = [
        ((images, table), attrs, None),  # two inputs of two dtypes, every element a feature
        ((images, table), attrs, mask),  # grouped features (ranks broadcast to elements)
        (images, attrs[0], mask[0]),
        (images.to(memory_format=torch.channels_last), attrs[0], None),  # strided inputs
    ]
    for inputs, maps, feature_mask in cases:
        kwargs = dict(target=1, n_steps=4, order=order, seed=3, feature_mask=feature_mask)
        calls = spy_bitwise(monkeypatch)
        model = Recorder()
        got = removal(name, model, inputs, maps, **kwargs)
        assert calls
        monkeypatch.undo()
        engine_without_bits(monkeypatch)
        old_model = Recorder()
        old = removal(name, old_model, inputs, maps, **kwargs)
        monkeypatch.undo()
        assert len(model.rows) == len(old_model.rows)
        assert model.layouts == old_model.layouts
        for a, b in zip(model.rows, old_model.rows):
            assert same_bits(a, b)
        assert same_bits(got.curve, old.curve)


def test_bitwise_rows_with_progress_shown_equal_the_old_engine(monkeypatch):
    x, attr = special_inputs(6, 12, torch.float32, seed=4)
    kwargs = dict(target=2, n_steps=6, chunk_size=8, show_progress=True)
    calls = spy_bitwise(monkeypatch)
    got = WM.deletion(Recorder(), x, attr, **kwargs)
    assert calls
    monkeypatch.undo()
    engine_without_bits(monkeypatch)
    assert same_bits(got.curve, WM.deletion(Recorder(), x, attr, **kwargs).curve)


@pytest.mark.parametrize(
    "case",
    [
        "float16",
        "bfloat16",
        "int",
        "per-example",
        "shaped",
        "nan",
        "inf",
        "-inf64",
        "nan64",
        "grad",
    ],
)
def test_the_old_engine_serves_what_the_bitwise_rows_cannot(monkeypatch, case):
    # float16 / bfloat16 / integer inputs, baselines that are not one finite number
    x, attr = special_inputs(5, 12, torch.float32, seed=5)
    kwargs: dict = dict(target=0, n_steps=4)
    if case in ("float16", "bfloat16"):
        dtype = getattr(torch, case)
        x, attr = x.to(dtype), attr.to(dtype)
    elif case == "int":
        x, attr = x.nan_to_num(0.0, 1.0, -1.0).mul(4).round().long(), attr.long()
    elif case == "per-example":
        kwargs["baselines"] = torch.linspace(-1, 1, 5).view(5, 1).expand(5, 12).contiguous()
    elif case == "shaped":
        kwargs["baselines"] = torch.full((1, 12), -0.25)
    elif case == "nan":
        kwargs["baselines"] = float("nan")  # masked_fill's NaN, whatever its payload
    elif case == "inf":
        kwargs["baselines"] = float("inf")
    elif case in ("-inf64", "nan64"):
        x, attr = x.double(), attr.double()
        kwargs["baselines"] = -float("inf") if case == "-inf64" else float("nan")
    elif case == "grad":
        # inputs that require grad: the metric's rows are built from detached inputs
        # either way (no graph), so the bitwise rows serve them
        x = x.nan_to_num(0.0).requires_grad_(True)
    calls = spy_bitwise(monkeypatch)
    model = Recorder()
    got = WM.deletion(model, x, attr, **kwargs)
    assert bool(calls) == (case == "grad")
    monkeypatch.undo()
    engine_without_bits(monkeypatch)
    old_model = Recorder()
    old = WM.deletion(old_model, x, attr, **kwargs)
    assert model.grad_flags == old_model.grad_flags
    assert model.layouts == old_model.layouts
    for a, b in zip(model.rows, old_model.rows):
        assert same_bits(a, b)
    assert same_bits(got.curve, old.curve)


def test_bitwise_rows_of_a_tabular_workload_equal_the_old_engine(monkeypatch):
    # the benchmark's case: 256 rows of 12 features through an MLP, one feature per step
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2)
    )
    x = torch.randn(256, 12)
    target = net(x).argmax(1)
    attr = whybox.explain(net, x, method="input_x_gradient", target=target).attributions
    state = {k: v.clone() for k, v in net.state_dict().items()}
    calls = spy_bitwise(monkeypatch)
    got = WM.deletion(net, x, attr, target=target, n_steps=12)
    assert calls
    monkeypatch.undo()
    engine_without_bits(monkeypatch)
    old = WM.deletion(net, x, attr, target=target, n_steps=12)
    assert same_bits(got.curve, old.curve)
    for k, v in net.state_dict().items():
        assert same_bits(v, state[k])


def test_a_model_error_mid_curve_reaches_the_caller_and_leaves_the_model_alone():
    x, attr = special_inputs(6, 12, torch.float32, seed=6)

    class Failing(Recorder):
        def forward(self, *xs):
            if len(self.rows) == 1:
                raise RuntimeError("boom")
            return super().forward(*xs)

    model = Failing()
    before = model.scale.detach().clone()
    with pytest.raises(RuntimeError, match="boom"):
        WM.deletion(model, x, attr, target=0, n_steps=6, chunk_size=7)
    assert same_bits(model.scale.detach(), before)
    # and the next call is a normal one (nothing left behind)
    ok = WM.deletion(Recorder(), x, attr, target=0, n_steps=6, chunk_size=7)
    assert ok.curve.shape == (6, 7)


def test_bit_comparison_sees_what_torch_equal_does_not():
    # the checks above would catch a fill that wrote +0.0 for a -0.0 baseline
    a, b = torch.tensor([0.0, 1.0]), torch.tensor([-0.0, 1.0])
    assert torch.equal(a, b) and not same_bits(a, b)


# -- randomisation -----------------------------------------------------------------------------
def old_randomisable_layers(model: nn.Module) -> list[str]:
    """``randomisable_layers`` before this change, verbatim."""
    names = [
        name
        for name, module in model.named_modules()
        if name and any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


def old_deep_copy(model: nn.Module) -> nn.Module:
    """``_deep_copy`` before this change, verbatim."""
    memo: dict = {}
    for module in model.modules():
        for value in vars(module).values():
            kind = type(value)
            if (kind is dict or kind is OrderedDict or kind is set) and not value:
                memo[id(value)] = kind()
    return copy.deepcopy(model, memo)


class Scale(nn.Module):
    """A layer with parameters and no ``reset_parameters``; a tuple holding a list (not
    atomic: deep-copied) and a tuple of numbers."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, channels).view(1, channels, 1, 1))
        self.register_parameter("unused", None)  # a None parameter: owns nothing by it
        self.meta = ("scale", [channels, 1])
        self.sizes = (channels, 1.5, None, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class Hidden(nn.Module):
    """Owns only a None parameter; a parameterless module with a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_parameter("gain", None)
        self.register_buffer("offset", torch.tensor(0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


class Listed(nn.Module):
    """Overrides ``parameters`` (its own list): the generic check must be used."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)

    def parameters(self, recurse: bool = True):
        return iter([] if not recurse else list(self.inner.parameters()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class Claims(nn.Module):
    """Overrides ``named_parameters`` to claim a parameter it does not hold in
    ``_parameters`` (the generic check must see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.extra = torch.ones(2)

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield prefix + "extra", nn.Parameter(self.extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def cnn(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),  # a deterministic initialiser (ones / zeros), running stats
            nn.ReLU(),
            Scale(4),  # no initialiser
            Hidden(),
            nn.Flatten(),
            nn.LayerNorm(4 * 8 * 8),  # deterministic too
            nn.Linear(4 * 8 * 8, 6),
        )
        .to(dtype)
        .eval()
    )


class SharedMLP(nn.Module):
    """One Linear used twice (a shared module) and two layers tying one weight."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.first = nn.Linear(6, 6)
        self.again = self.first  # the same module under a second name
        self.tied = nn.Linear(6, 6)
        self.tied.weight = self.first.weight  # tied weights
        self.norm = nn.LayerNorm(6, elementwise_affine=False)  # no parameters at all
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.again(torch.relu(self.first(x))))
        return self.head(self.norm(self.tied(h)))


class Attention(nn.Module):
    """MultiheadAttention: its initialiser touches its child's bias."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.attn = nn.MultiheadAttention(8, 2)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.view(x.shape[0], 4, 8).transpose(0, 1)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return self.head(out.mean(0))


MODELS = {
    "cnn32": lambda: (cnn(torch.float32), torch.rand(3, 3, 8, 8, generator=_g(3))),
    "cnn64": lambda: (cnn(torch.float64), torch.rand(3, 3, 8, 8, generator=_g(3)).double()),
    "shared": lambda: (SharedMLP().eval(), torch.randn(3, 6, generator=_g(4))),
    "attention": lambda: (Attention().eval(), torch.randn(3, 32, generator=_g(5))),
}


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def state_of(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(k, v.detach().clone()) for k, v in model.state_dict(keep_vars=True).items()]


def assert_untouched(model: nn.Module, state) -> None:
    now = model.state_dict(keep_vars=True)
    assert list(now) == [k for k, _ in state]
    for k, v in state:
        assert same_bits(now[k].detach(), v), k


def test_layers_that_own_parameters_equal_the_generic_check():
    models = [m()[0] for m in MODELS.values()]
    models += [
        nn.Sequential(Listed(), Claims(), Hidden(), nn.LazyLinear(2)),
        nn.Sequential(nn.BatchNorm1d(3, affine=False), nn.GRU(3, 2), nn.Embedding(4, 2)),
    ]
    for model in models:
        assert WM.randomisable_layers(model) == old_randomisable_layers(model)
        for module in model.modules():
            assert randomisation._owns_parameters(module) == any(
                True for _ in module.parameters(recurse=False)
            )
    overriding = nn.Sequential(Listed(), Claims())
    assert WM.randomisable_layers(overriding) == ["1", "0.inner"]  # not "0"; "1" claims one


def _walk(a, b, seen):
    """``a`` (ours) and ``b`` (deepcopy's) alike: same types, the same atomic objects, the
    same sharing, tensors with the same bits; neither ever an original's object."""
    if id(a) in seen:
        assert seen[id(a)] is b
        return
    seen[id(a)] = b
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert same_bits(a.detach(), b.detach()) and a.requires_grad == b.requires_grad
        return
    if isinstance(a, nn.Module):
        assert list(vars(a)) == list(vars(b))
        for key in vars(a):
            _walk(vars(a)[key], vars(b)[key], seen)
        return
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _walk(a[key], b[key], seen)
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _walk(u, v, seen)
        return
    if isinstance(a, set):
        assert a == b
        return
    assert a is b or a == b


@pytest.mark.parametrize("name", list(MODELS))
def test_the_deep_copy_equals_copy_deepcopy(name):
    model, _ = MODELS[name]()
    ours, theirs = randomisation._deep_copy(model), copy.deepcopy(model)
    _walk(ours, theirs, {})
    originals = {id(v) for m in model.modules() for v in vars(m).values()}
    for module, original in zip(ours.modules(), model.modules()):
        assert module is not original
        for key, value in vars(module).items():
            kept = vars(original)[key]
            if type(value) in (int, float, bool, str, type(None)):
                assert value is kept  # atomic: the very object, as deepcopy gives
            elif type(value) is tuple and all(
                type(v) in (int, float, bool, str, type(None)) for v in value
            ):
                assert value is kept
            else:
                assert id(value) not in originals or value is kept and value is None
    if name == "cnn32":
        scale = ours[3]
        assert scale.meta is not model[3].meta and scale.meta[1] is not model[3].meta[1]
        assert scale.meta == model[3].meta
    if name == "shared":
        assert ours.again is ours.first and ours.tied.weight is ours.first.weight
    for p, q in zip(ours.parameters(), model.parameters()):
        assert p is not q and p.data_ptr() != q.data_ptr()


def run_both(monkeypatch, model, x, target, **kwargs):
    got = WM.model_parameter_randomisation(model, x, target=target, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(randomisation, "_deep_copy", old_deep_copy)
        patch.setattr(randomisation, "_layers_of", lambda named: old_randomisable_layers(model))
        old = WM.model_parameter_randomisation(model, x, target=target, **kwargs)
    return got, old


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mode", ["cascading", "independent"])
@pytest.mark.parametrize("given", [False, True])
def test_randomisation_equals_the_old_helpers_and_leaves_the_model_alone(
    monkeypatch, name, mode, given
):
    model, x = MODELS[name]()
    target = [0, 1, 2]
    options = {"abs": False}
    maps = (
        whybox.explain(model, x, method="saliency", target=target, abs=False).attributions
        if given
        else None
    )
    state = state_of(model)
    rng = torch.get_rng_state()
    got, old = run_both(
        monkeypatch,
        model,
        x,
        target,
        explain_options=options,
        attributions=maps,
        mode=mode,
        seed=4,
    )
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator left alone
    assert got.layers == old.layers == old_randomisable_layers(model)
    assert same_bits(got.similarity.nan_to_num(7.0), old.similarity.nan_to_num(7.0))
    assert_untouched(model, state)


@pytest.mark.parametrize("chunk", [1, 2, None])
def test_randomisation_with_chunks_progress_and_chosen_layers_equals_the_old_helpers(
    monkeypatch, chunk
):
    model, x = MODELS["cnn32"]()
    layers = ["7", "1", "3"]  # a chosen order, a norm layer and one without an initialiser
    kwargs = dict(
        explain_options={"abs": False, "chunk_size": chunk},
        layers=layers,
        show_progress=True,
        absolute=False,
    )
    got, old = run_both(monkeypatch, model, x, 1, **kwargs)
    assert got.layers == layers
    assert same_bits(got.similarity.nan_to_num(7.0), old.similarity.nan_to_num(7.0))


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_an_explain_error_mid_call_leaves_the_model_and_the_generator_alone(mode):
    model, x = MODELS["cnn32"]()
    state = state_of(model)
    calls = []

    def failing(net, inputs, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the second randomised step
            raise RuntimeError("explain failed")
        return whybox.explain(net, inputs, method="saliency", **kwargs).attributions

    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="explain failed"):
        WM.model_parameter_randomisation(model, x, target=0, explain=failing, mode=mode)
    assert torch.equal(torch.get_rng_state(), rng)
    assert_untouched(model, state)
    for module in model.modules():  # no hook left on the caller's modules
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks
