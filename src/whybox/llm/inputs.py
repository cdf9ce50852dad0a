"""Interpretable inputs: what a prompt's features are, and how to perturb them.

An interpretable input maps a binary *interpretable* row over its ``M`` features (1 = the
feature is present, anything else = replaced by its baseline) to what the model consumes:
token ids (:class:`TextTokenInput`), a filled-in template string
(:class:`TextTemplateInput`), or a processed image (:class:`ImageMaskInput`). The classes
keep Captum 0.9's constructors, attributes and one-row methods (``to_tensor``,
``to_model_input``, ``format_attr``), and add :meth:`InterpretableInput.to_model_inputs`,
which builds the model inputs of ``K`` perturbations at once (vectorised for token
inputs), so the attribution engine can batch them.

Random baselines (:class:`ProductBaselines`, or any callable) are drawn once per
perturbation, in order, as Captum draws them once per forward pass.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "InterpretableInput",
    "TextTemplateInput",
    "TextTokenInput",
    "ImageMaskInput",
    "ProductBaselines",
]


def _scatter_by_mask(itp_attr: Tensor, mask: Tensor) -> Tensor:
    """Give every raw element the attribution of its interpretable feature.

    Parameters
    ----------
    itp_attr : Tensor, shape ``(*out, M)``
        Attributions of the ``M`` interpretable features.
    mask : Tensor, shape ``(*raw)`` long
        Interpretable feature index ``0..M-1`` of each raw element.

    Returns
    -------
    Tensor, shape ``(*out, *raw)``
    """
    out = itp_attr.shape[:-1]
    flat = itp_attr.reshape(-1, itp_attr.shape[-1])  # (B, M)
    gathered = flat[:, mask.reshape(-1).long().to(itp_attr.device)]  # (B, D)
    return gathered.reshape(*out, *mask.shape)


class InterpretableInput(ABC):
    """A model input with interpretable features (Captum's ``InterpretableInput``).

    Attributes
    ----------
    n_itp_features : int
        Number ``M`` of interpretable features.
    values : list of str
        A label per feature (plots and result tokens).
    """

    n_itp_features: int
    values: list[str]

    @abstractmethod
    def to_tensor(self) -> Tensor:
        """The interpretable representation of the unperturbed input: ``(1, M)`` ones."""

    @abstractmethod
    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> Any:
        """The model input for one interpretable row.

        Parameters
        ----------
        perturbed_tensor : Tensor, shape ``(1, M)``, optional
            Entries equal to 1 keep a feature; any other value puts its baseline in.
            ``None``: the unperturbed input.

        Returns
        -------
        Any
            What the model consumes (token ids ``(1, L)``, a string, or a processor's
            output).
        """

    def to_model_inputs(self, keep: Tensor) -> list[Any] | Tensor:
        """Model inputs of ``K`` perturbations at once.

        Parameters
        ----------
        keep : Tensor, shape ``(K, M)`` bool
            Which features each perturbation keeps.

        Returns
        -------
        list or Tensor
            One model input per row (as :meth:`to_model_input` returns it), in order, so
            random baselines are drawn once per perturbation; token inputs return one
            ``(K, L)`` id tensor instead.
        """
        return [self.to_model_input(row.unsqueeze(0).long()) for row in keep]

    @property
    def random_baselines(self) -> bool:
        """Whether each perturbation draws its baselines at random (then perturbations
        are never de-duplicated: every one gets its own draw, in order)."""
        return False

    def format_attr(self, itp_attr: Tensor) -> Tensor:
        """Attributions of the interpretable features ``(*out, M)`` -> the raw features
        this input reports (identity unless features group raw elements)."""
        return itp_attr


class ProductBaselines:
    """Random baselines from the Cartesian product of each feature's options.

    Each call draws one option per feature with Python's ``random.choice``, so
    ``random.seed`` makes runs reproducible (and equal to Captum's).

    Parameters
    ----------
    baseline_values : list of lists, or dict
        The options of each feature. A dict maps a feature name -- or a tuple of names
        whose baselines go together -- to its options (tuples of values for a tuple key).
    """

    def __init__(
        self,
        baseline_values: list[list[Any]] | dict[str | tuple[str, ...], list[Any]],
    ) -> None:
        if isinstance(baseline_values, dict):
            self.dict_keys: list[Any] = list(baseline_values)
            baseline_values = [baseline_values[key] for key in self.dict_keys]
        else:
            self.dict_keys = []
        self.baseline_values = baseline_values

    def sample(self) -> list[Any] | dict[str, Any]:
        """One draw: a list of values, or a dict by feature name (tuple keys unpacked)."""
        drawn = [random.choice(options) for options in self.baseline_values]
        if not self.dict_keys:
            return drawn
        named: dict[str, Any] = {}
        for key, value in zip(self.dict_keys, drawn):
            if isinstance(key, tuple):
                named.update(zip(key, value))
            else:
                named[key] = value
        return named

    def __call__(self) -> list[Any] | dict[str, Any]:
        return self.sample()


class TextTemplateInput(InterpretableInput):
    """Text whose features are the values filled into a template.

    Parameters
    ----------
    template : str or callable
        A ``str.format`` template (``"{} feels {} right now"`` or with names), or a
        function of the values returning the prompt.
    values : list of str or dict of str
        The segments; a dict fills named fields.
    baselines : list / dict of str, callable, or None
        What a removed segment becomes (``None``: the empty string). A callable (e.g.
        :class:`ProductBaselines`) is drawn once per perturbation.
    mask : list / dict of int, optional
        Segments sharing an id form one feature (perturbed together).

    Examples
    --------
    >>> inp = TextTemplateInput("{} feels {} right now", ["He", "sad"], ["It", "fine"])
    >>> inp.to_model_input(torch.tensor([[0, 1]]))
    'It feels sad right now'
    """

    def __init__(
        self,
        template: str | Callable[..., str],
        values: list[str] | dict[str, str],
        baselines: list[str] | dict[str, str] | Callable[[], Any] | None = None,
        mask: list[int] | dict[str, int] | None = None,
    ) -> None:
        if isinstance(values, dict):
            self.dict_keys = list(values)
            values = [values[key] for key in self.dict_keys]
        elif isinstance(values, list):
            self.dict_keys = []
        else:
            raise TypeError(
                f"TextTemplateInput: 'values' must be a list or a dict. Got {type(values)}."
            )
        self.values = values
        self.n_features = len(values)
        if baselines is None:
            baselines = [""] * len(values)
        elif not callable(baselines):
            baselines = self._as_list(baselines, "baselines")
        self.baselines = baselines
        self.mask = mask
        if mask is None:
            self.n_itp_features = self.n_features
        else:
            ids = self._as_list(mask, "mask")
            # Captum numbers mask ids in Python's set order; keeping it makes seeded
            # sampling methods give Captum's numbers
            index = {mask_id: i for i, mask_id in enumerate(set(ids))}
            self.formatted_mask = [index[mask_id] for mask_id in ids]
            self.n_itp_features = len(index)
        self.template = template
        if isinstance(template, str):
            self.format_fn: Callable[..., str] = template.format
        elif callable(template):
            self.format_fn = template
        else:
            raise TypeError(
                f"TextTemplateInput: 'template' must be a str or a callable. Got {type(template)}."
            )

    def _as_list(self, given: Any, name: str) -> list[Any]:
        """A list- or dict-form argument as a list in the values' order."""
        if self.dict_keys:
            if not isinstance(given, Mapping):
                raise TypeError(
                    f"TextTemplateInput: 'values' is a dict, so '{name}' must be a dict "
                    f"(or a callable returning one for baselines). Got {type(given)}."
                )
            return [given[key] for key in self.dict_keys]
        if not isinstance(given, list):
            raise TypeError(
                f"TextTemplateInput: 'values' is a list, so '{name}' must be a list "
                f"(or a callable returning one for baselines). Got {type(given)}."
            )
        return given

    @property
    def random_baselines(self) -> bool:
        return callable(self.baselines)

    def draw_baselines(self) -> list[str]:
        """The baselines of one perturbation (a fresh draw when they are random)."""
        if not callable(self.baselines):
            return self.baselines
        return self._as_list(self.baselines(), "baselines")

    def to_tensor(self) -> Tensor:
        """``(1, M)`` float ones."""
        return torch.ones(1, self.n_itp_features)

    def _fill(self, values: Sequence[str]) -> str:
        if self.dict_keys:
            return self.format_fn(**dict(zip(self.dict_keys, values)))
        return self.format_fn(*values)

    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> str:
        """The prompt string; absent segments take their baseline (random baselines are
        drawn on every call with a ``perturbed_tensor``, even if it keeps everything)."""
        if perturbed_tensor is None:
            return self._fill(self.values)
        baselines = self.draw_baselines()
        row = perturbed_tensor[0]
        filled = list(self.values)
        for i in range(self.n_features):
            feature = self.formatted_mask[i] if self.mask is not None else i
            if row[feature] != 1:
                filled[i] = baselines[i]
        return self._fill(filled)

    def format_attr(self, itp_attr: Tensor) -> Tensor:
        """``(*out, M)`` -> ``(*out, n_features)``: each segment gets its group's value."""
        if self.mask is None:
            return itp_attr
        return _scatter_by_mask(itp_attr, torch.tensor(self.formatted_mask))


class TextTokenInput(InterpretableInput):
    """Text whose features are its tokens.

    Parameters
    ----------
    text : str
        The prompt.
    tokenizer : tokenizer
        A Hugging Face style tokenizer (``encode``, ``convert_ids_to_tokens``, ...).
    baselines : int or str
        The token id (or token) an absent token becomes. Default 0.
    skip_tokens : list of int or list of str, optional
        Tokens that are not features (e.g. ``["<bos>"]``): never perturbed.

    Attributes
    ----------
    inp_tensor : Tensor, shape ``(1, L)``
        The prompt's token ids.
    itp_tensor : Tensor, shape ``(1, M)``
        The ids of the feature tokens.
    itp_mask : Tensor ``(1, L)`` bool, or None
        Which positions are features (``None``: all).
    """

    def __init__(
        self,
        text: str,
        tokenizer: Any,
        baselines: int | str = 0,
        skip_tokens: list[int] | list[str] | None = None,
    ) -> None:
        ids = tokenizer.encode(text, return_tensors="pt")
        self.text = text
        self.inp_tensor = ids
        self.itp_tensor = ids
        self.itp_mask: Tensor | None = None
        if skip_tokens:
            if isinstance(skip_tokens[0], str):
                skip_tokens = list(tokenizer.convert_tokens_to_ids(list(skip_tokens)))
            skipped = torch.tensor(sorted(set(skip_tokens)), dtype=ids.dtype)
            self.itp_mask = ~torch.isin(ids, skipped)
            self.itp_tensor = ids[self.itp_mask].unsqueeze(0)
        self.skip_tokens = skip_tokens
        self.tokenizer = tokenizer
        self.values = tokenizer.convert_ids_to_tokens(self.itp_tensor[0].tolist())
        self.n_itp_features = len(self.values)
        self.baselines = (
            baselines if type(baselines) is int else tokenizer.convert_tokens_to_ids([baselines])[0]
        )

    def to_tensor(self) -> Tensor:
        """``(1, M)`` ones (long, like the ids)."""
        return torch.ones_like(self.itp_tensor)

    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> Tensor:
        """Token ids ``(K, L)`` for ``K`` interpretable rows ``(K, M)`` (entries != 1 are
        replaced by the baseline id); ``None``: the prompt's ids ``(1, L)``."""
        if perturbed_tensor is None:
            return self.inp_tensor
        return self._ids(perturbed_tensor == 1)

    def to_model_inputs(self, keep: Tensor) -> Tensor:
        """``(K, L)`` token ids for ``(K, M)`` keep flags, in one vectorised step."""
        return self._ids(keep.bool())

    def _ids(self, keep: Tensor) -> Tensor:
        device = keep.device
        itp = self.itp_tensor.to(device).expand(keep.shape[0], -1)
        perturbed = torch.where(keep, itp, torch.full_like(itp, self.baselines))
        if self.itp_mask is None:
            return perturbed
        ids = self.inp_tensor.to(device).expand(keep.shape[0], -1).clone()
        ids[self.itp_mask.to(device).expand_as(ids)] = perturbed.reshape(-1)
        return ids


class ImageMaskInput(InterpretableInput):
    """An image whose features are pixel segments (for multimodal models).

    Parameters
    ----------
    image : PIL.Image.Image
        The image.
    mask : Tensor ``(H, W)`` int, optional
        A segment id per pixel (``None``: the whole image is one feature).
    mask_list : list of Tensor ``(H, W)`` bool, optional
        One binary mask per feature (features may overlap); takes precedence over
        ``mask``.
    baseline : tuple of 3 ints
        RGB value of absent pixels. Default white.
    processor_fn : callable
        Image -> model inputs (e.g. a multimodal processor with the text prompt).
    """

    def __init__(
        self,
        image: Any,
        mask: Tensor | None = None,
        mask_list: list[Tensor] | None = None,
        baseline: tuple[int, int, int] = (255, 255, 255),
        processor_fn: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        self.image = image
        self.baseline = baseline
        self.processor_fn = processor_fn
        shape = (image.size[1], image.size[0])  # (height, width)
        if mask_list is not None:
            for i, m in enumerate(mask_list):
                if tuple(m.shape) != shape:
                    raise ValueError(
                        f"ImageMaskInput: mask_list[{i}] has shape {tuple(m.shape)}; the "
                        f"image is {shape} (height, width)."
                    )
            mask_ids: list[int] = list(range(len(mask_list)))
            mask = torch.empty(0)
        else:
            if mask is None:
                mask = torch.zeros(shape, dtype=torch.int32)
            elif tuple(mask.shape) != shape:
                raise ValueError(
                    f"ImageMaskInput: 'mask' has shape {tuple(mask.shape)}; the image is "
                    f"{shape} (height, width)."
                )
            mask_ids = torch.unique(mask).tolist()
            mask_list = []
        self.mask = mask
        self.mask_list = mask_list
        self.n_itp_features = len(mask_ids)
        self.mask_id_to_idx = {int(mid): i for i, mid in enumerate(mask_ids)}
        self.values = [f"image_feature_{mid}" for mid in mask_ids]
        self.original_model_inputs = processor_fn(image)

    def to_tensor(self) -> Tensor:
        """``(1, M)`` float ones."""
        return torch.ones(1, self.n_itp_features)

    def get_mask_list(self) -> list[Tensor]:
        """One ``(H, W)`` bool mask per feature."""
        if self.mask_list:
            return self.mask_list
        return [self.mask == mask_id for mask_id in self.mask_id_to_idx]

    def to_model_input(self, perturbed_tensor: Tensor | None = None) -> Any:
        """The processed image with absent segments painted in the baseline colour."""
        if perturbed_tensor is None:
            return self.original_model_inputs
        from PIL import Image

        pixels = np.array(self.image)
        for index, segment in enumerate(self.get_mask_list()):
            if perturbed_tensor[0][index] != 1:
                pixels[segment.bool().numpy()] = self.baseline
        return self.processor_fn(Image.fromarray(pixels.astype("uint8")))

    def format_pixel_attr(self, itp_attr: Tensor) -> Tensor:
        """``(*out, M)`` -> ``(*out, H, W)`` pixel attributions (overlapping features of a
        ``mask_list`` add up)."""
        masks = torch.stack([m.bool() for m in self.get_mask_list()]).to(itp_attr)
        return torch.einsum("...m,mhw->...hw", itp_attr, masks)

    def plot_mask_overlay(
        self, show: bool = False, border_width: int = 0, show_legends: bool = True
    ) -> Any:
        """The image with each segment tinted in its own colour (and its id).

        Returns
        -------
        None or (Figure, Axes)
            ``None`` when ``show``; otherwise the figure and axes.
        """
        from ._plots import mask_overlay

        return mask_overlay(self, show=show, border_width=border_width, legends=show_legends)
