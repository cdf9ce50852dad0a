"""TracIn on the last fully-connected layer, in closed form (Captum's ``TracInCPFast``
and ``TracInCPFastRandProj``).

For a final linear layer with input ``a`` and the loss gradient ``j = d loss / d output``,
the layer's weight gradient is the outer product ``j a^T``, so
``g(z') . g(z) = (j' . j)(a' . a)``: no backward pass through the model, only its forward
and the loss's gradient with respect to the outputs (the outputs are taken to be the
layer's, as in Captum). ``TracInCPFastRandProj`` stores ``sqrt(lr) * vec(j a^T)`` of every
training example (optionally randomly projected) and answers top-``k`` queries by
nearest-neighbour search.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from whybox.attr._assertion_errors import fail_assert
from whybox.core.chunks import ChunkSize, resolve_chunk_rows
from whybox.core.scope import LayerSite

from . import _data
from ._data import load_flexible_state_dict
from ._grads import check_loss_fn
from ._layout import ChannelsLast
from .base import KMostInfluentialResults, merge_top_k
from .nearest_neighbors import AnnoyNearestNeighbors, NearestNeighbors
from .tracin import TracInCPBase, _Progress

__all__ = ["TracInCPFast", "TracInCPFastRandProj"]


class TracInCPFast(TracInCPBase):
    """TracIn for the weights of the final fully-connected layer (Captum's
    ``TracInCPFast``).

    Parameters
    ----------
    model : nn.Module
    final_fc_layer : nn.Module or str
        The last linear layer (or its name); its input is recorded by a hook.
    train_dataset, checkpoints, checkpoints_load_func, batch_size, test_loss_fn
        See :class:`~whybox.influence.TracInCPBase`.
    loss_fn : callable
        Required; reduces a batch by ``"sum"`` or ``"mean"`` (a loss without a
        ``reduction`` attribute is assumed to sum).
    vectorize : bool, default False
        Accepted for Captum compatibility (the output gradient is one backward pass).
    chunk_size : int, ``"auto"`` or None, keyword-only
        Examples per forward.
    """

    def __init__(
        self,
        model: Module,
        final_fc_layer: Module | str,
        train_dataset: Dataset | DataLoader,
        checkpoints: str | list[str] | Iterator[Any],
        checkpoints_load_func: Callable[[Module, Any], float] = load_flexible_state_dict,
        loss_fn: Callable | None = None,
        batch_size: int | None = 1,
        test_loss_fn: Callable | None = None,
        vectorize: bool = False,
        *,
        chunk_size: ChunkSize = "auto",
    ) -> None:
        TracInCPBase.__init__(
            self,
            model,
            train_dataset,
            checkpoints,
            checkpoints_load_func,
            loss_fn,
            batch_size,
            test_loss_fn,
        )
        owner = type(self).__name__
        self.vectorize = vectorize
        self.final_fc_layer = final_fc_layer  # type: ignore[assignment]
        if loss_fn is None:
            fail_assert(owner, "loss_fn", "a loss function (it must not be None)", None)
        self.reduction_type = check_loss_fn(owner, loss_fn, "loss_fn")
        self.test_reduction_type = (
            self.reduction_type
            if test_loss_fn is None
            else check_loss_fn(owner, test_loss_fn, "test_loss_fn")
        )
        self.chunk_size = chunk_size
        #: conv models run channels-last on CPU (faster, same values)
        self._layout = ChannelsLast(model)

    @property
    def final_fc_layer(self) -> Module:
        """The final fully-connected layer."""
        return self._final_fc_layer

    @final_fc_layer.setter
    def final_fc_layer(self, layer: Module | str) -> None:
        if isinstance(layer, str):
            try:
                layer = self.model.get_submodule(layer)
            except AttributeError:
                # Captum's words too, for code that matches them
                fail_assert(
                    type(self).__name__,
                    "final_fc_layer",
                    "a layer name of the model",
                    f'{layer!r} (Invalid final_fc_layer str: "{layer}" provided!)',
                    raw=True,
                )
        if not isinstance(layer, Module):
            fail_assert(type(self).__name__, "final_fc_layer", "an nn.Module or its name", layer)
        self._final_fc_layer = layer

    # -- the closed form -----------------------------------------------------------------
    def _factors(
        self, batches: Iterable[Any], loss_fn: Callable, reduction: str
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """``(j (rows, O), a (rows, I))`` chunk by chunk: the loss gradient with respect to
        the outputs (times the batch size for a mean) and the final layer's input."""
        owner = type(self).__name__
        site = LayerSite.of(self.final_fc_layer, to_input=True, owner=owner)

        def forward(features: tuple[Any, ...]) -> tuple[Tensor, Tensor]:
            # the engine's checked capture: the layer must run; its first input is ``a``
            with site.checked(owner) as captured, torch.no_grad():
                output = self.model(*features)
            return output, captured.per_layer[0][0].detach()

        by_input = self.chunk_size in ("auto", None)
        for chunk in _data.chunks(batches, self._rows(batches), owner=owner, by_input=by_input):
            output, layer_input = self._layout.run(forward, chunk.features)
            if not isinstance(output, Tensor) or output.dim() != 2:
                fail_assert(owner, "model", "a model returning (batch, outputs) tensors", output)
            with torch.enable_grad():
                leaf = output.detach().requires_grad_(True)
                (jac,) = torch.autograd.grad(loss_fn(leaf, chunk.labels), leaf)
            if reduction == "mean":
                jac = jac * len(jac)
            yield jac, layer_input.reshape(len(jac), -1)

    def _rows(self, batches: Iterable[Any]) -> int:
        if self.chunk_size in ("auto", None):
            # forward only: the engine's automatic chunk for the input bytes of a row
            return 4096
        return resolve_chunk_rows(self.chunk_size, [torch.empty(1, 1)], owner=type(self).__name__)

    def _all_factors(
        self, batches: Iterable[Any], loss_fn: Callable, reduction: str
    ) -> tuple[Tensor, Tensor]:
        parts = list(self._factors(batches, loss_fn, reduction))
        if not parts:
            fail_assert(type(self).__name__, "inputs", "at least one example", "none", raw=True)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    # -- influence -----------------------------------------------------------------------
    def influence(  # type: ignore[override]
        self,
        inputs: Any,
        k: int | None = None,
        proponents: bool = True,
        show_progress: bool = False,
    ) -> Tensor | KMostInfluentialResults:
        """Influence of every training example on each example of ``inputs``.

        Parameters
        ----------
        inputs : tuple or DataLoader
            A test batch ``(features..., labels)`` or a ``DataLoader`` of them.
        k : int, optional
            Return the ``k`` most influential training examples instead of all scores.
        proponents : bool, default True
        show_progress : bool, default False

        Returns
        -------
        Tensor ``(Q, N)``, or KMostInfluentialResults with ``(Q, k)`` tensors.
        """
        if inputs is None:
            fail_assert(
                type(self).__name__,
                "inputs",
                "a batch or a DataLoader: the `inputs` argument is required (use self_influence "
                "for self influence scores)",
                None,
            )
        if k is None:
            return self._influence(inputs, show_progress)
        return self._get_k_most_influential(inputs, k, proponents, show_progress)

    def _scores(self, inputs: Any, show_progress: bool, desc: str) -> Iterator[tuple[int, Tensor]]:
        tests = list(_data.as_batches(inputs, owner=type(self).__name__))
        total = None
        if self.train_dataloader_len is not None:
            total = self.train_dataloader_len * len(self.checkpoints)
        offset = 0
        with _Progress(show_progress, total, desc) as bar:
            for group, checkpoints in self._visit(self.train_dataloader):
                block = None
                for _, lr in checkpoints:
                    test_j, test_a = self._all_factors(
                        tests, self.test_loss_fn, self.test_reduction_type
                    )
                    parts = [
                        (test_j @ j.T) * (test_a @ a.T)
                        for j, a in self._factors(group, self.loss_fn, self.reduction_type)
                    ]
                    scores = torch.cat(parts, dim=1) * lr
                    block = scores if block is None else block + scores
                    bar.update(len(group))
                assert block is not None
                yield offset, block
                offset += block.shape[1]

    def _influence(self, inputs: Any, show_progress: bool = False) -> Tensor:  # type: ignore[override]
        desc = f"Using {self.get_name()} to compute influence for training batches"
        return torch.cat([b for _, b in self._scores(inputs, show_progress, desc)], dim=1)

    def _get_k_most_influential(  # type: ignore[override]
        self, inputs: Any, k: int = 5, proponents: bool = True, show_progress: bool = False
    ) -> KMostInfluentialResults:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            fail_assert(type(self).__name__, "k", "None or an int >= 1", k)
        kind = "proponents" if proponents else "opponents"
        desc = f"Using {self.get_name()} to perform computation for getting {kind}. Processing training batches"
        best = None
        for offset, block in self._scores(inputs, show_progress, desc):
            best = merge_top_k(best, block, offset, k, proponents)
        assert best is not None
        return KMostInfluentialResults(*best)

    def self_influence(  # type: ignore[override]
        self,
        inputs: Any = None,
        show_progress: bool = False,
        outer_loop_by_checkpoints: bool = False,
    ) -> Tensor:
        """``sum_c lr_c ||j||^2 ||a||^2`` for each example of ``inputs`` (default: the
        training data); see :meth:`whybox.influence.TracInCP.self_influence`.

        Returns
        -------
        Tensor ``(n,)``
        """
        return self._self_influence_over(
            inputs,
            show_progress,
            outer_loop_by_checkpoints,
            lambda group: torch.cat(
                [
                    (j * j).sum(dim=1) * (a * a).sum(dim=1)
                    for j, a in self._factors(group, self.loss_fn, self.reduction_type)
                ]
            ),
        )


