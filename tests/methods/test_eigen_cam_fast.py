"""Eigen-CAM's repeated-squaring route: the SVD's direction where the gap is clear, the
former ``eigh`` / SVD route everywhere else."""

from __future__ import annotations

import pytest
import torch

from whybox.methods.cam import eigen
from whybox.methods.cam.eigen import _squared_top, first_component


def _spectrum(n: int, k: int, ratios: list[float], dtype=torch.float32) -> torch.Tensor:
    """``(n, 2k, k)`` centred rows whose Gram matrices have ``lambda_2 / lambda_1`` as given."""
    g = torch.Generator().manual_seed(7)
    out = []
    for i in range(n):
        basis = torch.randn(2 * k, k, generator=g, dtype=torch.float64)
        q, _ = torch.linalg.qr(basis - basis.mean(dim=0))
        values = torch.linspace(0.5, 0.01, k, dtype=torch.float64)
        values[0] = 1.0
        values[1] = ratios[i % len(ratios)]
        right, _ = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64))
        out.append((q * values.sqrt()) @ right.T)
    return torch.stack(out).to(dtype)


def _reference(centred: torch.Tensor) -> torch.Tensor:
    _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    return (centred.double() @ vh[:, 0, :].unsqueeze(-1)).to(centred.dtype)


def _aligned(projection: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    dots = (projection * reference).sum(dim=(1, 2), keepdim=True)
    return projection * torch.where(dots < 0, -1.0, 1.0).to(projection.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clear_gaps_converge_to_the_svd_direction(dtype):
    centred = _spectrum(4, 64, [0.3, 0.6, 0.9], dtype)
    gram = centred.mT @ centred
    top, converged = _squared_top(gram)
    assert converged.all()
    _, _, vh = torch.linalg.svd(centred.double(), full_matrices=False)
    cosine = (top.squeeze(-1).double() * vh[:, 0, :]).sum(-1).abs()
    assert (1 - cosine).max() < 1e-6
    projection = first_component(centred)
    reference = _reference(centred)
    scale = reference.abs().max()
    torch.testing.assert_close(
        _aligned(projection, reference) / scale, reference / scale, rtol=0, atol=1e-6
    )


def test_small_gaps_do_not_converge_and_take_eigh(monkeypatch):
    # lambda_2 / lambda_1 = 0.995: a relative gap of 5e-3, where eigh (then the SVD) decides
    centred = _spectrum(3, 16, [0.3, 0.995, 0.5])
    _, converged = _squared_top(centred.mT @ centred)
    assert converged.tolist() == [True, False, True]
    calls = []
    original = eigen._eigh_projection

    def spy(c, g, side):
        calls.append(c.shape[0])
        return original(c, g, side)

    monkeypatch.setattr(eigen, "_eigh_projection", spy)
    projection = first_component(centred)
    assert calls == [1]  # only the unclear example
    # gap below 1e-2: the float32 SVD's own result, as before
    _, _, vh = torch.linalg.svd(centred[1:2], full_matrices=False)
    torch.testing.assert_close(projection[1:2], centred[1:2] @ vh[:, 0, :].unsqueeze(-1))
    clear = centred[[0, 2]]
    reference = _reference(clear)
    scale = reference.abs().max()
    torch.testing.assert_close(
        _aligned(projection[[0, 2]], reference) / scale, reference / scale, rtol=0, atol=1e-6
    )


def test_zero_and_non_finite_gram_matrices_never_converge():
    gram = torch.zeros(3, 5, 5)
    gram[1] = torch.eye(5)  # all eigenvalues tied: the tail stays 4/5
    gram[2, 0, 0] = float("nan")
    _, converged = _squared_top(gram)
    assert not converged.any()


def test_wide_layers_project_through_the_positions_gram():
    centred = _spectrum(2, 24, [0.5]).mT.contiguous()  # (2, 24 positions, 48 channels)
    centred = centred - centred.mean(dim=1, keepdim=True)
    projection = first_component(centred)
    reference = _reference(centred)
    scale = reference.abs().max()
    torch.testing.assert_close(
        _aligned(projection, reference) / scale, reference / scale, rtol=0, atol=1e-5
    )
