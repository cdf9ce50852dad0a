"""Alias of Captum 0.9's ``captum.metrics._core.sensitivity``: its public names, as whybox objects."""

from whybox.metrics.sensitivity import default_perturb_func, sensitivity_max

__all__ = ["default_perturb_func", "sensitivity_max"]
