"""What the gradient attacks share: the loss they differentiate, on the engine.

FGSM and PGD need ``d loss(model(x), target) / d x``. The engine's
:class:`~whybox.core.forward.Evaluator` differentiates whatever its target's ``select``
returns for each chunk of rows, so :class:`AttackLoss` stands where a
:class:`~whybox.core.targets.Target` stands and returns the loss instead of a score.
:class:`LossGradients` prepares a call once (inputs, extra forward arguments, chunk size)
and then gives the gradients at any rows of the same shape, so PGD validates once and pays
only the model's forward and backward per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from numbers import Real
from typing import Any

import torch
from torch import Tensor

from whybox.core.call import Call, prepare_call
from whybox.core.chunks import ChunkSize, is_auto
from whybox.core.forward import Evaluator
from whybox.core.gradients import row_gradients
from whybox.core.inputs import broadcasts_to
from whybox.core.targets import prepare_target
from whybox.core.validation import describe, fail

__all__ = ["AttackLoss", "LossGradients", "prepare_masks", "sign_step", "check_bounds"]


class AttackLoss:
    """The per-row loss of an attack, selected from each chunk's model output.

    Parameters
    ----------
    loss_func : callable or None
        ``loss_func(outputs, target)``; ``None`` is Captum's default, the negative log of
        the target output (``-log(outputs)`` at ``target``).
    target : Any
        Captum's ``target``: with the default loss any of whybox's target forms (see
        :mod:`whybox.core.targets`); with ``loss_func`` whatever it takes, passed unchanged.
    batch_size : int
    owner : str
        Name used in error messages.
    """

    def __init__(
        self, loss_func: Callable[..., Tensor] | None, target: Any, batch_size: int, *, owner: str
    ) -> None:
        self.loss_func = loss_func
        self.raw = target
        self.owner = owner
        # the default loss is -log of a target score: the engine's target forms select it
        self.score = (
            None if loss_func is not None else prepare_target(target, batch_size, owner=owner)
        )

    def select(self, output: Tensor, example_index: Tensor | None = None) -> Tensor:
        """The loss of each row: Tensor ``(rows,)``, or 0-d for a loss over the batch."""
        if self.score is not None:
            # -log of the selected score equals Captum's -log of every output, then selected
            return -torch.log(self.score.select(output, example_index))
        loss = self.loss_func(output, self.raw)
        # Captum differentiates each element of a 1-D loss (or of (N, 1)); a 0-d loss
        # (reduction="mean" / "sum") is accepted too: its gradient is the same direction
        if not isinstance(loss, Tensor) or (loss.dim() > 0 and loss[0].numel() != 1):
            fail(
                self.owner,
                "loss_func",
                "a function returning a loss tensor with one value per example (or one "
                "value for the batch)",
                f"a loss of {describe(loss)}",
                raw=True,
            )
        return loss


class LossGradients:
    """Gradients of an attack's loss with respect to its inputs, prepared once.

    Parameters
    ----------
    owner : str
        Name used in error messages (e.g. ``"FGSM.perturb"``).
    forward_func : callable
        The model.
    loss_func : callable or None
        See :class:`AttackLoss`.
    inputs : Tensor or tuple of Tensor, each ``(N, ...)``, floating point
    target : Any
        See :class:`AttackLoss`.
    additional_forward_args : Any
        Captum's extra model arguments (tensors with ``N`` rows follow their examples).
    chunk_size : int, "auto" or None
        Rows per forward and backward. With the default loss, ``"auto"`` chunks for
        throughput under a memory bound; with ``loss_func`` (which may couple the rows of
        a batch, e.g. a mean) ``"auto"`` means the whole batch in one call, as Captum.

    Attributes
    ----------
    call : Call
        The prepared call (inputs detached, never modified).
    """

    def __init__(
        self,
        owner: str,
        forward_func: Callable[..., Any],
        loss_func: Callable[..., Tensor] | None,
        inputs: Any,
        target: Any,
        additional_forward_args: Any,
        *,
        chunk_size: ChunkSize = "auto",
    ) -> None:
        if loss_func is not None and not callable(loss_func):
            fail(owner, "loss_func", "None or a callable(outputs, target)", loss_func)
        call = prepare_call(
            owner,
            forward_func,
            inputs,
            forward_args=additional_forward_args,
            chunk_size=chunk_size,
            require_float=True,
        )
        loss = AttackLoss(loss_func, target, call.batch_size, owner=owner)
        evaluator = Evaluator(
            forward_func,
            call.inputs.structure,
            call.extra,
            loss,
            owner=owner,  # type: ignore[arg-type]
        )
        chunk_rows, auto = call.chunk_rows, call.chunk_auto
        if loss_func is not None and is_auto(chunk_size):
            # a loss may reduce over the batch: one forward, never split by the chunk probe
            chunk_rows, auto = max(call.batch_size, 1), False
        self.call: Call = replace(call, evaluator=evaluator, chunk_rows=chunk_rows, chunk_auto=auto)

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        """The (detached) inputs, one ``(N, ...)`` tensor per input."""
        return self.call.tensors

    def __call__(self, rows: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Gradients of the loss at ``rows`` (shaped like the inputs), one per input."""
        grads, _ = row_gradients(self.call, rows)
        return grads

    def restore(self, leaves: Sequence[Tensor]) -> Any:
        """``leaves`` in the caller's container (a tensor for a tensor, a tuple for a tuple)."""
        return self.call.inputs.restore(leaves)


