"""Eigen-CAM (Muhammad & Yeasin, 2020): gradient-free and target-free."""

from __future__ import annotations

import torch
from torch import Tensor

from whybox.core.call import Call
from whybox.core.registry import register
from whybox.core.scope import LayerSite

from .base import LayerValues, _Cam

__all__ = ["EigenCam", "first_component"]

#: the Gram route is taken only where the top eigenvalue leads the next by this relative
#: gap: below it the first direction is ill-determined and the SVD decides (as before)
_MIN_RELATIVE_GAP = 1e-2


def _svd_projection(centred: Tensor) -> Tensor:
    """``(N, P, C) -> (N, P, 1)``: the rows projected on their first right singular vector."""
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # batched, one call
    return centred @ vh[:, 0, :].unsqueeze(-1)


#: squarings of the Gram matrix tried before ``eigh`` decides; after ``s`` squarings a
#: tail below ``_TAIL`` means ``(lambda_2 / lambda_1) ** (2 ** s) < _TAIL``: with at most 9
#: that is a relative gap above 1.8e-2, where the old route took ``eigh`` too (never the SVD)
_MAX_SQUARINGS = 9
#: squarings after which convergence is checked (one host sync each)
_CHECKS = (5, 7, 9)
#: largest eigenvalue mass left outside the top direction of the squared Gram matrix
_TAIL = 1e-4


def _squared_top(gram: Tensor) -> tuple[Tensor, Tensor]:
    """Top eigenvector of each PSD ``gram`` by repeated squaring, and where it converged.

    ``M = G / tr(G)`` squared ``s`` times (trace-normalised) is ``sum_i w_i u_i u_i^T``
    with ``w_i`` proportional to ``lambda_i ** (2 ** s)`` and ``sum w_i = 1``; then
    ``1 - ||M||_F^2 >= sum_{i>1} w_i`` bounds the mass outside ``u_1``. The vector is ``M``
    applied to its column of largest diagonal (which has ``|u_1j| >= 1/sqrt(k)``), so the
    other directions are left with weight ``(w_i / w_1) ** 2 * sqrt(k)`` at most: float
    rounding, for a tail below ``_TAIL``. Doubling the power per matrix product makes a few
    batched ``k x k`` products cheaper than ``eigh`` on small matrices.

    Returns
    -------
    tuple of Tensor
        ``(N, k, 1)`` unit vectors (sign arbitrary) and ``(N,)`` bool: converged, finite.
    """
    m = gram / gram.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
    converged = torch.zeros(gram.shape[0], dtype=torch.bool, device=gram.device)
    for step in range(1, _MAX_SQUARINGS + 1):
        m = m @ m
        if step % 2:  # trace 1 again; an even step's square of it cannot underflow
            m = m / m.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
        if step in _CHECKS:
            # ``<=`` is false for NaN: a non-finite or zero Gram matrix never converges
            converged = 1 - m.square().sum(dim=(1, 2)) <= _TAIL
            if bool(converged.all()):
                break
    best = m.diagonal(dim1=-2, dim2=-1).argmax(dim=-1)
    vector = m @ torch.take_along_dim(m, best[:, None, None], dim=2)
    return vector / vector.norm(dim=1, keepdim=True), converged


def _eigh_projection(centred: Tensor, gram: Tensor, channels_side: bool) -> Tensor:
    """The projection from ``eigh`` of ``gram``; the SVD where its top eigenvalue is
    (nearly) degenerate, tiny or not computable (the former route, unchanged)."""
    try:
        values, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
    except torch.linalg.LinAlgError:
        return _svd_projection(centred)  # e.g. non-finite activations: the SVD's verdict
    projection = _project(centred, vectors[..., -1:], channels_side)
    largest, second = values[:, -1], values[:, -2]
    # ``not (gap > ...)``: also true for a zero or NaN spectrum; a spectrum so small that
    # the squares lost precision to underflow (subnormal) goes to the SVD too
    info = torch.finfo(centred.dtype)
    unclear = ~(largest - second > _MIN_RELATIVE_GAP * largest.abs()) | (
        largest < info.tiny / info.eps
    )
    if bool(unclear.any()):
        which = unclear.nonzero().squeeze(1)
        projection = projection.index_copy(0, which, _svd_projection(centred[which]))
    return projection


