"""Random sources: every random draw a method makes goes through one of these.

A method asks its source for the draw it needs (noise, uniform numbers, index choices,
permutations, Bernoulli masks) and never asks which source it has; the source decides
how to draw:

* :class:`GeneratorRandom` draws from a private ``torch.Generator`` (native methods take
  ``seed=`` and are reproducible without touching global state);
* :class:`GlobalRandom` draws from the global generators in the order Captum 0.9 does
  (``numpy.random`` for GradientShap's baseline indices and path points, torch for noise,
  ``torch.randperm`` for orderings and shuffles, ``torch.bernoulli`` for LIME's samples),
  so code seeded for Captum gives identical numbers on the facade.

Draws are made on the CPU (as Captum does; torch's CPU and CUDA generators give different
streams, so integer seeds give the same numbers on every device) and moved to the requested
device once, outside any hot loop; a ``torch.Generator`` on an accelerator passed as ``seed``
draws on its own device instead.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .masks import sample_permutations
from .validation import fail

__all__ = ["RandomSource", "GeneratorRandom", "GlobalRandom", "make_random", "check_seed"]


class RandomSource(ABC):
    """The draws sampling methods need; subclasses decide how each one is drawn.

    Attributes
    ----------
    generator : torch.Generator or None
        The generator to hand to torch functions and helpers that take ``generator=``
        (e.g. :func:`whybox.core.masks.kernel_shap_coalitions`); ``None`` means torch's
        global generator.
    """

    generator: torch.Generator | None = None

    @abstractmethod
    def normal(self, shape: Sequence[int], std: float, *, like: Tensor) -> Tensor:
        """Zero-mean Gaussian noise.

        Parameters
        ----------
        shape : sequence of int
        std : float
            Standard deviation.
        like : Tensor, keyword-only
            Gives the device and (floating) dtype of the result.

        Returns
        -------
        Tensor, shape ``shape``, on ``like``'s device, in ``like``'s floating dtype (the
        default dtype for integer ``like``).
        """

    @abstractmethod
    def uniform(self, n: int, *, like: Tensor) -> Tensor:
        """``n`` numbers uniform on ``[0, 1)``: Tensor ``(n,)``, device and dtype as
        :meth:`normal`."""

    @abstractmethod
    def choice(self, n_options: int, size: int) -> Tensor:
        """``size`` indices drawn uniformly from ``0..n_options-1`` with replacement:
        long Tensor ``(size,)`` on the CPU."""

    @abstractmethod
    def permutations(
        self, count: int, n: int, *, exclude_identity: bool = False, device: Any = None
    ) -> Tensor:
        """``count`` uniformly random permutations of ``0..n-1``.

        Parameters
        ----------
        count, n : int
        exclude_identity : bool, keyword-only
            Never return the identity (a feature shuffled across a batch must move);
            needs ``n >= 2`` when ``count > 0``.
        device : keyword-only, optional
            Device of the result (default CPU).

        Returns
        -------
        Tensor, shape ``(count, n)``, long; each row a permutation.
        """

    @abstractmethod
    def bernoulli(self, shape: Sequence[int], p: float = 0.5, *, device: Any = None) -> Tensor:
        """Independent Bernoulli draws, ``True`` with probability ``p``.

        Returns
        -------
        Tensor, shape ``shape``, bool, on ``device`` (default CPU).
        """

    def lime_samples(
        self, n_samples: int, m: int, groups: int, *, device: Any = None, fit_draws: bool = False
    ) -> Tensor:
        """LIME's default interpretable samples: each of ``m`` features kept with
        probability 1/2.

        Parameters
        ----------
        n_samples, m : int
            Samples and interpretable features.
        groups : int
            Examples fitted separately (1 for a model returning one value per batch).
        device : keyword-only, optional
        fit_draws : bool, keyword-only
            Whether each group's surrogate fit is one that Captum's would draw from the
            global generators for (see :class:`GlobalRandom`); other sources ignore it.

        Returns
        -------
        Tensor, bool: ``(S, M)`` shared by every group (this default), or ``(S, groups, M)``
        one set per group.
        """
        return self.bernoulli((n_samples, m), 0.5, device=device)


class GeneratorRandom(RandomSource):
    """Draws from a private ``torch.Generator``, on the generator's device, then moves the
    results to the requested device (once per request, never per chunk).

    Integer seeds give CPU generators (the same numbers on every device); a generator on an
    accelerator (``torch.Generator("cuda")``) draws there, so nothing is drawn on the host
    and copied. Vectorised draws (one call per request, no Python loop over rows).
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.device = generator.device

    def normal(self, shape: Sequence[int], std: float, *, like: Tensor) -> Tensor:
        noise = torch.randn(
            tuple(shape), generator=self.generator, dtype=_float(like), device=self.device
        )
        return _to(noise * std, like.device)

    def uniform(self, n: int, *, like: Tensor) -> Tensor:
        values = torch.rand(n, generator=self.generator, dtype=_float(like), device=self.device)
        return _to(values, like.device)

    def choice(self, n_options: int, size: int) -> Tensor:
        drawn = torch.randint(0, n_options, (size,), generator=self.generator, device=self.device)
        return _to(drawn, torch.device("cpu"))

    def permutations(
        self, count: int, n: int, *, exclude_identity: bool = False, device: Any = None
    ) -> Tensor:
        _check_permutable(count, n, exclude_identity)
        if n == 0:
            return torch.zeros(count, 0, dtype=torch.long, device=device)
        perms = sample_permutations(n, count, self.generator, device=self.device)
        if exclude_identity:
            # the reversed order is never the identity for n >= 2: a cheap, deterministic
            # re-draw that keeps the draw vectorised (probability 1/n! per row); selected
            # with ``where``, not a boolean index (a host sync on an accelerator)
            identity = torch.arange(n, device=self.device)
            same = (perms == identity).all(dim=1, keepdim=True)
            perms = torch.where(same, torch.arange(n - 1, -1, -1, device=self.device), perms)
        return _to(perms, device)

    def bernoulli(self, shape: Sequence[int], p: float = 0.5, *, device: Any = None) -> Tensor:
        if self.device.type == "cpu":
            return _to(cpu_bernoulli(shape, p, self.generator), device)
        probs = torch.full(tuple(shape), float(p), device=self.device)
        return _to(torch.bernoulli(probs, generator=self.generator).bool(), device)


