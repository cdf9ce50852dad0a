"""Influence functions (Koh & Liang, 2017): Captum's ``InfluenceFunctionBase``,
``IntermediateQuantitiesInfluenceFunction`` and ``NaiveInfluenceFunction``.

The influence of training example ``z`` on test example ``z'`` is
``g(z')^T H^-1 g(z)`` with ``H`` the Hessian of the training loss (summed over a Hessian
dataset) at one checkpoint, restricted to its top eigenvectors: with
``R = V diag(lambda^-1/2)`` (the ``projection_dim`` largest eigenpairs of ``H + reg I``
above ``hessian_inverse_tol``), each example's intermediate quantity is ``g(z)^T R`` and
influence is their dot product.

``NaiveInfluenceFunction`` forms ``H`` explicitly (``P x P``: for few parameters, e.g. a
``layers=`` choice) with ``torch.func`` (the Hessian of chunk sums); per-example gradients
are vectorised as in :mod:`whybox.influence._grads`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, hessian
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from whybox.attr._assertion_errors import fail_assert
from whybox.core.chunks import ChunkSize

from . import _data
from ._data import load_flexible_state_dict
from ._grads import PerExampleGradients, check_loss_fn, layer_modules, parameter_names, rows_for
from .base import DataInfluence, KMostInfluentialResults, merge_top_k
from .tracin import _Progress

__all__ = [
    "InfluenceFunctionBase",
    "IntermediateQuantitiesInfluenceFunction",
    "NaiveInfluenceFunction",
    "top_eigen",
]


def top_eigen(
    h: Tensor, k: int | None, hessian_reg: float, hessian_inverse_tol: float
) -> tuple[Tensor, Tensor]:
    """The top ``k`` eigenpairs of the symmetric ``h + hessian_reg I`` whose eigenvalues
    exceed ``hessian_inverse_tol``, ascending; each eigenvector's sign makes its entries
    sum positive (Captum's convention, so projections agree).

    Parameters
    ----------
    h : Tensor ``(P, P)``
    k : int or None
    hessian_reg, hessian_inverse_tol : float

    Returns
    -------
    (Tensor ``(m,)``, Tensor ``(P, m)``), in ``h``'s dtype.
    """
    h64 = h.to(torch.float64)
    h64 = (h64 + h64.T) / 2 + torch.eye(
        len(h64), dtype=torch.float64, device=h.device
    ) * hessian_reg
    values, vectors = torch.linalg.eigh(h64)
    keep = values > hessian_inverse_tol
    values, vectors = values[keep], vectors[:, keep]
    if k is not None:
        values, vectors = values[-k:], vectors[:, -k:]
    vectors = vectors * (2.0 * (vectors.sum(dim=0) > 0) - 1.0).unsqueeze(0)
    return values.to(h.dtype), vectors.to(h.dtype)


class InfluenceFunctionBase(DataInfluence):
    """Shared constructor of the influence-function methods (Captum's).

    Parameters
    ----------
    model : nn.Module
    train_dataset : Dataset or DataLoader
        Batches ``(features..., labels)``; a ``Dataset`` is batched by ``batch_size``.
    checkpoint : str or any
        Loaded once, now, by ``checkpoints_load_func``.
    checkpoints_load_func : callable, default loads a ``state_dict`` file
    layers : list of str, optional
        The layers whose parameters are used (default: all).
    loss_fn : callable, optional
        ``loss(outputs, labels)``; ``None``: the outputs summed per example.
    batch_size : int or None, default 1
    hessian_dataset : Dataset or DataLoader, optional
        The data whose summed loss gives the Hessian (default: the training data).
    test_loss_fn : callable, optional
    sample_wise_grads_per_batch : bool, default False
        Captum's choice of parameters and loss contract (see
        :class:`~whybox.influence.TracInCP`).
    """

    def __init__(
        self,
        model: Module,
        train_dataset: Dataset | DataLoader,
        checkpoint: Any,
        checkpoints_load_func: Callable[[Module, Any], float] = load_flexible_state_dict,
        layers: list[str] | None = None,
        loss_fn: Callable | None = None,
        batch_size: int | None = 1,
        hessian_dataset: Dataset | DataLoader | None = None,
        test_loss_fn: Callable | None = None,
        sample_wise_grads_per_batch: bool = False,
    ) -> None:
        owner = type(self).__name__
        self.model = model
        self.checkpoint = checkpoint
        self.checkpoints_load_func = checkpoints_load_func
        checkpoints_load_func(model, checkpoint)
        self.loss_fn = loss_fn
        self.test_loss_fn = loss_fn if test_loss_fn is None else test_loss_fn
        self.sample_wise_grads_per_batch = sample_wise_grads_per_batch
        self.batch_size = batch_size
        self.train_dataloader = _data.make_dataloader(
            train_dataset, batch_size, owner=owner, name="train_dataset"
        )
        self.hessian_dataloader = (
            self.train_dataloader
            if hessian_dataset is None
            else _data.make_dataloader(
                hessian_dataset, batch_size, owner=owner, name="hessian_dataset"
            )
        )
        self.reduction_type: str = check_loss_fn(
            owner, loss_fn, "loss_fn", sample_wise_grads_per_batch
        )
        self.test_reduction_type: str = (
            self.reduction_type
            if test_loss_fn is None
            else check_loss_fn(owner, test_loss_fn, "test_loss_fn", sample_wise_grads_per_batch)
        )
        self.layer_modules: list[Module] | None = layer_modules(model, layers, owner=owner)

    @abstractmethod
    def self_influence(self, inputs_dataset: Any = None, show_progress: bool = False) -> Tensor:
        """Self influence of each example (default: the training data)."""

    @abstractmethod
    def _get_k_most_influential(
        self, inputs: Any, k: int = 5, proponents: bool = True, show_progress: bool = False
    ) -> KMostInfluentialResults:
        """The ``k`` most (or least) influential training examples of each test example."""

    @abstractmethod
    def _influence(self, inputs: Any, show_progress: bool = False) -> Tensor:
        """Influence scores ``(Q, N)``."""

    @abstractmethod
    def influence(
        self,
        inputs: Any,
        k: int | None = None,
        proponents: bool = True,
        show_progress: bool = False,
    ) -> Tensor | KMostInfluentialResults:
        """Influence scores, or the ``k`` most influential training examples."""


class IntermediateQuantitiesInfluenceFunction(InfluenceFunctionBase):
    """An influence function whose scores are dot products of per-example vectors
    (:meth:`compute_intermediate_quantities`); influence, top-``k`` and self influence are
    computed from them here."""

    @abstractmethod
    def compute_intermediate_quantities(
        self,
        inputs_dataset: Any,
        aggregate: bool = False,
        show_progress: bool = False,
        return_on_cpu: bool = True,
        test: bool = False,
    ) -> Tensor:
        """Per-example vectors ``(n, k)`` (``(1, k)``, summed, with ``aggregate``)."""

    # -- shared by the subclasses ----------------------------------------------------------
    def _setup_gradients(self, chunk_size: ChunkSize) -> None:
        owner = type(self).__name__
        self.chunk_size = chunk_size
        self._gradients = PerExampleGradients(
            self.model,
            parameter_names(
                self.model, self.layer_modules, self.sample_wise_grads_per_batch, owner=owner
            ),
            owner=owner,
        )
        self.model_device: torch.device = next(self.model.parameters()).device

    def _rows(self) -> int:
        return rows_for(
            self.chunk_size,
            self._gradients.row_bytes(),
            self.model_device,
            owner=type(self).__name__,
        )

    def _gradient_chunks(
        self, batches: Iterable[Any], loss_fn: Callable | None
    ) -> Iterator[Tensor]:
        for chunk in _data.chunks(batches, self._rows(), owner=type(self).__name__):
            yield self._gradients(chunk, loss_fn)

    def _parameters(self) -> dict[str, Tensor]:
        everything = dict(self.model.named_parameters())
        return {n: everything[n].detach() for n in self._gradients.names}

    def _chunk_loss(self, params: dict[str, Tensor], chunk: _data.Chunk) -> Tensor:
        """The chunk's summed per-example loss (what Captum's batch loss amounts to)."""
        everything = dict(self.model.named_parameters())
        constants = {n: p.detach() for n, p in everything.items() if n not in params}
        constants.update(dict(self.model.named_buffers()))
        output = functional_call(self.model, (params, constants), chunk.features)
        if self.loss_fn is None:
            return output.sum()
        loss = self.loss_fn(output, chunk.labels)
        if self.reduction_type == "mean":
            return loss * chunk.rows
        return loss.sum()

    def _embeddings(
        self,
        inputs: Any,
        project: Callable[[Tensor], Tensor],
        aggregate: bool,
        show_progress: bool,
        return_on_cpu: bool,
        test: bool,
    ) -> Tensor:
        owner = type(self).__name__
        batches = _data.as_batches(inputs, owner=owner)
        loss_fn = self.test_loss_fn if test else self.loss_fn
        device = torch.device("cpu") if return_on_cpu else self.model_device
        parts = []
        desc = f"Using {self.get_name()} to compute intermediate quantities. Processing batch"
        with _Progress(show_progress, None, desc) as bar:
            for g in self._gradient_chunks(batches, loss_fn):
                parts.append(project(g).to(device))
                bar.update(len(g))
        if not parts:
            fail_assert(owner, "inputs", "at least one example", "none", raw=True)
        out = torch.cat(parts)
        return out.sum(dim=0, keepdim=True) if aggregate else out

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
            Test batches ``(features..., labels)``.
        k : int, optional
            Return the ``k`` most influential training examples instead of all scores.
        proponents : bool, default True
        show_progress : bool, default False

        Returns
        -------
        Tensor ``(Q, N)``, or KMostInfluentialResults with ``(Q, k)`` tensors.
        """
        if k is None:
            return self._influence(inputs, show_progress)
        return self._get_k_most_influential(inputs, k, proponents, show_progress)

    def _blocks(self, inputs: Any, show_progress: bool) -> Iterator[tuple[int, Tensor]]:
        test = self.compute_intermediate_quantities(inputs, show_progress=show_progress, test=True)
        offset = 0
        for group in _data.groups(self.train_dataloader):
            train = self.compute_intermediate_quantities(group)
            yield offset, test @ train.T
            offset += train.shape[0]

    def _influence(self, inputs: Any, show_progress: bool = False) -> Tensor:  # type: ignore[override]
        return torch.cat([b for _, b in self._blocks(inputs, show_progress)], dim=1)

    def _get_k_most_influential(  # type: ignore[override]
        self, inputs: Any, k: int = 5, proponents: bool = True, show_progress: bool = False
    ) -> KMostInfluentialResults:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            fail_assert(type(self).__name__, "k", "None or an int >= 1", k)
        best = None
        for offset, block in self._blocks(inputs, show_progress):
            best = merge_top_k(best, block, offset, k, proponents)
        assert best is not None
        return KMostInfluentialResults(*best)

    def self_influence(  # type: ignore[override]
        self, inputs_dataset: Any = None, show_progress: bool = False
    ) -> Tensor:
        """``||q(z)||^2`` for each example (default: the training data).

        Returns
        -------
        Tensor ``(n,)``
        """
        batches = self.train_dataloader if inputs_dataset is None else inputs_dataset
        return (
            self.compute_intermediate_quantities(batches, show_progress=show_progress) ** 2
        ).sum(dim=1)


