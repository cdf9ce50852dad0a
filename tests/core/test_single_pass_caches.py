"""The per-model memory of the model checks and module rules follows every model change.

``core/model_checks`` remembers, per model structure, that a model is eager throughout and
which layers are eager submodules of it; ``core/hooks.module_rules`` walks the model on
every call. A replaced, added, removed or compiled submodule must be seen on the very next
call, exactly as a model never seen before would be, and concurrent calls on one model
must not see each other's rules.
"""

from __future__ import annotations

import copy
import gc
import threading

import pytest
import torch
from torch import nn

from _support import module_hook_count
from whybox import methods as M
from whybox.core import model_checks
from whybox.core.hooks import module_rules, submodules
from whybox.core.validation import ParameterError, ParameterTypeError


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)
    ).double()


def _x(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def _guided(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return M.GuidedBackprop(model).attribute(x, target=1).attributions


def _fresh_guided(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same computation on a copy: new module objects, so nothing remembered applies."""
    return _guided(copy.deepcopy(model), x)


# -- the walk ---------------------------------------------------------------------------
def test_submodules_is_modules_order_with_shared_and_empty_children():
    shared = nn.Linear(2, 2)
    inner = nn.Sequential(shared, nn.ReLU(), shared)
    model = nn.Sequential(nn.Sequential(inner, nn.Tanh()), inner, nn.ModuleList([shared]))
    model.register_module("empty", None)
    walk = submodules(model)
    expected = list(model.modules())
    assert len(walk) == len(expected) == len({id(m) for m in expected})
    assert all(a is b for a, b in zip(walk, expected))
    assert submodules(lambda t: t) == []


# -- a model changed between two calls ----------------------------------------------------
def test_relu_replaced_between_calls_changes_the_result_like_a_fresh_model():
    model, x = _mlp(), _x()
    first = _guided(model, x)
    model[3] = nn.Tanh()  # no rule there any more
    second = _guided(model, x)
    assert torch.equal(second, _fresh_guided(model, x))
    assert not torch.allclose(first, second)


def test_relu_added_between_calls_gets_its_rule():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3)).double()
    x = _x()

    def plain() -> torch.Tensor:
        return M.Saliency(model).attribute(x, target=1, abs=False).attributions

    with pytest.warns(UserWarning, match="no nn.ReLU"):
        first = _guided(model, x)
    assert torch.equal(first, plain())  # no ReLU: the plain gradient
    model.insert(1, nn.ReLU())
    with module_rules(model, {nn.ReLU: lambda module, x, out: None}) as matched:
        assert matched == [model[1]]
    second = _guided(model, x)
    assert torch.equal(second, _fresh_guided(model, x))
    # the new ReLU's rule acts: only positive gradients pass it, unlike the plain gradient
    assert (model[2].weight[1] < 0).any()
    assert not torch.allclose(second, plain())


def test_submodule_made_torchscript_after_a_first_call_is_refused():
    model, x = _mlp(), _x()
    _guided(model, x)
    model[2] = torch.jit.script(model[2])
    with pytest.raises(TypeError, match="submodule '2' is TorchScript"):
        _guided(model, x)


def test_submodule_compiled_in_place_after_a_first_call_is_refused():
    model, x = _mlp(), _x()
    _guided(model, x)
    layer = model[2]
    M.GradCam(model, layer).attribute(x, target=0)
    model[2].compile()  # the same object, now compiled: no structural change
    with pytest.raises(TypeError, match="submodule '2' was compiled"):
        _guided(model, x)
    with pytest.raises(TypeError, match="torch.compile'd"):
        M.GradCam(model, layer).attribute(x, target=0)
    assert module_hook_count(model) == 0


def test_layer_removed_after_a_first_call_is_refused():
    model, x = _mlp(), _x()
    layer = model[2]
    M.LayerActivation(model, layer).attribute(x)
    model[2] = nn.Linear(7, 6).double()
    # the static check names it (not only the hook that does not fire)
    with pytest.raises(ParameterError, match="one of model.modules()"):
        M.LayerActivation(model, layer).attribute(x)


def test_layer_moved_under_a_scripted_parent_is_refused():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(5, 4), nn.ReLU())
    model = nn.Sequential(block, nn.Linear(4, 2))
    x = torch.randn(3, 5)
    M.GradCam(model, block[0]).attribute(x, target=0)
    model[0] = torch.jit.script(block)
    with pytest.raises(ParameterTypeError, match="TorchScript"):
        M.GradCam(model, getattr(model[0], "0")).attribute(x, target=0)


def test_modules_replaced_many_times_never_reuse_a_stale_entry():
    """Freed modules' addresses are reused by new ones: every call must still see the
    model as it is (an entry whose modules died is never trusted)."""
    model, x = _mlp(), _x()
    for step in range(30):
        model[1] = nn.ReLU() if step % 2 else nn.Tanh()
        gc.collect()
        ours = _guided(model, x)
        assert torch.equal(ours, _fresh_guided(model, x)), step


def test_an_entry_whose_module_died_is_not_trusted():
    model, x = _mlp(), _x()
    _guided(model, x)
    known = model_checks._KNOWN[id(model)][1]
    assert known.alive and known.eager_throughout
    model[1] = nn.ReLU()  # the old ReLU is freed: its id may be taken by a new module
    gc.collect()
    assert not known.alive
    _guided(model, x)
    assert model_checks._KNOWN[id(model)][1] is not known
    # the same ids alone are not enough: an entry with a dead module is replaced
    walk = submodules(model)
    current = model_checks._known(model, walk)
    assert model_checks._known(model, walk) is current
    current.alive = False
    assert model_checks._known(model, walk) is not current


def test_remembered_entries_go_with_their_models():
    gc.collect()
    before = len(model_checks._KNOWN)
    models = [_mlp(seed) for seed in range(5)]
    for model in models:
        _guided(model, _x())
    assert all(model_checks._KNOWN[id(model)][0]() is model for model in models)
    del models, model
    gc.collect()
    assert len(model_checks._KNOWN) <= before


# -- concurrency ------------------------------------------------------------------------
def test_two_threads_on_one_model_give_each_their_own_results():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    ).double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    calls = {
        "guided": lambda: M.GuidedBackprop(model).attribute(x, target=0).attributions,
        "deconv": lambda: M.Deconvolution(model).attribute(x, target=2).attributions,
        "ggc": lambda: M.GuidedGradCam(model, model[2]).attribute(x, target=1).attributions,
        "saliency": lambda: M.Saliency(model).attribute(x, target=1).attributions,
    }
    expected = {name: call() for name, call in calls.items()}
    failures: list[str] = []

    def worker(names: list[str]) -> None:
        for _ in range(15):
            for name in names:
                if not torch.equal(calls[name](), expected[name]):
                    failures.append(name)

    threads = [
        threading.Thread(target=worker, args=(["guided", "saliency"],)),
        threading.Thread(target=worker, args=(["deconv", "ggc"],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert module_hook_count(model) == 0
