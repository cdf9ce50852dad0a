"""Alias of Captum 0.9's ``captum.influence._utils`` package."""
