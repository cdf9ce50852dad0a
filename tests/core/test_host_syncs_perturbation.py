"""Perturbation methods read nothing back from the device per chunk.

On an accelerator every ``Tensor.item`` / ``tolist`` / ``cpu`` / ``numpy`` / ``bool(tensor)``
(and ``int`` / ``float`` of a tensor, ``nonzero``) waits for the queued work. A call may make a
few of them (argument checks, the surrogate fit), but their number must not grow with the
number of chunks: the same problem evaluated in 16 chunks and in 4 makes exactly the same
reads. Counted on the CPU with a ``TorchFunctionMode``, which sees these calls wherever the
tensors live; the forwards are counted too, so each problem really has 16 and 4 chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import whybox.attr as facade
from _host_reads import HostReads
from whybox import methods


class _Counted(nn.Module):
    """The model, counting its forwards (one per chunk)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, *inputs: Tensor) -> Tensor:
        self.calls += 1
        return self.inner(torch.cat(inputs, dim=1))


def _model(n_features: int) -> _Counted:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(n_features, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    return _Counted(net)


# Each problem has exactly 16 items (perturbations of the batch); a chunk of ``per``
# perturbations is ``per * N`` rows.
#   name: (class, batch, features, native options, facade options)
_PROBLEMS: dict[str, tuple[str, int, int, dict[str, Any], dict[str, Any]]] = {
    # the original + 15 ablated features
    "FeatureAblation": ("FeatureAblation", 3, 15, {}, {}),
    # the original + 15 windows of one element
    "Occlusion": (
        "Occlusion",
        3,
        15,
        {"sliding_window_shapes": (1,)},
        {"sliding_window_shapes": (1,)},
    ),
    # the same windows over two inputs (6 and 9 elements)
    "Occlusion/two inputs": (
        "Occlusion",
        3,
        15,
        {"sliding_window_shapes": ((1,), (1,))},
        {"sliding_window_shapes": ((1,), (1,))},
    ),
    "FeatureAblation/two inputs": ("FeatureAblation", 3, 15, {}, {}),
    "FeaturePermutation/two inputs": ("FeaturePermutation", 3, 15, {}, {}),
    "Lime/two inputs": ("Lime", 1, 6, {"n_samples": 16}, {"n_samples": 16}),
    # the empty and the full coalition + 2 orderings x 7 inner steps
    "ShapleyValueSampling": ("ShapleyValueSampling", 3, 8, {"n_samples": 2}, {"n_samples": 2}),
    # the original + 15 shuffled features
    "FeaturePermutation": ("FeaturePermutation", 3, 15, {}, {}),
    # 16 samples of one example
    "Lime": ("Lime", 1, 6, {"n_samples": 16}, {"n_samples": 16}),
    # 4 features: every one of the 2**4 coalitions is enumerated
    "KernelShap": ("KernelShap", 2, 4, {"n_samples": 16}, {"n_samples": 16}),
}

_SEEDED = {"ShapleyValueSampling", "FeaturePermutation", "Lime", "KernelShap"}


def _inputs(name: str, batch: int, n_features: int) -> Tensor | tuple[Tensor, ...]:
    x = torch.randn(batch, n_features, generator=torch.Generator().manual_seed(1))
    if name.endswith("/two inputs"):
        return (x[:, : n_features * 2 // 5], x[:, n_features * 2 // 5 :])
    return x


def _native_reads(name: str, per: int) -> tuple[int, int, list[str]]:
    cls, batch, n_features, options, _ = _PROBLEMS[name]
    model = _model(n_features)
    x = _inputs(name, batch, n_features)
    options = dict(options)
    if cls in _SEEDED:
        options["seed"] = 0
    method = getattr(methods, cls)(model)
    method.attribute(x, target=1, chunk_size=per * batch, **options)  # warm caches
    model.calls = 0
    with HostReads() as reads:
        method.attribute(x, target=1, chunk_size=per * batch, **options)
    return reads.count, model.calls, reads.reads


def _facade_reads(name: str, per: int) -> tuple[int, int, list[str]]:
    cls, batch, n_features, _, options = _PROBLEMS[name]
    model = _model(n_features)
    x = _inputs(name, batch, n_features)
    method = getattr(facade, cls)(model)

    def call() -> Any:
        torch.manual_seed(0)
        return method.attribute(x, target=1, perturbations_per_eval=per, **options)

    call()
    model.calls = 0
    with HostReads() as reads:
        call()
    return reads.count, model.calls, reads.reads


def _check(reads: Callable[[str, int], tuple[int, int, list[str]]], name: str) -> None:
    many, many_chunks, many_names = reads(name, 1)
    few, few_chunks, few_names = reads(name, 4)
    # the problem: 16 items, one or four per forward
    assert (many_chunks, few_chunks) == (16, 4)
    assert many == few, (
        f"{name}: {many} host reads in 16 chunks, {few} in 4 "
        f"({sorted(many_names)} vs {sorted(few_names)})"
    )


@pytest.mark.parametrize("name", sorted(_PROBLEMS))
def test_native_host_reads_do_not_grow_with_chunks(name: str) -> None:
    _check(_native_reads, name)


#: Captum's FeaturePermutation over several inputs draws one shuffle per feature of a
#: forward for every input holding one of them, so how many it draws (each checked on the
#: CPU against the identity, as Captum's randperm loop does) depends on
#: perturbations_per_eval itself; its native form is checked above
_FACADE_DRAWS_PER_FORWARD = {"FeaturePermutation/two inputs"}


@pytest.mark.parametrize("name", sorted(set(_PROBLEMS) - _FACADE_DRAWS_PER_FORWARD))
def test_facade_host_reads_do_not_grow_with_chunks(name: str) -> None:
    # perturbations_per_eval=1 is "automatic" in whybox.attr: 2 per forward gives 8 chunks
    def reads(name: str, per: int) -> tuple[int, int, list[str]]:
        return _facade_reads(name, 2 * per)

    many, many_chunks, _ = reads(name, 1)
    few, few_chunks, _ = reads(name, 4)
    assert (many_chunks, few_chunks) == (8, 2)
    assert many == few


def test_the_counter_sees_reads() -> None:
    # the check is only as good as the counter: it must see each kind of read
    t = torch.tensor([1.0, 2.0])
    with HostReads() as reads:
        t.sum().item()
        t.tolist()
        bool(t.all())
        float(t[0])
        int(t[1])
        t.numpy()
        t.nonzero()
    assert reads.count == 7
