"""Alias of Captum 0.9's ``captum.metrics._core.infidelity``: its public names, as whybox objects."""

from whybox.metrics.infidelity import infidelity, infidelity_perturb_func_decorator

__all__ = ["infidelity", "infidelity_perturb_func_decorator"]
