"""Alias of Captum 0.9's ``captum.robust._core.metrics.min_param_perturbation``: its public names, as whybox objects (no logic here)."""

from whybox.robust._min_param import (
    MinParamPerturbation,
    MinParamPerturbationMode,
    default_correct_fn,
    drange,
)

__all__ = ["drange", "default_correct_fn", "MinParamPerturbationMode", "MinParamPerturbation"]
