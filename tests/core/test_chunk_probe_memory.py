"""The chunk probe's memory bound counts what a gradient chunk really holds.

The model here saves 128x its input per row for backward (a 16 -> 2048 ReLU layer), the way
an image CNN saves ~10x its input: a bound on input bytes alone would let the probe try
chunks whose activations are far over it. Every forward's activation bytes are recorded by
a forward hook (the ReLU output is the one tensor the model saves per row), independently
of how whybox measures them.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import whybox.attr
from whybox.core import chunks, forward
from whybox.methods import (
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)

FEATURES = 16
ROW_BYTES = FEATURES * 4  # input bytes per row
WIDE = 2048  # hidden units: 8 KiB saved per row, 128x the input
DEFAULT_ROWS = 8  # the byte-sized automatic chunk (its minimum) with the budget below
BOUND_ROWS = 20  # rows of inputs + activations that fit the bound set below
BOUND_BYTES = BOUND_ROWS * (ROW_BYTES + WIDE * 4)


class Wide(nn.Module):
    """``Linear -> ReLU -> Linear``; records ``(rows, activation bytes)`` of every forward."""

    def __init__(self, hidden: int = WIDE) -> None:
        super().__init__()
        self.up = nn.Linear(FEATURES, hidden)
        self.act = nn.ReLU()
        self.down = nn.Linear(hidden, 3)
        self.chunks: list[tuple[int, int]] = []
        self.act.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self.chunks.append((output.shape[0], output.numel() * output.element_size()))

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.act(self.up(x)))

    @property
    def sizes(self) -> list[int]:
        return [rows for rows, _ in self.chunks]


@pytest.fixture(autouse=True)
def probe_on(monkeypatch):
    monkeypatch.setitem(chunks._AUTO_BYTES, "cpu", DEFAULT_ROWS * ROW_BYTES)
    monkeypatch.setitem(chunks._PROBE_BYTES, "cpu", BOUND_BYTES)
    chunks.set_probe(True)
    chunks.clear_probe_cache()
    yield
    chunks.set_probe(None)
    chunks.clear_probe_cache()


def _model(hidden: int = WIDE) -> Wide:
    torch.manual_seed(0)
    return Wide(hidden).eval()


def _inputs(batch: int) -> Tensor:
    return torch.randn(batch, FEATURES, generator=torch.Generator().manual_seed(1))


# method -> call(model, chunk_size); each evaluates far more rows than the automatic chunk
CASES = {
    "integrated_gradients": lambda m, c: IntegratedGradients(m).attribute(
        _inputs(1), target=1, n_steps=120, chunk_size=c, return_delta=False
    ),
    "gradient_shap": lambda m, c: GradientShap(m).attribute(
        _inputs(1),
        baselines=_inputs(4),
        n_samples=120,
        stdevs=0.1,
        target=1,
        seed=0,
        chunk_size=c,
        return_delta=False,
    ),
    "saliency": lambda m, c: Saliency(m).attribute(_inputs(120), target=1, chunk_size=c),
    "input_x_gradient": lambda m, c: InputXGradient(m).attribute(
        _inputs(120), target=1, chunk_size=c
    ),
    "noise_tunnel_ig": lambda m, c: NoiseTunnel(IntegratedGradients(m)).attribute(
        _inputs(1),
        nt_samples=2,
        stdevs=0.1,
        seed=0,
        target=1,
        n_steps=60,
        chunk_size=c,
        return_delta=False,  # the delta's forwards save nothing (no gradient chunks)
    ),
}


def _over_bound(model: Wide) -> list[tuple[int, int]]:
    """The recorded forwards whose inputs + activations exceed the bound."""
    return [(rows, saved) for rows, saved in model.chunks if rows * ROW_BYTES + saved > BOUND_BYTES]


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_probed_or_chosen_chunk_exceeds_the_memory_bound(name):
    model = _model()
    for _ in range(4):  # the first calls probe, the later ones use the choice
        CASES[name](model, "auto")
    assert _over_bound(model) == []
    assert max(model.sizes) <= BOUND_ROWS
    # the probe did run, and its bound came from the activations it measured
    assert chunks.probe_records(model)
    for bound, input_bytes, activation_bytes in chunks.probe_memory(model).values():
        assert input_bytes == ROW_BYTES
        assert activation_bytes == WIDE * 4  # the ReLU output, each storage once
        assert bound <= BOUND_ROWS


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_memory_bound_never_changes_results(name):
    model = _model()
    expected = CASES[name](model, 7).attributions
    for _ in range(3):
        torch.testing.assert_close(
            CASES[name](model, "auto").attributions, expected, rtol=1e-5, atol=1e-6
        )


def test_counting_inputs_alone_would_exceed_the_bound(monkeypatch):
    # what the bound was before it counted activations: the probe tries 32-row chunks,
    # whose activations are over the bound (so the test above can fail)
    monkeypatch.setattr(forward, "saved_bytes", lambda *args, **kwargs: 0)
    model = _model()
    for _ in range(4):
        CASES["integrated_gradients"](model, "auto")
    assert max(model.sizes) == 32
    assert _over_bound(model)


def test_small_activations_still_let_the_probe_grow():
    # 16 bytes of activations per row: the 32-row candidate fits the bound and is timed
    model = _model(hidden=4)
    for _ in range(4):
        CASES["integrated_gradients"](model, "auto")
    assert max(model.sizes) == 32
    ((bound, _, activation_bytes),) = chunks.probe_memory(model).values()
    assert activation_bytes == 4 * 4
    assert bound >= 32


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_fixed_chunk_is_never_probed_nor_measured(name, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("measured a chunk the caller fixed")

    monkeypatch.setattr(forward, "saved_bytes", refuse)
    model = _model()
    CASES[name](model, 30)
    assert set(model.sizes[:-1]) <= {30}
    assert chunks.probe_records(model) == {}
    assert chunks.probe_memory(model) == {}


def test_captum_batching_arguments_are_never_probed_nor_measured(monkeypatch):
    monkeypatch.setattr(forward, "saved_bytes", lambda *a, **k: pytest.fail("measured"))
    model = _model()
    x = _inputs(2)
    whybox.attr.IntegratedGradients(model).attribute(
        x, target=1, n_steps=60, internal_batch_size=30
    )
    whybox.attr.NoiseTunnel(whybox.attr.IntegratedGradients(model)).attribute(
        x, nt_samples=2, target=1, n_steps=60, internal_batch_size=30
    )
    whybox.attr.LayerIntegratedGradients(model, model.act).attribute(
        x, target=1, n_steps=60, internal_batch_size=30
    )
    assert max(model.sizes) == 30  # at most the rows asked for (whole steps of a path)
    assert chunks.probe_records(model) == {}
    assert chunks.probe_memory(model) == {}


class _Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def test_saved_bytes_counts_each_activation_storage_once():
    torch.manual_seed(0)
    x = torch.randn(5, 7, requires_grad=True)  # the rows: a leaf
    weight = nn.Parameter(torch.randn(7, 11))
    frozen = torch.randn(11)  # a constant the model saves (e.g. a frozen buffer)
    hidden = torch.relu(x @ weight)  # relu saves its result; mm saves x and the weight
    # the first mul saves hidden twice (one storage); the second saves only the constant
    # (the gradient of the product needs it, not the product)
    out = hidden * hidden * frozen
    one = hidden.numel() * 4
    assert chunks.saved_bytes(out.sum(), exclude=(x,)) == one + frozen.numel() * 4
    holder = nn.Module()
    holder.register_buffer("frozen", frozen)
    assert chunks.saved_bytes(out.sum(), module=holder) == one
    # a custom Function's saved tensors count too; a tensor without a graph saves nothing
    squared = _Square.apply(x + 1)  # an addition saves nothing itself
    assert chunks.saved_bytes(squared.sum()) == x.numel() * 4
    both = _Square.apply(torch.relu(x))  # relu's result is _Square's input: one storage
    assert chunks.saved_bytes(both.sum()) == x.numel() * 4
    assert chunks.saved_bytes(torch.ones(3)) == 0


def test_saved_bytes_counts_a_conv_nets_activations():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 2)
    ).eval()
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    relu_out = 4 * 8 * 8 * 8 * 4  # saved by ReLU (result) and MaxPool (input): one storage
    indices = 4 * 8 * 4 * 4 * 8  # MaxPool's int64 indices
    pooled = 4 * 8 * 4 * 4 * 4  # saved by Linear (through Flatten's view) for its weight grad
    assert chunks.saved_bytes(net(x).sum()) == relu_out + indices + pooled
    # frozen parameters: Linear saves no input, and its (frozen) weights are saved leaves
    # without grad that only the module tells apart from activations
    net.requires_grad_(False)
    weights = (8 * 3 * 3 * 3 + 2 * 128) * 4
    assert chunks.saved_bytes(net(x).sum(), module=net) == relu_out + indices
    assert chunks.saved_bytes(net(x).sum()) == relu_out + indices + weights
    assert chunks.saved_bytes(net(x).sum(), module=net.forward) == relu_out + indices
