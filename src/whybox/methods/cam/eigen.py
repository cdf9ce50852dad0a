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


def first_component(centred: Tensor) -> Tensor:
    """Projection of each example's centred rows on their first principal direction.

    The first right singular vector of ``centred[i]`` (``P x C``) is the top eigenvector of
    the Gram matrix ``centred[i]^T centred[i]`` (``C x C``); when ``P < C`` the top
    eigenvector ``u`` of ``centred[i] centred[i]^T`` (``P x P``) gives it as
    ``centred[i]^T u`` normalised. One batched ``eigh`` of the smaller Gram matrix costs a
    fraction of the SVD. Examples whose top eigenvalue is (nearly) degenerate -- relative
    gap to the second below 1e-2, including all-zero rows --, examples whose squares
    underflow or overflow, and inputs ``eigh`` cannot decompose (non-finite values) take
    the SVD instead, so the result is the SVD's to
    float tolerance. The sign is arbitrary, as the SVD's. One host sync: whether any
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
    try:
        values, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
    except torch.linalg.LinAlgError:
        return _svd_projection(centred)  # e.g. non-finite activations: the SVD's verdict
    top = vectors[..., -1:]  # (N, C, 1) or (N, P, 1)
    if channels_side:
        projection = centred @ top
    else:
        direction = centred.mT @ top  # (N, C, 1), of norm sqrt(top eigenvalue)
        projection = centred @ (direction / direction.norm(dim=1, keepdim=True))
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
