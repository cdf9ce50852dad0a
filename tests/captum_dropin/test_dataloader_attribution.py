"""DataLoaderAttribution: feature ablation of a dataset-wide metric, with Captum 0.9's
input-role, baseline, feature-mask, reduce / to_metric and output-shape rules."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from whybox.attr import DataLoaderAttribution, FeatureAblation, FeaturePermutation
from whybox.attr._dataloader_attribution import SUPPORTED_METHODS, InputRole


def _data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(11, 4, generator=gen)
    extra = torch.randn(11, 2, 3, generator=gen)
    labels = torch.randint(0, 2, (11,), generator=gen)
    return x, extra, labels


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2)).eval()


def _sum(acc, out, inputs):
    total = out.sum(0)
    return total if acc is None else acc + total


def test_equals_feature_ablation_of_the_concatenated_dataset():
    x, _, _ = _data()
    net = _model()

    def forward(inputs):
        return net(inputs)[:, 0]

    loader = DataLoader(TensorDataset(x), batch_size=3)
    mask = torch.tensor([[0, 1, 1, 2]])
    ours = DataLoaderAttribution(FeatureAblation(forward)).attribute(
        loader, feature_mask=mask, baselines=0.5
    )
    whole = FeatureAblation(forward).attribute(x, feature_mask=mask, baselines=0.5)
    assert isinstance(ours, tuple) and len(ours) == 1  # TensorDataset batches are lists
    torch.testing.assert_close(ours[0], whole)


def test_a_dataset_metric_and_its_table():
    x, _, _ = _data()
    net = _model()
    loader = DataLoader(TensorDataset(x), batch_size=4)
    attr = DataLoaderAttribution(FeatureAblation(net))
    table = attr.attribute(
        loader, reduce=_sum, to_metric=lambda s: s / len(x), return_input_shape=False
    )
    assert table.shape == (2, 4)  # (metric.numel(), n_features)
    with torch.no_grad():
        mean = net(x).mean(0)
        for f in range(4):
            ablated = x.clone()
            ablated[:, f] = 0.0
            torch.testing.assert_close(table[:, f], mean - net(ablated).mean(0))
    spread = attr.attribute(loader, reduce=_sum, to_metric=lambda s: s / len(x))
    torch.testing.assert_close(spread[0], table)


@pytest.mark.parametrize("per_pass", [1, 2, 5, 40])
def test_perturbations_per_pass_changes_the_traversals_not_the_result(per_pass):
    x, _, _ = _data()
    net = _model()
    passes = []

    class Counting(DataLoader):
        def __iter__(self):
            passes.append(1)
            return super().__iter__()

    loader = Counting(TensorDataset(x), batch_size=4)
    attr = DataLoaderAttribution(FeatureAblation(lambda v: net(v)[:, 1]))
    ref = DataLoaderAttribution(FeatureAblation(lambda v: net(v)[:, 1])).attribute(
        DataLoader(TensorDataset(x), batch_size=4)
    )
    passes.clear()
    out = attr.attribute(loader, perturbations_per_pass=per_pass)
    torch.testing.assert_close(out[0], ref[0])
    # Captum's count: the first batch once for the argument checks, the unperturbed metric
    # once, then ceil(4 / k) passes of perturbations
    assert len(passes) == 2 + -(-4 // per_pass)


def test_roles_several_inputs_masks_and_baselines():
    x, extra, labels = _data()
    net = _model()

    def forward(a, b, y):
        return net(a + b.sum((1, 2)).unsqueeze(1)).gather(1, y.unsqueeze(1)).squeeze(1)

    # (x, extra, labels, unused): attribute x and extra, pass labels, hide the last one
    loader = DataLoader(TensorDataset(x, extra, labels, labels.float()), batch_size=5)
    roles = (InputRole.need_attr, InputRole.need_attr, InputRole.need_forward, InputRole.no_forward)
    masks = (torch.tensor([[0, 0, 1, 1]]), torch.tensor([[2, 2, 3]]))  # broadcast over dim 1
    baselines = (torch.full((1, 4), 0.25), -1.0)
    ax, ae = DataLoaderAttribution(FeatureAblation(forward)).attribute(
        loader, input_roles=roles, feature_mask=masks, baselines=baselines
    )
    assert ax.shape == (11, 4) and ae.shape == (11, 2, 3)
    with torch.no_grad():
        base = forward(x, extra, labels)
        group = extra.clone()
        group[:, :, 2] = -1.0
        torch.testing.assert_close(ae[:, 0, 2], base - forward(x, group, labels))
        torch.testing.assert_close(ae[:, 1, 2], ae[:, 0, 2])
        first = x.clone()
        first[:, :2] = 0.25
        torch.testing.assert_close(ax[:, 0], base - forward(first, extra, labels))


def test_a_whole_dataset_accuracy():
    x, _, labels = _data()
    net = _model()
    loader = DataLoader(TensorDataset(x, labels), batch_size=4)

    def correct(acc, out, inputs):
        hits = (out.argmax(1) == inputs[1]).sum()
        return hits if acc is None else acc + hits

    attr = DataLoaderAttribution(FeatureAblation(net)).attribute(
        loader, input_roles=(0, 2), reduce=correct, to_metric=lambda hits: hits.float() / len(x)
    )
    assert len(attr) == 1 and attr[0].shape == (1, 4)  # role-0 elements only
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == labels).float().mean()
        ablated = x.clone()
        ablated[:, 3] = 0.0
        drop = accuracy - (net(ablated).argmax(1) == labels).float().mean()
    torch.testing.assert_close(attr[0][0, 3], drop)


def test_single_tensor_batches_and_tuple_batches():
    x, _, _ = _data()
    net = _model()
    plain = DataLoaderAttribution(FeatureAblation(lambda v: net(v)[:, 0]))
    single = plain.attribute([x[:6], x[6:]])  # batches that are tensors: a tensor back
    assert isinstance(single, torch.Tensor) and single.shape == (11, 4)
    pairs = plain.attribute([(x[:6],), (x[6:],)])  # tuples (Captum 0.9 fails on these)
    torch.testing.assert_close(pairs[0], single)


def test_integer_inputs_stay_integers():
    ids = torch.tensor([[1, 2, 3], [3, 2, 1]])
    emb = nn.Embedding(5, 2)

    def forward(tokens):
        return emb(tokens).sum((1, 2))

    out = DataLoaderAttribution(FeatureAblation(forward)).attribute([ids])
    assert out.shape == (2, 3)


def test_errors_are_assertion_errors_too():
    x, _, _ = _data()
    loader = DataLoader(TensorDataset(x), batch_size=4)
    attr = DataLoaderAttribution(FeatureAblation(lambda v: v.sum(1)))
    with pytest.raises(AssertionError, match="one role per element"):
        attr.attribute(loader, input_roles=(0, 1))
    with pytest.raises(ValueError, match="at least one 0"):
        attr.attribute(loader, input_roles=(1,))
    with pytest.raises(AssertionError, match="first dimension of 1"):
        attr.attribute(loader, baselines=torch.zeros(2, 4))
    with pytest.raises(AssertionError, match="first dimension of 1"):
        attr.attribute(loader, feature_mask=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="Tensor"):
        attr.attribute(loader, reduce=lambda acc, out, inp: 1.0)
    with pytest.raises(AssertionError):
        DataLoaderAttribution(FeaturePermutation(lambda v: v))  # exactly FeatureAblation
    with pytest.raises(NotImplementedError):
        attr.attribute_future()
    assert SUPPORTED_METHODS == {FeatureAblation}


CONFIGS = {
    "default": {},
    "table": {"return_input_shape": False},
    "metric": {"reduce": _sum, "to_metric": lambda s: s / 11.0, "perturbations_per_pass": 3},
    "scalar": {"reduce": lambda acc, out, inp: out.sum() if acc is None else acc + out.sum()},
    "mask": {"feature_mask": torch.tensor([[1, 0, 1, 2]]), "baselines": torch.ones(1, 4)},
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_parity_with_captum(config):
    C = pytest.importorskip("captum.attr")
    x, _, _ = _data(1)
    net = _model(1)

    def forward(v):
        return net(v)[:, 0]

    kwargs = CONFIGS[config]
    loader = DataLoader(TensorDataset(x), batch_size=4)
    ours = DataLoaderAttribution(FeatureAblation(forward)).attribute(loader, **kwargs)
    theirs = C.DataLoaderAttribution(C.FeatureAblation(forward)).attribute(loader, **kwargs)
    ours, theirs = (ours, theirs) if isinstance(theirs, tuple) else ((ours,), (theirs,))
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b)


def test_parity_with_captum_two_inputs_and_roles():
    C = pytest.importorskip("captum.attr")
    x, extra, labels = _data(2)
    net = _model(2)

    def forward(a, b):
        return net(a + b.mean((1, 2)).unsqueeze(1))

    loader = DataLoader(TensorDataset(x, extra, labels), batch_size=3)
    kwargs = {
        "input_roles": (0, 0, 2),
        "feature_mask": (torch.tensor([[0, 1, 1, 2]]), torch.tensor([[[3, 3, 4], [4, 4, 4]]])),
        "baselines": (0.1, torch.zeros(1, 2, 3)),
        "perturbations_per_pass": 2,
    }
    ours = DataLoaderAttribution(FeatureAblation(forward)).attribute(loader, **kwargs)
    theirs = C.DataLoaderAttribution(C.FeatureAblation(forward)).attribute(loader, **kwargs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)


def test_show_progress_draws_one_bar(capsys):
    x, _, _ = _data()
    attr = DataLoaderAttribution(FeatureAblation(lambda v: v.sum(1)))
    attr.attribute(DataLoader(TensorDataset(x), batch_size=4), show_progress=True)
    assert "DataLoaderAttribution attribution" in capsys.readouterr().err
