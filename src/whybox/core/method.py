"""The ``Method`` template every native attribution method follows.

scikit-learn style:

* ``__init__`` stores its arguments and nothing else;
* each method declares its parameters' constraints ONCE (``parameters``, merged over the
  class hierarchy), for constructor and call options alike;
* ``attribute`` is wrapped by the template at class creation, so before the method's own
  maths runs, every declared parameter is checked with the library's one message format,
  the model is checked (callable; an eager ``nn.Module`` where the method needs one;
  a compiled module is explained through its original module) and the layer is checked
  (an ``nn.Module`` that belongs to the model).

A method body therefore holds only its maths. ``from_options`` splits a flat keyword
dictionary into constructor and call options, which is how ``whybox.explain``, the CLI
and the web app build any registered method by name.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from .inputs import prepare_inputs
from .model_checks import check_layer_in_model, explainable_model
from .validation import check_bool, check_choice, check_int, check_real, fail

__all__ = [
    "Method",
    "Constraint",
    "Bool",
    "Int",
    "Real",
    "Choice",
    "IsCallable",
    "Check",
    "resolve_layer",
]


# -- declared constraints ------------------------------------------------------------------
class Constraint:
    """A declared rule for one parameter: ``constraint(owner, name, value)`` raises the
    uniform error (see :mod:`whybox.core.validation`) when ``value`` breaks it."""

    def __call__(self, owner: str, name: str, value: Any) -> None:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Bool(Constraint):
    """A ``bool`` (not an int)."""

    def __call__(self, owner: str, name: str, value: Any) -> None:
        check_bool(owner, name, value)


@dataclass(frozen=True)
class Int(Constraint):
    """An ``int`` (bools rejected) within optional bounds, optionally ``None``."""

    minimum: int | None = None
    maximum: int | None = None
    allow_none: bool = False

    def __call__(self, owner: str, name: str, value: Any) -> None:
        check_int(
            owner,
            name,
            value,
            minimum=self.minimum,
            maximum=self.maximum,
            allow_none=self.allow_none,
        )


@dataclass(frozen=True)
class Real(Constraint):
    """A real number within optional bounds, optionally ``None``."""

    minimum: float | None = None
    maximum: float | None = None
    strict_minimum: bool = False
    allow_none: bool = False

    def __call__(self, owner: str, name: str, value: Any) -> None:
        check_real(
            owner,
            name,
            value,
            minimum=self.minimum,
            maximum=self.maximum,
            strict_minimum=self.strict_minimum,
            allow_none=self.allow_none,
        )


@dataclass(frozen=True)
class Choice(Constraint):
    """One of a fixed set of values."""

    options: tuple[Any, ...]

    def __call__(self, owner: str, name: str, value: Any) -> None:
        check_choice(owner, name, value, self.options)


@dataclass(frozen=True)
class IsCallable(Constraint):
    """A callable, optionally ``None``."""

    allow_none: bool = True

    def __call__(self, owner: str, name: str, value: Any) -> None:
        if value is None and self.allow_none:
            return
        if not callable(value):
            expected = "a callable" + (" or None" if self.allow_none else "")
            fail(owner, name, expected, value, type_error=True)


@dataclass(frozen=True)
class Check(Constraint):
    """Any other rule, given as ``check(owner, name, value)`` raising the uniform error."""

    check: Callable[[str, str, Any], Any]

    def __call__(self, owner: str, name: str, value: Any) -> None:
        self.check(owner, name, value)


# -- the template -------------------------------------------------------------------------
class _TemplateState(threading.local):
    """Per thread: the method objects whose ``attribute`` is running (outermost first)."""

    #: the default every thread starts from (read without ``getattr``'s default)
    active: tuple = ()


_TEMPLATE_STATE = _TemplateState()


_EMPTY = inspect.Parameter.empty
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD


class _Binder:
    """Binds a call of an ``attribute(self, inputs, *, option=default, ..., **extra)``
    (``**extra`` optional) without ``inspect.Signature.bind`` (tens of microseconds per
    call on tiny jobs).

    :meth:`bind` returns what ``bind(...)`` + ``apply_defaults()`` give as
    ``arguments`` (in signature order; ``**extra``'s name holds the dict of the other
    keywords), or ``None`` when the call or the signature is not of that plain form
    (positional options, unknown options without ``**extra``, missing options): the caller
    then binds with ``inspect``, which also words the errors. :meth:`call_kwargs` turns
    those arguments back into the keywords to call ``attribute`` with.
    """

    def __init__(self, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        var_keyword = params[-1].name if params and params[-1].kind is _VAR_KEYWORD else None
        options = params[2 : len(params) - (var_keyword is not None)]
        plain = (
            len(params) >= 2
            and all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:2])
            and params[1].default is _EMPTY
            and all(p.kind is p.KEYWORD_ONLY for p in options)
        )
        self.plain = plain
        self.first = params[0].name if params else ""
        self.second = params[1].name if len(params) > 1 else ""
        self.defaults = {p.name: p.default for p in options} if plain else {}
        #: options without a default (keyword-only and required)
        self.required = tuple(name for name, d in self.defaults.items() if d is _EMPTY)
        self.var_keyword = var_keyword if plain else None

    def bind(self, runner: Any, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        if not self.plain:
            return None
        if len(args) == 1 and self.second not in kwargs:
            inputs = args[0]
        elif not args and self.second in kwargs:
            kwargs = dict(kwargs)
            inputs = kwargs.pop(self.second)
        else:
            return None
        defaults = self.defaults
        if kwargs.keys() <= defaults.keys():
            # declared options only, the common case: the defaults overridden in place keep
            # the signature's order
            for name in self.required:
                if name not in kwargs:
                    return None  # a required option is missing: inspect says so
            arguments = {self.first: runner, self.second: inputs, **defaults, **kwargs}
            if self.var_keyword is not None:
                arguments[self.var_keyword] = {}
            return arguments
        if self.var_keyword is None:
            return None
        extra = {name: value for name, value in kwargs.items() if name not in defaults}
        if self.first in extra:
            return None  # "multiple values for argument": inspect says so
        arguments = {self.first: runner, self.second: inputs}
        for name, default in defaults.items():
            value = kwargs.get(name, default)
            if value is _EMPTY:
                return None  # a required option is missing: inspect says so
            arguments[name] = value
        arguments[self.var_keyword] = extra
        return arguments

    def call_kwargs(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The keywords that call ``attribute`` with bound ``arguments``."""
        if self.var_keyword is None:
            return arguments
        kwargs = dict(arguments)
        kwargs.update(kwargs.pop(self.var_keyword))
        return kwargs


