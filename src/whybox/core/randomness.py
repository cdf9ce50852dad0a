"""Random sources for sampling methods (noise, baseline draws, path points, coalitions).

Native methods take a ``seed`` or ``torch.Generator`` and are reproducible. The Captum
facade uses :class:`GlobalRandom`, which draws from the same global generators in the same
order as Captum 0.9 (numpy for baseline indices and GradientShap's path points, torch for
noise), so code seeded for Captum gives identical results on whybox.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["RandomSource", "GeneratorRandom", "GlobalRandom", "make_random"]


class RandomSource:
    """Interface: normal noise, uniform numbers and index draws."""

    def normal(self, shape: Sequence[int], std: float, *, like: Tensor) -> Tensor:
        """Zero-mean Gaussian noise with standard deviation ``std``."""
        raise NotImplementedError  # pragma: no cover

    def uniform(self, n: int, *, like: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def choice(self, n_options: int, size: int) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class GeneratorRandom(RandomSource):
    """Draws from a private ``torch.Generator`` (CPU), then moves results to the device."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def normal(self, shape: Sequence[int], std: float, *, like: Tensor) -> Tensor:
        noise = torch.randn(tuple(shape), generator=self.generator, dtype=_float(like))
        return (noise * std).to(like.device)

    def uniform(self, n: int, *, like: Tensor) -> Tensor:
        return torch.rand(n, generator=self.generator, dtype=_float(like)).to(like.device)

    def choice(self, n_options: int, size: int) -> Tensor:
        return torch.randint(0, n_options, (size,), generator=self.generator)


class GlobalRandom(RandomSource):
    """Captum 0.9's draws: ``torch.normal`` for noise, ``numpy.random`` for the rest."""

    def normal(self, shape: Sequence[int], std: float, *, like: Tensor) -> Tensor:
        stds = torch.tensor(std, device=like.device).repeat(tuple(shape))
        return torch.normal(0, stds).to(_float(like))

    def uniform(self, n: int, *, like: Tensor) -> Tensor:
        values = np.random.uniform(0.0, 1.0, n)
        return torch.tensor(values, device=like.device, dtype=_float(like))

    def choice(self, n_options: int, size: int) -> Tensor:
        return torch.as_tensor(np.random.choice(n_options, size), dtype=torch.long)


def _float(like: Tensor) -> torch.dtype:
    return like.dtype if like.is_floating_point() else torch.get_default_dtype()


def make_random(seed: int | torch.Generator | RandomSource | None) -> RandomSource:
    """``None`` -> a fresh generator seeded from torch's global RNG; an int -> seeded."""
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
