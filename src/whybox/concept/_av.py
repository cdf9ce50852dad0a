"""Captum 0.9's ``captum._utils.av``: :class:`AV`, the store of layer activation vectors
on disk (whybox's implementation; ``whybox._utils.av`` and ``whybox.concept._core.av``
re-export it at Captum's paths).

The layout is the one whybox's TCAV writes
(:mod:`whybox.concept._store`) and Captum reads and writes::

    <path>/av/<model_id>/<identifier>/<layer>/<num_id>.pt

so activations stored by either library are found by the other. Activations are computed
with whybox's checked layer capture (one forward per batch for all requested layers).
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from . import _store

__all__ = ["AV"]


class AV:
    """Store and load activation vectors of a model's layers (Captum's ``AV``).

    All methods are static. ``AV.AVDataset`` lazily reads the stored batches matching a
    model, and optionally an identifier, a layer and a batch number.
    """

    class AVDataset(Dataset):
        """The stored activation files matching a search, one item per file.

        Parameters
        ----------
        path : str
            The folder under which ``av/`` lives.
        model_id : str
        identifier : str, optional
            ``None`` matches every identifier.
        layer : str, optional
            ``None`` matches every layer.
        num_id : str, optional
            A batch number; ``None`` matches every batch.
        """

        def __init__(
            self,
            path: str,
            model_id: str,
            identifier: str | None = None,
            layer: str | None = None,
            num_id: str | None = None,
        ) -> None:
            self.av_filesearch: str = AV._construct_file_search(
                path, model_id, identifier, layer, num_id
            )
            self.files: list[str] = AV.sort_files(glob.glob(self.av_filesearch))

        def __getitem__(self, idx: int) -> Tensor | tuple[Tensor, ...]:
            assert idx < len(self.files), "Layer index is out of bounds!"
            return torch.load(self.files[idx])

        def __len__(self) -> int:
            return len(self.files)

        def __iter__(self) -> Iterator[Tensor | tuple[Tensor, ...]]:
            # (Captum's dataset has none, so ``for`` over it ends in its AssertionError)
            for idx in range(len(self.files)):
                yield self[idx]

    #: the subfolder of ``path`` holding the activations
    AV_DIR_NAME: str = _store.AV_DIR_NAME

    def __init__(self) -> None:
        pass

    # -- paths -----------------------------------------------------------------------------
    @staticmethod
    def _assemble_model_dir(path: str, model_id: str) -> str:
        """``<path>/av/<model_id>/`` (with the trailing ``/``)."""
        return _store.model_dir(path, model_id)

    @staticmethod
    def _assemble_file_path(source_dir: str, identifier: str, layer: str) -> str:
        """``<source_dir>/<identifier>/<layer>``."""
        if not source_dir.endswith("/"):
            source_dir += "/"
        return os.path.join(source_dir, identifier, layer)

    @staticmethod
    def _construct_file_search(
        source_dir: str,
        model_id: str,
        identifier: str | None = None,
        layer: str | None = None,
        num_id: str | None = None,
    ) -> str:
        """A ``glob`` pattern for the stored files; ``None`` parts match anything.

        Parameters
        ----------
        source_dir : str
        model_id : str
        identifier, layer, num_id : str, optional

        Returns
        -------
        str
            ``<source_dir>/av/<model_id>/<identifier or *>/<layer or *>/<num_id or *>.pt``.
        """
        return os.path.join(
            AV._assemble_model_dir(source_dir, model_id),
            "*" if identifier is None else identifier,
            "*" if layer is None else layer,
            "*.pt" if num_id is None else f"{num_id}.pt",
        )

    # -- queries, saving, loading ---------------------------------------------------------
    @staticmethod
    def exists(
        path: str,
        model_id: str,
        identifier: str | None = None,
        layer: str | None = None,
        num_id: str | None = None,
    ) -> bool:
        """Whether any stored activation matches.

        Parameters
        ----------
        path : str
        model_id : str
        identifier, layer, num_id : str, optional
            ``None`` matches anything.

        Returns
        -------
        bool
        """
        search = AV._construct_file_search(path, model_id, identifier, layer, num_id)
        return os.path.exists(AV._assemble_model_dir(path, model_id)) and bool(glob.glob(search))

    @staticmethod
    def save(
        path: str,
        model_id: str,
        identifier: str,
        layers: str | list[str],
        act_tensors: Tensor | list[Tensor],
        num_id: str,
    ) -> None:
        """Write one batch of activations per layer.

        Parameters
        ----------
        path : str
        model_id : str
        identifier : str
            The same for every layer.
        layers : str or list of str
        act_tensors : Tensor or list of Tensor
            One per layer.
        num_id : str
            The batch number (the file's name).

        Raises
        ------
        ValueError
            When ``layers`` and ``act_tensors`` differ in length.
        """
        layers = [layers] if isinstance(layers, str) else list(layers)
        tensors = [act_tensors] if isinstance(act_tensors, Tensor) else list(act_tensors)
        if len(layers) != len(tensors):
            raise ValueError(
                "The dimension of `layers` and `act_tensors` must match! "
                f"(got {len(layers)} layers and {len(tensors)} activation tensors)"
            )
        model_dir = AV._assemble_model_dir(path, model_id)
        for layer, tensor in zip(layers, tensors):
            folder = AV._assemble_file_path(model_dir, identifier, layer)
            os.makedirs(folder, exist_ok=True)
            torch.save(tensor, os.path.join(folder, f"{num_id}.pt"))

    @staticmethod
    def load(
        path: str,
        model_id: str,
        identifier: str | None = None,
        layer: str | None = None,
        num_id: str | None = None,
    ) -> AV.AVDataset:
        """The stored activations matching a search, lazily.

        Parameters
        ----------
        path : str
        model_id : str
        identifier, layer, num_id : str, optional
            ``None`` matches anything.

        Returns
        -------
        AV.AVDataset

        Raises
        ------
        RuntimeError
            When nothing was ever stored for ``model_id`` under ``path``.
        """
        if not os.path.exists(AV._assemble_model_dir(path, model_id)):
            raise RuntimeError(
                f"Activation vectors for model {model_id} was not found at path {path}"
            )
        return AV.AVDataset(path, model_id, identifier, layer, num_id)

    # -- computing activations ------------------------------------------------------------
    @staticmethod
    def _manage_loading_layers(
        path: str,
        model_id: str,
        layers: str | list[str],
        load_from_disk: bool = True,
        identifier: str | None = None,
        num_id: str | None = None,
    ) -> list[str]:
        """The layers whose activations must be computed.

        With ``load_from_disk`` the layers that have no stored match; otherwise all of
        them, after removing their stored matches (with a warning).
        """
        layers = [layers] if isinstance(layers, str) else list(layers)
        if load_from_disk:
            return [
                layer
                for layer in layers
                if not AV.exists(path, model_id, identifier, layer, num_id)
            ]
        warnings.warn(
            "Overwriting activations: load_from_disk is set to False. Removing all "
            f"activations matching specified parameters {{path: {path}, "
            f"model_id: {model_id}, layers: {layers}, identifier: {identifier}}} "
            "before generating new activations.",
            stacklevel=2,
        )
        for layer in layers:
            for name in glob.glob(AV._construct_file_search(path, model_id, identifier, layer)):
                os.remove(name)
        return layers

    @staticmethod
    def _compute_and_save_activations(
        path: str,
        model: Module,
        model_id: str,
        layers: str | list[str],
        inputs: Tensor | tuple[Tensor, ...],
        identifier: str,
        num_id: str,
        additional_forward_args: Any = None,
        load_from_disk: bool = True,
    ) -> None:
        """Compute the layers' activations (layer outputs) for ``inputs`` and store them
        as batch ``num_id``; layers already stored are skipped when ``load_from_disk``.

        Parameters
        ----------
        path : str
        model : nn.Module
        model_id : str
        layers : str or list of str
            Dotted submodule names.
        inputs : Tensor or tuple of Tensor
        identifier : str
        num_id : str
        additional_forward_args : Any, optional
            Passed to the model after the inputs.
        load_from_disk : bool, default True
        """
        from whybox.concept._utils.common import _get_module_from_name
        from whybox.core.call import prepare_call
        from whybox.core.scope import LayerSite

        unsaved = AV._manage_loading_layers(
            path, model_id, layers, load_from_disk, identifier, num_id
        )
        if not unsaved:
            return
        site = LayerSite.of([_get_module_from_name(model, layer) for layer in unsaved], owner="AV")
        if isinstance(inputs, list):
            inputs = tuple(inputs)
        call = prepare_call(
            "AV", model, inputs, forward_args=additional_forward_args, require_float=False
        )
        values, layout = site.activations(call)
        per_layer: list[Any] = []
        start = 0
        for count in layout:
            parts = tuple(values[start : start + count])
            start += count
            per_layer.append(parts[0] if count == 1 else parts)
        AV.save(path, model_id, identifier, unsaved, per_layer, num_id)

    @staticmethod
    def _unpack_data(data: Any) -> Any:
        """A dataset item's inputs: its first element if it is a tuple or list (an
        ``(inputs, labels)`` pair), else the item."""
        if isinstance(data, (tuple, list)):
            return data[0]
        return data

    @staticmethod
    def generate_dataset_activations(
        path: str,
        model: Module,
        model_id: str,
        layers: str | list[str],
        dataloader: DataLoader,
        identifier: str = "default",
        load_from_disk: bool = True,
        return_activations: bool = False,
    ) -> AV.AVDataset | list[AV.AVDataset] | None:
        """Compute and store the layers' activations for every batch of ``dataloader``
        (batch ``i`` is stored as ``num_id = str(i)``).

        Parameters
        ----------
        path : str
        model : nn.Module
        model_id : str
        layers : str or list of str
        dataloader : DataLoader
            Items are inputs or ``(inputs, labels)`` pairs.
        identifier : str, default "default"
        load_from_disk : bool, default True
            ``False`` recomputes (removing what is stored).
        return_activations : bool, default False

        Returns
        -------
        AV.AVDataset, list of AV.AVDataset or None
            With ``return_activations``: the stored activations of each layer (one
            dataset for a single layer name), else ``None``.
        """
        unsaved = AV._manage_loading_layers(path, model_id, layers, load_from_disk, identifier)
        if unsaved:
            for i, data in enumerate(dataloader):
                AV._compute_and_save_activations(
                    path, model, model_id, layers, AV._unpack_data(data), identifier, str(i)
                )
        if not return_activations:
            return None
        if isinstance(layers, str):
            return AV.load(path, model_id, identifier, layers)
        return [AV.load(path, model_id, identifier, layer) for layer in layers]

    @staticmethod
    def sort_files(files: list[str]) -> list[str]:
        """``files`` in natural order (``2.pt`` before ``10.pt``).

        Parameters
        ----------
        files : list of str

        Returns
        -------
        list of str
        """
        return _store.natural_sorted(files)
