"""The chunk probe splits a call that fits in one chunk only for forwards known to treat
rows independently (:func:`whybox.core.forward.rows_independent`): an ``nn.Module``
without a batch norm in training mode. A batch norm in training mode normalises with the
chunk's statistics, and a plain callable cannot be inspected: their calls stay one forward
(as before the probe could split, and as in Captum), so their results do not change between
the first call and later ones."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from whybox import methods
from whybox.core import chunks
from whybox.core.forward import rows_independent

CALLS = 12


class Sizes(nn.Module):
    """Records the rows of every forward of ``net``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        return self.net(x)


def _net(norm: bool) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Linear(12, 16)]
    if norm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


@pytest.fixture(autouse=True)
def _small_auto_chunks(monkeypatch):
    # 64 rows per automatic chunk: FeatureAblation's 4 x (12 + 1) rows fit in one, and
    # splits into 2-4 chunks are near enough to be timed
    monkeypatch.setitem(chunks._AUTO_BYTES, "cpu", 64 * 12 * 4)
    chunks.set_probe(True)
    chunks.clear_probe_cache()
    yield
    chunks.set_probe(None)
    chunks.clear_probe_cache()


def _calls(forward, recorder: Sizes, x: Tensor) -> tuple[list[list[int]], list[Tensor]]:
    method = methods.FeatureAblation(forward)
    sizes, results = [], []
    for _ in range(CALLS):
        recorder.sizes.clear()
        results.append(method.attribute(x, target=1).attributions)
        sizes.append(list(recorder.sizes))
    return sizes, results


def _x() -> Tensor:
    return torch.randn(4, 12, generator=torch.Generator().manual_seed(3))


def test_an_eval_model_is_split_with_the_same_results():
    model = Sizes(_net(norm=True)).eval()
    sizes, results = _calls(model, model, _x())
    assert sizes[0] == [52]
    assert any(len(s) > 1 for s in sizes[1:])  # the probe did split: the gate let it
    for later in results[1:]:
        torch.testing.assert_close(later, results[0], rtol=1e-5, atol=1e-6)


def test_a_batch_norm_in_training_mode_is_never_split():
    model = Sizes(_net(norm=True)).train()
    sizes, results = _calls(model, model, _x())
    assert all(s == [52] for s in sizes), sizes
    # one forward of the same rows every time: the same batch statistics, the same numbers
    for later in results[1:]:
        torch.testing.assert_close(later, results[0], rtol=0, atol=0)


def test_a_plain_callable_is_never_split():
    model = Sizes(_net(norm=False)).eval()
    sizes, _ = _calls(lambda x: model(x), model, _x())
    assert all(s == [52] for s in sizes), sizes


@pytest.mark.parametrize("scripted", [False, True])
def test_rows_independent(scripted):
    def wrap(module):
        return torch.jit.script(module) if scripted else module

    assert rows_independent(wrap(_net(norm=False)))
    assert rows_independent(wrap(_net(norm=True).eval()))
    assert not rows_independent(wrap(_net(norm=True).train()))
    net = _net(norm=True)
    net[1].train()  # only the norm in training mode
    net.eval().get_submodule("1").train()
    assert not rows_independent(wrap(net))
    assert rows_independent(net.eval().forward)  # a bound method of a module
    assert not rows_independent(lambda x: x)
