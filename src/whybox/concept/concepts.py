"""Concepts and the concept-interpreter base (Captum's ``Concept`` / ``ConceptInterpreter``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.nn import Module
from torch.utils.data import DataLoader

__all__ = ["Concept", "ConceptInterpreter", "concepts_to_str"]


class Concept:
    """A human-friendly idea ("striped", "happy") given by examples.

    Parameters
    ----------
    id : int
        The concept's unique identifier; it is the concept's class label when CAVs are
        trained, and experimental sets are keyed by ids (``"0-1"``).
    name : str
        A unique name.
    data_iter : DataLoader or None
        Batches of the concept's examples (model inputs only, no labels): each batch a
        tensor ``(B, ...)`` or a tuple of tensors, as the model takes them. ``None`` for a
        concept known only by its id (a CAV loaded from disk).

    Notes
    -----
    Concepts compare by identity (as in Captum): reuse the same object in every
    experimental set.
    """

    def __init__(self, id: int, name: str, data_iter: DataLoader | None) -> None:
        self.id = id
        self.name = name
        self.data_iter = data_iter

    @property
    def identifier(self) -> str:
        """``"<name>-<id>"``: the concept's folder name in the activation cache."""
        return f"{self.name}-{self.id}"

    def __repr__(self) -> str:
        return f"Concept({self.id!r}, {self.name!r})"


class ConceptInterpreter:
    """Base of concept-based interpreters: holds the model; subclasses define ``interpret``.

    Parameters
    ----------
    model : torch.nn.Module
        The model to interpret.
    """

    def __init__(self, model: Module) -> None:
        self.model = model

    #: ``interpret(inputs, ...)``: the interpretation of ``inputs`` (a tensor or a tuple of
    #: tensors sharing the batch dimension); defined by each interpreter
    interpret: Callable[..., Any]


def concepts_to_str(concepts: Sequence[Concept]) -> str:
    """The key of an experimental set: concept ids joined by hyphens (``"0-3-4"``).

    Parameters
    ----------
    concepts : sequence of Concept

    Returns
    -------
    str
    """
    return "-".join(str(c.id) for c in concepts)
