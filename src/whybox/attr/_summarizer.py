"""Summaries of many tensors (attributions over a dataset), as Captum 0.9's summarizers.

:class:`Summarizer` keeps a set of statistics (:mod:`whybox.attr._stat`) per input; each
``update(x)`` is one observation, and ``summary`` maps each statistic's name to its value.
:class:`ClassSummarizer` does the same per class label, plus the summary over all classes.

Besides Captum's interface, :meth:`Summarizer.update_batch` adds every row of a batch
at once, and :class:`ClassSummarizer` merges all the rows of a class in one step instead of
one Python call per example (the same statistics, up to rounding).

Deliberate difference: Captum keys ``ClassSummarizer`` by the label objects as given, so
tensor labels (``labels=torch.tensor([0, 1, 0])``) make one class per *row* (a 0-d tensor
hashes by identity). whybox keys tensor labels by their values (``0`` and ``1``).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor

from ._assertion_errors import fail_assert
from ._stat import MSE, Count, Mean, Stat, StatValue, StdDev, Var

__all__ = ["Summarizer", "SummarizerSingleTensor", "ClassSummarizer", "KeyType"]

#: the type of ``ClassSummarizer``'s labels (Captum's type variable)
KeyType = TypeVar("KeyType")

#: update order of the statistics that depend on others (dependencies first); every other
#: statistic (min, max, sum, user statistics) comes after them
_ORDER: tuple[type[Stat], ...] = (Count, Mean, MSE, Var, StdDev)

Summary = dict[str, StatValue | None]


def _rank(stat: Stat) -> int:
    for cls in type(stat).__mro__:
        if cls in _ORDER:
            return _ORDER.index(cls)
    return len(_ORDER)


def _reorder_stats(stats: Iterable[Stat]) -> tuple[list[Stat], list[int]]:
    """All statistics to update (the requested ones and their dependencies, each once, in
    update order) and the indices of the requested ones among them."""
    requested: list[Stat] = []
    for stat in stats:
        if not isinstance(stat, Stat):
            fail_assert("Summarizer", "stats", "a list of Stat objects (Mean(), Var(), ...)", stat)
        if stat not in requested:  # equal statistics (same class and parameters) once
            requested.append(stat)
    everything = list(requested)
    pending = list(requested)
    while pending:
        for needed in pending.pop()._requires():
            if needed not in everything:
                everything.append(needed)
                pending.append(needed)
    ordered = sorted(everything, key=_rank)  # stable: the user's order within a rank
    return ordered, [i for i, stat in enumerate(ordered) if stat in requested]


class SummarizerSingleTensor:
    """The statistics of one tensor input (prefer :class:`Summarizer`).

    Parameters
    ----------
    stats : list of Stat
        Every statistic to update, dependencies included, in update order (dependencies
        first), as built by :class:`Summarizer`.
    summary_stats_indices : list of int
        Indices into ``stats`` of the statistics that :attr:`summary` shows.
    """

    def __init__(self, stats: list[Stat], summary_stats_indices: list[int]) -> None:
        self._stats = stats
        self._stat_to_stat = {stat: stat for stat in stats}
        self._summary_stats = [stats[i] for i in summary_stats_indices]
        for stat in stats:
            stat._other_stats = self
            stat.init()

    def update(self, x: Tensor) -> None:
        """Add one observation ``x`` to every statistic.

        Parameters
        ----------
        x : Tensor
            The observation (any shape, the same for every update).
        """
        for stat in self._stats:
            stat.update(x)

    def _update_rows(self, rows: Tensor) -> None:
        """Add each ``rows[i]`` as one observation, merged in one step where every statistic
        supports it (user statistics without a batched update get the rows one by one)."""
        if all(stat._can_update_rows() for stat in self._stats):
            for stat in self._stats:
                stat._update_rows(rows)
        else:
            for row in rows:
                self.update(row)

    def get(self, stat: Stat) -> Stat | None:
        """This summarizer's statistic equal to ``stat`` (same class and parameters), or
        ``None``.

        Parameters
        ----------
        stat : Stat
            A statistic of the class and parameters to look up.

        Returns
        -------
        Stat or None
        """
        return self._stat_to_stat.get(stat)

    @property
    def summary(self) -> Summary:
        """``{stat.name: stat.get()}`` for the requested statistics."""
        return {stat.name: stat.get() for stat in self._summary_stats}


def _as_observation(value: Any) -> Tensor:
    # Captum turns Python numbers into float32 tensors
    return value if isinstance(value, Tensor) else torch.tensor(value, dtype=torch.float)


class Summarizer:
    """Statistics of a stream of tensors (or tuples of tensors), one summary per input.

    Parameters
    ----------
    stats : list of Stat
        The statistics to report, e.g. ``[Mean(), Var(order=1)]`` or ``CommonStats()``.
        Their dependencies are added (and updated) automatically.

    Examples
    --------
    >>> import torch
    >>> from whybox.attr import Mean, Summarizer, Var
    >>> summ = Summarizer([Mean(), Var()])
    >>> for x in (torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])):
    ...     summ.update(x)
    >>> summ.summary["mean"]
    tensor([2., 4.])
    """

    def __init__(self, stats: list[Stat]) -> None:
        self._summarizers: list[SummarizerSingleTensor] = []
        self._is_inputs_tuple: bool | None = None
        self._stats, self._summary_stats_indicies = _reorder_stats(stats)

    def _copy_stats(self) -> list[Stat]:
        # each input gets its own statistics (inputs may differ in shape)
        return copy.deepcopy(self._stats)

    def _check_form(self, is_tuple: bool) -> None:
        if self._is_inputs_tuple is None:
            self._is_inputs_tuple = is_tuple
        elif self._is_inputs_tuple != is_tuple:
            fail_assert(
                type(self).__name__,
                "x",
                "a tuple in every update or in none (as in the first update)",
                f"a {'tuple' if is_tuple else 'single value'} after "
                f"{'tuples' if self._is_inputs_tuple else 'single values'}",
                raw=True,
            )

    def _summarizer(self, i: int) -> SummarizerSingleTensor:
        while len(self._summarizers) <= i:
            self._summarizers.append(
                SummarizerSingleTensor(self._copy_stats(), self._summary_stats_indicies)
            )
        return self._summarizers[i]

    def update(self, x: float | Tensor | tuple[float | Tensor, ...]) -> None:
        """Add one observation.

        Parameters
        ----------
        x : Tensor, number, or tuple of them
            One observation of each input; a tuple in every update or in none. Numbers
            become float32 tensors.
        """
        is_tuple = isinstance(x, tuple)
        self._check_form(is_tuple)
        for i, value in enumerate(x if is_tuple else (x,)):
            self._summarizer(i).update(_as_observation(value))

    def update_batch(self, x: Tensor | tuple[Tensor, ...]) -> None:
        """Add every row of a batch as one observation (whybox extension).

        Equal, up to rounding, to ``update(x[i])`` (``update(tuple(t[i] for t in x))``
        for a tuple) for each row ``i`` in order, in one vectorised step.

        Parameters
        ----------
        x : Tensor or tuple of Tensor
            Observations along the first dimension (the same number in each tensor).
        """
        is_tuple = isinstance(x, tuple)
        leaves = tuple(x) if is_tuple else (x,)
        owner = f"{type(self).__name__}.update_batch"
        for leaf in leaves:
            if not isinstance(leaf, Tensor) or leaf.dim() == 0:
                fail_assert(owner, "x", "a tensor or tuple of tensors with a batch dimension", leaf)
        rows = {int(leaf.shape[0]) for leaf in leaves}
        if len(rows) > 1:
            fail_assert(owner, "x", "tensors with the same first dimension", x)
        if not leaves or rows == {0}:
            return
        self._check_form(is_tuple)
        for i, leaf in enumerate(leaves):
            self._summarizer(i)._update_rows(leaf)

    @property
    def summary(self) -> Summary | list[Summary] | None:
        """``{stat.name: value}`` (a list of them, one per input, for tuple updates);
        ``None`` before the first update."""
        if not self._summarizers:
            return None
        summaries = [summarizer.summary for summarizer in self._summarizers]
        return summaries if self._is_inputs_tuple else summaries[0]


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _label_keys(labels: Any) -> list[Any]:
    """One key per label; tensor labels by value (a 0-d tensor hashes by identity), read
    from the device once."""
    if isinstance(labels, Tensor):
        return [_hashable(v) for v in labels.tolist()] if labels.dim() else [labels.item()]
    return [
        label.item() if isinstance(label, Tensor) and label.numel() == 1 else label
        for label in labels
    ]


class ClassSummarizer(Summarizer, Generic[KeyType]):
    """A :class:`Summarizer` per class label, plus the summary over every class.

    Parameters
    ----------
    stats : list of Stat
        As :class:`Summarizer`.

    Notes
    -----
    ``update(x, labels)`` treats the first dimension of ``x`` as the batch: each row is one
    observation of its label's summarizer and of the overall one. The rows of each label
    are merged in one step. Tensor labels are keyed by value (see the module notes).
    """

    def __init__(self, stats: list[Stat]) -> None:
        super().__init__(stats)
        self.summaries: dict[Any, Summarizer] = defaultdict(lambda: Summarizer(stats=stats))

    def update(  # type: ignore[override]
        self, x: Tensor | tuple[Tensor, ...], labels: Any = None
    ) -> None:
        """Add a batch of observations, optionally labelled.

        Parameters
        ----------
        x : Tensor or tuple of Tensor
            Without ``labels``: one observation, as :meth:`Summarizer.update`. With
            ``labels``: a batch, one observation per row.
        labels : label, list or Tensor, optional
            One label for every row, or one per row (a list or tensor as long as the
            batch). ``None``: update the overall summary only.

        Raises
        ------
        ValueError
            (also ``AssertionError``, as Captum) ``labels`` is neither one label nor one
            per row.
        """
        if labels is None:
            super().update(x)
            return
        leaves = tuple(x) if isinstance(x, tuple) else (x,)
        keys = _label_keys(labels) if isinstance(labels, (list, Tensor)) else [labels]
        if len(keys) != 1 and any(int(leaf.shape[0]) != len(keys) for leaf in leaves):
            fail_assert(
                "ClassSummarizer.update",
                "labels",
                "one label, or one label per example (the batch size of every input)",
                f"{len(keys)} labels for inputs of batch sizes "
                f"{[int(leaf.shape[0]) for leaf in leaves]}",
                raw=True,
            )
        if len(keys) == 1:  # one label for the whole batch
            self.summaries[keys[0]].update_batch(leaves)
            self.update_batch(leaves)
            return
        rows_of: dict[Any, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            rows_of[key].append(i)
        for key, rows in rows_of.items():
            index = torch.tensor(rows)
            picked = tuple(leaf.index_select(0, index.to(leaf.device)) for leaf in leaves)
            self.summaries[key].update_batch(picked)
        self.update_batch(leaves)

    @property
    def class_summaries(self) -> dict[Any, Summary | list[Summary] | None]:
        """``{label: summary}`` for every label seen."""
        return {key: summarizer.summary for key, summarizer in self.summaries.items()}
