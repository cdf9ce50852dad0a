"""TracIn: influence as a sum over checkpoints of gradient dot products (Pruthi et al.,
2020), Captum's ``TracInCPBase`` and ``TracInCP``.

The influence of training example ``z`` on test example ``z'`` is
``sum_c lr_c * g_c(z') . g_c(z)`` where ``g_c`` is the gradient of the loss of one example
with respect to the (chosen) parameters at checkpoint ``c`` and ``lr_c`` is what the
checkpoint loader returns; self influence is ``sum_c lr_c ||g_c(z)||^2``.

How it runs: per-example gradients are vectorised (``torch.func``; see
:mod:`whybox.influence._grads`) over chunks of rows; training data are read once, in
memory-bounded groups, and each checkpoint is loaded once per group -- Captum loads every
checkpoint again for every training batch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module
from torch.utils.data import DataLoader, Dataset

from whybox.attr._assertion_errors import fail_assert
from whybox.core.chunks import ChunkSize, is_auto

from . import _data
from ._data import load_flexible_state_dict
from ._grads import (
    FactoredGradients,
    Factors,
    PerExampleGradients,
    check_loss_fn,
    layer_modules,
    parameter_names,
    rows_for,
)
from .base import DataInfluence, KMostInfluentialResults, merge_top_k

__all__ = ["TracInCPBase", "TracInCP"]


class _Progress:
    """A tqdm bar when asked for, else nothing."""

    def __init__(self, enabled: bool, total: int | None, desc: str, **options: Any) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, **options)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class _Ticking:
    """An iterable of batches that advances ``bar`` by one per batch read (its length is
    the wrapped iterable's, when it has one)."""

    def __init__(self, batches: Iterable[Any], bar: _Progress) -> None:
        self.batches = batches
        self.bar = bar

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            yield batch
            self.bar.update(1)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


class TracInCPBase(DataInfluence):
    """Shared constructor of the TracIn methods (Captum's ``TracInCPBase``).

    Parameters
    ----------
    model : nn.Module
    train_dataset : Dataset or DataLoader
        Training batches ``(features..., labels)``; a ``Dataset`` is batched by
        ``batch_size`` without shuffling.
    checkpoints : str, list of str or iterable
        A folder of checkpoint files, paths (both naturally sorted) or any checkpoints
        ``checkpoints_load_func`` understands.
    checkpoints_load_func : callable, default loads a ``state_dict`` file
        ``f(model, checkpoint) -> learning rate``; loads the checkpoint into ``model``.
    loss_fn : callable, optional
        ``loss(outputs, labels)``; ``None`` differentiates the outputs (summed per example).
    batch_size : int or None, default 1
        Batching of a ``Dataset`` (it does not change any result).
    test_loss_fn : callable, optional
        The loss for test examples (default ``loss_fn``).
    """

    def __init__(
        self,
        model: Module,
        train_dataset: Dataset | DataLoader,
        checkpoints: str | list[str] | Iterator[Any],
        checkpoints_load_func: Callable[[Module, Any], float] = load_flexible_state_dict,
        loss_fn: Callable | None = None,
        batch_size: int | None = 1,
        test_loss_fn: Callable | None = None,
    ) -> None:
        self.model: Module = model
        self.checkpoints = checkpoints  # type: ignore[assignment]
        self.checkpoints_load_func = checkpoints_load_func
        self.loss_fn = loss_fn
        self.test_loss_fn = loss_fn if test_loss_fn is None else test_loss_fn
        self.batch_size = batch_size
        self.train_dataloader = _data.make_dataloader(
            train_dataset, batch_size, owner=type(self).__name__, name="train_dataset"
        )
        self.train_dataloader_len: int | None = _data.count_batches(self.train_dataloader)

    @property
    def checkpoints(self) -> list[Any]:
        """The checkpoints, in the order they are visited."""
        return self._checkpoints

    @checkpoints.setter
    def checkpoints(self, checkpoints: Any) -> None:
        self._checkpoints = _data.checkpoint_list(checkpoints, owner=type(self).__name__)

    @abstractmethod
    def self_influence(self, inputs: Any = None, show_progress: bool = False) -> Tensor:
        """Self influence of each example of ``inputs`` (default: the training data)."""

    @abstractmethod
    def _get_k_most_influential(
        self, inputs: Any, k: int = 5, proponents: bool = True, show_progress: bool = False
    ) -> KMostInfluentialResults:
        """The ``k`` most (or least) influential training examples of each test example."""

    @abstractmethod
    def _influence(self, inputs: Any, show_progress: bool = False) -> Tensor:
        """Influence scores ``(Q, N)`` of every training example on each test example."""

    @abstractmethod
    def influence(
        self,
        inputs: Any,
        k: int | None = None,
        proponents: bool = True,
        unpack_inputs: bool = True,
        show_progress: bool = False,
    ) -> Tensor | KMostInfluentialResults:
        """Influence scores, or the ``k`` most influential training examples."""

    @classmethod
    def get_name(cls) -> str:
        return cls.__name__

    # -- the loop shared by the TracIn methods -------------------------------------------
    def _self_influence_over(
        self,
        inputs: Any,
        show_progress: bool,
        outer_loop_by_checkpoints: bool,
        squared_norms: Callable[[Any], Tensor],
    ) -> Tensor:
        """``sum_c lr_c * squared_norms(group)`` per example, streamed over groups of
        ``inputs`` (default: the training data) and checkpoints; ``squared_norms(group)``
        is ``(rows,)`` at the loaded checkpoint (each subclass's gradient form)."""
        batches = _data.as_batches(
            inputs if inputs is not None else self.train_dataloader, owner=type(self).__name__
        )
        total = _data.count_batches(batches)
        # Captum's bars: by checkpoints, an outer bar over checkpoints and one bar over the
        # batches per checkpoint; otherwise one bar over the batches
        what = f"Using {self.get_name()} to compute self influence."
        if outer_loop_by_checkpoints:
            scores = None
            with _Progress(
                show_progress,
                len(self.checkpoints),
                f"{what} Processing checkpoint",
                mininterval=0.0,
            ) as outer:
                for checkpoint in self.checkpoints:
                    lr = self._load(checkpoint)
                    with _Progress(show_progress, total, f"{what} Processing batch") as inner:
                        norms = squared_norms(_Ticking(batches, inner)) * lr
                    scores = norms if scores is None else scores + norms
                    outer.update(1)
            if scores is None:  # pragma: no cover - there is always a checkpoint
                raise RuntimeError("no checkpoint was visited")
            return scores
        out = []
        with _Progress(show_progress, total, f"{what} Processing batch") as bar:
            for group, checkpoints in self._visit(batches):
                block = None
                for _, lr in checkpoints:
                    norms = squared_norms(group) * lr
                    block = norms if block is None else block + norms
                if block is None:  # pragma: no cover - a group always has checkpoints
                    raise RuntimeError("no checkpoint was visited")
                out.append(block)
                bar.update(_data.count_batches(group) or 0)
        return torch.cat(out)

    def _load(self, checkpoint: Any) -> float:
        if checkpoint is None:
            fail_assert(type(self).__name__, "checkpoints", "checkpoints that are not None", None)
        return float(self.checkpoints_load_func(self.model, checkpoint))

    def _visit(
        self, batches: Iterable[Any]
    ) -> Iterator[tuple[list[Any] | Iterable[Any], Iterator[tuple[Any, float]]]]:
        """``(group, checkpoints)`` pairs: the data in memory-bounded groups, and for each
        group every checkpoint loaded once (``(checkpoint, learning rate)``)."""

        def loaded() -> Iterator[tuple[Any, float]]:
            for checkpoint in self.checkpoints:
                yield checkpoint, self._load(checkpoint)

        for group in _data.groups(batches):
            yield group, loaded()


class TracInCP(TracInCPBase):
    """TracIn with gradients of all (or some layers') parameters (Captum's ``TracInCP``).

    Parameters
    ----------
    model, train_dataset, checkpoints, checkpoints_load_func, loss_fn, batch_size,
    test_loss_fn
        See :class:`TracInCPBase`.
    layers : list of str, optional
        Names of the layers whose parameters are differentiated (default: all).
    sample_wise_grads_per_batch : bool, default False
        Captum's choice of parameters and loss contract: ``True`` differentiates the
        ``nn.Linear`` / ``nn.Conv2d`` parameters, the loss reducing by ``"sum"`` or
        ``"mean"``; ``False`` every parameter that requires grad, the loss per example
        (``reduction="none"``). Gradients are per example either way.
    chunk_size : int, ``"auto"`` or None, keyword-only
        Examples per vectorised gradient pass (``"auto"``: a memory budget).

    Notes
    -----
    The model's parameters, ``requires_grad`` flags and ``.grad`` are never touched
    (Captum sets ``requires_grad`` on ``layers``); the model is left at the last checkpoint
    loaded. Examples are assumed independent (a model in eval mode): each example's
    gradient is taken as a batch of one.
    """

    def __init__(
        self,
        model: Module,
        train_dataset: Dataset | DataLoader,
        checkpoints: str | list[str] | Iterator[Any],
        checkpoints_load_func: Callable[[Module, Any], float] = load_flexible_state_dict,
        layers: list[str] | None = None,
        loss_fn: Callable | None = None,
        batch_size: int | None = 1,
        test_loss_fn: Callable | None = None,
        sample_wise_grads_per_batch: bool = False,
        *,
        chunk_size: ChunkSize = "auto",
    ) -> None:
        TracInCPBase.__init__(
            self,
            model,
            train_dataset,
            checkpoints,
            checkpoints_load_func,
            loss_fn,
            batch_size,
            test_loss_fn,
        )
        owner = type(self).__name__
        self.sample_wise_grads_per_batch = sample_wise_grads_per_batch
        self.reduction_type: str = check_loss_fn(
            owner, loss_fn, "loss_fn", sample_wise_grads_per_batch
        )
        self.test_reduction_type: str = (
            self.reduction_type
            if test_loss_fn is None
            else check_loss_fn(owner, test_loss_fn, "test_loss_fn", sample_wise_grads_per_batch)
        )
        self.layer_modules: list[Module] | None = layer_modules(model, layers, owner=owner)
        self.chunk_size = chunk_size
        names = parameter_names(model, self.layer_modules, sample_wise_grads_per_batch, owner=owner)
        self._gradients = PerExampleGradients(model, names, owner=owner)
        # dot products and norms: nn.Linear layers factored, never a P-sized gradient
        self._factors = FactoredGradients(model, names, owner=owner)

    # -- gradients -----------------------------------------------------------------------
    def _rows(self) -> int:
        device = next(iter(self.model.parameters())).device
        return rows_for(
            self.chunk_size, self._gradients.row_bytes(), device, owner=type(self).__name__
        )

    def _gradient_chunks(
        self, batches: Iterable[Any], loss_fn: Callable | None
    ) -> Iterator[Tensor]:
        """Per-example gradients ``(rows, P)`` of the batches' examples, chunk by chunk."""
        for chunk in _data.chunks(batches, self._rows(), owner=type(self).__name__):
            yield self._gradients(chunk, loss_fn)

    def _factor_chunks(self, batches: Iterable[Any], loss_fn: Callable | None) -> Iterator[Factors]:
        """Per-example gradients of the batches' examples as factors, chunk by chunk."""
        rows, by_input = self._rows(), is_auto(self.chunk_size)
        for chunk in _data.chunks(batches, rows, owner=type(self).__name__, by_input=by_input):
            yield self._factors(chunk, loss_fn)

    def _all_gradients(
        self, batches: Iterable[Any], loss_fn: Callable | None, aggregate: bool
    ) -> Tensor:
        """``(n, P)`` gradients of every example (``(1, P)``, their sum, with ``aggregate``)."""
        if aggregate:
            total = None
            for g in self._gradient_chunks(batches, loss_fn):
                part = g.sum(dim=0, keepdim=True)
                total = part if total is None else total + part
            if total is None:
                fail_assert(type(self).__name__, "inputs", "at least one example", "none", raw=True)
            return total
        parts = list(self._gradient_chunks(batches, loss_fn))
        if not parts:
            fail_assert(type(self).__name__, "inputs", "at least one example", "none", raw=True)
        return torch.cat(parts)

    # -- influence -----------------------------------------------------------------------
    def influence(  # type: ignore[override]
        self,
        inputs: Any,
        k: int | None = None,
        proponents: bool = True,
        show_progress: bool = False,
        aggregate: bool = False,
    ) -> Tensor | KMostInfluentialResults:
        """Influence of every training example on each example of ``inputs``.

        Parameters
        ----------
        inputs : tuple or DataLoader
            A test batch ``(features..., labels)`` or a ``DataLoader`` of them (``Q``
            examples in all).
        k : int, optional
            Return the ``k`` most influential training examples per test example instead
            of all scores.
        proponents : bool, default True
            With ``k``: the most positive (proponents) or most negative (opponents).
        show_progress : bool, default False
        aggregate : bool, default False
            Score the sum of the test examples' losses (one row).

        Returns
        -------
        Tensor ``(Q, N)`` (``(1, N)`` with ``aggregate``), or KMostInfluentialResults with
        ``(Q, k)`` indices and scores.
        """
        if inputs is None:
            fail_assert(
                type(self).__name__,
                "inputs",
                "a batch or a DataLoader: the `inputs` argument is required (use self_influence "
                "for self influence scores)",
                None,
            )
        if k is None:
            return self._influence(inputs, show_progress, aggregate)
        return self._get_k_most_influential(inputs, k, proponents, show_progress, aggregate)

    def _scores(
        self, inputs: Any, show_progress: bool, aggregate: bool, desc: str
    ) -> Iterator[tuple[int, Tensor]]:
        """``(offset, scores (Q, n))`` for consecutive groups of training examples."""
        tests = list(_data.as_batches(inputs, owner=type(self).__name__))
        total = None
        if self.train_dataloader_len is not None:
            total = self.train_dataloader_len * len(self.checkpoints)
        offset = 0
        with _Progress(show_progress, total, desc) as bar:
            for group, checkpoints in self._visit(self.train_dataloader):
                block = None
                for _, lr in checkpoints:
                    if aggregate:  # a sum of gradients does not factor: flat
                        test = self._all_gradients(tests, self.test_loss_fn, True)
                        parts = [test @ g.T for g in self._gradient_chunks(group, self.loss_fn)]
                    else:
                        factors = list(self._factor_chunks(tests, self.test_loss_fn))
                        if not factors:
                            fail_assert(
                                type(self).__name__,
                                "inputs",
                                "at least one example",
                                "none",
                                raw=True,
                            )
                        test_factors = Factors.cat(factors)
                        parts = [
                            test_factors.dot(f) for f in self._factor_chunks(group, self.loss_fn)
                        ]
                    scores = torch.cat(parts, dim=1) * lr
                    block = scores if block is None else block + scores
                    bar.update(len(group))
                assert block is not None
                yield offset, block
                offset += block.shape[1]

    def _influence(  # type: ignore[override]
        self, inputs: Any, show_progress: bool = False, aggregate: bool = False
    ) -> Tensor:
        desc = f"Using {self.get_name()} to compute influence for training batches"
        return torch.cat(
            [b for _, b in self._scores(inputs, show_progress, aggregate, desc)], dim=1
        )

    def _get_k_most_influential(  # type: ignore[override]
        self,
        inputs: Any,
        k: int = 5,
        proponents: bool = True,
        show_progress: bool = False,
        aggregate: bool = False,
    ) -> KMostInfluentialResults:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            fail_assert(type(self).__name__, "k", "None or an int >= 1", k)
        kind = "proponents" if proponents else "opponents"
        desc = (
            f"Using {self.get_name()} to perform computation for getting {kind}. "
            "Processing training batches"
        )
        best = None
        for offset, block in self._scores(inputs, show_progress, aggregate, desc):
            best = merge_top_k(best, block, offset, k, proponents)
        assert best is not None
        return KMostInfluentialResults(*best)

    # -- self influence ------------------------------------------------------------------
    def self_influence(  # type: ignore[override]
        self,
        inputs: Any = None,
        show_progress: bool = False,
        outer_loop_by_checkpoints: bool = False,
    ) -> Tensor:
        """``sum_c lr_c ||g_c(z)||^2`` for each example ``z`` of ``inputs``.

        Parameters
        ----------
        inputs : tuple or DataLoader, optional
            Default: the training data.
        show_progress : bool, default False
        outer_loop_by_checkpoints : bool, default False
            Read ``inputs`` once per checkpoint instead of in memory-bounded groups
            (each checkpoint is then loaded exactly once; the data must be re-iterable).

        Returns
        -------
        Tensor ``(n,)``
        """
        return self._self_influence_over(
            inputs,
            show_progress,
            outer_loop_by_checkpoints,
            lambda group: torch.cat(
                [f.squared_norms() for f in self._factor_chunks(group, self.loss_fn)]
            ),
        )

    # -- intermediate quantities -----------------------------------------------------------
    def compute_intermediate_quantities(self, inputs: Any, aggregate: bool = False) -> Tensor:
        """Per-example vectors whose dot products are the influence scores.

        For each checkpoint ``c``, ``sqrt(lr_c) * g_c`` (flattened over the differentiated
        parameters, in Captum's order), concatenated over checkpoints. (Captum scales by
        ``lr_c``, so its dot products weigh checkpoints by ``lr_c ** 2``; the two agree when
        the loader returns 1.)

        Parameters
        ----------
        inputs : tuple or DataLoader
        aggregate : bool, default False
            Return the sum over examples (one row).

        Returns
        -------
        Tensor ``(n, C * P)`` (``(1, C * P)`` with ``aggregate``)
        """
        batches = list(_data.as_batches(inputs, owner=type(self).__name__))
        parts = []
        for checkpoint in self.checkpoints:
            lr = self._load(checkpoint)
            parts.append(self._all_gradients(batches, self.loss_fn, aggregate) * lr**0.5)
        return torch.cat(parts, dim=1)
