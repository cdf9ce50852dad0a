"""Projected Gradient Descent (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", 2018), Captum 0.9's ``PGD``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from whybox.attr._assertion_errors import fail_assert
from whybox.core.chunks import ChunkSize
from whybox.core.randomness import RandomSource, check_seed, make_random
from whybox.core.validation import check_bool, check_int, check_real, fail

from ._fgsm import FGSM
from ._gradients import LossGradients, check_bounds, prepare_masks, sign_step
from ._perturbation import Perturbation

__all__ = ["PGD"]

NORMS = ("Linf", "L2")


class PGD(Perturbation):
    """Signed gradient steps, each projected back onto the ball around the inputs.

    ``x_0 = x`` (or a uniform random point of the ball with ``random_start``), then
    ``x_{t+1} = bound(Clip_r(x_t + s * step_size * sign(d L(x_t, target) / dx)))`` with
    ``s = +1`` untargeted, ``-1`` targeted; ``Clip_r`` projects onto the ``Linf`` or ``L2``
    ball of radius ``r`` around ``x`` (per example) and ``bound`` clamps to
    ``[lower_bound, upper_bound]``. As in Captum, the step is FGSM's signed step for both
    norms; only the projection and the random start depend on ``norm``.

    Parameters
    ----------
    forward_func : callable
        The model.
    loss_func : callable, optional
        ``loss_func(outputs, target) -> Tensor``, one loss per example. Default: the
        negative log of the target output.
    lower_bound, upper_bound : float
        Box the perturbed inputs are clamped to.

    Attributes
    ----------
    fgsm : FGSM
        The step (its :attr:`FGSM.zero_thresh` applies).
    bound : callable
        ``Tensor -> Tensor`` clamping to the box; may be replaced.
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
                "PGD",
                "forward_func",
                "a callable (a model or a function)",
                forward_func,
                type_error=True,
            )
        check_bounds("PGD", lower_bound, upper_bound)
        self.forward_func = forward_func
        # Captum's step is an unbounded FGSM: the box is applied after the projection
        self.fgsm = FGSM(forward_func, loss_func)
        self.bound: Callable[[Tensor], Tensor] = functools.partial(
            torch.clamp, min=lower_bound, max=upper_bound
        )

    def perturb(
        self,
        inputs: Any,
        radius: float,
        step_size: float,
        step_num: int,
        target: Any,
        additional_forward_args: object | None = None,
        targeted: bool = False,
        random_start: bool = False,
        norm: str = "Linf",
        mask: Any = None,
        *,
        seed: int | torch.Generator | RandomSource | None = None,
        chunk_size: ChunkSize = "auto",
    ) -> Any:
        """Run ``step_num`` projected signed-gradient steps.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor, each ``(N, ...)``, floating point
        radius : float
            Radius of the ball around each example (>= 0).
        step_size : float
            Size of each signed step (>= 0).
        step_num : int
            Number of steps (>= 0).
        target : Any
            True labels (untargeted) or classes to reach (targeted); see :class:`FGSM`.
        additional_forward_args : Any, optional
            Extra model arguments, passed after the inputs.
        targeted : bool
        random_start : bool
            Start from a uniform random point of the ball (masked by ``mask``).
        norm : {"Linf", "L2"}
        mask : Tensor or tuple of Tensor, optional
            Zeros and ones broadcastable to each input: only elements where it is 1 move.
        seed : int, torch.Generator, RandomSource or None, keyword-only
            Source of the random start. ``None`` draws from torch's global generators in
            Captum's order (``randn_like`` and ``rand`` for ``L2``, ``rand_like`` for
            ``Linf``), so code seeded for Captum gets Captum's start; an int or a generator
            draws from a private generator (reproducible, global state untouched).
        chunk_size : int, "auto" or None, keyword-only
            Rows per forward and backward (see :meth:`FGSM.perturb`).

        Returns
        -------
        Tensor or tuple of Tensor
            Perturbed inputs (detached), in the inputs' structure, shapes and dtypes; each
            example within ``radius`` of its input in ``norm`` and within the box.

        Notes
        -----
        Captum's ``L2`` random start broadcasts the per-example radius over the last
        dimension, so it fails for most batches of more than one example; whybox scales
        each example by its own radius (identical for one example).
        """
        owner = "PGD.perturb"
        check_real(owner, "radius", radius, minimum=0.0)
        check_real(owner, "step_size", step_size, minimum=0.0)
        check_int(owner, "step_num", step_num, minimum=0)
        check_bool(owner, "targeted", targeted)
        check_bool(owner, "random_start", random_start)
        if norm not in NORMS:
            # an AssertionError too: Captum asserts the norm
            fail_assert(owner, "norm", f"one of {list(NORMS)}", norm)
        check_seed(owner, "seed", seed)
        gradients = LossGradients(
            owner,
            self.forward_func,
            self.fgsm.loss_func,
            inputs,
            target,
            additional_forward_args,
            chunk_size=chunk_size,
        )
        masks = prepare_masks(owner, mask, gradients.tensors)
        origin = gradients.tensors
        current = origin
        if random_start:
            random = None if seed is None else make_random(seed)
            current = tuple(
                self.bound(_random_point(x, radius, norm, m, random)) for x, m in zip(origin, masks)
            )
        for _ in range(step_num):
            stepped = sign_step(
                current, gradients(current), step_size, targeted, masks, self.fgsm.zero_thresh
            )
            current = tuple(
                self.bound(_project(x, s, radius, norm)).detach() for x, s in zip(origin, stepped)
            )
        return gradients.restore(current)


def _project(center: Tensor, point: Tensor, radius: float, norm: str) -> Tensor:
    """``point`` moved onto the ``norm`` ball of ``radius`` around ``center``, per example."""
    diff = point - center
    if norm == "Linf":
        return center + torch.clamp(diff, -radius, radius)
    # each example's difference (a slice along dim 0) rescaled to norm <= radius
    return center + torch.renorm(diff, 2, 0, radius)


def _random_point(
    center: Tensor, radius: float, norm: str, mask: Tensor | None, random: RandomSource | None
) -> Tensor:
    """A uniform random point of the ``norm`` ball around each example of ``center``.

    ``random=None`` draws from the global generators exactly as Captum does.
    """
    batch = center.shape[0]
    if norm == "L2":
        # direction uniform on the sphere, radius r * U^(1/d): uniform in the ball
        if random is None:
            u = torch.randn_like(center)
            r = torch.rand(batch)  # CPU, default dtype: Captum's draw
        else:
            u = random.normal(center.shape, 1.0, like=center)
            r = random.uniform(batch, like=center)
        unit = F.normalize(u.reshape(batch, -1)).reshape(u.shape)
        d = center[0].numel() if batch else 1
        r = (r ** (1.0 / d)) * radius
        x = r.to(device=unit.device, dtype=unit.dtype).view((batch,) + (1,) * (center.dim() - 1))
        x = x * unit
    else:
        if random is None:
            uniform = torch.rand_like(center)
        else:
            uniform = random.uniform(center.numel(), like=center).reshape(center.shape)
        x = uniform * radius * 2 - radius
    return center + (x if mask is None else x * mask)
