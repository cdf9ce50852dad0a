"""DeepLift's per-call fast paths give the numbers of the general paths they replace.

* the textbook max-pool rule divides each window's carried differences on the pooled grid
  (:class:`~whybox.methods.deeplift_rules._MaxPoolPairs`) instead of spreading them and
  dividing on the input grid; any other ``spread`` still takes the general path;
* DeepLiftShap sums each example's references per chunk of whole examples and scatters only
  for chunks that split an example;
* the rule table goes to the hooks as it is, and the default rule set is shared by every call
  (it is stateless), so nothing may go stale when the model changes between calls or when two
  threads share a model.
"""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from torch import Tensor, nn

import whybox.attr as W
from _support import deeplift_general_pool_rules, module_hook_count
from whybox.methods import deeplift_rules
from whybox.methods.deeplift import DeepLift, DeepLiftShap

_general_rules = deeplift_general_pool_rules


def _pool_nets() -> dict[str, tuple[tuple[int, ...], nn.Module]]:
    torch.manual_seed(0)
    nets = {
        "2d_relu_overlap_pad": (
            (2, 9, 9),
            nn.Sequential(
                nn.Conv2d(2, 3, 3),
                nn.ReLU(),  # zeros in both rows: many positions below eps at the pool
                nn.MaxPool2d(3, stride=2, padding=1),
                nn.Flatten(),
                nn.Linear(3 * 4 * 4, 3),
            ),
        ),
        "2d_dilation_ceil": (
            (2, 9, 9),
            nn.Sequential(
                nn.Conv2d(2, 3, 2),
                nn.MaxPool2d(2, dilation=2, ceil_mode=True),
                nn.Flatten(),
                nn.Linear(3 * 4 * 4, 3),
            ),
        ),
        "1d": (
            (2, 12),
            nn.Sequential(
                nn.Conv1d(2, 3, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(15, 3)
            ),
        ),
        "3d": (
            (1, 5, 5, 5),
            nn.Sequential(
                nn.Conv3d(1, 2, 2), nn.MaxPool3d(2), nn.Flatten(), nn.Tanh(), nn.Linear(16, 3)
            ),
        ),
    }
    return {name: (shape, net.double().eval()) for name, (shape, net) in nets.items()}


POOL_NETS = _pool_nets()


@pytest.mark.parametrize("name", sorted(POOL_NETS))
def test_max_pool_fast_path_equals_the_general_path(name, monkeypatch):
    shape, model = POOL_NETS[name]
    torch.manual_seed(1)
    x = torch.randn((4,) + shape, dtype=torch.float64)
    b = 0.3 * torch.randn((4,) + shape, dtype=torch.float64)
    b[:2] = x[:2]  # two examples equal to their reference: only local gradients there
    b[2, 0] = x[2, 0]  # one channel equal: input differences of 0 inside a pair
    target = [0, 1, 2, 0]
    general = DeepLift(model, rules=_general_rules()).attribute(x, baselines=b, target=target)

    def no_general_backward(ctx, grad):
        raise AssertionError("the default max-pool rule took the general path")

    monkeypatch.setattr(
        deeplift_rules._MaxPoolRescale, "backward", staticmethod(no_general_backward)
    )
    fast = DeepLift(model).attribute(x, baselines=b, target=target)
    torch.testing.assert_close(fast.attributions, general.attributions, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fast.delta, general.delta, rtol=0, atol=1e-12)
    assert fast.delta.abs().max() < 1e-10  # complete
    assert torch.equal(fast.attributions[:2], torch.zeros_like(x[:2]))


def test_max_pool_fast_path_float32_and_inplace_op_after_the_pool():
    class Net(nn.Module):
        def __init__(self, inplace: bool) -> None:
            super().__init__()
            torch.manual_seed(2)
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.head = nn.Linear(4 * 4 * 4, 3)
            self.inplace = inplace

        def forward(self, x: Tensor) -> Tensor:
            h = self.pool(self.relu(self.conv(x)))
            h = h.add_(1.0) if self.inplace else h + 1.0  # the pool's output buffer changes
            return self.head(h.flatten(1))

    torch.manual_seed(3)
    x, b = torch.randn(3, 2, 8, 8), 0.1 * torch.randn(3, 2, 8, 8)
    expected = DeepLift(Net(False), rules=_general_rules()).attribute(x, baselines=b, target=1)
    got = DeepLift(Net(True)).attribute(x, baselines=b, target=1)
    torch.testing.assert_close(got.attributions, expected.attributions, rtol=1e-5, atol=1e-6)
    assert got.delta.abs().max() < 1e-4


@pytest.mark.parametrize("chunk_size", [2, 6, 8, "auto"])
def test_deeplift_shap_chunks_of_whole_and_split_examples(chunk_size):
    """chunk_size 6 (3 pairs, 2 references): split chunks, then a chunk of whole examples."""
    _, model = POOL_NETS["2d_relu_overlap_pad"]
    torch.manual_seed(4)
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    refs = torch.randn(2, 2, 9, 9, dtype=torch.float64)
    got = DeepLiftShap(model).attribute(x, baselines=refs, target=1, chunk_size=chunk_size)
    # the mean of DeepLift against each reference
    per_ref = [
        DeepLift(model).attribute(x, baselines=r.expand_as(x), target=1).attributions for r in refs
    ]
    torch.testing.assert_close(
        got.attributions, torch.stack(per_ref).mean(0), rtol=1e-12, atol=1e-14
    )
    assert got.delta.shape == (8,) and got.delta.abs().max() < 1e-10


class _Swappable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(2, 3, 3)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(3 * 3 * 3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.act(self.conv(x))).flatten(1))


