"""ROAD's noisy linear imputation written out as a dense linear system: the reference the
fast solvers are tested against (shared by the metrics tests)."""

from __future__ import annotations

import torch


def dense_fill(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The harmonic fill of one ``(C, H, W)`` image: its linear system written out densely
    and solved in float64."""
    channels, height, width = image.shape
    unknown = removed.reshape(-1).nonzero().flatten().tolist()
    where = {p: k for k, p in enumerate(unknown)}
    system = torch.zeros(len(unknown), len(unknown), dtype=torch.float64)
    rhs = torch.zeros(len(unknown), channels, dtype=torch.float64)
    flat = image.reshape(channels, -1).double()
    for k, p in enumerate(unknown):
        i, j = divmod(p, width)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if (di or dj) and 0 <= i + di < height and 0 <= j + dj < width:
                    weight = 1 / 12 if di and dj else 1 / 6
                    q = (i + di) * width + j + dj
                    system[k, k] += weight
                    if q in where:
                        system[k, where[q]] -= weight
                    else:
                        rhs[k] += weight * flat[:, q]
    out = flat.clone()
    if unknown:
        out[:, unknown] = torch.linalg.solve(system, rhs).T
    return out.reshape(channels, height, width)
