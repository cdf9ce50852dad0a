"""Seed 001 (model understanding tutorial): IG with n_steps=200, LayerGradCam on
layer3[1].conv2 + interpolate, and the image views, with only the import changed."""

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import LinearSegmentedColormap

from _tiny_resnet import TinyResNet
from whybox.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from whybox.attr import visualization as viz

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = TinyResNet().eval()
    transformed_img = torch.rand(3, 32, 32)
    input_img = transformed_img.unsqueeze(0)
    output = torch.softmax(model(input_img), dim=1)
    _, pred_label_idx = torch.topk(output, 1)
    return model, transformed_img, input_img, pred_label_idx.squeeze_()


def test_integrated_gradients_and_views(setup):
    model, transformed_img, input_img, pred_label_idx = setup
    integrated_gradients = IntegratedGradients(model)
    attributions_ig = integrated_gradients.attribute(input_img, target=pred_label_idx, n_steps=200)
    assert attributions_ig.shape == input_img.shape
    image = np.transpose(transformed_img.squeeze().cpu().detach().numpy(), (1, 2, 0))
    figure, axis = viz.visualize_image_attr(
        None, image, method="original_image", title="Original Image"
    )
    assert axis.get_title() == "Original Image"
    default_cmap = LinearSegmentedColormap.from_list(
        "custom blue", [(0, "#ffffff"), (0.25, "#0000ff"), (1, "#0000ff")], N=256
    )
    figure, axis = viz.visualize_image_attr(
        np.transpose(attributions_ig.squeeze().cpu().detach().numpy(), (1, 2, 0)),
        image,
        method="heat_map",
        cmap=default_cmap,
        show_colorbar=True,
        sign="positive",
        title="Integrated Gradients",
    )
    assert len(figure.axes) == 2  # image + colorbar
    # completeness at 200 steps against the all-zero baseline
    _, delta = integrated_gradients.attribute(
        input_img, target=pred_label_idx, n_steps=200, return_convergence_delta=True
    )
    assert abs(delta.item()) < 1e-2


def test_layer_gradcam_interpolate_and_multiple_views(setup):
    model, transformed_img, input_img, pred_label_idx = setup
    layer_gradcam = LayerGradCam(model, model.layer3[1].conv2)
    attributions_lgc = layer_gradcam.attribute(input_img, target=pred_label_idx)
    assert attributions_lgc.shape == (1, 1, 8, 8)
    figure, _ = viz.visualize_image_attr(
        attributions_lgc[0].cpu().permute(1, 2, 0).detach().numpy(),
        sign="all",
        title="Layer 3 Block 1 Conv 2",
    )
    upsamp_attr_lgc = LayerAttribution.interpolate(attributions_lgc, input_img.shape[2:])
    assert upsamp_attr_lgc.shape == (1, 1, 32, 32)
    # nearest upsampling repeats each cell in a 4x4 block
    torch.testing.assert_close(
        upsamp_attr_lgc[0, 0, :4, :4], attributions_lgc[0, 0, 0, 0].expand(4, 4)
    )
    figure, axes = viz.visualize_image_attr_multiple(
        upsamp_attr_lgc[0].cpu().permute(1, 2, 0).detach().numpy(),
        transformed_img.permute(1, 2, 0).numpy(),
        ["original_image", "blended_heat_map", "masked_image"],
        ["all", "positive", "positive"],
        show_colorbar=True,
        titles=["Original", "Positive Attribution", "Masked"],
        fig_size=(18, 6),
    )
    assert [a.get_title() for a in np.ravel(axes)] == ["Original", "Positive Attribution", "Masked"]
