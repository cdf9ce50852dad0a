"""Is a concept's TCAV score significant? The statistical test of Captum's TCAV tutorials.

The tutorials run TCAV on experimental sets ``[[concept, random_0], [concept, random_1],
...]`` and compare, for one layer and score type, the scores of the concept (position 0
in each set) with those of the random concepts (position 1) by a two-sided Student's
t-test with pooled variance (``scipy.stats.ttest_ind``); populations are "Disjoint" when
``p < alpha`` and "Overlap" otherwise. Here the test is computed without scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from whybox.core.validation import check_real, fail

from .concepts import Concept, concepts_to_str

__all__ = [
    "random_experimental_sets",
    "assemble_scores",
    "ttest_ind",
    "Significance",
    "significance",
]


def random_experimental_sets(
    concept: Concept, random_concepts: Sequence[Concept]
) -> list[list[Concept]]:
    """``[[concept, r] for r in random_concepts]``: the tutorials' experimental sets.

    Parameters
    ----------
    concept : Concept
    random_concepts : sequence of Concept

    Returns
    -------
    list of list of Concept
    """
    return [[concept, r] for r in random_concepts]


def assemble_scores(
    scores: Mapping[str, Any],
    experimental_sets: Sequence[Sequence[Concept]],
    idx: int,
    score_layer: str,
    score_type: str,
) -> list[float]:
    """The score of the concept at position ``idx`` of each experimental set.

    Parameters
    ----------
    scores : dict
        :meth:`~whybox.concept.TCAV.interpret`'s result.
    experimental_sets : sequence of sequence of Concept
    idx : int
    score_layer : str
    score_type : str
        ``"sign_count"`` or ``"magnitude"``.

    Returns
    -------
    list of float
        One value per experimental set.
    """
    values = []
    for concepts in experimental_sets:
        try:
            values.append(float(scores[concepts_to_str(concepts)][score_layer][score_type][idx]))
        except KeyError:
            fail(
                "assemble_scores",
                "scores",
                f"TCAV scores holding layer {score_layer!r} and score {score_type!r} for "
                "every experimental set",
                f"nothing for set {concepts_to_str(concepts)!r}",
                raw=True,
            )
    return values


def ttest_ind(a: Sequence[float] | Tensor, b: Sequence[float] | Tensor) -> tuple[float, float]:
    """Two-sided two-sample Student's t-test, pooled variance (scipy's ``ttest_ind``).

    Parameters
    ----------
    a, b : sequences of float (at least two values between them beyond two)

    Returns
    -------
    (float, float)
        The t statistic and its p-value (``nan`` for constant samples, as scipy).
    """
    x = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
    n1, n2 = len(x), len(y)
    dof = n1 + n2 - 2
    if n1 < 1 or n2 < 1 or dof < 1:
        fail(
            "ttest_ind",
            "a",
            "samples with at least 3 values in all",
            f"{n1} and {n2} values",
            raw=True,
        )
    pooled = (((x - x.mean()) ** 2).sum() + ((y - y.mean()) ** 2).sum()) / dof
    denominator = math.sqrt(float(pooled) * (1.0 / n1 + 1.0 / n2))
    difference = float(x.mean() - y.mean())
    if denominator == 0.0:
        return (
            (math.nan, math.nan)
            if difference == 0.0
            else (math.copysign(math.inf, difference), 0.0)
        )
    t = difference / denominator
    # P(|T| >= |t|) for Student's t with `dof` degrees of freedom
    p = _betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return t, min(1.0, max(0.0, p))


class Significance(NamedTuple):
    """The tutorials' ``get_pval`` result.

    Attributes
    ----------
    concept_scores : list of float
        Position-0 scores (the concept), one per experimental set.
    random_scores : list of float
        Position-1 scores (the random concepts).
    pvalue : float
    relation : str
        ``"Disjoint"`` when ``pvalue < alpha``, else ``"Overlap"``.
    """

    concept_scores: list[float]
    random_scores: list[float]
    pvalue: float
    relation: str


def significance(
    scores: Mapping[str, Any],
    experimental_sets: Sequence[Sequence[Concept]],
    score_layer: str,
    score_type: str = "sign_count",
    *,
    alpha: float = 0.05,
) -> Significance:
    """Whether the concept's scores differ from random concepts' (the tutorials' test).

    Parameters
    ----------
    scores : dict
        :meth:`~whybox.concept.TCAV.interpret`'s result.
    experimental_sets : sequence of sequence of Concept
        ``[[concept, random_i], ...]`` (see :func:`random_experimental_sets`).
    score_layer : str
    score_type : str, default ``"sign_count"``
    alpha : float, keyword-only, default 0.05

    Returns
    -------
    Significance
    """
    check_real("significance", "alpha", alpha, minimum=0.0, maximum=1.0)
    first = assemble_scores(scores, experimental_sets, 0, score_layer, score_type)
    second = assemble_scores(scores, experimental_sets, 1, score_layer, score_type)
    _, pvalue = ttest_ind(first, second)
    return Significance(first, second, pvalue, "Disjoint" if pvalue < alpha else "Overlap")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` by its continued fraction (Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    # Numerical Recipes' betacf: the even and odd terms of the fraction, by modified Lentz
    tiny = 1e-300

    def guard(value: float) -> float:
        return tiny if abs(value) < tiny else value

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 10001):
        even = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 / guard(1.0 + even * d)
        c = guard(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 / guard(1.0 + odd * d)
        c = guard(1.0 + odd / c)
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return front * h / a
