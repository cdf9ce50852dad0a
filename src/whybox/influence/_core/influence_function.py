"""Alias of Captum 0.9's ``captum.influence._core.influence_function``: its public names,
as whybox objects, and the private helpers Captum-style code imports from it
(implemented in :mod:`whybox.influence._captum_hessian`)."""

from whybox.influence._captum_hessian import (
    _basic_computation_naive_influence_function,
    _compute_dataset_func,
    _flatten_forward_factory,
    _get_dataset_embeddings_intermediate_quantities_influence_function,
)
from whybox.influence.influence_function import (
    InfluenceFunctionBase,
    IntermediateQuantitiesInfluenceFunction,
    NaiveInfluenceFunction,
)

__all__ = [
    "InfluenceFunctionBase",
    "IntermediateQuantitiesInfluenceFunction",
    "NaiveInfluenceFunction",
    "_basic_computation_naive_influence_function",
    "_compute_dataset_func",
    "_flatten_forward_factory",
    "_get_dataset_embeddings_intermediate_quantities_influence_function",
]
