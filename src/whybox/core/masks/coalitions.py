"""Coalitions over ``M`` features: enumeration, random orderings, the Shapley kernel and
KernelSHAP's design (enumerated sizes plus paired samples).

A *coalition* is a boolean row of length ``M``: ``True`` keeps the feature's original
value, ``False`` replaces it with the baseline.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "enumerate_coalitions",
    "sample_permutations",
    "shapley_kernel_weight",
    "Coalitions",
    "kernel_shap_coalitions",
]

_MAX_ENUMERATE = 30  # 2**30 rows of bool would already be ~30 GB
_MAX_CODE_BITS = 62  # coalition codes are int64 (bit 63 is the sign)


def _check_n_features(n_features: int, fn: str, *, minimum: int = 1) -> int:
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < minimum:
        raise ValueError(
            f"The 'n_features' parameter of {fn} must be an int >= {minimum}. Got {n_features!r}."
        )
    return n_features


def enumerate_coalitions(
    n_features: int, *, start: int = 0, stop: int | None = None, device: Any = None
) -> Tensor:
    """The ``2**M`` coalitions in binary order, all of them or rows ``start:stop``.

    Parameters
    ----------
    n_features : int
        ``M``: at most 62 (codes are int64), and at most 30 when every row is asked for.
    start, stop : int, keyword-only
        Rows of the enumeration to build, ``0 <= start <= stop <= 2**M``; default all.
        A range lets exact Shapley values build one chunk of coalitions at a time.
    device : keyword-only, optional

    Returns
    -------
    Tensor, shape (stop - start, M), bool
        Row ``i`` (of the full enumeration) contains feature ``j`` iff bit ``j`` of ``i``
        is set (row 0 is empty, the last row is full).
    """
    fn = "enumerate_coalitions"
    m = _check_n_features(n_features, fn, minimum=0)
    if m > _MAX_CODE_BITS:
        raise ValueError(
            f"{fn}: 2**{m} coalitions do not fit in memory (nor in int64 codes); use "
            "kernel_shap_coalitions or sample_permutations to sample instead."
        )
    stop = 2**m if stop is None else stop
    for name, value in (("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**m:
            raise ValueError(
                f"The '{name}' parameter of {fn} must be an int in [0, 2**{m}]. Got {value!r}."
            )
    if start > stop:
        raise ValueError(f"The 'start' parameter of {fn} must be <= 'stop'. Got {start} > {stop}.")
    if stop - start > 2**_MAX_ENUMERATE:
        raise ValueError(
            f"{fn}: {stop - start} coalitions of {m} features do not fit in memory; ask for "
            "a range (start, stop) at a time, or use kernel_shap_coalitions or "
            "sample_permutations to sample instead."
        )
    rows = torch.arange(start, stop, device=device)
    bits = 2 ** torch.arange(m, device=device)
    return (rows[:, None] & bits[None, :]) != 0


def sample_permutations(
    n_features: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    *,
    device: Any = None,
) -> Tensor:
    """Uniformly random feature orderings (Shapley value sampling).

    Parameters
    ----------
    n_features : int
    n_samples : int
    generator : torch.Generator, optional
        For reproducibility; must be on ``device`` (CPU by default).
    device : keyword-only, optional

    Returns
    -------
    Tensor, shape (n_samples, n_features), long
        Each row a permutation of ``0..n_features-1``.
    """
    m = _check_n_features(n_features, "sample_permutations")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(
            "The 'n_samples' parameter of sample_permutations must be an int >= 0. "
            f"Got {n_samples!r}."
        )
    keys = torch.rand(n_samples, m, generator=generator, device=device)
    return torch.argsort(keys, dim=1)


def shapley_kernel_weight(n_features: int, sizes: Tensor | int) -> Tensor:
    """Shapley kernel ``(M-1) / (C(M, s) * s * (M-s))`` for coalition sizes ``s``.

    Sizes 0 and ``M`` get ``inf``: those coalitions are constraints, not samples.

    Returns
    -------
    Tensor, float64, shape of ``sizes``
    """
    m = _check_n_features(n_features, "shapley_kernel_weight")
    s = torch.as_tensor(sizes).long()
    if bool(((s < 0) | (s > m)).any()):
        raise ValueError(
            f"The 'sizes' parameter of shapley_kernel_weight must lie in [0, {m}]. Got {sizes}."
        )
    # Exact integer binomials (float64 lookup table), so weights are exact to rounding.
    table = [math.inf] + [(m - 1) / (math.comb(m, k) * k * (m - k)) for k in range(1, m)]
    table.append(math.inf)
    return torch.tensor(table, dtype=torch.float64)[s.cpu()]


class Coalitions(NamedTuple):
    """Output of :func:`kernel_shap_coalitions`.

    Attributes
    ----------
    masks : Tensor, shape (n, M), bool
        Coalitions; neither the empty nor the full one is included.
    weights : Tensor, shape (n,), float64
        Shapley-kernel regression weights. Enumerated rows get the exact kernel
        weight; sampled rows share the kernel mass of the sizes not enumerated
        (duplicates are merged and their weights added). Whenever some budget is left
        for sampling (or everything is enumerated) the weights sum to the total kernel
        mass ``sum_{s=1}^{M-1} (M-1) / (s (M-s))``.
    n_enumerated : int
        The first ``n_enumerated`` rows are exhaustive enumerations of whole sizes.
    """

    masks: Tensor
    weights: Tensor
    n_enumerated: int


def _combinations_mask(m: int, size: int) -> Tensor:
    """All coalitions of exactly ``size`` features, shape (C(m, size), m), bool.

    Built from ``itertools.combinations`` (``torch.combinations`` materializes an
    ``m**size`` grid). Only called for sizes whose count fits the sample budget.
    """
    idx = torch.tensor(list(itertools.combinations(range(m), size)), dtype=torch.long)
    out = torch.zeros(idx.shape[0], m, dtype=torch.bool)
    if size > 0:
        out.scatter_(1, idx, True)
    return out


def kernel_shap_coalitions(
    n_features: int,
    n_samples: int,
    generator: torch.Generator | None = None,
    *,
    paired: bool = True,
) -> Coalitions:
    """Coalitions and Shapley-kernel weights for KernelSHAP.

    Strategy (the standard KernelSHAP one): coalition sizes are taken in pairs
    ``(s, M - s)`` from the smallest ``s``, which carry the most kernel mass. A size
    pair is enumerated exhaustively when its share of the remaining budget, in
    proportion to its kernel mass, covers all its coalitions; the remaining budget is
    then drawn at random from the sizes left (size pair with probability proportional
    to its kernel mass, members uniformly), as antithetic pairs ``(z, ~z)`` when
    ``paired``, which cancels the even part of the sampling error.

    If ``n_samples >= 2**M - 2`` every proper non-empty coalition is enumerated with its
    exact weight; with :func:`~whybox.core.surrogate.solve_constrained_wls` this gives
    the exact Shapley values.

    Parameters
    ----------
    n_features : int
        ``M >= 1``.
    n_samples : int
        Budget of coalitions (model evaluations), excluding the empty and full ones.
    generator : torch.Generator, optional
        Generator for reproducible sampling (default: torch's global CPU generator). The
        draws are made on its device, and the coalitions and weights returned there.
    paired : bool, keyword-only
        Antithetic sampling; sampled rows ``2i`` and ``2i+1`` (after the enumerated
        ones) are complements. Default True.

    Returns
    -------
    Coalitions
        ``masks`` has at most ``n_samples`` rows (fewer when sampled duplicates merge).
    """
    m = _check_n_features(n_features, "kernel_shap_coalitions")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(
            "The 'n_samples' parameter of kernel_shap_coalitions must be an int >= 0. "
            f"Got {n_samples!r}."
        )
    if m == 1 or n_samples == 0:
        device = generator.device if generator is not None else None
        return Coalitions(
            torch.zeros(0, m, dtype=torch.bool, device=device),
            torch.zeros(0, dtype=torch.float64, device=device),
            0,
        )
    plan = _kernel_shap_plan(m, n_samples, paired)
    # draws are made where the generator lives (a CPU one by default)
    device = generator.device if generator is not None else torch.device("cpu")
    on_host = device.type == "cpu"
    if plan.n_draws > 0 and on_host and m <= _MAX_CODE_BITS:
        # same draws, post-processed in numpy: a handful of tiny ops, each ~5x cheaper
        # there than as torch ops (the facade draws a design on every call)
        tables = _host_tables(m, n_samples, paired)
        d = plan.n_draws
        if d >= 2 and _rand_is_multinomial():
            # the same numbers from one ``rand`` (kernel_shap_coalition_stack's reading)
            uniform = torch.rand(d * (1 + m), generator=generator, dtype=torch.float64).numpy()
            pick_n = tables.cdf.searchsorted(uniform[:d], side="left")
            keys_n = uniform[d:].reshape(d, m)
        else:
            pick = torch.multinomial(plan.g_masses, d, replacement=True, generator=generator)
            keys = torch.rand(d, m, generator=generator, dtype=torch.float64)
            pick_n, keys_n = pick.numpy(), keys.numpy()
        codes, w = _host_draws(plan, m, pick_n, keys_n, paired, tables)
        # the enumerated rows as codes too: one expansion to rows for the whole design
        codes = np.concatenate((tables.enumerated, codes))
        w = np.concatenate((tables.enumerated_w, w))
        if tables.rows is not None:
            rows = tables.rows.take(codes, axis=0)  # one gather (a new array) instead of two ops
        else:
            rows = (codes[:, None] & tables.bits) != 0
        return Coalitions(torch.from_numpy(rows), torch.from_numpy(w), plan.n_enumerated)
    blocks = list(plan.blocks) if on_host else [b.to(device) for b in plan.blocks]
    weights = list(plan.weights) if on_host else [w.to(device) for w in plan.weights]
    if plan.n_draws > 0:
        masses = plan.g_masses if on_host else plan.g_masses.to(device)
        pick = torch.multinomial(masses, plan.n_draws, replacement=True, generator=generator)
        draw_size = (plan.draw_sizes if on_host else plan.draw_sizes.to(device))[pick]
        keys = torch.rand(plan.n_draws, m, generator=generator, dtype=torch.float64, device=device)
        ranks = torch.argsort(torch.argsort(keys, dim=1), dim=1)
        first = ranks < draw_size[:, None]  # uniform subset of the drawn size
        if paired and plan.draws_half:
            # Canonical orientation for the self-complementary size M/2 so that a pair
            # and its mirror image merge as duplicates.
            flip = (draw_size * 2 == m) & ~first[:, 0]
            first = torch.where(flip[:, None], ~first, first)
        uniq, counts = _unique_rows(first)
        # Merge duplicate draws (rows come back sorted, which keeps runs reproducible).
        w = counts.to(torch.float64) * plan.per_draw_w
        if paired:
            rows = torch.stack([uniq, ~uniq], dim=1).reshape(-1, m)
            w = w.unsqueeze(1).expand(-1, 2).reshape(-1)  # each weight twice, in place
        else:
            rows = uniq
        blocks.append(rows)
        weights.append(w)

    if not blocks:
        return Coalitions(
            torch.zeros(0, m, dtype=torch.bool, device=device),
            torch.zeros(0, dtype=torch.float64, device=device),
            0,
        )
    masks = torch.cat(blocks)  # a new tensor: the plan's cached blocks are never handed out
    w_all = torch.cat(weights)  # float64 (a new tensor too)
    return Coalitions(masks, w_all, plan.n_enumerated)


class _HostTables(NamedTuple):
    """Read-only numpy tables of :func:`_host_draws` for one ``(M, budget, paired)`` plan.

    ``bits``: ``2**(M-1-j)`` for column ``j`` (column 0 the most significant bit);
    ``prefix``: ``(M + 1, M)`` int64, row ``s`` is 1 in its first ``s`` columns;
    ``draw_sizes`` / ``half``: per size group, the drawn size and whether it is the
    self-complementary ``M / 2``; ``enumerated`` / ``enumerated_w``: the plan's enumerated
    rows as codes and their weights; ``pair``: ``[0, 2**M - 1]``, the masks that give a
    code and its complement; ``rows``: for ``M <=`` :data:`_ROW_TABLE_BITS`, the ``(2**M, M)``
    bool row of every code (row ``c`` is ``(c & bits) != 0``), else ``None``;
    ``group_prefix``: per size group, ``prefix[draw_size]`` as bool; ``flip_below``: per
    group, ``2**(M-1)`` for the self-complementary size, else 0.
    """

    bits: np.ndarray
    prefix: np.ndarray
    draw_sizes: np.ndarray
    half: np.ndarray
    enumerated: np.ndarray
    enumerated_w: np.ndarray
    pair: np.ndarray
    rows: np.ndarray | None
    group_prefix: np.ndarray
    flip_below: np.ndarray
    #: the multinomial kernel's cumulative distribution of the size groups' masses
    #: (:func:`_multinomial_cdf`), ``None`` without draws
    cdf: np.ndarray | None = None


#: features up to which a design's codes become rows by one lookup in a table of every
#: code's row (at most 4096 x 12 bools, shared by the designs of one ``M``)
_ROW_TABLE_BITS = 12


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array``, marked read-only (cached tables: a write would change later designs)."""
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=64)
def _host_tables(m: int, n_samples: int, paired: bool) -> _HostTables:
    """:class:`_HostTables` of the plan ``(m, n_samples, paired)`` (cached; only read)."""
    plan = _kernel_shap_plan(m, n_samples, paired)
    bits = np.left_shift(np.int64(1), np.arange(m - 1, -1, -1, dtype=np.int64))
    prefix = (np.arange(m)[None, :] < np.arange(m + 1)[:, None]).astype(np.int64)
    sizes = plan.draw_sizes.numpy().copy() if plan.draw_sizes is not None else np.zeros(0, int)
    blocks = [b.numpy().astype(np.int64) @ bits for b in plan.blocks]
    weights = [w.numpy() for w in plan.weights]
    return _HostTables(
        _read_only(bits),
        _read_only(prefix),
        _read_only(sizes),
        _read_only(sizes * 2 == m),
        _read_only(np.concatenate(blocks) if blocks else np.zeros(0, np.int64)),
        _read_only(np.concatenate(weights) if weights else np.zeros(0, np.float64)),
        _read_only(np.array([0, (1 << m) - 1], dtype=np.int64)),
        _code_rows(m) if m <= _ROW_TABLE_BITS else None,
        _read_only(prefix[sizes].astype(bool)),
        _read_only(np.where(sizes * 2 == m, np.int64(1) << (m - 1), 0).astype(np.int64)),
        None if plan.g_masses is None else _multinomial_cdf(tuple(plan.g_masses.tolist())),
    )


