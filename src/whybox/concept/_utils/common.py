"""Alias of Captum 0.9's ``captum.concept._utils.common``: its public names, as whybox objects."""

from whybox.concept.concepts import concepts_to_str

__all__ = ["concepts_to_str"]
