"""Issue 16, session 10: the per-call fast paths give exactly what the general paths give.

* the input gradients call the autograd engine as ``torch.autograd.grad`` does, without its
  Python argument handling; ``grad_kwargs``, ``__torch_function__`` tensors / modes and a
  torch without the engine function keep ``torch.autograd.grad``;
* ``row_gradients`` runs the call's own rows in one chunk without ``evaluate``'s closures;
* ``probe_may_split`` remembers its pure part per ``(items, n_items, group)``.

Each fast path is compared with the general one (forced by patching the switch) with
``torch.equal``, over input structures, forward args, target forms, float64 and an empty
batch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import whybox.core.chunks as chunks
import whybox.core.forward as forward
import whybox.core.gradients as gradients
from whybox.core.call import prepare_call
from whybox.core.forward import _input_gradients, autograd_options
from whybox.core.gradients import row_gradients
from whybox.methods import InputXGradient, Saliency


class _Two(nn.Module):
    """Two inputs (positional or by keyword), an optional extra argument."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(2, 4)

    def forward(self, x, y, scale=None):
        out = self.a(x) + self.b(y)
        return out if scale is None else out * scale


class _Unused(nn.Module):
    """Ignores its second input (its gradient is materialised as zeros)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 4)

    def forward(self, x, y):
        return self.a(x)


class _Cube(nn.Module):
    """A ``(N, 2, 3)`` output: targets are index tuples."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(3, 6)

    def forward(self, x):
        return self.a(x).view(-1, 2, 3)


def _mlp(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4)).to(dtype)


def _x(n: int, d: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(n + d)).to(dtype)


def _cases():
    """``(id, model, inputs, attribute options)`` over structures, args and targets."""
    mlp = _mlp()
    two = _Two()
    yield "tensor-int", mlp, _x(5), {"target": 2}
    yield "tensor-neg-int", mlp, _x(5), {"target": -1}
    yield "tensor-list", mlp, _x(3), {"target": [0, 3, 1]}
    yield "tensor-tensor", mlp, _x(3), {"target": torch.tensor([1, 0, 2])}
    yield "tensor-neg-tensor", mlp, _x(3), {"target": torch.tensor([-1, 0, -4])}
    yield "tensor-one-element", mlp, _x(3), {"target": torch.tensor([2])}
    yield "tensor-callable", mlp, _x(3), {"target": lambda out: out[:, 1] * 2}
    yield "float64", _mlp(torch.float64), _x(4, dtype=torch.float64), {"target": 1}
    yield "empty", mlp, _x(0), {"target": 1}
    yield "empty-list", mlp, _x(0), {"target": []}
    yield "none", nn.Sequential(nn.Linear(3, 1)), _x(4), {"target": None}
    yield "tuple-target", _Cube(), _x(4), {"target": (1, 2)}
    yield "tuple-list", _Cube(), _x(2), {"target": [(0, 1), (1, 2)]}
    yield "tuple-inputs", two, (_x(4), _x(4, 2)), {"target": 3}
    yield "dict-inputs", two, {"x": _x(4), "y": _x(4, 2)}, {"target": [0, 1, 2, 3]}
    yield (
        "forward-args",
        two,
        (_x(4), _x(4, 2)),
        {"target": 1, "forward_args": (torch.arange(4.0).view(4, 1),)},
    )
    yield "unused-input", _Unused(), (_x(3), _x(3, 2)), {"target": 0}
    yield "one-row", mlp, _x(1), {"target": torch.tensor([3])}


CASES = list(_cases())
IDS = [case[0] for case in CASES]


@pytest.fixture
def general_gradients(monkeypatch):
    """Force every general path of this module's fast paths."""

    def force() -> None:
        monkeypatch.setattr(gradients, "one_chunk", lambda *a, **k: False)
        monkeypatch.setattr(forward, "_engine_run_backward", None)

    return force


