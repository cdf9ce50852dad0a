"""The one chunk policy: how many rows go through the model per forward.

Every family asks here. The caller's knob is ``chunk_size`` (an int, or ``"auto"`` /
``None``); Captum's ``internal_batch_size`` and ``perturbations_per_eval`` are mapped onto it
by the facade. Chunking never changes results, only speed and memory.

* :func:`resolve_chunk_rows` turns the knob into a row count; ``"auto"`` sizes the chunk by
  the bytes of one row, for throughput under a memory bound;
* :func:`counting` re-sizes an automatic chunk when each row carries more than the model's
  inputs (a layer path point beside token ids);
* :func:`whole_groups` rounds a chunk down to whole groups of rows (all examples of a path
  step), so rows can be built by broadcasting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .validation import fail

__all__ = ["ChunkSize", "auto_chunk_rows", "resolve_chunk_rows", "counting", "whole_groups"]

ChunkSize = int | Literal["auto"] | None

# Input bytes per chunk that "auto" aims for. On CPU small chunks keep activations in cache
# (measured: 8-64 rows of a 224x224 CNN beat bigger ones); on GPU bigger chunks fill the device.
_AUTO_BYTES = {"cpu": 2**20, "other": 32 * 2**20}
_AUTO_MIN_ROWS = 8
_AUTO_MAX_ROWS = {"cpu": 4096, "other": 65536}


def auto_chunk_rows(example_bytes: int, device: torch.device) -> int:
    """Rows per forward chosen for throughput under a memory bound."""
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
    if is_auto(chunk_size):
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