class GlobalRandom(RandomSource):
    """Captum 0.9's draws from the global generators, in Captum's order.

    ``normal``: ``torch.normal`` (NoiseTunnel); ``uniform`` / ``choice``:
    ``numpy.random`` (GradientShap's path points and baseline indices); ``permutations``:
    one ``torch.randperm`` per row, re-drawn while it is the identity when excluded
    (ShapleyValueSampling's orderings, FeaturePermutation's shuffles); ``bernoulli``:
    ``torch.bernoulli`` on CPU probabilities (LIME's default sampler, whose ``S``
    samples of ``(1, M)`` are the same numbers as one ``(S, M)`` draw).
    """

    generator = None

    def normal(self, shape: Sequence[int], std: float, *, like: Tensor) -> Tensor:
        stds = torch.tensor(std, device=like.device).repeat(tuple(shape))
        return torch.normal(0, stds).to(_float(like))

    def uniform(self, n: int, *, like: Tensor) -> Tensor:
        values = np.random.uniform(0.0, 1.0, n)
        return torch.tensor(values, device=like.device, dtype=_float(like))

    def choice(self, n_options: int, size: int) -> Tensor:
        return torch.as_tensor(np.random.choice(n_options, size), dtype=torch.long)

    def permutations(
        self, count: int, n: int, *, exclude_identity: bool = False, device: Any = None
    ) -> Tensor:
        _check_permutable(count, n, exclude_identity)
        identity = torch.arange(n)
        rows = []
        for _ in range(count):  # one randperm per row: Captum's draw order
            perm = torch.randperm(n)
            while exclude_identity and bool((perm == identity).all()):
                perm = torch.randperm(n)
            rows.append(perm)
        perms = torch.stack(rows) if rows else identity.repeat(0, 1)
        return _to(perms, device)

    def bernoulli(self, shape: Sequence[int], p: float = 0.5, *, device: Any = None) -> Tensor:
        return _to(cpu_bernoulli(shape, p, None), device)

    def lime_samples(
        self, n_samples: int, m: int, groups: int, *, device: Any = None, fit_draws: bool = False
    ) -> Tensor:
        """Captum's order: one ``(1, M)`` draw per sample, every sample of example 0 first,
        then example 1 (Captum fits one example at a time), so seeded code gives Captum's
        samples for every example and leaves the generators where Captum leaves them.

        ``fit_draws``: after each example's samples, make (and discard) the draws Captum's
        surrogate fit makes there: the ``DataLoader`` iterator's seed, then the
        ``nn.Linear(M, 1)`` initialisation of its linear model (whybox's surrogates solve in
        closed form and draw nothing).
        """
        if fit_draws and groups > 0 and _lime_draws_in_one(n_samples, m):
            # every group's samples and fit draws from one ``rand``: the same numbers
            words = n_samples * m
            uniform = torch.rand(groups, words + _fit_words(m))
            keep = uniform[:, :words].reshape(groups, n_samples, m) < 0.5
            if groups == 1:
                return _to(keep[0], device)
            return _to(keep.transpose(0, 1).contiguous(), device)  # (S, groups, M)
        per_group = []
        for _ in range(groups):
            # Captum draws ``(1, M)`` per sample; CPU ``torch.bernoulli`` of a probability
            # tensor consumes the generator element by element in order, so one ``(S, M)``
            # draw gives the same numbers and leaves the generator where Captum leaves it
            # (tests/core/test_randomness.py checks both)
            per_group.append(self.bernoulli((n_samples, m), 0.5, device=device))
            if fit_draws:
                torch.empty((), dtype=torch.int64).random_()
                # nn.Linear(M, 1)'s initialisation draws: uniform weight (1, M), then bias
                # (1,) (the bounds do not change what is drawn; no module is built)
                torch.empty(1, m).uniform_()
                torch.empty(1).uniform_()
        return per_group[0] if groups == 1 else torch.stack(per_group, dim=1)


