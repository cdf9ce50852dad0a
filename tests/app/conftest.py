"""Fixtures of the web-app tests: a small local CNN, the seed's Insights set-up around it,
and a TestClient over an app with tight limits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from whybox.app import Feature, Limits, Workspace

CLASSES = ["cat", "teapot", "trilobite", "dog", "boat", "car", "tree", "lamp", "fish", "cup"]


class TinyCNN(nn.Module):
    """Conv -> ReLU -> MaxPool -> Linear on 3x8x8 images, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def normalize(image):
    """torchvision's Normalize on one (3, H, W) image."""
    return (image - MEAN) / STD


def baseline_func(input):
    """The seed's baseline: all zeros."""
    return input * 0


def tiny_model(seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN().eval()


def images(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.fixture(scope="session")
def small_workspace() -> Workspace:
    torch.set_num_threads(1)
    x, y = images(24)
    return Workspace(
        models=[tiny_model(0), tiny_model(1)],
        model_names=["CNN A", "CNN B"],
        classes=CLASSES,
        features=[
            Feature(
                "Photo",
                kind="image",
                input_transforms=[normalize],
                baseline_transforms=[baseline_func],
            )
        ],
        dataset=[(x[i : i + 8], y[i : i + 8]) for i in range(0, 24, 8)],
        score_func=lambda o: torch.softmax(o, 1),
    )


TEST_LIMITS = Limits(
    max_examples_per_job=4,
    max_methods_per_job=3,
    max_cells_per_job=12,
    max_n_steps=100,
    max_n_samples=50,
    max_evaluations=5_000,
    max_page_size=20,
)


@pytest.fixture(scope="session")
def kit():
    """The helpers above, for test modules (``conftest`` is not importable by name here:
    the suite's top-level conftest owns that name)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        CLASSES=CLASSES,
        TEST_LIMITS=TEST_LIMITS,
        TinyCNN=TinyCNN,
        normalize=normalize,
        baseline_func=baseline_func,
        tiny_model=tiny_model,
        images=images,
    )


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory):
    """One cache of demo weights for the session: trained once (seconds), then loaded."""
    return tmp_path_factory.mktemp("whybox-demo-cache")
