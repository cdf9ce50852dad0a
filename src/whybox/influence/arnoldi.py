"""Influence functions with the Hessian's top eigenvectors found by Arnoldi iteration
(Schioppa et al., 2022): Captum's ``ArnoldiInfluenceFunction``.

Hessian-vector products of the Hessian data's summed loss (forward-over-reverse with
``torch.func``, over chunks of rows) build an orthonormal Krylov basis ``Q`` and the
Hessian's restriction ``H`` to it (Arnoldi, modified Gram-Schmidt); the top eigenpairs of
``H + reg I`` lifted back by ``Q`` give ``R``, and each example's intermediate quantity is
``g(z)^T R``. The start vector is drawn as Captum draws it (``torch.randn_like`` of each
parameter after ``torch.manual_seed(seed)``), so the numbers agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, jvp
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from whybox.core.chunks import ChunkSize

from . import _data
from ._data import load_flexible_state_dict
from ._linalg import arnoldi, distill
from .influence_function import InfluenceFunctionBase, IntermediateQuantitiesInfluenceFunction
from .tracin import _Progress

__all__ = ["ArnoldiInfluenceFunction"]


class ArnoldiInfluenceFunction(IntermediateQuantitiesInfluenceFunction):
    """Influence functions on an Arnoldi approximation of the Hessian's top eigenspace.

    Parameters
    ----------
    model, train_dataset, checkpoint, checkpoints_load_func, layers, loss_fn, batch_size,
    hessian_dataset, test_loss_fn, sample_wise_grads_per_batch
        See :class:`~whybox.influence.InfluenceFunctionBase`.
    projection_dim : int, default 50
        Eigenpairs kept.
    seed : int, default 0
        Seeds torch's global generator before the start vector is drawn (as Captum).
    arnoldi_dim : int, default 200
        Arnoldi iterations (the Krylov basis' size).
    arnoldi_tol : float, default 0.1
        Stop early when the new basis vector's norm falls below it.
    hessian_reg : float, default 1e-3
    hessian_inverse_tol : float, default 1e-4
    projection_on_cpu : bool, default True
        Keep the basis and ``R`` on the CPU.
    show_progress : bool, default False
    chunk_size : int, ``"auto"`` or None, keyword-only
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
        seed: int = 0,
        arnoldi_dim: int = 200,
        arnoldi_tol: float = 1e-1,
        hessian_reg: float = 1e-3,
        hessian_inverse_tol: float = 1e-4,
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
        self.arnoldi_dim = arnoldi_dim
        self.arnoldi_tol = arnoldi_tol
        self.hessian_reg = hessian_reg
        self.hessian_inverse_tol = hessian_inverse_tol
        self._setup_gradients(chunk_size)
        self.R: Tensor = self._projection(projection_on_cpu, show_progress)

    def _hvp(self, vector: Tensor) -> Tensor:
        """``H v`` for a flat ``v`` (summed over chunks of the Hessian data)."""
        params = self._parameters()
        names = list(params)
        sizes = [params[n].numel() for n in names]
        tangent = {n: p.reshape(params[n].shape) for n, p in zip(names, torch.split(vector, sizes))}
        rows = max(1, self._rows() // 4)
        total = None
        for chunk in _data.chunks(self.hessian_dataloader, rows, owner=type(self).__name__):

            def gradient(p: dict[str, Tensor], chunk: _data.Chunk = chunk) -> dict[str, Tensor]:
                return grad(lambda q: self._chunk_loss(q, chunk))(p)

            _, out = jvp(gradient, (params,), (tangent,))
            flat = torch.cat([out[n].reshape(-1) for n in names])
            total = flat if total is None else total + flat
        assert total is not None
        return total

    def _projection(self, projection_on_cpu: bool, show_progress: bool) -> Tensor:
        params = self._parameters()
        # Captum's start vector: randn_like of each parameter, in parameter order
        start = torch.cat([torch.randn_like(p).reshape(-1) for p in params.values()])
        store = torch.device("cpu") if projection_on_cpu else self.model_device
        desc = "Running Arnoldi Iteration for step"
        with _Progress(show_progress, self.arnoldi_dim, desc) as bar:
            basis, h = arnoldi(self._hvp, start, self.arnoldi_dim, self.arnoldi_tol, store, bar)
        try:
            values, vectors = distill(
                basis, h, self.projection_dim, self.hessian_reg, self.hessian_inverse_tol
            )
        except ValueError as error:
            raise ValueError(f"ArnoldiInfluenceFunction: {error}") from None
        return vectors * values.rsqrt().unsqueeze(0)

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
