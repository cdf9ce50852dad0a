"""One progress bar constructor for loops that are not the engine's chunk loop.

The engine's :func:`whybox.core.forward.evaluate` draws its own bars; metrics, dataset jobs
and other outer loops (over samples, layers, traversals) ask here so every bar looks the
same and ``tqdm`` is imported only when a bar is shown.
"""

from __future__ import annotations

from typing import Any

__all__ = ["progress"]


def progress(total: int | None, show: bool, label: str, *, unit: str = "item") -> Any:
    """A ``tqdm`` bar over ``total`` steps, or ``None`` when ``show`` is false.

    Parameters
    ----------
    total : int or None
        Number of steps the bar counts to (``None``: unknown, the bar only counts).
    show : bool
        Whether to show a bar at all (the caller's ``show_progress``).
    label : str
        The bar's description.
    unit : str
        What one step is called.

    Returns
    -------
    tqdm or None
        The caller calls ``update`` / ``close`` on it when it is not ``None``.
    """
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit=unit)