@functools.lru_cache(maxsize=16)
def _code_rows(m: int) -> np.ndarray:
    """``(2**m, m)`` bool: row ``c`` is code ``c``'s coalition, column 0 its most
    significant bit (cached per ``m``; only read)."""
    bits = np.left_shift(np.int64(1), np.arange(m - 1, -1, -1, dtype=np.int64))
    return _read_only((np.arange(1 << m, dtype=np.int64)[:, None] & bits) != 0)


def _host_draws(
    plan: _KernelShapPlan,
    m: int,
    pick: np.ndarray,
    keys: np.ndarray,
    paired: bool,
    tables: _HostTables,
) -> tuple[np.ndarray, np.ndarray]:
    """The torch path's post-processing of ``pick`` / ``keys`` in numpy, on int64 codes
    (column 0 the most significant bit): the sampled rows' codes, in the torch path's row
    order, and their weights.

    Array methods and ufuncs only (no ``np.unique`` / ``np.stack``, whose Python layers
    cost more than their work on these few dozen codes: the facade draws on every call).
    """
    # the columns of the drawn size's smallest keys (rank < size in the torch path's double
    # argsort), summed as their code bits straight from one stable argsort: integer sums,
    # so the same codes without the second sort; ``where=`` sums the first ``size`` columns
    # of each row (no product), the group's prefix row gathered in one step
    order = keys.argsort(axis=1, kind="stable")
    codes = np.add.reduce(tables.bits[order], axis=1, where=tables.group_prefix[pick])
    if paired and plan.draws_half:
        # canonical orientation of the self-complementary size (column 0 kept): codes
        # below ``2**(M-1)`` have column 0 unset; ``flip_below`` is ``2**(M-1)`` for that
        # size's group, 0 (never above a code) for the others
        np.bitwise_xor(codes, (1 << m) - 1, out=codes, where=tables.flip_below[pick] > codes)
    # np.unique(codes, return_counts=True): sorted distinct codes and their counts, from
    # the run boundaries (both ends flagged, so the counts are one subtraction)
    codes.sort()
    n = codes.shape[0]
    edge = np.empty(n + 1, dtype=bool)
    edge[0] = edge[n] = True
    np.not_equal(codes[1:], codes[:-1], out=edge[1:n])
    bounds = edge.nonzero()[0]
    counts = bounds[1:] - bounds[:-1]
    uniq = codes[bounds[:-1]]
    w = counts * plan.per_draw_w  # float64, as ``counts.astype(float64) * per_draw_w``
    if not paired:
        return uniq, w
    # each code followed by its complement (one broadcast xor), each weight twice
    return np.bitwise_xor(uniq[:, None], tables.pair).reshape(-1), w.repeat(2)


