"""The fast paths of TracIn on convolutional models: per-example ``Conv2d`` gradients from
patches or a grouped convolution, channels-last inputs (and the fall-back for models whose
code depends on the layout), and chunks bounded by the input bytes -- each checked against
per-example gradients by plain autograd."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from whybox.core.chunks import auto_chunk_rows
from whybox.influence import TracInCP, TracInCPFast, _data
from whybox.influence._grads import FactoredGradients, parameter_names


class ConvNet(nn.Module):
    """Two convolutions (the second with ``in_channels`` inputs) and a linear head;
    ``view=True`` flattens with ``.view`` (fails on channels-last activations)."""

    def __init__(self, conv: dict, in_channels: int, view: bool = False) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, in_channels, 3, padding=1)
        self.second = nn.Conv2d(in_channels, 4, **conv)
        self.view = view
        self.head = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.second(torch.relu(self.first(x))))
        h = nn.functional.max_pool2d(h, 2)
        flat = h.view(h.shape[0], -1) if self.view else h.flatten(1)
        return self.head(flat)


CONVS = [
    {"kernel_size": 3, "padding": 1},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": (2, 0)},
    {"kernel_size": 2, "dilation": (1, 2), "padding": (0, 1), "bias": False},
]


def _model(conv: dict, in_channels: int, view: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = ConvNet(conv, in_channels, view)
    model(torch.zeros(1, 3, 12, 10))  # materialise the lazy head
    return model.eval()


def _per_example(model, names, x, y, loss):
    params = dict(model.named_parameters())
    rows = []
    for i in range(len(x)):
        value = loss(model(x[i : i + 1]), y[i : i + 1]).sum()
        grads = torch.autograd.grad(value, [params[n] for n in names])
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("in_channels", [2, 9])  # patches and grouped convolution
@pytest.mark.parametrize("channels_last", [False, True])
def test_factored_conv_gradients_are_autograds(conv, in_channels, channels_last):
    model = _model(conv, in_channels)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, 12, 10, generator=g), torch.randint(0, 3, (6,), generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = nn.CrossEntropyLoss(reduction="sum")
    names = parameter_names(model, None, True, owner="test")
    factors = FactoredGradients(model, names, owner="test")(_data.Chunk((x,), y, 6), loss)
    assert factors.factored
    expected = _per_example(model, names, x, y, loss)
    # the blocks are stored in their own order; flat() restores the parameters'
    torch.testing.assert_close(factors.flat(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(factors.dot(factors), expected @ expected.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(factors.squared_norms(), (expected**2).sum(1), rtol=1e-5, atol=1e-5)


def _checkpoints(model, folder, count=2):
    g = torch.Generator().manual_seed(2)
    paths = []
    for c in range(count):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        path = os.path.join(folder, f"c{c}.pt")
        torch.save(model.state_dict(), path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("view", [False, True])
def test_tracin_on_a_cnn_is_the_sum_of_gradient_dot_products(tmp_path, view):
    model = _model(CONVS[1], 9, view)
    paths = _checkpoints(model, tmp_path)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(10, 3, 12, 10, generator=g), torch.randint(0, 3, (10,), generator=g)
    xt, yt = torch.randn(3, 3, 12, 10, generator=g), torch.randint(0, 3, (3,), generator=g)
    loss = nn.CrossEntropyLoss(reduction="sum")
    tracin = TracInCP(
        model,
        TensorDataset(x, y),
        paths,
        batch_size=4,
        loss_fn=loss,
        sample_wise_grads_per_batch=True,
    )
    scores, self_scores = tracin.influence((xt, yt)), tracin.self_influence()
    fast = TracInCPFast(model, "head", TensorDataset(x, y), paths, batch_size=4, loss_fn=loss)
    fast_scores = fast.influence((xt, yt))
    names = parameter_names(model, None, True, owner="test")
    expected = torch.zeros(3, 10)
    expected_self = torch.zeros(10)
    expected_fast = torch.zeros(3, 10)
    for path in paths:
        model.load_state_dict(torch.load(path))
        train, test = (
            _per_example(model, names, x, y, loss),
            _per_example(model, names, xt, yt, loss),
        )
        expected += test @ train.T
        expected_self += (train**2).sum(1)
        head = ["head.weight"]
        train, test = _per_example(model, head, x, y, loss), _per_example(model, head, xt, yt, loss)
        expected_fast += test @ train.T
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(self_scores, expected_self, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast_scores, expected_fast, rtol=1e-4, atol=1e-5)
    # a model that cannot run channels-last is run as given from then on
    assert tracin._factors._layout.enabled is not view
    assert fast._layout.enabled is not view


def test_chunks_are_bounded_by_the_input_bytes_of_an_example():
    x = torch.zeros(300, 3, 64, 64)  # 48 KiB per example
    batches = [(x[i : i + 50], torch.zeros(50)) for i in range(0, 300, 50)]
    cap = auto_chunk_rows(3 * 64 * 64 * 4, x.device)
    assert cap < 300
    sizes = [c.rows for c in _data.chunks(batches, 1000, owner="test", by_input=True)]
    assert sum(sizes) == 300 and max(sizes) <= cap
    assert max(c.rows for c in _data.chunks(batches, 1000, owner="test")) > cap
