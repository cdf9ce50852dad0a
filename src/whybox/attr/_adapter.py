"""The one adapter from Captum's calling convention to the native methods.

Each Captum-compatible class is its Captum signature plus a :class:`Spec`: which native
method runs, which facade attributes become its constructor options, how Captum's
arguments are renamed or converted, and what Captum returns. :func:`run` carries out
every spec the same way, so no facade class holds maths or translation code of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from whybox.core.randomness import GlobalRandom
from whybox.core.scope import neuron_model
from whybox.core.validation import ParameterError, ParameterTypeError, fail

__all__ = ["Spec", "run", "chunk_from_internal_batch_size"]


def chunk_from_internal_batch_size(internal_batch_size: int | None) -> int | str:
    """Captum's ``internal_batch_size`` -> the native chunk knob.

    ``None`` means "all at once" in Captum; whybox picks a throughput-friendly chunk instead,
    which gives the same result (chunking never changes attributions).
    """
    return "auto" if internal_batch_size is None else internal_batch_size


def _refuse_grad_kwargs(owner: str, grad_kwargs: Any) -> None:
    # whybox takes plain first-order gradients; refusing beats silently ignoring options
    if grad_kwargs:
        fail(
            owner,
            "grad_kwargs",
            "None or empty (custom autograd options are not supported)",
            grad_kwargs,
        )


#: Captum argument -> (native option, conversion) shared by every class
_RENAMES: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "additional_forward_args": ("forward_args", None),
    "method": ("rule", None),
    "internal_batch_size": ("chunk_size", chunk_from_internal_batch_size),
    "return_convergence_delta": ("return_delta", None),
}


@dataclass(frozen=True)
class Spec:
    """How one Captum class maps onto a native method.

    Attributes
    ----------
    native
        The native method class (or any factory ``native(model, **init_options)``).
    init
        Native constructor option -> name of the facade attribute holding its value
        (e.g. ``{"multiply_by_inputs": "_multiply_by_inputs"}``).
    layer
        Pass the facade's ``layer`` as the native ``layer``.
    to_init
        Captum ``attribute`` arguments that are native constructor options
        (``attribute_to_layer_input``).
    neuron
        A neuron method: ``neuron_selector`` / ``attribute_to_neuron_input`` turn the model
        into one returning that neuron (the neuron scope transform).
    fixed
        Native call options always passed (``{"abs": False}``).
    captum_random
        Pass Captum's global-generator draw order as the random source (seeded Captum code
        then gives Captum's numbers).
    delta
        Captum returns ``(attributions, delta)`` when ``return_convergence_delta`` is true.
    """

    native: Callable[..., Any]
    init: Mapping[str, str] = field(default_factory=dict)
    layer: bool = False
    to_init: tuple[str, ...] = ()
    neuron: bool = False
    fixed: Mapping[str, Any] = field(default_factory=dict)
    captum_random: bool = False
    delta: bool = False


def run(facade: Any, spec: Spec, arguments: Mapping[str, Any]) -> Any:
    """Run ``spec`` for a facade call whose arguments are ``arguments`` (its ``locals()``).

    Returns what Captum returns: the attributions, or ``(attributions, delta)``.
    """
    owner = type(facade).__name__
    options = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
    _refuse_grad_kwargs(owner, options.pop("grad_kwargs", None))
    inputs = options.pop("inputs")
    model = facade.forward_func
    init = {name: getattr(facade, attribute) for name, attribute in spec.init.items()}
    if spec.layer:
        init["layer"] = facade.layer
    for name in spec.to_init:
        init[name] = options.pop(name)
    if spec.neuron:
        model = neuron_model(
            model,
            facade.layer,
            options.pop("neuron_selector"),
            to_input=options.pop("attribute_to_neuron_input", False),
            owner=owner,
        )
    wants_delta = spec.delta and bool(options.get("return_convergence_delta", False))
    call: dict[str, Any] = {}
    for name, value in options.items():
        native_name, convert = _RENAMES.get(name, (name, None))
        call[native_name] = value if convert is None else convert(value)
    if "return_delta" not in call and spec.delta:
        call["return_delta"] = False
    call.update(spec.fixed)
    if spec.captum_random:
        call["seed"] = GlobalRandom()
    renamed = {native_name: name for name, (native_name, _) in _RENAMES.items() if name in options}
    try:
        result = spec.native(model, **init).attribute(inputs, **call)
    except (ParameterError, ParameterTypeError) as error:
        # report a bad argument under the name the Captum caller used
        if error.parameter not in renamed:
            raise
        captum_name = renamed[error.parameter]
        message = str(error).replace(f"'{error.parameter}' parameter", f"'{captum_name}' parameter")
        raise type(error)(message, parameter=captum_name) from None
    if wants_delta:
        return result.attributions, result.delta
    return result.attributions
