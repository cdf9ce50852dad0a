"""Progress bars with the interface of Captum's ``captum._utils.progress``.

:func:`progress` returns a ``tqdm`` bar (``tqdm.auto``), or, with ``use_tqdm=False`` or
without ``tqdm`` installed, a :class:`SimpleProgress` that writes one line of text
(``"desc: 40% 2/5"``, redrawn in place with ``\\r``). :class:`NullProgress` has the same
interface and shows nothing. All three work as iterables over an ``iterable``, with manual
:meth:`update` calls, and as context managers.

Captum 0.9 dropped its text fallback and passes ``use_tqdm`` on to ``tqdm`` (which refuses
it); whybox keeps the fallback, as earlier Captum versions had it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TextIO, TypeVar, runtime_checkable

__all__ = [
    "BaseProgress",
    "IterableProgress",
    "Progress",
    "DisableErrorIOWrapper",
    "NullProgress",
    "SimpleProgress",
    "progress",
]

T = TypeVar("T")
IterableType = TypeVar("IterableType", covariant=True)


@runtime_checkable
class BaseProgress(Protocol):
    """A progress bar that closes, and works as a context manager."""

    def __enter__(self) -> Any: ...

    def __exit__(self, exc_type: object, exc_value: object, exc_traceback: object) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class IterableProgress(BaseProgress, Iterable[IterableType], Protocol[IterableType]):
    """A progress bar over an iterable."""


@runtime_checkable
class Progress(BaseProgress, Protocol):
    """A progress bar advanced by hand."""

    def update(self, n: float | None = 1) -> bool | None: ...


class DisableErrorIOWrapper:
    """A text stream whose ``write`` / ``flush`` ignore a closed or broken stream.

    Parameters
    ----------
    wrapped : TextIO
        The stream written to.
    """

    def __init__(self, wrapped: TextIO) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> object:
        return getattr(self._wrapped, name)

    def _quietly(self, name: str, *args: object, **kwargs: object) -> Any:
        try:
            return getattr(self._wrapped, name)(*args, **kwargs)
        except OSError as error:
            if error.errno != 5:  # EIO: the terminal went away
                raise
        except ValueError as error:
            if "closed" not in str(error):
                raise
        return None

    def write(self, *args: object, **kwargs: object) -> int | None:
        """Write, ignoring a closed or broken stream."""
        return self._quietly("write", *args, **kwargs)

    def flush(self, *args: object, **kwargs: object) -> None:
        """Flush, ignoring a closed or broken stream."""
        return self._quietly("flush", *args, **kwargs)


class NullProgress:
    """The progress interface, showing nothing (a stand-in for an optional bar).

    Parameters
    ----------
    iterable : iterable, optional
        What iterating the bar yields (nothing without it).
    *args, **kwargs
        Ignored (any bar's arguments are accepted).
    """

    def __init__(self, iterable: Iterable[Any] | None = None, *args: Any, **kwargs: Any) -> None:
        del args, kwargs
        self.iterable = iterable

    def __iter__(self) -> Iterator[Any]:
        if self.iterable:
            yield from self.iterable

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, exc_type: object, exc_value: object, exc_traceback: object) -> None:
        self.close()

    def update(self, n: float | None = 1) -> bool | None:
        """Do nothing."""
        return None

    def close(self) -> None:
        """Do nothing."""


class SimpleProgress:
    """A one-line text progress bar: ``"desc: 40% 2/5"`` redrawn in place.

    Without a known total (no ``total`` and an iterable without ``len``) the line shows a
    growing row of dots, and ``"desc: ..."`` when done. The line is drawn when the bar
    starts, at most every ``mininterval`` seconds after, and once more when it closes
    (followed by a newline).

    Parameters
    ----------
    iterable : iterable, optional
        What iterating the bar yields; the bar closes when it is exhausted.
    desc : str, optional
        The label before the count.
    total : int, optional
        The number of steps (default: ``len(iterable)`` when it has one).
    file : TextIO, optional
        Where to write (default: ``sys.stderr`` at construction).
    mininterval : float, default 0.5
        The least number of seconds between two redraws.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        desc: str | None = None,
        total: int | None = None,
        file: TextIO | None = None,
        mininterval: float = 0.5,
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total = total
        self.file = DisableErrorIOWrapper(sys.stderr if file is None else file)
        self.mininterval = mininterval
        self.n = 0
        self.closed = False
        self._last_draw = 0.0
        self._draw()

    def _line(self) -> str:
        prefix = f"{self.desc}: " if self.desc else ""
        if self.total:
            percent = int(100 * self.n / self.total)
            return f"{prefix}{percent}% {self.n}/{self.total}"
        if self.closed:
            return f"{prefix}..."
        return prefix + "." * (self.n % 4)

    def _draw(self, force: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self.mininterval:
            return
        self._last_draw = now
        self.file.write("\r" + self._line())
        self.file.flush()

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this SimpleProgress has no iterable to iterate over")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> SimpleProgress:
        return self

    def __exit__(self, exc_type: object, exc_value: object, exc_traceback: object) -> None:
        self.close()

    def update(self, n: float | None = 1) -> bool | None:
        """Advance by ``n`` steps (redrawn at most every ``mininterval`` seconds)."""
        if not self.closed:
            self.n += int(n or 0)
            self._draw(force=False)
        return None

    def close(self) -> None:
        """Draw the final line and end it (once)."""
        if self.closed:
            return
        self.closed = True
        self.file.write("\r" + self._line() + "\n")
        self.file.flush()


def progress(
    iterable: Iterable[Any] | None = None,
    desc: str | None = None,
    total: int | None = None,
    file: TextIO | None = None,
    mininterval: float = 0.5,
    use_tqdm: bool = True,
    **kwargs: Any,
) -> Any:
    """A progress bar: ``tqdm`` when wanted and installed, else :class:`SimpleProgress`.

    Parameters
    ----------
    iterable : iterable, optional
        What iterating the bar yields; without it, advance the bar with ``update``.
    desc : str, optional
        The bar's label.
    total : int, optional
        The number of steps (default: ``len(iterable)`` when it has one).
    file : TextIO, optional
        Where to write (default: standard error).
    mininterval : float, default 0.5
        The least number of seconds between two redraws.
    use_tqdm : bool, default True
        Use ``tqdm.auto.tqdm`` if it is installed.
    **kwargs
        Passed on to ``tqdm`` (ignored by :class:`SimpleProgress`).

    Returns
    -------
    tqdm or SimpleProgress
    """
    if use_tqdm:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency of whybox
            pass
        else:
            return tqdm(
                iterable, desc=desc, total=total, file=file, mininterval=mininterval, **kwargs
            )
    return SimpleProgress(iterable, desc=desc, total=total, file=file, mininterval=mininterval)
