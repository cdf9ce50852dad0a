"""Streaming statistics for :mod:`whybox.attr`'s summarizers (Captum 0.9's ``stat`` names).

A :class:`Stat` is updated with one observation at a time (``update(x)``, any shape; the
statistic is elementwise over observations) and read with ``get()``. Statistics depend on
each other -- ``StdDev -> Var -> MSE -> Mean -> Count`` -- and find the statistics they need
through the summarizer that owns them (``_get_stat``), as in Captum, so a summarizer holds
each statistic once.

The mean and the sum of squared deviations are Welford's updates (West 1979; Chan, Golub
and LeVeque 1983 for merging a batch), so large offsets (``1e8 + N(0, 1)``) lose no
precision, unlike the naive ``E[x^2] - E[x]^2``. Besides Captum's one-observation
``update``, the built-in statistics merge a whole batch of observations at once
(:meth:`Stat._update_rows`), which the summarizers use for ``update_batch`` and for
:class:`~whybox.attr.ClassSummarizer`'s labelled batches.

Dtypes follow Captum: the mean keeps a floating input's dtype (float64 for integer
inputs); variance and standard deviation are float64; min / max / sum keep the input's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, Union

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ._summarizer import SummarizerSingleTensor

__all__ = [
    "StatValue",
    "Stat",
    "Count",
    "Mean",
    "MSE",
    "Var",
    "StdDev",
    "GeneralAccumFn",
    "Min",
    "Max",
    "Sum",
    "CommonStats",
]

#: what ``Stat.get`` returns (Captum's alias): a tensor, or a Python number (``Count``)
StatValue = Union[Tensor, int, float]  # noqa: UP007 - the same typing object as Captum's

_S = TypeVar("_S", bound="Stat")


class Stat:
    """A statistic updated one observation at a time (Captum-compatible base class).

    Parameters
    ----------
    name : str, optional
        The key of this statistic in a summary. Default: the lower-cased class name,
        followed by its parameters when it has any.
    **kwargs
        The statistic's parameters. Two statistics of the same class and parameters are
        equal (and hash alike) whatever their names, so a summarizer keeps one of them.

    Notes
    -----
    Subclasses implement ``update(x)`` and ``get()``, and may look up the statistics they
    depend on in ``init()`` with ``self._get_stat(Mean())``. A subclass that also
    implements ``_update_rows`` (a batch of observations at once) sets ``_rows_match`` to
    its ``update`` so summarizers know the two agree; otherwise summarizers feed it one
    observation at a time.
    """

    #: the ``update`` that ``_update_rows`` vectorises (``None``: no batched update)
    _rows_match: Callable[..., None] | None = None

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        self.params: dict[str, Any] = kwargs
        self._name = name
        self._other_stats: SummarizerSingleTensor | None = None

    def init(self) -> None:
        """Look up the statistics this one depends on (called by the summarizer)."""

    def _requires(self) -> list[Stat]:
        """The statistics ``init`` looks up; summarizers add the missing ones."""
        return []

    def _get_stat(self, stat: _S) -> _S | None:
        if self._other_stats is None:
            raise RuntimeError(
                f"{type(self).__name__} is not part of a summarizer; create it through "
                "Summarizer(stats=[...])."
            )
        return self._other_stats.get(stat)  # type: ignore[return-value]

    def update(self, x: Tensor) -> None:
        """Add one observation ``x``."""
        raise NotImplementedError

    def get(self) -> StatValue | None:
        """The statistic so far (``None`` before the first observation)."""
        raise NotImplementedError

    def _can_update_rows(self) -> bool:
        # a subclass that overrides update() without _rows_match is fed row by row
        # looked up on the class: through the instance it would be a bound method
        match = type(self)._rows_match
        return match is not None and type(self).update is match

    def _update_rows(self, rows: Tensor) -> None:
        """Add every slice ``rows[i]`` as one observation (same result as ``update`` on
        each, up to rounding)."""
        for row in rows:
            self.update(row)

    def __hash__(self) -> int:
        return hash((type(self), frozenset(self.params.items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stat):
            return False
        return type(self) is type(other) and self.params == other.params

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    @property
    def name(self) -> str:
        """The key of this statistic in a summary (see :class:`~whybox.attr.Summarizer`)."""
        if self._name is not None:
            return self._name
        default = type(self).__name__.lower()
        return f"{default}({self.params})" if self.params else default

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Count(Stat):
    """The number of observations (``update`` calls); ``get()`` is an ``int``."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.n: int | None = None

    def get(self) -> int | None:
        return self.n

    def update(self, x: Tensor) -> None:
        self.n = (self.n or 0) + 1

    _rows_match = update

    def _update_rows(self, rows: Tensor) -> None:
        self.n = (self.n or 0) + int(rows.shape[0])


