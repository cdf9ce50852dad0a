"""Channels-last memory layout for convolutional models on CPU.

The values a model computes do not depend on how its tensors are laid out in memory, but
the speed does: on CPU, ``Conv2d`` and ``MaxPool2d`` run several times faster on
channels-last (``NHWC``) tensors than on ``NCHW`` ones (measured on a 3x32x32 CNN: one
forward 4x faster on one thread). Every 4-D floating input of a model with a ``Conv2d``
is therefore handed to it channels-last; the activations, outputs and gradients that
follow are the same tensors (logically), up to the rounding of a different kernel.

A model whose code depends on the layout (``x.view(...)`` of an activation raises on a
non-contiguous tensor) is run again with the inputs as given, and from then on always so:
never wrong, at worst one failed forward slower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["ChannelsLast", "to_channels_last"]

T = TypeVar("T")


def to_channels_last(values: Sequence[Any]) -> tuple[Any, ...]:
    """``values`` with each 4-D floating CPU tensor in channels-last layout (the others,
    and tensors already channels-last, as they are)."""
    out = []
    for value in values:
        if (
            isinstance(value, Tensor)
            and value.dim() == 4
            and value.is_floating_point()
            and value.device.type == "cpu"
            and not value.is_contiguous(memory_format=torch.channels_last)
        ):
            value = value.contiguous(memory_format=torch.channels_last)
        out.append(value)
    return tuple(out)


class ChannelsLast:
    """Runs a model's passes on channels-last inputs where that is safe and faster.

    Parameters
    ----------
    model : nn.Module
        Enabled when it has an ``nn.Conv2d`` and its parameters are on the CPU.

    Attributes
    ----------
    enabled : bool
        Whether the next :meth:`run` tries channels-last inputs (cleared for good after a
        failure with them).
    """

    def __init__(self, model: nn.Module) -> None:
        params = list(model.parameters())
        on_cpu = bool(params) and all(p.device.type == "cpu" for p in params)
        self.enabled = on_cpu and any(isinstance(m, nn.Conv2d) for m in model.modules())

    def run(self, step: Callable[[tuple[Any, ...]], T], values: Sequence[Any]) -> T:
        """``step(values)``, with ``values`` channels-last when enabled; a step that fails
        that way is run again on ``values`` as they are (an error then is the model's)."""
        values = tuple(values)
        if self.enabled:
            converted = to_channels_last(values)
            if any(a is not b for a, b in zip(converted, values)):
                try:
                    return step(converted)
                except Exception:  # noqa: BLE001 - layout-dependent model code: as given
                    self.enabled = False
        return step(values)
