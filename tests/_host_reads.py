"""Counting host reads (device syncs off the CPU) with a ``TorchFunctionMode``.

Shared by the host-sync tests of the gradient and perturbation families: on a CPU machine
no call syncs, but the calls that would (``.item()``, ``bool()``, ``.cpu()``, value-sized
outputs...) are seen wherever they are made.
"""

from __future__ import annotations

import traceback
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

#: calls that read values on the host (or whose output shape depends on values)
_READS = {
    Tensor.item,
    Tensor.tolist,
    Tensor.cpu,
    Tensor.numpy,
    Tensor.__bool__,
    Tensor.__int__,
    Tensor.__float__,
    Tensor.__index__,
    Tensor.nonzero,
    torch.nonzero,
    Tensor.argwhere,
    torch.argwhere,
    Tensor.equal,
    torch.equal,
    Tensor.allclose,
    torch.allclose,
    torch.is_nonzero,
    Tensor.masked_select,
    torch.masked_select,
    Tensor.unique,
    torch.unique,
    Tensor.unique_consecutive,
    torch.unique_consecutive,
}


def _is_bool_mask(value: Any) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    return any(isinstance(v, Tensor) and v.dtype == torch.bool for v in values)


class HostReads(TorchFunctionMode):
    """Records each host read as ``"function at file:line"`` (the innermost whybox frame)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self._reads(func, args, kwargs):
            frames = traceback.extract_stack()[:-1]
            where = next(
                (
                    f"{f.filename.rsplit('src/', 1)[-1]}:{f.lineno}"
                    for f in reversed(frames)
                    if "/whybox/" in f.filename
                ),
                "outside whybox",
            )
            self.reads.append(f"{getattr(func, '__name__', func)} at {where}")
        return func(*args, **kwargs)

    @staticmethod
    def _reads(func: Any, args: tuple, kwargs: dict) -> bool:
        if func in _READS:
            return True
        if func in (Tensor.__getitem__, Tensor.__setitem__):  # a boolean mask: a nonzero
            return len(args) > 1 and _is_bool_mask(args[1])
        if func in (Tensor.repeat_interleave, torch.repeat_interleave):
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            sized = kwargs.get("output_size") is not None
            return isinstance(repeats, Tensor) and repeats.numel() > 1 and not sized
        if func is Tensor.to:
            # on a CPU machine every device is the CPU: only an explicit "cpu" says "to the
            # host" (a copy that waits for the device there)
            destination = kwargs.get("device", args[1] if len(args) > 1 else None)
            return destination == "cpu"
        return False

    @property
    def count(self) -> int:
        """Host reads recorded so far."""
        return len(self.reads)
