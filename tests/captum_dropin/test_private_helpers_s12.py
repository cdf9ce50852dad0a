"""Private helpers Captum 0.9's newer tests import from Captum's module paths
(``shapley_value._shape_feature_mask``, ``influence._utils.common._load_flexible_state_dict``):
present at whybox's paths, with Captum's values."""

import pytest
import torch
from torch import nn

from whybox.attr._core.shapley_value import _shape_feature_mask
from whybox.influence._utils.common import _load_flexible_state_dict

captum_shapley = pytest.importorskip("captum.attr._core.shapley_value")
captum_common = pytest.importorskip("captum.influence._utils.common")


@pytest.mark.parametrize(
    "masks, shapes",
    [
        ((torch.tensor([[0, 0, 1]]), torch.tensor([0, 1, 2])), [(2, 3), (4, 3)]),
        ((torch.arange(6).reshape(2, 3),), [(5, 4, 2, 3)]),
        ((torch.tensor([[[0]]]),), [(2, 7, 1)]),
    ],
)
def test_shape_feature_mask_equals_captums(masks, shapes):
    inputs = tuple(torch.zeros(s) for s in shapes)
    ours, theirs = (
        _shape_feature_mask(masks, inputs),
        captum_shapley._shape_feature_mask(masks, inputs),
    )
    assert len(ours) == len(theirs)
    for a, b, x in zip(ours, theirs, inputs):
        assert a.shape == b.shape and a.dim() == x.dim() and torch.equal(a, b)


def test_shape_feature_mask_refuses_a_mask_that_does_not_broadcast():
    with pytest.raises(AssertionError, match="index 0"):
        _shape_feature_mask((torch.zeros(2, 4),), (torch.zeros(3, 3),))
    with pytest.raises(AssertionError):
        captum_shapley._shape_feature_mask((torch.zeros(2, 4),), (torch.zeros(3, 3),))


@pytest.mark.parametrize("prefixed", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_load_flexible_state_dict_equals_captums(tmp_path, prefixed, parallel):
    torch.manual_seed(0)
    source = nn.Linear(3, 2)
    state = (nn.DataParallel(source) if prefixed else source).state_dict()
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path)
    results = []
    for load in (_load_flexible_state_dict, captum_common._load_flexible_state_dict):
        target = nn.Linear(3, 2)
        model = nn.DataParallel(target) if parallel else target
        results.append((load(model, str(path)), target.weight.detach().clone()))
    (ours_lr, ours_w), (theirs_lr, theirs_w) = results
    assert ours_lr == theirs_lr == 1.0  # no learning_rate saved
    assert torch.equal(ours_w, theirs_w) and torch.equal(ours_w, source.weight.detach())
