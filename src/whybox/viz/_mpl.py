"""Figure/axes plumbing shared by the matplotlib views (lazy matplotlib imports only)."""

from __future__ import annotations

from typing import Any

# Backends where plt.show() has nothing to show; calling it there is pointless (and
# some matplotlib versions warn), so headless runs never block or warn.
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def new_figure(
    fig_size: tuple[float, float], use_pyplot: bool, **subplots_kw: Any
) -> tuple[Any, Any]:
    """Create ``(figure, axes)``: through pyplot when ``use_pyplot`` else a bare ``Figure``.

    A bare :class:`matplotlib.figure.Figure` is not registered with pyplot, so it never
    leaks memory in long loops and never pops up a window.
    """
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=fig_size, **subplots_kw)
    from matplotlib.figure import Figure

    fig = Figure(figsize=fig_size)
    return fig, fig.subplots(**subplots_kw)


def show_if_interactive(use_pyplot: bool) -> None:
    """Call ``plt.show()`` for pyplot figures unless the backend is headless."""
    if not use_pyplot:
        return
    import matplotlib

    backend = str(matplotlib.get_backend()).lower()
    if backend in _NON_INTERACTIVE:
        return
    import matplotlib.pyplot as plt

    plt.show()


def unpack_fig_axis(plt_fig_axis: Any, param: str, func: str) -> tuple[Any, Any]:
    """Validate a user-supplied ``(figure, axis)`` pair; a list/array of axes yields its first."""
    try:
        fig, ax = plt_fig_axis
    except (TypeError, ValueError):
        raise TypeError(
            f"The '{param}' parameter of {func} must be a (figure, axis) tuple. "
            f"Got {type(plt_fig_axis).__name__}."
        ) from None
    return fig, ax


def first_axis(ax: Any) -> Any:
    """Return a single Axes from an Axes, a list of Axes or a numpy array of Axes."""
    if isinstance(ax, (list, tuple)):
        return ax[0]
    if hasattr(ax, "flat") and not hasattr(ax, "imshow"):
        return ax.flat[0]
    return ax


def axis_list(ax: Any) -> list[Any]:
    """Flatten an Axes / list / array of Axes to a list."""
    if hasattr(ax, "imshow"):
        return [ax]
    if hasattr(ax, "flat"):
        return list(ax.flat)
    return list(ax)


def add_bottom_colorbar(
    fig: Any, ax: Any, mappable: Any | None, *, pad: float = 0.1, alpha: float | None = None
) -> Any:
    """Attach a horizontal colorbar below ``ax``; with no mappable the slot is kept but hidden.

    Keeping an empty slot aligns panels that have a colorbar with panels that do not.
    """
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes("bottom", size="5%", pad=pad)
    if mappable is None:
        cax.axis("off")
        return cax
    extra = {} if alpha is None else {"alpha": alpha}
    fig.colorbar(mappable, cax=cax, orientation="horizontal", **extra)
    return cax