class NaiveInfluenceFunction(IntermediateQuantitiesInfluenceFunction):
    """Influence functions with the Hessian formed explicitly (Captum's
    ``NaiveInfluenceFunction``).

    Parameters
    ----------
    model, train_dataset, checkpoint, checkpoints_load_func, layers, loss_fn, batch_size,
    hessian_dataset, test_loss_fn, sample_wise_grads_per_batch
        See :class:`InfluenceFunctionBase`.
    projection_dim : int, default 50
        Eigenpairs kept.
    seed : int, default 42
        Seeds torch's global generator, as Captum does (nothing here is random).
    hessian_reg : float, default 1e-6
    hessian_inverse_tol : float, default 1e-5
    projection_on_cpu : bool, default True
        Keep ``R`` on the CPU.
    show_progress : bool, default False
    chunk_size : int, ``"auto"`` or None, keyword-only
        Examples per vectorised pass.
    """

    def __init__(
        self,
        model: Module,
        train_dataset: Dataset | DataLoader,
        checkpoint: Any,
        checkpoints_load_func: Callable[[Module, Any], float] = load_flexible_state_dict,
        layers: list[str] | None = None,
        loss_fn: Callable | None = None,
        batch_size: int | None = 1,
        hessian_dataset: Dataset | DataLoader | None = None,
        test_loss_fn: Callable | None = None,
        sample_wise_grads_per_batch: bool = False,
        projection_dim: int = 50,
        seed: int = 42,
        hessian_reg: float = 1e-6,
        hessian_inverse_tol: float = 1e-5,
        projection_on_cpu: bool = True,
        show_progress: bool = False,
        *,
        chunk_size: ChunkSize = "auto",
    ) -> None:
        InfluenceFunctionBase.__init__(
            self,
            model,
            train_dataset,
            checkpoint,
            checkpoints_load_func,
            layers,
            loss_fn,
            batch_size,
            hessian_dataset,
            test_loss_fn,
            sample_wise_grads_per_batch,
        )
        self.projection_dim = projection_dim
        torch.manual_seed(seed)
        self.hessian_reg = hessian_reg
        self.hessian_inverse_tol = hessian_inverse_tol
        self._setup_gradients(chunk_size)
        self.R: Tensor = self._projection(projection_on_cpu, show_progress)

    def _hessian(self, show_progress: bool) -> Tensor:
        """``H``: the Hessian of the Hessian data's summed loss, ``(P, P)``."""
        params = self._parameters()
        names = list(params)
        shapes = [params[n].shape for n in names]
        sizes = [params[n].numel() for n in names]
        flat = torch.cat([params[n].reshape(-1) for n in names])
        total = None
        rows = max(1, self._rows() // 4)  # forward-over-reverse holds more per row
        desc = "processing `hessian_dataset` batch"
        with _Progress(show_progress, None, desc) as bar:
            for chunk in _data.chunks(self.hessian_dataloader, rows, owner=type(self).__name__):

                def loss_of(vector: Tensor, chunk: _data.Chunk = chunk) -> Tensor:
                    pieces = torch.split(vector, sizes)
                    unflat = {n: p.reshape(s) for n, p, s in zip(names, pieces, shapes)}
                    return self._chunk_loss(unflat, chunk)

                part = hessian(loss_of)(flat)
                total = part if total is None else total + part
                bar.update(chunk.rows)
        if total is None:
            fail_assert(
                type(self).__name__,
                "hessian_dataset",
                "a non-empty dataset",
                "no example",
                raw=True,
            )
        return total

    def _projection(self, projection_on_cpu: bool, show_progress: bool) -> Tensor:
        values, vectors = top_eigen(
            self._hessian(show_progress),
            self.projection_dim,
            self.hessian_reg,
            self.hessian_inverse_tol,
        )
        if len(values) == 0:
            raise ValueError(
                "NaiveInfluenceFunction: the Hessian has no eigenvalue above "
                "hessian_inverse_tol, so its inverse square root is undefined."
            )
        r = vectors * values.rsqrt().unsqueeze(0)
        return r.to(torch.device("cpu") if projection_on_cpu else self.model_device)

    def compute_intermediate_quantities(  # type: ignore[override]
        self,
        inputs_dataset: Any,
        aggregate: bool = False,
        show_progress: bool = False,
        return_on_cpu: bool = True,
        test: bool = False,
    ) -> Tensor:
        """``g(z)^T R`` for each example: ``(n, k)`` (``(1, k)``, summed, with ``aggregate``).

        Parameters
        ----------
        inputs_dataset : tuple or DataLoader
        aggregate : bool, default False
        show_progress : bool, default False
        return_on_cpu : bool, default True
        test : bool, default False
            Use ``test_loss_fn``.
        """
        r = self.R

        def project(g: Tensor) -> Tensor:
            return g @ r.to(g.device, g.dtype)

        return self._embeddings(
            inputs_dataset, project, aggregate, show_progress, return_on_cpu, test
        )
