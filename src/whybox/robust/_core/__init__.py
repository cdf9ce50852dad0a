"""Alias package of Captum 0.9's ``captum.robust._core`` (no logic here)."""
