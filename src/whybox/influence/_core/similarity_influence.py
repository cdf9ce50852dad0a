"""Alias of Captum 0.9's ``captum.influence._core.similarity_influence``: its public names, as whybox objects."""

from whybox.influence.similarity import SimilarityInfluence, cosine_similarity, euclidean_distance

__all__ = ["SimilarityInfluence", "cosine_similarity", "euclidean_distance"]
