"""Alias of Captum 0.9's ``captum.concept._utils.common``: its public names, as whybox
objects; also home of ``_get_module_from_name`` (Captum's ``captum._utils.common`` helper
that TCAV-style code uses to find a layer by its dotted name)."""

from __future__ import annotations

from torch.nn import Module

from whybox.concept.concepts import concepts_to_str

__all__ = ["concepts_to_str", "_get_module_from_name"]


def _get_module_from_name(model: Module, layer_name: str) -> Module:
    """The submodule of ``model`` at the dotted attribute path ``layer_name``.

    Parameters
    ----------
    model : nn.Module
    layer_name : str
        E.g. ``"conv1"`` or ``"layer1.0.conv1"`` (as ``named_modules`` spells it).

    Returns
    -------
    nn.Module

    Raises
    ------
    AttributeError
        When a part of the path is not an attribute of its parent.
    """
    module = model
    for part in layer_name.split("."):
        module = getattr(module, part)
    return module
