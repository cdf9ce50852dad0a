"""Gradient-weighted CAMs: weights from ``g = d target / d A`` of the layer's activations ``A``.

Each class is its weights only; the pipeline (one chunked forward + backward, reshape,
ReLU, upsampling) is :class:`~whybox.methods.cam.base._Cam`. Shapes: ``A`` and ``g`` are
``(N, C, *spatial)``; weights broadcast to them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox.core.call import Call
from whybox.core.registry import register
from whybox.core.scope import LayerSite

from .base import LayerValues, _Cam, spatial_sum

__all__ = ["UpsampledGradCam", "GradCamPlusPlus", "XGradCam", "HiResCam", "LayerCam"]


@register("upsampled_grad_cam")
class UpsampledGradCam(_Cam):
    """Grad-CAM (Selvaraju et al., 2017) in the CAM family's conventions.

    Weights are the spatially averaged gradients, ``w_c = mean(dy/dA_c)`` ``(N, C, 1, ...)``.
    Unlike :class:`~whybox.methods.GradCam` (Captum's ``LayerGradCam``: layer resolution,
    ReLU optional) the map is ReLU'd, upsampled and the layer may be a token layout.
    """

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        g = layer.gradients
        return g.mean(dim=tuple(range(2, g.dim())), keepdim=True)


@register("grad_cam_plus_plus")
class GradCamPlusPlus(_Cam):
    """Grad-CAM++ (Chattopadhay et al., 2018), the closed form of their eq. 19.

    With ``g = dy/dA`` (assuming an exponential output, so higher derivatives are powers of
    ``g``): ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)``, zero where ``g = 0``, and
    ``w_c = sum_ij alpha * relu(g)`` ``(N, C, 1, ...)``; as pytorch-grad-cam computes it
    (``eps = 1e-6``).
    """

    eps: ClassVar[float] = 1e-6

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        g = layer.gradients
        g2 = g * g
        alpha = g2 / (2 * g2 + spatial_sum(layer.activations) * g2 * g + self.eps)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        return spatial_sum(F.relu(g) * alpha)


@register("xgrad_cam")
class XGradCam(_Cam):
    """XGrad-CAM (Fu et al., 2020): ``w_c = sum_ij(g * A_c) / (sum_ij(A_c) + eps)``.

    For ReLU layers followed by average pooling and a linear head this equals Grad-CAM.
    """

    eps: ClassVar[float] = 1e-7

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        a = layer.activations
        return spatial_sum(layer.gradients * a) / (spatial_sum(a) + self.eps)


@register("hires_cam")
class HiResCam(_Cam):
    """HiResCAM (Draelos & Carin, 2020): ``cam = relu(sum_c g_c * A_c)`` elementwise.

    No spatial averaging of the gradients, so the map is faithful to the model's own
    computation for models ending in global average pooling and a linear layer.
    """

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        return layer.gradients


@register("layer_cam")
class LayerCam(_Cam):
    """LayerCAM (Jiang et al., 2021): ``cam = relu(sum_c relu(g_c) * A_c)`` elementwise."""

    def _weights(self, call: Call, site: LayerSite, layer: LayerValues, mode: str) -> Tensor:
        return F.relu(layer.gradients)
