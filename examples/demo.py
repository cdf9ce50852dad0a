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
from whybox.methods import GradCamPlusPlus, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

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


def tabular_demo() -> str:
    """KernelSHAP on a breast-cancer MLP: exact efficiency, feature names, an HTML chart."""
    from sklearn.datasets import load_breast_cancer

    from whybox.methods import KernelShap

    data = load_breast_cancer()
    features = torch.tensor(data.data, dtype=torch.float32)
    features = (features - features.mean(0)) / features.std(0)
    labels = torch.tensor(data.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = nn.functional.cross_entropy(model(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    x = features[:1]
    mean = features.mean(0, keepdim=True)
    start = time.perf_counter()
    result = KernelShap(model).attribute(x, baselines=mean, target=1, n_samples=2000, seed=0)
    elapsed = time.perf_counter() - start
    total = result.attributions.sum().item()
    gap = (model(x)[0, 1] - model(mean)[0, 1]).item()
    print(f"\nKernelSHAP on breast_cancer (30 features, 2000 coalitions, {elapsed * 1000:.0f} ms)")
    print(f"  sum of SHAP values {total:+.4f} = f(x) - f(mean) {gap:+.4f}")
    top = result.attributions[0].abs().argsort(descending=True)[:5]
    for index in top.tolist():
        print(f"  {data.feature_names[index]:<24} {result.attributions[0, index]:+.4f}")
    return result.to_html(
        feature_names=list(data.feature_names), title="KernelSHAP, breast cancer", full_page=False
    )


def main() -> None:
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
    occlusion = Occlusion(model).attribute(
        x, target=predicted, sliding_window_shapes=(1, 2, 2), strides=(1, 1, 1)
    )
    cam = GradCamPlusPlus(model, model[3]).attribute(x, target=predicted)

    def agreement(other):
        return torch.nn.functional.cosine_similarity(
            result.attributions.abs().flatten(1), other.abs().flatten(1)
        )

    print("\nagreement with |IG| (cosine) per image:")
    for name, other in [
        ("SmoothGrad", smooth.attributions),
        ("Occlusion 2x2", occlusion.attributions),
        ("Grad-CAM++", cam.attributions),
    ]:
        print(f"  {name:<14}" + " ".join(f"{a:.2f}" for a in agreement(other).tolist()))

    same = whybox.explain(model, x, method="integrated_gradients", target=predicted, n_steps=64)
    assert torch.allclose(same.attributions, result.attributions)

    OUT.mkdir(exist_ok=True)
    torch.save(
        {"attributions": result.attributions, "delta": result.delta}, OUT / "demo_attributions.pt"
    )
    sections = [tabular_demo()]
    try:
        import matplotlib

        matplotlib.use("Agg")
        sections.insert(
            0, result.to_html(index=0, title="Integrated Gradients, digit 0", full_page=False)
        )
        figure = result.plot(index=0)
        figure.savefig(OUT / "demo_ig.png")
    except ImportError:
        print("(install whybox[viz] for the image views)")
    from whybox.viz.html import page

    (OUT / "report.html").write_text(page("\n".join(sections), title="whybox demo"))
    print(f"\nwrote {OUT / 'report.html'} (self-contained, opens offline) and demo PNGs")
    print(
        f"{len(whybox.available_methods())} registered methods: {', '.join(whybox.available_methods())}"
    )


if __name__ == "__main__":
    main()
