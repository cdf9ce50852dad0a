"""Whole-dataset attribution: streaming, resumable shards, and a Ray backend.

>>> from whybox.scale import attribute_dataset
>>> result = attribute_dataset(dataset, "integrated_gradients", model, out="run", n_steps=32)
>>> result.summaries["classes"][3]["abs_mean"]        # per-feature importance of class 3

See :func:`attribute_dataset`; shards are read back with :func:`iter_shards` /
:func:`read_field` and summaries with :func:`load_summaries`.
"""

from __future__ import annotations

from .cli import explain_dataset_cli
from .job import JobResult, ModelFactory, attribute_dataset
from .shards import iter_shards, read_field
from .summaries import load_summaries

__all__ = [
    "attribute_dataset",
    "JobResult",
    "ModelFactory",
    "iter_shards",
    "read_field",
    "load_summaries",
    "explain_dataset_cli",
]
