"""Views of an :class:`~whybox.core.result.Explanation`: draw or render one example.

Views depend on results, never the reverse: these functions take an ``Explanation`` and
hand one example's attributions (and its input, when it is drawable) to
:func:`~whybox.viz.auto.plot_attribution` / :func:`~whybox.viz.auto.attribution_html`.
``Explanation.plot()`` / ``.to_html()`` / ``_repr_html_`` are thin conveniences that
call these at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from whybox.viz.auto import attribution_html, plot_attribution

if TYPE_CHECKING:  # the type only; viz needs no engine code to draw
    from whybox.core.result import Explanation

__all__ = ["plot", "to_html", "example_view_data"]


def example_view_data(explanation: Explanation, index: int, func: str) -> tuple[Any, Any]:
    """Attributions and input of example ``index``, in the form the views draw.

    Parameters
    ----------
    explanation : Explanation
        Attributions of one input (a tensor, or a tuple/list holding one tensor) with a
        leading batch dimension ``N``; dict inputs are drawn per key with the tensor
        functions of :mod:`whybox.viz`.
    index : int
        Example to draw, ``-N <= index < N``.
    func : str
        Name of the calling view, for error messages.

    Returns
    -------
    attributions : Tensor, shape (1, ...)
        The example with a batch dimension of 1 (1-D attributions are returned whole).
    inputs : Tensor, shape (1, ...), or None
        The example's input when it is a floating-point tensor (token ids are not
        drawable values), else ``None``.
    """
    from torch import Tensor  # here, so that ``import whybox.viz`` never loads torch

    attributions, inputs = explanation.attributions, explanation.inputs
    if isinstance(attributions, (tuple, list)):
        if len(attributions) != 1:
            raise ValueError(
                f"{func}: the 'attributions' of this Explanation hold several inputs; draw one "
                "with whybox.viz.plot_attribution(explanation.attributions[i][index], ...)."
            )
        attributions = attributions[0]
        inputs = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    if isinstance(attributions, dict):
        raise ValueError(f"{func}: explanations of dict inputs are drawn per key with whybox.viz.")
    n = attributions.shape[0]
    if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
        raise ValueError(f"The 'index' parameter of {func} must be in [0, {n}). Got {index!r}.")
    example = attributions[index : index + 1] if attributions.dim() > 1 else attributions
    source = inputs[index : index + 1] if isinstance(inputs, Tensor) and inputs.dim() > 1 else None
    if source is not None and not source.is_floating_point():
        source = None
    return example, source


def plot(explanation: Explanation, index: int = 0, **options: Any) -> Any:
    """Draw example ``index`` of an Explanation with matplotlib.

    The view (image, text or tabular) is chosen from the example's shape by the
    ``auto`` rule of :func:`~whybox.viz.auto.infer_kind`.

    Parameters
    ----------
    explanation : Explanation
        Attributions of one input, shape ``(N, ...)``.
    index : int
        Example to draw. Default 0.
    **options
        Passed to :func:`~whybox.viz.auto.plot_attribution` (``kind``, ``tokens``,
        ``feature_names``, ``ax``, ``sign``, ``title``...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    attributions, inputs = example_view_data(explanation, index, "whybox.viz.plot")
    return plot_attribution(attributions, inputs, **options)


def to_html(explanation: Explanation, index: int = 0, **options: Any) -> str:
    """A self-contained HTML view of example ``index`` (no scripts, no network).

    Parameters
    ----------
    explanation : Explanation
        Attributions of one input, shape ``(N, ...)``.
    index : int
        Example to render. Default 0.
    **options
        Passed to :func:`~whybox.viz.auto.attribution_html` (``kind``, ``tokens``,
        ``feature_names``, ``full_page``...). ``title`` defaults to
        ``"<method> (example <index>)"``.

    Returns
    -------
    str
        A full HTML page (``full_page=True``, the default) or a fragment.
    """
    attributions, inputs = example_view_data(explanation, index, "whybox.viz.to_html")
    options.setdefault("title", f"{explanation.method or 'attribution'} (example {index})")
    return attribution_html(attributions, inputs, **options)