def _project(centred: Tensor, top: Tensor, channels_side: bool) -> Tensor:
    """``centred @ v1`` from the Gram matrix's top unit eigenvector ``top``."""
    if channels_side:
        return centred @ top
    direction = centred.mT @ top  # (N, C, 1), of norm sqrt(top eigenvalue)
    return centred @ (direction / direction.norm(dim=1, keepdim=True))


def first_component(centred: Tensor) -> Tensor:
    """Projection of each example's centred rows on their first principal direction.

    The first right singular vector of ``centred[i]`` (``P x C``) is the top eigenvector of
    the Gram matrix ``centred[i]^T centred[i]`` (``C x C``); when ``P < C`` the top
    eigenvector ``u`` of ``centred[i] centred[i]^T`` (``P x P``) gives it as
    ``centred[i]^T u`` normalised. It comes from repeated squaring of the smaller Gram
    matrix (:func:`_squared_top`) where that converges in a few products (a clear gap);
    the other examples take one batched ``eigh``, and those whose top eigenvalue is (nearly)
    degenerate -- relative gap to the second below 1e-2, including all-zero rows --,
    examples whose squares underflow or overflow, and inputs ``eigh`` cannot decompose
    (non-finite values) take the SVD, so the result is the SVD's to float tolerance. The
    sign is arbitrary, as the SVD's. Host syncs: the convergence checks, and whether any
    example needs the SVD.

    Parameters
    ----------
    centred : Tensor
        ``(N, P, C)``: per example, ``P`` positions of ``C`` channels, centred over the
        positions; float32 or float64 (other dtypes go to the SVD as they are).

    Returns
    -------
    Tensor
        ``(N, P, 1)``, ``centred @ v1`` per example.
    """
    n, p, c = centred.shape
    if n == 0 or min(p, c) < 2 or centred.dtype not in (torch.float32, torch.float64):
        return _svd_projection(centred)
    channels_side = c <= p
    gram = centred.mT @ centred if channels_side else centred @ centred.mT
    top, converged = _squared_top(gram)
    # a spectrum so small that the squares lost precision to underflow goes the old way
    info = torch.finfo(centred.dtype)
    scale = gram.diagonal(dim1=-2, dim2=-1).amax(dim=-1)  # <= lambda_1 <= k * scale
    converged &= scale >= info.tiny / info.eps
    if bool(converged.all()):
        return _project(centred, top, channels_side)
    if not bool(converged.any()):
        return _eigh_projection(centred, gram, channels_side)
    projection = _project(centred, top, channels_side)
    which = (~converged).nonzero().squeeze(1)
    rest = _eigh_projection(centred[which], gram[which], channels_side)
    return projection.index_copy(0, which, rest)


@register("eigen_cam")
class EigenCam(_Cam):
    """Eigen-CAM: the first principal component of the layer's activations.

    Per image, the activations as ``(spatial, C)`` rows are centred over positions and
    projected on their first right singular vector (computed from the smaller Gram matrix,
    see :func:`first_component`); the map does not depend on the target (a target, if
    given, is only checked and its scores reported). The SVD's sign is arbitrary
    (pytorch-grad-cam leaves it so); here it is fixed so that the projection's third moment
    is positive: the few locations that stand out come out positive, the broad rest
    negative (and is cut by the ReLU).
    """

    uses_gradients = False
    needs_scores = False

    def _map(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        a = layer.activations
        n, c = a.shape[:2]
        rows = a.reshape(n, c, -1).transpose(1, 2)  # (N, positions, C)
        centred = rows - rows.mean(dim=1, keepdim=True)
        projection = first_component(centred)  # (N, positions, 1)
        skew = projection.pow(3).sum(dim=(1, 2), keepdim=True)
        # a sign per image on the device, no host sync
        projection = projection * torch.where(skew < 0, -1.0, 1.0).to(projection.dtype)
        return projection.reshape((n,) + tuple(a.shape[2:]))
