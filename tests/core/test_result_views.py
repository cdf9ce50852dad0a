"""The Explanation result draws and renders through whybox.viz."""

import matplotlib
import pytest
import torch

from whybox.methods import IntegratedGradients

matplotlib.use("Agg")


def _image_result():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 4))
    x = torch.rand(2, 3, 6, 6)
    return IntegratedGradients(model).attribute(x, target=1, n_steps=4)


def test_plot_returns_figure_of_the_chosen_example():
    result = _image_result()
    figure = result.plot(index=1)
    assert figure.axes, "a figure with at least one axis"
    with pytest.raises(ValueError, match="'index' parameter of Explanation.plot"):
        result.plot(index=5)


def test_tabular_html_is_self_contained_and_names_features():
    model = torch.nn.Linear(3, 2)
    x = torch.tensor([[1.0, -2.0, 3.0]])
    result = IntegratedGradients(model).attribute(x, target=0, n_steps=4)
    html = result.to_html(feature_names=["age", "<income>", "height"])
    assert "http://" not in html and "https://" not in html
    assert "&lt;income&gt;" in html and "<income>" not in html
    assert "integrated_gradients" in html
    assert result._repr_html_() == result.to_html()