def prepare_masks(owner: str, mask: Any, tensors: Sequence[Tensor]) -> tuple[Tensor | None, ...]:
    """One mask per input (``None``: perturb every element), on the input's device.

    Parameters
    ----------
    mask : None, Tensor, or tuple of Tensor
        Zeros and ones broadcastable to each input's shape ``(N, ...)``.

    Returns
    -------
    tuple of Tensor or None
    """
    if mask is None:
        return (None,) * len(tensors)
    masks = tuple(mask) if isinstance(mask, (tuple, list)) else (mask,)
    if len(masks) != len(tensors):
        fail(owner, "mask", f"one mask per input ({len(tensors)})", f"{len(masks)} masks", raw=True)
    out: list[Tensor | None] = []
    for index, (m, x) in enumerate(zip(masks, tensors)):
        if isinstance(m, Real) and not isinstance(m, bool):
            m = torch.tensor(m)
        if not isinstance(m, Tensor):
            fail(owner, "mask", "a tensor or a tuple of tensors", m, type_error=True)
        if not broadcasts_to(tuple(m.shape), tuple(x.shape)):
            fail(
                owner,
                "mask",
                f"broadcastable to input {index}'s shape {tuple(x.shape)}",
                f"shape {tuple(m.shape)}",
                raw=True,
            )
        out.append(m.to(x.device))
    return tuple(out)


def sign_step(
    inputs: Sequence[Tensor],
    grads: Sequence[Tensor],
    step: float,
    targeted: bool,
    masks: Sequence[Tensor | None],
    zero_thresh: float,
) -> tuple[Tensor, ...]:
    """``x + s * step * sign(grad) * mask`` where ``|grad| > zero_thresh``, else ``x``.

    ``s`` is ``+1`` (untargeted: up the loss) or ``-1`` (targeted: down the target's loss).
    """
    # (multiplier * step) first, then the tensors: Captum's order of operations, so
    # results agree bit for bit
    scale = (-1 if targeted else 1) * step
    out = []
    for x, g, m in zip(inputs, grads, masks):
        moved = scale * torch.sign(g)
        if m is not None:
            moved = moved * m
        out.append(torch.where(torch.abs(g) > zero_thresh, x + moved, x))
    return tuple(out)


def check_bounds(owner: str, lower_bound: Any, upper_bound: Any) -> None:
    """Bounds are numbers (or tensors, clamped elementwise), lower <= upper."""
    for name, value in (("lower_bound", lower_bound), ("upper_bound", upper_bound)):
        if isinstance(value, bool) or not isinstance(value, (Real, Tensor)):
            fail(owner, name, "a float (or a tensor of bounds)", value, type_error=True)
    if (
        isinstance(lower_bound, Real)
        and isinstance(upper_bound, Real)
        and lower_bound > upper_bound
    ):
        fail(owner, "upper_bound", f"a float >= lower_bound ({lower_bound})", upper_bound)
