"""No host synchronisation inside the gradient family's chunk loops.

On a GPU every host read of a tensor's values (``.item()``, ``bool()``, ``.tolist()``, a
copy to the host, an op whose output shape depends on the values) waits for all queued
device work: one per chunk serialises host and device. The calls are the same whatever the
device, so they are counted here, on the CPU, with a ``TorchFunctionMode`` over one
``attribute`` call, and the count must not grow with the number of chunks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import whybox.attr
from _host_reads import HostReads
from whybox.core.forward import to_device
from whybox.methods import GradientShap, InputXGradient, Saliency


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).eval()


def _inputs(batch: int) -> Tensor:
    return torch.randn((batch, 3, 8, 8), generator=torch.Generator().manual_seed(1))


ROWS = 32  # rows of each call's chunked evaluation
CHUNKS = (2, 16)  # chunk counts compared
PER_EXAMPLE = torch.tensor([0, 2])  # per-example targets: selected per chunk

# name -> call(model, rows per chunk); each evaluates ROWS rows in chunks
CASES: dict[str, Callable[[nn.Module, int], Any]] = {
    "integrated_gradients": lambda m, c: whybox.attr.IntegratedGradients(m).attribute(
        _inputs(2),
        target=PER_EXAMPLE,
        n_steps=ROWS // 2,
        internal_batch_size=c,
        return_convergence_delta=True,
    ),
    "gradient_shap": lambda m, c: GradientShap(m).attribute(
        _inputs(2),
        baselines=_inputs(3),
        n_samples=ROWS // 2,
        stdevs=0.1,
        target=PER_EXAMPLE,
        seed=0,
        chunk_size=c,
    ),
    "noise_tunnel_integrated_gradients": lambda m, c: whybox.attr.NoiseTunnel(
        whybox.attr.IntegratedGradients(m)
    ).attribute(
        _inputs(2),
        nt_samples=4,  # one inner call of 8 noisy examples x 4 steps
        stdevs=0.1,
        target=1,
        n_steps=ROWS // 8,
        internal_batch_size=c,
    ),
    "saliency": lambda m, c: Saliency(m).attribute(
        _inputs(ROWS), target=torch.arange(ROWS) % 3, chunk_size=c
    ),
    "input_x_gradient": lambda m, c: InputXGradient(m).attribute(
        _inputs(ROWS), target=1, chunk_size=c
    ),
    "layer_integrated_gradients": lambda m, c: whybox.attr.LayerIntegratedGradients(
        m, m[0]
    ).attribute(_inputs(2), target=PER_EXAMPLE, n_steps=ROWS // 2, internal_batch_size=c),
}


def _run(call: Callable[[], Any], model: nn.Module) -> tuple[Counter, int]:
    """Host reads of one call, and the model's forwards in it."""
    forwards = []
    handle = model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    try:
        with HostReads() as counter:
            call()
    finally:
        handle.remove()
    return Counter(counter.reads), len(forwards)


def test_the_counter_sees_every_kind_of_host_read():
    t = torch.tensor([1.0, 0.0, 2.0])
    with HostReads() as counter:
        t[0].item()
        t.tolist()
        bool(t[0])
        if t[1]:
            pass
        int(t[0]), float(t[0])
        t.cpu(), t.numpy(), t.to("cpu")
        torch.nonzero(t), t.nonzero(), t[t > 0], torch.equal(t, t), t.unique()
        t.repeat_interleave(torch.tensor([1, 2, 3]))
        t.to(t.device), t.to(torch.float64), t[1:], t.repeat_interleave(2)  # not reads
    assert len(counter.reads) == 15
    assert all(read.endswith("outside whybox") for read in counter.reads)


@pytest.mark.parametrize("name", sorted(CASES))
def test_host_reads_do_not_grow_with_the_number_of_chunks(name):
    model = _model()
    few_chunks = ROWS // CHUNKS[0]
    many_chunks = ROWS // CHUNKS[1]
    reads_few, forwards_few = _run(lambda: CASES[name](model, few_chunks), model)
    reads_many, forwards_many = _run(lambda: CASES[name](model, many_chunks), model)
    assert forwards_many >= forwards_few + CHUNKS[1] - CHUNKS[0]  # really more chunks
    extra = reads_many - reads_few
    assert not extra, f"host reads per chunk: {dict(extra)}"
    assert sum(reads_many.values()) == sum(reads_few.values())


def test_noise_tunnel_batches_do_not_copy_to_the_host_per_batch():
    # NoiseTunnel's own loop: one inner call per nt_samples_batch_size noisy samples
    model = _model()

    def call(batch: int) -> Any:
        return whybox.attr.NoiseTunnel(whybox.attr.Saliency(model)).attribute(
            _inputs(2), nt_samples=8, nt_samples_batch_size=batch, stdevs=0.1, target=1
        )

    reads_few, forwards_few = _run(lambda: call(4), model)
    reads_many, forwards_many = _run(lambda: call(1), model)
    assert (forwards_few, forwards_many) == (2, 8)
    assert not reads_many - reads_few, f"host reads per batch: {dict(reads_many - reads_few)}"


def test_noise_tunnel_batches_with_per_example_targets_read_nothing_per_batch():
    # the repeated target carries the bounds read once (Target.repeat_for): its inner
    # calls check them without reading the device again
    model = _model()

    def call(batch: int) -> Any:
        return whybox.attr.NoiseTunnel(whybox.attr.Saliency(model)).attribute(
            _inputs(2), nt_samples=8, nt_samples_batch_size=batch, stdevs=0.1, target=PER_EXAMPLE
        )

    reads_few, _ = _run(lambda: call(4), model)
    reads_many, _ = _run(lambda: call(1), model)
    assert not reads_many - reads_few, f"host reads per batch: {dict(reads_many - reads_few)}"


def test_to_device_leaves_cpu_runs_unchanged():
    t = torch.arange(6.0).view(2, 3)
    assert to_device(t, "cpu") is t  # no copy, no pinning
    assert to_device(t, torch.device("cpu")) is t


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_device_copies_host_tensors_to_cuda_without_waiting():  # pragma: no cover
    t = torch.arange(6.0).view(2, 3)
    moved = to_device(t, "cuda")
    assert moved.device.type == "cuda"
    torch.testing.assert_close(moved.cpu(), t)
    assert to_device(moved, "cuda") is moved
