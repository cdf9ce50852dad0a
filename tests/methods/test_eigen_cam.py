"""Eigen-CAM's first principal component from the Gram matrix equals the SVD's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _support import eigen_cam_reference
from whybox.methods.cam import EigenCam
from whybox.methods.cam.eigen import first_component


def _centred(n: int, p: int, c: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(n * 1000 + p * 10 + c)
    # a planted leading direction, so the top eigenvalue is well separated
    rows = torch.randn(n, p, c, generator=g, dtype=dtype)
    rows = rows + 4 * torch.randn(n, p, 1, generator=g, dtype=dtype) * torch.randn(
        n, 1, c, generator=g, dtype=dtype
    )
    return rows - rows.mean(dim=1, keepdim=True)


def _svd_reference(centred: torch.Tensor) -> torch.Tensor:
    """Projection on the first right singular vector, one example at a time."""
    out = []
    for rows in centred:
        _, _, vh = torch.linalg.svd(rows, full_matrices=True)
        out.append(rows @ vh[0])
    return torch.stack(out).unsqueeze(-1)


def _aligned(projection: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``projection`` with each example's sign matched to ``reference`` (both arbitrary)."""
    dots = (projection * reference).sum(dim=(1, 2), keepdim=True)
    return projection * torch.where(dots < 0, -1.0, 1.0).to(projection.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 50, 8), (2, 6, 40), (4, 16, 16), (1, 784, 64)])
def test_gram_route_matches_svd(shape, dtype):
    centred = _centred(*shape, dtype=dtype)
    projection = first_component(centred)
    reference = _svd_reference(centred)
    assert projection.shape == reference.shape and projection.dtype == dtype
    scale = reference.abs().max()
    torch.testing.assert_close(
        _aligned(projection, reference) / scale, reference / scale, rtol=0, atol=1e-5
    )
    # a unit direction: the projection's norm is the top singular value
    top = torch.linalg.svdvals(centred)[:, 0]
    torch.testing.assert_close(projection.flatten(1).norm(dim=1), top)


def test_degenerate_examples_take_the_svd():
    healthy = _centred(1, 12, 5)
    # two equal leading singular values: the first direction is not determined by the data,
    # only the SVD's choice reproduces the former result
    # (orthonormal columns spanned by centred ones are centred themselves)
    basis = torch.randn(12, 5, generator=torch.Generator().manual_seed(3))
    q, _ = torch.linalg.qr(basis - basis.mean(dim=0))
    tied = (q * torch.tensor([3.0, 3.0, 1.0, 0.5, 0.1])).unsqueeze(0)
    zero = torch.zeros(1, 12, 5)
    centred = torch.cat([healthy, tied, zero, healthy])
    projection = first_component(centred)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    svd = centred @ vh[:, 0, :].unsqueeze(-1)
    torch.testing.assert_close(projection[1:3], svd[1:3])  # the SVD's own choice
    assert torch.equal(projection[2], torch.zeros(12, 1))
    torch.testing.assert_close(_aligned(projection, svd), svd)


def test_non_finite_activations_fail_like_the_svd():
    centred = _centred(2, 10, 4)
    centred[1, 3, 2] = float("nan")
    with pytest.raises(torch.linalg.LinAlgError):
        first_component(centred)


class _Wide(nn.Module):
    """A layer with more channels (48) than positions (16): the positions' Gram matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 48, 3, stride=2, padding=1)
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(48 * 4 * 4, 5))

    def forward(self, x):
        return self.head(self.conv(x))


def test_eigen_cam_on_a_wide_layer_matches_the_svd_convention():
    torch.manual_seed(0)
    model = _Wide().eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        a = model.conv(x)
    expected = eigen_cam_reference(a)
    result = EigenCam(model, model.conv).attribute(x, upsample=False)
    torch.testing.assert_close(result.attributions, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1e21, 1e-22, 1e-24])
def test_magnitudes_the_gram_matrix_cannot_hold_take_the_svd(scale):
    # squared, these values overflow (inf), lose digits as subnormals, or underflow (0) in
    # float32: never a wrong map
    centred = _centred(2, 20, 6) * scale
    projection = first_component(centred)
    reference = _svd_reference(centred)
    assert torch.isfinite(projection).all()
    size = reference.abs().max()
    torch.testing.assert_close(
        _aligned(projection, reference) / size, reference / size, rtol=0, atol=1e-6
    )