@pytest.mark.parametrize("facade", [False, True])
def test_modules_replaced_between_calls_get_their_own_rules(facade):
    model = _Swappable().double().eval()
    torch.manual_seed(6)
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    b = 0.2 * torch.randn(3, 2, 8, 8, dtype=torch.float64)

    def run(m: nn.Module, method: object = None) -> Tensor:
        if facade:
            return (method or W.DeepLift(m)).attribute(x, b, target=1)
        return (method or DeepLift(m)).attribute(x, baselines=b, target=1).attributions

    method = W.DeepLift(model) if facade else DeepLift(model)
    before = run(model, method)
    torch.testing.assert_close(before, run(copy.deepcopy(model)), rtol=0, atol=0)
    model.act = nn.Tanh()  # another rule
    model.pool = nn.AvgPool2d(2)  # no rule at all
    after = run(model, method)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, run(copy.deepcopy(model)), rtol=0, atol=0)
    with torch.no_grad():  # the Tanh's rule is complete: f(x) - f(b) is recovered
        gap = model(x)[:, 1] - model(b)[:, 1]
    torch.testing.assert_close(after.flatten(1).sum(1), gap, rtol=1e-10, atol=1e-10)
    model.act = nn.ReLU()
    model.pool = nn.MaxPool2d(2)
    torch.testing.assert_close(run(model, method), before, rtol=0, atol=0)
    assert module_hook_count(model) == 0


def test_two_threads_share_one_model_and_the_default_rules():
    """The default rule set is shared by every call; each thread still gets its own numbers
    (two eps values: two shared sets), on one model, overlapping."""
    _, model = POOL_NETS["2d_relu_overlap_pad"]
    torch.manual_seed(7)
    inputs = [torch.randn(3, 2, 9, 9, dtype=torch.float64) for _ in range(2)]
    refs = torch.randn(2, 2, 9, 9, dtype=torch.float64)
    calls = [
        lambda: DeepLift(model).attribute(inputs[0], target=0).attributions,
        lambda: (
            DeepLiftShap(model, eps=1e-3)
            .attribute(inputs[1], baselines=refs, target=2)
            .attributions
        ),
    ]
    expected = [call() for call in calls]
    barrier = threading.Barrier(2)
    results: list[list[Tensor]] = [[], []]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(10):
                results[index].append(calls[index]())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    for index in range(2):
        assert len(results[index]) == 10
        assert all(torch.equal(r, expected[index]) for r in results[index])
    assert module_hook_count(model) == 0