def _fit_words(m: int) -> int:
    """32-bit generator words Captum's surrogate fit draws per example (see
    :meth:`GlobalRandom.lime_samples`): the int64 ``random_()`` (two), then ``M + 1`` float32
    ``uniform_`` numbers (one each)."""
    return 2 + m + 1


def _lime_draws_in_one(n_samples: int, m: int) -> bool:
    """Whether :meth:`GlobalRandom.lime_samples`' draws for fitted groups can be one
    float32 ``rand``: the default dtype float32 (the samples' ``rand`` then draws float32,
    one 32-bit word per number, as ``uniform_`` on float32 and half of ``random_()`` on
    int64 do), and this torch's CPU kernels checked to draw so (:func:`_lime_rand_in_one`)."""
    return torch.get_default_dtype() == torch.float32 and _lime_rand_in_one()


@functools.lru_cache(maxsize=1)
def _lime_rand_in_one() -> bool:
    """Whether, on this torch's CPU, ``G`` rounds of LIME's default draws with fit draws
    (``rand(S, M) < 0.5``, then ``empty((), int64).random_()``, ``empty(1, M).uniform_()``,
    ``empty(1).uniform_()``) give the samples of one ``rand(G, S * M + M + 3)`` and leave
    the generator in the same state (checked on private generators: the kernels are the
    global generator's)."""
    if not _rand_is_bernoulli():
        return False
    for groups, n_samples, m in ((1, 5, 3), (3, 17, 4), (2, 64, 12)):
        plain, fast = torch.Generator().manual_seed(777), torch.Generator().manual_seed(777)
        want = []
        for _ in range(groups):
            want.append(torch.rand(n_samples, m, generator=plain) < 0.5)
            torch.empty((), dtype=torch.int64).random_(generator=plain)
            torch.empty(1, m).uniform_(generator=plain)
            torch.empty(1).uniform_(generator=plain)
        words = n_samples * m
        uniform = torch.rand(groups, words + _fit_words(m), generator=fast)
        got = uniform[:, :words].reshape(groups, n_samples, m) < 0.5
        if not torch.equal(got, torch.stack(want)):
            return False
        if not torch.equal(plain.get_state(), fast.get_state()):
            return False
    return True


