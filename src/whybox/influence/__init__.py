"""Training-data influence (Captum 0.9's ``captum.influence``).

Captum's names with Captum's signatures and return conventions: :class:`DataInfluence`,
:class:`SimilarityInfluence`, :class:`TracInCPBase`, :class:`TracInCP`,
:class:`TracInCPFast`, :class:`TracInCPFastRandProj`, :class:`NaiveInfluenceFunction`
(and, at Captum's module path, ``ArnoldiInfluenceFunction``). Captum's module paths work
(``whybox.influence._core.tracincp``, ``whybox.influence._utils.nearest_neighbors``,
...).

How it runs: per-example gradients by ``torch.func`` (``vmap(grad(...))``) over chunks of
rows, a memory budget deciding the chunks; training data read once in memory-bounded
groups with each checkpoint loaded once per group; the model's parameters and
``requires_grad`` flags are never changed. Native additions: a keyword-only
``chunk_size`` on every constructor.
"""

from .arnoldi import ArnoldiInfluenceFunction
from .base import DataInfluence, KMostInfluentialResults
from .influence_function import (
    InfluenceFunctionBase,
    IntermediateQuantitiesInfluenceFunction,
    NaiveInfluenceFunction,
)
from .nearest_neighbors import AnnoyNearestNeighbors, NearestNeighbors
from .similarity import SimilarityInfluence, cosine_similarity, euclidean_distance
from .tracin import TracInCP, TracInCPBase
from .tracin_fast import TracInCPFast, TracInCPFastRandProj

__all__ = [
    "DataInfluence",
    "SimilarityInfluence",
    "TracInCPBase",
    "TracInCP",
    "TracInCPFast",
    "TracInCPFastRandProj",
    "NaiveInfluenceFunction",
    "ArnoldiInfluenceFunction",
    "InfluenceFunctionBase",
    "IntermediateQuantitiesInfluenceFunction",
    "KMostInfluentialResults",
    "NearestNeighbors",
    "AnnoyNearestNeighbors",
    "cosine_similarity",
    "euclidean_distance",
]
