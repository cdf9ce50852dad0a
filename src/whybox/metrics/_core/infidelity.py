"""Alias of Captum 0.9's ``captum.metrics._core.infidelity``: its public names, as whybox
objects, and the private step functions Captum-style code imports from it (implemented
in :mod:`whybox.metrics._captum_infidelity_steps`)."""

from whybox.metrics._captum_infidelity_steps import (
    _generate_perturbations,
    _make_next_infidelity_tensors_func,
    _sum_infidelity_tensors,
    _validate_inputs_and_perturbations,
)
from whybox.metrics.infidelity import infidelity, infidelity_perturb_func_decorator

__all__ = [
    "infidelity",
    "infidelity_perturb_func_decorator",
    "_generate_perturbations",
    "_make_next_infidelity_tensors_func",
    "_sum_infidelity_tensors",
    "_validate_inputs_and_perturbations",
]
