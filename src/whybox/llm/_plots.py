"""matplotlib views of LLM attribution results (imported only when a plot is drawn)."""

from __future__ import annotations

from textwrap import shorten
from typing import Any

import numpy as np

__all__ = ["token_heatmap", "sequence_bars", "image_heatmap", "mask_overlay"]


def _cmap() -> Any:
    # red = against, white = 0, green = for: the convention of Captum's plots
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])


def _labels(tokens: list[str]) -> list[str]:
    return [shorten(repr(t)[1:-1], width=50, placeholder="...") for t in tokens]


def _finish(fig: Any, ax: Any, show: bool) -> Any:
    if show:
        import matplotlib.pyplot as plt

        plt.show()
        return None
    return fig, ax


def _figure() -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    return plt.subplots()


def token_heatmap(result: Any, *, show: bool) -> Any:
    """Output tokens (rows) x input tokens (columns), values written in the cells."""
    import matplotlib.pyplot as plt

    data = result.token_attr.detach().float().cpu().numpy()
    bound = float(np.abs(data).max()) if data.size else 1.0
    fig, ax = _figure()
    ax.grid(False)
    fig.set_size_inches(max(data.shape[1] * 1.3, 6.4), max(data.shape[0] / 2.5, 4.8))
    image = ax.imshow(data, vmin=-bound, vmax=bound, cmap=_cmap(), aspect="auto")
    fig.set_facecolor("white")
    bar = fig.colorbar(image, ax=ax)
    bar.ax.set_ylabel("Token Attribution", rotation=-90, va="bottom")
    ax.set_xticks(np.arange(data.shape[1]), labels=_labels(result.input_tokens))
    ax.set_yticks(np.arange(data.shape[0]), labels=[repr(t)[1:-1] for t in result.output_tokens])
    ax.tick_params(top=True, bottom=False, labeltop=True, labelbottom=False)
    plt.setp(ax.get_xticklabels(), rotation=-30, ha="right", rotation_mode="anchor")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            value = data[i, j]
            color = "black" if 0.2 < image.norm(value) < 0.8 else "white"
            ax.text(j, i, f"{value:.4f}", ha="center", va="center", color=color)
    return _finish(fig, ax, show)


def sequence_bars(result: Any, *, show: bool) -> Any:
    """Bars of the sequence attribution per input token."""
    import matplotlib.pyplot as plt

    data = result.seq_attr.detach().float().cpu().numpy()
    fig, ax = _figure()
    fig.set_size_inches(max(data.shape[0] / 2, 6.4), max(data.shape[0] / 4, 4.8))
    positions = range(data.shape[0])
    ax.set_xticks(positions, labels=_labels(result.input_tokens))
    ax.tick_params(top=True, bottom=False, labeltop=True, labelbottom=False)
    plt.setp(ax.get_xticklabels(), rotation=-30, ha="right", rotation_mode="anchor")
    fig.set_facecolor("white")
    ax.bar(positions, np.maximum(data, 0), align="center", color="#4772b3")
    ax.bar(positions, np.minimum(data, 0), align="center", color="#d0365b")
    ax.set_ylabel("Sequence Attribution", rotation=90, va="bottom")
    return _finish(fig, ax, show)


def _border(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its outside (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = False
        shrunk[:, 0] = shrunk[:, -1] = False
        inner = shrunk
    return mask & ~inner


def _draw_segments(
    ax: Any, masks: list[np.ndarray], colors: list, labels: list, width: int, legends: bool
) -> None:
    for mask, color, label in zip(masks, colors, labels):
        if not mask.any():
            continue
        if width > 0:
            edge = _border(mask, width)
            layer = np.zeros(mask.shape + (4,))
            layer[edge] = color
            ax.imshow(layer)
        if legends:
            rows, cols = np.nonzero(mask)
            ax.text(
                cols.mean(),
                rows.mean(),
                str(label),
                ha="center",
                va="center",
                fontsize=9,
                color="black",
                bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "edgecolor": "none"},
            )


def image_heatmap(
    result: Any, *, show: bool, target_token_pos: Any, border_width: int, legends: bool
) -> Any:
    """The grey image under the segments' attribution (red / white / green)."""
    from .inputs import ImageMaskInput

    inp = result.inp
    if not isinstance(inp, ImageMaskInput):
        raise ValueError("plot_image_heatmap is only available for an ImageMaskInput.")
    if target_token_pos is None:
        attr = result.seq_attr
    else:
        if result.token_attr is None:
            raise ValueError(
                "token_attr is None (no per-token attribution); use target_token_pos=None."
            )
        if isinstance(target_token_pos, int):
            attr = result.token_attr[target_token_pos]
        else:
            start, stop = target_token_pos
            attr = result.token_attr[start:stop].sum(dim=0)
    attr = attr.detach().float().cpu()
    pixels = inp.format_pixel_attr(attr.unsqueeze(0))[0].numpy()
    bound = float(np.abs(pixels).max()) or 1.0
    fig, ax = _figure()
    ax.imshow(np.array(inp.image).mean(axis=2), cmap="gray")
    heat = ax.imshow(pixels, vmin=-bound, vmax=bound, cmap=_cmap(), alpha=0.8)
    fig.colorbar(heat, ax=ax).ax.set_ylabel("Attribution", rotation=-90, va="bottom")
    masks = [m.numpy().astype(bool) for m in inp.get_mask_list()]
    cmap = _cmap()
    colors = []
    for value in attr.tolist():
        rgba = np.array(cmap((value / bound + 1) / 2))
        colors.append([*(rgba[:3] * 0.7), 0.8])  # a darker edge of the segment's colour
    _draw_segments(ax, masks, colors, list(inp.mask_id_to_idx), border_width, legends)
    fig.set_facecolor("white")
    ax.axis("off")
    return _finish(fig, ax, show)


def mask_overlay(inp: Any, *, show: bool, border_width: int, legends: bool) -> Any:
    """The image with every segment tinted in a colour of its own."""
    fig, ax = _figure()
    ax.imshow(inp.image)
    fig.set_facecolor("white")
    rng = np.random.default_rng(0)
    masks = [m.numpy().astype(bool) for m in inp.get_mask_list()]
    colors = []
    for mask in masks:
        color = np.array([*rng.random(3), 0.6])
        ax.imshow(mask[..., None] * color.reshape(1, 1, -1))
        colors.append([*color[:3], 0.8])
    _draw_segments(ax, masks, colors, list(inp.mask_id_to_idx), border_width, legends)
    ax.axis("off")
    return _finish(fig, ax, show)
