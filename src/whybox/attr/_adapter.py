"""The one adapter from Captum's calling convention to the native methods.

Each Captum-compatible class is its Captum signature plus a :class:`Spec`: which native
method runs, which facade attributes become its constructor options, how Captum's
arguments are renamed or converted, and what Captum returns. :func:`run` carries out
every spec the same way, so no facade class holds maths or translation code of its own.

Errors the native method raises in the library's format ("The 'rule' parameter of
IntegratedGradients ...") are reported under the facade class the user called and the
Captum name of the argument ("The 'method' parameter of LayerIntegratedGradients ..."), as
:class:`~whybox.attr._assertion_errors.DropInValueError` / ``DropInTypeError``: still
``ValueError`` / ``TypeError``, and also ``AssertionError``, which Captum raises for bad
arguments and Captum users catch.

Besides translating arguments, :func:`run` carries the behaviours that are Captum's
calling convention rather than maths: ``grad_kwargs`` reach ``torch.autograd.grad``
(:func:`~whybox.core.forward.autograd_options`), ``show_progress`` shows one bar per call
labelled ``"<get_name()> attribution"``, and ``attribute_future`` (``future=True``) runs a
forward function that returns ``torch.futures.Future`` and returns a ``Future``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from whybox.core.forward import _AUTOGRAD_OPTIONS, autograd_options, progress_bar
from whybox.core.inputs import flatten
from whybox.core.paths import CAPTUM_TRAPEZOID
from whybox.core.perturbation import PerturbationsPerEval
from whybox.core.randomness import GlobalRandom
from whybox.core.result import Explanation
from whybox.core.scope import neuron_model
from whybox.core.validation import ParameterError, ParameterTypeError, check_int, fail

from ._assertion_errors import DropInTypeError, DropInValueError

__all__ = [
    "Call",
    "Spec",
    "run",
    "check",
    "attributions",
    "with_delta",
    "chunk_from_internal_batch_size",
    "chunk_from_perturbations_per_eval",
    "SAMPLES_PER_EVAL",
    "MULTIPLY",
    "LAYER",
]


@dataclass(frozen=True)
class Call:
    """One facade call, as conversions, hooks and return conventions see it.

    Attributes
    ----------
    facade
        The Captum-compatible object called.
    owner
        Its class name, the owner named in error messages.
    inputs
        The ``inputs`` argument.
    arguments
        Every Captum argument by its Captum name (``**kwargs`` merged in).
    """

    facade: Any
    owner: str
    inputs: Any
    arguments: Mapping[str, Any]

    @property
    def wants_delta(self) -> bool:
        """Captum returns ``(attributions, delta)``: asked for, and the method has one."""
        asked = bool(self.arguments.get("return_convergence_delta", False))
        return asked and self.facade.has_convergence_delta()


#: ``convert(captum_value, call) -> native_value``
Converter = Callable[[Any, Call], Any]
#: a native name, or ``(native name, converter)``
Rename = str | tuple[str, Converter | None]


# -- the batching knobs: Captum's two, whybox's one ----------------------------------------
def chunk_from_internal_batch_size(internal_batch_size: int | None) -> int | str:
    """Captum's ``internal_batch_size`` -> the native chunk knob.

    ``None`` means "all at once" in Captum; whybox picks a throughput-friendly chunk instead,
    which gives the same result (chunking never changes attributions).
    """
    return "auto" if internal_batch_size is None else internal_batch_size


def chunk_from_perturbations_per_eval(
    perturbations_per_eval: Any, inputs: Any, *, owner: str, one_means_auto: bool = True
) -> int | str:
    """Captum's ``perturbations_per_eval`` -> the native ``chunk_size`` (rows per forward).

    ``k`` -> ``k * N`` rows (``k`` perturbations of the ``N``-example batch; native methods
    round rows down to whole perturbations), except that Captum's default 1 means
    ``"auto"`` where the chunk never changes the result (``one_means_auto``).
    """
    check_int(owner, "perturbations_per_eval", perturbations_per_eval, minimum=1)
    if perturbations_per_eval == 1 and one_means_auto:
        return "auto"
    leaves, _ = flatten(inputs, owner=owner)
    rows = perturbations_per_eval * max(int(leaves[0].shape[0]), 1)
    # whole perturbations, with Captum's rule for models returning one value per batch
    return PerturbationsPerEval(rows, perturbations_per_eval)


#: LimeBase keeps Captum's meaning of 1 (one sample per forward): its user transforms may
#: change input shapes, and forward functions may be written for a single sample
SAMPLES_PER_EVAL: Rename = (
    "chunk_size",
    lambda value, call: chunk_from_perturbations_per_eval(
        value, call.inputs, owner=call.owner, one_means_auto=False
    ),
)

#: Captum's integration rule names whose numbers differ from the native rule of that name
_CAPTUM_RULE_NAMES = {"riemann_trapezoid": CAPTUM_TRAPEZOID}


def _captum_rule(method: Any) -> Any:
    """Captum's ``method`` -> the native rule giving Captum's numbers (others unchanged,
    so the native check reports a bad value)."""
    return _CAPTUM_RULE_NAMES.get(method, method) if isinstance(method, str) else method


#: Captum argument -> native option (and conversion), shared by every class; a spec's own
#: ``renames`` add to or override these
_RENAMES: dict[str, Rename] = {
    "additional_forward_args": "forward_args",
    # Captum's trapezoid weights sum to (n - 1) / n: the facade gives Captum's numbers
    "method": ("rule", lambda value, call: _captum_rule(value)),
    "return_convergence_delta": "return_delta",
    "internal_batch_size": (
        "chunk_size",
        lambda value, call: chunk_from_internal_batch_size(value),
    ),
    "perturbations_per_eval": (
        "chunk_size",
        lambda value, call: chunk_from_perturbations_per_eval(value, call.inputs, owner=call.owner),
    ),
}


# -- return conventions ------------------------------------------------------------------
def attributions(result: Explanation, call: Call) -> Any:
    """Captum's usual return: the attributions alone."""
    return result.attributions


