"""Reshape transforms: token layouts (a ViT's ``(N, [1 +] H*W, D)``) as CAM-ready maps."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from whybox.core.validation import check_bool, check_int, fail

__all__ = ["ReshapeTransform", "vit_reshape_transform"]

#: ``f(layer_output) -> (N, C, *spatial)``
ReshapeTransform = Callable[[Tensor], Tensor]


def vit_reshape_transform(
    height: int, width: int, *, has_cls_token: bool = True
) -> ReshapeTransform:
    """A ``reshape_transform`` turning ViT tokens into a channel-first spatial map.

    Patch tokens are taken in the row-major order a patch embedding produces
    (``conv(x).flatten(2).transpose(1, 2)``): token ``1 + r * width + c`` is grid cell
    ``(r, c)``.

    Parameters
    ----------
    height, width : int
        The patch grid (e.g. 14 x 14 for a 224-pixel ViT-B/16).
    has_cls_token : bool
        Whether the first token is a class token (dropped: it has no position).

    Returns
    -------
    callable
        ``f(tokens (N, [1 +] height * width, D)) -> (N, D, height, width)``.
    """
    owner = "vit_reshape_transform"
    check_int(owner, "height", height, minimum=1)
    check_int(owner, "width", width, minimum=1)
    check_bool(owner, "has_cls_token", has_cls_token)
    skip = int(has_cls_token)
    expected = height * width + skip

    def transform(tokens: Tensor) -> Tensor:
        if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[1] != expected:
            fail(
                owner,
                "height",
                f"such that the layer has {expected} tokens, i.e. a layer output of shape "
                f"(N, {expected}, D) for a {height} x {width} grid"
                + (" plus a class token" if skip else ""),
                tokens,
            )
        grid = tokens[:, skip:, :].reshape(tokens.shape[0], height, width, tokens.shape[2])
        return grid.permute(0, 3, 1, 2)

    return transform
