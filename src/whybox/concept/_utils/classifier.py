"""Alias of Captum 0.9's ``captum.concept._utils.classifier``: its public names, as whybox objects."""

from whybox.concept._train_test_split import _train_test_split  # noqa: F401 - Captum's tests
from whybox.concept.classifier import Classifier, DefaultClassifier

__all__ = ["Classifier", "DefaultClassifier"]
