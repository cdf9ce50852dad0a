"""Influence by similarity of layer activations (Captum's ``SimilarityInfluence``).

The training (source) examples most similar to each test example in a layer's activation
space, by cosine similarity (default) or any ``metric(test, src) -> (Q, B)``. Source
activations are computed with the engine's checked, chunked layer capture and streamed
through a running top-``k`` (memory bounded by one chunk), and cached on disk in Captum's
layout (``<activation_dir>/av/<model_id>/src/<layer>/<i>.pt``) for later calls with
``load_src_from_disk=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from whybox.attr._assertion_errors import fail_assert
from whybox.concept import _store
from whybox.core.call import prepare_call
from whybox.core.chunks import ChunkSize
from whybox.core.scope import LayerSite

from .base import DataInfluence

__all__ = ["SimilarityInfluence", "euclidean_distance", "cosine_similarity"]

_OWNER = "SimilarityInfluence"
#: bytes of source inputs gathered before a forward
_SOURCE_BYTES = 32 * 2**20


def _cat(inputs: list[Any]) -> Any:
    if isinstance(inputs[0], Tensor):
        return torch.cat(inputs)
    return tuple(torch.cat(parts) for parts in zip(*inputs))


def euclidean_distance(test: Tensor, train: Tensor) -> Tensor:
    """Pairwise Euclidean distances of flattened activations.

    Parameters
    ----------
    test : Tensor ``(Q, ...)``
    train : Tensor ``(B, ...)``

    Returns
    -------
    Tensor ``(Q, B)``
    """
    return torch.cdist(
        test.reshape(test.shape[0], -1).unsqueeze(0), train.reshape(train.shape[0], -1).unsqueeze(0)
    ).squeeze(0)


def cosine_similarity(test: Tensor, train: Tensor, replace_nan: int = 0) -> Tensor:
    """Pairwise cosine similarities of flattened activations; a zero vector's rows (or
    columns) are ``replace_nan`` instead of ``nan``.

    Parameters
    ----------
    test : Tensor ``(Q, ...)``
    train : Tensor ``(B, ...)``
    replace_nan : int, default 0

    Returns
    -------
    Tensor ``(Q, B)``
    """
    test = test.reshape(test.shape[0], -1)
    train = train.reshape(train.shape[0], -1)
    test_norm = torch.linalg.norm(test, ord=2, dim=1, keepdim=True)
    train_norm = torch.linalg.norm(train, ord=2, dim=1, keepdim=True)
    fill = torch.tensor(float(replace_nan), dtype=test.dtype, device=test.device)
    test = torch.where(test_norm != 0.0, test / test_norm, fill)
    train = torch.where(train_norm != 0.0, train / train_norm, fill.to(train.dtype))
    return test @ train.T


class SimilarityInfluence(DataInfluence):
    """The source examples most similar to each input in given layers.

    Parameters
    ----------
    module : nn.Module
    layers : str or list of str
        Layer names (``module.get_submodule`` paths); each must return one tensor.
    influence_src_dataset : Dataset
        The source examples; an item is the model's input, or a tuple whose first element
        is.
    activation_dir : str
        Root folder of the activation cache.
    model_id : str, default ""
    similarity_metric : callable, default :func:`cosine_similarity`
        ``metric(test (Q, ...), src (B, ...)) -> (Q, B)``.
    similarity_direction : {"max", "min"}, default "max"
        Whether large (similarities) or small (distances) values are most similar.
    batch_size : int, default 1
        Batch size for reading ``influence_src_dataset`` (it does not change results).
    chunk_size : int, ``"auto"`` or None, keyword-only
        Rows per forward.
    **kwargs
        ``replace_nan`` for the default metric (default ``-2`` for ``"max"``, ``2`` for
        ``"min"``: zero activations rank last).
    """

    def __init__(
        self,
        module: Module,
        layers: str | list[str],
        influence_src_dataset: Dataset,
        activation_dir: str,
        model_id: str = "",
        similarity_metric: Callable[[Tensor, Tensor], Tensor] = cosine_similarity,
        similarity_direction: str = "max",
        batch_size: int = 1,
        *,
        chunk_size: ChunkSize = "auto",
        **kwargs: Any,
    ) -> None:
        self.module = module
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers or not all(isinstance(layer, str) for layer in self.layers):
            fail_assert(_OWNER, "layers", "a layer name or a non-empty list of them", layers)
        self._modules = [self._layer(layer) for layer in self.layers]
        self.influence_src_dataset = influence_src_dataset
        self.activation_dir = activation_dir
        self.model_id = model_id
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            fail_assert(_OWNER, "batch_size", "an int >= 1", batch_size)
        self.batch_size = batch_size
        if similarity_direction not in ("max", "min"):
            raise ValueError(
                f"{similarity_direction} is not a valid value. Must be either 'max' or 'min'"
            )
        self.similarity_direction = similarity_direction
        if similarity_metric is cosine_similarity:
            self.replace_nan = kwargs.get("replace_nan", -2 if similarity_direction == "max" else 2)
            similarity_metric = partial(cosine_similarity, replace_nan=self.replace_nan)
        self.similarity_metric = similarity_metric
        self.influence_src_dataloader = DataLoader(influence_src_dataset, batch_size, shuffle=False)
        self.chunk_size = chunk_size

    def _layer(self, name: str) -> Module:
        try:
            return self.module.get_submodule(name)
        except AttributeError:
            fail_assert(_OWNER, "layers", "names of submodules of the model", name)
            raise AssertionError from None  # unreachable

    def _activations(self, inputs: Any, forward_args: Any) -> list[Tensor]:
        """Each layer's activations of ``inputs`` (one chunked, checked forward)."""
        if isinstance(inputs, list):
            inputs = tuple(inputs)
        call = prepare_call(
            _OWNER,
            self.module,
            inputs,
            forward_args=forward_args,
            chunk_size=self.chunk_size,
            require_float=False,
        )
        values, layout = LayerSite.of(self._modules, owner=_OWNER).activations(call)
        if any(count != 1 for count in layout):
            fail_assert(_OWNER, "layers", "layers that each return one tensor", self.layers)
        return list(values)

    def _source(self, load_src_from_disk: bool) -> Iterator[list[Tensor]]:
        """Source activations, chunk by chunk (one tensor per layer): from the cache when
        every layer is there and ``load_src_from_disk``, else computed and cached."""
        files = [
            _store.batch_files(self.activation_dir, self.model_id, "src", layer)
            for layer in self.layers
        ]
        if load_src_from_disk and all(files) and len({len(f) for f in files}) == 1:
            for batch in zip(*files):
                yield [torch.load(name) for name in batch]
            return
        if not load_src_from_disk:
            warnings.warn(
                "Overwriting activations: load_from_disk is set to False. Removing all "
                f"activations matching specified parameters {{path: {self.activation_dir}, "
                f"model_id: {self.model_id}, layers: {self.layers}, identifier: src}} "
                "before generating new activations.",
                stacklevel=3,
            )
        for layer in self.layers:
            _store.clear(self.activation_dir, self.model_id, "src", layer)
        for number, inputs in enumerate(self._merged_sources()):
            values = self._activations(inputs, None)
            for layer, value in zip(self.layers, values):
                _store.save_batch(self.activation_dir, self.model_id, "src", layer, value, number)
            yield values

    def _merged_sources(self) -> Iterator[Any]:
        """The source inputs in runs of up to :data:`_SOURCE_BYTES` (the engine chunks each
        run per forward): Captum's default reads one example per batch."""
        pending: list[Any] = []
        size = 0
        for data in self.influence_src_dataloader:
            inputs = data[0] if isinstance(data, (tuple, list)) else data
            parts = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
            if not all(isinstance(p, Tensor) for p in parts):
                if pending:
                    yield _cat(pending)
                    pending, size = [], 0
                yield inputs
                continue
            pending.append(inputs)
            size += sum(p.numel() * p.element_size() for p in parts)
            if size >= _SOURCE_BYTES:
                yield _cat(pending)
                pending, size = [], 0
        if pending:
            yield _cat(pending)

    def influence(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        top_k: int = 1,
        additional_forward_args: Any = None,
        load_src_from_disk: bool = True,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The ``top_k`` most similar source examples of each input, per layer.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor, each ``(Q, ...)``
        top_k : int, default 1
        additional_forward_args : optional
            Extra model arguments for ``inputs`` (not for the source examples, as in
            Captum).
        load_src_from_disk : bool, default True
            Reuse cached source activations; ``False`` recomputes (and re-caches) them.

        Returns
        -------
        dict
            ``{layer: (indices (Q, k) long, values (Q, k))}``, most similar first; with the
            default metric, ``"zero_acts-<layer>"``: ``(m, 2)`` ``[input index, source
            index]`` pairs involving zero activations (a ``RuntimeWarning`` says so).
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            fail_assert(_OWNER, "top_k", "an int >= 1", top_k)
        tests = self._activations(inputs, additional_forward_args)
        n_inputs = tests[0].shape[0]
        largest = self.similarity_direction == "max"
        best: list[tuple[Tensor, Tensor] | None] = [None] * len(self.layers)
        zero: list[list[Tensor]] = [[] for _ in self.layers]
        offset = 0
        for values in self._source(load_src_from_disk):
            rows = values[0].shape[0]
            for i, (test, src) in enumerate(zip(tests, values)):
                similarity = self.similarity_metric(test, src.to(test.device))
                if tuple(similarity.shape) != (n_inputs, src.shape[0]):
                    fail_assert(
                        _OWNER,
                        "similarity_metric",
                        f"a metric returning (inputs, source examples) = {(n_inputs, src.shape[0])}",
                        f"shape {tuple(similarity.shape)}",
                        raw=True,
                    )
                if hasattr(self, "replace_nan"):
                    found = (similarity == self.replace_nan).nonzero()
                    if len(found):
                        zero[i].append(found + torch.tensor([0, offset], device=found.device))
                values_k, index = torch.topk(similarity, min(top_k, rows), dim=1, largest=largest)
                index = index + offset
                if best[i] is not None:
                    index = torch.cat([best[i][0], index], dim=1)
                    values_k = torch.cat([best[i][1], values_k], dim=1)
                order = torch.argsort(values_k, dim=1, descending=largest)[:, :top_k]
                best[i] = (torch.gather(index, 1, order), torch.gather(values_k, 1, order))
            offset += rows
        influences: dict[str, Any] = {}
        for i, layer in enumerate(self.layers):
            if best[i] is None:
                fail_assert(
                    _OWNER, "influence_src_dataset", "a non-empty dataset", "no example", raw=True
                )
            influences[layer] = best[i]
            if zero[i]:
                warnings.warn(
                    f"Layer {layer} has zero-vector activations for some inputs. This may "
                    "cause undefined behavior for cosine similarity. The indices for the "
                    f"offending inputs will be included under the key 'zero_acts-{layer}' in "
                    "the output dictionary. Indices are returned as a tensor with "
                    "[inputs_idx, src_dataset_idx] pairs which may have corrupted similarity "
                    "scores.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                influences[f"zero_acts-{layer}"] = torch.cat(zero[i])
        return influences
