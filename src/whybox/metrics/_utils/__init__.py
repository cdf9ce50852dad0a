"""Captum 0.9's ``captum.metrics._utils`` package path (its batching helper)."""