def _floating(x: Tensor) -> Tensor:
    # integer observations are averaged in float64, as Captum does
    return x if x.is_floating_point() or x.is_complex() else x.double()


class Mean(Stat):
    """The elementwise mean of the observations (Welford's running mean)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.rolling_mean: Tensor | None = None
        self.n: Count | None = None

    def _requires(self) -> list[Stat]:
        return [Count()]

    def init(self) -> None:
        self.n = self._get_stat(Count())

    def get(self) -> Tensor | None:
        return self.rolling_mean

    def _count(self) -> int:
        n = None if self.n is None else self.n.get()
        if n is None:
            raise RuntimeError("Mean needs its Count to be updated first (use a Summarizer).")
        return n

    def update(self, x: Tensor) -> None:
        n = self._count()
        if self.rolling_mean is None:
            self.rolling_mean = _floating(x).clone()
        else:
            self.rolling_mean = self.rolling_mean + (x - self.rolling_mean) / n

    _rows_match = update

    def _update_rows(self, rows: Tensor) -> None:
        n, b = self._count(), int(rows.shape[0])
        batch_mean = _floating(rows).mean(dim=0)
        if self.rolling_mean is None:
            self.rolling_mean = batch_mean
        else:
            # merge of two means (Chan et al.): mean += (batch_mean - mean) * b / n
            self.rolling_mean = self.rolling_mean + (batch_mean - self.rolling_mean) * (b / n)


class MSE(Stat):
    """The elementwise sum of squared deviations from the mean, ``sum_i (x_i - mean)^2``
    (Welford's ``M2``; Captum's name). Zeros after one observation."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.prev_mean: Tensor | None = None
        self.mse: Tensor | None = None
        self.mean: Mean | None = None
        self._n: Count | None = None

    def _requires(self) -> list[Stat]:
        return [Mean(), Count()]

    def init(self) -> None:
        self.mean = self._get_stat(Mean())
        self._n = self._get_stat(Count())

    def get(self) -> Tensor | None:
        if self.mse is None and self.prev_mean is not None:
            return torch.zeros_like(self.prev_mean)
        return self.mse

    def _add(self, increment: Tensor) -> None:
        self.mse = increment if self.mse is None else self.mse + increment

    def update(self, x: Tensor) -> None:
        mean = None if self.mean is None else self.mean.get()
        if mean is None:
            return
        if self.prev_mean is not None:
            # Welford: M2 += (x - old mean) * (x - new mean)
            self._add((x - self.prev_mean) * (x - mean))
        self.prev_mean = mean.clone()

    _rows_match = update

    def _update_rows(self, rows: Tensor) -> None:
        mean = None if self.mean is None else self.mean.get()
        n = None if self._n is None else self._n.get()
        if mean is None or n is None:
            return
        b = int(rows.shape[0])
        floating = _floating(rows)
        batch_mean = floating.mean(dim=0)
        # two-pass within the batch, then Chan et al.'s merge with what came before
        batch_m2 = (floating - batch_mean).square().sum(dim=0)
        if self.prev_mean is None:
            if b > 1:
                self._add(batch_m2)
        else:
            n_before = n - b
            delta = batch_mean - self.prev_mean
            self._add(batch_m2 + delta.square() * (n_before * b / n))
        self.prev_mean = mean.clone()


class Var(Stat):
    """The elementwise variance ``MSE / (n - order)`` in float64.

    Parameters
    ----------
    name : str, optional
        Default ``"variance"`` (``order=0``), ``"sample_variance"`` (``order=1``), else
        ``"variance(<order>)"``.
    order : int
        Degrees of freedom subtracted from the count: 0 for the population variance, 1
        for the sample variance. Zeros while ``n <= order``.
    """

    def __init__(self, name: str | None = None, order: int = 0) -> None:
        if name is None:
            name = {0: "variance", 1: "sample_variance"}.get(order, f"variance({order})")
        super().__init__(name=name, order=order)
        self.order = order
        self.mse_stat: MSE | None = None
        self.n_stat: Count | None = None

    def _requires(self) -> list[Stat]:
        return [MSE(), Count()]

    def init(self) -> None:
        self.mse_stat = self._get_stat(MSE())
        self.n_stat = self._get_stat(Count())

    def update(self, x: Tensor) -> None:
        pass  # computed from MSE and Count on get()

    _rows_match = update

    def _update_rows(self, rows: Tensor) -> None:
        pass

    def get(self) -> Tensor | None:
        mse = None if self.mse_stat is None else self.mse_stat.get()
        if mse is None:
            return None
        n = None if self.n_stat is None else self.n_stat.get()
        if n is None or n <= self.order:
            return torch.zeros_like(mse)
        return mse.to(torch.float64) / (n - self.order)


