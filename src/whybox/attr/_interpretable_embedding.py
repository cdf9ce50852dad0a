"""Attribute to embedding vectors instead of token ids (Captum's interpretable embeddings).

:func:`configure_interpretable_embedding_layer` swaps a model's embedding layer for an
:class:`InterpretableEmbeddingBase` that passes precomputed embeddings through unchanged;
``indices_to_embeddings`` computes them with the original layer. Attribute with any input
method on the embeddings, then :func:`remove_interpretable_embedding_layer` puts the
original layer back. (Layer methods on the embedding layer, e.g.
``LayerIntegratedGradients(model, model.embedding)``, do the same without changing the
model.)
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor, nn

from ._assertion_errors import fail_assert

__all__ = [
    "InterpretableEmbeddingBase",
    "configure_interpretable_embedding_layer",
    "remove_interpretable_embedding_layer",
]


class InterpretableEmbeddingBase(nn.Module):
    """Stands in for an embedding layer: its forward returns the embeddings it is given.

    Parameters
    ----------
    embedding : nn.Module
        The original embedding layer (kept, and used by :meth:`indices_to_embeddings`).
    full_name : str
        The dotted name of the layer in the model (``"encoder.embedding"``).
    """

    def __init__(self, embedding: Any, full_name: Any) -> None:
        nn.Module.__init__(self)
        self.num_embeddings = getattr(embedding, "num_embeddings", None)
        self.embedding_dim = getattr(embedding, "embedding_dim", None)
        self.embedding = embedding
        self.full_name = full_name

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        """Return the precomputed embeddings: the first positional argument, else the first
        keyword argument.

        Raises
        ------
        ValueError
            (also ``AssertionError``, as Captum) Called without arguments.
        """
        if inputs:
            return inputs[0]
        if kwargs:
            return next(iter(kwargs.values()))
        fail_assert(
            "InterpretableEmbeddingBase.forward",
            "inputs",
            "the embedding tensor, as the first argument",
            "no arguments",
            raw=True,
        )

    def indices_to_embeddings(self, *input: Any, **kwargs: Any) -> Tensor:
        """The original layer's embeddings of ``input`` (e.g. token ids)."""
        return self.embedding(*input, **kwargs)


def _parent_and_name(model: nn.Module, dotted: str) -> tuple[Any, str]:
    parts = dotted.split(".")
    parent: Any = model
    for i, part in enumerate(parts[:-1]):
        if not hasattr(parent, part):
            raise AttributeError(
                f"{type(model).__name__} has no layer '{'.'.join(parts[: i + 1])}'"
            )
        parent = getattr(parent, part)
    if not hasattr(parent, parts[-1]):
        raise AttributeError(f"{type(model).__name__} has no layer '{dotted}'")
    return parent, parts[-1]


def configure_interpretable_embedding_layer(
    model: nn.Module, embedding_layer_name: str = "embedding"
) -> InterpretableEmbeddingBase:
    """Replace ``model``'s embedding layer by an :class:`InterpretableEmbeddingBase`.

    Parameters
    ----------
    model : nn.Module
        The model (changed in place until :func:`remove_interpretable_embedding_layer`).
    embedding_layer_name : str
        The dotted name of the embedding layer, e.g. ``"embedding"`` or ``"bert.embeddings"``.

    Returns
    -------
    InterpretableEmbeddingBase
        The stand-in; ``indices_to_embeddings(ids)`` gives the inputs to attribute to.

    Raises
    ------
    ValueError
        (also ``AssertionError``, as Captum) The layer is already configured.
    AttributeError
        ``model`` has no such layer.

    Warns
    -----
    UserWarning
        That the model is changed until the layer is removed (as Captum).
    """
    parent, name = _parent_and_name(model, embedding_layer_name)
    layer = getattr(parent, name)
    if isinstance(layer, InterpretableEmbeddingBase):
        fail_assert(
            "configure_interpretable_embedding_layer",
            "embedding_layer_name",
            "a layer not configured yet",
            f"'{embedding_layer_name}', already an InterpretableEmbeddingBase",
            raw=True,
        )
    warnings.warn(
        f"The embedding layer '{embedding_layer_name}' is replaced by an interpretable "
        "embedding layer that takes embedding vectors as inputs of the model's forward; "
        "call remove_interpretable_embedding_layer after the interpretation to restore it.",
        stacklevel=2,
    )
    interpretable = InterpretableEmbeddingBase(layer, embedding_layer_name)
    setattr(parent, name, interpretable)
    return interpretable


def remove_interpretable_embedding_layer(
    model: nn.Module, interpretable_emb: InterpretableEmbeddingBase
) -> None:
    """Put back the embedding layer that
    :func:`configure_interpretable_embedding_layer` replaced.

    Parameters
    ----------
    model : nn.Module
        The configured model.
    interpretable_emb : InterpretableEmbeddingBase
        What :func:`configure_interpretable_embedding_layer` returned.
    """
    parent, name = _parent_and_name(model, interpretable_emb.full_name)
    setattr(parent, name, interpretable_emb.embedding)


def _get_deep_layer_name(obj: Any, layer_names: str) -> Any:
    """The attribute at the dotted path ``layer_names`` (``"bert.embeddings"``) of ``obj``."""
    parent, name = _parent_and_name(obj, layer_names)
    return getattr(parent, name)


def _set_deep_layer_value(obj: Any, layer_names: str, value: Any) -> None:
    """Set the attribute at the dotted path ``layer_names`` of ``obj`` to ``value``."""
    parent, name = _parent_and_name(obj, layer_names)
    setattr(parent, name, value)
