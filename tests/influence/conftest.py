"""Fixtures for the influence tests: a small classifier, its data and saved checkpoints."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(6, 10)
        self.act = nn.Tanh()
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.hidden(x)))


def _load_with_lr(model: nn.Module, path: str) -> float:
    """Checkpoint loader returning a learning rate that differs per checkpoint."""
    saved = torch.load(path)
    model.load_state_dict(saved["state"])
    return saved["lr"]


@pytest.fixture
def load_with_lr():
    """The checkpoint loader of :func:`setup`'s checkpoints (returns each one's rate)."""
    return _load_with_lr


@pytest.fixture
def setup(tmp_path):
    """``(model, train dataset, test batch, checkpoint paths)`` -- 3 checkpoints with
    learning rates 0.5, 0.25, 0.125."""
    torch.manual_seed(0)
    model = SmallNet().eval()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 6, generator=g), torch.randint(0, 3, (30,), generator=g)
    test = (torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g))
    paths = []
    for c in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn(p.shape, generator=g))
        path = os.path.join(tmp_path, f"checkpoint-{c}.pt")
        torch.save({"state": model.state_dict(), "lr": 0.5 ** (c + 1)}, path)
        paths.append(path)
    return model, TensorDataset(x, y), test, paths
