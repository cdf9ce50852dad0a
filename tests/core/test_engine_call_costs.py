"""The engine's fixed per-call work on millisecond gradient jobs, cut without changing a
result or an error.

* a layer found to be an eager submodule is re-checked on later calls along its path from
  the model (not by walking the whole model); any change on that path takes the full check
  and its errors, and the remembered paths go with their models;
* a call without extra forward arguments shares one read-only ``ForwardArgs`` per batch size;
* the chunk probe's row signature is worked out only when read, with the same value;
* one chunk's selected outputs are returned without a copy, equal to the chunked ones;
* gradients are the same whether the caller has gradients on, off or forced on.
"""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import whybox.core.model_checks as model_checks
from whybox import methods as M
from whybox.core.call import prepare_call
from whybox.core.gradients import row_gradients
from whybox.core.inputs import prepare_forward_args
from whybox.core.validation import ParameterError, ParameterTypeError


def _model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    block = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6))
    return nn.Sequential(block, nn.Tanh(), nn.Linear(6, 3)).double()


def _x(rows: int = 4) -> torch.Tensor:
    return torch.randn(rows, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def walks(monkeypatch) -> list[nn.Module]:
    """Every model walked in full by the layer check."""
    seen: list[nn.Module] = []
    original = model_checks.submodules

    def counting(model):
        seen.append(model)
        return original(model)

    monkeypatch.setattr(model_checks, "submodules", counting)
    return seen


# -- the layer check along the remembered path ---------------------------------------------
def test_a_layer_found_eager_is_rechecked_along_its_path_not_by_a_walk(walks):
    model, x = _model(), _x()
    layer = model[0][2]
    first = M.LayerActivation(model, layer).attribute(x).attributions
    assert walks  # the first call checks the whole model
    walks.clear()
    again = M.GradCam(model, layer).attribute(x, target=1)
    assert walks == []
    torch.testing.assert_close(first, M.LayerActivation(model, layer).attribute(x).attributions)
    assert again.attributions.shape == (4, 1)


def test_a_layer_removed_from_its_path_is_refused_by_the_full_check():
    model, x = _model(), _x()
    layer = model[0][2]
    M.LayerActivation(model, layer).attribute(x)
    model[0][2] = nn.Linear(6, 6).double()
    with pytest.raises(ParameterError, match="one of model.modules()"):
        M.LayerActivation(model, layer).attribute(x)


def test_a_parent_compiled_after_a_first_call_is_refused():
    model, x = _model(), _x()
    layer = model[0][2]
    M.GradCam(model, layer).attribute(x, target=0)
    model[0].compile()  # the same parent object, now compiled in place
    with pytest.raises(ParameterTypeError, match="torch.compile'd"):
        M.GradCam(model, layer).attribute(x, target=0)


def test_a_layer_moved_to_another_eager_parent_is_found_there():
    model, x = _model(), _x()
    layer = model[0][2]
    M.LayerActivation(model, layer).attribute(x)
    # the same modules, rearranged: the remembered path is gone, the layer is elsewhere
    model[0] = nn.Sequential(nn.Sequential(model[0][0], model[0][1]), layer)
    moved = M.LayerActivation(model, layer).attribute(x).attributions
    with torch.no_grad():
        expected = model[0](x)
    torch.testing.assert_close(moved, expected, rtol=0, atol=0)


def test_remembered_layer_paths_go_with_their_models():
    gc.collect()
    before = len(model_checks._LAYER_PATHS)
    models = [_model(seed) for seed in range(4)]
    for model in models:
        M.LayerActivation(model, model[0][2]).attribute(_x())
    assert len(model_checks._LAYER_PATHS) >= before + 4
    del models, model
    gc.collect()
    assert len(model_checks._LAYER_PATHS) <= before


def test_an_eager_module_is_explained_as_it_is_and_a_compiled_one_through_its_module():
    model = _model()
    assert (
        model_checks.explainable_model(model, owner="T", needs_hooks=True, needs_module_rules=False)
        is model
    )
    compiled = torch.compile(model)
    assert (
        model_checks.explainable_model(
            compiled, owner="T", needs_hooks=True, needs_module_rules=False
        )
        is model
    )


# -- prepared once, shared or lazy -----------------------------------------------------------
def test_no_forward_args_are_one_read_only_value_per_batch_size():
    first = prepare_forward_args(None, 3)
    assert prepare_forward_args(None, 3) is first
    assert prepare_forward_args(None, 4).batch_size == 4
    assert not first.args and not first.kwargs and not first.has_batched
    with pytest.raises(TypeError):
        first.kwargs["mask"] = 1  # type: ignore[index]


def test_the_row_signature_is_worked_out_when_read_with_the_same_value():
    x = torch.randn(3, 2, 5)
    ids = torch.zeros(3, 7, dtype=torch.long)
    call = prepare_call("T", lambda a, b: a.sum((1, 2)) + b.sum(1), (x, ids), require_float=False)
    expected = (((2, 5), torch.float32, x.device), ((7,), torch.int64, ids.device))
    assert call.evaluator.signature == expected
    assert call.evaluator.signature == expected  # read again: the same


# -- one chunk without copies, gradients whatever the grad mode ------------------------------
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_selected_outputs_and_gradients_do_not_depend_on_the_chunks(chunk):
    model, x = _model(), _x(5)
    target = torch.tensor([0, 2, 1, 1, 0])
    call = prepare_call("T", model, x, target=target, chunk_size=chunk or "auto")
    grads, outputs = row_gradients(call)
    with torch.no_grad():
        expected = model(x).gather(1, target.view(-1, 1)).view(-1)
    torch.testing.assert_close(outputs, expected, rtol=0, atol=0)
    assert not outputs.requires_grad
    leaf = x.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(model(leaf).gather(1, target.view(-1, 1)).sum(), leaf)
    torch.testing.assert_close(grads[0], reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["no_grad", "enable_grad", "inference_off"])
def test_gradients_are_the_same_whatever_the_callers_grad_mode(mode):
    model, x = _model(), _x()
    expected = M.Saliency(model).attribute(x, target=2).attributions
    context = {
        "no_grad": torch.no_grad,
        "enable_grad": torch.enable_grad,
        "inference_off": lambda: torch.set_grad_enabled(True),
    }[mode]
    with context():
        inside = M.Saliency(model).attribute(x, target=2).attributions
        layer = M.GradCam(model, model[0][2]).attribute(x, target=2).attributions
    torch.testing.assert_close(inside, expected, rtol=0, atol=0)
    torch.testing.assert_close(
        layer, M.GradCam(model, model[0][2]).attribute(x, target=2).attributions, rtol=0, atol=0
    )
    assert torch.is_grad_enabled()  # the caller's mode is restored on the way out
