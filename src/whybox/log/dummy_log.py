"""Usage logging at Captum 0.9's ``captum.log.dummy_log`` path: every hook is a no-op.

whybox records nothing about how it is used. These names exist so that code written
against Captum (``from captum.log import log_usage``, test bases that call
``patch_methods``) runs unchanged after the rename.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

_Function = TypeVar("_Function", bound=Callable[..., Any])


def log(*args: Any, **kwargs: Any) -> None:
    """Record nothing (Captum's internal logger is not part of whybox)."""


class TimedLog:
    """A context manager that times and records nothing.

    Like Captum's, ``__exit__`` returns True when the block raised, which suppresses the
    exception; whybox keeps that behaviour so that Captum-style code sees the same
    control flow.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> TimedLog:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return exception_value is not None


def log_usage(*log_args: Any, **log_kwargs: Any) -> Callable[[_Function], _Function]:
    """Decorator factory: ``@log_usage()`` returns the function's behaviour unchanged.

    The wrapper keeps the function's name, docstring and signature (``functools.wraps``)
    and stays a coroutine function when it wraps one.
    """

    def decorate(function: _Function) -> _Function:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                return await function(*args, **kwargs)

            return call_async  # type: ignore[return-value]

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


def set_environment(env: None | list[str] | str) -> None:
    """Accept and ignore a logging environment name."""


def disable_detailed_logging() -> None:
    """Nothing to disable: whybox logs nothing."""


def patch_methods(_: Any, patch_log: bool = True) -> None:
    """Accept and ignore a test class (Captum's test base calls this in ``setUp``)."""
