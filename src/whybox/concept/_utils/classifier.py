"""Alias of Captum 0.9's ``captum.concept._utils.classifier``: its public names, as whybox objects."""

from whybox.concept.classifier import Classifier, DefaultClassifier

__all__ = ["Classifier", "DefaultClassifier"]
