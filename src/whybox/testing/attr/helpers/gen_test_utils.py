"""Helpers for Captum 0.9's config-driven (generated) attribution tests."""

from __future__ import annotations

import typing
from typing import Any, cast

from torch.nn import Module

from whybox.attr._core.lime import Lime
from whybox.attr._models.base import _get_deep_layer_name
from whybox.attr._utils.attribution import Attribution


def gen_test_name(
    prefix: str, test_name: str, algorithm: type[Attribution], noise_tunnel: bool
) -> str:
    """Name of a generated test: ``prefix_testname_Algorithm[NoiseTunnel]``.

    Parameters
    ----------
    prefix : str
        Usually the kind of test (``"test_jit"``, ``"test_dp"``, ...).
    test_name : str
        The config's name.
    algorithm : type of Attribution
        The attribution class; its ``__name__`` is used.
    noise_tunnel : bool
        Whether the algorithm is wrapped in ``NoiseTunnel`` (appends ``"NoiseTunnel"``).

    Returns
    -------
    str
        The test's name.
    """
    suffix = "NoiseTunnel" if noise_tunnel else ""
    return f"{prefix}_{test_name}_{algorithm.__name__}{suffix}"


def parse_test_config(
    test_config: dict,
) -> tuple[list[type[Attribution]], Module, dict[str, Any], Module, bool, bool]:
    """Unpack one entry of the test configs.

    Parameters
    ----------
    test_config : dict
        Must hold ``"algorithms"``, ``"model"`` and ``"attribute_args"``; may hold
        ``"layer"`` (default None), ``"noise_tunnel"`` and ``"baseline_distr"``
        (both default False).

    Returns
    -------
    tuple
        ``(algorithms, model, args, layer, noise_tunnel, baseline_distr)``.
    """
    algorithms = cast(list[type[Attribution]], test_config["algorithms"])
    model = test_config["model"]
    args = cast(dict[str, Any], test_config["attribute_args"])
    layer = test_config.get("layer", None)
    noise_tunnel = test_config.get("noise_tunnel", False)
    baseline_distr = test_config.get("baseline_distr", False)
    return algorithms, model, args, layer, noise_tunnel, baseline_distr


def should_create_generated_test(algorithm: type[Attribution]) -> bool:
    """Whether a generated test can run for ``algorithm`` in this environment.

    Lime and its subclasses (e.g. KernelShap) need scikit-learn 0.23.0 or later
    (for ``sample_weight`` in Lasso regression); every other algorithm can run.

    Parameters
    ----------
    algorithm : type of Attribution
        The attribution class.

    Returns
    -------
    bool
        False only for a Lime subclass when a recent enough sklearn is missing.
    """
    if not issubclass(algorithm, Lime):
        return True
    try:
        import sklearn
    except ImportError:
        return False
    # the same plain string comparison as Captum's check
    return sklearn.__version__ >= "0.23.0"


@typing.overload
def get_target_layer(model: Module, layer_name: str) -> Module: ...


@typing.overload
def get_target_layer(model: Module, layer_name: list[str]) -> list[Module]: ...


def get_target_layer(model: Module, layer_name: str | list[str]) -> Module | list[Module]:
    """The submodule(s) of ``model`` at dotted path(s) such as ``"conv1"`` or ``"a.b"``.

    Parameters
    ----------
    model : Module
        The model.
    layer_name : str or list of str
        One dotted attribute path, or several.

    Returns
    -------
    Module or list of Module
        The layer, or one layer per name.
    """
    if isinstance(layer_name, str):
        return _get_deep_layer_name(model, layer_name)
    return [_get_deep_layer_name(model, name) for name in layer_name]