class StdDev(Stat):
    """The elementwise standard deviation, ``sqrt(Var(order))``, in float64.

    Parameters
    ----------
    name : str, optional
        Default ``"std_dev"`` (``order=0``), ``"sample_std_dev"`` (``order=1``), else
        ``"std_dev(<order>)"`` (Captum 0.9 writes ``"std_dev<order>)"``, a typo).
    order : int
        As :class:`Var`.
    """

    def __init__(self, name: str | None = None, order: int = 0) -> None:
        if name is None:
            name = {0: "std_dev", 1: "sample_std_dev"}.get(order, f"std_dev({order})")
        super().__init__(name=name, order=order)
        self.order = order
        self.var_stat: Var | None = None

    def _requires(self) -> list[Stat]:
        return [Var(order=self.order)]

    def init(self) -> None:
        self.var_stat = self._get_stat(Var(order=self.order))

    def update(self, x: Tensor) -> None:
        pass  # computed from Var on get()

    _rows_match = update

    def _update_rows(self, rows: Tensor) -> None:
        pass

    def get(self) -> Tensor | None:
        var = None if self.var_stat is None else self.var_stat.get()
        return None if var is None else var.sqrt()


#: accumulating functions whose fold over a batch is one reduction
_FOLDS: dict[Callable[..., Any], Callable[[Tensor], Tensor]] = {
    torch.min: lambda rows: rows.amin(dim=0),
    torch.minimum: lambda rows: rows.amin(dim=0),
    torch.max: lambda rows: rows.amax(dim=0),
    torch.maximum: lambda rows: rows.amax(dim=0),
    # torch.add keeps the dtype where sum widens integers
    torch.add: lambda rows: rows.sum(dim=0).to(rows.dtype),
}


def _fold(fn: Callable[..., Any]) -> Callable[[Tensor], Tensor] | None:
    try:
        return _FOLDS.get(fn)
    except TypeError:  # an unhashable callable
        return None


class GeneralAccumFn(Stat):
    """``result = fn(result, x)`` for each observation (the first is kept as is).

    Parameters
    ----------
    fn : callable
        ``fn(accumulated, x) -> accumulated``.
    name : str, optional
        The key in a summary; default the lower-cased class name.

    Notes
    -----
    The first observation is copied (Captum keeps a reference, so changing that tensor
    in place afterwards changed Captum's result).
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], name: str | None = None) -> None:
        super().__init__(name=name)
        self.result: Tensor | None = None
        self.fn = fn

    def get(self) -> Tensor | None:
        return self.result

    def update(self, x: Tensor) -> None:
        self.result = x.clone() if self.result is None else self.fn(self.result, x)

    _rows_match = update

    def _can_update_rows(self) -> bool:
        # a custom fn cannot be folded over a batch in one call
        return super()._can_update_rows() and _fold(self.fn) is not None

    def _update_rows(self, rows: Tensor) -> None:
        fold = _fold(self.fn)
        if fold is None:
            super()._update_rows(rows)
            return
        folded = fold(rows)
        self.result = folded if self.result is None else self.fn(self.result, folded)


class Min(GeneralAccumFn):
    """The elementwise minimum (``min_fn(accumulated, x)``, default ``torch.min``)."""

    def __init__(
        self, name: str | None = None, min_fn: Callable[[Tensor, Tensor], Tensor] = torch.min
    ) -> None:
        super().__init__(name=name, fn=min_fn)


class Max(GeneralAccumFn):
    """The elementwise maximum (``max_fn(accumulated, x)``, default ``torch.max``)."""

    def __init__(
        self, name: str | None = None, max_fn: Callable[[Tensor, Tensor], Tensor] = torch.max
    ) -> None:
        super().__init__(name=name, fn=max_fn)


class Sum(GeneralAccumFn):
    """The elementwise sum (``add_fn(accumulated, x)``, default ``torch.add``)."""

    def __init__(
        self, name: str | None = None, add_fn: Callable[[Tensor, Tensor], Tensor] = torch.add
    ) -> None:
        super().__init__(name=name, fn=add_fn)


def CommonStats() -> list[Stat]:  # noqa: N802 - Captum's name
    """The common summary: mean, sample variance, sample standard deviation, min and max.

    Returns
    -------
    list of Stat
        ``[Mean(), Var(order=1), StdDev(order=1), Min(), Max()]``.
    """
    return [Mean(), Var(order=1), StdDev(order=1), Min(), Max()]