class TracInCPFastRandProj(TracInCPFast):
    """:class:`TracInCPFast` with the training examples' vectors stored (optionally
    randomly projected) and top-``k`` answered by nearest-neighbour search (Captum's
    ``TracInCPFastRandProj``).

    Parameters
    ----------
    model, final_fc_layer, train_dataset, checkpoints, checkpoints_load_func, loss_fn,
    batch_size, test_loss_fn, vectorize
        See :class:`TracInCPFast`.
    nearest_neighbors : NearestNeighbors, optional
        Default :class:`~whybox.influence._utils.nearest_neighbors.AnnoyNearestNeighbors`
        (exact in torch when ``annoy`` is not installed).
    projection_dim : int, optional
        Project each example's ``j`` and ``a`` to at most ``sqrt(projection_dim)``
        dimensions each (when ``dim(j) * dim(a)`` exceeds it).
    seed : int, default 0
        Seeds torch's global generator before the projections are drawn, as Captum does
        (the same projections as Captum's).
    chunk_size : int, ``"auto"`` or None, keyword-only

    Notes
    -----
    Captum computes the stored training vectors with ``test_loss_fn``; so does this
    class, so the two agree.
    """

    def __init__(
        self,
        model: Module,
        final_fc_layer: Module | str,
        train_dataset: Dataset | DataLoader,
        checkpoints: str | list[str] | Iterator[Any],
        checkpoints_load_func: Callable[[Module, Any], float] = load_flexible_state_dict,
        loss_fn: Callable | None = None,
        batch_size: int | None = 1,
        test_loss_fn: Callable | None = None,
        vectorize: bool = False,
        nearest_neighbors: NearestNeighbors | None = None,
        projection_dim: int | None = None,
        seed: int = 0,
        *,
        chunk_size: ChunkSize = "auto",
    ) -> None:
        TracInCPFast.__init__(
            self,
            model,
            final_fc_layer,
            train_dataset,
            checkpoints,
            checkpoints_load_func,
            loss_fn,
            batch_size,
            test_loss_fn,
            vectorize,
            chunk_size=chunk_size,
        )
        warnings.warn(
            "WARNING: Using this implementation stores quantities related to the entire "
            "`train_dataset` in memory, and may results in running out of memory. If this "
            "happens, consider using `TracInCPFast` instead, for which each call to "
            "`influence` to compute influence scores or proponents will be slower, but may "
            "avoid running out of memory.",
            stacklevel=2,
        )
        if projection_dim is not None and (
            isinstance(projection_dim, bool)
            or not isinstance(projection_dim, int)
            or projection_dim < 1
        ):
            fail_assert(
                type(self).__name__, "projection_dim", "None or an int >= 1", projection_dim
            )
        self.nearest_neighbors = (
            AnnoyNearestNeighbors() if nearest_neighbors is None else nearest_neighbors
        )
        self.projection_dim = projection_dim
        torch.manual_seed(seed)  # Captum's: the projections come from the global generator
        self.projection_quantities = self._projections()
        self.src_intermediate_quantities = self._intermediate_quantities(self.train_dataloader)
        self.nearest_neighbors.setup(self.src_intermediate_quantities)

    def _projections(self) -> tuple[Tensor, Tensor] | None:
        """Gaussian projections of ``j`` and ``a``, drawn as Captum draws them (after the
        first checkpoint is loaded and the first training batch read)."""
        if self.projection_dim is None:
            return None
        self._load(next(iter(self.checkpoints)))
        batch = next(iter(self.train_dataloader))
        jac, act = next(self._factors([batch], self.loss_fn, self.reduction_type))
        j_dim, a_dim = jac.shape[1], act.shape[1]
        if j_dim * a_dim <= self.projection_dim:
            return None
        j_proj = min(int(self.projection_dim**0.5), j_dim)
        a_proj = min(int(self.projection_dim**0.5), a_dim)
        j_matrix = torch.normal(torch.zeros(j_dim, j_proj), 1.0 / j_proj**0.5)
        a_matrix = torch.normal(torch.zeros(a_dim, a_proj), 1.0 / a_proj**0.5)
        return (
            j_matrix.to(device=jac.device, dtype=jac.dtype),
            a_matrix.to(device=act.device, dtype=act.dtype),
        )

    def _intermediate_quantities(self, inputs: Any) -> Tensor:
        """``(n, C * D)``: per checkpoint ``sqrt(lr) * vec(j a^T)`` (projected)."""
        batches = _data.as_batches(inputs, owner=type(self).__name__)
        out = []
        for group, checkpoints in self._visit(batches):
            per_checkpoint = []
            for _, lr in checkpoints:
                rows = []
                for jac, act in self._factors(group, self.test_loss_fn, self.test_reduction_type):
                    if self.projection_quantities is not None:
                        jac = jac @ self.projection_quantities[0]
                        act = act @ self.projection_quantities[1]
                    rows.append((jac[:, :, None] * act[:, None, :]).flatten(start_dim=1) * lr**0.5)
                per_checkpoint.append(torch.cat(rows))
            out.append(torch.cat(per_checkpoint, dim=1))
        return torch.cat(out)

    def influence(  # type: ignore[override]
        self, inputs: Any = None, k: int | None = 5, proponents: bool = True
    ) -> Tensor | KMostInfluentialResults:
        """Influence scores from the stored vectors (``k=None``), or the ``k`` nearest
        neighbours (default ``k=5``).

        Parameters
        ----------
        inputs : tuple or DataLoader
        k : int or None, default 5
        proponents : bool, default True

        Returns
        -------
        Tensor ``(Q, N)`` or KMostInfluentialResults with ``(Q, k)`` tensors.
        """
        if inputs is None:
            fail_assert(
                type(self).__name__,
                "inputs",
                "a batch or a DataLoader: the `inputs` argument is required",
                None,
            )
        if k is None:
            return self._influence(inputs)
        return self._get_k_most_influential(inputs, k, proponents)

    def _influence(self, inputs: Any, show_progress: bool = False) -> Tensor:  # type: ignore[override]
        return self._intermediate_quantities(inputs) @ self.src_intermediate_quantities.T

    def _get_k_most_influential(  # type: ignore[override]
        self, inputs: Any, k: int = 5, proponents: bool = True, show_progress: bool = False
    ) -> KMostInfluentialResults:
        sign = 1.0 if proponents else -1.0
        query = self._intermediate_quantities(inputs) * sign
        indices, distances = self.nearest_neighbors.get_nearest_neighbors(query, k)
        return KMostInfluentialResults(indices, distances * sign)

    def self_influence(  # type: ignore[override]
        self,
        inputs: Any = None,
        show_progress: bool = False,
        outer_loop_by_checkpoints: bool = False,
    ) -> Tensor:
        """Not available (as in Captum): use :class:`TracInCPFast` for self influence."""
        warnings.warn(
            "WARNING: If calculating self influence scores, when only considering gradients "
            "with respect to the last fully-connected layer, `TracInCPFastRandProj` should "
            "not be used. Instead, please use `TracInCPFast`.",
            stacklevel=2,
        )
        raise NotImplementedError

    def compute_intermediate_quantities(self, inputs: Any) -> Tensor:
        """The vectors whose dot products are the influence scores: ``(n, C * D)``.

        Parameters
        ----------
        inputs : tuple or DataLoader

        Returns
        -------
        Tensor
        """
        return self._intermediate_quantities(inputs)
