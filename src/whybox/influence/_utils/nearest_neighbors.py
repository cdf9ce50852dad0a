"""Alias of Captum 0.9's ``captum.influence._utils.nearest_neighbors``: its public names, as whybox objects."""

from whybox.influence.nearest_neighbors import AnnoyNearestNeighbors, NearestNeighbors

__all__ = ["AnnoyNearestNeighbors", "NearestNeighbors"]