def _templated(attribute: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a method's ``attribute``: validate everything declared, then run the maths."""
    signature = inspect.signature(attribute)
    binder = _Binder(signature)
    defaults = binder.defaults

    @functools.wraps(attribute)
    def run(self: Method, *args: Any, **kwargs: Any) -> Any:
        # a subclass calling ``super().attribute`` (or a method calling another's) has been
        # validated already by the outer call on the same object
        active = _TEMPLATE_STATE.active
        if active and any(obj is self for obj in active):
            return attribute(self, *args, **kwargs)
        runner = self._validated()
        arguments = binder.bind(runner, args, kwargs)
        if arguments is None:
            try:
                bound = signature.bind(runner, *args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{type(self).__name__}.attribute(): {error}") from None
            bound.apply_defaults()
            arguments = bound.arguments
            call_args, call_kwargs = bound.args, bound.kwargs
        else:
            call_args, call_kwargs = (), binder.call_kwargs(arguments)
        # a declared option left at its default needs no check (every default is valid:
        # tests/core/test_method_template.py)
        runner._check_call_options(arguments, defaults=defaults)
        if runner._is_empty_batch(arguments):
            return runner._empty_result(arguments)
        _TEMPLATE_STATE.active = active + (runner,)
        try:
            return attribute(*call_args, **call_kwargs)
        finally:
            _TEMPLATE_STATE.active = active

    run.__wrapped_by_template__ = True  # type: ignore[attr-defined]
    return run


class Method:
    """A native attribution method (the template).

    Subclasses write ``attribute(inputs, *, ...) -> Explanation`` with keyword-only
    options and only their own maths; they declare constraints in ``parameters`` (merged
    with their bases'), and set ``needs_module`` when they act through module rules
    (DeepLift, guided backprop, LRP): the template then refuses plain functions and
    TorchScript with a clear error instead of silently returning plain gradients.
    """

    name: ClassVar[str] = ""
    #: whether the method defines a completeness (convergence) delta
    has_delta: ClassVar[bool] = False
    #: whether the method rewrites module gradients through hooks (needs an eager module)
    needs_module: ClassVar[bool] = False
    #: whether the method needs a ``layer`` (Grad-CAM, conductance, ...)
    needs_layer: ClassVar[bool] = False
    #: declared constraints of constructor and call options (merged over the hierarchy)
    parameters: ClassVar[Mapping[str, Constraint]] = {
        "multiply_by_inputs": Bool(),
        "attribute_to_layer_input": Bool(),
        "show_progress": Bool(),
        "return_delta": Bool(),
    }

    def __init__(
        self,
        model: Any,
        *,
        multiply_by_inputs: bool = True,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> None:
        self.model = model
        self.multiply_by_inputs = multiply_by_inputs
        self.layer = layer
        self.attribute_to_layer_input = attribute_to_layer_input

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        merged: dict[str, Constraint] = {}
        for base in reversed(cls.__mro__[1:]):
            merged.update(base.__dict__.get("parameters", {}))
        merged.update(cls.__dict__.get("parameters", {}))
        cls.parameters = merged
        own = cls.__dict__.get("attribute")
        if own is not None and not getattr(own, "__wrapped_by_template__", False):
            cls.attribute = _templated(own)

    # -- validation, run once per call before the maths -----------------------------------
    @property
    def owner(self) -> str:
        """The name used in error messages."""
        return type(self).__name__

    def _validated(self) -> Method:
        """Check constructor options, the model and the layer; return the object to run.

        Returns ``self``, or a shallow copy whose ``model`` is what can actually be
        explained (a compiled module's original module) when that differs.
        """
        owner = self.owner
        held = self.__dict__
        for name, constraint in self.parameters.items():
            if name in held:
                value = held[name]
                # a bool passes ``Bool`` (``check_bool``): no call needed
                if (value is True or value is False) and type(constraint) is Bool:
                    continue
                constraint(owner, name, value)
        model = self.model
        if not callable(model):
            fail(owner, "model", "a callable (a model or a function)", model)
        if self.needs_layer and self.layer is None:
            fail(owner, "layer", "an nn.Module of the model", None)
        needs_hooks = self.needs_module or self.layer is not None
        if needs_hooks:
            explained = explainable_model(
                model, owner=owner, needs_hooks=True, needs_module_rules=self.needs_module
            )
        else:
            explained = model  # what ``explainable_model`` gives a method without hooks
        if self.needs_module and not isinstance(explained, nn.Module):
            fail(
                owner,
                "model",
                "an nn.Module (the method rewrites gradients of its submodules)",
                model,
                type_error=True,
            )
        if self.layer is not None:
            layers = self.layer if isinstance(self.layer, (list, tuple)) else (self.layer,)
            if not layers or not all(isinstance(m, nn.Module) for m in layers):
                fail(
                    owner, "layer", "an nn.Module or a list of nn.Modules of the model", self.layer
                )
            for layer in layers:
                check_layer_in_model(explained, layer, owner=owner)
        if explained is model:
            return self
        runner = copy.copy(self)
        runner.model = explained
        return runner

    def _check_call_options(
        self, arguments: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None
    ) -> None:
        """Check every declared call option in ``arguments``, in order; one whose value is
        its signature default (``defaults``, the very object) is valid and skipped."""
        owner = self.owner
        parameters = self.parameters
        defaults = defaults or {}
        for name, value in arguments.items():
            constraint = parameters.get(name)
            if constraint is not None and not (name in defaults and value is defaults[name]):
                # a bool passes ``Bool`` (``check_bool``): no call needed
                if (value is True or value is False) and type(constraint) is Bool:
                    continue
                constraint(owner, name, value)

    # -- empty batches: an empty result of the right shapes, never a crash ---------------
    def _is_empty_batch(self, arguments: Mapping[str, Any]) -> bool:
        if "inputs" not in arguments:
            return False
        inputs = arguments["inputs"]
        if isinstance(inputs, Tensor) and inputs.dim() > 0:
            return inputs.shape[0] == 0  # the common case, without flattening
        try:
            prepared = prepare_inputs(arguments["inputs"], owner=self.owner)
        except (TypeError, ValueError):
            return False  # the method's own checks will report the inputs
        return prepared.batch_size == 0

    def _empty_result(self, arguments: Mapping[str, Any]) -> Any:
        """The result for ``N = 0`` inputs: zero-row attributions shaped like one result
        row would be (methods whose output is not input- or layer-shaped override this)."""
        raise NotImplementedError  # provided by whybox.methods.base.Method

    # -- building by name ----------------------------------------------------------------
    @classmethod
    def option_names(cls) -> tuple[frozenset[str], frozenset[str]]:
        """``(constructor options, call options)`` by name (``model`` and ``inputs`` excluded)."""
        return _option_names(cls.__init__, skip=1), _option_names(cls.attribute, skip=1)

    @classmethod
    def from_options(cls, model: Any, options: Mapping[str, Any]) -> tuple[Method, dict[str, Any]]:
        """Build the method from a flat dictionary of options.

        Constructor options (``layer``, ``multiply_by_inputs``, ...) go to ``__init__``;
        the rest are returned as call options for ``attribute``. A ``layer`` given as a
        string is looked up in the model (``"features.3"``). Unknown options raise a
        ``TypeError`` listing the valid ones.

        Returns
        -------
        (Method, dict)
            The method and the options for its ``attribute``.
        """
        init_names, call_names = cls.option_names()
        init_options = {k: v for k, v in options.items() if k in init_names}
        call_options = {k: v for k, v in options.items() if k not in init_names}
        unknown = sorted(set(call_options) - call_names - {"inputs"})
        if unknown and not _takes_var_keyword(cls.attribute):
            fail(
                cls.__name__,
                unknown[0],
                "one of its options: constructor "
                f"{sorted(init_names)} or call {sorted(call_names)}",
                f"an unknown option {unknown[0]!r}",
                type_error=True,
                raw=True,
            )
        if "layer" in init_options:
            init_options["layer"] = resolve_layer(model, init_options["layer"], owner=cls.__name__)
        return cls(model, **init_options), call_options


def resolve_layer(model: Any, layer: Any, *, owner: str) -> Any:
    """A layer given by name (``"features.3"``, or a list of names) -> the model's module."""
    if isinstance(layer, (list, tuple)):
        return type(layer)(resolve_layer(model, item, owner=owner) for item in layer)
    if not isinstance(layer, str):
        return layer
    if not isinstance(model, nn.Module):
        fail(owner, "layer", "an nn.Module (a name needs the model to be an nn.Module)", layer)
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name][:20]
        fail(owner, "layer", f"the name of a submodule of the model (e.g. {names})", layer)


@functools.lru_cache(maxsize=1024)  # signatures of method classes: read once, not per call
def _option_names(func: Callable[..., Any], *, skip: int) -> frozenset[str]:
    """Names of ``func``'s options: its parameters after ``self`` and the first argument
    (the model, or the inputs), without ``*args`` / ``**kwargs``."""
    parameters = list(inspect.signature(func).parameters.values())[skip + 1 :]
    return frozenset(p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


@functools.lru_cache(maxsize=1024)
def _takes_var_keyword(func: Callable[..., Any]) -> bool:
    return any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(inspect.unwrap(func)).parameters.values()
    )
