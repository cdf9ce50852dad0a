"""Alias of Captum 0.9's ``captum.concept._core.concept``: its public names, as whybox objects."""

from whybox.concept.concepts import Concept, ConceptInterpreter

__all__ = ["Concept", "ConceptInterpreter"]
