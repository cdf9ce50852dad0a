"""The engine's fixed per-call work, cut without changing a result or an error.

* per-example target indices are read from the device once per call (one read for every
  column, chunk and output shape), and NoiseTunnel's re-calls on repeated rows reuse them;
* the cheap ``gather`` selection of one index per example gives the values and gradients
  of the general indexing (negative indices keep the general path);
* a lone tensor skips input flattening but is prepared exactly as before;
* the Captum adapter resolves its renames once per spec and still words errors for the
  facade and passes ``grad_kwargs`` on.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import whybox.attr
import whybox.core.targets as targets
from whybox.core.call import prepare_call, repeat_rows
from whybox.core.forward import _AUTOGRAD_OPTIONS, autograd_options
from whybox.core.inputs import prepare_inputs
from whybox.core.targets import prepare_target
from whybox.core.validation import ParameterError
from whybox.methods import NoiseTunnel, Saliency


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4))


@pytest.fixture
def bound_reads(monkeypatch) -> list[Tensor]:
    """Every per-example index tensor whose bounds are read from the device."""
    seen: list[Tensor] = []
    original = targets._bounds

    def counting(indices: Tensor):
        seen.append(indices)
        return original(indices)

    monkeypatch.setattr(targets, "_bounds", counting)
    return seen


def test_per_example_bounds_are_read_once_per_call_whatever_the_chunks(bound_reads):
    model = _model()
    x = torch.randn(7, 3)
    target = torch.tensor([0, 3, 1, 2, 2, 0, 1])
    whole = Saliency(model).attribute(x, target=target).attributions
    assert len(bound_reads) == 1
    chunked = Saliency(model).attribute(x, target=target, chunk_size=2).attributions
    assert len(bound_reads) == 2  # one more call, one more read: not one per chunk
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)


def test_bounds_of_index_tuples_are_read_in_one_go(bound_reads):
    target = prepare_target([(0, 1), (2, 0), (1, 2)], 3, owner="T")
    output = torch.randn(3, 3, 4)
    expected = torch.stack([output[0, 0, 1], output[1, 2, 0], output[2, 1, 2]])
    torch.testing.assert_close(target.select(output), expected, rtol=0, atol=0)
    assert target._column_bounds() == ((0, 2), (0, 2))
    target.select(torch.randn(3, 5, 5))  # another output shape: checked, not re-read
    assert len(bound_reads) == 1


def test_large_index_tensors_are_reduced_with_the_same_bounds():
    indices = torch.randint(-5, 9, (5000, 2))
    expected = tuple((int(c.min()), int(c.max())) for c in indices.unbind(1))
    assert targets._bounds(indices) == expected
    assert targets._bounds(indices[:10]) == tuple(
        (int(c.min()), int(c.max())) for c in indices[:10].unbind(1)
    )
    assert targets._bounds(torch.zeros((0, 3), dtype=torch.long)) == ((0, -1),) * 3


@pytest.mark.parametrize("indices", [[0, 3, 1, 2], [0, -1, 1, -4]], ids=["gather", "negative"])
def test_one_index_per_example_selects_the_indexed_values_and_gradients(indices):
    output = torch.randn(4, 4, requires_grad=True)
    target = prepare_target(torch.tensor(indices), 4, owner="T")
    selected = target.select(output)
    reference = output[torch.arange(4), torch.tensor(indices)]
    torch.testing.assert_close(selected, reference, rtol=0, atol=0)
    assert selected.shape == (4,)
    (grad,) = torch.autograd.grad(selected.sum(), output)
    (expected,) = torch.autograd.grad(reference.sum(), output)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)


def test_rows_of_examples_select_their_examples_targets():
    target = prepare_target(torch.tensor([2, 0, 1]), 3, owner="T")
    output = torch.randn(5, 3)
    rows = torch.tensor([2, 2, 0, 1, 0])
    expected = output[torch.arange(5), torch.tensor([1, 1, 2, 0, 2])]
    torch.testing.assert_close(target.select(output, rows), expected, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [4, -5])
def test_out_of_range_indices_still_name_the_target_and_the_dimension(bad):
    model = _model()
    with pytest.raises(ParameterError) as error:
        Saliency(model).attribute(torch.randn(3, 3), target=torch.tensor([0, bad, 1]))
    message = str(error.value)
    assert "'target' parameter of Saliency" in message
    assert "output dimension 1 of size 4" in message


def test_noise_tunnel_reuses_the_bounds_for_its_repeated_rows(bound_reads):
    model = _model()
    x = torch.randn(3, 3)
    target = torch.tensor([3, 0, 2])
    result = NoiseTunnel(Saliency(model)).attribute(
        x, target=target, nt_samples=4, nt_samples_batch_size=1, seed=0
    )
    assert len(bound_reads) == 1  # four inner calls, none reads them again
    assert result.attributions.shape == x.shape
    assert torch.isfinite(result.attributions).all()


def test_repeated_targets_carry_their_bounds_until_changed(bound_reads):
    model = _model()
    x = torch.randn(3, 3)
    call = prepare_call("T", model, x, target=torch.tensor([3, 0, 2]))
    call.evaluator.outputs(_rows(x))  # checks, so the bounds are known
    assert len(bound_reads) == 1
    repeated, _, _ = repeat_rows(call, 2)
    assert repeated.tolist() == [3, 3, 0, 0, 2, 2]
    again = prepare_target(repeated, 6, owner="T")
    again.select(torch.randn(6, 4))
    assert len(bound_reads) == 1  # reused
    repeated[1] = 9  # an in-place change: read again, and refused
    changed = prepare_target(repeated, 6, owner="T")
    with pytest.raises(ParameterError, match="'target' parameter of T"):
        changed.select(torch.randn(6, 4))
    assert len(bound_reads) == 2


def test_repeat_for_some_examples_reads_its_own_bounds(bound_reads):
    target = prepare_target(torch.tensor([3, 0, 2]), 3, owner="T")
    target.select(torch.randn(3, 4))
    some = target.repeat_for(torch.tensor([1, 1]))  # not every example: no bounds kept
    assert prepare_target(some, 2, owner="T")._column_bounds() == ((0, 0),)
    assert len(bound_reads) == 2


def _rows(x: Tensor):
    from whybox.core.forward import RowBatch

    return RowBatch((x,), None)


def test_a_lone_tensor_is_prepared_as_flattening_would():
    x = torch.randn(4, 3, requires_grad=True)
    call = prepare_call("T", _model(), x)
    reference = prepare_inputs(x, owner="T")
    assert call.inputs.structure == reference.structure
    (tensor,) = call.tensors
    assert not tensor.requires_grad and tensor.data_ptr() == x.data_ptr()
    assert call.inputs.restore(call.tensors) is tensor
    # a subclass (a parameter) takes the general path, with the same outcome
    weights = nn.Parameter(torch.randn(4, 3))
    (detached,) = prepare_call("T", _model(), weights).tensors
    assert type(detached) is Tensor and not detached.requires_grad


@pytest.mark.parametrize(
    "inputs, kind, words",
    [
        (torch.zeros(3, 3, dtype=torch.long), TypeError, "floating point tensors"),
        (torch.tensor(1.0), ValueError, "a batch dimension"),
    ],
)
def test_a_lone_bad_tensor_gets_the_inputs_error(inputs, kind, words):
    with pytest.raises(kind, match=words) as error:
        prepare_call("T", _model(), inputs)
    assert "'inputs' parameter of T" in str(error.value)


def test_show_progress_is_still_checked():
    with pytest.raises(TypeError, match="'show_progress' parameter of T must be a bool"):
        prepare_call("T", _model(), torch.randn(2, 3), show_progress=1)


def test_specs_resolve_shared_and_own_renames_once():
    from whybox.attr._adapter import Spec

    spec = Spec(Saliency, renames={"layer_mask": "feature_mask", "method": "how"})
    assert spec.plan["additional_forward_args"] == ("forward_args", None)
    assert spec.plan["layer_mask"] == ("feature_mask", None)
    assert spec.plan["method"] == ("how", None)  # a spec's own rename wins
    native_name, convert = spec.plan["internal_batch_size"]
    assert native_name == "chunk_size" and convert(None, None) == "auto"
    assert convert(7, None) == 7


def test_facade_errors_name_the_facade_and_captum_parameter():
    model = _model()
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"^The 'method' parameter of IntegratedGradients"):
        whybox.attr.IntegratedGradients(model).attribute(x, target=0, method="bad")
    with pytest.raises(AssertionError, match=r"^The 'abs' parameter of Saliency must be a bool"):
        whybox.attr.Saliency(model).attribute(x, target=0, abs="yes")


def test_facade_calls_set_autograd_options_only_when_they_change_them():
    seen: list = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = _model()

        def forward(self, x: Tensor) -> Tensor:
            seen.append(_AUTOGRAD_OPTIONS.get())
            return self.inner(x)

    x = torch.randn(2, 3)
    facade = whybox.attr.Saliency(Spy())
    expected = facade.attribute(x, target=1)
    with autograd_options({"retain_graph": True}):
        inner = facade.attribute(x, target=1)  # a call inside another's options: none
    torch.testing.assert_close(inner, expected, rtol=0, atol=0)
    assert seen[0] is None and seen[1] == {}
