"""Captum Insights' feature classes: how each model input is transformed and drawn.

Same names, signatures and attributes as ``captum.insights.attr_vis.features``: a
feature carries its ``name``, ``baseline_transforms`` and ``input_transforms`` (as lists)
and a ``visualization_transform``; :meth:`BaseFeature.visualization_type` says how the app
draws it. The web app reads these attributes (see :func:`whybox.app.workspace.as_feature`).
``visualize`` returns Captum's ``FeatureOutput`` for code that calls it directly.
"""

from __future__ import annotations

import base64
from collections import namedtuple
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "BaseFeature",
    "ImageFeature",
    "TextFeature",
    "GeneralFeature",
    "EmptyFeature",
    "FeatureOutput",
]

FeatureOutput = namedtuple("FeatureOutput", "name base modified type contribution")

Transforms = Callable[..., Any] | list[Callable[..., Any]] | None


def _as_list(transforms: Transforms) -> list[Callable[..., Any]]:
    """Captum's convention: ``None`` -> ``[]``, one callable -> ``[callable]``."""
    if transforms is None:
        return []
    if callable(transforms):
        return [transforms]
    return list(transforms)


def _scaled(values: Tensor, norm: Tensor) -> list[float]:
    """``values / norm * 100`` as floats (all zeros when the norm is 0)."""
    if float(norm) == 0.0:
        return [0.0] * values.numel()
    return (values / norm * 100).reshape(-1).tolist()


def _png_base64(figure: Any) -> str:
    from whybox.viz.html import figure_to_bytes

    return base64.b64encode(figure_to_bytes(figure)).decode("ascii")


class BaseFeature:
    """A model input as Insights shows it; subclasses say how (image, text, general).

    Parameters
    ----------
    name : str
        The label of the feature, e.g. ``"Photo"``.
    baseline_transforms : callable or list of callable, optional
        Each maps the transformed input to a baseline (only the first is used).
    input_transforms : callable or list of callable, optional
        Applied in order to an example (without its batch dimension) to give the model's
        input, e.g. normalisation.
    visualization_transform : callable, optional
        Maps the raw example (before ``input_transforms``) to what is drawn.
    """

    def __init__(
        self,
        name: str,
        baseline_transforms: Transforms,
        input_transforms: Transforms,
        visualization_transform: Callable[..., Any] | None,
    ) -> None:
        self.name = name
        self.baseline_transforms = _as_list(baseline_transforms)
        self.input_transforms = _as_list(input_transforms)
        self.visualization_transform = visualization_transform

    @staticmethod
    def visualization_type() -> str:
        """``"image"``, ``"text"``, ``"general"`` or ``"empty"``."""
        raise NotImplementedError

    def visualize(
        self, attribution: Tensor, data: Tensor, contribution_frac: float
    ) -> FeatureOutput:
        """Captum's ``FeatureOutput`` for one example's attribution and raw data."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ImageFeature(BaseFeature):
    """An image input, ``(N, C, H, W)`` (``C`` = 1 for grey, 3 for RGB).

    Parameters
    ----------
    name, baseline_transforms, input_transforms, visualization_transform
        As for :class:`BaseFeature`; normalisation usually goes in ``input_transforms``.
    """

    def __init__(
        self,
        name: str,
        baseline_transforms: Transforms,
        input_transforms: Transforms,
        visualization_transform: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(
            name,
            baseline_transforms=baseline_transforms,
            input_transforms=input_transforms,
            visualization_transform=visualization_transform,
        )

    @staticmethod
    def visualization_type() -> str:
        """``"image"``."""
        return "image"

    def visualize(
        self, attribution: Tensor, data: Tensor, contribution_frac: float
    ) -> FeatureOutput:
        """The input and its absolute-value heat map, each a base64 PNG."""
        from whybox.app.render import to_pixels
        from whybox.viz import render_image_attr

        if self.visualization_transform is not None:
            data = self.visualization_transform(data)
        pixels = to_pixels(data)
        grid = attribution.detach().double().reshape(-1, *attribution.shape[-2:]).sum(0)
        original, _ = render_image_attr(None, pixels, method="original_image")
        heat, _ = render_image_attr(grid.cpu().numpy(), pixels, method="heat_map")
        return FeatureOutput(
            name=self.name,
            base=_png_base64(original),
            modified=_png_base64(heat),
            type=self.visualization_type(),
            contribution=contribution_frac,
        )


class TextFeature(BaseFeature):
    """A text input; ``visualization_transform`` turns the raw input (token ids) into the
    list of tokens to show.

    Parameters
    ----------
    name, baseline_transforms, input_transforms, visualization_transform
        As for :class:`BaseFeature`; ``input_transforms`` often embeds the token ids.
    """

    def __init__(
        self,
        name: str,
        baseline_transforms: Transforms,
        input_transforms: Transforms,
        visualization_transform: Callable[..., Any],
    ) -> None:
        super().__init__(
            name,
            baseline_transforms=baseline_transforms,
            input_transforms=input_transforms,
            visualization_transform=visualization_transform,
        )

    @staticmethod
    def visualization_type() -> str:
        """``"text"``."""
        return "text"

    def visualize(
        self, attribution: Tensor, data: Tensor, contribution_frac: float
    ) -> FeatureOutput:
        """The tokens and one value per token, scaled to at most 100 in magnitude."""
        text = self.visualization_transform(data) if self.visualization_transform else data
        values = attribution.detach().double().squeeze(0)
        if values.dim() > 1:
            values = values.sum(dim=tuple(range(1, values.dim())))
        return FeatureOutput(
            name=self.name,
            base=text,
            modified=_scaled(values, values.abs().max() if values.numel() else torch.tensor(0.0)),
            type=self.visualization_type(),
            contribution=contribution_frac,
        )


class GeneralFeature(BaseFeature):
    """A vector input ``(N, C)``: one named value per column.

    Parameters
    ----------
    name : str
        The label of the feature.
    categories : list of str
        One name per column.
    """

    def __init__(self, name: str, categories: list[str]) -> None:
        super().__init__(
            name, baseline_transforms=None, input_transforms=None, visualization_transform=None
        )
        self.categories = categories

    @staticmethod
    def visualization_type() -> str:
        """``"general"``."""
        return "general"

    def visualize(
        self, attribution: Tensor, data: Tensor, contribution_frac: float
    ) -> FeatureOutput:
        """``"name: value"`` per column, and values scaled by their L2 norm (x 100)."""
        values = attribution.detach().double().reshape(-1)
        raw = data.detach().double().reshape(-1).tolist()
        return FeatureOutput(
            name=self.name,
            base=[f"{c}: {d:.2f}" for c, d in zip(self.categories, raw)],
            modified=_scaled(values, values.norm()),
            type=self.visualization_type(),
            contribution=contribution_frac,
        )


class EmptyFeature(BaseFeature):
    """An input passed to the model but not drawn."""

    def __init__(
        self,
        name: str = "empty",
        baseline_transforms: Transforms = None,
        input_transforms: Transforms = None,
        visualization_transform: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(
            name,
            baseline_transforms=baseline_transforms,
            input_transforms=input_transforms,
            visualization_transform=visualization_transform,
        )

    @staticmethod
    def visualization_type() -> str:
        """``"empty"``."""
        return "empty"

    def visualize(
        self, attribution: Tensor, data: Tensor, contribution_frac: float
    ) -> FeatureOutput:
        """Nothing to draw."""
        return FeatureOutput(
            name=self.name,
            base=None,
            modified=None,
            type=self.visualization_type(),
            contribution=contribution_frac,
        )
