"""The one chunk policy: how many rows go through the model per forward.

Every family asks here. The caller's knob is ``chunk_size`` (an int, or ``"auto"`` /
``None``); Captum's ``internal_batch_size`` and ``perturbations_per_eval`` are mapped onto it
by the facade. Chunking never changes results, only speed and memory.

* :func:`resolve_chunk_rows` turns the knob into a row count; ``"auto"`` sizes the chunk by
  the bytes of one row, for throughput under a memory bound;
* :func:`counting` re-sizes an automatic chunk when each row carries more than the model's
  inputs (a layer path point beside token ids);
* :func:`whole_groups` rounds a chunk down to whole groups of rows (all examples of a path
  step), so rows can be built by broadcasting;
* :class:`ChunkPlan` refines an automatic chunk by measured throughput: the first chunks of
  a real evaluation are timed at a few candidate sizes under a memory bound
  (:func:`probe_bound`), the fastest is used for the rest and remembered per model and row
  signature for the process (:func:`set_probe` / ``WHYBOX_CHUNK_PROBE=0`` turn it off).
  An evaluation that fits in one automatic chunk may be split into a few equal chunks
  (:func:`probe_may_split`) once its model is known to give one output per row. A chunk
  size the caller fixed is never probed.
* :func:`saved_bytes` measures what a gradient chunk holds between its forward and its
  backward (the tensors autograd saved), so the bound counts activations, not inputs alone.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from .validation import fail

__all__ = [
    "ChunkSize",
    "ChunkPlan",
    "auto_chunk_rows",
    "resolve_chunk_rows",
    "counting",
    "whole_groups",
    "set_probe",
    "probe_enabled",
    "probe_bound",
    "probe_may_split",
    "probe_records",
    "probe_memory",
    "clear_probe_cache",
    "saved_bytes",
]

ChunkSize = int | Literal["auto"] | None

# Input bytes per chunk that "auto" aims for. On CPU small chunks keep activations in cache
# (measured: 8-64 rows of a 224x224 CNN beat bigger ones); on GPU bigger chunks fill the device.
_AUTO_BYTES = {"cpu": 2**20, "other": 32 * 2**20}
_AUTO_MIN_ROWS = 8
_AUTO_MAX_ROWS = {"cpu": 4096, "other": 65536}


def auto_chunk_rows(example_bytes: int, device: torch.device) -> int:
    """Rows per forward sized by the bytes of one row (before any throughput probe).

    Parameters
    ----------
    example_bytes
        Input bytes of one row.
    device
        Where the rows live.

    Returns
    -------
    int
        About ``_AUTO_BYTES`` of input per chunk, within ``[_AUTO_MIN_ROWS, _AUTO_MAX_ROWS]``.
    """
    key = "cpu" if device.type == "cpu" else "other"
    rows = _AUTO_BYTES[key] // max(example_bytes, 1)
    return int(min(max(rows, _AUTO_MIN_ROWS), _AUTO_MAX_ROWS[key]))


def is_auto(chunk_size: ChunkSize) -> bool:
    """Whether the caller left the chunk size to whybox."""
    return chunk_size is None or chunk_size == "auto"


def resolve_chunk_rows(chunk_size: ChunkSize, tensors: Sequence[Tensor], *, owner: str) -> int:
    """Turn the batching knob into a row count (``None`` / ``"auto"`` pick one).

    An automatic chunk is sized by the bytes of one row (the product of the non-batch
    dimensions), so an empty batch gets the same chunk as a full one.
    """
    if chunk_size is None or chunk_size == "auto":  # ``is_auto``
        if len(tensors) == 1:  # one input, the common case: the same sum, no generator
            first = tensors[0]
            return auto_chunk_rows(math.prod(first.shape[1:]) * first.element_size(), first.device)
        example_bytes = sum(math.prod(t.shape[1:]) * t.element_size() for t in tensors)
        return auto_chunk_rows(example_bytes, tensors[0].device)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        fail(owner, "chunk_size", "an int >= 1, 'auto' or None", chunk_size)
    return chunk_size


def counting(chunk_rows: int, *, auto: bool, tensors: Sequence[Tensor], owner: str) -> int:
    """An automatic chunk re-sized so that each row's ``tensors`` count too.

    On a layer path the model's inputs may be a few bytes of token ids while each row also
    carries the layer's path point (e.g. 128 x 384 floats): an automatic chunk sized by the
    inputs alone would hold every step at once and memory would grow with ``n_steps``. A
    chunk size the caller chose is kept.
    """
    if not auto:
        return chunk_rows
    return min(chunk_rows, resolve_chunk_rows("auto", tensors, owner=owner))


def whole_groups(chunk_rows: int, group: int) -> int:
    """Round a chunk down to whole groups of ``group`` rows when it holds at least one."""
    if group == 0:
        return chunk_rows  # an empty batch: one empty chunk
    return chunk_rows - chunk_rows % group if chunk_rows >= group else chunk_rows


# -- the throughput probe -----------------------------------------------------------------
#: rows per chunk the probe may time (x2 apart: a throughput curve can bend between x4
#: steps, e.g. a 224x224 CNN's gradient is fastest at 4 rows and 1.5x slower at 8), besides
#: the byte-sized automatic chunk
_PROBE_ROWS = tuple(2**k for k in range(1, 16))
#: timed chunks per candidate before it counts; the best one counts (the first chunk at a
#: new shape pays warm-up, other processes only ever add time)
_PROBE_SAMPLES = 3
#: candidates stay within this factor of the byte-sized chunk either way: it is rarely far
#: off (benchmarks/chunks.py), and every candidate timed is a chunk at a possibly slow size
_PROBE_SPAN = 4
#: candidates within this fraction of the fastest one are as fast (a shared machine's noise
#: is larger): of them the one nearest the chunk without a probe is used, so a flat
#: throughput curve gives one choice, not whichever candidate was lucky
_PROBE_TOLERANCE = 0.1
#: an evaluation whose items all fit in the automatic chunk may be split into at most this
#: many equal chunks (whole groups), once its model is known to give one output per row
_PROBE_SPLITS = 4
#: the memory bound: at most this many times the byte-sized automatic chunk...
_PROBE_GROWTH = 16
#: ...and at most this many bytes per chunk (never below the automatic chunk): its input
#: rows plus, for a gradient chunk, the activations autograd saved for its backward, measured
#: on the first probed chunk (a 224x224 CNN saves ~10x its input per row)
_PROBE_BYTES = {"cpu": 64 * 2**20, "other": 2**30}
_PROBE_ENV = "WHYBOX_CHUNK_PROBE"

_probe_setting: bool | None = None  # None: the environment decides
_lock = threading.Lock()


@dataclass
class _Measured:
    """Per candidate (items per chunk): best seconds per item and timed chunks so far."""

    seconds: dict[int, float] = field(default_factory=dict)
    samples: dict[int, int] = field(default_factory=dict)
    bound_items: int | None = None  # the memory bound, once one chunk's bytes are known
    #: bytes per row the bound was computed from: (input, saved activations)
    row_bytes: tuple[int, int] | None = None
    #: whether the model gave one output per row (``None``: not seen yet); only then is an
    #: evaluation that fits in one chunk split (a model returning one value per batch, a
    #: loss, must see every row in one forward)
    per_row: bool | None = None

    def add(self, items: int, seconds_per_item: float) -> None:
        self.seconds[items] = min(self.seconds.get(items, math.inf), seconds_per_item)
        self.samples[items] = self.samples.get(items, 0) + 1

    def settled(self) -> dict[int, float]:
        """Candidates timed often enough to be compared: items -> seconds per item."""
        return {k: v for k, v in self.seconds.items() if self.samples[k] >= _PROBE_SAMPLES}


#: forward function (or a bound method's object) -> key -> measurements; the entries go
#: when the model does
_cache: weakref.WeakKeyDictionary[Any, dict[Hashable, _Measured]] = weakref.WeakKeyDictionary()


def set_probe(enabled: bool | None) -> None:
    """Turn the throughput probe of automatic chunks on or off for the process.

    Parameters
    ----------
    enabled
        ``False``: automatic chunks keep the byte-sized choice (reproducible timing);
        ``True``: probe; ``None``: follow the environment variable ``WHYBOX_CHUNK_PROBE``
        (``0`` / ``false`` / ``off`` / ``no`` turn it off; on by default).
    """
    global _probe_setting
    _probe_setting = None if enabled is None else bool(enabled)


def probe_enabled() -> bool:
    """Whether automatic chunks are probed for throughput (see :func:`set_probe`)."""
    if _probe_setting is not None:
        return _probe_setting
    return os.environ.get(_PROBE_ENV, "1").strip().lower() not in {"0", "false", "off", "no"}


def clear_probe_cache() -> None:
    """Forget every probe measurement (the next automatic evaluation probes again)."""
    with _lock:
        _cache.clear()


def probe_bound(
    default_rows: int, row_bytes: int, device: torch.device, *, activation_bytes: int = 0
) -> int:
    """The most rows per chunk the probe may use: its memory bound.

    Parameters
    ----------
    default_rows
        The byte-sized automatic chunk (after :func:`counting` / :func:`whole_groups`).
    row_bytes
        Input bytes of one row as built.
    device
        Where the rows live.
    activation_bytes
        Bytes per row a chunk holds besides its inputs until its backward: the tensors
        autograd saved (:func:`saved_bytes` over the rows); 0 without gradients.

    Returns
    -------
    int
        At most ``_PROBE_GROWTH`` times ``default_rows`` and at most ``_PROBE_BYTES`` of
        inputs plus activations per chunk, but never below ``default_rows`` (the chunk
        without a probe). When ``default_rows`` is well below what ``row_bytes`` alone
        gives, the caller counted more than the rows' inputs (a layer path's values beside
        token ids, see :func:`counting`): their bytes say nothing of a chunk's memory, and
        the bound is ``default_rows``.
    """
    if 2 * default_rows < auto_chunk_rows(row_bytes, device):
        return default_rows
    kind = "cpu" if device.type == "cpu" else "other"
    by_bytes = _PROBE_BYTES[kind] // max(row_bytes + activation_bytes, 1)
    return max(default_rows, min(default_rows * _PROBE_GROWTH, by_bytes))


def saved_bytes(outputs: Tensor, *, exclude: Sequence[Tensor] = (), module: Any = None) -> int:
    """Bytes of the tensors autograd saved for the backward of ``outputs``.

    Walks the graph once (no hooks: the forward and the backward run as they would), and
    counts each saved storage once. A chunk's activations are what this finds; leaves that
    require grad (parameters, the input rows) and views of them, the tensors in
    ``exclude`` and the parameters and buffers of ``module`` are not counted: they do not
    grow with the rows.

    Parameters
    ----------
    outputs
        A tensor on its autograd graph (before the backward frees the saved tensors).
    exclude
        Tensors whose storages are not activations (e.g. the chunk's input rows).
    module
        The model, when it is an ``nn.Module`` (or a bound method of one): its frozen
        parameters and buffers are saved leaves that do not require grad.

    Returns
    -------
    int
        Bytes, 0 when ``outputs`` has no graph.
    """
    skip = {_storage_key(t) for t in exclude if isinstance(t, Tensor)}
    owner = getattr(module, "__self__", module)
    if isinstance(owner, torch.nn.Module):
        skip.update(_storage_key(t) for t in owner.parameters())
        skip.update(_storage_key(t) for t in owner.buffers())
    sizes: dict[Hashable, int] = {}
    stack = [outputs.grad_fn] if outputs.grad_fn is not None else []
    seen: set[int] = set()
    nodes = []  # keeps the walked nodes alive, so their ids stay unique
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        for tensor in _saved_tensors(node):
            base = tensor._base if tensor._base is not None else tensor
            if base.is_leaf and base.requires_grad:
                continue
            key = _storage_key(tensor)
            if key is None or key in skip:
                continue
            sizes[key] = max(sizes.get(key, 0), _storage_bytes(tensor))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return sum(sizes.values())


def _saved_tensors(node: Any) -> list[Tensor]:
    """The tensors an autograd node saved (built-in nodes expose them as ``_saved_*``
    attributes, custom ``Function`` nodes as ``saved_tensors``)."""
    names = [name for name in dir(node) if name.startswith("_saved_")]
    if hasattr(node, "saved_tensors"):
        names.append("saved_tensors")
    found: list[Tensor] = []
    for name in names:
        try:
            value = getattr(node, name)
        except (RuntimeError, AttributeError, TypeError):  # freed or modified in place:
            continue  # the backward reports it
        values = value if isinstance(value, (tuple, list)) else (value,)
        found.extend(v for v in values if isinstance(v, Tensor))
    return found


def _storage_key(tensor: Tensor) -> Hashable:
    """What identifies ``tensor``'s memory (``None``: nothing to count)."""
    try:
        pointer = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # sparse, nested, ...: no plain storage
        return ("tensor", id(tensor))
    return None if pointer == 0 else (tensor.device, pointer)


def _storage_bytes(tensor: Tensor) -> int:
    try:
        return tensor.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return tensor.numel() * tensor.element_size()


def probe_records(forward_func: Callable[..., Any]) -> dict[Hashable, dict[int, float]]:
    """A copy of the probe's comparable measurements for ``forward_func``.

    Returns
    -------
    dict
        Key (as given by the evaluation) -> items per chunk -> best seconds per item, for
        the candidates timed often enough to be compared.
    """
    with _lock:
        return {key: m.settled() for key, m in _entries(forward_func)}


def probe_memory(forward_func: Callable[..., Any]) -> dict[Hashable, tuple[int, int, int]]:
    """The probe's memory bounds for ``forward_func``, as measured on the first chunks.

    Returns
    -------
    dict
        Key (as given by the evaluation) -> ``(bound, input_bytes, activation_bytes)``:
        the most items per chunk the probe may use, and the bytes per row (inputs, and the
        activations autograd saved) it was computed from.
    """
    with _lock:
        return {
            key: (m.bound_items, *m.row_bytes)
            for key, m in _entries(forward_func)
            if m.bound_items is not None and m.row_bytes is not None
        }


def _entries(forward_func: Callable[..., Any]) -> list[tuple[Hashable, _Measured]]:
    """``(key, measurements)`` kept for ``forward_func`` (call with ``_lock`` held)."""
    owner, method = _owner_of(forward_func)
    try:
        entries = dict(_cache.get(owner, {}))
    except TypeError:  # an owner that cannot be a weak key has no entries
        return []
    return [(key[1], m) for key, m in entries.items() if key[0] is method]


def _owner_of(func: Callable[..., Any]) -> tuple[Any, Any]:
    """What the cache holds weakly for ``func`` (a bound method is made anew on every
    attribute access, its object is not), and what tells an owner's methods apart."""
    if inspect.ismethod(func):
        return func.__self__, func.__func__
    return func, None


def _measurements(forward_func: Callable[..., Any], key: Hashable) -> _Measured:
    owner, method = _owner_of(forward_func)
    with _lock:
        try:
            entries = _cache.setdefault(owner, {})
        except TypeError:  # not weakly referable or not hashable: this evaluation only
            return _Measured()
        return entries.setdefault((method, key), _Measured())


def _split_candidates(items: int, n_items: int, group: int) -> list[int]:
    """Items per chunk that split ``n_items`` (all within one automatic chunk of ``items``)
    into 1 to ``_PROBE_SPLITS`` equal chunks of whole groups, none far below ``items``."""
    n_groups = -(-n_items // group)
    sizes = set()
    for parts in range(1, _PROBE_SPLITS + 1):
        size = -(-n_groups // parts) * group
        if size == n_items or size * _PROBE_SPAN >= items:
            sizes.add(min(size, n_items))
    return sorted(sizes)


def probe_may_split(items: int, n_items: int, *, group: int = 1) -> bool:
    """Whether the probe may split an evaluation whose ``n_items`` items all fit in one
    automatic chunk of ``items`` (else it runs as one chunk, unprobed).

    Parameters
    ----------
    items
        Items per chunk of the byte-sized automatic chunk, ``>= n_items``.
    n_items
        Items in the evaluation.
    group
        Items per group (chunks are whole groups).

    Returns
    -------
    bool
        ``True`` when the probe is on and a split into a few equal chunks is near enough to
        the automatic chunk to be timed (:class:`ChunkPlan` still keeps one forward until
        the model is known to give one output per row).
    """
    return n_items > 1 and _splits(items, n_items, group) and probe_enabled()


@functools.lru_cache(maxsize=1024)  # a pure function of three ints, asked on every call
def _splits(items: int, n_items: int, group: int) -> bool:
    """Whether :func:`_split_candidates` offers more than one chunk size."""
    return len(_split_candidates(items, n_items, group)) > 1


class ChunkPlan:
    """Items per chunk for one evaluation, probed for throughput when the chunk is automatic.

    Without a probe every chunk has ``items`` items. With one, the evaluation's first chunks
    are timed at a few candidate sizes (in turn, least timed first, each ``_PROBE_SAMPLES``
    times, under the memory bound :func:`probe_bound`) and the rest use the candidate that
    was fastest per item; candidates within ``_PROBE_TOLERANCE`` of the fastest count as
    fast, and of them the one nearest the automatic chunk is used (stable on a flat
    throughput curve). The bound is set by the first chunk timed (the smallest candidate, or
    an evaluation within one automatic chunk): its input bytes and, when the caller
    measures them (:attr:`measuring`), the activations it saved for backward; no bigger
    chunk runs before. Probe chunks are real chunks of the evaluation,
    so no work is wasted and results do not change (chunking never does). Measurements are
    kept per forward function and ``key`` for the process: later evaluations with that key
    skip the probe (one that has too few items to time a candidate leaves it to a later
    one). A plan is private to its evaluation; the shared measurements are behind a lock.

    Candidates are the rows in ``_PROBE_ROWS`` within ``_PROBE_SPAN`` of the automatic
    chunk, the automatic chunk and the whole evaluation. An evaluation whose items all fit
    in the automatic chunk is split instead into up to ``_PROBE_SPLITS`` equal chunks, but
    only once an earlier chunk of this key showed one output per row (:meth:`record`'s
    ``per_row``): until then, and for a model returning one value per batch, it is one
    forward, as without a probe. A caller whose rows must share a forward for another
    reason (a rule mixing rows) fixes its chunk instead (no ``forward_func``).

    Parameters
    ----------
    items
        Items per chunk of the byte-sized automatic chunk (the choice without a probe).
    forward_func
        The model, or ``None``: no probe (a chunk size the caller fixed).
    key
        What else the speed depends on (row shapes, dtype, device, grad, tap...).
    n_items
        Items in the evaluation.
    rows_per_item
        Rows per item: candidates are whole items.
    group
        Items per group: with ``group > 1`` candidates are whole groups (e.g. all examples
        of a path step, built by broadcasting).
    """

    def __init__(
        self,
        items: int,
        *,
        forward_func: Callable[..., Any] | None = None,
        key: Hashable = None,
        n_items: int = 0,
        rows_per_item: int = 1,
        group: int = 1,
    ) -> None:
        self.items = items
        #: whether the caller should time the next chunk and :meth:`record` it
        self.timing = False
        #: whether the caller should also measure the next chunk's activations
        #: (:func:`saved_bytes`) for :meth:`record`: the memory bound is not known yet
        self.measuring = False
        self._default = items
        self._preferred = min(items, n_items)  # what runs without a probe
        self._rows_per_item = rows_per_item
        self._candidates: list[int] = []
        self._measured: _Measured | None = None
        if forward_func is None or n_items < 1 or not probe_enabled():
            return
        if n_items <= items:
            splits = _split_candidates(items, n_items, max(group, 1))
            if len(splits) < 2:
                return
            self._measured = _measurements(forward_func, key)
            with _lock:
                per_row = self._measured.per_row
            if per_row is False:
                self._measured = None  # one forward for every row: nothing to compare
                return
            self._candidates = splits if per_row else [n_items]
            self._choose(remaining=n_items)
            return
        self._measured = _measurements(forward_func, key)
        bound = self._measured.bound_items or items * _PROBE_GROWTH
        sizes = {items}
        if n_items <= items * _PROBE_SPAN:
            sizes.add(n_items)  # one forward, when the bound allows
        for rows in _PROBE_ROWS:
            candidate = rows // rows_per_item
            if group > 1:
                if candidate < group:
                    continue
                candidate -= candidate % group
            near = items / _PROBE_SPAN <= candidate <= items * _PROBE_SPAN
            if near and 1 <= candidate:
                sizes.add(candidate)
        self._candidates = sorted(s for s in sizes if s <= min(n_items, bound))
        self._choose(remaining=n_items)

    def _choose(self, remaining: int) -> None:
        """The next chunks: the most-timed unsettled candidate that fits, so a candidate's
        samples run back to back (the later ones see the memory the earlier ones freed, as
        every chunk but the first does after the probe; alternating sizes would time
        fresh allocations each time), else the fastest."""
        assert self._measured is not None
        with _lock:
            settled = self._measured.settled()
            samples = dict(self._measured.samples)
            bound = self._measured.bound_items
        if bound is not None:
            # another evaluation (thread) of this key may have measured it meanwhile
            self._candidates = [c for c in self._candidates if c <= bound]
        untimed = sorted(
            (-samples.get(c, 0), c)
            for c in self._candidates
            if c not in settled and c <= remaining  # else a later evaluation times it
        )
        if untimed:
            if bound is None:  # no bigger chunk before the bound is known: measure this one
                self.items = min(c for _, c in untimed)
            else:
                self.items = untimed[0][1]
            self.timing, self.measuring = True, bound is None
            return
        self.timing = self.measuring = False
        timed = {c: settled[c] for c in self._candidates if c in settled}
        self.items = _fastest(timed, self._preferred) if timed else self._preferred

    def record(
        self,
        items: int,
        seconds: float,
        *,
        row_bytes: int,
        device: torch.device,
        remaining: int,
        activation_bytes: int | None = None,
        per_row: bool | None = None,
    ) -> None:
        """Report the time of a chunk of ``items`` items planned while :attr:`timing`.

        Parameters
        ----------
        items
            Items in the chunk.
        seconds
            Its time (build, forward, backward and the caller's consume).
        row_bytes
            Input bytes of one of its rows (with ``activation_bytes``, sets the memory
            bound on the first chunk).
        device
            Where its rows live.
        remaining
            Items left to evaluate after it.
        activation_bytes
            Activation bytes per row (:func:`saved_bytes` over the chunk's rows) when
            :attr:`measuring`; ``None``: not measured (an evaluation without gradients
            saves none).
        per_row
            Whether the model's selected output had one value per row of the chunk (a
            0-d output does not); ``None``: not known. Evaluations that fit in one chunk
            are split only after ``True``, never after ``False``.
        """
        assert self._measured is not None
        with _lock:
            if self._measured.bound_items is None and row_bytes > 0:
                saved = activation_bytes or 0
                rows = probe_bound(
                    self._default * self._rows_per_item, row_bytes, device, activation_bytes=saved
                )
                self._measured.bound_items = max(self._default, rows // self._rows_per_item)
                self._measured.row_bytes = (row_bytes, saved)
            if per_row is not None and self._measured.per_row is not False:
                self._measured.per_row = per_row  # once False, for good
            self._measured.add(items, seconds / max(items, 1))
        self._choose(remaining)


def _fastest(seconds: dict[int, float], preferred: int) -> int:
    """Of the candidates (items -> seconds per item) within ``_PROBE_TOLERANCE`` of the
    fastest, the one nearest ``preferred`` (by ratio; the larger on a tie)."""
    best = min(seconds.values())
    near = [c for c, t in seconds.items() if t <= best * (1 + _PROBE_TOLERANCE)]
    return min(near, key=lambda c: (abs(math.log(c / max(preferred, 1))), -c))
