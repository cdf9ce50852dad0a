"""Small models and state helpers shared by the tests (torch.nn only, no downloads)."""

from __future__ import annotations

import torch
from torch import nn


class ConvNet(nn.Module):
    """Conv -> ReLU(inplace) -> MaxPool -> Conv -> ReLU -> flatten -> Linear (10 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        return self.fc(x.flatten(1))


class MultiInputNet(nn.Module):
    """Two inputs plus an extra tensor argument and a python scalar argument."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 8)
        self.b = nn.Linear(3, 8)
        self.out = nn.Linear(8, 4)

    def forward(self, x1, x2, scale, shift=0.0):
        hidden = torch.tanh(self.a(x1)) + torch.relu(self.b(x2)) * scale
        return self.out(hidden) + shift


class EmbeddingNet(nn.Module):
    """A text-style model taking embedded tokens (N, T, D) and returning 3 class scores."""

    def __init__(self, vocab: int = 30, dim: int = 6) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, 8, 2)
        self.fc = nn.Linear(8, 3)

    def forward(self, embedded):
        h = torch.relu(self.conv(embedded.transpose(1, 2)))
        return self.fc(h.max(dim=2).values)


def module_hook_count(model: nn.Module) -> int:
    """Total registered forward / backward hooks over all submodules."""
    total = 0
    for module in model.modules():
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
        total += len(module._backward_hooks) + len(getattr(module, "_backward_pre_hooks", {}))
    return total


def model_state(model: nn.Module):
    """Snapshot of what attribution must not change: parameters, requires_grad, mode."""
    return (
        {name: p.detach().clone() for name, p in model.named_parameters()},
        {name: p.requires_grad for name, p in model.named_parameters()},
        [m.training for m in model.modules()],
    )


def assert_same_state(model: nn.Module, state) -> None:
    params, flags, modes = state
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), params[name]), name
        assert p.requires_grad == flags[name], name
        assert p.grad is None, f"{name} accumulated a gradient"
    assert [m.training for m in model.modules()] == modes


def eigen_cam_reference(activations: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM by its definition, one image at a time: ``(N, C, H, W)`` activations ->
    ``(N, 1, H, W)``, each image's centred ``(HW, C)`` rows projected on their first right
    singular vector (full SVD), sign fixed by a positive third moment, then ReLU."""
    maps = []
    for image in activations:
        rows = image.reshape(image.shape[0], -1).T
        rows = rows - rows.mean(dim=0)
        _, _, vh = torch.linalg.svd(rows, full_matrices=True)
        projection = rows @ vh[0]
        if (projection**3).sum() < 0:  # the documented sign convention
            projection = -projection
        maps.append(projection.reshape(image.shape[1:]).clamp_min(0))
    return torch.stack(maps).unsqueeze(1)


def deeplift_general_pool_rules() -> dict[type, object]:
    """DeepLift's textbook rules with the max pools on the general (spread, then divide)
    path instead of the pooled-grid fast path."""
    from whybox.methods.deeplift_rules import MaxPoolRescale, rescale_rules, scatter_add_spread

    def spread(values, indices, module, shape):
        return scatter_add_spread(values, indices, module, shape)

    rules = dict(rescale_rules().rules)
    pool = MaxPoolRescale(spread=spread)  # not the default spread object: general path
    rules.update({cls: pool for cls in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)})
    return rules


def run_together(*workers):
    """Run each ``worker()`` in its own thread, started together (a barrier), and return
    their results in order; the first exception a worker raised is raised here."""
    import threading

    results: list = [None] * len(workers)
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = workers[i]()
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
