"""The textbook max-pool rule's window weights, computed with fewer temporaries.

:func:`~whybox.methods.deeplift_rules._window_weights` writes ``y - y_ref`` straight into the
weights it returns and keeps the ``|dx| < eps`` mask in the own rows' weights until they are
due, so it allocates only its two results (the argmax differences and the weights): fewer
bytes touched between the model's own ops. Checked here:

* the weights equal a plain closed-form computation of the rule (``torch.where``, bool
  masks), exactly, for windows that overlap or not, 1d/2d/3d, float32 and float64, with
  input differences of exactly 0, below ``eps`` but not 0, and ordinary ones;
* the function allocates nothing but its two results and leaves its inputs alone;
* DeepLift through a max pool whose output the model then changes in place gives exactly the
  numbers of the same model without the in-place op, and two threads sharing the model get
  exactly their sequential numbers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _support import run_together
from whybox.methods import deeplift_rules
from whybox.methods.deeplift import DeepLift, DeepLiftShap

#: name -> (pool function, n_spatial, kwargs, example shape (channels, *spatial))
POOLS = {
    "2d": (F.max_pool2d, 2, {"kernel_size": 2}, (3, 8, 8)),
    "2d_overlap_pad": (F.max_pool2d, 2, {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 9, 9)),
    "2d_dilation_ceil": (
        F.max_pool2d,
        2,
        {"kernel_size": 2, "dilation": 2, "ceil_mode": True},
        (2, 9, 9),
    ),
    "1d": (F.max_pool1d, 1, {"kernel_size": 2}, (3, 12)),
    "3d": (F.max_pool3d, 3, {"kernel_size": 2}, (2, 4, 4, 4)),
}


def _pair_rows(shape: tuple[int, ...], dtype: torch.dtype, eps: float) -> Tensor:
    """``[inputs; references]`` rows after a ReLU (zeros in both rows of many windows),
    with some references equal to their inputs and some off by less than ``eps``."""
    torch.manual_seed(0)
    k = 4
    x = torch.randn((k,) + shape, dtype=dtype)
    b = 0.5 * torch.randn((k,) + shape, dtype=dtype)
    b[0] = x[0]  # an example equal to its reference: every difference is 0
    b[1, 0] = x[1, 0]  # one channel equal
    b[2] = x[2] + 0.25 * eps * torch.sign(torch.randn_like(x[2]))  # below eps, not 0
    return torch.cat([x, b]).relu()


def _closed_form(x: Tensor, out: Tensor, indices: Tensor, n_spatial: int, eps: float) -> Tensor:
    """``weights[s, t]`` of the textbook max-pool rule, straight from its definition.

    For a window with ``y = max x_in`` at ``i`` and ``y_ref = max x_ref`` at ``j``: the
    input rows' part ``max(y - y_ref, 0)`` divided by ``x_in[i] - x_ref[i]``, the
    references' part ``min(y - y_ref, 0)`` divided by ``x_in[j] - x_ref[j]``, both for both
    rows; 0 where that difference is below ``eps``, and then weight 1 for the row's own
    argmax (its plain max-pool gradient).
    """
    planes = out.shape[: out.dim() - n_spatial].numel() // 2
    values = x.reshape(2, planes, -1)
    pooled = out.reshape(2, planes, -1)
    index = indices.reshape(2, planes, -1)
    y_in, y_ref = pooled[0], pooled[1]
    dx_i = y_in - values[1].gather(1, index[0])
    dx_j = values[0].gather(1, index[1]) - y_ref
    small_i, small_j = dx_i.abs() < eps, dx_j.abs() < eps
    carried = y_in - y_ref
    zero = torch.zeros((), dtype=x.dtype)
    part_in = torch.where(small_i, zero, carried.clamp(min=0) / dx_i)
    part_ref = torch.where(small_j, zero, carried.clamp(max=0) / dx_j)
    own_in = part_in + small_i.to(x.dtype)
    own_ref = part_ref + small_j.to(x.dtype)
    return torch.stack([torch.stack([own_in, part_in]), torch.stack([part_ref, own_ref])])


def _pooled(name: str, dtype: torch.dtype, eps: float) -> tuple[Tensor, Tensor, Tensor, int]:
    pool, n_spatial, kwargs, shape = POOLS[name]
    x = _pair_rows(shape, dtype, eps)
    out, indices = pool(x, return_indices=True, **kwargs)
    return x, out, indices, n_spatial


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(POOLS))
def test_window_weights_equal_the_closed_form(name, dtype):
    eps = 1e-6
    x, out, indices, n_spatial = _pooled(name, dtype, eps)
    with torch.no_grad():
        index, weights = deeplift_rules._window_weights(x, out, indices, n_spatial, eps)
    expected = _closed_form(x, out, indices, n_spatial, eps)
    assert weights.shape == expected.shape
    assert torch.equal(weights, expected)
    assert torch.equal(index, indices.reshape(index.shape))
    # the data exercise every case: small positions (0 and not 0) and ordinary ones
    dx = torch.stack([expected[0, 0] - expected[0, 1], expected[1, 1] - expected[1, 0]])
    assert 0 < int(dx.sum()) < dx.numel()


def _allocated_bytes(call) -> list[int]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    return [e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0]


@pytest.mark.parametrize("name", ["2d", "2d_overlap_pad", "3d"])
def test_window_weights_allocate_only_their_two_results(name):
    x, out, indices, n_spatial = _pooled(name, torch.float32, 1e-6)
    pooled = out.numel() // 2  # per side
    with torch.no_grad():
        sizes = _allocated_bytes(
            lambda: deeplift_rules._window_weights(x, out, indices, n_spatial, 1e-6)
        )
    # the argmax differences (2, planes, P) and the weights (2, 2, planes, P); scalars
    # wrapped for an op (a few bytes) are not temporaries of the pooled size
    big = sorted(size for size in sizes if size >= pooled * x.element_size())
    assert big == [2 * pooled * x.element_size(), 4 * pooled * x.element_size()]


def test_window_weights_leave_their_inputs_alone():
    x, out, indices, n_spatial = _pooled("2d_overlap_pad", torch.float64, 1e-6)
    before = (x.clone(), out.clone(), indices.clone())
    with torch.no_grad():
        index, weights = deeplift_rules._window_weights(x, out, indices, n_spatial, 1e-6)
    for now, then in zip((x, out, indices), before):
        assert torch.equal(now, then)
    # the weights are a new buffer, not a view of anything the model holds
    storages = {t.untyped_storage().data_ptr() for t in (x, out)}
    assert weights.untyped_storage().data_ptr() not in storages


class _PoolNet(nn.Module):
    def __init__(self, inplace: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.after = nn.ReLU(inplace=inplace)
        self.head = nn.Linear(4 * 4 * 4, 3)
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(self.relu(self.conv(x)))
        h = h.mul_(2.0) if self.inplace else h * 2.0  # the pool's output buffer changes
        return self.head(self.after(h - 0.5).flatten(1))


def test_inplace_ops_after_the_pool_give_the_same_numbers():
    torch.manual_seed(2)
    x = torch.randn(3, 2, 8, 8)
    b = 0.1 * torch.randn(3, 2, 8, 8)
    b[0] = x[0]  # only local gradients there
    plain = DeepLift(_PoolNet(False)).attribute(x, baselines=b, target=1)
    inplace = DeepLift(_PoolNet(True)).attribute(x, baselines=b, target=1)
    assert torch.equal(inplace.attributions, plain.attributions)
    assert torch.equal(inplace.delta, plain.delta)
    assert plain.delta.abs().max() < 1e-4  # complete


def test_two_threads_get_their_sequential_numbers():
    model = _PoolNet(False).double().eval()
    torch.manual_seed(3)
    inputs = [torch.randn(4, 2, 8, 8, dtype=torch.float64) for _ in range(3)]
    refs = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    # the same shapes in both threads (a buffer shared by calls would be overwritten),
    # and a DeepLiftShap call of other shapes in between
    calls = [
        lambda: DeepLift(model).attribute(inputs[0], target=0).attributions,
        lambda: DeepLift(model).attribute(inputs[1], baselines=inputs[2], target=2).attributions,
        lambda: DeepLiftShap(model).attribute(inputs[2], baselines=refs, target=1).attributions,
    ]
    expected = [call() for call in calls]

    def work(i: int) -> list[Tensor]:
        got = []
        for round in range(10):
            got.append(calls[i]())
            if i == 1 and round % 3 == 0:
                assert torch.equal(calls[2](), expected[2])
        return got

    results = run_together(lambda: work(0), lambda: work(1))
    for got, want in zip(results, expected[:2]):
        assert len(got) == 10 and all(torch.equal(g, want) for g in got)
