"""Shared test fixtures at Captum 0.9's ``captum.testing.helpers`` path."""

from whybox.testing.helpers.basic import BaseTest

__all__ = [
    "BaseTest",
]
