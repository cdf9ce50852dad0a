"""Feature masks: validation, feature counts, coalitions -> keep-masks.

A *feature mask* is an integer tensor (or a tuple of them, one per input) whose values
are feature ids ``0..M-1`` and which broadcasts to its input (``(batch or 1, ...)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..inputs import broadcasts_to

__all__ = [
    "validate_feature_mask",
    "num_features",
    "coalitions_to_input_masks",
]


def _as_tuple(value: Tensor | Sequence[Tensor]) -> tuple[Tensor, ...]:
    return (value,) if isinstance(value, Tensor) else tuple(value)


def validate_feature_mask(
    feature_mask: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor] | None = None,
    *,
    name: str = "feature_mask",
) -> tuple[Tensor, ...]:
    """Check that feature masks are integer tensors that broadcast to their inputs.

    Parameters
    ----------
    feature_mask : Tensor or sequence of Tensor
        One mask per input.
    inputs : Tensor or sequence of Tensor, optional
        The (batched) inputs, or shapes; when given, each mask must broadcast to its
        input and the counts must agree.
    name : str, keyword-only
        Parameter name used in error messages.

    Returns
    -------
    tuple of Tensor
        The masks (unchanged) as a tuple.
    """
    masks = _as_tuple(feature_mask)
    for i, m in enumerate(masks):
        where = f"'{name}'" if len(masks) == 1 else f"'{name}[{i}]'"
        if not isinstance(m, Tensor):
            raise ValueError(f"{where} must be a torch.Tensor. Got {type(m).__name__}.")
        if m.dtype == torch.bool or m.is_floating_point() or m.is_complex():
            raise ValueError(
                f"{where} must be an integer tensor of feature ids (e.g. torch.long). "
                f"Got dtype {m.dtype}."
            )
    if inputs is not None:
        inps = _as_tuple(inputs)
        if len(inps) != len(masks):
            raise ValueError(
                f"'{name}' must have one mask per input: got {len(masks)} mask(s) for "
                f"{len(inps)} input(s)."
            )
        for i, (m, x) in enumerate(zip(masks, inps)):
            shape = tuple(x.shape) if isinstance(x, Tensor) else tuple(x)
            if not broadcasts_to(tuple(m.shape), shape):
                where = f"'{name}'" if len(masks) == 1 else f"'{name}[{i}]'"
                raise ValueError(
                    f"{where} of shape {tuple(m.shape)} does not broadcast to the input of "
                    f"shape {shape}."
                )
    return masks


def num_features(feature_mask: Tensor | Sequence[Tensor]) -> int:
    """Number of interpretable features, ``max(feature id) + 1`` over all masks."""
    masks = validate_feature_mask(feature_mask)
    maxima = [int(m.max()) for m in masks if m.numel()]
    return max(maxima) + 1 if maxima else 0


def coalitions_to_input_masks(
    coalitions: Tensor, feature_mask: Tensor | Sequence[Tensor]
) -> tuple[Tensor, ...]:
    """Expand coalitions over interpretable features to element-wise keep-masks.

    Parameters
    ----------
    coalitions : Tensor, shape (k, M), bool or 0/1
    feature_mask : Tensor or sequence of Tensor
        Ids in ``0..M-1``, shapes ``S_i``.

    Returns
    -------
    tuple of Tensor, shapes (k, *S_i), bool
        ``True`` where the original input is kept. Combine as
        ``keep * x + ~keep * baseline`` (with ``S_i`` broadcasting to the input).
    """
    coal = torch.as_tensor(coalitions).bool()
    if coal.dim() == 1:
        coal = coal.unsqueeze(0)
    masks = validate_feature_mask(feature_mask)
    return tuple(coal[:, m.to(coal.device).long()] for m in masks)
