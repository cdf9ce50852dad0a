"""Eigen-CAM (Muhammad & Yeasin, 2020): gradient-free and target-free."""

from __future__ import annotations

import torch
from torch import Tensor

from whybox.core.call import Call
from whybox.core.registry import register
from whybox.core.scope import LayerSite

from .base import LayerValues, _Cam

__all__ = ["EigenCam"]


@register("eigen_cam")
class EigenCam(_Cam):
    """Eigen-CAM: the first principal component of the layer's activations.

    Per image, the activations as ``(spatial, C)`` rows are centred over positions and
    projected on their first right singular vector; the map does not depend on the target
    (a target, if given, is only checked and its scores reported). The SVD's sign is
    arbitrary (pytorch-grad-cam leaves it so); here it is fixed so that the projection's
    third moment is positive: the few locations that stand out come out positive, the broad
    rest negative (and is cut by the ReLU).
    """

    uses_gradients = False
    needs_scores = False

    def _map(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        a = layer.activations
        n, c = a.shape[:2]
        rows = a.reshape(n, c, -1).transpose(1, 2)  # (N, positions, C)
        centred = rows - rows.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # batched, one call
        projection = centred @ vh[:, 0, :].unsqueeze(-1)  # (N, positions, 1)
        skew = projection.pow(3).sum(dim=(1, 2), keepdim=True)
        # a sign per image on the device, no host sync
        projection = projection * torch.where(skew < 0, -1.0, 1.0).to(projection.dtype)
        return projection.reshape((n,) + tuple(a.shape[2:]))
