"""Views of an :class:`~whybox.core.result.Explanation`: draw or render one example.

Views depend on results, never the reverse: these functions take an ``Explanation`` and
hand one example's attributions (and its input, when it is drawable) to
:func:`~whybox.viz.auto.plot_attribution` / :func:`~whybox.viz.auto.attribution_html`.
``Explanation.plot()`` / ``.to_html()`` / ``_repr_html_`` are thin conveniences that
call these at run time.

Text results draw themselves: an example explained from token ids ``(N, T)`` (Layer IG on
embeddings gives ``(N, T, D)``), or drawn with ``tokens=``, has its embedding dimension
summed and L2-normalised and its batch of one dropped, as the seeds did by hand
(``attributions.sum(-1).squeeze(0) / norm``). Without ``tokens``, the explanation's
``extras["tokens"]`` (one list per example, or one list) label the chips, else the ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from whybox.viz.auto import attribution_html, plot_attribution

if TYPE_CHECKING:  # the type only; viz needs no engine code to draw
    from whybox.core.result import Explanation

__all__ = ["plot", "to_html", "example_view_data", "text_view_data"]


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


def text_view_data(
    explanation: Explanation, index: int, attributions: Any, options: dict[str, Any]
) -> tuple[Any, list[str]] | None:
    """Token scores and labels of example ``index`` when it is drawn as text, else ``None``.

    Parameters
    ----------
    explanation : Explanation
    index : int
        The example.
    attributions : Tensor, shape (1, T, ...) or (T,)
        The example, as :func:`example_view_data` returns it.
    options : dict
        The view's options; ``tokens`` and ``kind`` are read (and ``tokens`` removed).

    Returns
    -------
    (Tensor, list of str) or None
        ``(T,)`` scores (summed over trailing dimensions, unit L2 norm) and ``T`` labels.
    """
    import torch
    from torch import Tensor

    kind = options.get("kind", "auto")
    tokens = options.pop("tokens", None)
    if kind not in ("auto", "text") or not isinstance(attributions, Tensor):
        if tokens is not None:
            options["tokens"] = tokens
        return None
    inputs = explanation.inputs
    if isinstance(inputs, (tuple, list)) and len(inputs) == 1:
        inputs = inputs[0]
    ids = inputs if isinstance(inputs, Tensor) and not inputs.is_floating_point() else None
    example = (
        attributions[0] if attributions.dim() >= 2 and attributions.shape[0] == 1 else attributions
    )
    # token ids in, one vector per token out (Layer IG on embeddings): text, with or
    # without labels; integer features with one value each stay tabular
    from_ids = (
        ids is not None
        and ids.dim() == 2
        and example.dim() >= 2
        and example.shape[0] == ids.shape[1]
    )
    stored = _stored_tokens(explanation, index, example.shape[0]) if example.dim() else None
    if tokens is None and kind == "auto" and not (from_ids or stored):
        return None
    if tokens is None:
        tokens = stored
    if tokens is None and ids is not None and ids.dim() == 2:
        tokens = [f"#{int(t)}" for t in ids[index]]
    if tokens is None:
        raise ValueError("The 'tokens' parameter is required to draw this explanation as text.")
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(
            "The 'tokens' parameter must be a sequence of strings (one per token). "
            f"Got {type(tokens).__name__}."
        )
    tokens = [str(t) for t in tokens]
    if example.dim() == 0 or example.shape[0] != len(tokens):
        raise ValueError(
            f"The 'tokens' parameter has {len(tokens)} entries but example {index} has "
            f"{example.shape[0] if example.dim() else 0} token positions (attributions of shape "
            f"{tuple(attributions.shape)}); they must match one to one."
        )
    scores = example.detach().reshape(example.shape[0], -1).sum(-1).float()
    norm = torch.linalg.vector_norm(scores)
    scores = scores / norm if bool(norm > 0) else scores  # an all-zero example stays zero
    options["kind"] = "text"
    options["tokens"] = tokens
    return scores, tokens


def _stored_tokens(explanation: Explanation, index: int, n: int) -> list[str] | None:
    stored = explanation.extras.get("tokens") if isinstance(explanation.extras, dict) else None
    if not stored:
        return None
    if all(isinstance(t, str) for t in stored):
        return list(stored) if len(stored) == n else None
    if isinstance(index, int) and -len(stored) <= index < len(stored):
        row = list(stored[index])
        return row if len(row) == n else None
    return None


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
        ``feature_names``, ``ax``, ``sign``, ``title``...). Text examples (see the module
        notes) are reduced to one normalised score per token first.

    Returns
    -------
    matplotlib.figure.Figure
    """
    attributions, inputs = example_view_data(explanation, index, "whybox.viz.plot")
    text = text_view_data(explanation, index, attributions, options)
    if text is not None:
        attributions, inputs = text[0], None
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
        ``"<method> (example <index>)"``. Text examples (see the module notes) are
        reduced to one normalised score per token first.

    Returns
    -------
    str
        A full HTML page (``full_page=True``, the default) or a fragment.
    """
    attributions, inputs = example_view_data(explanation, index, "whybox.viz.to_html")
    options.setdefault("title", f"{explanation.method or 'attribution'} (example {index})")
    text = text_view_data(explanation, index, attributions, options)
    if text is not None:
        attributions, inputs = text[0], None
    return attribution_html(attributions, inputs, **options)
