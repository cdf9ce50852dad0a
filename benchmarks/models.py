"""Benchmark models (``torch.nn`` only) and the workloads built on them.

Every module is used once (no shared ``nn.ReLU``), so DeepLift-style methods that hook
modules see a clean graph. Weights and inputs are seeded, so a workload built in another
process (the memory probe) is identical to the one timed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "Workload",
    "WORKLOADS",
    "EXTRA_WORKLOADS",
    "build_workload",
    "SmallCNN",
    "LargeCNN",
    "TabularMLP",
    "SmallResNet",
]


class SmallCNN(nn.Module):
    """CIFAR-sized classifier: 3x32x32 -> 10 (about 0.1M parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class LargeCNN(nn.Module):
    """ImageNet-sized classifier: 3x224x224 -> 10 (about 1M parameters).

    Four conv+ReLU+MaxPool blocks (224 -> 14) and a two-layer head.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 14 * 14, 80), nn.ReLU(), nn.Linear(80, 10)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class TabularMLP(nn.Module):
    """Tabular regressor-style classifier: 12 features -> 2 classes."""

    def __init__(self, n_features: int = 12) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class _Block(nn.Module):
    """A ResNet basic block; the block's ReLU module runs twice per forward (torchvision's
    layout), so hooks and rules see one module called at two places."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class SmallResNet(nn.Module):
    """ResNet-18-shaped classifier: 3x64x64 -> 10 (about 0.7M parameters): batch norm,
    residual sums, in-place ReLUs reused within a block, global average pooling."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers, cin = [], width
        for index, cout in enumerate(widths):
            stride = 1 if index == 0 else 2
            layers.append(nn.Sequential(_Block(cin, cout, stride), _Block(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 10)
        # non-trivial batch-norm statistics, as a trained network has (eval mode uses them)
        generator = torch.Generator().manual_seed(0)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x).flatten(1))


@dataclass
class Workload:
    """A model with the inputs, targets and reference points every case on it uses.

    Attributes
    ----------
    name : key in :data:`WORKLOADS`
    model : the network, in eval mode
    inputs : ``(N, ...)`` examples to explain
    target : ``(N,)`` class per example
    baseline : one ``(N, ...)`` baseline per example (IG, DeepLift)
    references : ``(n_refs, ...)`` reference distribution (GradientShap, DeepLiftShap)
    """

    name: str
    model: nn.Module
    inputs: Tensor
    target: Tensor
    baseline: Tensor
    references: Tensor

    @property
    def batch(self) -> int:
        return self.inputs.shape[0]

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def describe(self) -> str:
        shape = "x".join(str(s) for s in self.example_shape)
        n_params = sum(p.numel() for p in self.model.parameters())
        return (
            f"{self.name}: {type(self.model).__name__} ({n_params / 1e6:.2f}M params), "
            f"batch {self.batch} x {shape}"
        )


# name -> (model class, example shape, batch size, number of references)
WORKLOADS: dict[str, tuple[type[nn.Module], tuple[int, ...], int, int]] = {
    "cnn32": (SmallCNN, (3, 32, 32), 16, 8),
    "cnn224": (LargeCNN, (3, 224, 224), 1, 4),
    "mlp12": (TabularMLP, (12,), 256, 16),
}

#: workloads only some benchmarks run (``registry.py --workloads resnet64``), outside the
#: default sets of run.py / chunks.py / deeplift.py (Captum's DeepLift raises on the ResNet)
EXTRA_WORKLOADS: dict[str, tuple[type[nn.Module], tuple[int, ...], int, int]] = {
    "resnet64": (SmallResNet, (3, 64, 64), 4, 4),
}


def build_workload(
    name: str, *, device: str = "cpu", seed: int = 0, batch: int | None = None
) -> Workload:
    """The seeded model and tensors of workload ``name`` (``batch`` overrides its size)."""
    model_cls, shape, default_batch, n_refs = {**WORKLOADS, **EXTRA_WORKLOADS}[name]
    batch = batch or default_batch
    torch.manual_seed(seed)
    model = model_cls().eval().to(device)
    generator = torch.Generator().manual_seed(seed + 1)
    inputs = torch.randn((batch,) + shape, generator=generator).to(device)
    baseline = (0.1 * torch.randn((batch,) + shape, generator=generator)).to(device)
    references = torch.randn((n_refs,) + shape, generator=generator).to(device)
    with torch.no_grad():
        target = model(inputs).argmax(dim=1)
    return Workload(name, model, inputs, target, baseline, references)