def _unique_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.unique(rows, dim=0, return_counts=True)`` for boolean rows, faster.

    Up to 62 columns each row is an int64 code whose bits, column 0 the most significant,
    sort the way the rows sort (lexicographically, ``False`` first): the unique codes give
    the same rows in the same order, without sorting rows as tuples (~10x slower).
    """
    m = rows.shape[1]
    if m > _MAX_CODE_BITS or rows.shape[0] == 0:
        return torch.unique(rows, dim=0, return_counts=True)
    bits = _code_bits(m, rows.device)
    codes, counts = torch.unique((rows.long() * bits).sum(dim=1), return_counts=True)
    return (codes.unsqueeze(1) & bits) != 0, counts


@functools.lru_cache(maxsize=64)
def _code_bits(m: int, device: torch.device) -> Tensor:
    """``2**(m-1-j)`` for column ``j`` (cached; only read)."""
    return 2 ** torch.arange(m - 1, -1, -1, device=device)


class _KernelShapPlan(NamedTuple):
    """The deterministic part of a KernelSHAP design (cached per ``(M, budget, paired)``).

    ``blocks`` / ``weights``: the enumerated sizes' coalitions and exact weights;
    ``n_draws`` random draws remain (0: none), of size groups with masses ``g_masses``
    (whose drawn size is ``draw_sizes[group]``), each carrying ``per_draw_w``.
    """

    blocks: tuple[Tensor, ...]
    weights: tuple[Tensor, ...]
    n_enumerated: int
    n_draws: int
    g_masses: Tensor | None
    draw_sizes: Tensor | None
    per_draw_w: float
    #: whether the self-complementary size ``M / 2`` can be drawn (paired draws of it are
    #: oriented canonically)
    draws_half: bool = False


@functools.lru_cache(maxsize=64)
def _kernel_shap_plan(m: int, n_samples: int, paired: bool) -> _KernelShapPlan:
    """Which sizes :func:`kernel_shap_coalitions` enumerates and what is left to draw."""
    sizes = torch.arange(1, m, dtype=torch.float64)
    mass = (m - 1) / (sizes * (m - sizes))  # kernel mass of each size s = 1..M-1
    total_mass = float(mass.sum())

    def mass_of(s: int) -> float:
        return float(mass[s - 1])

    # Size "groups": {s, M-s} when paired (one group when s == M-s), else {s}.
    if paired:
        groups = [(s, m - s) if s != m - s else (s,) for s in range(1, m // 2 + 1)]
    else:
        groups = [(s,) for s in range(1, m)]
        groups.sort(key=lambda g: min(g[0], m - g[0]))  # most massive sizes first

    blocks: list[Tensor] = []
    weights: list[Tensor] = []
    budget = n_samples
    remaining_mass = total_mass
    left = list(groups)
    exhaustive = n_samples >= 2**m - 2
    while left:
        g = left[0]
        g_count = sum(math.comb(m, s) for s in g)
        g_mass = sum(mass_of(s) for s in g)
        if not (exhaustive or budget * g_mass / remaining_mass >= g_count - 1e-9):
            break
        for s in g:
            rows = _combinations_mask(m, s)
            blocks.append(rows)
            w_s = mass_of(s) / math.comb(m, s)
            weights.append(torch.full((rows.shape[0],), w_s, dtype=torch.float64))
        budget -= g_count
        remaining_mass -= g_mass
        left.pop(0)
    n_enum = sum(b.shape[0] for b in blocks)
    n_draws, g_masses, draw_sizes, per_draw_w = 0, None, None, 0.0
    if left and budget > 0:
        g_masses = torch.tensor([sum(mass_of(s) for s in g) for g in left], dtype=torch.float64)
        n_draws = budget // 2 if paired else budget
        # Paired: draw the smaller size of the pair; the complement provides the other one.
        draw_sizes = torch.tensor([min(g) for g in left] if paired else [g[0] for g in left])
        per_draw_w = remaining_mass / (n_draws * (2 if paired else 1)) if n_draws else 0.0
    draws_half = draw_sizes is not None and m % 2 == 0 and any(m // 2 in g for g in left)
    return _KernelShapPlan(
        tuple(blocks), tuple(weights), n_enum, n_draws, g_masses, draw_sizes, per_draw_w, draws_half
    )


class CoalitionStack(NamedTuple):
    """``N`` KernelSHAP designs drawn in sequence from one generator, as codes
    (:func:`kernel_shap_coalition_stack`).

    Attributes
    ----------
    codes : numpy.ndarray, shape (N, K), int64
        Design ``i``'s row ``j`` as a code (column 0 the most significant bit), the rows
        of :func:`kernel_shap_coalitions`' ``i``-th call in its order; ``0`` (the empty
        coalition) past design ``i``'s ``rows[i]`` rows. ``K = max(rows)``.
    weights : numpy.ndarray, shape (N, K), float64
        The rows' weights, ``0.0`` past a design's rows.
    rows : numpy.ndarray, shape (N,), int64
        Rows per design.
    n_enumerated : int
        Enumerated rows (the first ones of every design).
    """

    codes: np.ndarray
    weights: np.ndarray
    rows: np.ndarray
    n_enumerated: int


def kernel_shap_coalition_stack(
    n_features: int,
    n_samples: int,
    n_designs: int,
    generator: torch.Generator | None = None,
    *,
    paired: bool = True,
) -> CoalitionStack | None:
    """``n_designs`` calls of :func:`kernel_shap_coalitions` on one generator, at once.

    Design ``i`` is what the ``i``-th of ``n_designs`` calls in a row returns (its rows in
    the same order with the same weights), and the generator is left where those calls
    leave it. Each call draws ``multinomial(masses, D, replacement=True)`` then
    ``rand(D, M, float64)``: on the CPU both consume one 64-bit draw per number, in order,
    so one ``rand(n_designs, D * (1 + M), float64)`` holds every call's uniform numbers,
    and the picks are the multinomial kernel's inverse-CDF search over them (the first
    group whose cumulative probability is ``>=`` the number, its binary search). Whether this
    torch's CPU kernels do that is checked once per process on private generators
    (:func:`_rand_is_multinomial`).

    Returns
    -------
    CoalitionStack or None
        ``None`` where this route does not apply (a generator off the CPU, more than 62
        features, fewer than 2 random draws per design, or a torch whose kernels draw
        otherwise): the caller then makes the calls one by one.
    """
    m = n_features
    on_cpu = generator is None or generator.device.type == "cpu"
    if n_designs < 1 or not on_cpu or not coalition_stack_applies(m, n_samples, paired=paired):
        return None
    plan = _kernel_shap_plan(m, n_samples, paired)
    d = plan.n_draws
    tables = _host_tables(m, n_samples, paired)
    n = n_designs
    uniform = torch.rand(n, d * (1 + m), generator=generator, dtype=torch.float64).numpy()
    pick = tables.cdf.searchsorted(uniform[:, :d].reshape(-1), side="left")  # (N * D,)
    keys = uniform[:, d:].reshape(n * d, m)
    # as _host_draws, on every design's draws at once (row-wise operations only)
    codes = _smallest_codes(keys, pick, tables)
    if paired and plan.draws_half:
        np.bitwise_xor(codes, (1 << m) - 1, out=codes, where=tables.flip_below[pick] > codes)
    codes = codes.reshape(n, d)
    codes.sort(axis=1)
    # each design's distinct codes (sorted) and their counts, packed to the left
    new = np.empty((n, d), dtype=bool)
    new[:, 0] = True
    np.not_equal(codes[:, 1:], codes[:, :-1], out=new[:, 1:])
    distinct = np.add.reduce(new, axis=1)  # (N,)
    slot = (np.cumsum(new, axis=1) - 1 + np.arange(n)[:, None] * d).reshape(-1)
    counts = np.bincount(slot, minlength=n * d).reshape(n, d)
    uniq = np.zeros(n * d, dtype=np.int64)
    uniq[slot[new.reshape(-1)]] = codes[new]
    uniq = uniq.reshape(n, d)
    w = counts * plan.per_draw_w  # 0.0 past a design's distinct draws
    if paired:
        sampled = np.bitwise_xor(uniq[:, :, None], tables.pair).reshape(n, 2 * d)
        w = w.repeat(2, axis=1)
        per = 2
    else:
        sampled, per = uniq, 1
    sampled[np.arange(sampled.shape[1])[None, :] >= per * distinct[:, None]] = 0
    n_enum = plan.n_enumerated
    rows = n_enum + per * distinct
    k = int(rows.max())
    all_codes = np.empty((n, k), dtype=np.int64)
    all_w = np.empty((n, k), dtype=np.float64)
    all_codes[:, :n_enum] = tables.enumerated
    all_w[:, :n_enum] = tables.enumerated_w
    all_codes[:, n_enum:] = sampled[:, : k - n_enum]
    all_w[:, n_enum:] = w[:, : k - n_enum]
    return CoalitionStack(all_codes, all_w, rows, n_enum)


#: draws from which :func:`_smallest_codes` selects by a sort of the keys' values (faster
#: than their stable argsort on many rows, slower on a few dozen)
_THRESHOLD_ROWS = 256


def _smallest_codes(keys: np.ndarray, pick: np.ndarray, tables: _HostTables) -> np.ndarray:
    """Each row's code of the columns holding its ``draw_sizes[pick]`` smallest keys, the
    earlier column first among equal keys: :func:`_host_draws`' codes.

    On many rows the columns are those whose key is at most the row's ``size``-th smallest
    value (a plain sort of the values), which is that set whenever exactly ``size`` keys
    are at most it (no tie at the threshold); otherwise, and on few rows, the stable
    argsort's first ``size`` columns. Integer sums of the same bits either way.
    """
    if keys.shape[0] >= _THRESHOLD_ROWS:
        size = tables.draw_sizes[pick]
        threshold = np.sort(keys, axis=1)[np.arange(keys.shape[0]), size - 1]
        chosen = keys <= threshold[:, None]
        if np.array_equal(np.add.reduce(chosen, axis=1), size):
            return chosen @ tables.bits  # exact int64 sums of the chosen columns' bits
    order = keys.argsort(axis=1, kind="stable")
    return np.add.reduce(tables.bits[order], axis=1, where=tables.group_prefix[pick])


def coalition_stack_applies(n_features: int, n_samples: int, *, paired: bool = True) -> bool:
    """Whether :func:`kernel_shap_coalition_stack` draws ``(n_features, n_samples)``
    designs on a CPU generator (else it returns ``None`` and draws nothing): 2 to 62
    features, at least 2 random draws per design (one draw takes the multinomial kernel's
    exponential route), and a torch whose kernels draw as that function reads them."""
    m = n_features
    if isinstance(m, bool) or not isinstance(m, int) or not 2 <= m <= _MAX_CODE_BITS:
        return False
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples <= 0:
        return False
    return _kernel_shap_plan(m, n_samples, paired).n_draws >= 2 and _rand_is_multinomial()


def code_rows(codes: np.ndarray, m: int) -> np.ndarray:
    """Codes (any shape, int64) -> their coalitions ``(*codes.shape, m)`` bool (column 0
    the most significant bit), a new array."""
    if m <= _ROW_TABLE_BITS:
        return _code_rows(m).take(codes, axis=0)
    bits = np.left_shift(np.int64(1), np.arange(m - 1, -1, -1, dtype=np.int64))
    return (codes[..., None] & bits) != 0


@functools.lru_cache(maxsize=64)
def _multinomial_cdf(masses: tuple[float, ...]) -> np.ndarray:
    """The CPU multinomial kernel's normalised cumulative distribution of ``masses``:
    running float64 sums, each divided by the total, the last set to 1 (read-only)."""
    cum = np.add.accumulate(np.array(masses, dtype=np.float64))
    cum = cum / cum[-1]
    cum[-1] = 1.0
    return _read_only(cum)


@functools.lru_cache(maxsize=1)
def _rand_is_multinomial() -> bool:
    """Whether this torch's CPU ``multinomial(p, D, replacement=True)`` followed by
    ``rand(D, M, float64)`` equals one ``rand`` read as :func:`kernel_shap_coalition_stack`
    reads it (picks by ``searchsorted`` on :func:`_multinomial_cdf`): the picks, the keys
    and the generator's state afterwards, for a few designs in a row on private
    generators."""
    for masses, d, m, n in (
        ((0.5, 0.3, 0.2), 2, 3, 3),
        ((2.0, 1.0, 0.25, 0.125, 7.0), 17, 6, 4),
        ((1.0,), 5, 2, 2),
        ((0.6, 0.4), 64, 12, 5),
    ):
        probs = torch.tensor(masses, dtype=torch.float64)
        plain, fast = torch.Generator().manual_seed(2024), torch.Generator().manual_seed(2024)
        want = []
        for _ in range(n):
            pick = torch.multinomial(probs, d, replacement=True, generator=plain)
            keys = torch.rand(d, m, generator=plain, dtype=torch.float64)
            want.append((pick.numpy(), keys.numpy()))
        uniform = torch.rand(n, d * (1 + m), generator=fast, dtype=torch.float64).numpy()
        cum = _multinomial_cdf(masses)
        for i, (pick, keys) in enumerate(want):
            got = np.searchsorted(cum, uniform[i, :d], side="left")
            if not np.array_equal(got, pick) or not np.array_equal(
                uniform[i, d:].reshape(d, m), keys
            ):
                return False
        if not torch.equal(plain.get_state(), fast.get_state()):
            return False
    return True
