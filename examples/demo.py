"""whybox demo: train a small digit classifier, explain predictions, check the explanation.

Runs offline in seconds: scikit-learn's bundled 8x8 digits, a small CNN trained here and
cached in ``out/``, Integrated Gradients with its completeness check, and a side-by-side
sanity check against Saliency. Writes ``out/demo_attributions.pt`` (and views when the
visualization extra is installed).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

import whybox
from whybox.methods import IntegratedGradients, NoiseTunnel, Saliency

OUT = Path(__file__).resolve().parent.parent / "out"


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target)
    return images, labels


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def trained_model(images, labels) -> nn.Module:
    """Train for a few seconds, or load the cached weights."""
    torch.manual_seed(0)
    model = make_model()
    cache = OUT / "digits_cnn.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        return model.eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    train_x, train_y = images[:1500], labels[:1500]
    for _ in range(15):
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    OUT.mkdir(exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval()


def ascii_map(values: torch.Tensor) -> str:
    """8x8 attribution map as text: '+' / '-' by sign, size by magnitude."""
    scale = values.abs().max().clamp_min(1e-12)
    rows = []
    for row in values:
        cells = []
        for v in row:
            level = float(v / scale)
            cells.append(
                " " if abs(level) < 0.15 else ("+" if level > 0 else "-") * (1 + (abs(level) > 0.5))
            )
        rows.append(" ".join(c.ljust(2) for c in cells))
    return "\n".join(rows)


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images, labels = digits()
    model = trained_model(images, labels)
    test_x, test_y = images[1500:], labels[1500:]
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"digits CNN test accuracy: {accuracy:.3f}")

    x = test_x[:8]
    predicted = model(x).argmax(1)
    start = time.perf_counter()
    result = IntegratedGradients(model).attribute(x, target=predicted, n_steps=64)
    elapsed = time.perf_counter() - start
    print(f"\n{result}  ({elapsed * 1000:.0f} ms for 8 images x 64 steps)")
    print("completeness |sum(attr) - (f(x) - f(0))| per image:")
    print("  " + " ".join(f"{d:.1e}" for d in result.delta.abs().tolist()))

    first = result.attributions[0, 0]
    print(f"\nimage 0: true {int(test_y[0])}, predicted {int(predicted[0])}; IG map:")
    print(ascii_map(first))

    smooth = NoiseTunnel(Saliency(model)).attribute(
        x, target=predicted, nt_samples=16, stdevs=0.1, seed=0
    )
    agreement = torch.nn.functional.cosine_similarity(
        result.attributions.abs().flatten(1), smooth.attributions.flatten(1)
    )
    print("\n|IG| vs SmoothGrad cosine similarity per image:")
    print("  " + " ".join(f"{a:.2f}" for a in agreement.tolist()))

    same = whybox.explain(model, x, method="integrated_gradients", target=predicted, n_steps=64)
    assert torch.allclose(same.attributions, result.attributions)
    OUT.mkdir(exist_ok=True)
    torch.save(
        {"attributions": result.attributions, "delta": result.delta}, OUT / "demo_attributions.pt"
    )
    print(f"\nsaved {OUT / 'demo_attributions.pt'}")
    print(f"registered methods: {', '.join(whybox.available_methods())}")


if __name__ == "__main__":
    main()
