"""Alias of Captum 0.9's ``captum.influence._core.influence_function``: its public names, as whybox objects."""

from whybox.influence.influence_function import (
    InfluenceFunctionBase,
    IntermediateQuantitiesInfluenceFunction,
    NaiveInfluenceFunction,
)

__all__ = [
    "InfluenceFunctionBase",
    "IntermediateQuantitiesInfluenceFunction",
    "NaiveInfluenceFunction",
]