def with_delta(result: Explanation, call: Call) -> Any:
    """Captum's delta convention: ``(attributions, delta)`` when the call asked for it."""
    return (result.attributions, result.delta) if call.wants_delta else result.attributions


@dataclass(frozen=True)
class Spec:
    """How one Captum class maps onto a native method.

    Attributes
    ----------
    native
        The native method class (or any factory ``native(model, **init_options)``).
    init
        Native constructor option -> the facade attribute holding its value
        (``{"multiply_by_inputs": "_multiply_by_inputs"}``), or a factory called with the
        facade at every call (DeepLift's fresh ``CaptumRules``; LRP's ``module.rule``
        attributes read when the call runs).
    layer
        Pass the facade's ``layer`` as the native ``layer``.
    renames
        This class's own Captum argument -> native option (or ``(option, converter)``),
        on top of the shared ones (``{"layer_mask": "feature_mask"}``).
    to_init
        Native options (after renaming) given to ``attribute`` in Captum that are native
        constructor options (``attribute_to_layer_input``).
    neuron
        A neuron method: ``neuron_selector`` / ``attribute_to_neuron_input`` turn the model
        into one returning that neuron (the neuron scope transform).
    fixed
        Native call options always passed (``{"abs": False}``).
    captum_random
        Pass Captum's global-generator draw order as the random source (seeded Captum code
        then gives Captum's numbers).
    from_kwargs
        Captum arguments that arrive in ``**kwargs`` and are translated like named ones
        (NoiseTunnel's ``target``).
    pass_kwargs
        Pass the rest of ``**kwargs`` on unchanged (otherwise accepted and ignored, as
        Captum does).
    before
        A hook run with the :class:`Call` first, for Captum behaviour that is not a
        translation (a warning Captum emits).
    returns
        The return convention: ``returns(result, call)`` (:func:`attributions`,
        :func:`with_delta`, or a class's own).
    """

    native: Callable[..., Any]
    init: Mapping[str, str | Callable[[Any], Any]] = field(default_factory=dict)
    layer: bool = False
    renames: Mapping[str, Rename] = field(default_factory=dict)
    to_init: tuple[str, ...] = ()
    neuron: bool = False
    fixed: Mapping[str, Any] = field(default_factory=dict)
    captum_random: bool = False
    from_kwargs: tuple[str, ...] = ()
    pass_kwargs: bool = False
    before: Callable[[Call], None] | None = None
    returns: Callable[[Explanation, Call], Any] = attributions
    #: Captum name -> ``(native name, converter or None)`` for every renamed argument,
    #: resolved once here rather than at every call
    plan: Mapping[str, tuple[str, Converter | None]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        renames = {**_RENAMES, **self.renames}
        plan = {
            name: (rename, None) if isinstance(rename, str) else rename
            for name, rename in renames.items()
        }
        object.__setattr__(self, "plan", plan)


#: spec vocabulary: the facade's ``multiply_by_inputs``; a layer method's scope
MULTIPLY: Mapping[str, str] = {"multiply_by_inputs": "_multiply_by_inputs"}
LAYER: Mapping[str, Any] = {"layer": True, "to_init": ("attribute_to_layer_input",)}


def _init_options(facade: Any, spec: Spec) -> dict[str, Any]:
    init = {
        name: source(facade) if callable(source) else getattr(facade, source)
        for name, source in spec.init.items()
    }
    if spec.layer:
        if facade.layer is None:
            # a layer method without its layer is never the input-level method (Captum
            # fails there too, with a TypeError)
            fail(
                type(facade).__name__,
                "layer",
                "a module of the model (or a list of modules)",
                None,
                type_error=True,
            )
        init["layer"] = facade.layer
    return init


#: the keyword arguments ``torch.autograd.grad`` takes (Captum's ``grad_kwargs``)
_AUTOGRAD_GRAD_OPTIONS = frozenset(inspect.signature(torch.autograd.grad).parameters) - {
    "outputs",
    "inputs",
}


def _check_grad_kwargs(owner: str, grad_kwargs: Any) -> dict[str, Any]:
    """Captum's ``grad_kwargs``: keyword arguments for ``torch.autograd.grad``."""
    if grad_kwargs is None:
        return {}
    if not isinstance(grad_kwargs, Mapping) or not all(isinstance(k, str) for k in grad_kwargs):
        raise DropInTypeError(
            f"The 'grad_kwargs' parameter of {owner} must be None or a dict of "
            f"torch.autograd.grad keyword arguments. Got {type(grad_kwargs).__name__}.",
            parameter="grad_kwargs",
        )
    allowed = _AUTOGRAD_GRAD_OPTIONS
    unknown = sorted(set(grad_kwargs) - allowed)
    if unknown:
        raise DropInTypeError(
            f"The 'grad_kwargs' parameter of {owner} must hold torch.autograd.grad keyword "
            f"arguments ({sorted(allowed)}). Got {unknown[0]!r}.",
            parameter="grad_kwargs",
        )
    return dict(grad_kwargs)


class _FutureFailed(Exception):
    """A ``Future`` the model returned completed with an error (``error``): raised through
    the engine as it is, then set on the ``Future`` that ``attribute_future`` returns, so
    the caller meets it at ``wait()``, as with Captum's callback chains."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _waited(output: Any) -> Any:
    """``output``'s value when it is a ``Future`` (its error as :class:`_FutureFailed`)."""
    if not isinstance(output, torch.futures.Future):
        return output
    try:
        return output.wait()
    except Exception as error:
        raise _FutureFailed(error) from error


class _WaitingModule(nn.Module):
    """A module whose forward waits for the wrapped module's ``Future`` results (its
    submodules stay submodules, so layer scopes still find them)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return _waited(self.module(*args, **kwargs))


def _waiting(forward_func: Callable[..., Any]) -> Callable[..., Any]:
    """``forward_func`` with its ``torch.futures.Future`` results waited for (the values
    ``attribute_future`` computes with)."""
    if isinstance(forward_func, nn.Module):
        return _WaitingModule(forward_func)

    @functools.wraps(forward_func)
    def forward(*args: Any, **kwargs: Any) -> Any:
        return _waited(forward_func(*args, **kwargs))

    return forward


@functools.cache
def _call_options(native_type: type) -> frozenset[str]:
    return frozenset(inspect.signature(native_type.attribute).parameters)


def _reworded(
    error: ParameterError | ParameterTypeError,
    owner: str,
    spec: Spec,
    captum_names: Mapping[str, str],
) -> Exception:
    """The native method's uniform ``error`` re-worded for the facade: its class as the
    owner, Captum's names for the renamed arguments (``captum_names``: native -> Captum)."""
    native_owner = getattr(spec.native, "__name__", None)
    native_name = error.parameter
    name = captum_names.get(native_name, native_name)
    message = str(error)
    prefix = f"The '{native_name}' parameter of {native_owner} "
    if native_owner != owner and message.startswith(prefix):
        message = f"The '{name}' parameter of {owner} " + message[len(prefix) :]
    elif name != native_name:
        message = message.replace(f"'{native_name}' parameter", f"'{name}' parameter")
    # also an AssertionError: Captum asserts its arguments and its users catch that
    kind = DropInTypeError if isinstance(error, TypeError) else DropInValueError
    return kind(message, parameter=name)


@contextlib.contextmanager
def _reported_as(owner: str, spec: Spec, captum_names: Mapping[str, str]) -> Iterator[None]:
    """Re-word the native method's uniform errors for the facade (see :func:`_reworded`)."""
    try:
        yield
    except (ParameterError, ParameterTypeError) as error:
        raise _reworded(error, owner, spec, captum_names) from None


def check(facade: Any, spec: Spec) -> None:
    """Validate the native method for ``facade`` now, for classes whose Captum constructor
    checks its arguments (the model, explicit rules).

    Parameters
    ----------
    facade
        The Captum-compatible object being built (its arguments already stored).
    spec
        The spec whose native method (with the facade's constructor options) is checked.

    Raises
    ------
    ParameterError, ParameterTypeError
        Worded for the facade's class (see :func:`run`).
    """
    owner = type(facade).__name__
    with _reported_as(owner, spec, {}):
        spec.native(facade.forward_func, **_init_options(facade, spec))._validated()


#: ``locals()`` entries of a facade's ``attribute`` that are not Captum arguments
_NOT_ARGUMENTS = frozenset({"self", "__class__"})


def _run_native(
    facade: Any,
    spec: Spec,
    call: Call,
    options: dict[str, Any],
    inputs: Any,
    extra: dict[str, Any],
    future: bool,
    captum_names: dict[str, str],
) -> Explanation:
    """Build the native method for one facade call and run it (see :func:`run`);
    ``captum_names`` receives native name -> Captum name for the errors' wording."""
    init = _init_options(facade, spec)
    model = facade.forward_func
    if future:
        model = _waiting(model)
    if spec.neuron:
        # module rules act on the user's model: check it, not the neuron wrapper
        spec.native(model, **init)._validated()
        model = neuron_model(
            model,
            facade.layer,
            options.pop("neuron_selector"),
            to_input=options.pop("attribute_to_neuron_input", False),
            owner=call.owner,
        )
    plan = spec.plan
    native_call: dict[str, Any] = {}
    for name, value in options.items():
        native_name, convert = plan.get(name) or (name, None)
        native_call[native_name] = value if convert is None else convert(value, call)
        captum_names[native_name] = name
    for name in spec.to_init:
        init[name] = native_call.pop(name)
    native_call.update(spec.fixed)
    if spec.captum_random:
        native_call["seed"] = GlobalRandom()
    method = spec.native(model, **init)
    if "return_delta" in _call_options(type(method)):
        # Captum computes a convergence delta only when asked for one
        native_call.setdefault("return_delta", False)
    return method.attribute(inputs, **native_call, **extra)


def run(facade: Any, spec: Spec, arguments: Mapping[str, Any], *, future: bool = False) -> Any:
    """Run ``spec`` for one facade call.

    Parameters
    ----------
    facade
        The Captum-compatible object called.
    spec
        Its class's spec.
    arguments
        The call's arguments by Captum name: the ``attribute`` method's ``locals()``.
    future
        Captum's ``attribute_future``: the forward function may return
        ``torch.futures.Future`` (its values are used) and the result comes back as a
        completed ``Future``.

    Returns
    -------
    Any
        What Captum returns (``spec.returns``): the attributions, or
        ``(attributions, delta)`` (in a ``Future`` with ``future=True``).

    Raises
    ------
    ParameterError, ParameterTypeError
        A bad argument, named as the caller knows it: the facade's class as the owner and
        the Captum name of the parameter.
    """
    owner = type(facade).__name__
    options = {k: v for k, v in arguments.items() if k not in _NOT_ARGUMENTS}
    extra = options.pop("kwargs", None)
    extra = dict(extra) if extra else {}
    for name in spec.from_kwargs:
        options[name] = extra.pop(name, None)
    if not spec.pass_kwargs:
        extra = {}
    call = Call(facade, owner, options["inputs"], {**options, **extra})
    grad_kwargs = _check_grad_kwargs(owner, options.pop("grad_kwargs", None))
    # one bar per call, Captum's label; the engine's evaluations advance it
    label = f"{facade.get_name()} attribution" if options.get("show_progress") is True else None
    if label is not None:
        options["show_progress"] = False
    if spec.before is not None:
        spec.before(call)
    inputs = options.pop("inputs")
    captum_names: dict[str, str] = {}
    # the two contexts change nothing when empty (no options set around this call, no
    # bar): entering them costs microseconds per call, so only when they act
    quiet = label is None and not grad_kwargs and not _AUTOGRAD_OPTIONS.get()
    try:
        if quiet:
            result = _run_native(facade, spec, call, options, inputs, extra, future, captum_names)
        else:
            with autograd_options(grad_kwargs), progress_bar(label):
                result = _run_native(
                    facade, spec, call, options, inputs, extra, future, captum_names
                )
    except (ParameterError, ParameterTypeError) as error:
        raise _reworded(error, owner, spec, captum_names) from None
    except _FutureFailed as failed:
        if not future:
            raise failed.error from None
        broken: torch.futures.Future = torch.futures.Future()
        broken.set_exception(failed.error)
        return broken
    returned = spec.returns(result, call)
    if not future:
        return returned
    done: torch.futures.Future = torch.futures.Future()
    done.set_result(returned)
    return done
