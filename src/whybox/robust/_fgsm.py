"""Fast Gradient Sign Method (Goodfellow et al., "Explaining and Harnessing Adversarial
Examples", 2015), Captum 0.9's ``FGSM``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from whybox.core.chunks import ChunkSize
from whybox.core.validation import check_bool, check_real, fail

from ._gradients import LossGradients, check_bounds, prepare_masks, sign_step
from ._perturbation import Perturbation

__all__ = ["FGSM"]


class FGSM(Perturbation):
    """One signed gradient step on the loss.

    Untargeted (``target`` holds the true labels): ``x' = x + epsilon * sign(d L(x, y) / dx)``;
    targeted (``target`` holds the classes to reach): ``x' = x - epsilon * sign(d L(x, t) /
    dx)``; then ``x'`` is clamped to ``[lower_bound, upper_bound]``. Elements whose gradient
    is at most :attr:`zero_thresh` in magnitude are left unchanged.

    Parameters
    ----------
    forward_func : callable
        The model (any callable of the inputs and additional forward arguments).
    loss_func : callable, optional
        ``loss_func(outputs, target) -> Tensor`` with one loss per example (a single loss
        for the batch is accepted too). Default: the negative log of the target output
        (for models that return probabilities).
    lower_bound, upper_bound : float
        Box the perturbed inputs are clamped to (e.g. ``0`` and ``1`` for images).

    Attributes
    ----------
    bound : callable
        ``Tensor -> Tensor`` clamping to the box; may be replaced for custom constraints.
    zero_thresh : float
        Gradients at most this large in magnitude count as zero (default ``1e-6``).
    """

    def __init__(
        self,
        forward_func: Callable,
        loss_func: Callable | None = None,
        lower_bound: float = float("-inf"),
        upper_bound: float = float("inf"),
    ) -> None:
        super().__init__()
        if not callable(forward_func):
            fail(
                "FGSM",
                "forward_func",
                "a callable (a model or a function)",
                forward_func,
                type_error=True,
            )
        if loss_func is not None and not callable(loss_func):
            fail(
                "FGSM",
                "loss_func",
                "None or a callable(outputs, target)",
                loss_func,
                type_error=True,
            )
        check_bounds("FGSM", lower_bound, upper_bound)
        self.forward_func = forward_func
        self.loss_func = loss_func
        self.bound: Callable[[torch.Tensor], torch.Tensor] = functools.partial(
            torch.clamp, min=lower_bound, max=upper_bound
        )
        self.zero_thresh = 10**-6

    def perturb(
        self,
        inputs: Any,
        epsilon: float,
        target: Any,
        additional_forward_args: object | None = None,
        targeted: bool = False,
        mask: Any = None,
        *,
        chunk_size: ChunkSize = "auto",
    ) -> Any:
        """The inputs moved one signed gradient step of size ``epsilon``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor, each ``(N, ...)``, floating point
        epsilon : float
            Step size (>= 0).
        target : Any
            True labels (untargeted) or classes to reach (targeted). With the default loss:
            an int, a tuple index, a list or 1-D tensor of ``N`` labels, ... (see
            :mod:`whybox.core.targets`); with ``loss_func``: whatever it takes.
        additional_forward_args : Any, optional
            Extra model arguments, passed after the inputs.
        targeted : bool
            Move towards ``target`` instead of away from it.
        mask : Tensor or tuple of Tensor, optional
            Zeros and ones broadcastable to each input: only elements where it is 1 move.
        chunk_size : int, "auto" or None, keyword-only
            Rows per forward and backward (results do not depend on it). With
            ``loss_func``, ``"auto"`` is the whole batch in one call (the loss may couple
            rows); give a size only for a per-example loss.

        Returns
        -------
        Tensor or tuple of Tensor
            Perturbed inputs (detached), in the inputs' structure, shapes and dtypes.
        """
        owner = "FGSM.perturb"
        check_real(owner, "epsilon", epsilon, minimum=0.0)
        check_bool(owner, "targeted", targeted)
        gradients = LossGradients(
            owner,
            self.forward_func,
            self.loss_func,
            inputs,
            target,
            additional_forward_args,
            chunk_size=chunk_size,
        )
        masks = prepare_masks(owner, mask, gradients.tensors)
        x = gradients.tensors
        moved = sign_step(x, gradients(x), epsilon, targeted, masks, self.zero_thresh)
        return gradients.restore(tuple(self.bound(t) for t in moved))
