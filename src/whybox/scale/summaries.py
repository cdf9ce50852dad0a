"""Per-feature summaries of a job's attributions, updated shard by shard while streaming.

Mean, variance (population, ``Var()``) and mean absolute attribution of every feature, over
all examples and per class, through the Welford-stable summarizers of :mod:`whybox.attr`.
Updates run in float64 and in shard order, so a resumed job (which reads its written shards
back from disk) gets the same numbers, bit for bit, as an uninterrupted one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from whybox.attr import ClassSummarizer, Mean, Summarizer, Var

from .shards import _npy_bytes, atomic_write_bytes, read_json, write_json

__all__ = ["StreamingSummaries", "load_summaries"]

_INDEX = "summaries.json"


def _key_name(key: Any) -> str:
    return "all" if key is None else f"class-{key}"


class StreamingSummaries:
    """Mean / var / mean |attribution| per feature, overall and per class.

    Examples
    --------
    >>> summaries = StreamingSummaries()
    >>> summaries.update([torch.ones(4, 3)], classes=torch.tensor([0, 1, 0, 1]))
    >>> summaries.result()["all"]["mean"].shape
    (3,)
    """

    def __init__(self) -> None:
        self._signed: ClassSummarizer[Any] = ClassSummarizer([Mean(), Var()])
        self._absolute: ClassSummarizer[Any] = ClassSummarizer([Mean()])
        self._counts: dict[Any, int] = {}
        self._n_inputs: int | None = None

    def update(self, attributions: list[Tensor], *, classes: Tensor | None) -> None:
        """Add one shard.

        Parameters
        ----------
        attributions : list of Tensor
            One ``(n, ...)`` tensor per input (or layer).
        classes : Tensor or None
            ``(n,)`` integer class of each example (labels, else predicted classes), or
            ``None`` for the overall summary only.
        """
        rows = tuple(torch.as_tensor(a).to(torch.float64) for a in attributions)
        if not rows or rows[0].shape[0] == 0:
            return
        self._n_inputs = len(rows)
        absolute = tuple(r.abs() for r in rows)
        n = int(rows[0].shape[0])
        self._counts[None] = self._counts.get(None, 0) + n
        if classes is None:
            Summarizer.update_batch(self._signed, rows)
            Summarizer.update_batch(self._absolute, absolute)
            return
        self._signed.update(rows, classes)
        self._absolute.update(absolute, classes)
        for key, count in zip(*torch.unique(classes, return_counts=True), strict=True):
            self._counts[key.item()] = self._counts.get(key.item(), 0) + int(count)

    def result(self) -> dict[str, Any]:
        """``{"all": summary, "classes": {label: summary}}``; a summary maps ``"count"``,
        ``"mean"``, ``"var"`` and ``"abs_mean"`` to per-feature arrays (lists of them, one
        per input, for several inputs)."""

        def one(signed: Any, absolute: Any, key: Any) -> dict[str, Any]:
            signed_list = signed if isinstance(signed, list) else [signed]
            abs_list = absolute if isinstance(absolute, list) else [absolute]
            summary: dict[str, Any] = {"count": self._counts.get(key, 0)}
            for name, source, stat in (
                ("mean", signed_list, "mean"),
                ("var", signed_list, "variance"),
                ("abs_mean", abs_list, "mean"),
            ):
                arrays = [s[stat].numpy() for s in source]
                summary[name] = arrays if len(arrays) > 1 else arrays[0]
            return summary

        if self._n_inputs is None:
            return {"all": None, "classes": {}}
        classes = {
            key: one(
                self._signed.summaries[key].summary, self._absolute.summaries[key].summary, key
            )
            for key in sorted(self._signed.summaries)
        }
        return {
            "all": one(self._signed.summary, self._absolute.summary, None),
            "classes": classes,
        }

    def save(self, out: Path) -> None:
        """Write every summary as ``.npy`` files plus ``summaries.json`` (atomically)."""
        result = self.result()
        index: dict[str, Any] = {"inputs": self._n_inputs, "groups": {}}
        groups = [(None, result["all"])] + list(result["classes"].items())
        for key, summary in groups:
            if summary is None:
                continue
            name = _key_name(key)
            files = {}
            for stat in ("mean", "var", "abs_mean"):
                arrays = summary[stat] if isinstance(summary[stat], list) else [summary[stat]]
                files[stat] = []
                for i, array in enumerate(arrays):
                    file = f"summary.{name}.{stat}.{i}.npy"
                    atomic_write_bytes(out / file, _npy_bytes(array))
                    files[stat].append(file)
            index["groups"][name] = {"label": key, "count": summary["count"], "files": files}
        write_json(out / _INDEX, index)


def load_summaries(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The summaries of a completed job, as :meth:`StreamingSummaries.result` returns them.

    Parameters
    ----------
    out : path
        The job folder.
    """
    folder = Path(out)
    index = read_json(folder / _INDEX)
    if not isinstance(index, dict):
        raise FileNotFoundError(f"No summaries in {folder} (is the job complete?).")
    result: dict[str, Any] = {"all": None, "classes": {}}
    for name, group in index["groups"].items():
        summary: dict[str, Any] = {"count": group["count"]}
        for stat, files in group["files"].items():
            arrays = [np.load(folder / file, allow_pickle=False) for file in files]
            summary[stat] = arrays if len(arrays) > 1 else arrays[0]
        if name == "all":
            result["all"] = summary
        else:
            result["classes"][group["label"]] = summary
    return result
