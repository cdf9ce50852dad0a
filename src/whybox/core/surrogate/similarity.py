"""LIME's similarity kernels: how close a perturbed input is to the original."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["ExpKernelSimilarity", "get_exp_kernel_similarity_function", "SimilarityFunc"]

# Callable alias for type hints of user-provided similarity functions.
SimilarityFunc = Callable[..., float | Tensor]


def _flatten_cat(value: Tensor | tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    """One flat vector from a tensor or from several (concatenated)."""
    if isinstance(value, Tensor):
        return value.reshape(-1)
    return torch.cat([torch.as_tensor(t).reshape(-1) for t in value])


class ExpKernelSimilarity:
    """Exponential kernel on a distance between the original and a perturbed input.

    ``similarity = exp(-d^2 / (2 * kernel_width^2))`` where ``d`` is the cosine
    distance ``1 - cos(x, x')`` or the Euclidean distance ``||x - x'||`` between the
    flattened (and, for tuples, concatenated) inputs. Instances are the callables
    returned by :func:`get_exp_kernel_similarity_function`.
    """

    def __init__(self, distance_mode: str, kernel_width: float) -> None:
        self.distance_mode = distance_mode
        self.kernel_width = kernel_width

    def _kernel(self, distance: Tensor) -> Tensor:
        """``exp(-d^2 / (2 w^2))`` in three ops on one new tensor: ``d^2 / (-2 w^2)`` is
        ``-(d^2) / (2 w^2)`` exactly (IEEE division is symmetric in the signs)."""
        return distance.square().div_(-2.0 * self.kernel_width**2).exp_()

    def __call__(
        self,
        original_inp: Tensor | tuple[Tensor, ...],
        perturbed_inp: Tensor | tuple[Tensor, ...],
        perturbed_interpretable_inp: Any = None,
        **kwargs: Any,
    ) -> float:
        """Similarity of one perturbed sample, as a Python float (LimeBase signature).

        The interpretable sample and ``**kwargs`` are accepted and ignored.
        """
        orig = _flatten_cat(original_inp)
        pert = _flatten_cat(perturbed_inp)
        return float(self.batch(orig.unsqueeze(0), pert.unsqueeze(0))[0])

    def batch(self, original_inp: Tensor, perturbed_inp: Tensor) -> Tensor:
        """Similarities for a batch of perturbed samples at once.

        Parameters
        ----------
        original_inp : Tensor, shape (1, ...) or (n, ...)
        perturbed_inp : Tensor, shape (n, ...)

        Returns
        -------
        Tensor, shape (n,)
        """
        pert = perturbed_inp.reshape(perturbed_inp.shape[0], -1)
        orig = original_inp.reshape(original_inp.shape[0], -1)
        return self._similarity(orig, pert)

    def grouped(self, original_inp: Tensor, perturbed_inp: Tensor) -> Tensor:
        """Similarities of ``k`` perturbed samples of each of ``G`` originals.

        Parameters
        ----------
        original_inp : Tensor, shape (G, D)
        perturbed_inp : Tensor, shape (k, G, D); ``perturbed_inp[j, g]`` is compared with
            ``original_inp[g]``

        Returns
        -------
        Tensor, shape (k, G)
            The numbers :meth:`batch` gives on the originals repeated ``k`` times (the
            originals are broadcast, not copied).
        """
        return self._similarity(original_inp.unsqueeze(0), perturbed_inp)

    def _similarity(self, orig: Tensor, pert: Tensor) -> Tensor:
        """The kernel along the last dimension of broadcastable ``orig`` and ``pert``."""
        # torch.promote_types of the two float dtypes (float32 unless one is float64)
        wide = orig.dtype == torch.float64 or pert.dtype == torch.float64
        dtype = torch.float64 if wide else torch.float32
        if orig.dtype != dtype:
            orig = orig.to(dtype)
        if pert.dtype != dtype:
            pert = pert.to(dtype)
        if self.distance_mode == "cosine":
            distance = 1.0 - torch.nn.functional.cosine_similarity(orig, pert, dim=-1)
        else:
            distance = torch.linalg.vector_norm(orig - pert, dim=-1)
        return self._kernel(distance)

    def __repr__(self) -> str:
        return (
            f"ExpKernelSimilarity(distance_mode={self.distance_mode!r}, "
            f"kernel_width={self.kernel_width!r})"
        )


def get_exp_kernel_similarity_function(
    distance_mode: str = "cosine", kernel_width: float = 1.0
) -> ExpKernelSimilarity:
    """Build LIME's default similarity: an exponential kernel on a distance.

    Parameters
    ----------
    distance_mode : {"cosine", "euclidean"}
        Distance between the flattened original and perturbed inputs (tuples are
        concatenated). Default ``"cosine"``.
    kernel_width : float
        Width of the kernel ``exp(-d^2 / (2 * kernel_width^2))``, > 0. Default 1.0.

    Returns
    -------
    ExpKernelSimilarity
        Callable ``similarity(original_inp, perturbed_inp, perturbed_interpretable_inp,
        **kwargs) -> float``, usable as ``similarity_func`` of Lime / LimeBase, with a
        vectorized ``.batch(original, perturbed_batch)``.
    """
    if distance_mode not in ("cosine", "euclidean"):
        raise ValueError(
            "The 'distance_mode' parameter of get_exp_kernel_similarity_function must be "
            f"'cosine' or 'euclidean'. Got {distance_mode!r}."
        )
    if (
        isinstance(kernel_width, bool)
        or not isinstance(kernel_width, numbers.Real)
        or not kernel_width > 0
        or not math.isfinite(kernel_width)
    ):
        raise ValueError(
            "The 'kernel_width' parameter of get_exp_kernel_similarity_function must be a "
            f"float > 0. Got {kernel_width!r}."
        )
    return ExpKernelSimilarity(distance_mode, float(kernel_width))
