"""Alias of Captum 0.9's ``captum.concept._core`` package."""
