"""Alias package of Captum 0.9's ``captum.robust._core.metrics`` (no logic here)."""
