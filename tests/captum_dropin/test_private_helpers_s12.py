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


def test_divide_and_aggregate_metrics_slices_as_captums():
    import warnings

    from captum.metrics._utils.batching import _divide_and_aggregate_metrics as theirs

    from whybox.metrics._utils.batching import _divide_and_aggregate_metrics as ours

    inputs = (torch.zeros(3, 2),)
    for n in (1, 5, 7, 10):
        for most in (None, 1, 3, 6, 9, 12, 40, 100):
            seen = []
            for f in (ours, theirs):
                calls = []
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    total = f(
                        inputs,
                        n,
                        lambda k, calls=calls: (calls.append(k), torch.full((3,), float(k)))[1],
                        max_examples_per_batch=most,
                    )
                seen.append((calls, len(caught), total.tolist()))
            assert seen[0] == seen[1], (n, most)
            assert sum(seen[0][0]) == n  # every sample evaluated once


def test_run_forward_and_mask_checks_as_captums():
    import captum._utils.common as C

    import whybox._utils.common as W

    torch.manual_seed(0)
    model, x = nn.Linear(3, 2), torch.randn(4, 3)
    for target in (None, 1, [0, 1, 0, 1], torch.tensor([1, 0, 0, 1])):
        assert torch.equal(W._run_forward(model, x, target), C._run_forward(model, x, target))
    scaled = lambda a, b: a * b  # noqa: E731
    assert torch.equal(W._run_forward(scaled, x, 0, 2.0), C._run_forward(scaled, x, 0, 2.0))
    constant = lambda: torch.ones(3, 2)  # noqa: E731
    assert torch.equal(W._run_forward(constant, None, 1), C._run_forward(constant, None, 1))
    for mask, shape in [((1, 3), (4, 3)), ((2, 3), (4, 3)), ((3,), (4, 3)), ((1, 1, 3), (4, 3))]:
        m, inp = torch.zeros(mask), torch.zeros(shape)
        assert W._is_mask_valid(m, inp) == C._is_mask_valid(m, inp)
    assert W._format_inputs([x]) == C._format_inputs([x])
    assert W._format_inputs(x)[0] is x


def test_feature_mask_helpers_as_captums():
    import captum._utils.common as C

    import whybox._utils.common as W

    inputs = (torch.zeros(2, 3), torch.zeros(2, 2, 2), torch.zeros(2, 0))
    for start in (0, 5):
        ours = W._format_feature_mask(None, inputs, start)
        theirs = C._format_feature_mask(None, inputs, start)
        assert all(torch.equal(a, b) and a.shape == b.shape for a, b in zip(ours, theirs))
        assert W._get_max_feature_index(ours) == C._get_max_feature_index(theirs) == start + 6
        assert W._get_feature_idx_to_tensor_idx(ours) == C._get_feature_idx_to_tensor_idx(theirs)
    given = torch.tensor([[0, 1, 1]])
    assert W._format_feature_mask(given, inputs)[0] is given
    shared = (torch.tensor([[0, 1, 1]]), torch.tensor([[1, 2]]))
    assert W._get_feature_idx_to_tensor_idx(shared) == C._get_feature_idx_to_tensor_idx(shared)
    parts = (torch.arange(4.0).reshape(2, 2), torch.ones(3))
    assert torch.equal(W._flatten_tensor_or_tuple(parts), C._flatten_tensor_or_tuple(parts))
    assert torch.equal(W._flatten_tensor_or_tuple(parts[0]), C._flatten_tensor_or_tuple(parts[0]))
    linear = nn.Linear(2, 2)
    x = (torch.zeros(1, 2),)
    for args in ((x, None), (None, x), (None, None)):
        assert W._extract_device(linear, *args) == C._extract_device(linear, *args)
    with pytest.raises(RuntimeError, match="device"):
        W._extract_device(nn.ReLU(), None, None)


def test_version_and_expansion_helpers_as_captums():
    import captum._utils.common as C

    import whybox._utils.common as W

    for version in ("2.13.0+cpu", "0.9.0", "1.7", "3", "1.2.dev0"):
        assert W.parse_version(version) == C.parse_version(version)
    with pytest.raises(AssertionError):
        W.parse_version("dev")
    assert [t.name for t in W.ExpansionTypes] == [t.name for t in C.ExpansionTypes]
    for kind in ("repeat", "repeat_interleave"):
        ours_kind, theirs_kind = W.ExpansionTypes[kind], C.ExpansionTypes[kind]
        for target in ([0, 2, 1], torch.tensor([1, 0]), 3, torch.tensor(2), None):
            ours = W._expand_target(target, 3, ours_kind)
            theirs = C._expand_target(target, 3, theirs_kind)
            if isinstance(theirs, torch.Tensor):
                assert torch.equal(ours, theirs)
            else:
                assert ours == theirs
        args = (torch.arange(4.0).reshape(2, 2), torch.tensor(5.0), "text", 7)
        ours = W._expand_additional_forward_args(args, 3, ours_kind)
        theirs = C._expand_additional_forward_args(args, 3, theirs_kind)
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b) if isinstance(b, torch.Tensor) else a == b
    assert W._expand_additional_forward_args(None, 2) is None