@pytest.mark.parametrize(("name", "model", "inputs", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("method", [Saliency, InputXGradient])
def test_methods_equal_the_general_path(name, model, inputs, options, method, general_gradients):
    fast = method(model).attribute(inputs, **options)
    general_gradients()
    general = method(model).attribute(inputs, **options)
    leaves_fast = fast.attributions if isinstance(inputs, tuple) else (fast.attributions,)
    leaves_general = general.attributions if isinstance(inputs, tuple) else (general.attributions,)
    if isinstance(inputs, dict):
        leaves_fast = tuple(fast.attributions.values())
        leaves_general = tuple(general.attributions.values())
        assert list(fast.attributions) == list(general.attributions)
    assert len(leaves_fast) == len(leaves_general)
    for a, b in zip(leaves_fast, leaves_general):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    assert fast.target is general.target


@pytest.mark.parametrize(("name", "model", "inputs", "options"), CASES, ids=IDS)
def test_row_gradients_fast_path_equals_evaluate(name, model, inputs, options, monkeypatch):
    def run():
        call = prepare_call("T", model, inputs, **options)
        record = [torch.zeros(1)]
        grads, outputs = row_gradients(call, record=record)
        return grads, outputs, record, call.evaluator.n_calls

    fast = run()
    seen = []

    def general(*args, **kwargs):
        seen.append(args)
        return False

    monkeypatch.setattr(gradients, "one_chunk", general)
    slow = run()
    assert seen  # the general path ran
    for a, b in zip(fast[0], slow[0], strict=True):
        assert torch.equal(a, b) and a.is_contiguous() == b.is_contiguous()
    assert torch.equal(fast[1], slow[1]) and fast[1].shape == slow[1].shape
    assert fast[2] == slow[2] == []  # no tap: nothing recorded, the list emptied
    assert fast[3] == slow[3] == 1


def test_row_gradients_keeps_evaluate_for_chunks_rows_taps_and_bars(monkeypatch):
    calls = []
    real = gradients.evaluate

    def counted(*args, **kwargs):
        calls.append(kwargs["chunk_rows"])
        return real(*args, **kwargs)

    monkeypatch.setattr(gradients, "evaluate", counted)
    model, x = _mlp(), _x(6)
    row_gradients(prepare_call("T", model, x, target=1))
    assert calls == []  # one chunk: the fast path
    grads, _ = row_gradients(prepare_call("T", model, x, target=1, chunk_size=4))
    assert calls == [4]  # two chunks
    expected, _ = row_gradients(prepare_call("T", model, x, target=1))
    assert torch.equal(grads[0], expected[0])
    row_gradients(prepare_call("T", model, x, target=1), rows=(x * 2,))
    row_gradients(prepare_call("T", model, x, target=1, show_progress=True))
    assert len(calls) == 3


# -- the engine call -------------------------------------------------------------------------
def _graph(dtype: torch.dtype = torch.float32, unused: bool = False):
    torch.manual_seed(0)
    a = torch.randn(3, 4, dtype=dtype).requires_grad_(True)
    b = torch.randn(3, 2, dtype=dtype).requires_grad_(True)
    out = (a.sin() * 3).sum(1) + (0 if unused else b.pow(2).sum(1))
    return out, (a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("unused", [False, True])
def test_engine_call_equals_autograd_grad(dtype, unused):
    out, leaves = _graph(dtype, unused)
    fast = _input_gradients(out, leaves)
    out, leaves = _graph(dtype, unused)
    expected = torch.autograd.grad(
        (out,),
        leaves,
        grad_outputs=(torch.ones_like(out),),
        allow_unused=True,
        materialize_grads=True,
    )
    assert type(fast) is tuple and len(fast) == 2
    for a, b in zip(fast, expected):
        assert a.dtype == b.dtype and torch.equal(a, b) and not a.requires_grad


def test_engine_call_raises_what_autograd_grad_raises():
    leaf = torch.randn(3)
    out = leaf * 2  # nothing requires grad
    with pytest.raises(RuntimeError) as fast:
        _input_gradients(out, (leaf,))
    with pytest.raises(RuntimeError) as general:
        torch.autograd.grad((out,), (leaf,), grad_outputs=(torch.ones_like(out),))
    assert str(fast.value) == str(general.value)


def test_options_modes_and_old_torch_keep_autograd_grad(monkeypatch):
    engine = []
    real = forward._engine_run_backward

    def counted(*args, **kwargs):
        engine.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(forward, "_engine_run_backward", counted)
    out, leaves = _graph()
    _input_gradients(out, leaves)
    assert engine == [1]
    # ``grad_kwargs``: torch.autograd.grad with them
    out, leaves = _graph()
    with autograd_options({"retain_graph": True}):
        first = _input_gradients(out, leaves)
        again = _input_gradients(out, leaves)  # the graph was kept
    assert engine == [1] and torch.equal(first[0], again[0])

    # a torch function mode sees torch.autograd.grad, as before
    class Seen(TorchFunctionMode):
        names: list = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(getattr(func, "__name__", ""))
            return func(*args, **(kwargs or {}))

    out, leaves = _graph()
    with Seen():
        _input_gradients(out, leaves)
    assert engine == [1] and "grad" in Seen.names
    # a torch without the engine function
    monkeypatch.setattr(forward, "_engine_run_backward", None)
    out, leaves = _graph()
    general = _input_gradients(out, leaves)
    out, leaves = _graph()
    monkeypatch.setattr(forward, "_engine_run_backward", real)
    assert all(torch.equal(a, b) for a, b in zip(general, _input_gradients(out, leaves)))


# -- the probe's split question ---------------------------------------------------------------
def test_cached_split_question_equals_the_candidates():
    for items in (1, 2, 7, 21, 64, 4096):
        for n_items in (0, 1, 2, 5, 20, 100, 256):
            for group in (1, 2, 5):
                expected = n_items > 1 and len(chunks._split_candidates(items, n_items, group)) > 1
                assert chunks.probe_may_split(items, n_items, group=group) == expected
    # the probe switch is still read per call
    try:
        chunks.set_probe(False)
        assert not chunks.probe_may_split(21, 20)
        chunks.set_probe(True)
        assert chunks.probe_may_split(21, 20)
    finally:
        chunks.set_probe(None)
