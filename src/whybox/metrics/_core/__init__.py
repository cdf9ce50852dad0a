"""Alias of Captum 0.9's ``captum.metrics._core`` package.

Captum-style code imports ``captum.metrics._core.infidelity`` and
``captum.metrics._core.sensitivity``; the modules here re-export whybox's objects at
those paths.
"""
