"""Helpers for testing :mod:`whybox.influence` (Captum 0.9's ``captum.testing.helpers.influence``)."""
