"""Captum 0.9's private helpers for model parameters held as tuples of tensors:
arithmetic on such tuples, their names in a model, and swapping them in and out of a
model's modules.

Re-exported under Captum's names by :mod:`whybox.influence._utils.common`.
"""

import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import Module

from whybox._utils.common import _get_module_from_name

__all__ = [
    "_del_attr",
    "_model_make_functional",
    "_model_reinsert_params",
    "_parameter_add",
    "_parameter_dot",
    "_parameter_linear_combination",
    "_parameter_multiply",
    "_parameter_to",
    "_params_to_names",
    "_set_active_parameters",
    "_set_attr",
]


def _parameter_dot(params_1: tuple[Tensor, ...], params_2: tuple[Tensor, ...]) -> Tensor:
    """The dot product of two parameter tuples, as one (detached, 0-d) tensor."""
    total: Any = sum(torch.sum(p1 * p2) for p1, p2 in zip(params_1, params_2))
    # a new tensor, not part of any graph (Captum wraps the sum in ``torch.tensor``)
    return total.detach().clone() if isinstance(total, Tensor) else torch.tensor(total)


def _parameter_add(
    params_1: tuple[Tensor, ...], params_2: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """The element-wise sum of two parameter tuples."""
    return tuple(p1 + p2 for p1, p2 in zip(params_1, params_2))


def _parameter_multiply(params: tuple[Tensor, ...], c: Tensor | float) -> tuple[Tensor, ...]:
    """Every tensor of ``params`` times the scalar ``c``."""
    return tuple(p * c for p in params)


def _parameter_to(params: tuple[Tensor, ...], **to_kwargs: Any) -> tuple[Tensor, ...]:
    """``Tensor.to(**to_kwargs)`` applied to every tensor of ``params``."""
    return tuple(p.to(**to_kwargs) for p in params)


def _parameter_linear_combination(
    paramss: list[tuple[Tensor, ...]], cs: Tensor
) -> tuple[Tensor, ...]:
    """``sum_i cs[i] * paramss[i]`` for parameter tuples ``paramss`` and a 1D ``cs``.

    Raises
    ------
    AssertionError
        When ``cs`` is not 1D.
    """
    assert len(cs.shape) == 1
    result = _parameter_multiply(paramss[0], cs[0])
    for params, c in zip(paramss[1:], cs[1:]):
        result = _parameter_add(result, _parameter_multiply(params, c))
    return result


def _params_to_names(params: Iterable[nn.Parameter], model: nn.Module) -> list[str]:
    """The names ``model.named_parameters()`` gives to ``params`` (matched by identity).

    Raises
    ------
    KeyError
        For a parameter that is not one of ``model``'s.
    """
    name_of = {id(p): name for name, p in model.named_parameters()}
    return [name_of[id(p)] for p in params]


def _set_attr(obj: Any, names: Sequence[str], val: Any) -> None:
    """``setattr`` on the attribute path ``names`` (``["a", "b"]`` sets ``obj.a.b``)."""
    *path, leaf = names
    for name in path:
        obj = getattr(obj, name)
    setattr(obj, leaf, val)


def _del_attr(obj: Any, names: Sequence[str]) -> None:
    """``delattr`` on the attribute path ``names`` (``["a", "b"]`` deletes ``obj.a.b``)."""
    *path, leaf = names
    for name in path:
        obj = getattr(obj, name)
    delattr(obj, leaf)


def _model_make_functional(
    model: Module, param_names: Sequence[str], params: Iterable[Tensor]
) -> tuple[Tensor, ...]:
    """Remove the named parameters from ``model`` and return detached copies of
    ``params`` that require grad (to be inserted with :func:`_model_reinsert_params`)."""
    detached = tuple(p.detach().requires_grad_() for p in params)
    for name in param_names:
        _del_attr(model, name.split("."))
    return detached


def _model_reinsert_params(
    model: Module, param_names: Sequence[str], params: Iterable[Tensor], register: bool = False
) -> None:
    """Set each named attribute of ``model`` to the matching tensor of ``params``,
    wrapped as an ``nn.Parameter`` (registered) when ``register`` is true."""
    for name, param in zip(param_names, params):
        _set_attr(model, name.split("."), nn.Parameter(param) if register else param)


def _set_active_parameters(model: Module, layers: list[str]) -> list[Module]:
    """The modules named by ``layers``, with all their parameters made to require grad
    (with a warning for each that did not).

    Raises
    ------
    AssertionError
        When ``layers`` is not a non-empty list of names.
    """
    assert isinstance(layers, list), "`layers` should be a list!"
    assert len(layers) > 0, "`layers` cannot be empty!"
    assert isinstance(layers[0], str), "`layers` should contain str layer names."
    modules = [_get_module_from_name(model, layer) for layer in layers]
    for layer, module in zip(layers, modules):
        for name, param in module.named_parameters():
            if not param.requires_grad:
                warnings.warn(
                    f"Setting required grads for layer: {layer}, name: {name}", stacklevel=2
                )
                param.requires_grad = True
    return modules