def cpu_bernoulli(shape: Sequence[int], p: float, generator: torch.Generator | None) -> Tensor:
    """``torch.bernoulli(torch.full(shape, p), generator=generator).bool()`` on the CPU.

    Drawn as ``torch.rand(shape) < p`` in the probabilities' dtype where that gives the
    very same bits and leaves the generator in the same state (CPU ``bernoulli`` of a
    probability tensor compares one uniform number per element, drawn in order, with its
    probability; ``rand`` draws the same numbers), about 3x faster (200 x 12 draws: 27 ->
    9 us). Whether it does is checked once per process (:func:`_rand_is_bernoulli`);
    otherwise, and for other dtypes, ``bernoulli`` itself draws.

    Parameters
    ----------
    shape : sequence of int
    p : float
        Probability of ``True``.
    generator : torch.Generator or None
        A CPU generator, or ``None`` for torch's global one.

    Returns
    -------
    Tensor
        Bool, ``shape``, on the CPU.
    """
    dtype = torch.get_default_dtype()  # what torch.full(shape, p) holds
    if dtype in (torch.float32, torch.float64) and _rand_is_bernoulli():
        return torch.rand(tuple(shape), dtype=dtype, generator=generator) < float(p)
    return torch.bernoulli(torch.full(tuple(shape), float(p)), generator=generator).bool()


@functools.lru_cache(maxsize=1)
def _rand_is_bernoulli() -> bool:
    """Whether this torch's CPU ``rand(...) < p`` reproduces ``bernoulli(full(p))``: the
    bits and the generator's state afterwards, on private generators."""
    for dtype in (torch.float32, torch.float64):
        for shape, p in (((1,), 0.5), ((37,), 0.3), ((64, 33), 0.5), ((5, 1000), 0.71)):
            plain, fast = torch.Generator().manual_seed(12345), torch.Generator().manual_seed(12345)
            want = torch.bernoulli(torch.full(shape, p, dtype=dtype), generator=plain).bool()
            got = torch.rand(shape, dtype=dtype, generator=fast) < p
            if not torch.equal(want, got) or not torch.equal(plain.get_state(), fast.get_state()):
                return False
    return True


def _to(t: Tensor, device: Any) -> Tensor:
    """``t`` on ``device`` (``None``: where it is); no call at all when it is there."""
    if device is None or t.device == torch.device(device):
        return t
    return t.to(device)


def _float(like: Tensor) -> torch.dtype:
    return like.dtype if like.is_floating_point() else torch.get_default_dtype()


def _check_permutable(count: int, n: int, exclude_identity: bool) -> None:
    if count < 0 or n < 0:
        raise ValueError(f"permutations: 'count' and 'n' must be >= 0. Got {count} and {n}.")
    if exclude_identity and count > 0 and n < 2:
        raise ValueError(
            f"permutations: a permutation of {n} element(s) is always the identity; "
            "exclude_identity needs n >= 2."
        )


def is_int_seed(value: Any) -> bool:
    """Whether ``value`` is an int seed (Python or numpy int, never a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_seed(owner: str, name: str, value: Any) -> None:
    """Declared-parameter check for ``seed``: ``None``, an int, a ``torch.Generator`` or
    a :class:`RandomSource` (use as ``Check(check_seed)``)."""
    ok = value is None or isinstance(value, (torch.Generator, RandomSource))
    ok = ok or is_int_seed(value)
    if not ok:
        fail(
            owner,
            name,
            "None, an int, a torch.Generator or a whybox RandomSource",
            value,
            type_error=True,
        )


def make_random(seed: int | torch.Generator | RandomSource | None) -> RandomSource:
    """The random source for ``seed``.

    ``None`` -> a fresh generator seeded from torch's global RNG (so ``torch.manual_seed``
    still makes runs reproducible); an int -> a generator seeded with it; a
    ``torch.Generator`` -> draws from it; a :class:`RandomSource` -> itself.
    """
    if isinstance(seed, RandomSource):
        return seed
    if isinstance(seed, torch.Generator):
        return GeneratorRandom(seed)
    generator = torch.Generator()
    if seed is None:
        generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    else:
        generator.manual_seed(int(seed))
    return GeneratorRandom(generator)
