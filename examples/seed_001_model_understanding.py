"""Seed 001 replayed: the "model understanding" tutorial (feature, layer and neuron views).

The seed explains a pretrained ResNet on a cat photo with Integrated Gradients
(``n_steps=200``), Occlusion (``strides=(3, 8, 8)``, ``sliding_window_shapes=(3, 15, 15)``),
``LayerGradCam`` on ``model.layer3[1].conv2`` with ``LayerAttribution.interpolate``, the
``visualize_image_attr`` / ``visualize_image_attr_multiple`` views, and Captum Insights.
Here the same calls run on whybox (only the imports change) with a small ResNet of the same
layout (``layer3[1].conv2`` exists) trained for a few seconds on synthetic shapes (a
square, a disk, a cross).

Insights runs when ``whybox.insights`` is installed (``--serve`` opens it on 127.0.0.1);
otherwise that step prints a note and is skipped.

Usage: ``python examples/seed_001_model_understanding.py [--out DIR] [--smoke] [--serve]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from torch import nn  # noqa: E402

from whybox.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion  # noqa: E402
from whybox.attr import visualization as viz  # noqa: E402

CLASSES = ["square", "disk", "cross"]
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


# -- a small ResNet with torchvision's layer names -------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, channels_in: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or channels_in != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class SmallResNet(nn.Module):
    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.layer3 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def shape_image(label: int, generator: torch.Generator) -> torch.Tensor:
    """A 3x32x32 image in [0, 1]: one coloured square, disk or cross on a noisy background."""
    image = 0.15 + 0.1 * torch.rand(3, 32, 32, generator=generator)
    cy, cx = (int(v) for v in torch.randint(10, 22, (2,), generator=generator))
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    if label == 0:
        region = ((yy - cy).abs() <= 6) & ((xx - cx).abs() <= 6)
    elif label == 1:
        region = (yy - cy) ** 2 + (xx - cx) ** 2 <= 49
    else:
        region = (((yy - cy).abs() <= 1) & ((xx - cx).abs() <= 7)) | (
            ((xx - cx).abs() <= 1) & ((yy - cy).abs() <= 7)
        )
    colour = 0.6 + 0.4 * torch.rand(3, 1, generator=generator)
    image[:, region] = colour
    return image


def transform_normalize(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN)[:, None, None]
    std = torch.tensor(STD)[:, None, None]
    return (image - mean) / std


def train(steps: int) -> nn.Module:
    torch.manual_seed(0)
    model = SmallResNet()
    generator = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        labels = torch.randint(0, 3, (32,), generator=generator)
        batch = torch.stack([transform_normalize(shape_image(int(c), generator)) for c in labels])
        loss = F.cross_entropy(model(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def save(result: tuple, path: Path) -> None:
    figure = result[0]
    figure.savefig(path, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/examples/seed_001", help="folder for the views")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (CI, a few seconds)")
    parser.add_argument("--serve", action="store_true", help="open Captum-style Insights")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = train(8 if args.smoke else 250)
    transformed_img = shape_image(1, torch.Generator().manual_seed(7))  # a disk
    input_img = transform_normalize(transformed_img).unsqueeze(0)  # the model wants a batch

    output = F.softmax(model(input_img), dim=1)
    prediction_score, pred_label_idx = torch.topk(output, 1)
    pred_label_idx.squeeze_()
    predicted_label = CLASSES[pred_label_idx.item()]
    print("Predicted:", predicted_label, "(", prediction_score.squeeze().item(), ")")
    image_hwc = np.transpose(transformed_img.numpy(), (1, 2, 0))

    # feature attribution with Integrated Gradients
    integrated_gradients = IntegratedGradients(model)
    attributions_ig = integrated_gradients.attribute(
        input_img, target=pred_label_idx, n_steps=20 if args.smoke else 200
    )
    save(
        viz.visualize_image_attr(
            None, image_hwc, method="original_image", title="Original Image", use_pyplot=False
        ),
        out / "original.png",
    )
    default_cmap = LinearSegmentedColormap.from_list(
        "custom blue", [(0, "#ffffff"), (0.25, "#0000ff"), (1, "#0000ff")], N=256
    )
    save(
        viz.visualize_image_attr(
            np.transpose(attributions_ig.squeeze().cpu().detach().numpy(), (1, 2, 0)),
            image_hwc,
            method="heat_map",
            cmap=default_cmap,
            show_colorbar=True,
            sign="positive",
            title="Integrated Gradients",
            use_pyplot=False,
        ),
        out / "integrated_gradients.png",
    )

    # feature attribution with Occlusion
    occlusion = Occlusion(model)
    attributions_occ = occlusion.attribute(
        input_img,
        target=pred_label_idx,
        strides=(3, 8, 8),
        sliding_window_shapes=(3, 15, 15),
        baselines=0,
    )
    save(
        viz.visualize_image_attr_multiple(
            np.transpose(attributions_occ.squeeze().cpu().detach().numpy(), (1, 2, 0)),
            image_hwc,
            ["original_image", "heat_map", "heat_map", "masked_image"],
            ["all", "positive", "negative", "positive"],
            show_colorbar=True,
            titles=["Original", "Positive Attribution", "Negative Attribution", "Masked"],
            fig_size=(18, 6),
            use_pyplot=False,
        ),
        out / "occlusion.png",
    )

    # layer attribution with Layer GradCAM, then upsampled to the input
    layer_gradcam = LayerGradCam(model, model.layer3[1].conv2)
    attributions_lgc = layer_gradcam.attribute(input_img, target=pred_label_idx)
    save(
        viz.visualize_image_attr(
            attributions_lgc[0].cpu().permute(1, 2, 0).detach().numpy(),
            sign="all",
            title="Layer 3 Block 1 Conv 2",
            use_pyplot=False,
        ),
        out / "layer_gradcam.png",
    )
    upsamp_attr_lgc = LayerAttribution.interpolate(attributions_lgc, input_img.shape[2:])
    print(attributions_lgc.shape, upsamp_attr_lgc.shape, input_img.shape)
    save(
        viz.visualize_image_attr_multiple(
            upsamp_attr_lgc[0].cpu().permute(1, 2, 0).detach().numpy(),
            transformed_img.permute(1, 2, 0).numpy(),
            ["original_image", "blended_heat_map", "masked_image"],
            ["all", "positive", "positive"],
            show_colorbar=True,
            titles=["Original", "Positive Attribution", "Masked"],
            fig_size=(18, 6),
            use_pyplot=False,
        ),
        out / "layer_gradcam_upsampled.png",
    )

    insights(model, args)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")


def insights(model: nn.Module, args: argparse.Namespace) -> None:
    """Captum Insights' set-up from the seed, when whybox.insights exists."""
    try:
        from whybox.insights import AttributionVisualizer, Batch
        from whybox.insights.attr_vis.features import ImageFeature
    except ImportError as error:
        print(f"note: Insights skipped ({error}); it needs whybox.insights")
        return

    def baseline_func(input):
        return input * 0

    generator = torch.Generator().manual_seed(11)
    images = [shape_image(c, generator) for c in (0, 1, 2)]
    input_imgs = torch.stack(images)
    visualizer = AttributionVisualizer(
        models=[model],
        score_func=lambda o: torch.nn.functional.softmax(o, 1),
        classes=CLASSES,
        features=[
            ImageFeature(
                "Photo",
                baseline_transforms=[baseline_func],
                input_transforms=[transform_normalize],
            )
        ],
        dataset=[Batch(input_imgs, labels=[0, 1, 2])],
    )
    if args.serve:
        visualizer.serve(blocking=True, debug=False)  # Ctrl-C stops it
    else:
        print("Insights: visualizer ready (rerun with --serve to open it in a browser)")


if __name__ == "__main__":
    main()
